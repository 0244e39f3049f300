/**
 * The store of the distributed mode: each room's document is a Redis Stream (its durable log: a
 * process appends each window of writes with one script call, which adds the entry and announces it
 * on the room's feed channel (log-entry.ts, log-feed.ts), and acknowledges its writers once Redis
 * has it) on top of a checkpoint in PostgreSQL (a compacted snapshot and the stream id it covers).
 * A room loads as checkpoint + stream tail. Rooms, ACLs, revocations and history are PostgreSQL's
 * (postgres-store.ts); a write's history travels in its stream entry and moves to PostgreSQL with
 * the checkpoint that covers it, so acknowledging a write needs Redis only.
 *
 * Compaction is done by one process at a time per room, under a lease with a fencing epoch
 * (lease.ts): a checkpoint from a holder whose lease was taken over is refused, and the stream is
 * trimmed only up to a checkpoint that committed.
 */

import { createHash } from 'node:crypto'
import type pg from 'pg'
import type { Metrics } from '../metrics.ts'
import type { PostgresStore } from '../store/postgres-store.ts'
import type { ListRoomsOptions, RoomRecord, Store, StoredDocument, WriteRecord } from '../store/types.ts'
import type { ClusterKeys } from './keys.ts'
import { type Lease, Leases } from './lease.ts'
import type { BinaryClient, RedisClient } from './redis.ts'
import { APPEND_SCRIPT, appendArguments, compareIds, entryHistory, entryUpdates } from './log-entry.ts'

export interface ClusterStoreOptions {
  readonly keys: ClusterKeys
  readonly command: RedisClient
  readonly binary: BinaryClient
  readonly postgres: PostgresStore
  /** This process's id: its own entries are skipped when read back. */
  readonly processId: string
  /** Replicas that must have a write before it is acknowledged (`WAIT`); 0: Redis's own persistence. */
  readonly waitReplicas: number
  /** Where this process has read each room's log to (its doc holds every entry up to there). */
  readonly position: (roomId: string) => string | undefined
  /** Engine round trips are observed here (`tandem_engine_latency_seconds`). */
  readonly metrics?: Metrics
}

/** The id after `id`, for XTRIM MINID (which keeps ids at or above it). */
const nextId = (id: string): string => {
  const [ms, seq] = id.split('-') as [string, string]
  return `${ms}-${BigInt(seq) + 1n}`
}

const APPEND_SHA = createHash('sha1').update(APPEND_SCRIPT).digest('hex')

export class ClusterStore implements Store {
  readonly #o: ClusterStoreOptions
  readonly #pg: PostgresStore
  readonly #leases: Leases
  /** Where each room's load left its log (the reader starts there). */
  readonly #loadedThrough = new Map<string, string>()
  #closed = false

  constructor(options: ClusterStoreOptions) {
    this.#o = options
    this.#pg = options.postgres
    this.#leases = new Leases(options.postgres.pool, options.processId)
  }

  /** Creates the checkpoint and lease tables beside PostgresStore's. */
  static async migrate(pool: pg.Pool): Promise<void> {
    await Leases.migrate(pool)
  }

  get leases(): Leases {
    return this.#leases
  }

  /** Where the last load of `roomId` left its log; the room's reader starts after it. */
  loadedThrough(roomId: string): string {
    return this.#loadedThrough.get(roomId) ?? '0-0'
  }

  health(): 'ok' | 'read_only' {
    return this.#o.command.isReady && this.#pg.health() === 'ok' ? 'ok' : 'read_only'
  }

