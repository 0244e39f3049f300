/**
 * The distributed mode (SPEC section 7.1), for real: Tandem processes started through the real
 * command line with `--redis-url` and `--database-url`, a Redis server of the test's own (so it can
 * be restarted; appendfsync always), PostgreSQL in a database of this file's own (and, for the
 * restart test, a PostgreSQL server of its own), and clients in this process. Editors on different
 * processes converge and see each other's presence; access changes made through one process act on
 * the other's sessions; edits and presence made while Redis drops the pub/sub connections still
 * arrive; `kill -9` of a process loses no acknowledged write and its presence goes;
 * Redis and PostgreSQL restarted under load lose nothing acknowledged, and sessions fail closed
 * while the control stream cannot be read. Timings (the 100 ms bound) are measured by the bench.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import * as Y from 'yjs'
import { TandemAdmin } from '../client/admin.ts'
import { TandemProvider } from '../client/provider.ts'
import { CloseCode } from '../protocol/errors.ts'
import { encodeFrame, writeSyncStep2 } from '../protocol/messages.ts'
import { mintIdToken } from '../protocol/mint.ts'
import { ClusterStore, FencedError, Leases } from '../server/cluster/index.ts'
import { ClusterKeys } from '../server/cluster/keys.ts'
import { binary, connectRedis } from '../server/cluster/redis.ts'
import { openPostgresStore } from '../server/store/postgres-store.ts'
import { type Balancer, startBalancer } from './support/balancer.ts'
import { type CliProcess, runCli } from './support/cli-process.ts'
import { type EngineServer, startPostgres, startRedis } from './support/engines.ts'
import { testDatabase } from './support/postgres.ts'
import { type RawClient, rawClient } from './support/raw-client.ts'
import { TEST_SECRET } from './support/server.ts'
import { until, withDeadline } from './support/wait.ts'

const database = testDatabase()
const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

const silentLog = { warn() {}, error() {}, info() {}, debug() {}, child: () => silentLog } as unknown as Parameters<typeof connectRedis>[2]

interface Node {
  readonly cli: CliProcess
  readonly port: number
  readonly http: string
  readonly ws: string
  readonly admin: TandemAdmin
}

/** One Tandem process of the cluster. */
const startNode = async (redisUrl: string, databaseUrl: string, extra: string[] = []): Promise<Node> => {
  const cli = runCli([
    '--port',
    '0',
    '--secret',
    TEST_SECRET,
    '--redis-url',
    redisUrl,
    '--database-url',
    databaseUrl,
    '--redis-prefix',
    'test:',
    '--log-level',
    'warn',
    '--store-window-ms',
    '0',
    ...extra,
  ])
  cleanups.push(() => {
    if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL')
  })
  const port = await cli.listening()
  const http = `http://127.0.0.1:${port}`
  return { cli, port, http, ws: `ws://127.0.0.1:${port}`, admin: new TandemAdmin({ url: http, secret: TEST_SECRET }) }
}

const ownRedis = async (): Promise<EngineServer> => {
  const redis = await startRedis()
  cleanups.push(() => redis.destroy())
  return redis
}

const cluster = async (count = 2): Promise<{ redis: EngineServer; databaseUrl: string; nodes: Node[] }> => {
  const redis = await ownRedis()
  const databaseUrl = await (await database()).schema()
  const nodes: Node[] = []
  for (let i = 0; i < count; i++) nodes.push(await startNode(redis.url, databaseUrl))
  return { redis, databaseUrl, nodes }
}

const token = async (userId: string): Promise<string> => (await mintIdToken(TEST_SECRET, { userId, userInfo: { name: userId } })).token

const provider = async (url: string, room: string, userId: string, doc = new Y.Doc()): Promise<TandemProvider> => {
  const p = new TandemProvider({
    url,
    room,
    doc,
    auth: await token(userId),
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    crossTab: false,
  })
  cleanups.push(() => p.destroy())
  await until(`${userId} synced`, p, ['synced'], () => p.synced, 15_000)
  return p
}

const textOf = (p: TandemProvider): string => p.doc.getText('t').toString()

const sameText = (what: string, providers: TandemProvider[], expected?: string): Promise<void> =>
  withDeadline(
    what,
    new Promise<void>((resolve) => {
      const check = (): void => {
        const first = textOf(providers[0]!)
        if (providers.every((p) => textOf(p) === first) && (expected === undefined || first === expected)) {
          for (const p of providers) p.doc.off('update', check)
          resolve()
        }
      }
      for (const p of providers) p.doc.on('update', check)
      check()
    }),
    15_000,
  )

