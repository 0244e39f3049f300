/**
 * The LevelDB document store: each room's update log kept in an embedded LevelDB (classic-level
 * through `level`), under the keys of keys.ts. One server process owns a data dir at a time;
 * LevelDB's lock file enforces it and a second opener gets DataDirInUseError.
 */

import { mkdir } from 'node:fs/promises'
import { Level } from 'level'
import type { BatchOperation } from 'level'
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
  roomRange,
} from './keys.ts'

type Db = Level<Uint8Array, Uint8Array>
type Op = BatchOperation<Db, Uint8Array, Uint8Array>

/** Another process (or another store in this one) holds the data dir's LevelDB lock. */
export class DataDirInUseError extends Error {
  readonly code = 'DATA_DIR_IN_USE'

  constructor(readonly dir: string, options?: ErrorOptions) {
    super(`data dir "${dir}" is in use by another Tandem server`, options)
    this.name = 'DataDirInUseError'
  }
}

export interface LevelStoreOptions {
  /** fsync every write: survives a power loss, not only a process crash. Default false. */
  sync?: boolean
}

export async function openLevelStore(dir: string, options: LevelStoreOptions = {}): Promise<LevelStore> {
  await mkdir(dir, { recursive: true })
  const db: Db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' })
  try {
    await db.open()
  } catch (err) {
    if (isLockError(err)) throw new DataDirInUseError(dir, { cause: err })
    throw new Error(`could not open data dir "${dir}": ${describe(err)}`, { cause: err })
  }
  try {
    await checkSchemaVersion(db, dir)
  } catch (err) {
    await db.close()
    throw err
  }
  return new LevelStore(db, options.sync ?? false)
}

export class LevelStore implements Store {
  #closed = false
  #pending: { ops: Op[]; resolve: () => void; reject: (err: unknown) => void }[] = []

  constructor(
    private readonly db: Db,
    private readonly sync: boolean,
  ) {}

  async load(roomId: string): Promise<StoredDocument> {
    const updates: Uint8Array[] = []
    let firstSeq = -1
    let lastSeq = -1
    for await (const [key, value] of this.db.iterator(roomRange(roomId))) {
      lastSeq = decodeSeq(key)
      if (firstSeq === -1) firstSeq = lastSeq
      updates.push(value)
    }
    return { updates, firstSeq, lastSeq }
  }

  /**
   * Appends of one event-loop turn, from every room, go to LevelDB as one batch (and, with `sync`,
   * one fsync): a busy server writes once a turn, not once a room. The batch is atomic, so each
   * append still lands whole or not at all.
   */
  append(roomId: string, firstSeq: number, updates: readonly Uint8Array[], writes: readonly WriteRecord[] = []): Promise<void> {
    const ops: Op[] = updates.map((value, i) => ({ type: 'put', key: recordKey(roomId, firstSeq + i), value }))
    writes.forEach((write, i) => ops.push({ type: 'put', key: historyKey(roomId, firstSeq, i), value: json(write) }))
    return new Promise((resolve, reject) => {
      this.#pending.push({ ops, resolve, reject })
      if (this.#pending.length === 1) setImmediate(() => this.#writePending())
    })
  }

  #writePending(): void {
    const appends = this.#pending
    this.#pending = []
    const ops = appends.length === 1 ? appends[0]!.ops : appends.flatMap((a) => a.ops)
    this.db.batch(ops, { sync: this.sync }).then(
      () => {
        for (const a of appends) a.resolve()
      },
      (err: unknown) => {
        for (const a of appends) a.reject(err)
      },
    )
  }

  async compact(roomId: string, fromSeq: number, throughSeq: number, merged: Uint8Array): Promise<void> {
    if (!Number.isSafeInteger(fromSeq) || fromSeq < 0 || !Number.isSafeInteger(throughSeq) || throughSeq < fromSeq) {
      throw new RangeError(`invalid compaction range ${fromSeq}..${throughSeq}`)
    }
    // One batch, so a crash leaves either the old records or the merged one, never neither.
    const ops: Op[] = []
    for (let seq = fromSeq; seq < throughSeq; seq++) ops.push({ type: 'del', key: recordKey(roomId, seq) })
    ops.push({ type: 'put', key: recordKey(roomId, throughSeq), value: merged })
    await this.db.batch(ops, { sync: this.sync })
  }

