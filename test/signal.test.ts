/**
 * Tandem's signalling endpoint for WebRTC peers (`/v1/signal`): the stock y-webrtc client's mesh
 * forms through it (real WebRTC, `@roamhq/wrtc`, one peer per process); a socket gets only the
 * topics its token grants `room:read` in; every relayed publish carries the sender's identity as
 * the server knows it; access changes act on subscriptions live; bad input closes only the sender.
 */

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import WebSocket from 'ws'
import { afterEach, describe, expect, it } from 'vitest'
import { accessToken, createRoom, idToken, rest, updateRoom } from './support/access.ts'
import { type TestServer, serversPerTest } from './support/server.ts'
import { withDeadline } from './support/wait.ts'

const { start } = serversPerTest()
const cleanups: (() => void)[] = []
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup()
})

const ACL = { defaultAccesses: [], usersAccesses: { ann: ['room:write'], bob: ['room:write'], rita: ['room:read'] } } as const

const startWithRoom = async (options: Parameters<typeof start>[0] = {}): Promise<TestServer> => {
  const server = await start({ authenticate: undefined, ...options })
  await createRoom(server, {
    id: 'mesh',
    defaultAccesses: [...ACL.defaultAccesses],
    usersAccesses: { ann: ['room:write'], bob: ['room:write'], rita: ['room:read'] },
  })
  return server
}

const signalUrl = (server: TestServer, token?: string): string =>
  `ws://127.0.0.1:${server.port}/v1/signal${token === undefined ? '' : `?token=${encodeURIComponent(token)}`}`

/** Polls `check` every 10 ms until it holds. */
const poll = (what: string, check: () => boolean, ms?: number): Promise<void> =>
  withDeadline(
    what,
    (async () => {
      while (!check()) await new Promise((r) => setTimeout(r, 10))
    })(),
    ms,
  )

interface Raw {
  readonly ws: WebSocket
  readonly received: Record<string, unknown>[]
  readonly closed: Promise<{ code: number; reason: string }>
  send(message: unknown): void
}

/** A raw signalling client: JSON in, JSON recorded. */
const raw = async (url: string, auth?: string | null): Promise<Raw> => {
  const ws = new WebSocket(url)
  const received: Record<string, unknown>[] = []
  ws.on('message', (data: Buffer) => received.push(JSON.parse(data.toString()) as Record<string, unknown>))
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
  cleanups.push(() => ws.terminate())
  const client = { ws, received, closed, send: (message: unknown) => ws.send(typeof message === 'string' ? message : JSON.stringify(message)) }
  if (auth !== undefined) {
    client.send({ type: 'auth', token: auth })
    await poll('authenticated', () => received.some((m) => m.type === 'tandem:authenticated'))
  }
  return client
}

const ofType = (client: Raw, type: string): Record<string, unknown>[] => client.received.filter((m) => m.type === type)

/** Subscribes and waits until the server said it holds the topic (Tandem clients hear it). */
const subscribed = async (client: Raw, topic: string): Promise<void> => {
  client.send({ type: 'subscribe', topics: [topic] })
  await poll(`subscribed to ${topic}`, () => ofType(client, 'tandem:subscribed').some((m) => m.topic === topic))
}

describe('the stock y-webrtc client', () => {
  /** A y-webrtc peer in its own process (test/support/webrtc-peer.ts), its last state kept. */
  const peer = (url: string): { state: { text: string; peers: number }; child: ChildProcessWithoutNullStreams; insert(text: string): void } => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/webrtc-peer.ts', 'mesh', url], { stdio: ['pipe', 'pipe', 'pipe'] })
    cleanups.push(() => child.kill('SIGKILL'))
    const p = { state: { text: '', peers: 0 }, child, insert: (text: string) => child.stdin.write(`${JSON.stringify({ insert: text })}\n`) }
    createInterface({ input: child.stdout }).on('line', (line) => {
      p.state = JSON.parse(line) as { text: string; peers: number }
    })
    return p
  }

  it('forms its mesh through Tandem with ?token= in compat mode, and a peer without access is left out', async () => {
    const server = await startWithRoom({ yWebsocketCompat: true })
    const ann = peer(signalUrl(server, await idToken({ userId: 'ann' })))
    const stranger = peer(signalUrl(server, await idToken({ userId: 'stranger' })))
    // y-webrtc's own race: two peers starting in the same instant can each miss the other's
    // announce; a moment apart, as people join, they never do.
    await new Promise((r) => setTimeout(r, 700))
    const bob = peer(signalUrl(server, await idToken({ userId: 'bob' })))
    await poll('ann and bob connected', () => ann.state.peers === 1 && bob.state.peers === 1, 20_000)
    ann.insert('over the mesh')
    await poll('bob has the text', () => bob.state.text === 'over the mesh', 10_000)
    // The stranger was never in the topic: no peer ever connected to it, it has nothing.
    expect(stranger.state).toEqual({ text: '', peers: 0 })
  }, 40_000)
})

