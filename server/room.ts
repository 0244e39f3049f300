/**
 * One room: its Y.Doc, its presence, and the path of every accepted write through it.
 *
 * A write is applied to the doc at once (so the next sync answer has it), then travels two queues:
 * - broadcast: writes of the same event-loop turn are merged into one update, encoded once into one
 *   frame, and handed to the fan-out channel;
 * - store: while one append is in flight, later writes wait and go out together in the next one (a
 *   group commit); each writer is acknowledged (`saved`) only once its writes are stored.
 * When the log grows past `compactAfterRecords`, the store loop replaces it with one snapshot.
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
import type { Actor } from './session.ts'
import type { DocumentStore, WriteRecord } from './store/types.ts'

/** Whoever wrote an update: a connection, or a service (a REST write). */
export interface Writer {
  readonly actor: Actor
  /** `count` more of this writer's writes are stored. */
  acknowledge(count: number): void
  /** The store failed; this writer's writes are not saved yet (they are retried). */
  writeDelayed(): void
}

/** A connection as the room sees it. */
export interface RoomMember extends Member, Writer {}

/** What one writer put into the batch being stored, for its acknowledgement and the history. */
interface Contribution {
  writes: number
  bytes: number
  readonly clientIDs: Set<number>
}

export interface RoomDeps {
  readonly store: DocumentStore
  readonly fanout: Fanout
  readonly metrics: Metrics
  readonly log: FastifyBaseLogger
  readonly compactAfterRecords: number
  readonly presenceLimits: PresenceLimits
  /** Largest estimated document size; see `Room.applyUpdate`. */
  readonly maxRoomBytes: number
}

/** The origin of updates that other processes' rooms stored (fan-out across processes). */
const REMOTE = Symbol('remote')

/** The V1 update with no structs and no deletions. */
const isEmptyUpdate = (update: Uint8Array): boolean => update.length === 2 && update[0] === 0 && update[1] === 0

/** Merging grows faster than linearly with the batch: keep batches small. */
const MAX_MERGE = 32
const RETRY_MIN_MS = 50
const RETRY_MAX_MS = 5_000
/** How long a closing room keeps retrying a failing store before it gives up (a shutdown must end). */
const CLOSING_RETRY_MS = 2_000

export class Room {
  readonly id: string
  readonly doc: Y.Doc
  readonly presence: Presence<RoomMember>
  readonly #channel: RoomChannel<RoomMember>
  readonly #deps: RoomDeps

  // Stored log: records firstSeq..lastSeq (both -1 when empty).
  #firstSeq: number
  #lastSeq: number
  /**
   * Estimated encoded size of the document: exact at load and at compaction, then grown by the
   * length of each applied update (an upper bound in practice: Yjs merges overlaps away).
   * Updates whose dependencies are missing count too: they are stored all the same.
   */
  #bytes: number

  // Broadcast batch of the current turn; origin is the single writer, or null when mixed.
  #batch: Uint8Array[] = []
  #batchOrigin: Writer | null = null
  /** The frame the batch's only update arrived in, relayed as is (no re-encoding). */
  #batchFrame: Uint8Array | null = null
  #batchTimer: NodeJS.Immediate | null = null

  // Store queue: updates not yet handed to the store, and whose they are.
  #queue: Uint8Array[] = []
  #queueWriters = new Map<Writer, Contribution>()
  #storing: Promise<void> | null = null
  #closed = false
  // Writes queued for the store so far, and how many of them are stored: flush() waits for the
  // first count as it was when called, so writes that keep arriving cannot hold it up.
  #queuedCount = 0
  #takenCount = 0
  #storedCount = 0
  #flushWaiters: { target: number; resolve: () => void }[] = []
  /** When the room began closing (ms): the store is retried a little longer, then given up on. */
  #closingSince: number | null = null
  #destroyed = false
  /** Ends a store retry's backoff early (on close or discard). */
  #wakeRetry: (() => void) | null = null

