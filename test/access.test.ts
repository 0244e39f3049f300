/**
 * Access control through real sockets, real JWTs and a real LevelDB (SPEC sections 2, 3, 5 and 9):
 * the precedence of user, group and default entries; what a reader may and may not do; live ACL
 * changes, revocation and deletion; token expiry and refresh inside the socket; bad tokens,
 * anonymous sessions and a gateway's identity headers; the `authorize` and `authenticate` seams;
 * and what the per-message check costs.
 *
 * "Not applied, stored or relayed" is checked behind ordering barriers, never sleeps: after the
 * refused messages the same connection sends a sync step 1, and once it is answered the server has
 * handled every earlier frame of that socket; then someone else writes, and once that write has
 * reached the observer (and is stored), a relay or store of the refused one would have come first.
 */

import { performance } from 'node:perf_hooks'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { WebSocket as WsSocket } from 'ws'
import * as Y from 'yjs'
import { readAwarenessUpdate, writeAwarenessUpdate } from '../protocol/awareness.ts'
import { CloseCode } from '../protocol/errors.ts'
import { type ServerMessage, decodeServerMessage, encodeFrame, writeAuth, writeAwareness, writeSyncStep1, writeSyncStep2 } from '../protocol/messages.ts'
import { mintIdToken } from '../protocol/mint.ts'
import { PermissionBit } from '../protocol/permissions.ts'
import type { Authenticate, Authorize, Session } from '../server/auth/session.ts'
import {
  type GatedStore,
  accessToken,
  arrivalTimes,
  barrier,
  createRoom,
  errorCodes,
  gatedStore,
  headerClient,
  idToken,
  kinds,
  rest,
  updateRoom,
} from './support/access.ts'
import { type RawClient, rawClient } from './support/raw-client.ts'
import { type TestServer, makeDataDir, serversPerFile, startServer } from './support/server.ts'
import { type StockPeer, stockPeer, synced } from './support/stock-client.ts'
import { until, withDeadline } from './support/wait.ts'

const READ = PermissionBit.read
const PRESENCE = PermissionBit.read | PermissionBit.presence
const WRITE = PermissionBit.read | PermissionBit.presence | PermissionBit.write

// --- helpers -----------------------------------------------------------------------------------

let roomSeq = 0
const fresh = (label: string): string => `access-${label}-${++roomSeq}`

const clients: RawClient[] = []
const peers: StockPeer[] = []

afterEach(() => {
  for (const client of clients.splice(0)) client.close()
  for (const peer of peers.splice(0)) peer.destroy()
})

const { start, track } = serversPerFile()

/** A raw Tandem client presenting `token` (null: none); closed after the test. */
const connect = async (server: TestServer, room: string, token: string | null, options: { sync?: boolean } = {}): Promise<RawClient> => {
  const client = await rawClient(server.syncUrl, room, { token, ...options })
  clients.push(client)
  return client
}

/** A client that got in and has the room's state. */
const join = async (server: TestServer, room: string, token: string | null): Promise<RawClient> => {
  const client = await connect(server, room, token)
  await client.next('sync-step-2')
  return client
}

/** A user's ID token (10 min), signed with the test secret. */
const user = (userId: string, groupIds?: string[]): Promise<string> => idToken({ userId, ...(groupIds !== undefined && { groupIds }) })

/** A writer in one room from an access token: needs no ACL record. */
const writerToken = (room: string, userId = 'writer'): Promise<string> => accessToken({ userId, rooms: { [room]: ['room:write'] } })

/** Sequential edits of one Y.Doc, each returned as its update. */
const editor = (doc = new Y.Doc()): { doc: Y.Doc; append(text: string): Uint8Array } => ({
  doc,
  append(text) {
    let update: Uint8Array | null = null
    const capture = (u: Uint8Array): void => {
      update = u
    }
    doc.on('update', capture)
    const t = doc.getText('t')
    t.insert(t.length, text)
    doc.off('update', capture)
    return update!
  },
})

const textOf = (doc: Y.Doc): string => doc.getText('t').toString()

const hasClient = (doc: Y.Doc, clientID: number): boolean => Y.decodeStateVector(Y.encodeStateVector(doc)).has(clientID)

/** The room's document as LevelDB holds it. */
const storedDoc = async (server: TestServer, room: string): Promise<Y.Doc> => {
  const stored = await server.app.tandem.store.load(room)
  const doc = new Y.Doc()
  for (const u of stored.updates) Y.applyUpdate(doc, u)
  return doc
}

/** The room's document as the server holds it in memory. */
const liveDoc = (server: TestServer, roomId: string): Y.Doc => {
  const room = server.app.tandem.registry.get(roomId)
  if (room === undefined) throw new Error(`room ${roomId} is not loaded`)
  return room.doc
}

const awarenessFrame = (clientID: number, clock: number, state: unknown): Uint8Array =>
  encodeFrame(writeAwareness, writeAwarenessUpdate([{ clientID, clock, state: JSON.stringify(state) }]))

const awarenessSeen = (client: RawClient): Array<{ clientID: number; clock: number; state: string }> =>
  client.messages.flatMap((m) => (m.kind === 'awareness' ? readAwarenessUpdate(m.update) : []))

const seesPresence = (client: RawClient, clientID: number, clock = 1): Promise<unknown> =>
  client.next('awareness', (m) => readAwarenessUpdate(m.update).some((e) => e.clientID === clientID && e.clock === clock))

type Authenticated = Extract<ServerMessage, { kind: 'authenticated' }>

const authenticatedMessages = (client: RawClient): Authenticated[] => client.messages.filter((m): m is Authenticated => m.kind === 'authenticated')

/** The n-th (0-based) `authenticated` message a client got, once it is there. */
const authenticated = async (client: RawClient, n = 0): Promise<Authenticated> => {
  await client.next('authenticated', () => authenticatedMessages(client).length > n)
  return authenticatedMessages(client)[n]!
}