  async deleteDocument(roomId: string): Promise<void> {
    const ops: Op[] = []
    for await (const key of this.db.keys(roomRange(roomId))) ops.push({ type: 'del', key })
    if (ops.length > 0) await this.db.batch(ops, { sync: this.sync })
  }

  async getRoom(roomId: string): Promise<RoomRecord | null> {
    const value = await this.db.get(namedKey(KIND_ROOM, roomId))
    return value === undefined ? null : parse<RoomRecord>(value)
  }

  async putRoom(record: RoomRecord): Promise<void> {
    await this.db.put(namedKey(KIND_ROOM, record.id), json(record), { sync: this.sync })
  }

  async deleteRoom(roomId: string): Promise<void> {
    const ops: Op[] = [{ type: 'del', key: namedKey(KIND_ROOM, roomId) }]
    for await (const key of this.db.keys(roomRange(roomId))) ops.push({ type: 'del', key })
    for await (const key of this.db.keys(historyRange(roomId))) ops.push({ type: 'del', key })
    await this.db.batch(ops, { sync: this.sync })
  }

  async listRooms({ prefix = '', startingAfter, limit }: ListRoomsOptions): Promise<RoomRecord[]> {
    const all = kindRange(KIND_ROOM)
    const from = startingAfter !== undefined && startingAfter >= prefix ? { gt: namedKey(KIND_ROOM, startingAfter) } : { gte: namedKey(KIND_ROOM, prefix) }
    const rooms: RoomRecord[] = []
    for await (const [key, value] of this.db.iterator({ ...from, lt: all.lt })) {
      if (!decodeName(key).startsWith(prefix)) break
      rooms.push(parse<RoomRecord>(value))
      if (rooms.length >= limit) break
    }
    return rooms
  }

  async countRooms(prefix: string, upTo: number): Promise<number> {
    let count = 0
    if (upTo <= 0) return 0
    for await (const key of this.db.keys({ gte: namedKey(KIND_ROOM, prefix), lt: kindRange(KIND_ROOM).lt })) {
      if (!decodeName(key).startsWith(prefix)) break
      if (++count >= upTo) break
    }
    return count
  }

  async history(roomId: string, limit: number): Promise<WriteRecord[]> {
    const entries: WriteRecord[] = []
    for await (const value of this.db.values({ ...historyRange(roomId), reverse: true, limit })) entries.push(parse<WriteRecord>(value))
    return entries
  }

  async revoke(userId: string, roomId: string | null, at: number): Promise<void> {
    await this.db.put(revocationKey(userId, roomId), json(at), { sync: this.sync })
  }

  async reinstate(userId: string, roomId: string | null): Promise<boolean> {
    const key = revocationKey(userId, roomId)
    if ((await this.db.get(key)) === undefined) return false
    await this.db.del(key, { sync: this.sync })
    return true
  }

  async revokedAt(userId: string, roomId: string): Promise<number> {
    const [everywhere, here] = await this.db.getMany([revocationKey(userId, null), revocationKey(userId, roomId)])
    return Math.max(everywhere === undefined ? 0 : parse<number>(everywhere), here === undefined ? 0 : parse<number>(here))
  }

  async countRecords(roomId: string): Promise<number> {
    let count = 0
    for await (const _ of this.db.keys(roomRange(roomId))) count++
    return count
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.db.close()
  }
}

/** A user's revocation in one room, or in every room (roomId null). */
const revocationKey = (userId: string, roomId: string | null): Uint8Array => namedKey(KIND_REVOCATION, `${userId}\u0000${roomId ?? ''}`)

/** Writes the schema marker into a fresh store; refuses a store written by another schema. */
async function checkSchemaVersion(db: Db, dir: string): Promise<void> {
  const marker = await db.get(VERSION_KEY)
  if (marker === undefined) {
    await db.put(VERSION_KEY, Uint8Array.of(SCHEMA_VERSION), { sync: true })
  } else if (marker.length !== 1 || marker[0] !== SCHEMA_VERSION) {
    throw new Error(
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
