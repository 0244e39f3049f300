/**
 * A bounded soak against an in-process server with real token authentication: rooms created over
 * REST, TandemProviders joining and leaving at random, writers editing, ACL downgrades, upgrades and
 * revocations mid-stream, and a reconnect storm after a graceful restart. Afterwards every room has
 * converged on every connected client and equals what is on disk, the heap is back near its
 * baseline, and no socket or room is left behind.
 *
 *   npm run soak -- --seconds 60 --connections 300 --seed 7
 *
 * `runSoak` is also the short form CI runs (test/soak.test.ts). Every loop is bounded in count and
 * time; all traffic goes to 127.0.0.1.
 */

import { rmSync } from 'node:fs'
import * as prng from 'lib0/prng'
import { WebSocket } from 'ws'
import * as Y from 'yjs'
import { TandemProvider, type TandemProviderOptions } from '../client/provider.ts'
import { mintIdToken } from '../protocol/mint.ts'
import type { Permission } from '../protocol/permissions.ts'
import { openLevelStore } from '../server/store/level-store.ts'
import { contentOf, randomEdit } from '../test/support/random.ts'
import { TEST_SECRET, type TestServer, startServer } from '../test/support/server.ts'
import { mb, settledHeapBytes } from './memory.ts'

export interface SoakOptions {
  readonly seconds: number
  readonly connections: number
  /** Default: one room per ten connections. */
  readonly rooms?: number
  readonly seed?: number
  readonly log?: (line: string) => void
}

export interface SoakReport {
  readonly passed: boolean
  readonly failures: string[]
  readonly seed: number
  readonly heap: { readonly baseline: number; readonly peak: number; readonly final: number }
  readonly counts: Record<string, number>
}

type WebSocketClass = NonNullable<TandemProviderOptions['WebSocketPolyfill']>

const USERS_PER_ROOM = 5
const MAX_BACKOFF_MS = 400
const IDLE_UNLOAD_MS = 200
const SETTLE_MS = 30_000
/** The heap may end this much above its baseline (allocator slack, caches, JIT). */
const HEAP_SLACK = 24 * 1024 * 1024

interface Client {
  readonly id: number
  readonly room: string
  readonly user: string
  readonly doc: Y.Doc
  readonly provider: TandemProvider
  ended: boolean
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolves once `check()` holds, re-checked every `everyMs`, or rejects after `ms`. A soak waits on many emitters at once. */
const waitFor = async (what: string, check: () => boolean, ms = SETTLE_MS, everyMs = 50): Promise<void> => {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(everyMs)
  }
}