/** A message of `kind` at or after index `from`. */
const nextAfter = <K extends ServerMessage['kind']>(client: RawClient, kind: K, from: number): Promise<Extract<ServerMessage, { kind: K }>> =>
  client.next(kind, (m) => client.messages.indexOf(m) >= from)

/** A refused connection: its close code, and it received nothing but one error with `code`. */
const expectRefused = async (client: RawClient, code: string, closeCode: number): Promise<void> => {
  expect((await withDeadline('the refusal', client.closed)).code).toBe(closeCode)
  expect(client.messages).toHaveLength(1)
  expect(client.messages[0]).toMatchObject({ kind: 'error', code })
}

/** A token that is valid at connect and expires 250 to 1250 ms from now (`exp` has whole seconds). */
const soonExpiring = async (userId: string): Promise<{ token: string; expiresAt: number }> => {
  const expSeconds = Math.ceil((Date.now() + 250) / 1000)
  const token = await idToken({ userId }, { ttlSeconds: 1, now: (expSeconds - 1) * 1000 })
  return { token, expiresAt: expSeconds * 1000 }
}

// --- the shared server: built-in token authentication ------------------------------------------

let server: TestServer
const GRACE_MS = 300

beforeAll(async () => {
  server = await startServer({ authenticate: undefined, yWebsocketCompat: true, limits: { tokenRefreshGraceMs: GRACE_MS } })
  // Warm up fetch (undici loads lazily), so timings below measure the server, not the first import.
  await fetch(`${server.httpUrl}/healthz`)
})

afterAll(async () => {
  await server.destroy()
})

/** A room holding a document and a presence state, so a leak to a refused client would show. */
const roomWithContent = async (room: string, acl: Omit<Parameters<typeof createRoom>[1], 'id'>): Promise<RawClient> => {
  await createRoom(server, { id: room, ...acl })
  const seed = await join(server, room, await writerToken(room, 'seeder'))
  seed.sendUpdate(editor().append('confidential'))
  seed.send(awarenessFrame(9001, 1, { name: 'seeder' }))
  await seed.saved(1)
  await barrier(seed)
  return seed
}

// --- precedence (SPEC section 3) ---------------------------------------------------------------

describe('precedence: user entry, else groups, else defaults', () => {
  it('a user entry decides alone: [] shuts a user out of a room whose defaults (and groups) grant write', async () => {
    const room = fresh('user-empty')
    await roomWithContent(room, { defaultAccesses: ['room:write'], usersAccesses: { bob: [] }, groupsAccesses: { eng: ['room:write'] } })
    const bob = await connect(server, room, await user('bob', ['eng']))
    // Refused with forbidden; no authenticated, sync, awareness or document byte before it.
    await expectRefused(bob, 'forbidden', CloseCode.forbidden)
    expect(textOf(bob.doc)).toBe('')
  })

  it('a user entry wins over the groups, in both directions', async () => {
    const room = fresh('user-wins')
    await createRoom(server, {
      id: room,
      defaultAccesses: [],
      usersAccesses: { ann: ['room:read'], abe: ['room:write'] },
      groupsAccesses: { eng: ['room:write'], guests: ['room:read'] },
    })
    const ann = await join(server, room, await user('ann', ['eng']))
    const abe = await join(server, room, await user('abe', ['guests']))
    expect((await authenticated(ann)).identity.permissions).toBe(READ)
    expect((await authenticated(abe)).identity.permissions).toBe(WRITE)
  })

  it('groups are unioned: read from one group and presence from another give both', async () => {
    const room = fresh('groups-union')
    await createRoom(server, { id: room, defaultAccesses: [], groupsAccesses: { readers: ['room:read'], cursors: ['room:presence:write'] } })
    // Both orders: the union, not the first or the last group with an entry.
    for (const groups of [
      ['readers', 'cursors', 'no-entry'],
      ['cursors', 'no-entry', 'readers'],
    ]) {
      const both = await join(server, room, await user('cy', groups))
      expect((await authenticated(both)).identity.permissions).toBe(PRESENCE)
    }
    const one = await join(server, room, await user('cyd', ['readers']))
    expect((await authenticated(one)).identity.permissions).toBe(READ)
  })

  it('groups win over the defaults, even when they grant less', async () => {
    const room = fresh('groups-over-defaults')
    await createRoom(server, { id: room, defaultAccesses: ['room:write'], groupsAccesses: { interns: ['room:read'] } })
    const intern = await join(server, room, await user('dee', ['interns']))
    expect((await authenticated(intern)).identity.permissions).toBe(READ)
  })

  it('the defaults apply when neither the user nor any of its groups has an entry', async () => {
    const room = fresh('defaults')
    await createRoom(server, {
      id: room,
      defaultAccesses: ['room:presence:write'],
      usersAccesses: { other: ['room:write'] },
      groupsAccesses: { ops: ['room:write'] },
    })
    const eli = await join(server, room, await user('eli', ['eng']))
    expect((await authenticated(eli)).identity.permissions).toBe(PRESENCE)
    const none = await join(server, room, await user('eln'))
    expect((await authenticated(none)).identity.permissions).toBe(PRESENCE)
  })

  it('a room with no ACL record denies every ID token (a missing record is never "no restriction")', async () => {
    const room = fresh('no-record')
    // Content written through an access token: the document exists, the ACL record does not.
    const seed = await join(server, room, await writerToken(room))
    seed.sendUpdate(editor().append('confidential'))
    await seed.saved(1)
    const fin = await connect(server, room, await user('fin', ['eng']))
    await expectRefused(fin, 'forbidden', CloseCode.forbidden)
  })

  it('access tokens grant by exact id and by prefix*, with no ACL record, and match nothing else', async () => {
    const token = await accessToken({ userId: 'gil', rooms: { 'org1:*': ['room:write'], 'org3:doc': ['room:read'] } })
    const prefixed = await join(server, 'org1:doc-a', token)
    expect((await authenticated(prefixed)).identity.permissions).toBe(WRITE)
    prefixed.sendUpdate(editor().append('by prefix'))
    await prefixed.saved(1)
    expect(textOf(liveDoc(server, 'org1:doc-a'))).toBe('by prefix')

    const exact = await join(server, 'org3:doc', token)
    expect((await authenticated(exact)).identity.permissions).toBe(READ)

    for (const room of ['org2:x', 'org1', 'org3:doc2', 'org10:doc']) {
      await expectRefused(await connect(server, room, token), 'forbidden', CloseCode.forbidden)
    }
  })

  it('an access token is not narrowed by the stored ACL (its grants are the whole answer)', async () => {
    const room = fresh('access-vs-acl')
    await createRoom(server, { id: room, defaultAccesses: [], usersAccesses: { gus: [] } })
    const gus = await join(server, room, await accessToken({ userId: 'gus', rooms: { [room]: ['room:write'] } }))
    expect((await authenticated(gus)).identity.permissions).toBe(WRITE)
  })
})

