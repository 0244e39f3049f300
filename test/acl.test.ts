/**
 * ACL precedence (SPEC section 3) as one table over `resolvePermissions`: a user entry decides
 * alone, else the union of the user's groups' entries when any group has one, else the room's
 * defaults; a missing ACL grants nothing; anonymous sessions get the defaults; an access token is
 * decided by its most specific matching pattern alone; a fixed identity keeps its permissions.
 * Edge cases: entries are read as own properties only (`__proto__`, `constructor`), empty lists are
 * entries, duplicates change nothing, and every answer is closed under implication.
 */

import { describe, expect, it } from 'vitest'
import { type Identity, type RoomAccesses, resolvePermissions } from '../server/auth/acl.ts'
import { type Permission, PermissionBit, closePermissionBits } from '../protocol/permissions.ts'

const NONE = 0
const READ = PermissionBit.read
const PRESENCE = PermissionBit.read | PermissionBit.presence
const WRITE = PermissionBit.read | PermissionBit.presence | PermissionBit.write

type Entries = Record<string, Permission[]>

const acl = (defaultAccesses: Permission[], usersAccesses: Entries = {}, groupsAccesses: Entries = {}): RoomAccesses => ({
  defaultAccesses,
  usersAccesses,
  groupsAccesses,
})

const user = (userId: string, ...groupIds: string[]): Identity => ({ kind: 'user', userId, groupIds })
const anonymous: Identity = { kind: 'anonymous' }
const access = (perms: Entries): Identity => ({ kind: 'access', perms })
const fixed = (permissions: number): Identity => ({ kind: 'fixed', permissions })

/** A public room: everyone writes unless an entry says otherwise. */
const PUBLIC = acl(['room:write'])

interface Case {
  readonly name: string
  readonly room?: string
  readonly acl: RoomAccesses | null
  readonly identity: Identity
  readonly expected: number
}

