/**
 * TandemAdmin against a real server with real token authentication: every method round-trips, every
 * failure is a TandemError with the right code, and tokens minted locally open the server's socket.
 */

import { createServer as createNetServer } from 'node:net'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { TandemAdmin } from '../client/admin.ts'
import { type ErrorCode, TandemError } from '../protocol/errors.ts'
import { PermissionBit } from '../protocol/permissions.ts'
import { rawClient, textUpdate } from './support/raw-client.ts'
import { TEST_SECRET, type TestServer, startServer } from './support/server.ts'

const ALL = PermissionBit.read | PermissionBit.presence | PermissionBit.write

const rejection = async (promise: Promise<unknown>): Promise<TandemError> => {
  try {
    await promise
  } catch (err) {
    expect(err).toBeInstanceOf(TandemError)
    return err as TandemError
  }
  throw new Error('expected a rejection')
}
const codeOf = async (promise: Promise<unknown>): Promise<ErrorCode> => (await rejection(promise)).code

/** A port nothing listens on: bound, then released. */
const closedPort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const probe = createNetServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      probe.close(() => resolve(port))
    })
  })

let server: TestServer
let admin: TandemAdmin

beforeEach(async () => {
  server = await startServer({ authenticate: undefined })
  admin = new TandemAdmin({ url: server.httpUrl, secret: TEST_SECRET })
})
afterEach(async () => {
  await server.destroy()
})

describe('rooms', () => {
  it('create, get, list by prefix and page, update with null removal, delete', async () => {
    const created = await admin.createRoom({
      id: 'team a/1',
      defaultAccesses: ['room:read'],
      usersAccesses: { bob: ['room:write'], carol: ['room:read'] },
      groupsAccesses: { eng: ['room:presence:write'] },
      metadata: { title: 'Plan', tags: ['q3'] },
    })
    expect(created).toMatchObject({ id: 'team a/1', defaultAccesses: ['room:read'], usersAccesses: { bob: ['room:write'] }, metadata: { title: 'Plan' } })
    expect(await admin.getRoom('team a/1')).toEqual(created)

    await admin.createRoom({ id: 'team a/2', defaultAccesses: [] })
    await admin.createRoom({ id: 'team b/1', defaultAccesses: [] })

    const first = await admin.listRooms({ prefix: 'team a/', limit: 1 })
    expect(first.data.map((r) => r.id)).toEqual(['team a/1'])
    expect(first.nextCursor).toBe('team a/1')
    const second = await admin.listRooms({ prefix: 'team a/', limit: 1, startingAfter: first.nextCursor! })
    expect(second.data.map((r) => r.id)).toEqual(['team a/2'])
    expect(second.nextCursor).toBeNull()
    const all = await admin.listRooms()
    expect(all).toEqual({ data: [created, expect.objectContaining({ id: 'team a/2' }), expect.objectContaining({ id: 'team b/1' })], nextCursor: null })

    const updated = await admin.updateRoom('team a/1', {
      defaultAccesses: [],
      usersAccesses: { bob: null, dan: ['room:read'] },
      groupsAccesses: { eng: null },
      metadata: { tags: ['q3', 'q4'] },
    })
    expect(updated).toMatchObject({
      id: 'team a/1',
      defaultAccesses: [],
      usersAccesses: { carol: ['room:read'], dan: ['room:read'] },
      groupsAccesses: {},
      metadata: { title: 'Plan', tags: ['q3', 'q4'] },
      createdAt: created.createdAt,
    })
    expect(updated.usersAccesses).not.toHaveProperty('bob')
    expect(await admin.getRoom('team a/1')).toEqual(updated)

    await admin.deleteRoom('team a/1')
    expect(await codeOf(admin.getRoom('team a/1'))).toBe('room_not_found')
    expect(await codeOf(admin.deleteRoom('team a/1'))).toBe('room_not_found')
    expect((await admin.listRooms({ prefix: 'team a/' })).data.map((r) => r.id)).toEqual(['team a/2'])
  })

  // Fastify's Ajv coerces types: a null must not become "" on the way to removing an entry.
  it('a null metadata entry removes it', async () => {
    await admin.createRoom({ id: 'meta', defaultAccesses: [], metadata: { title: 'Plan', owner: 'ada' } })
    const updated = await admin.updateRoom('meta', { metadata: { title: null } })
    expect(updated.metadata).toEqual({ owner: 'ada' })
  })
})