// --- readers -----------------------------------------------------------------------------------

describe('a reader (room:read)', () => {
  const acl = {
    defaultAccesses: [],
    usersAccesses: { wes: ['room:write'], wyn: ['room:write'], rae: ['room:read'], pia: ['room:presence:write'] },
  } satisfies Omit<Parameters<typeof createRoom>[1], 'id'>

  it("syncs, then sees others' writes and presence live, and is never asked for its state", async () => {
    const room = fresh('reader-sees')
    await createRoom(server, { id: room, ...acl })
    const wes = await join(server, room, await user('wes'))
    const edits = editor()
    wes.sendUpdate(edits.append('before'))
    await wes.saved(1)

    const rae = await connect(server, room, await user('rae'))
    expect((await authenticated(rae)).identity.permissions).toBe(READ)
    await rae.next('sync-step-2')
    expect(textOf(rae.doc)).toBe('before')

    wes.sendUpdate(edits.append(' after'))
    await until('the reader has the live write', rae.doc, ['update'], () => textOf(rae.doc) === 'before after')
    wes.send(awarenessFrame(501, 1, { name: 'Wes' }))
    await seesPresence(rae, 501)

    await barrier(rae)
    expect(kinds(rae)).not.toContain('sync-step-1')
    expect(kinds(rae)).not.toContain('error')
  })

  it('its updates and sync steps 2 are never applied, stored (even after a restart) or relayed; one read_only notice', async () => {
    const own = await start({ authenticate: undefined })
    const room = fresh('reader-drops')
    await createRoom(own, { id: room, ...acl })
    const wes = await join(own, room, await user('wes'))
    const wyn = await join(own, room, await user('wyn'))
    const rae = await join(own, room, await user('rae'))

    const hostile = editor()
    for (let i = 0; i < 10; i++) rae.sendUpdate(hostile.append(`reader-${i}`))
    for (let i = 10; i < 20; i++) rae.send(encodeFrame(writeSyncStep2, hostile.append(`reader-${i}`)))
    await barrier(rae) // the server has handled all 20 writes

    // A later write by someone else reaches the observer, and is stored: the reader's would be first.
    wyn.sendUpdate(editor().append('later'))
    await until('the observer has the later write', wes.doc, ['update'], () => textOf(wes.doc).includes('later'))
    await wyn.saved(1)

    const id = hostile.doc.clientID
    expect(hasClient(liveDoc(own, room), id)).toBe(false)
    expect(textOf(liveDoc(own, room))).toBe('later')
    expect(hasClient(wes.doc, id)).toBe(false)
    expect(wes.messages.some((m) => m.kind === 'update' && Y.decodeUpdate(m.update).structs.some((s) => s.id.client === id))).toBe(false)
    expect(hasClient(await storedDoc(own, room), id)).toBe(false)
    // One notice for 20 refused writes (at most one a second); never asked for state. The refused
    // writes are counted as handled (PROTOCOL.md, saved), so a client's acknowledgements stay aligned.
    expect(errorCodes(rae)).toEqual(['read_only'])
    await rae.saved(20)
    expect(kinds(rae)).not.toContain('sync-step-1')
    expect(rae.socket.readyState).toBe(rae.socket.OPEN)

    for (const c of [wes, wyn, rae]) c.close()
    const again = await own.restart()
    track(again)
    const reloaded = await storedDoc(again, room)
    expect(hasClient(reloaded, id)).toBe(false)
    expect(textOf(reloaded)).toBe('later')
    await again.stop()
  })

  it('with room:presence:write its presence reaches others; without it, dropped (presence_forbidden) and never relayed', async () => {
    const room = fresh('reader-presence')
    await createRoom(server, { id: room, ...acl })
    const wes = await join(server, room, await user('wes'))
    const pia = await join(server, room, await user('pia'))
    const rae = await join(server, room, await user('rae'))
    expect((await authenticated(pia)).identity.permissions).toBe(PRESENCE)

    pia.send(awarenessFrame(601, 1, { name: 'Pia' }))
    await seesPresence(wes, 601)
    await seesPresence(rae, 601)

    rae.send(awarenessFrame(602, 1, { name: 'Rae' }))
    await barrier(rae)
    pia.send(awarenessFrame(601, 2, { name: 'Pia', cursor: 3 }))
    await seesPresence(wes, 601, 2)
    await seesPresence(rae, 601, 2)

    expect(awarenessSeen(wes).some((e) => e.clientID === 602)).toBe(false)
    expect(awarenessSeen(pia).some((e) => e.clientID === 602)).toBe(false)
    expect(errorCodes(rae)).toEqual(['presence_forbidden'])
    // Presence is not write: pia's document writes are dropped all the same.
    pia.sendUpdate(editor().append('pia'))
    await pia.next('error', (m) => m.code === 'read_only')
    expect(errorCodes(pia)).toEqual(['read_only'])
  })

  it('the stock y-websocket client as a reader (?token= in compatibility mode) syncs, and its edits reach no one', async () => {
    const room = fresh('stock-reader')
    await createRoom(server, { id: room, ...acl })
    const wes = await join(server, room, await user('wes'))
    const wyn = await join(server, room, await user('wyn'))
    const edits = editor()
    wes.sendUpdate(edits.append('hello'))
    await wes.saved(1)

    const peer = stockPeer(server.syncUrl, room, { params: { token: await user('rae') } })
    peers.push(peer)
    await synced(peer)
    expect(textOf(peer.doc)).toBe('hello')

    peer.doc.getText('t').insert(0, 'stock ')
    // Barrier on the stock client's socket: a sync step 1 after its edit, answered in order.
    const ws = peer.provider.ws as unknown as WsSocket
    const answered = new Promise<void>((resolve) => {
      const onMessage = (data: Buffer): void => {
        if (decodeServerMessage(new Uint8Array(data)).kind !== 'sync-step-2') return
        ws.off('message', onMessage)
        resolve()
      }
      ws.on('message', onMessage)
    })
    ws.send(encodeFrame(writeSyncStep1, Y.encodeStateVector(peer.doc)))
    await withDeadline("the stock reader's barrier", answered)

    wyn.sendUpdate(editor().append('later'))
    await until('the observer has the later write', wes.doc, ['update'], () => textOf(wes.doc).includes('later'))
    await until('the stock reader has the later write too', peer.doc, ['update'], () => textOf(peer.doc).includes('later'))
    expect(textOf(wes.doc)).not.toContain('stock')
    expect(textOf(liveDoc(server, room))).not.toContain('stock')
    expect(hasClient(liveDoc(server, room), peer.doc.clientID)).toBe(false)
  })
})

