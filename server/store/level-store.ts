/**
 * The LevelDB document store: each room's update log kept in an embedded LevelDB (classic-level
 * through `level`), under the keys of keys.ts. One server process owns a data dir at a time;
 * LevelDB's lock file enforces it and a second opener gets DataDirInUseError.
 *
 * Over 300 lines on purpose: every LevelDB operation of the Store contract, and the read-only state
 * after a failed write that guards them all, in one class (keys are keys.ts, the reserve
 * disk-reserve.ts).
 */

import { mkdir } from 'node:fs/promises'
import { Level } from 'level'
import { ConfigError } from '../config-error.ts'
import { DiskReserve, freeBytes, isDiskFull } from './disk-reserve.ts'
import type { ListRoomsOptions, RoomRecord, Store, StoredDocument, WriteRecord } from './types.ts'
import {
  KIND_REVOCATION,
  KIND_ROOM,
  SCHEMA_VERSION,
  VERSION_KEY,
  decodeName,
  decodeSeq,
  historyKey,
  historyRange,
  kindRange,
  namedKey,
  recordKey,
  recordKeys,
  roomRange,
} from './keys.ts'

type Db = Level<Uint8Array, Uint8Array>
/** One write of a batch (see writeBatch). */
type Op = { readonly type: 'put'; readonly key: Uint8Array; readonly value: Uint8Array } | { readonly type: 'del'; readonly key: Uint8Array }

/** Another process (or another store in this one) holds the data dir's LevelDB lock. */
export class DataDirInUseError extends ConfigError {
  readonly code = 'DATA_DIR_IN_USE'

  constructor(
    readonly dir: string,
    options?: ErrorOptions,
  ) {
    super('dataDir', `data dir "${dir}" is in use by another Tandem server`, options)
  }
}

export interface LevelStoreOptions {
  /** fsync every write: survives a power loss, not only a process crash. Default false. */
  sync?: boolean
  /** Space kept in a reserve file for recovery on a full disk (disk-reserve.ts). Default 16 MiB; 0: none. */
  reserveBytes?: number
  /** How often a read-only store checks whether the disk has room again (ms). Default 1000. */
  probeMs?: number
  /** Told when the store turns read-only or writable again. */
  onHealth?: (health: StoreHealth, reason: string) => void
}

/** A write failed (a full disk, say): writes are refused until the store reopened on a disk with room. */
export class StoreReadOnlyError extends Error {
  readonly code = 'STORE_READ_ONLY'

  constructor(options?: ErrorOptions) {
    super('the store is read-only until its disk has room again', options)
    this.name = 'StoreReadOnlyError'
  }
}

export const DEFAULT_RESERVE_BYTES = 16 * 1024 * 1024

async function openDb(dir: string): Promise<Db> {
  const db: Db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' })
  try {
    await db.open()
  } catch (err) {
    if (isLockError(err)) throw new DataDirInUseError(dir, { cause: err })
    throw new ConfigError('dataDir', `could not open data dir "${dir}": ${describe(err)}`, { cause: err })
  }
  return db
}

/**
 * Opens the data dir's LevelDB. On a full disk (LevelDB's recovery needs space for a table) it
 * gives up the reserve file and opens read-only: the server starts, and serves what is stored.
 */
export async function openLevelStore(dir: string, options: LevelStoreOptions = {}): Promise<LevelStore> {
  await mkdir(dir, { recursive: true })
  const reserve = new DiskReserve(dir, options.reserveBytes ?? DEFAULT_RESERVE_BYTES)
  let db: Db
  try {
    db = await openDb(dir)
  } catch (err) {
    if (!isDiskFull(err)) throw err
    await reserve.release()
    db = await openDb(dir)
  }
  try {
    await checkSchemaVersion(db, dir)
  } catch (err) {
    await db.close()
    throw err
  }
  const store = new LevelStore(db, dir, options.sync ?? false, reserve, options)
  await store.settleReserve()
  return store
}

export type StoreHealth = 'ok' | 'read_only'

