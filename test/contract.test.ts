/**
 * What a backend in another language, the stock client and an operator rely on (SPEC sections 2, 3,
 * 4 and 9): tokens signed with a plain JWT library (jose here, never Tandem's minting), a stock
 * reader told about its refused writes, history that reads its writes, error bodies from the table,
 * revocation for gateway users, rooms first joined with an access token, and deletion racing joins.
 */

import { SignJWT } from 'jose'
import { afterEach, describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'
import { CloseCode, ERROR_TABLE, isErrorCode } from '../protocol/errors.ts'
import { encodeFrame, writeSyncStep1 } from '../protocol/messages.ts'
import { PermissionBit } from '../protocol/permissions.ts'
import { createRoom, gatedStore, rest as accessRest } from './support/access.ts'
import { type RawClient, rawClient, textUpdate } from './support/raw-client.ts'
import { rest } from './support/rest.ts'
import * as prng from 'lib0/prng'
import { pause, seedsFromEnv } from './support/random.ts'
import { TEST_SECRET, type TestServer, makeDataDir, serversPerFile } from './support/server.ts'
import { type StockPeer, stockPeer, synced } from './support/stock-client.ts'
import { until, withDeadline } from './support/wait.ts'

const READ = PermissionBit.read
const WRITE = PermissionBit.read | PermissionBit.presence | PermissionBit.write

const { start } = serversPerFile()
const clients: RawClient[] = []
const peers: StockPeer[] = []
afterEach(() => {
  for (const client of clients.splice(0)) client.close()
  for (const peer of peers.splice(0)) peer.destroy()
  vi.restoreAllMocks()
})

let seq = 0
const fresh = (label: string): string => `contract-${label}-${++seq}`

const connect = async (server: TestServer, room: string, token: string | null, headers?: Record<string, string>): Promise<RawClient> => {
  const client = await rawClient(server.syncUrl, room, { token, ...(headers !== undefined && { headers }) })
  clients.push(client)
  return client
}

/** A JWT as a Python or Go backend signs it: HS256 over the secret's UTF-8 bytes, claims as given. */
const foreignToken = (claims: Record<string, unknown>): Promise<string> =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setExpirationTime('10m').sign(new TextEncoder().encode(TEST_SECRET))

const permissionsOf = async (client: RawClient): Promise<number> => (await client.next('authenticated')).identity.permissions

const refusal = async (client: RawClient): Promise<{ code: number; error: unknown }> => {
  const { code } = await withDeadline('the refusal', client.closed, 5_000)
  const error = client.messages.find((m) => m.kind === 'error')
  return { code, error: error?.kind === 'error' ? error.code : null }
}

describe('access tokens from a backend in any language', () => {
  it('{ sub, perms, exp } signed with the secret is an access token: its perms decide, not the ACL', async () => {
    const server = await start({ authenticate: undefined })
    const room = fresh('foreign')
    // The ACL would let kim write; the backend's token grants read only.
    await createRoom(server, { id: room, defaultAccesses: [], usersAccesses: { kim: ['room:write'] } })
    const kim = await connect(server, room, await foreignToken({ sub: 'kim', perms: { [room]: ['room:read'] } }))
    expect(await permissionsOf(kim)).toBe(READ)
    kim.sendUpdate(textUpdate('not granted'))
    await kim.next('error', (m) => m.code === 'read_only')
    expect(server.app.tandem.registry.get(room)!.doc.getText('t').toString()).toBe('')
  })

  it('the most specific matching pattern decides alone, as the most specific ACL level does', async () => {
    const server = await start({ authenticate: undefined })
    const token = await foreignToken({ sub: 'lea', perms: { 'org:*': ['room:write'], 'org:secret*': ['room:read'], 'org:secret-9': [], '*': ['room:read'] } })
    expect(await permissionsOf(await connect(server, 'org:plan', token))).toBe(WRITE)
    expect(await permissionsOf(await connect(server, 'org:secret-1', token))).toBe(READ)
    expect(await permissionsOf(await connect(server, 'elsewhere', token))).toBe(READ)
    // An exact id beats every prefix: [] shuts lea out of that one room.
    expect(await refusal(await connect(server, 'org:secret-9', token))).toEqual({ code: CloseCode.forbidden, error: 'forbidden' })
  })

  it('refuses claims that contradict each other, never reading them as the other kind', async () => {
    const server = await start({ authenticate: undefined })
    const room = fresh('contradict')
    await createRoom(server, { id: room, defaultAccesses: ['room:write'] })
    for (const claims of [
      { sub: 'max', k: 'id', perms: { [room]: ['room:read'] } },
      { sub: 'max', k: 'acc' },
      { sub: 'max', groups: ['eng'], perms: { [room]: ['room:read'] } },
      { sub: 'max', k: 'other' },
      { sub: 'max', perms: { [room]: ['room:admin'] } },
    ]) {
      expect(await refusal(await connect(server, room, await foreignToken(claims)))).toEqual({ code: CloseCode.unauthorized, error: 'unauthorized' })
    }
    // Without perms it is an ID token (k optional): the room's ACL decides.
    expect(await permissionsOf(await connect(server, room, await foreignToken({ sub: 'max', groups: ['eng'] })))).toBe(WRITE)
  })
})

describe('readers are told their writes go nowhere', () => {
  it('a stock y-websocket reader gets y-protocols permission-denied, at most once a second, and stays connected', async () => {
    const server = await start({ authenticate: undefined, yWebsocketCompat: true })
    const room = fresh('stock-reader')
    await createRoom(server, { id: room, defaultAccesses: [], usersAccesses: { rod: ['room:read'] } })
    const warnings: string[] = []
    let warned: () => void = () => {}
    const firstWarning = new Promise<void>((resolve) => {
      warned = resolve
    })
    vi.spyOn(console, 'warn').mockImplementation((message: unknown) => {
      warnings.push(String(message))
      warned()
    })
    const token = await foreignToken({ sub: 'rod' })
    const reader = stockPeer(server.syncUrl, room, { params: { token } })
    peers.push(reader)
    await synced(reader)
    for (let i = 0; i < 5; i++) reader.doc.getText('t').insert(0, 'x')
    await withDeadline('permission denied', firstWarning)
    // Barrier: a sync step 1 on the same socket is answered after every earlier frame was handled.
    const socket = reader.provider.ws!
    const answered = new Promise<void>((resolve) => socket.addEventListener('message', () => resolve()))
    socket.send(encodeFrame(writeSyncStep1, new Uint8Array([0])))
    await withDeadline('the barrier', answered)
    expect(warnings).toHaveLength(1) // five refused writes within a second: one notice
    expect(warnings[0]).toContain('read_only')
    expect(reader.provider.wsconnected).toBe(true)
    // The room kept nothing of it.
    expect(server.app.tandem.registry.get(room)!.doc.getText('t').toString()).toBe('')
  })
})

describe('history reads its writes', () => {
  it('a write the document already shows is in GET /history at once, even inside a store window', async () => {
    const server = await start({ storeWindowMs: 1_000 })
    const room = fresh('history')
    await createRoom(server, { id: room, defaultAccesses: ['room:write'] })
    const writer = await connect(server, room, null)
    await writer.next('sync-step-2')
    const doc = new Y.Doc()
    writer.sendUpdate(textUpdate('first ', doc))
    await writer.saved(1) // the first after a pause is stored at once; the next waits for the window
    const observer = await connect(server, room, null)
    await observer.next('sync-step-2')
    writer.sendUpdate(textUpdate('second', doc))
    // Relayed once applied: from now on the document shows it.
    await until('the observer sees the second write', observer.socket, ['message'], () => observer.doc.getText('t').toString().includes('second'))
    expect(JSON.stringify((await rest(server.app, 'GET', `/v1/rooms/${room}/ydoc`)).json())).toContain('second')
    const history = await rest(server.app, 'GET', `/v1/rooms/${room}/history`)
    const writes = (history.json() as { data: { writes: number }[] }).data.reduce((n, e) => n + e.writes, 0)
    expect(writes).toBe(2)
  })
})

describe('every REST error is a code from the table, with its status, never echoing unbounded input', () => {
  it.each([
    ['a 2 KB room id', 'GET', `/v1/rooms/${'x'.repeat(2_000)}`, {}, 'invalid_request'],
    ["a 3 KB room id (past the router's parameter limit)", 'GET', `/v1/rooms/${'x'.repeat(3_000)}`, {}, 'invalid_request'],
    ['an unknown route', 'GET', `/v1/nothing/${'y'.repeat(2_000)}`, {}, 'not_found'],
    ['a URL that does not decode', 'GET', '/v1/rooms/%E0%A4%A', {}, 'invalid_request'],
    ['a body that is not JSON', 'POST', '/v1/rooms', { body: `{${'z'.repeat(2_000)}`, headers: { 'content-type': 'application/json' } }, 'invalid_request'],
    ['an unsupported content type', 'POST', '/v1/rooms', { body: 'x', headers: { 'content-type': 'text/xml' } }, 'invalid_request'],
    ['no secret', 'GET', '/v1/rooms', { headers: { authorization: '' } }, 'unauthorized'],
    ['an unknown room', 'GET', `/v1/rooms/${'w'.repeat(256)}`, {}, 'room_not_found'],
  ] as const)('%s', async (_what, method, url, request, code) => {
    const server = await start()
    const res = await rest(server.app, method, url, request)
    const body = res.json() as { error: unknown; message: unknown }
    expect(Object.keys(body).sort()).toEqual(['error', 'message'])
    expect(isErrorCode(body.error) && body.error).toBe(code)
    expect(res.statusCode).toBe(ERROR_TABLE[code].status)
    expect(typeof body.message === 'string' && body.message.length).toBeLessThanOrEqual(210)
    expect(body.message).not.toMatch(/x{300}|y{300}|z{300}|w{300}/)
  })
})

describe('revocation reaches every way in', () => {
  it('a gateway-identified user stays out after POST /v1/revoke until reinstated', async () => {
    const server = await start({ authenticate: undefined, trustIdentityHeaders: true })
    const room = fresh('gateway')
    await createRoom(server, { id: room, defaultAccesses: ['room:write'] })
    const headers = { 'x-user-id': 'gia' }
    const first = await connect(server, room, null, headers)
    expect(await permissionsOf(first)).toBe(WRITE)
    expect((await accessRest(server, 'POST', '/v1/revoke', { userId: 'gia' })).body).toEqual({ closed: 1 })
    expect((await refusal(first)).code).toBe(CloseCode.forbidden)
    // Same headers again: refused, as a token issued before the revocation is.
    expect(await refusal(await connect(server, room, null, headers))).toEqual({ code: CloseCode.forbidden, error: 'revoked' })
    expect((await accessRest(server, 'POST', '/v1/reinstate', { userId: 'gia' })).body).toEqual({ reinstated: true })
    expect(await permissionsOf(await connect(server, room, null, headers))).toBe(WRITE)
  })
})

describe('rooms first joined with an access token', () => {
  it('get a record: listed, readable and deletable like any other; a pattern creates at most its quota', async () => {
    const server = await start({ authenticate: undefined, limits: { accessTokenRoomsPerPattern: 3 } })
    const token = await foreignToken({ sub: 'sam', perms: { 'sq*': ['room:write'], 'sq-exact': ['room:write'] } })
    for (const room of ['sq-1', 'sq-2', 'sq-3']) {
      const writer = await connect(server, room, token)
      await writer.next('sync-step-2')
      writer.sendUpdate(textUpdate(`in ${room}`))
      await writer.saved(1)
    }
    const listed = await rest(server.app, 'GET', '/v1/rooms?prefix=sq')
    expect((listed.json() as { data: { id: string; defaultAccesses: unknown[] }[] }).data.map((r) => [r.id, r.defaultAccesses])).toEqual([
      ['sq-1', []],
      ['sq-2', []],
      ['sq-3', []],
    ])
    expect((await rest(server.app, 'GET', '/v1/rooms/sq-2/ydoc')).json()).toEqual({ t: 'in sq-2' })

    // The fourth room under sq*: past the quota, refused before anything is created.
    expect(await refusal(await connect(server, 'sq-4', token))).toEqual({ code: CloseCode.forbidden, error: 'forbidden' })
    expect((await rest(server.app, 'GET', '/v1/rooms/sq-4')).statusCode).toBe(404)
    // An exact pattern names one room: it is not counted against a prefix's quota.
    expect(await permissionsOf(await connect(server, 'sq-exact', token))).toBe(WRITE)

    expect((await rest(server.app, 'DELETE', '/v1/rooms/sq-1')).statusCode).toBe(204)
    expect((await server.app.tandem.store.load('sq-1')).updates).toEqual([])
    expect(await server.app.tandem.store.getRoom('sq-1')).toBeNull()
  })
})

describe('a join racing DELETE /v1/rooms/:id', () => {
  it('a join that arrives while the store deletes the room waits, then is refused: nothing of the room comes back', async () => {
    const dataDir = makeDataDir()
    const gated = await gatedStore(dataDir)
    const server = await start({ authenticate: undefined, store: gated.store }, dataDir)
    const room = fresh('held-delete')
    await createRoom(server, { id: room, defaultAccesses: ['room:write'] })
    const token = await foreignToken({ sub: 'ned' })
    const before = await connect(server, room, token)
    await before.next('sync-step-2')
    before.sendUpdate(textUpdate('old content'))
    await before.saved(1)

    const hold = gated.holdNext('deleteRoom', room)
    const deleted = rest(server.app, 'DELETE', `/v1/rooms/${room}`)
    await hold.held // sessions closed, the room dropped from memory, its record and document still stored
    expect((await withDeadline('the member closed', before.closed)).code).toBe(CloseCode.roomDeleted)
    // A join now reads the record that is about to go: its permissions say write.
    const lateRead = gated.holdNext('getRoom', room)
    const late = await connect(server, room, token)
    await lateRead.held
    lateRead.release() // promise continuations only: the join reaches the room before the deletion runs
    hold.release()
    expect((await deleted).statusCode).toBe(204)
    expect(await refusal(late)).toEqual({ code: CloseCode.forbidden, error: 'forbidden' })
    expect((await server.app.tandem.store.load(room)).updates).toEqual([])
    expect(await server.app.tandem.store.getRoom(room)).toBeNull()
  })

  it('never survives the 204, and nothing of the deleted room remains', async () => {
    const server = await start({ authenticate: undefined, storeWindowMs: 0 })
    const gen = prng.create(seedsFromEnv([1_234])[0]!)
    const TRIALS = 25
    for (let trial = 0; trial < TRIALS; trial++) {
      const room = fresh('race')
      await createRoom(server, { id: room, defaultAccesses: ['room:write'] })
      const token = await foreignToken({ sub: `u${trial}` })
      const joiners = Array.from({ length: 4 }, async (_, i) => {
        // Staggered over the deletion: some join before, some during, some just after it starts.
        await pause(gen, 6)
        const client = await rawClient(server.syncUrl, room, { token })
        clients.push(client)
        client.socket.on('message', () => {
          if (client.messages.some((m) => m.kind === 'sync-step-2') && i % 2 === 0) client.sendUpdate(textUpdate(`w${trial}.${i}`))
        })
        return client
      })
      await pause(gen, 4)
      const deleted = await rest(server.app, 'DELETE', `/v1/rooms/${room}`)
      expect(deleted.statusCode).toBe(204)
      const joined = await Promise.all(joiners)
      // Each joiner is closed: 4404 if it was in when the room went, 4403 if it came after.
      for (const client of joined) {
        const { code } = await withDeadline(`trial ${trial}: a joiner closed`, client.closed, 5_000)
        expect([CloseCode.roomDeleted, CloseCode.forbidden]).toContain(code)
      }
      // A join that waited for the deletion may have loaded the room afresh before it was refused:
      // then it is empty and has no member (it unloads once idle).
      const loaded = server.app.tandem.registry.get(room)
      if (loaded !== undefined) expect([loaded.size, Y.encodeStateAsUpdate(loaded.doc)]).toEqual([0, Uint8Array.of(0, 0)])
      expect((await server.app.tandem.store.load(room)).updates).toEqual([])
      expect(await server.app.tandem.store.getRoom(room)).toBeNull()
    }
  })
})