// --- live changes ------------------------------------------------------------------------------

describe('live ACL changes', () => {
  it('a writer downgraded to reader hears access-changed 1 within 100 ms and its very next write is dropped', async () => {
    const room = fresh('downgrade')
    await createRoom(server, { id: room, defaultAccesses: [], usersAccesses: { bob: ['room:write'] } })
    const bob = await join(server, room, await user('bob'))
    const times = arrivalTimes(bob)
    const edits = editor()
    bob.sendUpdate(edits.append('as writer'))
    await bob.saved(1)

    const { sentAt, respondedAt } = await updateRoom(server, room, { usersAccesses: { bob: ['room:read'] } })
    const changed = await bob.next('access-changed')
    expect(changed.permissions).toBe(READ)
    const at = times[bob.messages.indexOf(changed)]!
    console.log(`access-changed: ${(at - respondedAt).toFixed(1)} ms after the REST response, ${(at - sentAt).toFixed(1)} ms after the request was sent`)
    expect(at - respondedAt).toBeLessThan(100)

    bob.sendUpdate(edits.append(' as reader'))
    await bob.next('error', (m) => m.code === 'read_only')
    await barrier(bob)
    expect(textOf(liveDoc(server, room))).toBe('as writer')
    expect(textOf(await storedDoc(server, room))).toBe('as writer')
    // The dropped write is counted as handled, never stored.
    await bob.saved(2)
  })

  it('a reader upgraded to writer hears access-changed 7, is sent a sync step 1, and its next write is applied', async () => {
    const room = fresh('upgrade')
    await createRoom(server, { id: room, defaultAccesses: [], usersAccesses: { cat: ['room:read'] } })
    const cat = await join(server, room, await user('cat'))
    expect(kinds(cat)).not.toContain('sync-step-1')

    await updateRoom(server, room, { usersAccesses: { cat: ['room:write'] } })
    const changed = await cat.next('access-changed')
    expect(changed.permissions).toBe(WRITE)
    await nextAfter(cat, 'sync-step-1', cat.messages.indexOf(changed))

    cat.sendUpdate(editor().append('now a writer'))
    await cat.saved(1)
    expect(textOf(liveDoc(server, room))).toBe('now a writer')
    expect(errorCodes(cat)).toEqual([])
  })

  it('removing a user entry falls back to the groups, or else to the defaults', async () => {
    const room = fresh('entry-removed')
    await createRoom(server, {
      id: room,
      defaultAccesses: ['room:read'],
      usersAccesses: { dan: ['room:write'], eve: ['room:write'] },
      groupsAccesses: { eng: ['room:presence:write'] },
    })
    const dan = await join(server, room, await user('dan'))
    const eve = await join(server, room, await user('eve', ['eng']))
    await updateRoom(server, room, { usersAccesses: { dan: null, eve: null } })
    expect((await dan.next('access-changed')).permissions).toBe(READ)
    expect((await eve.next('access-changed')).permissions).toBe(PRESENCE)
    const record = (await rest(server, 'GET', `/v1/rooms/${room}`)).body as { usersAccesses: Record<string, unknown> }
    expect(record.usersAccesses).toEqual({})
  })

  it('losing all access closes the session with revoked (4403), from a user entry or from the defaults', async () => {
    const room = fresh('all-removed')
    await createRoom(server, { id: room, defaultAccesses: ['room:read'], usersAccesses: { fay: ['room:write'] } })
    const fay = await join(server, room, await user('fay'))
    const guy = await join(server, room, await user('guy'))
    await updateRoom(server, room, { defaultAccesses: [], usersAccesses: { fay: [] } })
    for (const client of [fay, guy]) {
      expect((await client.closed).code).toBe(CloseCode.forbidden)
      expect(client.messages.at(-1)).toMatchObject({ kind: 'error', code: 'revoked' })
    }
  })

  it('POST /v1/revoke closes the user in every room (4403 revoked), leaves others, and refuses the old token', async () => {
    const [roomA, roomB] = [fresh('revoke-a'), fresh('revoke-b')]
    for (const id of [roomA, roomB]) await createRoom(server, { id, defaultAccesses: ['room:write'] })
    const token = await user('hal')
    const halA = await join(server, roomA, token)
    const halB = await join(server, roomB, token)
    const ivy = await join(server, roomA, await user('ivy'))

    const res = await rest(server, 'POST', '/v1/revoke', { userId: 'hal' })
    expect(res).toEqual({ status: 200, body: { closed: 2 } })
    for (const client of [halA, halB]) {
      expect((await client.closed).code).toBe(CloseCode.forbidden)
      expect(client.messages.at(-1)).toMatchObject({ kind: 'error', code: 'revoked' })
    }
    await barrier(ivy)
    expect(errorCodes(ivy)).toEqual([])
    await expectRefused(await connect(server, roomA, token), 'revoked', CloseCode.forbidden)
  })

  it("a revoke scoped to one room closes only that room's sessions", async () => {
    const [roomA, roomB] = [fresh('revoke-one-a'), fresh('revoke-one-b')]
    for (const id of [roomA, roomB]) await createRoom(server, { id, defaultAccesses: ['room:write'] })
    const token = await user('jay')
    const inA = await join(server, roomA, token)
    const inB = await join(server, roomB, token)
    expect(await rest(server, 'POST', '/v1/revoke', { userId: 'jay', roomId: roomA })).toEqual({ status: 200, body: { closed: 1 } })
    expect((await inA.closed).code).toBe(CloseCode.forbidden)
    inB.sendUpdate(editor().append('still here'))
    await inB.saved(1)
    expect(errorCodes(inB)).toEqual([])
  })

  it('DELETE of the room closes its sessions with room_not_found (4404)', async () => {
    const room = fresh('deleted')
    await createRoom(server, { id: room, defaultAccesses: ['room:read'], usersAccesses: { kit: ['room:write'] } })
    const kit = await join(server, room, await user('kit'))
    const reader = await join(server, room, await user('lou'))
    expect((await rest(server, 'DELETE', `/v1/rooms/${room}`)).status).toBe(204)
    for (const client of [kit, reader]) {
      expect((await client.closed).code).toBe(CloseCode.roomDeleted)
      expect(client.messages.at(-1)).toMatchObject({ kind: 'error', code: 'room_not_found' })
    }
  })
})