describe('documents', () => {
  it('a service write shows in the history, as JSON and as binary, whole or as a diff', async () => {
    await admin.createRoom({ id: 'doc', defaultAccesses: [] })
    const local = new Y.Doc()
    const hello = textUpdate('hello', local)
    await admin.sendYjsUpdate('doc', hello)

    const history = await admin.history('doc')
    expect(history).toEqual([{ actor: { kind: 'service', name: 'rest' }, at: expect.any(String), writes: 1, bytes: hello.length, clientIDs: [local.clientID] }])
    expect(await admin.getYDoc('doc')).toEqual({ t: 'hello' })

    const whole = new Y.Doc()
    Y.applyUpdate(whole, await admin.getYDocBinary('doc'))
    expect(whole.getText('t').toString()).toBe('hello')

    const other = new Y.Doc()
    Y.applyUpdate(other, hello)
    await admin.sendYjsUpdate('doc', textUpdate('oh, ', other))
    expect(await admin.history('doc', { limit: 1 })).toEqual([expect.objectContaining({ clientIDs: [other.clientID] })])
    expect(await admin.history('doc')).toHaveLength(2)

    const diff = await admin.getYDocBinary('doc', { stateVector: Y.encodeStateVector(local) })
    expect(diff.length).toBeLessThan((await admin.getYDocBinary('doc')).length)
    Y.applyUpdate(local, diff)
    expect(local.getText('t').toString()).toBe('oh, hello')
    expect(await admin.getYDoc('doc')).toEqual({ t: 'oh, hello' })
  })
})

describe('live sessions', () => {
  it('lists a connected user, relays a service write to it, revokes it with 4403, and deletes the room', async () => {
    await admin.createRoom({ id: 'live', defaultAccesses: [], usersAccesses: { ada: ['room:write'] } })
    const { token, expiresAt } = await admin.identifyUser({ userId: 'ada', userInfo: { name: 'Ada' } }, { ttlSeconds: 120 })
    expect(expiresAt).toBeGreaterThan(Date.now() + 100_000)
    const client = await rawClient(server.syncUrl, 'live', { token })
    const hello = await client.next('authenticated')
    expect(hello.identity).toMatchObject({ actor: { kind: 'user', userId: 'ada' }, info: { name: 'Ada' }, permissions: ALL, expiresAt })

    expect(await admin.activeUsers('live')).toEqual([
      {
        connectionId: hello.identity.connectionId,
        userId: 'ada',
        actor: { kind: 'user', userId: 'ada' },
        info: { name: 'Ada' },
        permissions: ['room:write', 'room:presence:write', 'room:read'],
      },
    ])

    await admin.sendYjsUpdate('live', textUpdate('from the backend'))
    await client.next('update')
    expect(client.doc.getText('t').toString()).toBe('from the backend')

    expect(await admin.revoke({ userId: 'ada', roomId: 'live' })).toEqual({ closed: 1 })
    expect((await client.closed).code).toBe(4403)
    expect(await admin.activeUsers('live')).toEqual([])
    expect(await admin.revoke({ userId: 'ada' })).toEqual({ closed: 0 })

    await admin.deleteRoom('live')
    expect(await codeOf(admin.getRoom('live'))).toBe('room_not_found')
    expect(await codeOf(admin.activeUsers('live'))).toBe('room_not_found')
  })
})

describe('locally minted tokens', () => {
  it('an ID token gets the permissions of its groups in the ACL', async () => {
    await admin.createRoom({ id: 'acl', defaultAccesses: [], groupsAccesses: { eng: ['room:presence:write'] } })
    const { token } = await admin.identifyUser({ userId: 'gus', groupIds: ['eng'], sessionId: 'tab-1', tenantId: 'acme' })
    const client = await rawClient(server.syncUrl, 'acl', { token })
    const hello = await client.next('authenticated')
    expect(hello.identity).toMatchObject({
      actor: { kind: 'user', userId: 'gus', sessionId: 'tab-1', tenantId: 'acme' },
      permissions: PermissionBit.read | PermissionBit.presence,
    })
    client.close()
    await client.closed
  })

  it('an access token for org1:* opens org1:doc with no room record, and nothing else', async () => {
    const { token } = await admin.authorize({ userId: 'eve', userInfo: { name: 'Eve' }, rooms: { 'org1:*': ['room:read'] } })
    expect(await codeOf(admin.getRoom('org1:doc'))).toBe('room_not_found')

    const client = await rawClient(server.syncUrl, 'org1:doc', { token })
    const hello = await client.next('authenticated')
    expect(hello.identity).toMatchObject({ actor: { kind: 'user', userId: 'eve' }, info: { name: 'Eve' }, permissions: PermissionBit.read })
    await client.next('sync-step-2')
    client.close()
    await client.closed

    const outside = await rawClient(server.syncUrl, 'org2:doc', { token })
    expect(await outside.next('error')).toMatchObject({ code: 'forbidden' })
    expect((await outside.closed).code).toBe(4403)
  })

  it('refuses to mint bad input, with invalid_request', async () => {
    expect(await codeOf(admin.identifyUser({ userId: '' }))).toBe('invalid_request')
    expect(await codeOf(admin.identifyUser({ userId: 'ada' }, { ttlSeconds: 0 }))).toBe('invalid_request')
    expect(await codeOf(admin.authorize({ userId: 'ada', rooms: { 'x*': ['room:admin' as never] } }))).toBe('invalid_request')
  })
})

