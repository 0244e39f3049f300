/**
 * One room: its Y.Doc, its presence, and the path of every accepted write through it.
 *
 * A write is applied to the doc at once (so the next sync answer has it), then goes two ways:
 * - broadcast: writes waiting to be relayed are merged into one update, encoded once into one frame
 *   (a lone update is relayed in the frame it arrived in), and handed to the fan-out channel. A
 *   quiet room relays at the end of the turn a write came in; a busy one relays at most once per
 *   `broadcastWindowMs` (a leading-edge throttle): the first write after a pause goes out at once,
 *   later ones wait at most the window and share one frame per receiver, so the cost of a fan-out
 *   (a socket write per receiver) is paid per window, not per keystroke;
 * - store: the room's log (room-log.ts) stores it and acknowledges its writer.
 *
 * Size cap: the room keeps an estimate of its document's encoded size (measured at load and at each
 * compaction, plus the length of every update applied since) and refuses a write that would take
 * it past `maxRoomBytes`, before applying it: one add and one compare per write, no encoding.
 */

import * as Y from 'yjs'
import type { FastifyBaseLogger } from 'fastify'
import { type AwarenessEntry, writeAwarenessUpdate } from '../protocol/awareness.ts'
import { TandemError } from '../protocol/errors.ts'
import { encodeFrame, writeAwareness, writeUpdate } from '../protocol/messages.ts'
import type { Member, RoomChannel, Fanout } from './fanout.ts'
import type { Metrics } from './metrics.ts'
import { Presence, type PresenceLimits, type PresenceResult } from './presence.ts'
import { MAX_MERGE, RoomLog, type Writer } from './room-log.ts'
import type { DocumentStore } from './store/types.ts'

export type { Writer } from './room-log.ts'

/** A connection as the room sees it. */
export interface RoomMember extends Member, Writer {}

export interface RoomDeps {
  readonly store: DocumentStore
  readonly fanout: Fanout
  readonly metrics: Metrics
  readonly log: FastifyBaseLogger
  readonly compactAfterRecords: number
  readonly presenceLimits: PresenceLimits
  /** Largest estimated document size; see `Room.applyUpdate`. */
  readonly maxRoomBytes: number
  /** A busy room relays writes at most once per this many ms (0: at the end of every turn). */
  readonly broadcastWindowMs: number
  /** A busy room stores writes at most once per this many ms (see room-log.ts). */
  readonly storeWindowMs: number
}

/** The origin of updates that other processes' rooms stored (fan-out across processes). */
const REMOTE = Symbol('remote')

/** The V1 update with no structs and no deletions. */
const isEmptyUpdate = (update: Uint8Array): boolean => update.length === 2 && update[0] === 0 && update[1] === 0

export class Room {
  readonly id: string
  readonly doc: Y.Doc
  readonly presence: Presence<RoomMember>
  readonly #channel: RoomChannel<RoomMember>
  readonly #deps: RoomDeps
  readonly #log: RoomLog
  /** Estimated encoded size of the document, in bytes (see the module comment). */
  #bytes: number
  #destroyed = false

  // Broadcast batch of the current turn; origin is the single writer, or null when mixed.
  #batch: Uint8Array[] = []
  #batchOrigin: Writer | null = null
  /** The frame the batch's only update arrived in, relayed as is (no re-encoding). */
  #batchFrame: Uint8Array | null = null
  /** Cancels the scheduled relay of the batch (null: none scheduled). */
  #batchTimer: (() => void) | null = null
  /** When the last batch was relayed (performance.now(); read once per batch, not per write). */
  #lastFlush = -Infinity