const cases: Case[] = [
  // A user entry decides alone.
  { name: 'user entry [] shuts a user out of a public room', acl: acl(['room:write'], { ann: [] }), identity: user('ann'), expected: NONE },
  { name: 'user entry narrows the defaults', acl: acl(['room:write'], { ann: ['room:read'] }), identity: user('ann'), expected: READ },
  { name: 'user entry widens the defaults', acl: acl([], { ann: ['room:write'] }), identity: user('ann'), expected: WRITE },
  { name: 'user entry beats a wider group entry', acl: acl([], { ann: ['room:read'] }, { eng: ['room:write'] }), identity: user('ann', 'eng'), expected: READ },
  { name: 'user entry [] beats a group entry', acl: acl(['room:write'], { ann: [] }, { eng: ['room:write'] }), identity: user('ann', 'eng'), expected: NONE },
  { name: "another user's entry does not apply", acl: acl(['room:read'], { bob: ['room:write'] }), identity: user('ann'), expected: READ },
  { name: 'user ids are case-sensitive', acl: acl(['room:read'], { Ann: ['room:write'] }), identity: user('ann'), expected: READ },
  // Otherwise the union of the groups' entries, when any group has one.
  { name: 'a group entry replaces the defaults', acl: acl(['room:write'], {}, { eng: ['room:read'] }), identity: user('ann', 'eng'), expected: READ },
  { name: 'group entries are unioned', acl: acl([], {}, { eng: ['room:read'], ops: ['room:write'] }), identity: user('ann', 'eng', 'ops'), expected: WRITE },
  {
    name: 'union of read and presence is presence',
    acl: acl([], {}, { eng: ['room:read'], ops: ['room:presence:write'] }),
    identity: user('ann', 'ops', 'eng'),
    expected: PRESENCE,
  },
  { name: 'a group [] is an entry: it replaces the defaults', acl: acl(['room:write'], {}, { eng: [] }), identity: user('ann', 'eng'), expected: NONE },
  {
    name: 'a group [] adds nothing to another group',
    acl: acl(['room:write'], {}, { eng: [], ops: ['room:read'] }),
    identity: user('ann', 'eng', 'ops'),
    expected: READ,
  },
  {
    name: 'groups without entries fall back to the defaults',
    acl: acl(['room:presence:write'], {}, { ops: ['room:write'] }),
    identity: user('ann', 'eng', 'qa'),
    expected: PRESENCE,
  },
  {
    name: 'only groups with entries count, others are ignored',
    acl: acl(['room:write'], {}, { ops: ['room:read'] }),
    identity: user('ann', 'eng', 'ops'),
    expected: READ,
  },
  { name: 'a group the user is not in does not apply', acl: acl(['room:read'], {}, { eng: ['room:write'] }), identity: user('ann', 'ops'), expected: READ },
  // Otherwise the defaults.
  { name: 'a user with no groups gets the defaults', acl: acl(['room:presence:write']), identity: user('ann'), expected: PRESENCE },
  { name: 'empty defaults grant nothing', acl: acl([]), identity: user('ann'), expected: NONE },
  // A missing ACL record grants nothing (but never decides for tokens or fixed identities).
  { name: 'no ACL record: a user gets nothing', acl: null, identity: user('ann', 'eng'), expected: NONE },
  { name: 'no ACL record: anonymous gets nothing', acl: null, identity: anonymous, expected: NONE },
  // Anonymous: the defaults only.
  { name: 'anonymous gets the defaults', acl: PUBLIC, identity: anonymous, expected: WRITE },
  {
    name: 'anonymous ignores user and group entries',
    acl: acl(['room:read'], { anonymous: ['room:write'], '': ['room:write'] }, { anonymous: ['room:write'] }),
    identity: anonymous,
    expected: READ,
  },
  { name: 'anonymous in a private room gets nothing', acl: acl([], { ann: ['room:write'] }), identity: anonymous, expected: NONE },
  // Access tokens: the most specific matching pattern alone, whatever the ACL.
  { name: 'access: an exact pattern', room: 'doc-1', acl: null, identity: access({ 'doc-1': ['room:write'] }), expected: WRITE },
  { name: 'access: no matching pattern grants nothing', room: 'other', acl: PUBLIC, identity: access({ 'doc-*': ['room:write'] }), expected: NONE },
  { name: 'access: the ACL never widens a token', room: 'doc-1', acl: PUBLIC, identity: access({ 'doc-1': ['room:read'] }), expected: READ },
  { name: 'access: the ACL never narrows a token', room: 'doc-1', acl: acl([], { ann: [] }), identity: access({ 'doc-1': ['room:write'] }), expected: WRITE },
  {
    name: 'access: exact beats a wider prefix',
    room: 'doc-1',
    acl: null,
    identity: access({ 'doc-*': ['room:read'], 'doc-1': ['room:write'] }),
    expected: WRITE,
  },
  {
    name: 'access: the longest literal prefix wins',
    room: 'doc-12',
    acl: null,
    identity: access({ 'doc-*': ['room:write'], 'doc-1*': ['room:read'], '*': ['room:write'] }),
    expected: READ,
  },
  {
    name: 'access: exact beats a prefix of the same length',
    room: 'doc',
    acl: null,
    identity: access({ 'doc*': ['room:write'], doc: ['room:read'] }),
    expected: READ,
  },
  {
    name: 'access: a same-length prefix decides for other rooms',
    room: 'docs',
    acl: null,
    identity: access({ 'doc*': ['room:write'], doc: ['room:read'] }),
    expected: WRITE,
  },
  {
    name: 'access: the most specific [] decides alone',
    room: 'org1:secret',
    acl: null,
    identity: access({ 'org1:*': ['room:write'], 'org1:secret': [] }),
    expected: NONE,
  },
  { name: 'access: patterns are not unioned', room: 'org1:doc', acl: null, identity: access({ '*': ['room:write'], 'org1:*': ['room:read'] }), expected: READ },
  { name: 'access: * matches every room', room: 'anything', acl: null, identity: access({ '*': ['room:presence:write'] }), expected: PRESENCE },
  { name: 'access: no perms at all grants nothing', room: 'doc', acl: PUBLIC, identity: access({}), expected: NONE },
  { name: 'access: a room named constructor is not read off the prototype', room: 'constructor', acl: null, identity: access({}), expected: NONE },
  // Fixed identities (a custom authenticate): their permissions, whatever the ACL.
  { name: 'fixed: kept in a room with no ACL record', acl: null, identity: fixed(WRITE), expected: WRITE },
  { name: 'fixed: kept against a user entry []', acl: acl([], { ann: [] }), identity: fixed(READ), expected: READ },
  { name: 'fixed: nothing stays nothing in a public room', acl: PUBLIC, identity: fixed(NONE), expected: NONE },
  // Own properties only: ids that name Object.prototype's members are plain ids.
  { name: 'user "__proto__" without an entry gets the defaults', acl: acl(['room:read']), identity: user('__proto__'), expected: READ },
  { name: 'user "constructor" without an entry gets the defaults', acl: acl(['room:read']), identity: user('constructor'), expected: READ },
  { name: 'user "toString" without an entry gets the defaults', acl: acl(['room:read']), identity: user('toString'), expected: READ },
  { name: 'user "hasOwnProperty" without an entry gets the defaults', acl: acl([]), identity: user('hasOwnProperty'), expected: NONE },
  {
    name: 'groups "__proto__" and "constructor" without entries fall back to the defaults',
    acl: acl(['room:presence:write']),
    identity: user('ann', '__proto__', 'constructor', 'valueOf'),
    expected: PRESENCE,
  },
  {
    name: 'an own "__proto__" user entry (from JSON) decides',
    acl: acl(['room:write'], JSON.parse('{"__proto__": []}') as Entries),
    identity: user('__proto__'),
    expected: NONE,
  },
  {
    name: 'an own "__proto__" user entry applies to that id only',
    acl: acl(['room:write'], JSON.parse('{"__proto__": []}') as Entries),
    identity: user('ann'),
    expected: WRITE,
  },
  {
    name: 'an own "constructor" group entry decides',
    acl: acl(['room:write'], {}, JSON.parse('{"constructor": ["room:read"]}') as Entries),
    identity: user('ann', 'constructor'),
    expected: READ,
  },
  {
    name: 'entries in a null-prototype record are found',
    acl: acl([], Object.assign(Object.create(null) as Entries, { ann: ['room:write'] })),
    identity: user('ann'),
    expected: WRITE,
  },
  // Duplicates and implication.
  { name: 'duplicate permissions in an entry', acl: acl([], { ann: ['room:read', 'room:read'] }), identity: user('ann'), expected: READ },
  { name: 'a stronger permission implies the weaker ones', acl: acl([], { ann: ['room:write', 'room:read'] }), identity: user('ann'), expected: WRITE },
  { name: 'duplicate group ids', acl: acl(['room:write'], {}, { eng: ['room:read'] }), identity: user('ann', 'eng', 'eng'), expected: READ },
  { name: 'duplicate defaults', acl: acl(['room:presence:write', 'room:presence:write']), identity: anonymous, expected: PRESENCE },
]