// --- expiry and refresh ------------------------------------------------------------------------

describe('token expiry and refresh inside the socket', () => {
  it('an expired session is told token_expired, then closed with 4401 when no fresh token arrives', async () => {
    const room = fresh('expiry')
    await createRoom(server, { id: room, defaultAccesses: ['room:write'] })
    const { token, expiresAt } = await soonExpiring('max')
    const max = await join(server, room, token)
    const times = arrivalTimes(max)
    expect((await authenticated(max)).identity.expiresAt).toBe(expiresAt)

    const notice = await max.next('error', (m) => m.code === 'token_expired')
    const noticeAt = times[max.messages.indexOf(notice)]!
    expect(max.socket.readyState).toBe(max.socket.OPEN) // a notice, not yet the end
    expect((await max.closed).code).toBe(CloseCode.unauthorized)
    const closedAt = performance.now()
    expect(errorCodes(max)).toEqual(['token_expired', 'token_expired'])
    expect(closedAt - noticeAt).toBeGreaterThanOrEqual(GRACE_MS - 50)
  })

  it('a fresh token sent during the grace keeps the session open and writing', async () => {
    const room = fresh('refresh')
    await createRoom(server, { id: room, defaultAccesses: ['room:write'] })
    const { token } = await soonExpiring('ned')
    const ned = await join(server, room, token)
    // Same token, connected later: its grace ends no earlier than ned's would have.
    const control = await join(server, room, token)

    await ned.next('error', (m) => m.code === 'token_expired')
    const freshToken = await idToken({ userId: 'ned' })
    ned.send(encodeFrame(writeAuth, freshToken))
    const again = await authenticated(ned, 1)
    expect(again.identity.permissions).toBe(WRITE)
    expect(again.identity.expiresAt).toBeGreaterThan(Date.now() + 60_000)

    // The control session's close marks the end of the grace period.
    expect((await control.closed).code).toBe(CloseCode.unauthorized)
    ned.sendUpdate(editor().append('after the grace'))
    await ned.saved(1)
    expect(ned.socket.readyState).toBe(ned.socket.OPEN)
    expect(errorCodes(ned)).toEqual(['token_expired'])
    expect(textOf(liveDoc(server, room))).toBe('after the grace')
  })

  it('re-authenticating with a token that grants less takes effect without reconnecting', async () => {
    const room = fresh('reauth-less')
    await createRoom(server, { id: room, defaultAccesses: [], usersAccesses: { oli: ['room:write'], pat: ['room:read'] } })

    // Another user, who may only read.
    const first = await join(server, room, await user('oli'))
    const edits = editor()
    first.sendUpdate(edits.append('a'))
    await first.saved(1)
    first.send(encodeFrame(writeAuth, await user('pat')))
    const asPat = await authenticated(first, 1)
    expect(asPat.identity.permissions).toBe(READ)
    expect(asPat.identity.actor).toMatchObject({ kind: 'user', userId: 'pat' })
    first.sendUpdate(edits.append('b'))
    await first.next('error', (m) => m.code === 'read_only')

    // The same user, through an access token for room:read.
    const second = await join(server, room, await user('oli'))
    second.send(encodeFrame(writeAuth, await accessToken({ userId: 'oli', rooms: { [room]: ['room:read'] } })))
    expect((await authenticated(second, 1)).identity.permissions).toBe(READ)
    second.sendUpdate(editor().append('c'))
    await second.next('error', (m) => m.code === 'read_only')

    await barrier(first)
    await barrier(second)
    expect(textOf(liveDoc(server, room))).toBe('a')
    expect(first.socket.readyState).toBe(first.socket.OPEN)
    expect(second.socket.readyState).toBe(second.socket.OPEN)
  })

  it('a token already expired at connect is refused with token_expired (4401) and nothing of the room', async () => {
    const room = fresh('expired-at-connect')
    await roomWithContent(room, { defaultAccesses: ['room:write'] })
    const longAgo = await idToken({ userId: 'quin' }, { ttlSeconds: 60, now: Date.now() - 3_600_000 })
    await expectRefused(await connect(server, room, longAgo), 'token_expired', CloseCode.unauthorized)
    // Expired a couple of seconds ago: inside the verifier's clock tolerance, still refused.
    const justNow = await idToken({ userId: 'quin' }, { ttlSeconds: 1, now: Date.now() - 3_000 })
    await expectRefused(await connect(server, room, justNow), 'token_expired', CloseCode.unauthorized)
  })
})