  private constructor(id: string, doc: Y.Doc, stored: { firstSeq: number; lastSeq: number }, bytes: number, deps: RoomDeps) {
    this.id = id
    this.doc = doc
    this.#bytes = bytes
    this.#deps = deps
    this.presence = new Presence(deps.presenceLimits)
    this.#channel = deps.fanout.open<RoomMember>(id, {
      update: (update) => this.#applyRemote(update),
      awareness: (awarenessUpdate) => this.#channel.broadcast(encodeFrame(writeAwareness, awarenessUpdate)),
    })
    // A compaction's snapshot is the whole document: the estimate becomes exact again.
    this.#log = new RoomLog(id, doc, stored, deps, (snapshotBytes) => {
      this.#bytes = snapshotBytes
    })
  }

  /** Loads a room's stored state. A store failure rejects: a room is never opened empty instead. */
  static async load(id: string, deps: RoomDeps): Promise<Room> {
    const stored = await deps.metrics.timeStore('load', () => deps.store.load(id))
    const doc = new Y.Doc({ gc: true })
    doc.transact(() => {
      for (const update of stored.updates) Y.applyUpdate(doc, update)
    })
    // One stored record is a snapshot (or a lone update): its length is the size. A longer log is
    // measured once, at the cost of the load that just replayed it.
    const bytes = stored.updates.length === 1 ? stored.updates[0]!.length : Y.encodeStateAsUpdate(doc).length
    return new Room(id, doc, stored, bytes, deps)
  }

  get size(): number {
    return this.#channel.size
  }

  /** Estimated encoded size of the document. */
  get estimatedBytes(): number {
    return this.#bytes
  }

  /** Records in the stored log (for tests and operations). */
  get storedRecords(): number {
    return this.#log.records
  }

  members(): IterableIterator<RoomMember> {
    return this.#channel.members()
  }

  join(member: RoomMember): void {
    this.#channel.join(member)
  }

  /** Removes a member and its presence; says whether the room is now empty. */
  leave(member: RoomMember): boolean {
    this.#channel.leave(member)
    const removals = this.presence.removeOwner(member)
    if (removals.length > 0) this.#broadcastAwareness(removals, null)
    return this.#channel.size === 0
  }

  /**
   * Applies a validated update by `origin` (its Yjs clientIDs from validation) and queues it for
   * the fan-out and the store. `frame`, when given, is the sync-update frame it arrived in, byte for
   * byte what the fan-out would encode. Throws if Yjs refuses the update; nothing is then queued.
   * Throws `message_too_large` (nothing applied, queued or relayed) if the update would take the
   * document past `maxRoomBytes`.
   */
  applyUpdate(update: Uint8Array, origin: Writer, clientIDs: readonly number[], frame: Uint8Array | null = null): void {
    if (isEmptyUpdate(update)) {
      // Nothing to apply, relay or store (a reconnecting client's step 2 often is this), but the
      // writer still counts it, so it is acknowledged in order with its other writes.
      this.#log.append(null, origin, clientIDs)
      return
    }
    if (this.#bytes + update.length > this.#deps.maxRoomBytes) {
      this.#deps.metrics.rejected.too_large++
      throw new TandemError('message_too_large', `the room's document would pass its size limit of ${this.#deps.maxRoomBytes} bytes`)
    }
    Y.applyUpdate(this.doc, update, origin)
    this.#bytes += update.length
    this.#deps.metrics.updatesApplied++

    if (this.#batch.length === 0) this.#batchOrigin = origin
    else if (this.#batchOrigin !== origin) this.#batchOrigin = null
    this.#batchFrame = this.#batch.length === 0 ? frame : null
    this.#batch.push(update)
    if (this.#batch.length >= MAX_MERGE) this.flushBroadcast()
    else if (this.#batchTimer === null) this.#scheduleBroadcast()

    this.#log.append(update, origin, clientIDs)
  }

  /**
   * Counts a write that was refused (a reader's), so acknowledgements stay in step with what the
   * writer sent: its `saved` count covers every write handled, stored or not.
   */
  skipWrite(origin: Writer): void {
    this.#log.append(null, origin, [])
  }

  /** Applies awareness entries from `member` and relays what it may set. */
  applyAwareness(member: RoomMember, frame: Uint8Array, entries: readonly AwarenessEntry[]): PresenceResult {
    const result = this.presence.apply(member, entries)
    if (result.replies.length > 0) member.send(encodeFrame(writeAwareness, writeAwarenessUpdate(result.replies)))
    if (result.accepted.length === entries.length) {
      // Nothing was dropped: relay the frame as received, without re-encoding it.
      if (entries.length > 0) this.#channel.broadcast(frame, member)
    } else if (result.accepted.length > 0) {
      this.#broadcastAwareness(result.accepted, member)
    }
    return result
  }

  /** Relays awareness entries the server decided on (removals of a member's states). */
  relayAwareness(entries: readonly AwarenessEntry[], except: RoomMember | null): void {
    this.#broadcastAwareness(entries, except)
  }

  /** The first write of a batch: relay it at the end of this turn, or when the window is over. */
  #scheduleBroadcast(): void {
    const windowMs = this.#deps.broadcastWindowMs
    const wait = windowMs > 0 ? this.#lastFlush + windowMs - performance.now() : 0
    if (wait > 0) {
      const timer = setTimeout(() => this.flushBroadcast(), wait)
      this.#batchTimer = () => clearTimeout(timer)
    } else {
      const immediate = setImmediate(() => this.flushBroadcast())
      this.#batchTimer = () => clearImmediate(immediate)
    }
  }

  #clearBroadcastTimer(): void {
    this.#batchTimer?.()
    this.#batchTimer = null
  }

  /** Sends the waiting writes to the room now: merged into one update, encoded once for all. */
  flushBroadcast(): void {
    this.#clearBroadcastTimer()
    const updates = this.#batch
    if (updates.length === 0) return
    if (this.#deps.broadcastWindowMs > 0) this.#lastFlush = performance.now()
    const origin = this.#batchOrigin
    const received = this.#batchFrame
    this.#batch = []
    this.#batchOrigin = null
    this.#batchFrame = null
    const frame = received ?? encodeFrame(writeUpdate, updates.length === 1 ? updates[0]! : Y.mergeUpdates(updates))
    // A batch from one writer skips that writer; a mixed batch goes to all (Yjs ignores echoes).
    this.#channel.broadcast(frame, origin)
  }

  /** Resolves once every write applied so far is stored (not the ones that arrive meanwhile). */
  flush(): Promise<void> {
    this.flushBroadcast()
    return this.#log.flush()
  }

  /** The room is going (shutdown): a failing store is retried a little longer, then given up on. */
  closing(): void {
    this.#log.closing()
  }

  /** Stores what was applied, compacts the log to one record, and frees the doc. */
  async close(): Promise<void> {
    if (this.#destroyed) return
    this.flushBroadcast()
    await this.#log.close()
    this.#destroy()
  }

  /** Drops the room without storing anything more (it is being deleted); waits for a write in flight. */
  async discard(): Promise<void> {
    this.#clearBroadcastTimer()
    this.#batch = []
    this.#batchFrame = null
    await this.#log.discard()
    this.#destroy()
  }

  #destroy(): void {
    if (this.#destroyed) return
    this.#destroyed = true
    this.#channel.close()
    this.doc.destroy()
  }

  #applyRemote(update: Uint8Array): void {
    // Already accepted by another process: applied whatever its size, and counted.
    Y.applyUpdate(this.doc, update, REMOTE)
    this.#bytes += update.length
    this.#channel.broadcast(encodeFrame(writeUpdate, update))
  }

  #broadcastAwareness(entries: readonly AwarenessEntry[], except: RoomMember | null): void {
    this.#channel.broadcast(encodeFrame(writeAwareness, writeAwarenessUpdate(entries)), except)
  }
}
