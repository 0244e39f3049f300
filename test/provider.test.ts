/**
 * TandemProvider against a real server in this process, over real sockets, with real JWTs (SPEC
 * sections 3, 5 and 8): each auth form, reconnection with offline edits and its backoff, the silence
 * check, token expiry and refresh, live access changes, revocation and room deletion,
 * acknowledgements, final close codes, message types from a newer server, cross-tab sharing only for
 * writers, and presence.
 *
 * Every wait is on an event (provider events, doc updates) with a deadline, never on a timer. A
 * provider whose reconnection (or silence) matters runs on a `manualClock` (support/provider.ts) as
 * its scheduler: nothing fires until the test moves it. "Did not reconnect" is then exact: no timer
 * at all is armed once the socket closed, the clock is moved past any backoff anyway, and a full
 * round trip through the server shows no socket reached it. "Reconnects" runs the one armed timer.
 */

import { afterEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import type { ErrorCode, TandemError } from '../protocol/errors.ts'
import type { Permission } from '../protocol/permissions.ts'
import { accessToken, createRoom, idToken, rest, updateRoom } from './support/access.ts'
import { TokenSource, tokenExpiry } from '../client/token-source.ts'
import {
  type AuthEndpoint,
  type ManualClock,
  type Peer,
  allSaved,
  connected,
  connectionsOf,
  countUpgrades,
  countingWebSocket,
  destroyPeer,
  destroyPeers,
  manualClock,
  nextEvent,
  peer,
  startAuthEndpoint,
  textHas,
  textIs,
  untilProvider,
} from './support/provider.ts'
import { WebSocket } from 'ws'
import { type TestServer, startServer } from './support/server.ts'
import { until } from './support/wait.ts'
import type { ServerOptions } from '../server/options.ts'

const ALL: Permission[] = ['room:write', 'room:presence:write', 'room:read']

const servers: TestServer[] = []
const endpoints: AuthEndpoint[] = []
let roomSeq = 0

/** A server with the built-in token authentication (not the test default `openAccess`). */
const serve = async (options: Partial<ServerOptions> = {}, dataDir?: string, port?: number): Promise<TestServer> => {
  const server = await startServer({ authenticate: undefined, ...options }, dataDir, port)
  servers.push(server)
  return server
}

const newRoom = async (server: TestServer, acl: { defaultAccesses?: Permission[]; usersAccesses?: Record<string, Permission[]> } = {}): Promise<string> => {
  const id = `provider-${++roomSeq}`
  await createRoom(server, { id, defaultAccesses: acl.defaultAccesses ?? [], ...(acl.usersAccesses !== undefined && { usersAccesses: acl.usersAccesses }) })
  return id
}

/** Another peer's edit, stored and relayed: a full round trip through the server. */
const roundTrip = async (via: Peer, marker: string): Promise<void> => {
  via.text.insert(via.text.length, marker)
  await allSaved(via)
}

/** Past the longest backoff (the provider's default cap is 10 s). */
const PAST_ANY_BACKOFF_MS = 60_000

/**
 * For a provider on `clock` that must not reconnect (see the header): nothing is armed, no
 * reconnection and no silence check of a socket; and a reconnection armed anyway would run now.
 */
const noReconnectArmed = (clock: ManualClock): void => {
  expect(clock.pending()).toEqual([])
  clock.advance(PAST_ANY_BACKOFF_MS)
}

/** Runs the reconnection a provider on `clock` armed when its socket closed: the one timer there. */
const reconnectNow = (clock: ManualClock): void => {
  const [timer, ...others] = clock.pending()
  expect(others).toEqual([])
  expect(timer?.kind).toBe('timeout')
  clock.advance(timer!.dueIn)
}

/** Resolves once `p` is disconnected (after that, its reconnection, if any, is armed). */
const disconnected = (p: Peer): Promise<void> => untilProvider('disconnected', p, () => p.provider.status === 'disconnected')

const errorOf = (p: Peer, code: ErrorCode): Promise<TandemError> => nextEvent<TandemError>(p, 'error', (e) => e.code === code)

afterEach(async () => {
  destroyPeers()
  for (const e of endpoints.splice(0)) await e.close()
  // Newest first: a restarted server shares its data dir with the stopped one before it.
  for (const s of servers.splice(0).reverse()) await s.destroy()
})

describe('auth forms', () => {
  it('syncs with a token string: self, readOnly, status connecting → connected, two providers converge', async () => {
    const server = await serve()
    const room = await newRoom(server, { usersAccesses: { ann: ['room:write'], bob: ['room:write'] } })
    const ann = peer(server, room, await idToken({ userId: 'ann', userInfo: { name: 'Ann', color: '#f00' } }))
    const bob = peer(server, room, await idToken({ userId: 'bob', userInfo: { name: 'Bob' } }))
    expect(ann.provider.status).toBe('connecting')
    expect(ann.provider.readOnly).toBe(true) // nothing known yet
    await Promise.all([connected(ann), connected(bob)])

    expect(ann.statuses().slice(0, 2)).toEqual(['connecting', 'connected'])
    expect(ann.provider.readOnly).toBe(false)
    const self = ann.provider.self!
    expect(self.userId).toBe('ann')
    expect(self.info).toEqual({ name: 'Ann', color: '#f00' })
    expect(self.permissions).toEqual(ALL)
    expect(self.actor).toMatchObject({ kind: 'user', userId: 'ann' })
    expect(connectionsOf(server, 'ann')).toEqual([self.connectionId])
    const authenticated = ann.events.filter(([name]) => name === 'authenticated')
    expect(authenticated).toHaveLength(1)
    expect(authenticated[0]![1]).toMatchObject({ userId: 'ann', connectionId: self.connectionId })

    ann.text.insert(0, 'hello')
    await textIs(bob, 'hello')
    bob.text.insert(5, ' world')
    await textIs(ann, 'hello world')
    await Promise.all([allSaved(ann), allSaved(bob)])
    expect(Y.encodeStateVector(ann.doc)).toEqual(Y.encodeStateVector(bob.doc))
  })

  it('syncs with an async auth function (access tokens): a writer and a read-only reader', async () => {
    const server = await serve()
    const room = await newRoom(server) // no ACL access: access tokens carry their own permissions
    let annCalls = 0
    let carolCalls = 0
    const ann = peer(server, room, async () => {
      annCalls++
      return accessToken({ userId: 'ann', userInfo: { name: 'Ann' }, rooms: { 'provider-*': ['room:write'] } })
    })
    const carol = peer(server, room, async () => {
      carolCalls++
      return accessToken({ userId: 'carol', rooms: { [room]: ['room:read'] } })
    })
    await Promise.all([connected(ann), connected(carol)])
    expect(annCalls).toBe(1)
    expect(carolCalls).toBe(1)
    expect(ann.provider.self).toMatchObject({ userId: 'ann', info: { name: 'Ann' }, permissions: ALL })
    expect(ann.provider.readOnly).toBe(false)
    expect(carol.provider.self).toMatchObject({ userId: 'carol', info: null, permissions: ['room:read'] })
    expect(carol.provider.readOnly).toBe(true)
    expect(carol.statuses().slice(0, 2)).toEqual(['connecting', 'connected'])

    ann.text.insert(0, 'for readers')
    await textIs(carol, 'for readers')
    await allSaved(ann)
  })

  it('syncs with { endpoint }: POSTs { room } with the given headers and uses the { token } answer', async () => {
    const server = await serve()
    const room = await newRoom(server, { usersAccesses: { ann: ['room:write'], bob: ['room:write'] } })
    const endpoint = await startAuthEndpoint(async (body, headers) => {
      // The app's own session check: only its cookie-like header gets a token.
      if (headers['x-app-session'] !== 'letmein') return { status: 401, body: { error: 'no session' } }
      const user = String(headers['x-app-user'])
      const requested = (body as { room?: unknown } | null)?.room
      if (typeof requested !== 'string') return { status: 400, body: { error: 'no room' } }
      return { status: 200, body: { token: await idToken({ userId: user, userInfo: { via: 'endpoint' } }) } }
    })
    endpoints.push(endpoint)
    const ann = peer(server, room, { endpoint: endpoint.url, headers: { 'x-app-session': 'letmein', 'x-app-user': 'ann' } })
    const bob = peer(server, room, { endpoint: endpoint.url, headers: { 'x-app-session': 'letmein', 'x-app-user': 'bob' } })
    await Promise.all([connected(ann), connected(bob)])

    expect(endpoint.requests).toHaveLength(2)
    for (const request of endpoint.requests) {
      expect(request.body).toEqual({ room })
      expect(request.headers['content-type']).toBe('application/json')
    }
    expect(ann.provider.self).toMatchObject({ userId: 'ann', info: { via: 'endpoint' }, permissions: ALL })
    expect(ann.statuses().slice(0, 2)).toEqual(['connecting', 'connected'])

    bob.text.insert(0, 'endpoint')
    await textIs(ann, 'endpoint')
    await allSaved(bob)
  })

  it('an auth endpoint answering 403 is a final refusal: error forbidden, disconnected, not asked again', async () => {
    const server = await serve()
    const room = await newRoom(server, { defaultAccesses: ['room:write'] })
    const endpoint = await startAuthEndpoint(async () => ({ status: 403, body: { error: 'not yours' } }))
    endpoints.push(endpoint)
    const sockets = countingWebSocket()
    const clock = manualClock()
    const eve = peer(server, room, { endpoint: endpoint.url }, { scheduler: clock, WebSocketPolyfill: sockets.Class })
    const error = await errorOf(eve, 'forbidden')
    expect(error.code).toBe('forbidden')
    noReconnectArmed(clock)
    await fetch(`${server.httpUrl}/healthz`)
    noReconnectArmed(clock)
    expect(endpoint.requests).toHaveLength(1)
    expect(sockets.count()).toBe(0)
    expect(eve.provider.status).toBe('disconnected')
  })
})

describe('reconnection', () => {
  it('edits made while the server is down are kept, sent after it restarts, and acknowledged', async () => {
    const options = {}
    let server = await serve(options)
    const room = await newRoom(server, { usersAccesses: { ann: ['room:write'], bob: ['room:write'] } })
    const annClock = manualClock()
    const bobClock = manualClock()
    const ann = peer(server, room, await idToken({ userId: 'ann' }), { maxBackoffMs: 500, scheduler: annClock })
    const bob = peer(server, room, await idToken({ userId: 'bob' }), { maxBackoffMs: 500, scheduler: bobClock })
    await Promise.all([connected(ann), connected(bob)])
    ann.text.insert(0, 'before;')
    await textIs(bob, 'before;')
    await allSaved(ann)

    const { dataDir, port } = server
    await server.stop()
    await untilProvider('ann lost the server', ann, () => ann.provider.status !== 'connected')
    await untilProvider('bob lost the server', bob, () => bob.provider.status !== 'connected')
    expect(ann.provider.synced).toBe(false)
    expect(ann.provider.self).toBeNull() // no session, no self

    ann.text.insert(ann.text.length, 'offline-1;')
    ann.text.insert(ann.text.length, 'offline-2;')
    expect(ann.provider.unsavedChanges).toBe(2)
    expect(['disconnected', 'connecting']).toContain(ann.provider.status)

    // Retries while the server is down fail, each waiting twice as long, up to maxBackoffMs: with
    // the clock's random() at 0.5, each wait is 3/4 of its cap (jitter in the cap's upper half).
    for (let retry = 0; retry < 3; retry++) {
      const failed = nextEvent(ann, 'status', (e: { status: string }) => e.status === 'disconnected')
      reconnectNow(annClock)
      await failed
    }
    expect(annClock.timeouts).toEqual([75, 150, 300, 375]) // caps 100, 200, 400, then 500
    expect(ann.provider.unsavedChanges).toBe(2)

    server = await serve(options, dataDir, port)
    reconnectNow(annClock)
    reconnectNow(bobClock)
    await textIs(bob, 'before;offline-1;offline-2;')
    await allSaved(ann)
    await Promise.all([connected(ann), connected(bob)])
    expect(ann.provider.unsavedChanges).toBe(0)
    expect(ann.provider.self?.userId).toBe('ann') // the new session's

    // What the server stored after the restart holds the offline edits.
    const stored = await rest(server, 'GET', `/v1/rooms/${room}/ydoc`)
    expect(JSON.stringify(stored.body)).toContain('offline-2;')
    // Status went connected → disconnected → connecting (retries) → connected.
    const statuses = ann.statuses()
    const lost = statuses.indexOf('disconnected')
    expect(statuses.slice(0, 2)).toEqual(['connecting', 'connected'])
    expect(lost).toBeGreaterThan(1)
    expect(statuses.slice(lost)).toContain('connecting')
    expect(statuses.at(-1)).toBe('connected')

    // And it keeps syncing both ways on the new connection.
    bob.text.insert(0, '>')
    await textHas(ann, '>before;')
  })
})

describe('silence', () => {
  it('a socket that hears nothing for 30 s is dropped and the provider reconnects; any frame restarts the wait', async () => {
    const server = await serve()
    const room = await newRoom(server, { defaultAccesses: ['room:write'] })
    const clock = manualClock()
    const { Class, sockets } = countingWebSocket()
    const ann = peer(server, room, await idToken({ userId: 'ann' }), { scheduler: clock, WebSocketPolyfill: Class })
    const bob = peer(server, room, await idToken({ userId: 'bob' }))
    await Promise.all([connected(ann), connected(bob)])
    const first = ann.provider.self!.connectionId
    expect(clock.pending().map((t) => t.kind)).toEqual(['interval']) // the silence check, nothing else

    // The server's keepalives come every 15 s of real time, which does not pass here: only the
    // frames the test causes reach ann. The socket's close() is synchronous (CLOSING at once). The
    // check runs every 10 s, so each advance below ends on one.
    clock.advance(30_000) // quiet for 30 s, not more
    expect(sockets[0]!.readyState).toBe(WebSocket.OPEN)
    bob.text.insert(0, 'heard;')
    await textIs(ann, 'heard;') // a frame at 30 s: silence counts from here
    // Nothing is awaited from here on, so no other frame can arrive in between.
    clock.advance(30_000) // 60 s: quiet for 30 s again (40 s without the frame)
    expect(sockets[0]!.readyState).toBe(WebSocket.OPEN)
    const reconnected = nextEvent<{ connectionId: string }>(ann, 'authenticated', (self) => self.connectionId !== first)
    clock.advance(10_000) // 70 s: quiet for 40 s
    expect(sockets[0]!.readyState).toBe(WebSocket.CLOSING)

    await disconnected(ann)
    reconnectNow(clock)
    await reconnected
    await connected(ann)
    expect(sockets).toHaveLength(2)
    expect(connectionsOf(server, 'ann')).toEqual([ann.provider.self!.connectionId])
    ann.text.insert(ann.text.length, 'back;')
    await textIs(bob, 'heard;back;')
  })
})

describe('token expiry and refresh', () => {
  it('on token_expired the provider fetches a fresh token and re-authenticates on the same socket', async () => {
    const server = await serve({ limits: { tokenRefreshGraceMs: 2_000 } })
    const room = await newRoom(server, { usersAccesses: { ann: ['room:write'], bob: ['room:write'] } })
    let calls = 0
    const sockets = countingWebSocket()
    const ann = peer(
      server,
      room,
      async () => {
        calls++
        // The first token expires about a second from now (exp is in whole seconds); the next lasts.
        return calls === 1 ? idToken({ userId: 'ann' }, { now: Date.now() + 1_500 - 60_000, ttlSeconds: 60 }) : idToken({ userId: 'ann' }, { ttlSeconds: 600 })
      },
      { WebSocketPolyfill: sockets.Class },
    )
    const bob = peer(server, room, await idToken({ userId: 'bob' }))
    await Promise.all([connected(ann), connected(bob)])
    const first = ann.provider.self!
    const statusesBefore = ann.statuses().length

    const notice = errorOf(ann, 'token_expired')
    const reauthenticated = nextEvent<{ connectionId: string }>(ann, 'authenticated')
    await notice
    const again = await reauthenticated
    expect(calls).toBe(2)
    expect(again.connectionId).toBe(first.connectionId)
    expect(sockets.count()).toBe(1)
    expect(connectionsOf(server, 'ann')).toEqual([first.connectionId])
    expect(ann.statuses().slice(statusesBefore)).toEqual([]) // never left 'connected'
    expect(ann.provider.status).toBe('connected')

    // Past the grace period the session is still there (the server re-armed its expiry on the new token).
    ann.text.insert(0, 'after refresh')
    await textIs(bob, 'after refresh')
    await allSaved(ann)
    bob.text.insert(0, '>')
    await textIs(ann, '>after refresh')
    expect(ann.statuses().slice(statusesBefore)).toEqual([])
    expect(sockets.count()).toBe(1)
  })

  it('refreshAuth() re-runs auth on the open socket: same connection, new token', async () => {
    const server = await serve()
    const room = await newRoom(server, { usersAccesses: { ann: ['room:write'] } })
    let calls = 0
    const sockets = countingWebSocket()
    const upgrades = countUpgrades(server)
    const ann = peer(
      server,
      room,
      async () => {
        calls++
        return idToken({ userId: 'ann', userInfo: { n: calls } })
      },
      { WebSocketPolyfill: sockets.Class },
    )
    await connected(ann)
    const first = ann.provider.self!
    expect(first.info).toEqual({ n: 1 })

    const reauthenticated = nextEvent<{ connectionId: string; info: unknown }>(ann, 'authenticated')
    await ann.provider.refreshAuth()
    const again = await reauthenticated
    expect(calls).toBe(2)
    expect(again.connectionId).toBe(first.connectionId)
    expect(again.info).toEqual({ n: 2 })
    expect(ann.provider.self?.info).toEqual({ n: 2 })
    expect(sockets.count()).toBe(1)
    expect(upgrades.count()).toBe(1)
    expect(connectionsOf(server, 'ann')).toEqual([first.connectionId])
    expect(ann.statuses()).toEqual(['connecting', 'connected'])
  })

  it('refreshAuth() with a token that grants more: access-changed, and edits kept while read-only are saved', async () => {
    const server = await serve()
    const room = await newRoom(server)
    let perms: Permission[] = ['room:read']
    const ann = peer(server, room, async () => accessToken({ userId: 'ann', rooms: { [room]: perms } }))
    const writer = peer(server, room, async () => accessToken({ userId: 'wes', rooms: { [room]: ['room:write'] } }))
    await Promise.all([connected(ann), connected(writer)])
    expect(ann.provider.readOnly).toBe(true)

    ann.text.insert(0, 'kept;')
    expect(ann.provider.unsavedChanges).toBe(1)

    perms = ['room:write']
    const changed = nextEvent<{ readOnly: boolean; permissions: Permission[] }>(ann, 'access-changed')
    await ann.provider.refreshAuth()
    expect(await changed).toEqual({ readOnly: false, permissions: ALL })
    expect(ann.provider.readOnly).toBe(false)
    await textIs(writer, 'kept;')
    await allSaved(ann)
  })

  it('a token refused at connect as expired: the provider reconnects with a fresh one', async () => {
    const server = await serve()
    const room = await newRoom(server, { usersAccesses: { ann: ['room:write'] } })
    let calls = 0
    const clock = manualClock()
    const ann = peer(
      server,
      room,
      async () => {
        calls++
        return calls === 1
          ? idToken({ userId: 'ann' }, { now: Date.now() - 120_000, ttlSeconds: 60 }) // expired a minute ago
          : idToken({ userId: 'ann' }, { ttlSeconds: 600 })
      },
      { scheduler: clock },
    )
    const refused = await errorOf(ann, 'token_expired')
    expect(refused.code).toBe('token_expired')
    await disconnected(ann)
    reconnectNow(clock)
    await connected(ann)
    expect(calls).toBeGreaterThanOrEqual(2)
    expect(ann.provider.self?.userId).toBe('ann')
    const statuses = ann.statuses()
    expect(statuses[0]).toBe('connecting')
    expect(statuses.at(-1)).toBe('connected')
    expect(ann.events.some(([name]) => name === 'revoked')).toBe(false)
    ann.text.insert(0, 'in')
    await allSaved(ann)
  })

  it('a token refused at connect as expired costs exactly one fresh token', async () => {
    const server = await serve()
    const room = await newRoom(server, { usersAccesses: { ann: ['room:write'] } })
    // Minted up front, so the function answers at once (no race with the socket's close).
    const expired = await idToken({ userId: 'ann' }, { now: Date.now() - 120_000, ttlSeconds: 60 })
    const fresh = await idToken({ userId: 'ann' }, { ttlSeconds: 600 })
    let calls = 0
    const clock = manualClock()
    const ann = peer(
      server,
      room,
      async () => {
        calls++
        return calls === 1 ? expired : fresh
      },
      { scheduler: clock },
    )
    await disconnected(ann)
    reconnectNow(clock)
    await connected(ann)
    // Bug (see the report): the refusal's error frame also starts an in-socket refreshAuth on the
    // closing socket, whose token is then thrown away when the close asks for a fresh one again.
    expect(calls).toBe(2)
  })
})

describe('token source', () => {
  /** An unsigned JWT: the client reads its payload without verifying (the server verifies). */
  const jwt = (payload: unknown): string =>
    `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`

  it('reads exp from a base64url, unpadded payload, claims outside ASCII included', () => {
    const token = jwt({ exp: 2_000_000_000, name: 'Zoë Ærø 🙂', tags: ['ÿÿ>?'] })
    const payload = token.split('.')[1]!
    expect(payload).toMatch(/[-_]/) // the url alphabet, not '+' and '/'
    expect(payload.length % 4).not.toBe(0) // no '=' padding
    expect(tokenExpiry(token)).toBe(2_000_000_000_000)
  })

  it.each([
    ['no payload', 'opaque-token'],
    ['a payload that is not base64url JSON', 'a.%%%.b'],
    ['a payload without a numeric exp', jwt({ exp: 'soon' })],
  ])('%s has no expiry it can read', (_name, token) => {
    expect(tokenExpiry(token)).toBeNull()
  })

  it('reuses a fetched token until 5 s before its exp, by the clock it is given', async () => {
    const clock = manualClock()
    let calls = 0
    const tokens = new TokenSource(async () => jwt({ exp: Math.floor(clock.now() / 1000) + 60, n: ++calls }), 'room', globalThis.fetch, clock)
    const first = await tokens.get()
    clock.advance(50_000)
    expect(await tokens.get()).toBe(first)
    expect(calls).toBe(1)
    clock.advance(6_000) // 56 s: within 5 s of an exp at least 59 s after the first fetch
    expect(await tokens.get()).not.toBe(first)
    expect(calls).toBe(2)
  })

  it('the provider judges its cached token by its scheduler’s clock', async () => {
    const server = await serve()
    const room = await newRoom(server, { usersAccesses: { ann: ['room:write'] } })
    const clock = manualClock()
    let calls = 0
    const ann = peer(
      server,
      room,
      async () => {
        calls++
        return idToken({ userId: 'ann' }, { ttlSeconds: 60 })
      },
      { scheduler: clock },
    )
    await connected(ann)
    /** Reconnects by hand, moving the clock `ms` while disconnected (no silence check runs then). */
    const reconnectAfter = async (ms: number): Promise<void> => {
      ann.provider.disconnect()
      await disconnected(ann)
      expect(clock.pending()).toEqual([]) // disconnect() stops retries; the silence check went with the socket
      clock.advance(ms)
      ann.provider.connect()
      await connected(ann)
    }
    await reconnectAfter(0)
    expect(calls).toBe(1) // still fresh: reused
    // No real time passes, but by the provider's clock the token is within 5 s of its expiry.
    await reconnectAfter(56_000)
    expect(calls).toBe(2)
  })
})

describe('live access changes', () => {
  it('upgrade and downgrade flip readOnly; a reader’s edits stay pending until it may write', async () => {
    const server = await serve()
    const room = await newRoom(server, { usersAccesses: { ann: ['room:write'], bob: ['room:read'] } })
    const ann = peer(server, room, await idToken({ userId: 'ann' }))
    const bob = peer(server, room, await idToken({ userId: 'bob' }))
    await Promise.all([connected(ann), connected(bob)])
    expect(bob.provider.readOnly).toBe(true)
    expect(bob.provider.self?.permissions).toEqual(['room:read'])

    ann.text.insert(0, 'A')
    await textIs(bob, 'A')
    bob.text.insert(1, 'b1;')
    bob.text.insert(bob.text.length, 'b2;')
    expect(bob.provider.unsavedChanges).toBe(2)
    // Not sent at all: the writer sees nothing of it, even after its own round trip.
    await roundTrip(ann, 'A2')
    await textHas(bob, 'A2')
    expect(ann.text.toString()).toBe('AA2')
    // The app heard once (two edits, throttled to one a second) that the edits go nowhere; the
    // provider never sent them, so the server had nothing to refuse (no second read_only).
    expect(bob.errors()).toEqual(['read_only'])
    expect(bob.provider.unsavedChanges).toBe(2)

    const upgraded = nextEvent<{ readOnly: boolean; permissions: Permission[] }>(bob, 'access-changed')
    await updateRoom(server, room, { usersAccesses: { bob: ['room:write'] } })
    expect(await upgraded).toEqual({ readOnly: false, permissions: ALL })
    expect(bob.provider.readOnly).toBe(false)
    expect(bob.provider.self?.permissions).toEqual(ALL)
    await allSaved(bob)
    await textHas(ann, 'b1;b2;')
    expect(ann.text.toString()).toBe(bob.text.toString())

    const downgraded = nextEvent<{ readOnly: boolean; permissions: Permission[] }>(bob, 'access-changed')
    await updateRoom(server, room, { usersAccesses: { bob: ['room:read'] } })
    expect(await downgraded).toEqual({ readOnly: true, permissions: ['room:read'] })
    expect(bob.provider.readOnly).toBe(true)
    bob.text.insert(0, 'late;')
    expect(bob.provider.unsavedChanges).toBe(1)
    await roundTrip(ann, '!')
    expect(ann.text.toString()).not.toContain('late;')
    expect(bob.provider.status).toBe('connected')
  })

  it('a write in flight when write is lost is not counted as saved, and unsavedChanges returns to 0 once write is back', async () => {
    // The ACL change is applied on the server while bob's edit is already on its way: the server
    // drops it (read_only). Later bob regains write and its sync step 2 carries everything.
    let duringDowngrade: (() => void) | null = null
    const server = await serve({
      authorize: (session) => {
        const actor = session.actor
        if (actor.kind === 'user' && actor.userId === 'bob' && duringDowngrade !== null) {
          const edit = duringDowngrade
          duringDowngrade = null
          edit() // bob edits now; the server takes its new permissions before reading that frame
        }
        return session.permissions
      },
    })
    const room = await newRoom(server, { usersAccesses: { ann: ['room:write'], bob: ['room:write'] } })
    const ann = peer(server, room, await idToken({ userId: 'ann' }))
    const bob = peer(server, room, await idToken({ userId: 'bob' }))
    await Promise.all([connected(ann), connected(bob)])
    await roundTrip(bob, 'x;')

    duringDowngrade = () => bob.text.insert(bob.text.length, 'in-flight;')
    const dropped = errorOf(bob, 'read_only')
    await updateRoom(server, room, { usersAccesses: { bob: ['room:read'] } })
    await dropped
    expect(bob.provider.readOnly).toBe(true)
    // While it may not write, the dropped edit is not saved.
    expect(bob.provider.unsavedChanges).toBe(1)

    bob.text.insert(bob.text.length, 'while-reader;')
    expect(bob.provider.unsavedChanges).toBe(2)
    await updateRoom(server, room, { usersAccesses: { bob: ['room:write'] } })
    await textIs(ann, 'x;in-flight;while-reader;')
    // Bug (see the report): the server's `saved` count skips the dropped write, so bob's count
    // stays one write behind for the rest of the connection.
    await allSaved(bob, 5_000)
  })

  it('POST /v1/revoke: revoked event, disconnected, never reconnects', async () => {
    const server = await serve()
    const room = await newRoom(server, { defaultAccesses: ['room:write'] })
    const sockets = countingWebSocket()
    const upgrades = countUpgrades(server)
    const clock = manualClock()
    const mallory = peer(server, room, await idToken({ userId: 'mallory' }), { scheduler: clock, WebSocketPolyfill: sockets.Class })
    const ann = peer(server, room, await idToken({ userId: 'ann' }))
    await Promise.all([connected(mallory), connected(ann)])

    const revoked = nextEvent<{ code: ErrorCode }>(mallory, 'revoked')
    const res = await rest(server, 'POST', '/v1/revoke', { userId: 'mallory', roomId: room })
    expect(res.status).toBe(200)
    expect((await revoked).code).toBe('revoked')
    expect(mallory.provider.status).toBe('disconnected')
    const statusCount = mallory.statuses().length

    noReconnectArmed(clock)
    await roundTrip(ann, 'barrier')
    noReconnectArmed(clock)
    expect(sockets.count()).toBe(1)
    expect(upgrades.count()).toBe(2) // mallory's and ann's first connections only
    expect(connectionsOf(server, 'mallory')).toEqual([])
    expect(mallory.statuses().length).toBe(statusCount)
    expect(mallory.provider.status).toBe('disconnected')
  })

  it('removing a user’s access closes it with revoked; it never reconnects', async () => {
    const server = await serve()
    const room = await newRoom(server, { usersAccesses: { ann: ['room:write'], bob: ['room:write'] } })
    const sockets = countingWebSocket()
    const clock = manualClock()
    const bob = peer(server, room, await idToken({ userId: 'bob' }), { scheduler: clock, WebSocketPolyfill: sockets.Class })
    const ann = peer(server, room, await idToken({ userId: 'ann' }))
    await Promise.all([connected(bob), connected(ann)])

    const revoked = nextEvent<{ code: ErrorCode }>(bob, 'revoked')
    await updateRoom(server, room, { usersAccesses: { bob: null } })
    expect((await revoked).code).toBe('revoked')
    expect(bob.provider.status).toBe('disconnected')
    noReconnectArmed(clock)
    await roundTrip(ann, 'barrier')
    noReconnectArmed(clock)
    expect(sockets.count()).toBe(1)
    expect(connectionsOf(server, 'bob')).toEqual([])
    expect(bob.provider.status).toBe('disconnected')
  })

  it('after a revocation the provider holds no permissions: readOnly, no self', async () => {
    const server = await serve()
    const room = await newRoom(server, { usersAccesses: { bob: ['room:write'] } })
    const bob = peer(server, room, await idToken({ userId: 'bob' }), { maxBackoffMs: 1 })
    await connected(bob)
    expect(bob.provider.readOnly).toBe(false)
    const revoked = nextEvent<{ code: ErrorCode }>(bob, 'revoked')
    await updateRoom(server, room, { usersAccesses: { bob: [] } })
    expect((await revoked).code).toBe('revoked')
    // The server's last word was "no access": an editor bound to `readOnly` must stop taking edits
    // that can never be saved (bug: the provider keeps reporting the permissions it had).
    expect(bob.provider.readOnly).toBe(true)
    expect(bob.provider.self).toBeNull() // closed for good: no session
  })

  it('deleting the room: revoked with room_not_found, and no reconnection', async () => {
    const server = await serve()
    const room = await newRoom(server, { defaultAccesses: ['room:write'] })
    const sockets = countingWebSocket()
    const clock = manualClock()
    const ann = peer(server, room, await idToken({ userId: 'ann' }), { scheduler: clock, WebSocketPolyfill: sockets.Class })
    await connected(ann)

    const revoked = nextEvent<{ code: ErrorCode }>(ann, 'revoked')
    const res = await rest(server, 'DELETE', `/v1/rooms/${room}`)
    expect(res.status).toBe(204)
    expect((await revoked).code).toBe('room_not_found')
    expect(ann.provider.status).toBe('disconnected')
    noReconnectArmed(clock)
    await fetch(`${server.httpUrl}/healthz`)
    noReconnectArmed(clock)
    expect(sockets.count()).toBe(1)
    expect(server.app.tandem.connections.size).toBe(0)
  })
})

describe('acknowledgements', () => {
  it('a burst of 200 edits: saved events bring unsavedChanges back to 0, the other side has all of them', async () => {
    const server = await serve()
    const room = await newRoom(server, { defaultAccesses: ['room:write'] })
    const ann = peer(server, room, await idToken({ userId: 'ann' }))
    const bob = peer(server, room, await idToken({ userId: 'bob' }))
    await Promise.all([connected(ann), connected(bob)])

    let expected = ''
    for (let i = 0; i < 200; i++) {
      const piece = `${i % 10}`
      ann.text.insert(ann.text.length, piece)
      expected += piece
    }
    expect(ann.provider.unsavedChanges).toBe(200)
    await allSaved(ann)
    const saved = ann.events.filter(([name]) => name === 'saved').map(([, e]) => (e as { unsavedChanges: number }).unsavedChanges)
    expect(saved.at(-1)).toBe(0)
    // Never grows while nothing new is edited.
    for (let i = 1; i < saved.length; i++) expect(saved[i]!).toBeLessThanOrEqual(saved[i - 1]!)
    await textIs(bob, expected)
    const stored = await rest(server, 'GET', `/v1/rooms/${room}/ydoc`)
    expect((stored.body as { text: string }).text).toBe(expected)
  })
})

describe('final close codes stop retries', () => {
  it('a wrong token: error unauthorized, disconnected, no reconnection', async () => {
    const server = await serve()
    const room = await newRoom(server, { defaultAccesses: ['room:write'] })
    const sockets = countingWebSocket()
    const upgrades = countUpgrades(server)
    const forged = (await idToken({ userId: 'ann' })).replace(/.{4}$/, 'AAAA')
    const clock = manualClock()
    const ann = peer(server, room, forged, { scheduler: clock, WebSocketPolyfill: sockets.Class })
    const error = await errorOf(ann, 'unauthorized')
    await disconnected(ann)
    expect(error.code).toBe('unauthorized')
    noReconnectArmed(clock)
    await fetch(`${server.httpUrl}/healthz`)
    noReconnectArmed(clock)
    expect(sockets.count()).toBe(1)
    expect(upgrades.count()).toBe(1)
    expect(ann.statuses()).toEqual(['connecting', 'disconnected'])
    expect(ann.errors()).toEqual(['unauthorized'])
    expect(ann.provider.self).toBeNull()
    expect(ann.events.some(([name]) => name === 'revoked')).toBe(false)
  })

  it('an auth function giving a bad token is not asked again after the final refusal', async () => {
    const server = await serve()
    const room = await newRoom(server, { defaultAccesses: ['room:write'] })
    let calls = 0
    const sockets = countingWebSocket()
    const clock = manualClock()
    const ann = peer(
      server,
      room,
      async () => {
        calls++
        return 'not-a-jwt'
      },
      { scheduler: clock, WebSocketPolyfill: sockets.Class },
    )
    await errorOf(ann, 'unauthorized')
    await disconnected(ann)
    noReconnectArmed(clock)
    await fetch(`${server.httpUrl}/healthz`)
    noReconnectArmed(clock)
    expect(calls).toBe(1)
    expect(sockets.count()).toBe(1)
    expect(ann.provider.status).toBe('disconnected')
  })

  it('a valid token without access: error forbidden, no reconnection', async () => {
    const server = await serve()
    const room = await newRoom(server, { usersAccesses: { ann: ['room:write'] } })
    const sockets = countingWebSocket()
    const clock = manualClock()
    const zed = peer(server, room, await idToken({ userId: 'zed' }), { scheduler: clock, WebSocketPolyfill: sockets.Class })
    await errorOf(zed, 'forbidden')
    await disconnected(zed)
    noReconnectArmed(clock)
    await fetch(`${server.httpUrl}/healthz`)
    noReconnectArmed(clock)
    expect(sockets.count()).toBe(1)
    expect(zed.provider.synced).toBe(false)
    expect(zed.doc.getText('text').toString()).toBe('')
  })
})

describe('message types from a newer server', () => {
  it('a type the client does not know changes nothing: no event, same state, the socket still syncs', async () => {
    const server = await serve()
    const room = await newRoom(server, { defaultAccesses: ['room:write'] })
    const ann = peer(server, room, await idToken({ userId: 'ann' }))
    const bob = peer(server, room, await idToken({ userId: 'bob' }))
    await Promise.all([connected(ann), connected(bob)])
    await roundTrip(ann, 'before;')
    await textIs(bob, 'before;')
    const state = (): unknown => ({
      status: ann.provider.status,
      synced: ann.provider.synced,
      self: ann.provider.self,
      readOnly: ann.provider.readOnly,
      unsavedChanges: ann.provider.unsavedChanges,
      text: ann.text.toString(),
    })
    const before = state()
    const eventsBefore = ann.events.length

    const connection = [...server.app.tandem.connections].find((c) => c.id === ann.provider.self!.connectionId)!
    connection.send(Uint8Array.of(99)) // no payload
    connection.send(Uint8Array.of(99, 3, 1, 2, 3)) // a payload of a layout this client cannot know
    connection.send(Uint8Array.of(0xac, 0x02, 0x80)) // type 300, a payload that reads as truncated
    // Barrier: bob's edit reaches ann on the same socket after those frames.
    await roundTrip(bob, 'after;')
    await textIs(ann, 'before;after;')

    expect(ann.events.slice(eventsBefore)).toEqual([])
    expect(state()).toEqual({ ...(before as object), text: 'before;after;' })
    // The session goes on as before.
    ann.text.insert(ann.text.length, 'still;')
    await allSaved(ann)
    await textIs(bob, 'before;after;still;')
    expect(ann.errors()).toEqual([])
  })
})

describe('cross-tab (BroadcastChannel) only for writers', () => {
  it('with the server down, writers share edits over the channel; a reader neither receives nor publishes', async () => {
    const server = await serve()
    const room = await newRoom(server, { usersAccesses: { w1: ['room:write'], w2: ['room:write'], w3: ['room:write'], r: ['room:read'] } })
    const opts = { crossTab: true, maxBackoffMs: 500 }
    const w1 = peer(server, room, await idToken({ userId: 'w1' }), opts)
    const w2 = peer(server, room, await idToken({ userId: 'w2' }), opts)
    const w3 = peer(server, room, await idToken({ userId: 'w3' }), opts)
    const reader = peer(server, room, await idToken({ userId: 'r' }), opts)
    await Promise.all([w1, w2, w3, reader].map((p) => connected(p)))
    expect(reader.provider.readOnly).toBe(true)
    w1.text.insert(0, 'up;')
    await Promise.all([w2, w3, reader].map((p) => textIs(p, 'up;')))

    await server.stop()
    await Promise.all([w1, w2, w3, reader].map((p) => untilProvider('lost the server', p, () => p.provider.status !== 'connected')))

    // Only the channel can carry this now.
    w1.text.insert(w1.text.length, 'tab;')
    await Promise.all([textIs(w2, 'up;tab;'), textIs(w3, 'up;tab;')])
    // The reader's own edit goes nowhere.
    reader.text.insert(0, 'reader;')
    // Barrier: w3's edit goes over the channel after both; once w1 and w2 hold it, anything sent
    // earlier over the channel (to the reader, or from it) would have arrived too.
    w3.text.insert(w3.text.length, 'w3;')
    await Promise.all([textIs(w1, 'up;tab;w3;'), textIs(w2, 'up;tab;w3;')])
    expect(reader.text.toString()).toBe('reader;up;')
    expect(w1.text.toString()).not.toContain('reader;')
    expect(w2.text.toString()).not.toContain('reader;')
  })
})

describe('presence', () => {
  it('local state reaches the others; a reader without presence does not show; destroy removes it', async () => {
    const server = await serve()
    const room = await newRoom(server, {
      usersAccesses: { ann: ['room:write'], bob: ['room:write'], pia: ['room:presence:write'], rex: ['room:read'] },
    })
    const ann = peer(server, room, await idToken({ userId: 'ann' }))
    const bob = peer(server, room, await idToken({ userId: 'bob' }))
    const pia = peer(server, room, await idToken({ userId: 'pia' }))
    const rex = peer(server, room, await idToken({ userId: 'rex' }))
    await Promise.all([ann, bob, pia, rex].map((p) => connected(p)))
    const states = (p: Peer): Map<number, Record<string, unknown>> => p.provider.awareness!.getStates() as Map<number, Record<string, unknown>>
    const sees = (what: string, p: Peer, check: (s: Map<number, Record<string, unknown>>) => boolean): Promise<void> =>
      until(what, p.provider.awareness!, ['change', 'update'], () => check(states(p)))
    const nameOf = (p: Peer, of: Peer): unknown => (states(p).get(of.doc.clientID)?.user as { name?: unknown } | undefined)?.name

    ann.provider.awareness!.setLocalStateField('user', { name: 'Ann' })
    await sees('bob sees ann', bob, () => nameOf(bob, ann) === 'Ann')
    await sees('rex (reader) sees ann', rex, () => nameOf(rex, ann) === 'Ann')

    // A presence-only reader shows; a plain reader does not.
    pia.provider.awareness!.setLocalStateField('user', { name: 'Pia' })
    rex.provider.awareness!.setLocalStateField('user', { name: 'Rex' })
    await sees('ann sees pia', ann, () => nameOf(ann, pia) === 'Pia')
    // Barrier: rex's socket handles its frames in order, so once rex's re-authentication was
    // answered, any awareness it sent before was relayed; ann's own write round trip then ensures
    // that relay (sent to ann earlier on ann's socket) has been read.
    await rex.provider.refreshAuth()
    await roundTrip(ann, '.')
    expect(states(ann).has(rex.doc.clientID)).toBe(false)
    expect(states(bob).has(rex.doc.clientID)).toBe(false)
    expect(rex.errors()).not.toContain('presence_forbidden') // the provider never sent it
    expect(states(rex).get(rex.doc.clientID)).toEqual({ user: { name: 'Rex' } }) // kept locally

    const bobSeesAnn = states(bob).has(ann.doc.clientID)
    expect(bobSeesAnn).toBe(true)
    destroyPeer(ann)
    await sees('ann gone at bob', bob, (s) => !s.has(ann.doc.clientID))
    await sees('ann gone at pia', pia, (s) => !s.has(ann.doc.clientID))
  })
  it('presence comes back at the others after the server restarts', async () => {
    let server = await serve()
    const room = await newRoom(server, { defaultAccesses: ['room:write'] })
    const annClock = manualClock()
    const bobClock = manualClock()
    const ann = peer(server, room, await idToken({ userId: 'ann' }), { scheduler: annClock })
    const bob = peer(server, room, await idToken({ userId: 'bob' }), { scheduler: bobClock })
    await Promise.all([connected(ann), connected(bob)])
    ann.provider.awareness!.setLocalStateField('user', { name: 'Ann' })
    const annAtBob = (): boolean => bob.provider.awareness!.getStates().get(ann.doc.clientID)?.user !== undefined
    await until('bob sees ann', bob.provider.awareness!, ['change'], annAtBob)

    const { dataDir, port } = server
    await server.stop()
    await until('ann gone at bob while the server is down', bob.provider.awareness!, ['change'], () => !annAtBob())
    await Promise.all([disconnected(ann), disconnected(bob)])
    server = await serve({}, dataDir, port)
    reconnectNow(annClock)
    reconnectNow(bobClock)
    await Promise.all([connected(ann), connected(bob)])
    // Bug (see the report): ann re-sends her state at the clock bob already removed it at, which
    // y-protocols ignores; she reappears only when her state changes or renews (15 s).
    await until('bob sees ann again', bob.provider.awareness!, ['change'], annAtBob, 5_000)
  })

  it('presence comes back at the others after one dropped connection (same server)', async () => {
    const server = await serve()
    const room = await newRoom(server, { defaultAccesses: ['room:write'] })
    const clock = manualClock()
    const ann = peer(server, room, await idToken({ userId: 'ann' }), { scheduler: clock })
    const bob = peer(server, room, await idToken({ userId: 'bob' }))
    await Promise.all([connected(ann), connected(bob)])
    ann.provider.awareness!.setLocalStateField('user', { name: 'Ann' })
    const annAtBob = (): boolean => bob.provider.awareness!.getStates().get(ann.doc.clientID)?.user !== undefined
    await until('bob sees ann', bob.provider.awareness!, ['change'], annAtBob)

    const first = ann.provider.self!.connectionId
    const reconnected = nextEvent<{ connectionId: string }>(ann, 'authenticated', (self) => self.connectionId !== first)
    // A transient close (slow reader, 1013): the provider reconnects by itself.
    ;[...server.app.tandem.connections].find((c) => c.id === first)!.close(1013, 'slow_reader')
    await until('ann gone at bob', bob.provider.awareness!, ['change'], () => !annAtBob())
    await disconnected(ann)
    reconnectNow(clock)
    await reconnected
    // Bug (see the report): the server answers ann's state at its old clock with its tombstone;
    // y-protocols bumps ann's clock locally, but the provider drops that update (origin === provider)
    // instead of sending it, so ann stays invisible until her state changes or renews (15 s).
    await until('bob sees ann again', bob.provider.awareness!, ['change'], annAtBob, 5_000)
  })
})