// --- bad tokens, anonymous sessions, identity headers ------------------------------------------

describe('bad credentials', () => {
  const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
  const exp = (): number => Math.floor(Date.now() / 1000) + 600

  const cases: Array<[string, () => Promise<string>, string]> = [
    ['signed with another secret', async () => (await mintIdToken('another-secret-of-a-decent-length-000', { userId: 'rex' })).token, 'unauthorized'],
    ['alg: none', async () => `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: 'rex', exp: exp(), k: 'id' })}.`, 'unauthorized'],
    ['expired', () => idToken({ userId: 'rex' }, { ttlSeconds: 60, now: Date.now() - 600_000 }), 'token_expired'],
    ['garbage', async () => 'not-a-jwt-at-all', 'unauthorized'],
    ['a valid token with its signature cut off', async () => `${(await user('rex')).split('.').slice(0, 2).join('.')}.`, 'unauthorized'],
  ]

  it.each(cases)('a token %s is refused (4401) and nothing of the room is sent', async (_label, make, code) => {
    const room = fresh('bad-token')
    await roomWithContent(room, { defaultAccesses: ['room:write'] })
    await expectRefused(await connect(server, room, await make()), code, CloseCode.unauthorized)
  })

  it('no token, without allowAnonymous, is refused with unauthorized (4401)', async () => {
    const room = fresh('no-token')
    await roomWithContent(room, { defaultAccesses: ['room:write'] })
    await expectRefused(await connect(server, room, null), 'unauthorized', CloseCode.unauthorized)
  })

  it('identity headers are ignored without trustIdentityHeaders', async () => {
    const room = fresh('headers-ignored')
    await roomWithContent(room, { defaultAccesses: [], usersAccesses: { ada: ['room:write'] } })
    const client = await headerClient(server.syncUrl, room, { 'x-user-id': 'ada', 'x-group-ids': 'eng' })
    clients.push(client)
    await expectRefused(client, 'unauthorized', CloseCode.unauthorized)
  })
})

describe('anonymous sessions and a trusted gateway (allowAnonymous, trustIdentityHeaders)', () => {
  let gateway: TestServer
  beforeAll(async () => {
    gateway = await start({ authenticate: undefined, allowAnonymous: true, trustIdentityHeaders: true })
  })

  it("an anonymous session gets the room's defaults and nothing else", async () => {
    const room = fresh('anonymous')
    await createRoom(gateway, {
      id: room,
      defaultAccesses: ['room:read'],
      // Entries that would grant write if they applied: they never do to an anonymous session.
      usersAccesses: { anonymous: ['room:write'] },
      groupsAccesses: { anonymous: ['room:write'] },
    })
    const anon = await join(gateway, room, null)
    const hello = await authenticated(anon)
    expect(hello.identity.permissions).toBe(READ)
    expect(hello.identity.actor).toMatchObject({ kind: 'anonymous', sessionId: expect.any(String) })
    anon.sendUpdate(editor().append('anon'))
    await anon.next('error', (m) => m.code === 'read_only')
    await barrier(anon)
    expect(textOf(liveDoc(gateway, room))).toBe('')

    const closedRoom = fresh('anonymous-closed')
    await createRoom(gateway, { id: closedRoom, defaultAccesses: [], usersAccesses: { anonymous: ['room:write'] } })
    await expectRefused(await connect(gateway, closedRoom, null), 'forbidden', CloseCode.forbidden)
    await expectRefused(await connect(gateway, fresh('anonymous-no-record'), null), 'forbidden', CloseCode.forbidden)
  })

  it("x-user-id and x-group-ids give that user's and those groups' access; a token wins over them", async () => {
    const room = fresh('headers')
    await createRoom(gateway, {
      id: room,
      defaultAccesses: [],
      usersAccesses: { ada: ['room:write'], bea: ['room:read'] },
      groupsAccesses: { eng: ['room:presence:write'] },
    })
    const ada = await headerClient(gateway.syncUrl, room, { 'x-user-id': 'ada', 'x-group-ids': 'eng' })
    clients.push(ada)
    const adaHello = await authenticated(ada)
    expect(adaHello.identity.permissions).toBe(WRITE)
    expect(adaHello.identity.actor).toEqual({ kind: 'user', userId: 'ada' })
    ada.sendUpdate(editor().append('from the gateway'))
    await ada.saved(1)

    const grouped = await headerClient(gateway.syncUrl, room, { 'x-user-id': 'cam', 'x-group-ids': 'ops, eng' })
    clients.push(grouped)
    expect((await authenticated(grouped)).identity.permissions).toBe(PRESENCE)

    const withToken = await headerClient(gateway.syncUrl, room, { 'x-user-id': 'ada' }, { token: await user('bea') })
    clients.push(withToken)
    const beaHello = await authenticated(withToken)
    expect(beaHello.identity.permissions).toBe(READ)
    expect(beaHello.identity.actor).toMatchObject({ userId: 'bea' })
  })
})

// --- the authorize and authenticate seams ------------------------------------------------------

