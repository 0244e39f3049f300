/**
 * A room's stored log: how accepted writes reach the document store, in order, and come back as
 * acknowledgements.
 *
 * While one append is in flight, later writes wait and go out together in the next (a group
 * commit; the store also joins the appends of every room in one event-loop turn). With
 * `storeWindowMs`, a busy room appends at most once per window (the first write after a pause at
 * once): fewer, larger records, history entries and acknowledgements per write. Each writer is
 * acknowledged (`saved`) only once its writes are stored, with a history entry per writer and
 * batch. When the log grows past `compactAfterRecords`, it is replaced by one snapshot of the
 * document. A failing store is retried with backoff (writers hear their writes wait); a log that is
 * closing retries for 2 s more, then gives up and says in the log what it could not store.
 */

import type { FastifyBaseLogger } from 'fastify'
import * as Y from 'yjs'
import type { Metrics } from '../metrics.ts'
import type { Actor } from '../../protocol/actor.ts'
import type { DocumentStore, WriteRecord } from '../store/types.ts'
import { mergeInChunks } from './merge.ts'
import { PendingUpdates } from './pending-updates.ts'

/** Whoever wrote an update: a connection, or a service (a REST write). */
export interface Writer {
  readonly actor: Actor
  /** `count` more of this writer's writes are stored. */
  acknowledge(count: number): void
  /** The store failed; this writer's writes are not saved yet (they are retried). */
  writeDelayed(): void
}

/**
 * The log's time: a monotonic clock for the store window, the wall clock for history entries and the
 * closing deadline, and the timers of the window and the retry backoff. Tests pass a fake one.
 */
export interface LogClock {
  /** Monotonic milliseconds (`performance.now()`). */
  now(): number
  /** Milliseconds since the epoch (`Date.now()`). */
  wallNow(): number
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

/** The process's clock and timers. */
export const realClock: LogClock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
}

export interface RoomLogDeps {
  readonly store: DocumentStore
  readonly metrics: Metrics
  readonly log: FastifyBaseLogger
  readonly compactAfterRecords: number
  /** A busy room appends at most once per this many ms (0: as soon as the previous append is done). */
  readonly storeWindowMs: number
  /** Time and timers (default: the real ones). */
  readonly clock?: LogClock
}

/** What one writer put into the batch being stored, for its acknowledgement and the history. */
interface Contribution {
  writes: number
  bytes: number
  readonly clientIDs: Set<number>
}

const RETRY_MIN_MS = 50
const RETRY_MAX_MS = 5_000
/** How long a closing log keeps retrying a failing store before it gives up (a shutdown must end). */
const CLOSING_RETRY_MS = 2_000

export class RoomLog {
  readonly #roomId: string
  readonly #doc: Y.Doc
  readonly #deps: RoomLogDeps
  readonly #clock: LogClock
  /** Told the snapshot size after each compaction (the room's size estimate becomes exact). */
  readonly #onCompacted: (bytes: number) => void

  // Stored records firstSeq..lastSeq (both -1 when empty).
  #firstSeq: number
  #lastSeq: number

  // Writes not yet handed to the store (copied: see pending-updates.ts), and whose they are.
  readonly #queue = new PendingUpdates()
  #writers = new Map<Writer, Contribution>()
  #storing: Promise<void> | null = null
  /** Nothing more is stored: the room was deleted, has closed, or gave up on a failing store. */
  #stopped = false
  // Writes counted so far, handed to the store, and stored: flush() waits for the first count as it
  // was when called, so writes that keep arriving cannot hold it up.
  #counted = 0
  #taken = 0
  #stored = 0
  #flushWaiters: { target: number; resolve: () => void }[] = []
  /** When the log began closing (ms). */
  #closingSince: number | null = null
  /** Ends a store retry's backoff early (on close or stop). */
  #wakeRetry: (() => void) | null = null
  /** When the last append began (the monotonic clock). */
  #lastAppend = -Infinity
  /**
   * The end of the store window a room waits for, with no append running: a timer, not a suspended
   * loop. A loop awaiting a promise for the window kept its frame, promises and closures (~2 KB a
   * room) alive for up to 500 ms, long enough to be promoted out of V8's young generation on every
   * busy room's every window (a 100-room probe at 2,000 edits/s: 215-270 KB promoted per scavenge).
   */
  #windowTimer: unknown = null

