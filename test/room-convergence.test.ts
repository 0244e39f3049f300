/**
 * Convergence of a real Room over a simulated network, in memory and seeded (as Yjs's
 * TestConnector): several members, each with its own Y.Doc, edit every shared type; a seeded PRNG
 * picks who edits, which queued message is delivered next (in order, out of order, or left to
 * arrive late), when the room relays its batch, when the store gets to run, and when a member drops
 * its connection (its undelivered messages lost) and comes back to resync, or the room itself is
 * closed and loaded again from its store. At the end every member, the room and the stored log
 * hold the same document, and every write the room took was acknowledged.
 *
 * Messages go through the server's real dispatch (sync/dispatch.ts) and the real protocol
 * encoding; no socket, no server, no timer but the room's own end-of-turn relay. Replay a seed with
 * `TANDEM_SEED=<seed> npx vitest run test/room-convergence.test.ts`.
 */

import * as prng from 'lib0/prng'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import type { Actor } from '../protocol/actor.ts'
import type { ErrorCode } from '../protocol/errors.ts'
import { decodeClientMessage, decodeServerMessage, encodeFrame, writeSyncStep1, writeSyncStep2, writeUpdate } from '../protocol/messages.ts'
import { PermissionBit } from '../protocol/permissions.ts'
import type { Session } from '../server/auth/session.ts'
import { DEFAULT_LIMITS } from '../server/limits.ts'
import { Metrics } from '../server/metrics.ts'
import { LocalFanout } from '../server/rooms/fanout.ts'
import { MemoryBudget } from '../server/rooms/memory-budget.ts'
import { Room, type RoomDeps } from '../server/rooms/room.ts'
import { type OpenSession, dispatch } from '../server/sync/dispatch.ts'
import { settle } from './support/fake-clock.ts'
import { ScriptedStore } from './support/scripted-store.ts'
import { contentOf, randomEdit, seedsFromEnv } from './support/random.ts'
import { fixedWindow } from '../server/rooms/relay-window.ts'

const ROOM = 'converge'
const PEERS = 4
const STEPS = 600
const seeds = seedsFromEnv([1, 2, 3, 4, 0x5eed01, 0xc0ffee, 0x7a4de3, 0xdecade])

const WRITE = PermissionBit.read | PermissionBit.presence | PermissionBit.write
/** The origin of updates a member applies from the room (never sent back). */
const FROM_ROOM = Symbol('from room')

const log = pino({ level: 'silent' })

/** One connection: the room's member, with the frames on the wire each way, not yet delivered. */
class Connection implements OpenSession {
  readonly roomId = ROOM
  readonly actor: Actor
  readonly context: OpenSession['context']
  readonly transport = { takeOutbound: () => true, takeIntegration: () => true }
  answeredSync = false
  readonly acknowledges = 'count'
  readonly session: Session
  /** Frames the client sent, not yet received by the room. */
  readonly up: Uint8Array[] = []
  /** Frames the room sent, not yet received by the client. */
  readonly down: Uint8Array[] = []
  /** Write messages the room was handed, and how many of them it said are stored. */
  writes = 0
  saved = 0
  delayed = 0
  open = true

  constructor(id: string, metrics: Metrics) {
    this.actor = { kind: 'user', userId: id }
    this.context = { metrics, log }
    this.session = { connectionId: id, actor: this.actor, info: null, permissions: WRITE, expiresAt: null, identity: { kind: 'fixed', permissions: WRITE } }
  }

  send(frame: Uint8Array): void {
    if (this.open) this.down.push(frame)
  }

  acknowledge(count: number): void {
    this.saved += count
  }

  writeDelayed(): void {
    this.delayed++
  }

  writeStatus(): void {
    throw new Error('a count protocol is never asked for a write status')
  }

  notice(code: ErrorCode, message: string): void {
    throw new Error(`unexpected notice ${code}: ${message}`)
  }

  async reauthenticate(): Promise<void> {}
}

/** One client: its document, kept across connections. */
interface Peer {
  readonly index: number
  readonly doc: Y.Doc
  conn: Connection | null
}

interface Stats {
  edits: number
  delivered: number
  reordered: number
  disconnects: number
  restarts: number
  relays: number
  turns: number
  /** Compactions of the stored log (on close, and once it grows long). */
  compactions: number
}