  async load(roomId: string): Promise<StoredDocument> {
    const started = performance.now()
    const checkpoint = await this.#leases.checkpoint(roomId)
    this.#o.metrics?.observeEngine('postgres', (performance.now() - started) / 1000)
    const from = checkpoint === null ? '-' : `(${checkpoint.streamId}`
    const entries = (await this.#o.binary.xRange(this.#o.keys.log(roomId), from, '+')).map((m) => ({
      id: m.id.toString(),
      fields: m.message as Record<string, Buffer>,
    }))
    const updates = [...(checkpoint === null ? [] : [checkpoint.snapshot]), ...entries.flatMap(entryUpdates)]
    this.#loadedThrough.set(roomId, entries.at(-1)?.id ?? checkpoint?.streamId ?? '0-0')
    return { updates, firstSeq: updates.length === 0 ? -1 : 0, lastSeq: updates.length - 1 }
  }

  /**
   * One entry for the window's writes (the append script: XADD, and the feed's announcement),
   * acknowledged once Redis has it (and `waitReplicas` replicas, when set). Sequence numbers are
   * the room log's own; the stream orders entries itself.
   */
  async append(roomId: string, _firstSeq: number, updates: readonly Uint8Array[], writes: readonly WriteRecord[] = []): Promise<void> {
    if (this.#closed) throw new Error('the cluster store is closed')
    const script = {
      keys: [this.#o.keys.log(roomId), this.#o.keys.feed(roomId)],
      arguments: appendArguments(this.#o.processId, Date.now(), updates, writes),
    }
    const started = performance.now()
    try {
      await this.#o.command.evalSha(APPEND_SHA, script)
    } catch (err) {
      // A Redis that restarted (or never ran it) has no script cache: EVAL loads it.
      if (!(err instanceof Error && err.message.startsWith('NOSCRIPT'))) throw err
      await this.#o.command.eval(APPEND_SCRIPT, script)
    }
    this.#o.metrics?.observeEngine('redis', (performance.now() - started) / 1000)
    if (this.#o.waitReplicas > 0) {
      const acked = Number(await this.#o.command.sendCommand(['WAIT', String(this.#o.waitReplicas), '1000']))
      if (acked < this.#o.waitReplicas) throw new Error(`only ${acked} of ${this.#o.waitReplicas} Redis replicas took the write in time`)
    }
  }

  /**
   * Checkpoints `merged` (the room's whole document, as this process holds it: every entry up to
   * where it has read the log, and its own writes) under the compaction lease, moves the covered
   * entries' history to PostgreSQL, then trims the stream up to the committed checkpoint. Another
   * process holding the lease: nothing to do (it compacts). A lease lost meanwhile: refused.
   */
  async compact(roomId: string, _fromSeq: number, _throughSeq: number, merged: Uint8Array): Promise<void> {
    const covered = this.#o.position(roomId)
    if (covered === undefined || covered === '0-0') return
    const lease = await this.#leases.acquire(roomId)
    if (lease === null) return
    await this.checkpoint(lease, roomId, covered, merged)
  }

  /** Writes a checkpoint under `lease` (refused with FencedError if it was taken over), then trims. */
  async checkpoint(lease: Lease, roomId: string, covered: string, merged: Uint8Array): Promise<void> {
    const previous = await this.#leases.checkpoint(roomId)
    if (previous !== null && compareIds(previous.streamId, covered) >= 0) return
    const from = previous === null ? '-' : `(${previous.streamId}`
    const entries = (await this.#o.binary.xRange(this.#o.keys.log(roomId), from, covered)).map((m) => ({
      id: m.id.toString(),
      fields: m.message as Record<string, Buffer>,
    }))
    const history = entries.flatMap((entry) => entryHistory(entry).map((write, i) => ({ entry: entry.id, index: i, write })))
    await this.#leases.commitCheckpoint(lease, roomId, covered, merged, history)
    await this.#o.command.xTrim(this.#o.keys.log(roomId), 'MINID', nextId(covered))
  }

  async deleteDocument(roomId: string): Promise<void> {
    await this.#o.command.del(this.#o.keys.log(roomId))
    await this.#leases.forget(roomId)
  }

  getRoom(roomId: string): Promise<RoomRecord | null> {
    return this.#pg.getRoom(roomId)
  }

  putRoom(record: RoomRecord): Promise<void> {
    return this.#pg.putRoom(record)
  }

  async deleteRoom(roomId: string): Promise<void> {
    await this.#o.command.del(this.#o.keys.log(roomId))
    await this.#leases.forget(roomId)
    await this.#pg.deleteRoom(roomId)
  }

  listRooms(options: ListRoomsOptions): Promise<RoomRecord[]> {
    return this.#pg.listRooms(options)
  }

  countRooms(prefix: string, upTo: number): Promise<number> {
    return this.#pg.countRooms(prefix, upTo)
  }

  /** The newest first: what the log holds past the checkpoint, then what PostgreSQL holds. */
  async history(roomId: string, limit: number): Promise<WriteRecord[]> {
    const checkpoint = await this.#leases.checkpoint(roomId)
    const stop = checkpoint === null ? '-' : `(${checkpoint.streamId}`
    const tail = (await this.#o.binary.xRevRange(this.#o.keys.log(roomId), '+', stop, { COUNT: limit })).map((m) => ({
      id: m.id.toString(),
      fields: m.message as Record<string, Buffer>,
    }))
    const recent = tail.flatMap((entry) => entryHistory(entry).reverse())
    if (recent.length >= limit) return recent.slice(0, limit)
    return [...recent, ...(await this.#pg.history(roomId, limit - recent.length))]
  }

  revoke(userId: string, roomId: string | null, at: number): Promise<void> {
    return this.#pg.revoke(userId, roomId, at)
  }

  revokedAt(userId: string, roomId: string): Promise<number> {
    return this.#pg.revokedAt(userId, roomId)
  }

  reinstate(userId: string, roomId: string | null): Promise<boolean> {
    return this.#pg.reinstate(userId, roomId)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#pg.close()
  }
}