  constructor(roomId: string, doc: Y.Doc, stored: { firstSeq: number; lastSeq: number }, deps: RoomLogDeps, onCompacted: (bytes: number) => void) {
    this.#roomId = roomId
    this.#doc = doc
    this.#deps = deps
    this.#clock = deps.clock ?? realClock
    this.#firstSeq = stored.firstSeq
    this.#lastSeq = stored.lastSeq
    this.#onCompacted = onCompacted
    if (this.#needsCompaction()) this.#kick()
  }

  /** Records in the stored log. */
  get records(): number {
    return this.#lastSeq < 0 ? 0 : this.#lastSeq - this.#firstSeq + 1
  }

  /**
   * Counts a write by `origin` and queues `update` for the store; `update` null counts a write that
   * stores nothing (an empty update, or a refused one), acknowledged in order with the others.
   */
  append(update: Uint8Array | null, origin: Writer, clientIDs: readonly number[]): void {
    let contribution = this.#writers.get(origin)
    if (contribution === undefined) {
      contribution = { writes: 0, bytes: 0, clientIDs: new Set() }
      this.#writers.set(origin, contribution)
    }
    contribution.writes++
    if (update !== null) {
      this.#queue.push(update)
      contribution.bytes += update.length
    }
    for (const id of clientIDs) contribution.clientIDs.add(id)
    this.#counted++
    this.#kick()
  }

  /** Resolves once every write counted so far is stored (not the ones that arrive meanwhile). */
  flush(): Promise<void> {
    const target = this.#counted
    // A stopped log (room deleted, or gave up on a failing store) has nothing to wait for.
    if (this.#stored >= target || this.#stopped) return Promise.resolve()
    const flushed = new Promise<void>((resolve) => this.#flushWaiters.push({ target, resolve }))
    this.#wakeWindow() // someone waits: the window does not hold these writes back
    return flushed
  }

  /** The room is going: a failing store is retried a little longer, then given up on. */
  closing(): void {
    this.#closingSince ??= this.#clock.wallNow()
    this.#wakeRetry?.()
    this.#wakeWindow()
  }

  /** Stores what is counted, then compacts a multi-record log so the next load reads one record. */
  async close(): Promise<void> {
    this.closing()
    await this.flush()
    if (this.records > 1 && !this.#stopped) await this.#compact()
    this.#stop()
  }

  /** Stores nothing more (the room is being deleted); waits for a write in flight. */
  async discard(): Promise<void> {
    this.#stop()
    this.#wakeRetry?.()
    await this.#storing
  }

  #stop(): void {
    this.#stopped = true
    this.#clearWindow()
    this.#queue.clear()
    this.#writers = new Map()
    // Nothing more will be stored: whoever waits for a flush has its answer.
    for (const waiter of this.#flushWaiters) waiter.resolve()
    this.#flushWaiters = []
  }

  #needsCompaction(): boolean {
    return this.records >= this.#deps.compactAfterRecords
  }

  #kick(): void {
    if (this.#storing !== null || this.#windowTimer !== null || this.#stopped) return
    // #loop runs up to its first await before this assignment, so it cannot end before it.
    const storing: Promise<void> = this.#loop().finally(() => {
      // A loop that stopped to wait for the window was replaced at once if the wait was cut short.
      if (this.#storing === storing) this.#storing = null
    })
    this.#storing = storing
  }

  async #loop(): Promise<void> {
    // Let the rest of this turn's writes join the first append.
    await Promise.resolve()
    for (;;) {
      if (this.#stopped) return
      if (this.#writers.size === 0) {
        // Idle: compact if the log is long. A failed compaction waits for the next write.
        if (!this.#needsCompaction() || !(await this.#compact())) return
        continue
      }
      const wait = this.#windowWait()
      if (wait > 0) {
        // The loop ends here, not when its promise settles: a flush or closing in between (a
        // microtask later) clears the timer and must be able to start the next loop at once.
        this.#storing = null
        this.#windowTimer = this.#clock.setTimeout(() => {
          this.#windowTimer = null
          this.#kick()
        }, wait)
        return
      }
      const updates = this.#queue.take()
      const writers = this.#writers
      const taken = this.#counted - this.#taken
      this.#taken = this.#counted
      this.#writers = new Map()
      const records = mergeInChunks(updates)
      if (records.length > 0) {
        const firstSeq = this.#lastSeq + 1
        const at = this.#clock.wallNow()
        const history: WriteRecord[] = []
        for (const [writer, c] of writers) {
          if (c.bytes > 0) history.push({ actor: writer.actor, at, writes: c.writes, bytes: c.bytes, clientIDs: [...c.clientIDs] })
        }
        const stored = await this.#retry(writers, () => this.#deps.store.append(this.#roomId, firstSeq, records, history))
        if (!stored) return this.#giveUp(taken + this.#counted - this.#taken)
        if (this.#firstSeq < 0) this.#firstSeq = firstSeq
        this.#lastSeq = firstSeq + records.length - 1
      }
      this.#stored += taken
      for (const [writer, c] of writers) writer.acknowledge(c.writes)
      this.#settleFlushes()
    }
  }

  /**
   * How long the store window still holds the queued writes, in whole ms (0: append now, and the
   * window starts again). Nobody waits out a window who waits for a flush, nor a log that is closing.
   */
  #windowWait(): number {
    const windowMs = this.#deps.storeWindowMs
    if (windowMs <= 0 || this.#flushWaiters.length > 0 || this.#closingSince !== null) return 0
    const now = this.#clock.now()
    const wait = this.#lastAppend + windowMs - now
    // Timers count whole ms on their own clock: under 1 ms left is the window's end.
    if (wait >= 1) return Math.ceil(wait)
    this.#lastAppend = now
    return 0
  }

  /** Ends a store window's wait now: the loop starts again at once. */
  #wakeWindow(): void {
    if (this.#windowTimer === null) return
    this.#clearWindow()
    this.#kick()
  }

  #clearWindow(): void {
    if (this.#windowTimer === null) return
    this.#clock.clearTimeout(this.#windowTimer)
    this.#windowTimer = null
  }

  #settleFlushes(): void {
    if (this.#flushWaiters.length === 0) return
    const waiting = this.#flushWaiters
    this.#flushWaiters = []
    for (const waiter of waiting) {
      if (this.#stored >= waiter.target) waiter.resolve()
      else this.#flushWaiters.push(waiter)
    }
  }

  /** Replaces the stored log with one snapshot; says whether it worked. */
  async #compact(): Promise<boolean> {
    const throughSeq = this.#lastSeq
    const fromSeq = this.#firstSeq
    if (throughSeq <= fromSeq) return true
    // The doc holds every stored record (and maybe newer, not yet stored writes: Yjs merges are
    // idempotent, so a snapshot that runs ahead of the log loses and duplicates nothing).
    const snapshot = Y.encodeStateAsUpdate(this.#doc)
    this.#onCompacted(snapshot.length)
    try {
      await this.#deps.metrics.timeStore('compact', () => this.#deps.store.compact(this.#roomId, fromSeq, throughSeq, snapshot))
      this.#firstSeq = throughSeq
      this.#deps.metrics.compactions++
      return true
    } catch (err) {
      // The log is intact (the batch is atomic); compaction is tried again after the next write.
      this.#deps.metrics.storeErrors++
      this.#deps.log.error({ err, roomId: this.#roomId }, 'compaction failed')
      return false
    }
  }

  /**
   * Runs a store write until it succeeds, backing off; writers hear that their writes wait. Says
   * false when it gave up: the log stopped, or is closing and the store still fails.
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
        const clock = this.#clock
        if (this.#stopped || (closing && clock.wallNow() - this.#closingSince! > CLOSING_RETRY_MS)) return false
        this.#deps.log.error({ err, roomId: this.#roomId, retryInMs: delay }, 'document store write failed; retrying')
        for (const writer of writers.keys()) writer.writeDelayed()
        await new Promise<void>((resolve) => {
          const timer = clock.setTimeout(resolve, closing ? RETRY_MIN_MS : delay)
          this.#wakeRetry = () => {
            clock.clearTimeout(timer)
            resolve()
          }
        })
        this.#wakeRetry = null
        delay = Math.min(delay * 2, RETRY_MAX_MS)
      }
    }
  }

  /**
   * The store cannot take this room's writes and the room must go (shutdown): what it held that was
   * not stored is said in the log. Its writers were never told it was saved, so clients that still
   * hold those writes send them again when they reconnect.
   */
  #giveUp(unstored: number): void {
    if (!this.#stopped) {
      this.#deps.log.error(
        { roomId: this.#roomId, unstoredWrites: unstored },
        `${unstored} writes of this room were not stored: the store kept failing while the room closed`,
      )
    }
    this.#stop()
  }
}
