/**
 * Convergence under a seeded random workload: stock y-websocket peers edit every shared type at
 * once, go offline and come back, get replaced by new peers, live through a server restart, and
 * still end with the same document, which the server also stored.
 *
 * The seed (in each test's name) fixes the workload's choices; the network's interleaving is real
 * and varies. Replay one with `TANDEM_SEED=<seed> npx vitest run test/convergence.test.ts`.
 */

import * as prng from 'lib0/prng'
import { afterEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { contentOf, insertMarker, markersIn, pause, randomEdit, sameState, seedsFromEnv } from './support/random.ts'
import { type TestServer, startServer } from './support/server.ts'
import { type StockPeer, converged, stockPeer, synced } from './support/stock-client.ts'
import { until } from './support/wait.ts'

const PEERS = 5
const STEPS = 240
const seeds = seedsFromEnv([0x5eed01, 0xc0ffee, 0x7a4de3])

/** One editor's place in the run: the peer in it now (replaced ones are gone) and what it saw. */
interface Slot {
  readonly index: number
  peer: StockPeer
  generation: number
  markers: number
  /** Close codes of this slot's current peer's connections (null: closed by the client itself). */
  closes: Array<number | null>
  statuses: string[]
}

let server: TestServer | null = null
const slots: Slot[] = []

afterEach(async () => {
  for (const slot of slots.splice(0)) slot.peer.destroy()
  await server?.destroy()
  server = null
})

const attach = (slot: Slot, peer: StockPeer): void => {
  slot.peer = peer
  slot.closes = []
  slot.statuses = []
  peer.provider.on('connection-close', (event) => slot.closes.push(event?.code ?? null))
  peer.provider.on('status', ({ status }) => slot.statuses.push(status))
}

const openSlot = (room: string, index: number): Slot => {
  const slot: Slot = { index, peer: null as unknown as StockPeer, generation: 0, markers: 0, closes: [], statuses: [] }
  attach(slot, stockPeer(server!.syncUrl, room))
  return slot
}

/** Waits until `witness` has every edit `victim` made, so destroying `victim` loses none of them. */
const delivered = (victim: Y.Doc, witness: Y.Doc): Promise<void> => {
  const clock = Y.getState(victim.store, victim.clientID)
  return until('a witness has every edit of the peer about to go', witness, ['update'], () => Y.getState(witness.store, victim.clientID) >= clock)
}

/** Destroys the slot's peer once its edits are on the server, and puts a brand-new peer in its place. */
const replace = async (slot: Slot, room: string): Promise<void> => {
  const victim = slot.peer
  if (!victim.provider.shouldConnect) victim.provider.connect()
  let witness = slots.find((s) => s !== slot && s.peer.provider.shouldConnect)
  if (witness === undefined) {
    witness = slots.find((s) => s !== slot)!
    witness.peer.provider.connect()
  }
  await synced(victim)
  await delivered(victim.doc, witness.peer.doc)
  victim.destroy()
  slot.generation++
  attach(slot, stockPeer(server!.syncUrl, room))
}

interface RunOptions {
  readonly room: string
  readonly seed: number
  /** Step at which the server restarts while the editing goes on, if any. */
  readonly restartAt?: number
}

interface RunResult {
  /** Every marker typed, by any peer, replaced ones included. */
  readonly typed: Set<string>
  /** Markers typed from the start of the restart until every peer it closed reconnected. */
  readonly typedDuringRestart: Set<string>
  /** Of those, the ones typed by a peer the server had disconnected (offline, not by choice). */
  readonly typedWhileServerGone: Set<string>
  /** Peers connected when the restart began, with their close codes and statuses from then on. */
  readonly connectedAtRestart: Array<{
    index: number
    provider: StockPeer['provider']
    closes: Array<number | null>
    statuses: string[]
    from: { close: number; status: number }
  }>
}

const reconnected = (peer: RunResult['connectedAtRestart'][number]): boolean => peer.statuses.slice(peer.from.status).includes('connected')

/** The workload: STEPS random actions by random peers, with random small delays between them. */
const run = async ({ room, seed, restartAt }: RunOptions): Promise<RunResult> => {
  // Two streams: the plan (who acts, how, when) never depends on what the network delivered; the
  // edits' positions do, and drawing them from their own stream keeps the plan replayable.
  const plan = prng.create(seed)
  const edits = prng.create(seed ^ 0x2545f491)
  for (let i = 0; i < PEERS; i++) slots.push(openSlot(room, i))
  await Promise.all(slots.map((s) => synced(s.peer)))

  const typed = new Set<string>()
  const typedDuringRestart = new Set<string>()
  const typedWhileServerGone = new Set<string>()
  const connectedAtRestart: RunResult['connectedAtRestart'] = []
  const replaceAt = prng.int32(plan, STEPS / 3, (2 * STEPS) / 3)
  let restarting: Promise<void> | null = null
  let restartDone = false
  // From the start of the restart until the server is back and every peer it closed reconnected by
  // itself. Toggling and replacing wait meanwhile: every close then is the server's, every
  // reconnection the client's own.
  const restartUnderway = (): boolean => restarting !== null && !(restartDone && connectedAtRestart.every(reconnected))

  const mark = (slot: Slot): void => {
    const marker = `p${slot.index}g${slot.generation}n${slot.markers++}`
    insertMarker(edits, slot.peer.doc, marker)
    typed.add(marker)
    if (!restartUnderway()) return
    typedDuringRestart.add(marker)
    if (slot.peer.provider.shouldConnect && !slot.peer.provider.wsconnected) typedWhileServerGone.add(marker)
  }

  for (let step = 0; step < STEPS; step++) {
    // Shortly before a restart, the peers offline come back, so that most hear the server go.
    if (restartAt !== undefined && step === restartAt - 10) for (const slot of slots) slot.peer.provider.connect()
    if (step === restartAt) {
      for (const slot of slots) {
        if (!slot.peer.provider.wsconnected) continue
        const { closes, statuses } = slot
        connectedAtRestart.push({ index: slot.index, provider: slot.peer.provider, closes, statuses, from: { close: closes.length, status: statuses.length } })
      }
      restarting = server!.restart().then((next) => {
        server = next
        restartDone = true
      })
      // Typed as the server goes down: in flight, or not yet sent.
      for (const slot of slots) mark(slot)
    }
    const quiet = !restartUnderway()
    const slot = prng.oneOf(plan, slots)
    const action = prng.int32(plan, 0, 99)
    if (quiet && (step === replaceAt || action < 2)) {
      await replace(slot, room)
    } else if (quiet && action < 8) {
      if (slot.peer.provider.shouldConnect) slot.peer.provider.disconnect()
      else slot.peer.provider.connect()
    } else if (action < 30) {
      mark(slot)
    } else {
      randomEdit(edits, slot.peer.doc)
    }
    await pause(plan)
  }
  await restarting
  for (const peer of connectedAtRestart) {
    await until(`peer ${peer.index} reconnected after the restart`, peer.provider, ['status'], () => reconnected(peer))
  }
  return { typed, typedDuringRestart, typedWhileServerGone, connectedAtRestart }
}

/** Reconnects everyone, waits for one state everywhere, and checks it holds every marker typed. */
const settle = async (typed: Set<string>, seed: number): Promise<{ content: string; snapshot: Y.Snapshot }> => {
  for (const slot of slots) if (!slot.peer.provider.shouldConnect) slot.peer.provider.connect()
  const docs = slots.map((s) => s.peer.doc)
  await Promise.all(slots.map((s) => synced(s.peer)))
  await converged(docs)
  await sameState(docs)

  const content = contentOf(docs[0]!)
  for (const doc of docs) expect(contentOf(doc), `seed ${seed}`).toBe(content)
  const markers = markersIn(docs[0]!)
  expect(new Set(markers).size, `seed ${seed}: a marker appears twice`).toBe(markers.length)
  expect(new Set(markers), `seed ${seed}: typed markers`).toEqual(typed)
  return { content, snapshot: Y.snapshot(docs[0]!) }
}

/**
 * Checks the server stored exactly that state: first its update log as it stands (what a crash
 * would leave), then, with every editor gone, what a fresh peer loads after a graceful restart.
 */
const checkStored = async (room: string, expected: { content: string; snapshot: Y.Snapshot }, seed: number): Promise<void> => {
  await server!.app.tandem.registry.get(room)!.flush()
  const log = new Y.Doc()
  for (const update of (await server!.app.tandem.store.load(room)).updates) Y.applyUpdate(log, update)
  expect(contentOf(log), `seed ${seed}: stored log`).toBe(expected.content)

  for (const slot of slots.splice(0)) slot.peer.destroy()
  server = await server!.restart()
  const fresh = stockPeer(server.syncUrl, room)
  try {
    await synced(fresh)
    expect(contentOf(fresh.doc), `seed ${seed}: stored content`).toBe(expected.content)
    expect(Y.equalSnapshots(Y.snapshot(fresh.doc), expected.snapshot), `seed ${seed}: stored state`).toBe(true)
  } finally {
    fresh.destroy()
  }
}

describe('convergence under a seeded random workload', () => {
  for (const seed of seeds) {
    it(`${PEERS} stock peers editing, going offline and being replaced converge, and the server stores it (seed ${seed})`, async () => {
      server = await startServer({ allowAnonymous: true })
      const room = `random-${seed}`
      const { typed } = await run({ room, seed })
      const state = await settle(typed, seed)
      await checkStored(room, state, seed)
    })
  }

  it(`a server restart in the middle of the editing loses nothing (seed ${seeds[0]})`, async () => {
    const seed = seeds[0]!
    server = await startServer({ allowAnonymous: true })
    const room = `restart-${seed}`
    const { typed, typedDuringRestart, typedWhileServerGone, connectedAtRestart } = await run({ room, seed, restartAt: STEPS / 2 })
    expect(typedDuringRestart.size, 'markers typed while the server restarted').toBeGreaterThan(0)
    expect(typedWhileServerGone.size, 'markers typed offline because the server was gone').toBeGreaterThan(0)
    expect(connectedAtRestart.length).toBeGreaterThan(0)

    // Each peer that was connected heard 1012 and reconnected by itself (the run waits for that).
    for (const peer of connectedAtRestart) {
      expect(peer.closes.slice(peer.from.close)[0], `peer ${peer.index}: close code of the restart`).toBe(1012)
      expect(reconnected(peer), `peer ${peer.index} reconnected by itself`).toBe(true)
    }
    const state = await settle(typed, seed)
    await checkStored(room, state, seed)
  })
})