describe('resolvePermissions', () => {
  it.each(cases)('$name', ({ room = 'room', acl: record, identity, expected }) => {
    const bits = resolvePermissions(room, record, identity)
    expect(bits).toBe(expected)
    // Every answer is closed under implication: write ⊃ presence ⊃ read.
    expect(closePermissionBits(bits)).toBe(bits)
  })

  it('covers every identity kind and both ACL states', () => {
    const kinds = new Set(cases.map((c) => c.identity.kind))
    expect([...kinds].sort()).toEqual(['access', 'anonymous', 'fixed', 'user'])
    expect(cases.some((c) => c.acl === null)).toBe(true)
  })

  it('leaves the ACL it is given unchanged', () => {
    const record = Object.freeze({
      defaultAccesses: Object.freeze(['room:read'] as Permission[]),
      usersAccesses: Object.freeze({ ann: Object.freeze(['room:write'] as Permission[]) }),
      groupsAccesses: Object.freeze({ eng: Object.freeze([] as Permission[]) }),
    })
    const before = JSON.stringify(record)
    expect(resolvePermissions('room', record, user('ann', 'eng'))).toBe(WRITE)
    expect(resolvePermissions('room', record, user('bob', 'eng'))).toBe(NONE)
    expect(resolvePermissions('room', record, user('bob'))).toBe(READ)
    expect(JSON.stringify(record)).toBe(before)
  })
})
