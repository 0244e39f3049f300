/**
 * An in-memory Store: for tests, and for embedding Tandem where there is no disk (nothing survives
 * `close()` or the process). It behaves as the LevelDB store (level-store.ts) does, record for
 * record, and passes the same contract tests (test/store.test.ts). Like LevelDB it hands out and
 * keeps copies: room records and history entries are kept as JSON, updates as copied bytes, so a
 * caller changing what it passed in or got back never changes what is stored.
 */

import type { ListRoomsOptions, RoomRecord, Store, StoredDocument, WriteRecord } from './types.ts'

export class MemoryStore implements Store {
  #closed = false
  /** Each room's update records, by sequence number. */
  readonly #records = new Map<string, Map<number, Uint8Array>>()
  /** Each room's history entries (JSON), by the sequence number of their batch, then index in it. */
  readonly #history = new Map<string, Map<number, string[]>>()
  /** Room records (JSON), by room id. */
  readonly #rooms = new Map<string, string>()
  /** Revocation times, keyed as LevelDB keys them (so a room id '' means every room there too). */
  readonly #revocations = new Map<string, number>()

  /** Always `ok`: memory has no disk to fill. */
  health(): 'ok' | 'read_only' {
    return 'ok'
  }

  async load(roomId: string): Promise<StoredDocument> {
    this.#checkOpen()
    checkRoomId(roomId)
    const records = this.#records.get(roomId)
    if (records === undefined || records.size === 0) return { updates: [], firstSeq: -1, lastSeq: -1 }
    const seqs = [...records.keys()].sort((a, b) => a - b)
    return { updates: seqs.map((seq) => records.get(seq)!.slice()), firstSeq: seqs[0]!, lastSeq: seqs[seqs.length - 1]! }
  }

  /** Validates at once (an invalid sequence number throws, as LevelStore's does), then stores. */
  append(roomId: string, firstSeq: number, updates: readonly Uint8Array[], writes: readonly WriteRecord[] = []): Promise<void> {
    if (updates.length > 0 || writes.length > 0) {
      checkRoomId(roomId)
      checkSeq(firstSeq)
      if (updates.length > 0) checkSeq(firstSeq + (updates.length - 1))
    }
    const copies = updates.map((update) => update.slice())
    const entries = writes.map((write) => JSON.stringify(write))
    return this.#write(() => {
      if (copies.length > 0) {
        const records = getOrCreate(this.#records, roomId)
        copies.forEach((update, i) => {
          records.set(firstSeq + i, update)
        })
      }
      if (entries.length > 0) {
        const history = getOrCreate(this.#history, roomId)
        const batch = history.get(firstSeq) ?? []
        entries.forEach((entry, i) => {
          batch[i] = entry
        })
        history.set(firstSeq, batch)
      }
    })
  }