describe('errors', () => {
  it("carry the server's code", async () => {
    await admin.createRoom({ id: 'dup', defaultAccesses: [] })
    expect(await codeOf(admin.createRoom({ id: 'dup', defaultAccesses: [] }))).toBe('room_exists')
    expect(await codeOf(admin.createRoom({ id: 'bad', defaultAccesses: ['room:admin' as never] }))).toBe('invalid_request')
    expect(await codeOf(admin.updateRoom('dup', { usersAccesses: { bob: ['nope' as never] } }))).toBe('invalid_request')
    expect(await codeOf(admin.listRooms({ limit: 0 }))).toBe('invalid_request')
    expect(await codeOf(admin.updateRoom('missing', { defaultAccesses: [] }))).toBe('room_not_found')
    expect(await codeOf(admin.sendYjsUpdate('dup', new Uint8Array([1, 2, 3])))).toBe('malformed_message')
    expect(await codeOf(admin.getYDocBinary('dup', { stateVector: new Uint8Array([9, 9]) }))).toBe('malformed_message')
    expect(await codeOf(admin.getRoom('bad'))).toBe('room_not_found')
  })

  it('a wrong secret is unauthorized on every route', async () => {
    const intruder = new TandemAdmin({ url: server.httpUrl, secret: 'not-the-secret' })
    expect(await codeOf(intruder.listRooms())).toBe('unauthorized')
    expect(await codeOf(intruder.createRoom({ id: 'x', defaultAccesses: ['room:write'] }))).toBe('unauthorized')
    expect(await codeOf(intruder.revoke({ userId: 'ada' }))).toBe('unauthorized')
    expect(await codeOf(admin.getRoom('x'))).toBe('room_not_found')
  })

  it('an unreachable server is a server_error with the cause', async () => {
    const offline = new TandemAdmin({ url: `http://127.0.0.1:${await closedPort()}`, secret: TEST_SECRET })
    const err = await rejection(offline.getRoom('x'))
    expect(err.code).toBe('server_error')
    expect(err.cause).toBeInstanceOf(Error)
  })

  it('a response that is not a coded body is coded by its status', async () => {
    const answering = (body: string, status: number) =>
      new TandemAdmin({ url: 'http://tandem.invalid', secret: 's', fetch: async () => new Response(body, { status }) })
    expect(await codeOf(answering('<html>bad gateway</html>', 502).getRoom('x'))).toBe('server_error')
    expect(await codeOf(answering('', 418).getRoom('x'))).toBe('invalid_request')
    expect(await codeOf(answering('{"error":"no_such_code","message":"?"}', 400).getRoom('x'))).toBe('invalid_request')
    expect(await codeOf(answering('{"error":"rate_limited","message":"slow down"}', 429).getRoom('x'))).toBe('rate_limited')
    expect(await codeOf(answering('not json', 200).getRoom('x'))).toBe('server_error')
  })
})

describe('requests', () => {
  it('send the secret, encode room ids and name their body type', async () => {
    const seen: { url: string; headers: Headers; method: string }[] = []
    const recording = new TandemAdmin({
      url: `${server.httpUrl}/`,
      secret: TEST_SECRET,
      fetch: async (input, init) => {
        seen.push({ url: String(input), headers: new Headers(init?.headers), method: init?.method ?? 'GET' })
        return fetch(input, init)
      },
    })
    await recording.createRoom({ id: 'a/b?c#d', defaultAccesses: [] })
    await recording.sendYjsUpdate('a/b?c#d', textUpdate('x'))
    expect(await recording.getYDoc('a/b?c#d')).toEqual({ t: 'x' })
    expect(seen.map((s) => `${s.method} ${s.url.slice(server.httpUrl.length)}`)).toEqual([
      'POST /v1/rooms',
      'PUT /v1/rooms/a%2Fb%3Fc%23d/ydoc',
      'GET /v1/rooms/a%2Fb%3Fc%23d/ydoc',
    ])
    for (const s of seen) expect(s.headers.get('authorization')).toBe(`Bearer ${TEST_SECRET}`)
    expect(seen[0]!.headers.get('content-type')).toBe('application/json')
    expect(seen[1]!.headers.get('content-type')).toBe('application/octet-stream')
    expect(seen[2]!.headers.get('content-type')).toBeNull()
  })
})