/** One seeded run; returns what it converged to and what the workload did. */
const run = async (seed: number): Promise<{ content: string; stats: Stats }> => {
  const gen = prng.create(seed)
  const store = new ScriptedStore()
  const metrics = new Metrics()
  const deps: RoomDeps = {
    store,
    fanout: new LocalFanout(),
    metrics,
    log,
    compactAfterRecords: 16,
    presenceLimits: DEFAULT_LIMITS,
    maxRoomBytes: DEFAULT_LIMITS.maxRoomBytes,
    relayWindow: fixedWindow(0),
    storeWindowMs: 0,
    maxUpdateIntegrationSteps: DEFAULT_LIMITS.maxUpdateIntegrationSteps,
    maxPendingStructs: DEFAULT_LIMITS.maxPendingStructs,
    maxLoadIntegrationSteps: DEFAULT_LIMITS.maxLoadIntegrationSteps,
    maxMessageBytes: DEFAULT_LIMITS.maxMessageBytes,
    maxRoomMemoryBytes: DEFAULT_LIMITS.maxRoomMemoryBytes,
    memory: new MemoryBudget(1024 * 1024 * 1024),
  }
  let room = await Room.load(ROOM, deps)
  const connections: Connection[] = []
  const stats: Stats = { edits: 0, delivered: 0, reordered: 0, disconnects: 0, restarts: 0, relays: 0, turns: 0, compactions: 0 }

  const peers: Peer[] = []
  const clientIDs = new Set<number>()
  for (let index = 0; index < PEERS; index++) {
    const doc = new Y.Doc()
    // Yjs draws clientIDs at random: fixed here, so a seed replays the same conflicts.
    let id: number
    do id = prng.uint32(gen, 1, 0xffff_fffe)
    while (clientIDs.has(id))
    clientIDs.add(id)
    doc.clientID = id
    const peer: Peer = { index, doc, conn: null }
    // As a y-websocket client: every local change goes up as an update, while connected.
    doc.on('update', (update: Uint8Array, origin: unknown) => {
      if (origin !== FROM_ROOM && peer.conn !== null) peer.conn.up.push(encodeFrame(writeUpdate, update))
    })
    peers.push(peer)
  }

  /** A new connection: the client's sync step 1 goes up; the room sends its own (as sync/connection.ts does on open). */
  const connect = (peer: Peer): void => {
    const conn = new Connection(`peer-${peer.index}-${connections.length}`, metrics)
    connections.push(conn)
    peer.conn = conn
    conn.up.push(encodeFrame(writeSyncStep1, Y.encodeStateVector(peer.doc)))
    room.join(conn)
    conn.send(encodeFrame(writeSyncStep1, Y.encodeStateVector(room.doc)))
    const presence = room.presenceFrame()
    if (presence !== null) conn.send(presence)
  }

  /** The connection drops: what it had not delivered either way is lost. */
  const disconnect = (peer: Peer): void => {
    const conn = peer.conn!
    conn.open = false
    room.leave(conn)
    peer.conn = null
  }

  /** The room receives one frame from a connection. */
  const toRoom = (conn: Connection, frame: Uint8Array): void => {
    const message = decodeClientMessage(frame)
    if (message.kind === 'update' || message.kind === 'sync-step-2') conn.writes++
    dispatch(conn, room, conn.session, message, frame)
  }

  /** A client receives one frame from the room. */
  const toClient = (peer: Peer, frame: Uint8Array): void => {
    const message = decodeServerMessage(frame)
    switch (message.kind) {
      case 'sync-step-1':
        peer.conn!.up.push(encodeFrame(writeSyncStep2, Y.encodeStateAsUpdate(peer.doc, message.stateVector)))
        return
      case 'sync-step-2':
      case 'update':
        Y.applyUpdate(peer.doc, message.update, FROM_ROOM)
        return
      case 'awareness':
        return
      default:
        throw new Error(`unexpected message from the room: ${JSON.stringify(message)}`)
    }
  }

  /** Takes a frame off a queue: mostly the oldest, sometimes a later one (the rest arrive late). */
  const take = (queue: Uint8Array[]): Uint8Array => {
    const index = queue.length > 1 && prng.int32(gen, 0, 4) === 0 ? prng.int32(gen, 1, queue.length - 1) : 0
    if (index > 0) stats.reordered++
    stats.delivered++
    return queue.splice(index, 1)[0]!
  }

  const online = (): Peer[] => peers.filter((p) => p.conn !== null)

  for (const peer of peers) connect(peer)

  /** The room is unloaded (everyone is disconnected) and loaded again from its store. */
  const restart = async (): Promise<void> => {
    const wasOnline = online()
    for (const peer of wasOnline) disconnect(peer)
    await room.close()
    room = await Room.load(ROOM, deps)
    for (const peer of wasOnline) connect(peer)
    stats.restarts++
  }

  for (let step = 0; step < STEPS; step++) {
    // Once at half time, and now and then at random.
    if (step === STEPS / 2) await restart()
    const roll = prng.int32(gen, 0, 999)
    if (roll < 350) {
      randomEdit(gen, prng.oneOf(gen, peers).doc)
      stats.edits++
    } else if (roll < 600) {
      const senders = online().filter((p) => p.conn!.up.length > 0)
      if (senders.length > 0) {
        const conn = prng.oneOf(gen, senders).conn!
        toRoom(conn, take(conn.up))
      }
    } else if (roll < 850) {
      const receivers = online().filter((p) => p.conn!.down.length > 0)
      if (receivers.length > 0) {
        const peer = prng.oneOf(gen, receivers)
        toClient(peer, take(peer.conn!.down))
      }
    } else if (roll < 900) {
      room.flushBroadcast()
      stats.relays++
    } else if (roll < 950) {
      // The event loop turns: the store runs, and the room relays at the end of the turn.
      await settle()
      stats.turns++
    } else if (roll < 970) {
      const connected = online()
      if (connected.length > 0) {
        disconnect(prng.oneOf(gen, connected))
        stats.disconnects++
      }
    } else if (roll < 995) {
      const offline = peers.filter((p) => p.conn === null)
      if (offline.length > 0) connect(prng.oneOf(gen, offline))
    } else {
      await restart()
    }
  }

  // Everyone comes back, and the network delivers everything still on the wire, in order.
  for (const peer of peers) if (peer.conn === null) connect(peer)
  let quiet = false
  for (let round = 0; round < 100 && !quiet; round++) {
    quiet = true
    for (const peer of peers) {
      const conn = peer.conn!
      while (conn.up.length > 0) {
        toRoom(conn, conn.up.shift()!)
        quiet = false
      }
    }
    room.flushBroadcast()
    for (const peer of peers) {
      const conn = peer.conn!
      while (conn.down.length > 0) {
        toClient(peer, conn.down.shift()!)
        quiet = false
      }
    }
  }
  expect(quiet, 'the network went quiet').toBe(true)
  await room.flush()

  // Every member and the room hold the same document, deletions included, nothing pending.
  const expected = contentOf(room.doc)
  const snapshot = Y.snapshot(room.doc)
  expect(room.doc.store.pendingStructs).toBeNull()
  for (const peer of peers) {
    expect(contentOf(peer.doc), `member ${peer.index} (seed ${seed})`).toBe(expected)
    expect(Y.equalSnapshots(Y.snapshot(peer.doc), snapshot), `member ${peer.index}'s snapshot (seed ${seed})`).toBe(true)
    expect(peer.doc.store.pendingStructs).toBeNull()
  }
  // Every member's edits are in it.
  const sv = Y.decodeStateVector(Y.encodeStateVector(room.doc))
  for (const peer of peers) expect(sv.get(peer.doc.clientID) ?? 0).toBe(Y.getState(peer.doc.store, peer.doc.clientID))

  // The store holds it too, and every write the room took was acknowledged exactly once.
  const stored = new Y.Doc()
  for (const record of store.records(ROOM)) Y.applyUpdate(stored, record)
  expect(contentOf(stored)).toBe(expected)
  for (const conn of connections) {
    expect(conn.saved, `acknowledgements of ${conn.session.connectionId}`).toBe(conn.writes)
    expect(conn.delayed).toBe(0)
  }

  await room.close()
  for (const peer of peers) peer.doc.destroy()
  stats.compactions = metrics.compactions
  return { content: expected, stats }
}

describe('room convergence (seeded, in memory)', () => {
  it.each(seeds)('seed %i: members, room and store converge', async (seed) => {
    const { stats } = await run(seed)
    // The workload did what it is for.
    expect(stats.edits).toBeGreaterThan(100)
    expect(stats.delivered).toBeGreaterThan(100)
    expect(stats.reordered).toBeGreaterThan(0)
    expect(stats.disconnects).toBeGreaterThan(0)
    expect(stats.restarts).toBeGreaterThan(0)
    expect(stats.compactions).toBeGreaterThan(0)
  })

  it('a seed replays the same run', async () => {
    const seed = seeds[0]!
    const [first, second] = [await run(seed), await run(seed)]
    expect(second.stats).toEqual(first.stats)
    expect(second.content).toBe(first.content)
  })
})