  async compact(roomId: string, fromSeq: number, throughSeq: number, merged: Uint8Array): Promise<void> {
    if (!Number.isSafeInteger(fromSeq) || fromSeq < 0 || !Number.isSafeInteger(throughSeq) || throughSeq < fromSeq) {
      throw new RangeError(`invalid compaction range ${fromSeq}..${throughSeq}`)
    }
    checkRoomId(roomId)
    this.#checkOpen()
    const records = getOrCreate(this.#records, roomId)
    for (const seq of [...records.keys()]) if (seq >= fromSeq && seq < throughSeq) records.delete(seq)
    records.set(throughSeq, merged.slice())
  }

  async deleteDocument(roomId: string): Promise<void> {
    this.#checkOpen()
    checkRoomId(roomId)
    this.#records.delete(roomId)
  }

  async getRoom(roomId: string): Promise<RoomRecord | null> {
    this.#checkOpen()
    const json = this.#rooms.get(roomId)
    return json === undefined ? null : (JSON.parse(json) as RoomRecord)
  }

  async putRoom(record: RoomRecord): Promise<void> {
    this.#checkOpen()
    this.#rooms.set(record.id, JSON.stringify(record))
  }

  async deleteRoom(roomId: string): Promise<void> {
    this.#checkOpen()
    checkRoomId(roomId)
    this.#rooms.delete(roomId)
    this.#records.delete(roomId)
    this.#history.delete(roomId)
  }

  async listRooms({ prefix = '', startingAfter, limit }: ListRoomsOptions): Promise<RoomRecord[]> {
    this.#checkOpen()
    const after = startingAfter !== undefined && startingAfter >= prefix ? startingAfter : undefined
    const rooms: RoomRecord[] = []
    for (const id of this.#roomIds()) {
      if (after !== undefined ? compareIds(id, after) <= 0 : compareIds(id, prefix) < 0) continue
      if (!id.startsWith(prefix)) break
      rooms.push(JSON.parse(this.#rooms.get(id)!) as RoomRecord)
      if (rooms.length >= limit) break
    }
    return rooms
  }

  async countRooms(prefix: string, upTo: number): Promise<number> {
    this.#checkOpen()
    let count = 0
    if (upTo <= 0) return 0
    for (const id of this.#rooms.keys()) {
      if (id.startsWith(prefix) && ++count >= upTo) break
    }
    return count
  }

  async history(roomId: string, limit: number): Promise<WriteRecord[]> {
    this.#checkOpen()
    checkRoomId(roomId)
    // As LevelDB reads a `limit`: a non-negative integer, anything else is no limit.
    const max = Number.isInteger(limit) && limit >= 0 ? limit : Infinity
    const batches = this.#history.get(roomId) ?? new Map<number, string[]>()
    const entries: WriteRecord[] = []
    for (const seq of [...batches.keys()].sort((a, b) => b - a)) {
      const batch = batches.get(seq)!
      for (let i = batch.length - 1; i >= 0; i--) {
        if (entries.length >= max) return entries
        entries.push(JSON.parse(batch[i]!) as WriteRecord)
      }
    }
    return entries
  }

  async revoke(userId: string, roomId: string | null, at: number): Promise<void> {
    this.#checkOpen()
    this.#revocations.set(revocationKey(userId, roomId), at)
  }

  async reinstate(userId: string, roomId: string | null): Promise<boolean> {
    this.#checkOpen()
    return this.#revocations.delete(revocationKey(userId, roomId))
  }

  async revokedAt(userId: string, roomId: string): Promise<number> {
    this.#checkOpen()
    return Math.max(this.#revocations.get(revocationKey(userId, null)) ?? 0, this.#revocations.get(revocationKey(userId, roomId)) ?? 0)
  }

  /** Drops everything; later calls reject, as a closed LevelDB's do. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#records.clear()
    this.#history.clear()
    this.#rooms.clear()
    this.#revocations.clear()
  }

  /** Room ids in LevelDB's key order (UTF-8 bytes, which is code point order). */
  #roomIds(): string[] {
    return [...this.#rooms.keys()].sort(compareIds)
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error('the memory store is closed')
  }

  /** Runs `write` unless the store is closed; a promise either way, as append returns. */
  async #write(write: () => void): Promise<void> {
    this.#checkOpen()
    write()
  }
}

/** An empty MemoryStore. */
export function createMemoryStore(): MemoryStore {
  return new MemoryStore()
}

/** A user's revocation in one room, or in every room (roomId null): the LevelDB key's name. */
const revocationKey = (userId: string, roomId: string | null): string => `${userId}\u0000${roomId ?? ''}`

function getOrCreate<K, V>(map: Map<string, Map<K, V>>, key: string): Map<K, V> {
  let inner = map.get(key)
  if (inner === undefined) {
    inner = new Map<K, V>()
    map.set(key, inner)
  }
  return inner
}

/** What LevelDB's keys refuse (keys.ts): a room id with U+0000. */
function checkRoomId(roomId: string): void {
  if (roomId.includes('\u0000')) throw new RangeError('room id must not contain U+0000')
}

function checkSeq(seq: number): void {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`invalid sequence number ${seq}`)
}

/** Orders strings by code point, as LevelDB orders their UTF-8 bytes (UTF-16 code units differ above U+FFFF). */
function compareIds(a: string, b: string): number {
  const x = a[Symbol.iterator]()
  const y = b[Symbol.iterator]()
  for (;;) {
    const p = x.next()
    const q = y.next()
    if (p.done === true || q.done === true) return p.done === true ? (q.done === true ? 0 : -1) : 1
    const d = p.value.codePointAt(0)! - q.value.codePointAt(0)!
    if (d !== 0) return d
  }
}