/**
 * A writer that records what the server acknowledged: each write is one update carrying a marker,
 * and `saved` counts this connection's writes stored, in order.
 */
class MarkedWriter {
  readonly doc = new Y.Doc()
  readonly markers: string[] = []
  #client: RawClient
  #base = 0

  constructor(client: RawClient) {
    this.#client = client
  }

  static async connect(url: string, room: string, userId: string): Promise<MarkedWriter> {
    const client = await rawClient(`${url}/v1/sync`, room, { token: await token(userId) })
    await client.next('sync-step-2', undefined, 15_000)
    return new MarkedWriter(client)
  }

  get client(): RawClient {
    return this.#client
  }

  /** Markers the server has said are stored. */
  acknowledged(): string[] {
    const saved = Math.max(0, ...this.#client.messages.flatMap((m) => (m.kind === 'saved' ? [m.count] : [])))
    return this.markers.slice(0, this.#base + saved)
  }

  write(marker: string): void {
    const updates: Uint8Array[] = []
    this.doc.once('update', (u: Uint8Array) => updates.push(u))
    const text = this.doc.getText('t')
    text.insert(text.length, `[${marker}]`)
    this.markers.push(marker)
    this.#client.sendUpdate(updates[0]!)
  }

  /**
   * Reconnects (to another process, or to its own once it admits sessions again) and sends
   * everything it has, as a reconnecting client does; a transient refusal (1011, 1013) is retried
   * with the provider's kind of backoff.
   */
  async reconnect(url: string, room: string, userId: string): Promise<void> {
    const acknowledged = this.acknowledged().length
    const deadline = Date.now() + 20_000
    let client: RawClient
    for (let delay = 25; ; delay = Math.min(delay * 2, 50)) {
      client = await rawClient(`${url}/v1/sync`, room, { token: await token(userId) })
      const joined = await client.next('sync-step-2', undefined, 15_000).then(
        () => true,
        () => false,
      )
      if (joined) break
      const { code } = await client.closed
      if ((code !== CloseCode.tryAgainLater && code !== CloseCode.serverError) || Date.now() > deadline) throw new Error(`reconnect refused with ${code}`)
      await new Promise((resolve) => setTimeout(resolve, delay))
    }
    client.send(encodeFrame(writeSyncStep2, Y.encodeStateAsUpdate(this.doc)))
    await client.saved(1, 15_000)
    // Its sync step 2 carried every marker written so far: all of them are stored now.
    this.#client = client
    this.#base = Math.max(acknowledged, this.markers.length) - 1
  }
}

/** Resolves once `p`'s awareness holds a state whose user is called `name`. */
const seesUser = (p: TandemProvider, name: string, ms: number): Promise<void> =>
  until(
    `a state named ${name}`,
    p.awareness!,
    ['change'],
    () => [...p.awareness!.getStates().values()].some((s) => (s as { user?: { name?: string } }).user?.name === name),
    ms,
  )

const storedText = async (admin: TandemAdmin, room: string): Promise<string> => String(((await admin.getYDoc(room)) as { t?: unknown }).t ?? '')

describe('many processes as one server', () => {
  it("editors on two processes converge and see each other's presence; late joiners and REST on either process see everything", async () => {
    const { nodes } = await cluster()
    const [a, b] = nodes as [Node, Node]
    const room = 'shared'
    await a.admin.createRoom({ id: room, defaultAccesses: [], usersAccesses: { ann: ['room:write'], bob: ['room:write'], cyd: ['room:read'] } })
    const ann = await provider(a.ws, room, 'ann')
    const bob = await provider(b.ws, room, 'bob')
    ann.doc.getText('t').insert(0, 'ann here. ')
    bob.doc.getText('t').insert(0, 'bob here. ')
    await sameText('ann and bob converge', [ann, bob])
    expect(textOf(ann)).toContain('ann here.')
    expect(textOf(ann)).toContain('bob here.')

    ann.awareness!.setLocalStateField('user', { name: 'Ann' })
    await seesUser(bob, 'Ann', 15_000)

    // A late joiner on each process gets the whole document, and sees presence from the other process.
    for (const node of [a, b]) {
      const cyd = await provider(node.ws, room, 'cyd')
      await sameText(`a late joiner on ${node.port}`, [cyd, ann])
      await until('the late joiner sees ann', cyd.awareness!, ['change'], () => cyd.awareness!.getStates().has(ann.doc.clientID), 15_000)
      cyd.destroy()
    }

    // REST on either process: the room, its ACL, its document and its history.
    for (const node of [a, b]) {
      expect((await node.admin.getRoom(room)).usersAccesses).toEqual({ ann: ['room:write'], bob: ['room:write'], cyd: ['room:read'] })
      expect((await node.admin.listRooms({ prefix: 'sha' })).data.map((r) => r.id)).toEqual([room])
      expect(await storedText(node.admin, room)).toBe(textOf(ann))
      const writers = new Set((await node.admin.history(room)).map((e) => (e.actor.kind === 'user' ? e.actor.userId : e.actor.kind)))
      expect(writers).toEqual(new Set(['ann', 'bob']))
    }
  }, 60_000)

  it("pub/sub connections dropped by Redis: edits and a presence change made meanwhile reach the other process's editors", async () => {
    const { redis, nodes } = await cluster()
    const [a, b] = nodes as [Node, Node]
    const room = 'pubsub-drop'
    await a.admin.createRoom({ id: room, defaultAccesses: ['room:write'] })
    const ann = await provider(a.ws, room, 'ann')
    const bob = await provider(b.ws, room, 'bob')
    ann.doc.getText('t').insert(0, 'before. ')
    await sameText('ann and bob converge', [ann, bob], 'before. ')

    // Redis closes every pub/sub connection (as on a full output buffer or a network cut), again
    // every 5 ms for 400 ms, so the processes' subscribers are down most of that time (they come back
    // after a 50 ms backoff); what is published while they are down is gone. Ann edits meanwhile.
    const command = await connectRedis(redis.url, 'test-kill', silentLog)
    cleanups.push(async () => void (await command.quit()))
    const killing = (async () => {
      for (const end = Date.now() + 400; Date.now() < end; ) {
        await command.sendCommand(['CLIENT', 'KILL', 'TYPE', 'pubsub'])
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    })()
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      ann.doc.getText('t').insert(ann.doc.getText('t').length, `${i}. `)
    }
    ann.awareness!.setLocalStateField('user', { name: 'Ann' })
    await killing

    // The edits: read back from the room's log once bob's process is subscribed again.
    await sameText('bob gets the edits made while the connections were down', [ann, bob], 'before. 0. 1. 2. 3. 4. ')
    // The presence: asked for again once subscribed, well before a client renews it (every 15 s).
    await seesUser(bob, 'Ann', 5_000)
  }, 60_000)

  it("an ACL change, a revocation and a deletion made through one process act on the other's sessions", async () => {
    const { nodes } = await cluster()
    const [a, b] = nodes as [Node, Node]
    const room = 'access'
    await a.admin.createRoom({ id: room, defaultAccesses: [], usersAccesses: { ann: ['room:write'], bob: ['room:write'] } })
    const ann = await provider(a.ws, room, 'ann')
    const bob = await provider(a.ws, room, 'bob')

    // Downgrade through b: ann, on a, hears it and may no longer write.
    const downgraded = new Promise<{ readOnly: boolean }>((resolve) => ann.on('access-changed', resolve))
    await b.admin.updateRoom(room, { usersAccesses: { ann: ['room:read'] } })
    expect((await withDeadline('ann downgraded', downgraded)).readOnly).toBe(true)
    expect(ann.self?.permissions).toEqual(['room:read'])

    // Revoke through b: bob's session on a is closed for good (4403).
    const revoked = new Promise<{ code: string }>((resolve) => bob.on('revoked', resolve))
    expect(await b.admin.revoke({ userId: 'bob' })).toEqual({ closed: 0 })
    expect((await withDeadline('bob revoked', revoked)).code).toBe('revoked')

    // Delete through b: ann's session on a is closed with 4404, and the room is gone everywhere.
    const deleted = new Promise<{ code: string }>((resolve) => ann.on('revoked', resolve))
    await b.admin.deleteRoom(room)
    expect((await withDeadline('ann told the room was deleted', deleted)).code).toBe('room_not_found')
    await expect(a.admin.getRoom(room)).rejects.toMatchObject({ code: 'room_not_found' })
  }, 60_000)

  it('kill -9 of a process loses no acknowledged write; its clients move to another through the balancer; its presence goes', async () => {
    const { nodes } = await cluster()
    const [a, b] = nodes as [Node, Node]
    const room = 'crash'
    await a.admin.createRoom({ id: room, defaultAccesses: ['room:write'] })
    const balancer: Balancer = await startBalancer([a.port])
    cleanups.push(() => balancer.close())

    // Presence: a client on a, watched from b.
    const watcher = await provider(b.ws, room, 'wat')
    const shown = await provider(a.ws, room, 'sho')
    shown.awareness!.setLocalStateField('user', { name: 'Sho' })
    await until('the watcher sees sho', watcher.awareness!, ['change'], () => watcher.awareness!.getStates().has(shown.doc.clientID), 15_000)

    const writer = await MarkedWriter.connect(`ws://127.0.0.1:${balancer.port}`, room, 'wes')
    for (let i = 0; i < 200; i++) writer.write(`w${i}`)
    await until('some writes acknowledged', writer.client.socket, ['message'], () => writer.acknowledged().length >= 50, 15_000)
    for (let i = 200; i < 260; i++) writer.write(`w${i}`)
    const acknowledged = writer.acknowledged()
    a.cli.child.kill('SIGKILL')
    await a.cli.exited

    // The client reconnects through the balancer, now to b, and resends what it has.
    balancer.setBackends([b.port])
    await writer.reconnect(`ws://127.0.0.1:${balancer.port}`, room, 'wes')
    const stored = await storedText(b.admin, room)
    for (const marker of acknowledged) expect(stored).toContain(`[${marker}]`)
    for (const marker of writer.markers) expect(stored).toContain(`[${marker}]`)

    // b removes the dead process's clients' presence within a few seconds.
    await until("sho's presence gone from the watcher", watcher.awareness!, ['change'], () => !watcher.awareness!.getStates().has(shown.doc.clientID), 15_000)
  }, 60_000)

  it('Redis restarted under load: nothing acknowledged while away, writers told, sessions fail closed, nothing acknowledged lost', async () => {
    const { redis, nodes } = await cluster()
    const [a, b] = nodes as [Node, Node]
    const room = 'redis-restart'
    await a.admin.createRoom({ id: room, defaultAccesses: ['room:write'] })
    const writer = await MarkedWriter.connect(a.ws, room, 'wes')
    const other = await MarkedWriter.connect(b.ws, room, 'oli')
    for (let i = 0; i < 50; i++) {
      writer.write(`a${i}`)
      other.write(`b${i}`)
    }
    await writer.client.saved(50, 15_000)
    await other.client.saved(50, 15_000)

    await redis.stop('SIGTERM')
    for (let i = 50; i < 60; i++) writer.write(`a${i}`)
    // Told: its writes are not stored yet; and nothing is acknowledged while Redis is away.
    await writer.client.next('error', (m) => m.code === 'server_error', 15_000)
    const whileAway = writer.acknowledged().length
    // The processes cannot read the control stream: they fail closed, closing sessions with 1013.
    expect((await withDeadline('sessions closed while Redis is away', writer.client.closed, 15_000)).code).toBe(CloseCode.tryAgainLater)
    expect(whileAway).toBe(50)
    const health = (await (await fetch(`${a.http}/healthz`)).json()) as { status: string; engines: { redis: string } }
    expect(health.status).toBe('degraded')

    await redis.start()
    // The processes reconnect by themselves; the writer comes back and sends what it has.
    await writer.reconnect(a.ws, room, 'wes')
    const stored = await storedText(b.admin, room)
    for (const marker of [...writer.markers, ...other.acknowledged()]) expect(stored).toContain(`[${marker}]`)
  }, 90_000)

  it('PostgreSQL restarted under load: writes go on being acknowledged (Redis has them), joins fail closed while it is away, nothing lost', async () => {
    const redis = await ownRedis()
    const postgres = await startPostgres()
    cleanups.push(() => postgres.destroy())
    const a = await startNode(redis.url, postgres.url)
    const b = await startNode(redis.url, postgres.url)
    const room = 'pg-restart'
    await a.admin.createRoom({ id: room, defaultAccesses: ['room:write'] })
    const writer = await MarkedWriter.connect(a.ws, room, 'wes')
    for (let i = 0; i < 30; i++) writer.write(`a${i}`)
    await writer.client.saved(30, 15_000)

    await postgres.stop('SIGTERM')
    for (let i = 30; i < 60; i++) writer.write(`a${i}`)
    await writer.client.saved(60, 15_000) // durable in Redis: acknowledged
    // A join needs the ACL, which is in PostgreSQL: refused while it is away (fail closed).
    const refused = await rawClient(`${b.ws}/v1/sync`, room, { token: await token('late') })
    expect([CloseCode.serverError, CloseCode.tryAgainLater]).toContain((await withDeadline('the join refused', refused.closed, 15_000)).code)

    await postgres.start()
    const late = await MarkedWriter.connect(b.ws, room, 'late')
    await until(
      'the late joiner has every write',
      late.client.socket,
      ['message'],
      () => writer.markers.every((m) => late.client.doc.getText('t').toString().includes(`[${m}]`)),
      15_000,
    )
  }, 90_000)
})

describe('compaction under a fenced lease', () => {
  it('a checkpoint from a holder whose lease was taken over is refused and trims nothing', async () => {
    const redis = await ownRedis()
    const databaseUrl = await (await database()).schema()
    const pg = await openPostgresStore(databaseUrl)
    cleanups.push(() => pg.close())
    await ClusterStore.migrate(pg.pool)
    const command = await connectRedis(redis.url, 'test', silentLog)
    cleanups.push(async () => void (await command.quit()))
    const keys = new ClusterKeys('lease-test:')
    const stale = new Leases(pg.pool, 'process-stale')
    const fresh = new Leases(pg.pool, 'process-fresh')
    const store = (processId: string) =>
      new ClusterStore({ keys, command, binary: binary(command), postgres: pg, processId, waitReplicas: 0, position: () => undefined })

    const doc = new Y.Doc()
    const updates: Uint8Array[] = []
    doc.on('update', (u: Uint8Array) => updates.push(u))
    for (let i = 0; i < 5; i++) doc.getText('t').insert(0, `${i}`)
    for (const u of updates) await store('writer').append('r', 0, [u])
    const entries = await command.xRange(keys.log('r'), '-', '+')
    const covered = entries.at(-1)!.id

    // A lease that lapses at once (as if its holder had paused past it): another process takes it over.
    const staleLease = (await stale.acquire('r', 0))!
    const freshLease = (await fresh.acquire('r'))!
    expect(freshLease.epoch).toBe(staleLease.epoch + 1)

    await expect(store('process-stale').checkpoint(staleLease, 'r', covered, Y.encodeStateAsUpdate(doc))).rejects.toBeInstanceOf(FencedError)
    expect(await command.xLen(keys.log('r'))).toBe(5) // nothing trimmed
    expect(await fresh.checkpoint('r')).toBeNull()

    await store('process-fresh').checkpoint(freshLease, 'r', covered, Y.encodeStateAsUpdate(doc))
    expect(await command.xLen(keys.log('r'))).toBe(0)
    const loaded = await store('reader').load('r')
    const back = new Y.Doc()
    for (const u of loaded.updates) Y.applyUpdate(back, u)
    expect(back.getText('t').toString()).toBe(doc.getText('t').toString())
  }, 30_000)
})

describe('one process on PostgreSQL alone', () => {
  it('keeps documents, rooms and ACLs in PostgreSQL across a restart', async () => {
    const databaseUrl = await (await database()).schema()
    const args = ['--port', '0', '--secret', TEST_SECRET, '--database-url', databaseUrl, '--log-level', 'warn']
    const first = runCli(args)
    cleanups.push(() => void first.child.kill('SIGKILL'))
    const port = await first.listening()
    const admin = new TandemAdmin({ url: `http://127.0.0.1:${port}`, secret: TEST_SECRET })
    await admin.createRoom({ id: 'pg-only', defaultAccesses: ['room:write'], usersAccesses: { ann: ['room:read'] } })
    const writer = await MarkedWriter.connect(`ws://127.0.0.1:${port}`, 'pg-only', 'wes')
    for (let i = 0; i < 20; i++) writer.write(`p${i}`)
    await writer.client.saved(20, 15_000)
    first.child.kill('SIGKILL')
    await first.exited

    const second = runCli(args)
    cleanups.push(() => void second.child.kill('SIGKILL'))
    const again = new TandemAdmin({ url: `http://127.0.0.1:${await second.listening()}`, secret: TEST_SECRET })
    expect((await again.getRoom('pg-only')).usersAccesses).toEqual({ ann: ['room:read'] })
    const stored = await storedText(again, 'pg-only')
    for (const marker of writer.markers) expect(stored).toContain(`[${marker}]`)
    const health = (await (await fetch(`http://127.0.0.1:${await second.listening()}/healthz`)).json()) as { engines: Record<string, string> }
    expect(health.engines).toEqual({ postgres: 'ok' })
  }, 60_000)
})