export class LevelStore implements Store {
  #closed = false
  #pending: { ops: Op[]; resolve: () => void; reject: (err: unknown) => void }[] = []
  /** The append batch being written, if any: the appends meanwhile wait and go as the next one. */
  #appending: Promise<void> | null = null
  /** The end of the turn the pending appends wait for (set while they wait). */
  #commitTimer: NodeJS.Immediate | null = null
  #db: Db
  readonly #dir: string
  readonly #sync: boolean
  readonly #reserve: DiskReserve
  readonly #probeMs: number
  readonly #onHealth: (health: StoreHealth, reason: string) => void
  #health: StoreHealth = 'ok'
  #probe: NodeJS.Timeout | null = null
  #reopening = false

  constructor(db: Db, dir: string, sync: boolean, reserve: DiskReserve, options: LevelStoreOptions = {}) {
    this.#db = db
    this.#dir = dir
    this.#sync = sync
    this.#reserve = reserve
    this.#probeMs = options.probeMs ?? 1_000
    this.#onHealth = options.onHealth ?? (() => {})
  }

  /** `read_only` from a failed write until the store reopened on a disk with room again. */
  health(): StoreHealth {
    return this.#health
  }

  /** Takes the reserve back when the disk has room for it and more; stays read-only otherwise. */
  async settleReserve(): Promise<void> {
    if (await this.#reserve.held()) return
    if ((await freeBytes(this.#dir)) >= this.#roomNeeded() && (await this.#reserve.take())) return
    this.#readOnly("the disk has no room for the store's reserve")
  }

  /** Free space after which a read-only store reopens: the reserve, and as much again for writes. */
  #roomNeeded(): number {
    return 2 * this.#reserve.bytes + 1024 * 1024
  }

  /**
   * Every write goes through here. After a failed one, LevelDB's log may end in a partial record;
   * a later write appended behind it could be lost at the next recovery (acknowledged, then gone).
   * So nothing more is written until the store has been reopened, which recovers the log and
   * starts a new one: until then writes fail at once (the rooms retry, their writers are told).
   */
  async #write<T>(run: (db: Db) => Promise<T>): Promise<T> {
    if (this.#health !== 'ok') throw new StoreReadOnlyError()
    try {
      return await run(this.#db)
    } catch (err) {
      this.#readOnly(describe(err))
      throw err
    }
  }

  #readOnly(reason: string): void {
    if (this.#closed) return
    if (this.#health === 'ok') {
      this.#health = 'read_only'
      this.#onHealth('read_only', reason)
    }
    if (this.#probe === null) {
      this.#probe = setInterval(() => void this.#tryReopen(), this.#probeMs)
      this.#probe.unref()
    }
  }

  async #tryReopen(): Promise<void> {
    if (this.#reopening || this.#closed) return
    this.#reopening = true
    try {
      if ((await freeBytes(this.#dir)) < this.#roomNeeded()) return
      await this.#db.close()
      this.#db = await openDb(this.#dir)
      if (!(await this.#reserve.take())) return
      clearInterval(this.#probe!)
      this.#probe = null
      this.#health = 'ok'
      this.#onHealth('ok', 'reopened on a disk with room')
    } catch (err) {
      // Still no room (or the open failed): the next probe tries again.
      this.#onHealth('read_only', `reopening failed: ${describe(err)}`)
      if (this.#db.status === 'closed') this.#db = await openDb(this.#dir).catch(() => this.#db)
    } finally {
      this.#reopening = false
    }
  }

  async load(roomId: string): Promise<StoredDocument> {
    const updates: Uint8Array[] = []
    let firstSeq = -1
    let lastSeq = -1
    for await (const [key, value] of this.#db.iterator(roomRange(roomId))) {
      lastSeq = decodeSeq(key)
      if (firstSeq === -1) firstSeq = lastSeq
      updates.push(value)
    }
    return { updates, firstSeq, lastSeq }
  }

  /**
   * Group commit: appends of one event-loop turn, from every room, go to LevelDB as one batch (and,
   * with `sync`, one fsync), and while a batch is being written, the appends that arrive wait and go
   * together as the next one. A quiet server writes each append at once; a busy one writes once per
   * batch time, not once a room or a turn (on bench 05's 100 x 5, where every room's store window
   * opened alone, each append was its own batch: classic-level's batch call was the largest item of
   * the main thread's profile). The batch is atomic, so each append still lands whole or not at all.
   * Waiting a few ms for more appends was measured and left out: it halved LevelDB's preemptions of
   * the event loop at 100 x 5, but its CPU and p99 gains did not hold across runs, and a writer that
   * waits for each acknowledgement (bench 03, a REST importer) paid the wait on every write.
   */
  append(roomId: string, firstSeq: number, updates: readonly Uint8Array[], writes: readonly WriteRecord[] = []): Promise<void> {
    const ops: Op[] = updates.map((value, i) => ({ type: 'put', key: recordKey(roomId, firstSeq + i), value }))
    writes.forEach((write, i) => {
      ops.push({ type: 'put', key: historyKey(roomId, firstSeq, i), value: json(write) })
    })
    return new Promise((resolve, reject) => {
      this.#pending.push({ ops, resolve, reject })
      if (this.#pending.length === 1 && this.#appending === null) {
        this.#commitTimer = setImmediate(() => {
          this.#commitTimer = null
          this.#writePending()
        })
      }
    })
  }

  #writePending(): void {
    const appends = this.#pending
    if (appends.length === 0) return
    this.#pending = []
    const ops = appends.length === 1 ? appends[0]!.ops : appends.flatMap((a) => a.ops)
    this.#appending = this.#write((db) => writeBatch(db, ops, this.#sync))
      .then(
        () => {
          for (const a of appends) a.resolve()
        },
        (err: unknown) => {
          for (const a of appends) a.reject(err)
        },
      )
      .finally(() => {
        this.#appending = null
        this.#writePending()
      })
  }

  /** Writes the appends waiting for the end of the turn now, and waits for every batch in flight (close). */
  async #settleAppends(): Promise<void> {
    if (this.#commitTimer !== null) {
      clearImmediate(this.#commitTimer)
      this.#commitTimer = null
      this.#writePending() // a pending turn means no batch is in flight (see append)
    }
    while (this.#appending !== null) await this.#appending
  }

  async compact(roomId: string, fromSeq: number, throughSeq: number, merged: Uint8Array): Promise<void> {
    if (!Number.isSafeInteger(fromSeq) || fromSeq < 0 || !Number.isSafeInteger(throughSeq) || throughSeq < fromSeq) {
      throw new RangeError(`invalid compaction range ${fromSeq}..${throughSeq}`)
    }
    // One batch, so a crash leaves either the old records or the merged one, never neither.
    const ops: Op[] = []
    for (const key of recordKeys(roomId, fromSeq, throughSeq)) ops.push({ type: 'del', key })
    ops.push({ type: 'put', key: recordKey(roomId, throughSeq), value: merged })
    await this.#write((db) => writeBatch(db, ops, this.#sync))
  }

  async deleteDocument(roomId: string): Promise<void> {
    const ops: Op[] = []
    for await (const key of this.#db.keys(roomRange(roomId))) ops.push({ type: 'del', key })
    if (ops.length > 0) await this.#write((db) => writeBatch(db, ops, this.#sync))
  }

  async getRoom(roomId: string): Promise<RoomRecord | null> {
    const value = await this.#db.get(namedKey(KIND_ROOM, roomId))
    return value === undefined ? null : parse<RoomRecord>(value)
  }

  async putRoom(record: RoomRecord): Promise<void> {
    await this.#write((db) => db.put(namedKey(KIND_ROOM, record.id), json(record), { sync: this.#sync }))
  }

  async deleteRoom(roomId: string): Promise<void> {
    const ops: Op[] = [{ type: 'del', key: namedKey(KIND_ROOM, roomId) }]
    for await (const key of this.#db.keys(roomRange(roomId))) ops.push({ type: 'del', key })
    for await (const key of this.#db.keys(historyRange(roomId))) ops.push({ type: 'del', key })
    await this.#write((db) => writeBatch(db, ops, this.#sync))
  }

  async listRooms({ prefix = '', startingAfter, limit }: ListRoomsOptions): Promise<RoomRecord[]> {
    const all = kindRange(KIND_ROOM)
    const from = startingAfter !== undefined && startingAfter >= prefix ? { gt: namedKey(KIND_ROOM, startingAfter) } : { gte: namedKey(KIND_ROOM, prefix) }
    const rooms: RoomRecord[] = []
    for await (const [key, value] of this.#db.iterator({ ...from, lt: all.lt })) {
      if (!decodeName(key).startsWith(prefix)) break
      rooms.push(parse<RoomRecord>(value))
      if (rooms.length >= limit) break
    }
    return rooms
  }

  async countRooms(prefix: string, upTo: number): Promise<number> {
    let count = 0
    if (upTo <= 0) return 0
    for await (const key of this.#db.keys({ gte: namedKey(KIND_ROOM, prefix), lt: kindRange(KIND_ROOM).lt })) {
      if (!decodeName(key).startsWith(prefix)) break
      if (++count >= upTo) break
    }
    return count
  }

  async history(roomId: string, limit: number): Promise<WriteRecord[]> {
    const entries: WriteRecord[] = []
    for await (const value of this.#db.values({ ...historyRange(roomId), reverse: true, limit })) entries.push(parse<WriteRecord>(value))
    return entries
  }

  async revoke(userId: string, roomId: string | null, at: number): Promise<void> {
    await this.#write((db) => db.put(revocationKey(userId, roomId), json(at), { sync: this.#sync }))
  }

  async reinstate(userId: string, roomId: string | null): Promise<boolean> {
    const key = revocationKey(userId, roomId)
    if ((await this.#db.get(key)) === undefined) return false
    await this.#write((db) => db.del(key, { sync: this.#sync }))
    return true
  }

  async revokedAt(userId: string, roomId: string): Promise<number> {
    const [everywhere, here] = await this.#db.getMany([revocationKey(userId, null), revocationKey(userId, roomId)])
    return Math.max(everywhere === undefined ? 0 : parse<number>(everywhere), here === undefined ? 0 : parse<number>(here))
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#probe !== null) clearInterval(this.#probe)
    await this.#settleAppends()
    await this.#db.close()
  }
}

/**
 * Writes `ops` as one atomic batch, through a chained batch: abstract-level's array form clones and
 * re-checks every operation (an object spread each), and was most of the store's main-thread time.
 * 20 rooms' appends a batch, pinned to one core: 23-30 µs an edit in the array form, 8-10 chained.
 */
function writeBatch(db: Db, ops: readonly Op[], sync: boolean): Promise<void> {
  const batch = db.batch()
  try {
    for (const op of ops) {
      if (op.type === 'put') batch.put(op.key, op.value)
      else batch.del(op.key)
    }
  } catch (err) {
    void batch.close()
    throw err
  }
  return batch.write({ sync })
}

/** A user's revocation in one room, or in every room (roomId null). */
const revocationKey = (userId: string, roomId: string | null): Uint8Array => namedKey(KIND_REVOCATION, `${userId}\u0000${roomId ?? ''}`)

/** Writes the schema marker into a fresh store; refuses a store written by another schema. */
async function checkSchemaVersion(db: Db, dir: string): Promise<void> {
  const marker = await db.get(VERSION_KEY)
  if (marker === undefined) {
    await db.put(VERSION_KEY, Uint8Array.of(SCHEMA_VERSION), { sync: true })
  } else if (marker.length !== 1 || marker[0] !== SCHEMA_VERSION) {
    throw new ConfigError(
      'dataDir',
      `data dir "${dir}" holds store schema version ${Array.from(marker).join('.')}, this server reads version ${SCHEMA_VERSION}`,
    )
  }
}

/** classic-level reports a held lock as LEVEL_DATABASE_NOT_OPEN caused by LEVEL_LOCKED ("IO error: lock ..."). */
function isLockError(err: unknown): boolean {
  if (!(err instanceof Error) || (err as { code?: unknown }).code !== 'LEVEL_DATABASE_NOT_OPEN') return false
  const cause = err.cause
  if (!(cause instanceof Error)) return false
  return (cause as { code?: unknown }).code === 'LEVEL_LOCKED' || /\block\b/i.test(cause.message)
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  return err.cause instanceof Error ? `${err.message}: ${err.cause.message}` : err.message
}

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()
const json = (value: unknown): Uint8Array => textEncoder.encode(JSON.stringify(value))
const parse = <T>(bytes: Uint8Array): T => JSON.parse(textDecoder.decode(bytes)) as T