  private constructor(id: string, doc: Y.Doc, stored: { firstSeq: number; lastSeq: number }, bytes: number, deps: RoomDeps) {
    this.id = id
    this.doc = doc
    this.#bytes = bytes
    this.#deps = deps
    this.#firstSeq = stored.firstSeq
    this.#lastSeq = stored.lastSeq
    this.presence = new Presence(deps.presenceLimits)
    this.#channel = deps.fanout.open<RoomMember>(id, {
      update: (update) => this.#applyRemote(update),
      awareness: (awarenessUpdate) => this.#channel.broadcast(encodeFrame(writeAwareness, awarenessUpdate)),
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
    const room = new Room(id, doc, stored, bytes, deps)
    if (room.#needsCompaction()) room.#kickStore()
    return room
  }

  get size(): number {
    return this.#channel.size
  }

  /** Estimated encoded size of the document (see `#bytes`). */
  get estimatedBytes(): number {
    return this.#bytes
  }

  /** Records in the stored log (for tests and operations). */
  get storedRecords(): number {
    return this.#lastSeq < 0 ? 0 : this.#lastSeq - this.#firstSeq + 1
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
      this.#contribute(origin, 0, clientIDs)
      this.#kickStore()
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
    else this.#batchTimer ??= setImmediate(() => this.flushBroadcast())

    this.#queue.push(update)
    this.#contribute(origin, update.length, clientIDs)
    this.#kickStore()
  }

  /**
   * Counts a write that was refused (a reader's), so acknowledgements stay in step with what the
   * writer sent: its `saved` count covers every write handled, stored or not.
   */
  skipWrite(origin: Writer): void {
    this.#contribute(origin, 0, [])
    this.#kickStore()
  }

  #contribute(origin: Writer, bytes: number, clientIDs: readonly number[]): void {
    let contribution = this.#queueWriters.get(origin)
    if (contribution === undefined) {
      contribution = { writes: 0, bytes: 0, clientIDs: new Set() }
      this.#queueWriters.set(origin, contribution)
    }
    contribution.writes++
    contribution.bytes += bytes
    for (const id of clientIDs) contribution.clientIDs.add(id)
    this.#queuedCount++
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

  /** Resolves once every write applied so far is stored (not the ones that arrive meanwhile). */
  flush(): Promise<void> {
    this.flushBroadcast()
    const target = this.#queuedCount
    // A room that stopped storing (deleted, or gave up on a failing store) has nothing to wait for.
    if (this.#storedCount >= target || this.#closed) return Promise.resolve()
    return new Promise((resolve) => this.#flushWaiters.push({ target, resolve }))
  }

  #settleFlushes(): void {
    if (this.#flushWaiters.length === 0) return
    const waiting = this.#flushWaiters
    this.#flushWaiters = []
    for (const waiter of waiting) {
      if (this.#storedCount >= waiter.target) waiter.resolve()
      else this.#flushWaiters.push(waiter)
    }
  }

  /** Drops the room without storing anything more (it is being deleted); waits for a write in flight. */
  async discard(): Promise<void> {
    this.#closed = true
    this.#wakeRetry?.()
    this.#queue = []
    this.#queueWriters = new Map()
    if (this.#batchTimer !== null) clearImmediate(this.#batchTimer)
    this.#batchTimer = null
    this.#batch = []
    this.#batchFrame = null
    await this.#storing
    // Nothing more will be stored: whoever waits for a flush has its answer (the room is gone).
    for (const waiter of this.#flushWaiters) waiter.resolve()
    this.#flushWaiters = []
    this.#destroy()
  }

  /** Flushes, compacts a multi-record log so the next load reads one record, and frees the doc. */
  async close(): Promise<void> {
    if (this.#destroyed) return
    this.closing()
    await this.flush()
    if (this.storedRecords > 1 && !this.#closed) await this.#compact()
    this.#closed = true
    this.#destroy()
  }

  /** The room is going (shutdown): a failing store is retried a few times more, then given up on. */
  closing(): void {
    this.#closingSince ??= Date.now()
    this.#wakeRetry?.()
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

  /** Relays awareness entries the server decided on (removals of a member's states). */
  relayAwareness(entries: readonly AwarenessEntry[], except: RoomMember | null): void {
    this.#broadcastAwareness(entries, except)
  }

  #broadcastAwareness(entries: readonly AwarenessEntry[], except: RoomMember | null): void {
    this.#channel.broadcast(encodeFrame(writeAwareness, writeAwarenessUpdate(entries)), except)
  }

  /** Sends this turn's writes to the room now: merged into one update, encoded once for all. */
  flushBroadcast(): void {
    if (this.#batchTimer !== null) {
      clearImmediate(this.#batchTimer)
      this.#batchTimer = null
    }
    const updates = this.#batch
    if (updates.length === 0) return
    const origin = this.#batchOrigin
    const received = this.#batchFrame
    this.#batch = []
    this.#batchOrigin = null
    this.#batchFrame = null
    const frame = received ?? encodeFrame(writeUpdate, updates.length === 1 ? updates[0]! : Y.mergeUpdates(updates))
    // A batch from one writer skips that writer; a mixed batch goes to all (Yjs ignores echoes).
    this.#channel.broadcast(frame, origin)
  }

  #needsCompaction(): boolean {
    return this.storedRecords >= this.#deps.compactAfterRecords
  }

  #kickStore(): void {
    if (this.#storing === null && !this.#closed) {
      this.#storing = this.#storeLoop().finally(() => {
        this.#storing = null
      })
    }
  }

  async #storeLoop(): Promise<void> {
    // Let the rest of this turn's writes join the first append.
    await Promise.resolve()
    for (;;) {
      if (this.#closed) return
      if (this.#queueWriters.size === 0) {
        // Idle: compact if the log is long. A failed compaction waits for the next write.
        if (!this.#needsCompaction() || !(await this.#compact())) return
        continue
      }
      const updates = this.#queue
      const writers = this.#queueWriters
      const taken = this.#queuedCount - this.#takenCount
      this.#takenCount = this.#queuedCount
      this.#queue = []
      this.#queueWriters = new Map()
      const records: Uint8Array[] = []
      for (let i = 0; i < updates.length; i += MAX_MERGE) {
        const chunk = updates.slice(i, i + MAX_MERGE)
        records.push(chunk.length === 1 ? chunk[0]! : Y.mergeUpdates(chunk))
      }
      if (records.length > 0) {
        const firstSeq = this.#lastSeq + 1
        const at = Date.now()
        const history: WriteRecord[] = []
        for (const [writer, c] of writers) {
          if (c.bytes > 0) history.push({ actor: writer.actor, at, writes: c.writes, bytes: c.bytes, clientIDs: [...c.clientIDs] })
        }
        const stored = await this.#retry(writers, () => this.#deps.store.append(this.id, firstSeq, records, history))
        if (!stored) return this.#giveUp(taken + this.#queuedCount - this.#takenCount)
        if (this.#firstSeq < 0) this.#firstSeq = firstSeq
        this.#lastSeq = firstSeq + records.length - 1
      }
      this.#storedCount += taken
      for (const [writer, c] of writers) writer.acknowledge(c.writes)
      this.#settleFlushes()
    }
  }

  /** Replaces the stored log with one snapshot; says whether it worked. */
  async #compact(): Promise<boolean> {
    const throughSeq = this.#lastSeq
    const fromSeq = this.#firstSeq
    if (throughSeq <= fromSeq) return true
    // The doc holds every stored record (and maybe newer, not yet stored writes: Yjs merges are
    // idempotent, so a snapshot that runs ahead of the log loses and duplicates nothing).
    const snapshot = Y.encodeStateAsUpdate(this.doc)
    // The estimate becomes exact again (the snapshot is the whole document, taken this turn).
    this.#bytes = snapshot.length
    try {
      await this.#deps.metrics.timeStore('compact', () => this.#deps.store.compact(this.id, fromSeq, throughSeq, snapshot))
      this.#firstSeq = throughSeq
      this.#deps.metrics.compactions++
      return true
    } catch (err) {
      // The log is intact (the batch is atomic); compaction is tried again after the next write.
      this.#deps.metrics.storeErrors++
      this.#deps.log.error({ err, roomId: this.id }, 'compaction failed')
      return false
    }
  }

  /** Runs a store write until it succeeds, backing off; writers hear that their writes wait. */
  /**
   * Runs a store write until it succeeds, backing off; writers hear that their writes wait. Says
   * false when it gave up: the room was discarded, or is closing and the store still fails.
   */
  async #retry(writers: Map<Writer, Contribution>, run: () => Promise<void>): Promise<boolean> {
    let delay = RETRY_MIN_MS
    for (;;) {
      try {
        await this.#deps.metrics.timeStore('append', run)
        return true
      } catch (err) {
        this.#deps.metrics.storeErrors++
        const closing = this.#closingSince !== null
        if (this.#closed || (closing && Date.now() - this.#closingSince! > CLOSING_RETRY_MS)) return false
        this.#deps.log.error({ err, roomId: this.id, retryInMs: delay }, 'document store write failed; retrying')
        for (const writer of writers.keys()) writer.writeDelayed()
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, closing ? RETRY_MIN_MS : delay)
          this.#wakeRetry = () => {
            clearTimeout(timer)
            resolve()
          }
        })
        this.#wakeRetry = null
        delay = Math.min(delay * 2, RETRY_MAX_MS)
      }
    }
  }

  /**
   * The store cannot take this room's writes and the room must go (shutdown or deletion): what it
   * held that was not stored is said in the log. Its writers were never told it was saved, so
   * clients that still hold those writes send them again when they reconnect.
   */
  #giveUp(unstored: number): void {
    if (!this.#closed) this.#deps.log.error({ roomId: this.id, unstoredWrites: unstored }, `${unstored} writes of this room were not stored: the store kept failing while the room closed`)
    this.#closed = true
    this.#queue = []
    this.#queueWriters = new Map()
    for (const waiter of this.#flushWaiters) waiter.resolve()
    this.#flushWaiters = []
  }
}