describe('the authorize seam', () => {
  let rule: Authorize = (session) => session.permissions
  const calls: Array<{ userId: string; room: string; permissions: number }> = []
  let guarded: TestServer
  beforeAll(async () => {
    guarded = await start({
      authenticate: undefined,
      authorize: (session: Session, room) => {
        calls.push({ userId: session.actor.kind === 'user' ? session.actor.userId : '?', room: room.id, permissions: session.permissions })
        return rule(session, room)
      },
    })
  })
  afterEach(() => {
    rule = (session) => session.permissions
    calls.length = 0
  })

  it('can narrow a writer to a reader', async () => {
    const room = fresh('authorize-narrow')
    await createRoom(guarded, { id: room, defaultAccesses: ['room:write'] })
    rule = (session) => session.permissions & READ
    const uma = await join(guarded, room, await user('uma'))
    expect((await authenticated(uma)).identity.permissions).toBe(READ)
    expect(calls).toEqual([{ userId: 'uma', room, permissions: WRITE }])
    uma.sendUpdate(editor().append('x'))
    await uma.next('error', (m) => m.code === 'read_only')
    await barrier(uma)
    expect(textOf(liveDoc(guarded, room))).toBe('')
    expect(kinds(uma)).not.toContain('sync-step-1')
  })

  it('can deny: forbidden with its reason, close 4403, nothing of the room', async () => {
    const room = fresh('authorize-deny')
    await createRoom(guarded, { id: room, defaultAccesses: ['room:write'] })
    rule = () => ({ denied: true, reason: 'plan-expired' })
    const vic = await connect(guarded, room, await user('vic'))
    await expectRefused(vic, 'forbidden', CloseCode.forbidden)
    expect(vic.messages[0]).toEqual({ kind: 'error', code: 'forbidden', message: 'plan-expired' })
  })

  it('runs again on every ACL change, and its answer then applies live', async () => {
    const room = fresh('authorize-live')
    await createRoom(guarded, { id: room, defaultAccesses: ['room:write'] })
    const wil = await join(guarded, room, await user('wil'))
    expect(calls).toHaveLength(1)

    await updateRoom(guarded, room, { metadata: { title: 'unchanged access' } })
    expect(calls).toHaveLength(2)
    expect(kinds(wil)).not.toContain('access-changed')

    rule = () => READ
    await updateRoom(guarded, room, { metadata: { title: 'narrowed' } })
    expect(calls).toHaveLength(3)
    expect((await wil.next('access-changed')).permissions).toBe(READ)

    rule = () => ({ denied: true, reason: 'suspended' })
    await updateRoom(guarded, room, { metadata: { title: 'denied' } })
    expect(calls).toHaveLength(4)
    expect((await wil.closed).code).toBe(CloseCode.forbidden)
    expect(wil.messages.at(-1)).toEqual({ kind: 'error', code: 'forbidden', message: 'suspended' })
  })
})

describe('a custom authenticate', () => {
  const refusing: Authenticate = (credentials) => {
    switch (credentials.token) {
      case 'ok':
        return { actor: { kind: 'user', userId: 'yan' }, permissions: WRITE }
      case 'revoked':
        return { refused: 'revoked', reason: 'r' }
      case 'expired':
        return { refused: 'token_expired', reason: 'e' }
      case 'gone':
        return { refused: 'room_not_found', reason: 'g' }
      case 'no':
        return { refused: 'forbidden', reason: 'f' }
      default:
        return { refused: 'unauthorized', reason: 'u' }
    }
  }
  let custom: TestServer
  beforeAll(async () => {
    custom = await start({ authenticate: refusing })
  })

  it.each([
    ['revoked', 'revoked', CloseCode.forbidden],
    ['expired', 'token_expired', CloseCode.unauthorized],
    ['gone', 'room_not_found', CloseCode.roomDeleted],
    ['no', 'forbidden', CloseCode.forbidden],
    ['anything', 'unauthorized', CloseCode.unauthorized],
  ])('a refusal for token "%s" reaches the client as %s and closes with %i', async (token, code, closeCode) => {
    const room = fresh('custom-auth')
    const seed = await join(custom, room, 'ok')
    seed.sendUpdate(editor().append('confidential'))
    await seed.saved(1)
    await expectRefused(await connect(custom, room, token), code, closeCode)
  })
})

// --- cost --------------------------------------------------------------------------------------

describe('cost of the per-message check', () => {
  it('20 000 updates from a writer (applied, stored) vs from a reader (dropped)', async () => {
    const N = 20_000
    const fast = await start({
      authenticate: undefined,
      limits: { messagesPerSecond: 1_000_000, messageBurst: 1_000_000, bytesPerSecond: 1e9, byteBurst: 1e9 },
    })
    const room = fresh('cost')
    const edits = editor()
    const updates = Array.from({ length: N }, (_, i) => edits.append(String(i % 10)))

    const writer = await join(fast, room, await accessToken({ userId: 'w', rooms: { [room]: ['room:write'] } }))
    const reader = await join(fast, room, await accessToken({ userId: 'r', rooms: { [room]: ['room:read'] } }))

    const t0 = performance.now()
    for (const u of updates) writer.sendUpdate(u)
    await writer.saved(N, 60_000)
    const writerMs = performance.now() - t0

    const readerEdits = editor()
    const dropped = Array.from({ length: N }, (_, i) => readerEdits.append(String(i % 10)))
    const t1 = performance.now()
    for (const u of dropped) reader.sendUpdate(u)
    await barrier(reader)
    const readerMs = performance.now() - t1

    expect(textOf(liveDoc(fast, room))).toHaveLength(N)
    expect(hasClient(liveDoc(fast, room), readerEdits.doc.clientID)).toBe(false)
    expect(errorCodes(reader)).toEqual(['read_only'])
    console.log(
      `per message, end to end in one process: writer ${((writerMs * 1000) / N).toFixed(2)} µs (applied + stored + acknowledged), ` +
        `reader ${((readerMs * 1000) / N).toFixed(2)} µs (decoded + dropped by the permission check)`,
    )
  })
})

// --- changes that race a connection still being set up ----------------------------------------