describe('the signalling endpoint', () => {
  it('relays a publish to the topic, the sender too, stamped with who sent it (a forged stamp is replaced)', async () => {
    const server = await startWithRoom()
    const ann = await raw(signalUrl(server), await idToken({ userId: 'ann' }))
    const rita = await raw(signalUrl(server), await idToken({ userId: 'rita' }))
    await subscribed(ann, 'mesh')
    await subscribed(rita, 'mesh')
    expect(ofType(rita, 'tandem:subscribed').at(-1)).toMatchObject({ topic: 'mesh', permissions: ['room:read'] })

    rita.send({ type: 'publish', topic: 'mesh', data: { type: 'announce', from: 'r' }, tandem: { userId: 'ann', permissions: ['room:write'] } })
    await poll('ann got rita’s publish', () => ofType(ann, 'publish').length === 1)
    const relayed = ofType(ann, 'publish')[0]!
    expect(relayed).toMatchObject({ topic: 'mesh', clients: 2, data: { type: 'announce', from: 'r' } })
    expect(relayed.tandem).toMatchObject({ userId: 'rita', permissions: ['room:read'] })
    const ritaId = ofType(rita, 'tandem:authenticated')[0]!.connectionId
    expect((relayed.tandem as { connectionId: string }).connectionId).toBe(ritaId)
    await poll('rita got her own back', () => ofType(rita, 'publish').length === 1)

    rita.send({ type: 'ping' })
    await poll('pong', () => ofType(rita, 'pong').length === 1)
  })

  it('ignores a subscription without room:read, and its publishes', async () => {
    const server = await startWithRoom()
    const ann = await raw(signalUrl(server), await idToken({ userId: 'ann' }))
    const stranger = await raw(signalUrl(server), await idToken({ userId: 'stranger' }))
    await subscribed(ann, 'mesh')
    stranger.send({ type: 'subscribe', topics: ['mesh'] })
    await poll('stranger refused', () => ofType(stranger, 'tandem:error').some((m) => m.code === 'forbidden' && m.topic === 'mesh'))
    stranger.send({ type: 'publish', topic: 'mesh', data: { type: 'announce', from: 's' } })
    ann.send({ type: 'publish', topic: 'mesh', data: { type: 'announce', from: 'a' } })
    await poll('ann got her own', () => ofType(ann, 'publish').length === 1)
    expect(ofType(ann, 'publish')[0]!.data).toEqual({ type: 'announce', from: 'a' })
    expect(ofType(stranger, 'publish')).toEqual([])
  })

  it('an anonymous stock client gets nothing in a room with no default access', async () => {
    const server = await startWithRoom({ allowAnonymous: true })
    const ann = await raw(signalUrl(server), await idToken({ userId: 'ann' }))
    await subscribed(ann, 'mesh')
    const stock = await raw(signalUrl(server, await idToken({ userId: 'ann' })))
    // Without compat mode, ?token= is not read: the stock client is anonymous.
    stock.send({ type: 'subscribe', topics: ['mesh'] })
    stock.send({ type: 'publish', topic: 'mesh', data: { from: 'stock' } })
    ann.send({ type: 'publish', topic: 'mesh', data: { from: 'ann' } })
    await poll('ann got hers', () => ofType(ann, 'publish').length >= 1)
    // Nothing to wait on for what must not happen: a moment for a stray relay to arrive.
    await new Promise((r) => setTimeout(r, 200))
    expect(ofType(ann, 'publish').map((m) => m.data)).toEqual([{ from: 'ann' }])
    expect(stock.received).toEqual([])
  })

  it('a downgrade is told to the session and its peers; a revocation and a deletion drop it from the topic at once', async () => {
    const server = await startWithRoom()
    await createRoom(server, { id: 'other', defaultAccesses: [], usersAccesses: { ann: ['room:write'], bob: ['room:write'] } })
    const ann = await raw(signalUrl(server), await idToken({ userId: 'ann' }))
    const bob = await raw(signalUrl(server), await idToken({ userId: 'bob' }))
    await subscribed(ann, 'mesh')
    await subscribed(bob, 'mesh')
    await subscribed(bob, 'other')
    const bobId = ofType(bob, 'tandem:authenticated')[0]!.connectionId

    await updateRoom(server, 'mesh', { usersAccesses: { bob: ['room:read'] } })
    await poll('ann told bob reads only', () =>
      ofType(ann, 'tandem:peer').some((m) => m.connectionId === bobId && JSON.stringify(m.permissions) === '["room:read"]'),
    )
    await poll('bob told', () => ofType(bob, 'tandem:subscribed').some((m) => m.topic === 'mesh' && JSON.stringify(m.permissions) === '["room:read"]'))

    await updateRoom(server, 'mesh', { usersAccesses: { bob: null } })
    await poll('bob revoked', () => ofType(bob, 'tandem:error').some((m) => m.code === 'revoked' && m.topic === 'mesh'))
    await poll('ann told bob left', () => ofType(ann, 'tandem:peer').some((m) => m.connectionId === bobId && JSON.stringify(m.permissions) === '[]'))
    bob.send({ type: 'publish', topic: 'mesh', data: { from: 'bob' } })
    ann.send({ type: 'publish', topic: 'mesh', data: { from: 'ann' } })
    await poll('ann got hers', () => ofType(ann, 'publish').length >= 1)
    expect(ofType(ann, 'publish').map((m) => m.data)).toEqual([{ from: 'ann' }])
    expect(ofType(bob, 'publish').filter((m) => m.topic === 'mesh')).toEqual([])

    // Bob's other topic is untouched until its room is deleted.
    expect((await rest(server, 'DELETE', '/v1/rooms/other')).status).toBe(204)
    await poll('bob dropped from other', () => ofType(bob, 'tandem:error').some((m) => m.code === 'room_not_found' && m.topic === 'other'))
    expect(bob.ws.readyState).toBe(WebSocket.OPEN)
  })

  it('an expiring token drops its subscriptions; a fresh one in the socket takes them up again', async () => {
    const server = await startWithRoom()
    const ann = await raw(signalUrl(server), await accessToken({ userId: 'ann', rooms: { mesh: ['room:write'] } }, { ttlSeconds: 1 }))
    await subscribed(ann, 'mesh')
    await poll('expired', () => ofType(ann, 'tandem:error').some((m) => m.code === 'token_expired'), 5_000)
    ann.send({ type: 'auth', token: await idToken({ userId: 'ann' }) })
    await subscribed(ann, 'mesh')
    ann.send({ type: 'publish', topic: 'mesh', data: { from: 'ann' } })
    await poll('relayed again', () => ofType(ann, 'publish').length === 1)
  })

  it.each([
    ['malformed JSON', '{not json', 4400],
    ['an unknown type', { type: 'teleport' }, 4400],
    ['a binary frame', Buffer.from([1, 2, 3]), 4400],
    ['an oversized message', { type: 'publish', topic: 'mesh', data: 'x'.repeat(2048) }, 4413],
  ])('%s closes only the sender', async (_what, bad, code) => {
    const server = await startWithRoom({ limits: { signalMessageBytes: 1024 } })
    const ann = await raw(signalUrl(server), await idToken({ userId: 'ann' }))
    const bob = await raw(signalUrl(server), await idToken({ userId: 'bob' }))
    await subscribed(ann, 'mesh')
    await subscribed(bob, 'mesh')
    if (Buffer.isBuffer(bad)) bob.ws.send(bad)
    else bob.send(bad)
    expect((await withDeadline('bob closed', bob.closed)).code).toBe(code)
    ann.send({ type: 'publish', topic: 'mesh', data: { from: 'ann' } })
    await poll('ann still relayed', () => ofType(ann, 'publish').length === 1)
    expect(ofType(ann, 'publish')[0]!.clients).toBe(1)
  })

  it('a flood closes the sender with 4529', async () => {
    const server = await startWithRoom({ limits: { messagesPerSecond: 10, messageBurst: 20 } })
    const ann = await raw(signalUrl(server), await idToken({ userId: 'ann' }))
    for (let i = 0; i < 50; i++) ann.send({ type: 'ping' })
    expect((await withDeadline('closed', ann.closed)).code).toBe(4529)
  })

  it('past topicsPerSocket, a subscription is refused', async () => {
    const server = await startWithRoom({ limits: { topicsPerSocket: 1 } })
    await createRoom(server, { id: 'second', defaultAccesses: ['room:read'] })
    const ann = await raw(signalUrl(server), await idToken({ userId: 'ann' }))
    await subscribed(ann, 'mesh')
    ann.send({ type: 'subscribe', topics: ['second'] })
    await poll('refused', () => ofType(ann, 'tandem:error').some((m) => m.code === 'rate_limited' && m.topic === 'second'))
  })
})