const snapshotKey = (doc: Y.Doc): string => {
  const sv = [...Y.decodeStateVector(Y.encodeStateVector(doc)).entries()].sort((a, b) => a[0] - b[0])
  const ds = [...Y.snapshot(doc).ds.clients.entries()].sort((a, b) => a[0] - b[0]).map(([c, items]) => [c, items.map((i) => [i.clock, i.len])])
  return JSON.stringify({ sv, ds, content: contentOf(doc) })
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const log = options.log ?? ((line: string) => console.log(line))
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31)
  const gen = prng.create(seed)
  const roomCount = options.rooms ?? Math.max(1, Math.round(options.connections / 10))
  const failures: string[] = []
  const counts: Record<string, number> = {
    joins: 0,
    leaves: 0,
    edits: 0,
    downgrades: 0,
    upgrades: 0,
    revocations: 0,
    revokedClients: 0,
    restarts: 0,
    providerErrors: 0,
  }
  log(`soak: seed ${seed}, ${options.seconds} s, ${options.connections} connections, ${roomCount} rooms`)

  const serverOptions = {
    authenticate: undefined,
    idleUnloadMs: IDLE_UNLOAD_MS,
    compactAfterRecords: 100,
    limits: { connectionsPerIpPerMinute: 1_000_000, restRequestsPerMinute: 1_000_000 },
  }
  let server: TestServer = await startServer(serverOptions)
  const dataDir = server.dataDir
  const rooms = Array.from({ length: roomCount }, (_, i) => `soak-${i}`)
  const usersOf = (room: string): string[] => Array.from({ length: USERS_PER_ROOM }, (_, i) => `${room}-u${i}`)
  const secretHeaders = { authorization: `Bearer ${TEST_SECRET}` }
  const rest = async (method: 'POST', url: string, payload: object): Promise<void> => {
    const res = await server.app.inject({ method, url, headers: secretHeaders, payload })
    if (res.statusCode !== 200) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`)
  }
  for (const room of rooms) {
    const write: Record<string, Permission[]> = Object.fromEntries(usersOf(room).map((u) => [u, ['room:write']]))
    await rest('POST', '/v1/rooms', { id: room, defaultAccesses: [], usersAccesses: write })
  }

  const baseline = await settledHeapBytes()
  let peak = baseline
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().heapUsed)
  }, 100)

  const clients = new Set<Client>()
  let nextId = 0
  const downgraded = new Set<string>() // `${room}\n${user}`

  const join = (): Client => {
    const room = prng.oneOf(gen, rooms)
    const user = prng.oneOf(gen, usersOf(room))
    const doc = new Y.Doc()
    const provider = new TandemProvider({
      url: `ws://127.0.0.1:${server.port}`,
      room,
      doc,
      auth: async () => (await mintIdToken(TEST_SECRET, { userId: user })).token,
      WebSocketPolyfill: WebSocket as unknown as WebSocketClass,
      crossTab: false,
      maxBackoffMs: MAX_BACKOFF_MS,
    })
    const client: Client = { id: nextId++, room, user, doc, provider, ended: false }
    provider.awareness?.setLocalStateField('user', { name: user, client: client.id })
    provider.on('revoked', () => {
      client.ended = true
    })
    provider.on('error', (error) => {
      counts.providerErrors!++
      // A final refusal (a revoked user's old token) ends the client; notices do not.
      if (error.code === 'revoked' || error.code === 'unauthorized' || error.code === 'forbidden') client.ended = true
    })
    clients.add(client)
    counts.joins!++
    return client
  }

  const leave = (client: Client): void => {
    clients.delete(client)
    client.provider.destroy()
    client.doc.destroy()
  }

  for (let i = 0; i < options.connections; i++) join()

  let restarting = false
  const endAt = Date.now() + options.seconds * 1000
  const restartAt = Date.now() + options.seconds * 600
  let restarted = false
  const loops: Promise<void>[] = []
  const running = (): boolean => Date.now() < endAt && failures.length === 0

  // Writers edit while they may.
  loops.push(
    (async () => {
      for (let round = 0; running() && round < 1_000_000; round++) {
        for (const client of clients) {
          if (client.ended || client.provider.readOnly || prng.int32(gen, 0, 9) !== 0) continue
          randomEdit(gen, client.doc)
          counts.edits!++
        }
        await sleep(prng.int32(gen, 20, 60))
      }
    })(),
  )

  // Joins and leaves; ended (revoked) clients leave and are replaced.
  loops.push(
    (async () => {
      for (let round = 0; running() && round < 1_000_000; round++) {
        for (const client of [...clients]) {
          if (client.ended) {
            counts.revokedClients!++
            leave(client)
          }
        }
        if (clients.size > 0 && prng.bool(gen)) {
          leave(prng.oneOf(gen, [...clients]))
          counts.leaves!++
        }
        while (clients.size < options.connections) join()
        await sleep(prng.int32(gen, 50, 200))
      }
    })(),
  )

  // ACL changes and revocations, and one graceful restart with a reconnect storm.
  loops.push(
    (async () => {
      for (let round = 0; running() && round < 1_000_000; round++) {
        if (!restarted && Date.now() >= restartAt) {
          restarted = true
          restarting = true
          const before = server.app.tandem.connections.size
          server = await server.restart()
          counts.restarts!++
          restarting = false
          const storm = Date.now()
          try {
            await waitFor('the reconnect storm to settle', () => [...clients].every((c) => c.ended || c.provider.status === 'connected'))
            log(`soak: restart: ${before} sockets closed, every client back in ${Date.now() - storm} ms`)
          } catch (err) {
            failures.push(
              `reconnect storm: ${(err as Error).message}; ${[...clients].filter((c) => !c.ended && c.provider.status !== 'connected').length} clients not back`,
            )
          }
          continue
        }
        const room = prng.oneOf(gen, rooms)
        const user = prng.oneOf(gen, usersOf(room))
        const key = `${room}\n${user}`
        const roll = prng.int32(gen, 0, 9)
        try {
          if (roll < 1) {
            await rest('POST', '/v1/revoke', { userId: user, roomId: room })
            counts.revocations!++
          } else if (roll < 5 && !downgraded.has(key)) {
            await rest('POST', `/v1/rooms/${room}`, { usersAccesses: { [user]: ['room:read'] } })
            downgraded.add(key)
            counts.downgrades!++
          } else if (downgraded.has(key)) {
            await rest('POST', `/v1/rooms/${room}`, { usersAccesses: { [user]: ['room:write'] } })
            downgraded.delete(key)
            counts.upgrades!++
          }
        } catch (err) {
          if (!restarting) failures.push(`REST: ${(err as Error).message}`)
        }
        await sleep(prng.int32(gen, 100, 300))
      }
    })(),
  )

  await Promise.all(loops)
  if (!restarted && failures.length === 0) failures.push('the run ended before the restart: give it more seconds')

  // Everyone may write again: writes a downgraded session had dropped are asked for and sent.
  for (const key of downgraded) {
    const [room, user] = key.split('\n') as [string, string]
    await rest('POST', `/v1/rooms/${room}`, { usersAccesses: { [user]: ['room:write'] } })
    counts.upgrades!++
  }
  downgraded.clear()
  for (const client of [...clients]) if (client.ended) leave(client)

  // Convergence: every client of a room holds the room's document, deletions included.
  const expected = new Map<string, string>()
  // One deadline for the whole phase, so a failure is reported (with who is behind) well within the
  // caller's own timeout, not as a hang.
  const settleBy = Date.now() + SETTLE_MS
  const left = (): number => Math.max(0, settleBy - Date.now())
  let behind = ''
  try {
    await waitFor('every client to be connected', () => [...clients].every((c) => c.provider.status === 'connected' && !c.provider.readOnly), left())
    for (const room of rooms) {
      const members = [...clients].filter((c) => c.room === room)
      if (members.length === 0) continue
      await waitFor(
        `room ${room} to converge`,
        () => {
          const roomDoc = server.app.tandem.registry.get(room)?.doc
          if (roomDoc === undefined) return false
          const key = snapshotKey(roomDoc)
          const lagging = members.filter((c) => c.provider.unsavedChanges !== 0 || snapshotKey(c.doc) !== key)
          behind = lagging.map((c) => `${c.user} (${c.provider.status}, unsaved ${c.provider.unsavedChanges})`).join(', ')
          return lagging.length === 0
        },
        left(),
      )
      expected.set(room, snapshotKey(members[0]!.doc))
    }
  } catch (err) {
    const notConnected = [...clients].filter((c) => c.provider.status !== 'connected' || c.provider.readOnly)
    failures.push(`convergence: ${(err as Error).message}; not connected or read-only: ${notConnected.length}; behind: ${behind || 'none'}`)
  }
  const connectedAtEnd = clients.size

  // Everyone leaves: no socket and no room may stay behind.
  for (const client of [...clients]) leave(client)
  const app = server.app
  try {
    await waitFor('every room to unload', () => app.tandem.registry.size === 0 && app.tandem.connections.size === 0)
  } catch (err) {
    failures.push(`${(err as Error).message}: ${app.tandem.registry.size} rooms, ${app.tandem.connections.size} connections left`)
  }
  const serverSockets = app.websocketServer.clients.size
  if (serverSockets !== 0) failures.push(`${serverSockets} server sockets left open`)
  clearInterval(sampler)
  const final = await settledHeapBytes()
  if (final > baseline + HEAP_SLACK) failures.push(`heap did not return near its baseline: ${mb(baseline)} → ${mb(final)}`)

  // On disk: what every client converged on.
  await server.stop()
  const store = await openLevelStore(dataDir)
  try {
    for (const [room, key] of expected) {
      const doc = new Y.Doc()
      for (const update of (await store.load(room)).updates) Y.applyUpdate(doc, update)
      if (snapshotKey(doc) !== key) failures.push(`room ${room}: the stored document differs from what its clients converged on`)
    }
  } finally {
    await store.close()
    rmSync(dataDir, { recursive: true, force: true })
  }

  counts.connectedAtEnd = connectedAtEnd
  counts.roomsChecked = expected.size
  log(`soak: heap baseline ${mb(baseline)}, peak ${mb(peak)}, final ${mb(final)}`)
  log(
    `soak: ${Object.entries(counts)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`,
  )
  for (const failure of failures) log(`soak FAILED: ${failure}`)
  if (failures.length === 0) log('soak: passed')
  return { passed: failures.length === 0, failures, seed, heap: { baseline, peak, final }, counts }
}

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0) return fallback
  const value = Number(process.argv[i + 1])
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`--${name} takes a positive integer`)
  return value
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const seconds = arg('seconds', 180)
  const connections = arg('connections', 300)
  const seedArg = process.argv.includes('--seed') ? arg('seed', 1) : undefined
  runSoak({ seconds, connections, rooms: arg('rooms', Math.max(1, Math.round(connections / 10))), ...(seedArg !== undefined && { seed: seedArg }) }).then(
    (report) => process.exit(report.passed ? 0 : 1),
    (err: unknown) => {
      console.error(err)
      process.exit(2)
    },
  )
}