describe('access changes while a connection is still authenticating or joining', () => {
  let gated: GatedStore
  let racy: TestServer
  beforeAll(async () => {
    const dataDir = makeDataDir()
    gated = await gatedStore(dataDir)
    racy = await start({ authenticate: undefined, store: gated.store }, dataDir)
  })

  it('a downgrade made while the room loads for a joining writer applies to it once it is in', async () => {
    const room = fresh('race-join-downgrade')
    await createRoom(racy, { id: room, defaultAccesses: [], usersAccesses: { zed: ['room:write'] } })
    const hold = gated.holdNext('load', room)
    const zed = await connect(racy, room, await user('zed'))
    await hold.held // zed's permissions are decided (write); the room is loading

    await updateRoom(racy, room, { usersAccesses: { zed: ['room:read'] } })
    hold.release()
    await zed.next('sync-step-2')

    zed.sendUpdate(editor().append('written after the downgrade'))
    await barrier(zed)
    const active = (await rest(racy, 'GET', `/v1/rooms/${room}/active-users`)).body as { data: Array<{ permissions: string[] }> }
    expect(active.data.map((u) => u.permissions)).toEqual([['room:read']])
    expect(textOf(liveDoc(racy, room))).toBe('')
    expect(errorCodes(zed)).toEqual(['read_only'])
  })

  it('removing all access while the room loads for a joining user keeps it out (4403)', async () => {
    const room = fresh('race-join-removed')
    await createRoom(racy, { id: room, defaultAccesses: [], usersAccesses: { zoe: ['room:write'] } })
    const hold = gated.holdNext('load', room)
    const zoe = await connect(racy, room, await user('zoe'))
    await hold.held

    await updateRoom(racy, room, { usersAccesses: { zoe: [] } })
    hold.release()
    const outcome = await zoe.next('sync-step-2').then(
      () => 'got the document',
      () => 'closed',
    )
    expect(outcome).toBe('closed')
    expect((await zoe.closed).code).toBe(CloseCode.forbidden)
  })

  it("a revoke made while a connection's permissions are being decided closes it too (4403 revoked)", async () => {
    const room = fresh('race-auth-revoke')
    await createRoom(racy, { id: room, defaultAccesses: ['room:write'] })
    const hold = gated.holdNext('getRoom', room)
    const ray = await connect(racy, room, await user('ray'))
    await hold.held // ray's token is verified and not revoked; its permissions are being decided

    await rest(racy, 'POST', '/v1/revoke', { userId: 'ray' })
    hold.release()
    const outcome = await ray.next('sync-step-2').then(
      () => 'got the document',
      () => 'closed',
    )
    expect(outcome).toBe('closed')
    expect((await ray.closed).code).toBe(CloseCode.forbidden)
    expect(ray.messages.at(-1)).toMatchObject({ kind: 'error', code: 'revoked' })
  })

  it('of two re-authentications in a row, the token sent last decides, whichever finishes first', async () => {
    const room = fresh('race-reauth-order')
    await createRoom(racy, { id: room, defaultAccesses: [], usersAccesses: { oak: ['room:write'], elm: ['room:read'] } })
    const elmToken = await user('elm')
    const client = await join(racy, room, elmToken)

    const hold = gated.holdNext('getRoom', room)
    client.send(encodeFrame(writeAuth, await user('oak'))) // oak may write; its decision is held
    await hold.held
    client.send(encodeFrame(writeAuth, elmToken)) // sent last: the session must end up as elm, a reader
    // elm's re-authentication is answered while oak's is still being decided; then oak's finishes.
    // (This suits a fix that drops a superseded decision; one that queues re-authentications would
    // answer elm only after oak, and this wait would time out: release first in that case.)
    await client.next('authenticated', (m) => authenticatedMessages(client).indexOf(m) >= 1 && (m.identity.actor as { userId?: string }).userId === 'elm')
    hold.release()
    await barrier(client) // oak's held decision has been acted on by now

    const last = authenticatedMessages(client).at(-1)!
    expect(last.identity.actor).toMatchObject({ userId: 'elm' })
    expect(last.identity.permissions).toBe(READ)
    client.sendUpdate(editor().append('x'))
    await barrier(client)
    expect(errorCodes(client)).toEqual(['read_only'])
    expect(textOf(liveDoc(racy, room))).toBe('')
  })
})

describe('re-authentication that loses presence', () => {
  it("removes the session's presence at the others, as an ACL change that loses presence does", async () => {
    const room = fresh('reauth-presence')
    await createRoom(server, { id: room, defaultAccesses: [], usersAccesses: { wes: ['room:write'], pia: ['room:presence:write'], rae: ['room:read'] } })
    const wes = await join(server, room, await user('wes'))

    // Through an ACL change: pia's state is removed at wes.
    const viaAcl = await join(server, room, await user('pia'))
    viaAcl.send(awarenessFrame(801, 1, { name: 'Pia' }))
    await seesPresence(wes, 801)
    await updateRoom(server, room, { usersAccesses: { pia: ['room:read'] } })
    await wes.next('awareness', (m) => readAwarenessUpdate(m.update).some((e) => e.clientID === 801 && e.state === 'null'))

    // Through a re-auth as a reader: the same is expected.
    await updateRoom(server, room, { usersAccesses: { pia: ['room:presence:write'] } })
    const viaReauth = await join(server, room, await user('pia'))
    viaReauth.send(awarenessFrame(802, 1, { name: 'Pia' }))
    await seesPresence(wes, 802)
    viaReauth.send(encodeFrame(writeAuth, await user('rae')))
    expect((await authenticated(viaReauth, 1)).identity.permissions).toBe(READ)
    await barrier(viaReauth)
    // Barrier at wes: a later presence change by someone else reaches wes after any removal.
    const other = await join(server, room, await user('wes'))
    other.send(awarenessFrame(803, 1, { name: 'other' }))
    await seesPresence(wes, 803)
    expect(awarenessSeen(wes).some((e) => e.clientID === 802 && e.state === 'null')).toBe(true)
  })
})

describe("permission bits from the app's seams", () => {
  it('are closed under implication: authorize granting write without presence still lets the session show presence', async () => {
    const seam = await start({ authenticate: undefined, authorize: () => PermissionBit.read | PermissionBit.write })
    const room = fresh('bits')
    await createRoom(seam, { id: room, defaultAccesses: ['room:write'] })
    const a = await join(seam, room, await user('ava'))
    const b = await join(seam, room, await user('ben'))
    expect((await authenticated(a)).identity.permissions).toBe(WRITE)
    a.send(awarenessFrame(901, 1, { name: 'Ava' }))
    await barrier(a)
    expect(errorCodes(a)).toEqual([])
    await seesPresence(b, 901)
  })
})
