/**
 * Unmodified Hocuspocus providers (4.x, 3.x, 2.x) against Tandem's `/v1/hocuspocus` endpoint, with
 * Tandem's own tokens (built-in JWT authentication) and a real LevelDB: convergence, presence,
 * late joiners and acknowledgements after the store; many rooms over one socket; readers; refusals
 * that close one document and keep the socket; live access changes and token refresh; and the
 * endpoint's limits against raw frames.
 */

import WebSocket from 'ws'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { afterEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { HocuspocusAuthType, HocuspocusMessageType } from '../protocol/hocuspocus.ts'
import { type RoomBody, accessToken, createRoom, idToken, rest, updateRoom } from './support/access.ts'
import { openFaultyStore } from './support/faulty-store.ts'
import {
  PROVIDER_VERSIONS,
  type Editor,
  allSaved,
  authenticated,
  editor,
  hocuspocusUrl,
  noticeCodes,
  noticed,
  refused,
  sharedSocket,
  synced,
  textIs,
} from './support/hocuspocus.ts'
import { type TestServer, serversPerTest } from './support/server.ts'
import { until, withDeadline } from './support/wait.ts'

const { start } = serversPerTest()
const editors: Editor[] = []
const sockets: { destroy(): void }[] = []
afterEach(() => {
  for (const e of editors.splice(0)) e.destroy()
  for (const s of sockets.splice(0)) s.destroy()
})

const ACL: Omit<RoomBody, 'id'> = {
  defaultAccesses: [],
  usersAccesses: { ann: ['room:write'], bob: ['room:write'], rita: ['room:read'], pia: ['room:read', 'room:presence:write'] },
}

const startWithRooms = async (rooms: string[], options: Parameters<typeof start>[0] = {}): Promise<TestServer> => {
  const server = await start({ authenticate: undefined, ...options })
  for (const id of rooms) await createRoom(server, { id, ...ACL })
  return server
}

const open = (version: Parameters<typeof editor>[0], options: Parameters<typeof editor>[1]): Editor => {
  const e = editor(version, options)
  editors.push(e)
  return e
}

/** The room's document as Tandem holds it (REST). */
const serverText = async (server: TestServer, room: string): Promise<string> => {
  const res = await rest(server, 'GET', `/v1/rooms/${room}/ydoc`)
  return JSON.stringify(res.body)
}

/** For what the server holds, which no event announces: checked every 10 ms until true. */
const poll = (what: string, check: () => boolean): Promise<void> =>
  withDeadline(
    what,
    (async () => {
      while (!check()) await new Promise((r) => setTimeout(r, 10))
    })(),
  )

const connectionsIn = (server: TestServer, room: string): number => [...server.app.tandem.connections].filter((c) => c.roomId === room && c.isOpen).length

describe.each(PROVIDER_VERSIONS)('HocuspocusProvider %i.x', (version) => {
  it('two editors converge, see each other, and a late joiner gets the document', async () => {
    const server = await startWithRooms(['notes'])
    const url = hocuspocusUrl(server)
    const a = open(version, { url, name: 'notes', token: await idToken({ userId: 'ann' }) })
    const b = open(version, { url, name: 'notes', token: await idToken({ userId: 'bob' }) })
    await Promise.all([synced(a), synced(b), authenticated(a, 'read-write'), authenticated(b, 'read-write')])

    a.text.insert(0, 'hello')
    await textIs(b, 'hello')
    b.text.insert(5, ' world')
    await textIs(a, 'hello world')

    a.provider.setAwarenessField('user', { name: 'Ann' })
    await until('b sees ann', b.provider.awareness!, ['change'], () =>
      [...b.provider.awareness!.getStates().values()].some((s) => (s as { user?: { name: string } }).user?.name === 'Ann'),
    )

    await Promise.all([allSaved(a), allSaved(b)])
    const late = open(version, { url, name: 'notes', token: await idToken({ userId: 'bob' }) })
    await synced(late)
    await textIs(late, 'hello world')
    expect(await serverText(server, 'notes')).toContain('hello world')
  })

  it('a reader gets scope readonly: its edits are never applied, and it is told', async () => {
    const server = await startWithRooms(['notes'])
    const url = hocuspocusUrl(server)
    const writer = open(version, { url, name: 'notes', token: await idToken({ userId: 'ann' }) })
    await synced(writer)
    writer.text.insert(0, 'by ann')
    await allSaved(writer)

    const reader = open(version, { url, name: 'notes', token: await idToken({ userId: 'rita' }) })
    await Promise.all([synced(reader), authenticated(reader, 'readonly')])
    await textIs(reader, 'by ann')
    // Its first sync is answered (nothing it holds is new): nothing is left unsynced.
    await allSaved(reader)

    reader.text.insert(0, 'rita was here: ')
    await noticed(reader, 'read_only')
    // Refused, not stored: the provider keeps counting it as unsynced.
    expect(reader.provider.hasUnsyncedChanges).toBe(true)
    writer.text.insert(6, '!')
    await textIs(reader, 'rita was here: by ann!')
    await allSaved(writer)
    expect(writer.text.toString()).toBe('by ann!')
    expect(await serverText(server, 'notes')).not.toContain('rita')
  })
})

describe('the Hocuspocus endpoint', () => {
  it('a reader shows presence only with room:presence:write', async () => {
    const server = await startWithRooms(['notes'])
    const url = hocuspocusUrl(server)
    const writer = open(4, { url, name: 'notes', token: await idToken({ userId: 'ann' }) })
    const rita = open(4, { url, name: 'notes', token: await idToken({ userId: 'rita' }) })
    const pia = open(4, { url, name: 'notes', token: await idToken({ userId: 'pia' }) })
    await Promise.all([synced(writer), authenticated(rita, 'readonly'), authenticated(pia, 'readonly')])
    rita.provider.setAwarenessField('user', { name: 'Rita' })
    pia.provider.setAwarenessField('user', { name: 'Pia' })
    const names = (): string[] =>
      [...writer.provider.awareness!.getStates().values()].flatMap((s) => {
        const name = (s as { user?: { name: string } }).user?.name
        return name === undefined ? [] : [name]
      })
    await until('the writer sees pia', writer.provider.awareness!, ['change'], () => names().includes('Pia'))
    await noticed(rita, 'presence_forbidden')
    expect(names()).not.toContain('Rita')
  })

  it('SyncStatus comes after the store: while writes cannot be stored, the provider stays unsynced', async () => {
    const faulty = await openFaultyStore()
    const server = await startWithRooms(['notes'], { store: faulty })
    const a = open(4, { url: hocuspocusUrl(server), name: 'notes', token: await idToken({ userId: 'ann' }) })
    await Promise.all([synced(a), allSaved(a)])

    faulty.fail('append')
    a.text.insert(0, 'kept')
    await noticed(a, 'server_error')
    expect(a.provider.hasUnsyncedChanges).toBe(true)

    faulty.recover('append')
    await allSaved(a, 15_000)
    // Acknowledged means stored: the store underneath has it.
    const stored = await faulty.inner.load('notes')
    const doc = new Y.Doc()
    for (const update of stored.updates) Y.applyUpdate(doc, update)
    expect(doc.getText('text').toString()).toBe('kept')
  })

  it.each([4, 3, 2] as const)('%i.x: many rooms over one socket, each authenticated, gated and closed on its own', async (version) => {
    const server = await startWithRooms(['one', 'two', 'shut'])
    const socket = sharedSocket(version, hocuspocusUrl(server))
    sockets.push(socket)
    const token = await idToken({ userId: 'ann' })
    const one = open(version, { socket, name: 'one', token })
    const two = open(version, { socket, name: 'two', token: await idToken({ userId: 'rita' }) })
    const shut = open(version, { socket, name: 'shut', token: await idToken({ userId: 'nobody' }) })
    await Promise.all([synced(one), authenticated(one, 'read-write'), authenticated(two, 'readonly'), refused(shut, 'forbidden')])

    const other = open(version, { url: hocuspocusUrl(server), name: 'one', token })
    await synced(other)
    one.text.insert(0, 'shared socket')
    await textIs(other, 'shared socket')

    // Detaching one provider closes its document on the server (3.x and 4.x tell the server; 2.x
    // tells it when the provider is destroyed); the others go on.
    const connectionsBefore = server.app.tandem.connections.size
    if (version === 2) two.provider.destroy()
    else two.provider.detach()
    await poll('two closed on the server', () => connectionsIn(server, 'two') === 0)
    expect(server.app.tandem.connections.size).toBe(connectionsBefore - 1)
    one.text.insert(0, 'still ')
    await textIs(other, 'still shared socket')
  })

  it('bad, expired and insufficient tokens: PermissionDenied for that document, the socket stays, no reconnect loop', async () => {
    const server = await startWithRooms(['good', 'bad', 'old', 'none'])
    const socket = sharedSocket(4, hocuspocusUrl(server))
    sockets.push(socket)
    let opens = 0
    socket.on('open', () => opens++)
    const good = open(4, { socket, name: 'good', token: await idToken({ userId: 'ann' }) })
    const bad = open(4, { socket, name: 'bad', token: 'not-a-jwt' })
    const old = open(4, { socket, name: 'old', token: await idToken({ userId: 'ann' }, { now: Date.now() - 3_600_000 }) })
    const none = open(4, { socket, name: 'none', token: await idToken({ userId: 'stranger' }) })
    await Promise.all([synced(good), refused(bad, 'unauthorized'), refused(old, 'token_expired'), refused(none, 'forbidden')])

    // The socket is still the first one, and the good document works on it.
    const peer = open(4, { url: hocuspocusUrl(server), name: 'good', token: await idToken({ userId: 'bob' }) })
    await synced(peer)
    good.text.insert(0, 'unaffected')
    await textIs(peer, 'unaffected')
    await new Promise((r) => setTimeout(r, 1_500))
    expect(opens).toBe(1)
    expect(bad.refusals).toHaveLength(1)
  })

  it('ACL downgrade, revocation and deletion act live on the one document', async () => {
    const server = await startWithRooms(['down', 'gone', 'deleted', 'kept'])
    const socket = sharedSocket(4, hocuspocusUrl(server))
    sockets.push(socket)
    const token = await idToken({ userId: 'ann' })
    const down = open(4, { socket, name: 'down', token })
    const gone = open(4, { socket, name: 'gone', token })
    const deleted = open(4, { socket, name: 'deleted', token })
    const kept = open(4, { socket, name: 'kept', token })
    await Promise.all([down, gone, deleted, kept].map((e) => authenticated(e, 'read-write')))

    await updateRoom(server, 'down', { usersAccesses: { ann: ['room:read'] } })
    await authenticated(down, 'readonly')
    down.text.insert(0, 'after the downgrade')
    await noticed(down, 'read_only')

    await updateRoom(server, 'gone', { usersAccesses: { ann: null } })
    await refused(gone, 'revoked')
    expect((await rest(server, 'DELETE', '/v1/rooms/deleted')).status).toBe(204)
    await refused(deleted, 'room_not_found')

    const peer = open(4, { url: hocuspocusUrl(server), name: 'kept', token: await idToken({ userId: 'bob' }) })
    await synced(peer)
    kept.text.insert(0, 'still here')
    await textIs(peer, 'still here')
    expect(await serverText(server, 'down')).not.toContain('after the downgrade')
  })

  it.each([4, 3] as const)('%i.x: a fresh token re-evaluates the session without reconnecting, and an expiring one is refreshed', async (version) => {
    const server = await startWithRooms(['notes'], { limits: { tokenRefreshGraceMs: 2_000 } })
    const socket = sharedSocket(version, hocuspocusUrl(server))
    sockets.push(socket)
    let opens = 0
    socket.on('open', () => opens++)
    let next = async (): Promise<string> => idToken({ userId: 'ann' }, { ttlSeconds: 2 })
    const a = open(version, { socket, name: 'notes', token: () => next() })
    await authenticated(a, 'read-write')

    // Past its expiry the server asks for a fresh token; the provider's token function gives one.
    let asked = 0
    next = async () => {
      asked++
      return idToken({ userId: 'ann' })
    }
    await until('a fresh token asked for', a.provider, ['stateless'], () => noticeCodes(a).includes('token_expired'), 8_000)
    await until('asked', a.provider, ['authenticated'], () => asked > 0 && a.scopes.length >= 2, 5_000)
    await new Promise((r) => setTimeout(r, 2_500))
    expect(a.refusals).toEqual([])

    // A token with less (an access token for reading only), sent on the same socket: scope readonly.
    next = async () => accessToken({ userId: 'ann', rooms: { notes: ['room:read'] } })
    await a.provider.sendToken()
    await authenticated(a, 'readonly')
    expect(opens).toBe(1)
  })
})

// --- raw frames: the endpoint's limits ---------------------------------------------------------

const frame = (address: string, write: (e: encoding.Encoder) => void): Uint8Array => {
  const e = encoding.createEncoder()
  encoding.writeVarString(e, address)
  write(e)
  return encoding.toUint8Array(e)
}
const tokenFrame = (address: string, token: string): Uint8Array =>
  frame(address, (e) => {
    encoding.writeVarUint(e, HocuspocusMessageType.auth)
    encoding.writeVarUint(e, HocuspocusAuthType.token)
    encoding.writeVarString(e, token)
  })
const awarenessQuery = (address: string): Uint8Array => frame(address, (e) => encoding.writeVarUint(e, HocuspocusMessageType.queryAwareness))

interface Raw {
  readonly ws: WebSocket
  /** Every PermissionDenied reason, by address. */
  readonly denied: Map<string, string[]>
  readonly closed: Promise<{ code: number; reason: string }>
}

const raw = async (server: TestServer): Promise<Raw> => {
  const ws = new WebSocket(hocuspocusUrl(server))
  const denied = new Map<string, string[]>()
  ws.on('message', (data: Buffer) => {
    const d = decoding.createDecoder(new Uint8Array(data))
    const address = decoding.readVarString(d)
    if (decoding.readVarUint(d) === HocuspocusMessageType.auth && decoding.readVarUint(d) === HocuspocusAuthType.permissionDenied) {
      denied.set(address, [...(denied.get(address) ?? []), decoding.readVarString(d)])
    }
  })
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
  return { ws, denied, closed }
}

/** The first reason the document was denied for. */
const deniedFor = async (client: Raw, address: string): Promise<string> => {
  await poll(`PermissionDenied for ${address}`, () => client.denied.has(address))
  return client.denied.get(address)![0]!
}

describe('the Hocuspocus endpoint refuses what a provider never sends', () => {
  it.each([
    ['a frame that does not decode', Uint8Array.of(0xff, 0xff, 0xff)],
    ['an unknown type', frame('notes', (e) => encoding.writeVarUint(e, 42))],
    [
      'a server-only SyncStatus',
      frame('notes', (e) => {
        encoding.writeVarUint(e, HocuspocusMessageType.syncStatus)
        encoding.writeVarUint(e, 1)
      }),
    ],
    ['trailing bytes', Uint8Array.from([...awarenessQuery('notes'), 0])],
  ])('%s closes the socket with 4400, nothing applied', async (_what, bad) => {
    const server = await startWithRooms(['notes'])
    const client = await raw(server)
    client.ws.send(tokenFrame('notes', await idToken({ userId: 'ann' })))
    client.ws.send(bad)
    const closed = await withDeadline('close', client.closed)
    expect(closed).toEqual({ code: 4400, reason: 'malformed_message' })
    expect((await fetch(`${server.httpUrl}/healthz`)).status).toBe(200)
  })

  it('a document before its token, an invalid room id and one document too many are refused alone', async () => {
    const server = await startWithRooms(['a', 'b', 'c'], { limits: { documentsPerSocket: 2 } })
    const client = await raw(server)
    const token = await idToken({ userId: 'ann' })
    client.ws.send(awarenessQuery('a'))
    expect(await deniedFor(client, 'a')).toMatch(/^unauthorized:/)
    client.ws.send(tokenFrame('bad\u0001id', token))
    expect(await deniedFor(client, 'bad\u0001id')).toMatch(/^malformed_message:/)
    client.ws.send(tokenFrame('a', token))
    client.ws.send(tokenFrame('b', token))
    client.ws.send(tokenFrame('c', token))
    expect(await deniedFor(client, 'c')).toMatch(/^rate_limited:/)
    expect(client.ws.readyState).toBe(WebSocket.OPEN)
  })

  it('a document refused and sent again in a loop is refused as a flood, the socket kept', async () => {
    const server = await startWithRooms(['notes'], { limits: { documentsPerSocket: 3 } })
    const client = await raw(server)
    const token = await idToken({ userId: 'stranger' })
    // Each time refused, sent again (a Token while the first is being decided is dropped).
    for (let i = 1; i <= 6; i++) {
      client.ws.send(tokenFrame('notes', token))
      await poll(`answer ${i}`, () => (client.denied.get('notes')?.length ?? 0) === i)
    }
    const reasons = client.denied.get('notes')!
    expect(reasons.slice(0, 3).every((r) => r.startsWith('forbidden:'))).toBe(true)
    expect(reasons.slice(3).every((r) => r.startsWith('rate_limited:'))).toBe(true)
    expect(client.ws.readyState).toBe(WebSocket.OPEN)
  })

  it('the queue before authentication is bounded per document', async () => {
    const server = await startWithRooms(['notes'], { limits: { preAuthMaxMessages: 5 } })
    const client = await raw(server)
    client.ws.send(tokenFrame('notes', await idToken({ userId: 'ann' })))
    for (let i = 0; i < 20; i++) client.ws.send(awarenessQuery('notes'))
    expect(await deniedFor(client, 'notes')).toMatch(/^rate_limited:/)
    expect(client.ws.readyState).toBe(WebSocket.OPEN)
  })

  it('an oversized message closes the socket with 4413', async () => {
    const server = await startWithRooms(['notes'], { limits: { maxMessageBytes: 1024 } })
    const client = await raw(server)
    client.ws.send(new Uint8Array(4096))
    expect((await withDeadline('close', client.closed)).code).toBe(4413)
  })
})
