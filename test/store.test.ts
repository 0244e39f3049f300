/**
 * The Store contract, one suite run against every implementation: the LevelDB store (in a temp
 * dir), the in-memory store, and the fault-injecting wrapper with no faults. It covers documents
 * (append, load, compact, delete), room records and their listing, counting, write history,
 * revocations, deleting a room, and that values go in and out as copies. Then what only LevelDB
 * has: persistence across reopen, the data dir lock, the schema marker, and the key encoding.
 */

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import type { RoomRecord, Store, StoredDocument, WriteRecord } from '../server/store/types.ts'
import { DataDirInUseError, openLevelStore } from '../server/store/level-store.ts'
import { MemoryStore, createMemoryStore } from '../server/store/memory-store.ts'
import { isValidRoomId } from '../protocol/ids.ts'
import { decodeSeq, recordKey, recordKeys, roomRange } from '../server/store/keys.ts'
import { FaultyStore } from './support/faulty-store.ts'
import { countRecords } from './support/store-records.ts'
import { openPostgresStore } from '../server/store/postgres-store.ts'
import { testDatabase } from './support/postgres.ts'

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values)
/** A loaded document with its updates as number arrays, so a Buffer and a Uint8Array compare equal. */
const plain = (doc: StoredDocument): { updates: number[][]; firstSeq: number; lastSeq: number } => ({
  updates: doc.updates.map((u) => Array.from(u)),
  firstSeq: doc.firstSeq,
  lastSeq: doc.lastSeq,
})
const compareBytes = (a: Uint8Array, b: Uint8Array): number => Buffer.compare(a, b)
const inRange = (key: Uint8Array, range: { gte: Uint8Array; lt: Uint8Array }): boolean => compareBytes(key, range.gte) >= 0 && compareBytes(key, range.lt) < 0
const tempDir = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'tandem-store-'))
/** A small disk reserve: these stores hold a few records each. */
const LEVEL_OPTIONS = { reserveBytes: 64 * 1024 }

/** Deterministic PRNG so the Yjs workload replays identically. */
function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function docFrom(updates: Uint8Array[]): Y.Doc {
  const doc = new Y.Doc()
  for (const update of updates) Y.applyUpdate(doc, update)
  return doc
}

/** The workload's content (Doc.toJSON only lists types already fetched with get*). */
const content = (doc: Y.Doc): unknown => ({ text: doc.getText('text').toString(), map: doc.getMap('map').toJSON() })

/** A room record with an ACL and metadata in every field. */
const roomRecord = (id: string, updatedAt = '2024-01-01T00:00:00.000Z'): RoomRecord => ({
  id,
  defaultAccesses: ['room:read'],
  usersAccesses: { ada: ['room:write'] },
  groupsAccesses: { editors: ['room:write', 'room:presence:write'] },
  metadata: { title: `Room ${id}`, tags: ['a', 'b'] },
  createdAt: '2024-01-01T00:00:00.000Z',
  updatedAt,
})

/** A history entry of `userId`, told apart by `at`. */
const write = (userId: string, at: number, clientIDs: number[] = [at]): WriteRecord => ({
  actor: { kind: 'user', userId, sessionId: `s-${userId}` },
  at,
  writes: 1,
  bytes: 10 + at,
  clientIDs,
})

/** Changes every field of a record or entry a store handed out or was handed, at every depth. */
const scribble = (value: unknown): void => {
  if (typeof value !== 'object' || value === null) return
  const target = value as Record<string, unknown>
  for (const [key, field] of Object.entries(target)) {
    if (typeof field === 'object' && field !== null) scribble(field)
    else target[key] = typeof field === 'number' ? -1 : 'scribbled'
  }
  if (Array.isArray(value)) value.push('scribbled')
  else target.scribbled = ['x']
}

/** Opens an empty store; `tempDir()` gives a fresh directory, removed after the test. */
type OpenStore = (tempDir: () => string) => Promise<Store>

/** The contract every Store passes. Stores opened through it are closed after each test. */
function storeContract(name: string, open: OpenStore): void {
  describe(`Store contract: ${name}`, () => {
    let dirs: string[]
    let opened: Store[]

    const openStore = async (): Promise<Store> => {
      const store = await open(() => {
        const dir = tempDir()
        dirs.push(dir)
        return dir
      })
      opened.push(store)
      return store
    }

    beforeEach(() => {
      dirs = []
      opened = []
    })

    afterEach(async () => {
      for (const store of opened) await store.close()
      for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true })
    })

    describe('documents', () => {
      it('loads a room never written to as an empty document', async () => {
        const store = await openStore()
        expect(await store.load('never')).toEqual({ updates: [], firstSeq: -1, lastSeq: -1 })
        expect(await countRecords(store, 'never')).toBe(0)
      })

      it('loads appended records in sequence order, past one and two bytes of seq', async () => {
        const store = await openStore()
        const seqs = [0, 1, 2, 255, 256, 257, 65535, 65536, 2 ** 32, Number.MAX_SAFE_INTEGER]
        // Appended out of order: the store, not the caller, orders them.
        for (const seq of [...seqs].reverse()) await store.append('room', seq, [bytes(seq % 251, 7)])
        const doc = await store.load('room')
        expect(doc.firstSeq).toBe(0)
        expect(doc.lastSeq).toBe(Number.MAX_SAFE_INTEGER)
        expect(doc.updates.map((u) => Array.from(u))).toEqual(seqs.map((seq) => [seq % 251, 7]))
        expect(doc.updates.every((u) => u instanceof Uint8Array)).toBe(true)
        expect(await countRecords(store, 'room')).toBe(seqs.length)
      })

      it('keeps rooms apart, including ids that share a prefix', async () => {
        const store = await openStore()
        const rooms = ['a', 'ab', 'a:b', 'a b', 'b', 'é', 'a\u{1F600}']
        for (const [i, room] of rooms.entries()) {
          for (let seq = 0; seq <= i; seq++) await store.append(room, seq, [bytes(i, seq)])
        }
        for (const [i, room] of rooms.entries()) {
          const doc = await store.load(room)
          expect(doc.firstSeq).toBe(0)
          expect(doc.lastSeq).toBe(i)
          expect(doc.updates.map((u) => Array.from(u))).toEqual(Array.from({ length: i + 1 }, (_, seq) => [i, seq]))
          expect(await countRecords(store, room)).toBe(i + 1)
        }
      })

      it('appends a batch of records under consecutive sequence numbers', async () => {
        const store = await openStore()
        await store.append('room', 0, [bytes(0)])
        await store.append('room', 1, [bytes(1), bytes(2), bytes(3)])
        expect(plain(await store.load('room'))).toEqual({ updates: [[0], [1], [2], [3]], firstSeq: 0, lastSeq: 3 })
        expect(await countRecords(store, 'room')).toBe(4)
      })

      it('stores appends made in one turn to several rooms, each whole', async () => {
        const store = await openStore()
        await Promise.all([
          store.append('a', 0, [bytes(1), bytes(2)]),
          store.append('b', 0, [bytes(3)]),
          store.append('a', 2, [bytes(4)]),
          store.append('c', 7, [bytes(5), bytes(6), bytes(7)]),
        ])
        expect(plain(await store.load('a'))).toEqual({ updates: [[1], [2], [4]], firstSeq: 0, lastSeq: 2 })
        expect(plain(await store.load('b'))).toEqual({ updates: [[3]], firstSeq: 0, lastSeq: 0 })
        expect(plain(await store.load('c'))).toEqual({ updates: [[5], [6], [7]], firstSeq: 7, lastSeq: 9 })
      })

      it('compacts a range into one record and keeps the records around it', async () => {
        const store = await openStore()
        for (let seq = 0; seq < 10; seq++) await store.append('room', seq, [bytes(seq)])
        await store.append('other', 5, [bytes(99)])
        await store.compact('room', 2, 6, bytes(2, 3, 4, 5, 6))
        expect(await countRecords(store, 'room')).toBe(6)
        const doc = await store.load('room')
        expect(doc.firstSeq).toBe(0)
        expect(doc.lastSeq).toBe(9)
        expect(doc.updates.map((u) => Array.from(u))).toEqual([[0], [1], [2, 3, 4, 5, 6], [7], [8], [9]])
        expect((await store.load('other')).updates.map((u) => Array.from(u))).toEqual([[99]])

        // Compacting again from the merged record onwards, as a room does.
        await store.compact('room', 0, 9, bytes(42))
        expect(plain(await store.load('room'))).toEqual({ updates: [[42]], firstSeq: 9, lastSeq: 9 })
        expect(await countRecords(store, 'room')).toBe(1)
        await store.append('room', 10, [bytes(10)])
        expect((await store.load('room')).updates.map((u) => Array.from(u))).toEqual([[42], [10]])
      })

      it('lets a load racing a compaction see the old records or the merged one, never a mix', async () => {
        const store = await openStore()
        for (let seq = 0; seq < 5; seq++) await store.append('room', seq, [bytes(seq)])
        const before = plain(await store.load('room'))
        const compacted = store.compact('room', 0, 4, bytes(9))
        const during = plain(await store.load('room'))
        await compacted
        const after = plain(await store.load('room'))
        expect(after).toEqual({ updates: [[9]], firstSeq: 4, lastSeq: 4 })
        expect([before, after]).toContainEqual(during)
      })

      it('refuses invalid sequence numbers, compaction ranges and room ids', async () => {
        const store = await openStore()
        // Whether an implementation throws at once or rejects, the caller's await fails.
        const call = (run: () => Promise<unknown>): Promise<unknown> => (async () => run())()
        for (const seq of [-1, 1.5, 2 ** 53, Number.NaN]) {
          await expect(call(() => store.append('room', seq, [bytes(1)]))).rejects.toThrow(RangeError)
        }
        await expect(call(() => store.append('room', Number.MAX_SAFE_INTEGER, [bytes(1), bytes(2)]))).rejects.toThrow(RangeError)
        await expect(call(() => store.append('room', -1, [], [write('ada', 1)]))).rejects.toThrow(RangeError)
        await expect(call(() => store.append('a\u0000b', 0, [bytes(1)]))).rejects.toThrow(RangeError)
        await expect(call(() => store.compact('room', 3, 2, bytes(1)))).rejects.toThrow(RangeError)
        await expect(call(() => store.compact('room', -1, 2, bytes(1)))).rejects.toThrow(RangeError)
        await expect(call(() => store.compact('room', 0, 2 ** 53, bytes(1)))).rejects.toThrow(RangeError)
        await expect(call(() => store.load('a\u0000b'))).rejects.toThrow(RangeError)
        // Nothing was stored by the refused calls.
        expect(await store.load('room')).toEqual({ updates: [], firstSeq: -1, lastSeq: -1 })
        expect(await store.history('room', 10)).toEqual([])
      })

      it('deletes one room only', async () => {
        const store = await openStore()
        for (const room of ['a', 'ab', 'a:b']) {
          for (let seq = 0; seq < 3; seq++) await store.append(room, seq, [bytes(seq)])
        }
        await store.deleteDocument('a')
        expect(await store.load('a')).toEqual({ updates: [], firstSeq: -1, lastSeq: -1 })
        expect(await countRecords(store, 'a')).toBe(0)
        expect(await countRecords(store, 'ab')).toBe(3)
        expect(await countRecords(store, 'a:b')).toBe(3)
        await store.deleteDocument('never') // no-op
        await store.append('a', 0, [bytes(5)])
        expect(plain(await store.load('a'))).toEqual({ updates: [[5]], firstSeq: 0, lastSeq: 0 })
      })

      it('deletes a document only, keeping the room record and history', async () => {
        const store = await openStore()
        await store.putRoom(roomRecord('a'))
        await store.append('a', 0, [bytes(1)], [write('ada', 1)])
        await store.deleteDocument('a')
        expect(await store.load('a')).toEqual({ updates: [], firstSeq: -1, lastSeq: -1 })
        expect(await store.getRoom('a')).toEqual(roomRecord('a'))
        expect(await store.history('a', 10)).toEqual([write('ada', 1)])
      })

      it('loads the same Yjs document after compacting 1,000 small updates', async () => {
        const store = await openStore()
        const random = mulberry32(0x7a4d)
        const source = new Y.Doc()
        const text = source.getText('text')
        const map = source.getMap<number>('map')
        const updates: Uint8Array[] = []
        source.on('update', (update: Uint8Array) => updates.push(update))
        while (updates.length < 1000) {
          const r = random()
          if (r < 0.6 || text.length === 0) text.insert(Math.floor(random() * (text.length + 1)), 'xyz'.charAt(Math.floor(random() * 3)))
          else if (r < 0.8) text.delete(Math.floor(random() * text.length), 1)
          else map.set(`k${Math.floor(random() * 20)}`, Math.floor(random() * 1000))
        }
        for (const [seq, update] of updates.entries()) await store.append('doc', seq, [update])

        const before = await store.load('doc')
        expect(before.updates).toHaveLength(1000)
        const fromLog = docFrom(before.updates)
        expect(content(fromLog)).toEqual(content(source))

        await store.compact('doc', before.firstSeq, before.lastSeq, Y.encodeStateAsUpdate(fromLog))
        expect(await countRecords(store, 'doc')).toBe(1)
        const after = await store.load('doc')
        expect(after.firstSeq).toBe(999)
        expect(after.lastSeq).toBe(999)
        const fromCompacted = docFrom(after.updates)
        expect(content(fromCompacted)).toEqual(content(fromLog))
        expect(Y.encodeStateAsUpdate(fromCompacted)).toEqual(Y.encodeStateAsUpdate(fromLog))
      })
    })

    describe('room records', () => {
      /** Ids in code point (UTF-8 byte) order; UTF-16 order would put the emoji before U+FFFD. */
      const SORTED = [' ', 'A', 'a', 'a/1', 'a/10', 'a/2', 'ab', 'b', 'é', '\uFFFD', '\u{1F600}']
      const ids = (rooms: RoomRecord[]): string[] => rooms.map((r) => r.id)
      const withRooms = async (): Promise<Store> => {
        const store = await openStore()
        for (const id of [...SORTED].reverse()) await store.putRoom(roomRecord(id))
        return store
      }

      it('gets null for an unknown room, and a stored record whole', async () => {
        const store = await openStore()
        expect(await store.getRoom('never')).toBeNull()
        await store.putRoom(roomRecord('r'))
        expect(await store.getRoom('r')).toEqual(roomRecord('r'))
        expect(await store.getRoom('r2')).toBeNull()
      })

      it('replaces a record put again', async () => {
        const store = await openStore()
        await store.putRoom(roomRecord('r'))
        const changed = { ...roomRecord('r', '2024-02-02T00:00:00.000Z'), defaultAccesses: [], metadata: { title: 'renamed' } }
        await store.putRoom(changed)
        expect(await store.getRoom('r')).toEqual(changed)
        expect(await store.listRooms({ limit: 10 })).toEqual([changed])
      })

      it('lists rooms in id order, a limit at a time', async () => {
        const store = await withRooms()
        expect(ids(await store.listRooms({ limit: 100 }))).toEqual(SORTED)
        expect(await store.listRooms({ limit: 100 })).toEqual(SORTED.map((id) => roomRecord(id)))
        expect(ids(await store.listRooms({ limit: 3 }))).toEqual(SORTED.slice(0, 3))
        expect(ids(await store.listRooms({ limit: 1 }))).toEqual(SORTED.slice(0, 1))
        expect(await (await openStore()).listRooms({ limit: 10 })).toEqual([])
      })

      it('pages through every room with startingAfter, each once', async () => {
        const store = await withRooms()
        const seen: string[] = []
        let page = await store.listRooms({ limit: 2 })
        while (page.length > 0) {
          expect(page.length).toBeLessThanOrEqual(2)
          seen.push(...ids(page))
          page = await store.listRooms({ limit: 2, startingAfter: page[page.length - 1]!.id })
        }
        expect(seen).toEqual(SORTED)
        // A cursor need not be a stored id: the page starts at the next id after it.
        expect(ids(await store.listRooms({ limit: 3, startingAfter: 'a/0' }))).toEqual(['a/1', 'a/10', 'a/2'])
        expect(ids(await store.listRooms({ limit: 2, startingAfter: 'é' }))).toEqual(['\uFFFD', '\u{1F600}'])
        expect(await store.listRooms({ limit: 2, startingAfter: '\u{1F600}' })).toEqual([])
      })

      it('lists only rooms whose id starts with the prefix, paginated within it', async () => {
        const store = await withRooms()
        expect(ids(await store.listRooms({ prefix: 'a', limit: 100 }))).toEqual(['a', 'a/1', 'a/10', 'a/2', 'ab'])
        expect(ids(await store.listRooms({ prefix: 'a/', limit: 100 }))).toEqual(['a/1', 'a/10', 'a/2'])
        expect(ids(await store.listRooms({ prefix: 'a/', limit: 2 }))).toEqual(['a/1', 'a/10'])
        expect(ids(await store.listRooms({ prefix: 'a/', limit: 2, startingAfter: 'a/10' }))).toEqual(['a/2'])
        expect(await store.listRooms({ prefix: 'a/', limit: 2, startingAfter: 'a/2' })).toEqual([])
        // A cursor before the prefix starts at the prefix; one past it lists nothing.
        expect(ids(await store.listRooms({ prefix: 'a/', limit: 100, startingAfter: 'A' }))).toEqual(['a/1', 'a/10', 'a/2'])
        expect(await store.listRooms({ prefix: 'a/', limit: 100, startingAfter: 'b' })).toEqual([])
        expect(ids(await store.listRooms({ prefix: '', limit: 100 }))).toEqual(SORTED)
        expect(ids(await store.listRooms({ prefix: 'é', limit: 100 }))).toEqual(['é'])
        expect(await store.listRooms({ prefix: 'zz', limit: 100 })).toEqual([])
        expect(await store.listRooms({ prefix: 'a/1/', limit: 100 })).toEqual([])
      })

      it('counts rooms by prefix, up to a bound', async () => {
        const store = await withRooms()
        expect(await store.countRooms('', 100)).toBe(SORTED.length)
        expect(await store.countRooms('a', 100)).toBe(5)
        expect(await store.countRooms('a', 5)).toBe(5)
        expect(await store.countRooms('a', 3)).toBe(3)
        expect(await store.countRooms('a', 1)).toBe(1)
        expect(await store.countRooms('a', 0)).toBe(0)
        expect(await store.countRooms('a/', 100)).toBe(3)
        expect(await store.countRooms('zz', 100)).toBe(0)
        expect(await (await openStore()).countRooms('', 100)).toBe(0)
      })

      it('deletes a room’s record, document and history together, and no other room’s', async () => {
        const store = await openStore()
        for (const id of ['a', 'ab', 'a:b']) {
          await store.putRoom(roomRecord(id))
          await store.append(id, 0, [bytes(1), bytes(2)], [write('ada', 1)])
          await store.append(id, 2, [bytes(3)], [write('bob', 2)])
        }
        await store.compact('a', 0, 1, bytes(1, 2))
        await store.deleteRoom('a')
        expect(await store.getRoom('a')).toBeNull()
        expect(await store.load('a')).toEqual({ updates: [], firstSeq: -1, lastSeq: -1 })
        expect(await store.history('a', 10)).toEqual([])
        expect(ids(await store.listRooms({ limit: 10 }))).toEqual(['a:b', 'ab'])
        expect(await store.countRooms('a', 10)).toBe(2)
        for (const id of ['ab', 'a:b']) {
          expect(await store.getRoom(id)).toEqual(roomRecord(id))
          expect(await countRecords(store, id)).toBe(3)
          expect(await store.history(id, 10)).toEqual([write('bob', 2), write('ada', 1)])
        }
        await store.deleteRoom('never') // no-op

        // The id can be used again, from nothing.
        await store.append('a', 0, [bytes(7)])
        expect(plain(await store.load('a'))).toEqual({ updates: [[7]], firstSeq: 0, lastSeq: 0 })
        expect(await store.history('a', 10)).toEqual([])
      })
    })

    describe('history', () => {
      it('is empty for a room without writes', async () => {
        const store = await openStore()
        expect(await store.history('never', 10)).toEqual([])
        await store.append('plain', 0, [bytes(1)])
        expect(await store.history('plain', 10)).toEqual([])
      })

      it('lists entries newest first: by batch, and within a batch last entry first', async () => {
        const store = await openStore()
        await store.append('doc', 0, [bytes(0)], [write('ada', 1), write('bob', 2, [5, 6])])
        await store.append('doc', 1, [bytes(1)], [])
        await store.append('doc', 255, [bytes(2), bytes(3)], [write('carl', 3)])
        await store.append('doc', 257, [bytes(4)], [write('dan', 4), write('eve', 5)])
        const all = [write('eve', 5), write('dan', 4), write('carl', 3), write('bob', 2, [5, 6]), write('ada', 1)]
        expect(await store.history('doc', 100)).toEqual(all)
        expect(await store.history('doc', 5)).toEqual(all)
        expect(await store.history('doc', 2)).toEqual(all.slice(0, 2))
        expect(await store.history('doc', 1)).toEqual(all.slice(0, 1))
        expect(await store.history('doc', 0)).toEqual([])
      })

      it('keeps every kind of actor as written', async () => {
        const store = await openStore()
        const entries: WriteRecord[] = [
          { actor: { kind: 'user', userId: 'ada', sessionId: 's1', tenantId: 't' }, at: 1, writes: 3, bytes: 120, clientIDs: [1, 2] },
          { actor: { kind: 'anonymous', sessionId: 's2' }, at: 2, writes: 1, bytes: 9, clientIDs: [] },
          { actor: { kind: 'service', name: 'importer' }, at: 3, writes: 2, bytes: 50, clientIDs: [4_294_967_295] },
        ]
        await store.append('doc', 0, [bytes(1)], entries)
        expect(await store.history('doc', 10)).toEqual([...entries].reverse())
      })

      it('keeps rooms’ histories apart, and outlives compaction', async () => {
        const store = await openStore()
        for (const [i, id] of ['a', 'ab', 'a:b'].entries()) await store.append(id, 0, [bytes(i), bytes(i)], [write(id, i)])
        await store.append('a', 2, [bytes(9)], [write('a', 9)])
        await store.compact('a', 0, 2, bytes(0, 9))
        expect(await store.history('a', 10)).toEqual([write('a', 9), write('a', 0)])
        expect(await store.history('ab', 10)).toEqual([write('ab', 1)])
        expect(await store.history('a:b', 10)).toEqual([write('a:b', 2)])
      })
    })

    describe('revocations', () => {
      it('is 0 for a user never revoked', async () => {
        const store = await openStore()
        expect(await store.revokedAt('ada', 'r')).toBe(0)
      })

      it('applies a room revocation to that room only, and an everywhere one to every room', async () => {
        const store = await openStore()
        await store.revoke('ada', 'r1', 1_000)
        expect(await store.revokedAt('ada', 'r1')).toBe(1_000)
        expect(await store.revokedAt('ada', 'r2')).toBe(0)
        expect(await store.revokedAt('adam', 'r1')).toBe(0)
        expect(await store.revokedAt('ad', 'r1')).toBe(0)

        await store.revoke('ada', null, 500)
        expect(await store.revokedAt('ada', 'r1')).toBe(1_000) // the later of the two
        expect(await store.revokedAt('ada', 'r2')).toBe(500)
        await store.revoke('ada', null, 2_000)
        expect(await store.revokedAt('ada', 'r1')).toBe(2_000)
        await store.revoke('ada', 'r1', 3_000) // a later revocation replaces the earlier
        expect(await store.revokedAt('ada', 'r1')).toBe(3_000)
        expect(await store.revokedAt('bob', 'r1')).toBe(0)
      })

      it('reinstates one revocation at a time, saying whether there was one', async () => {
        const store = await openStore()
        await store.revoke('ada', 'r1', 1_000)
        await store.revoke('ada', null, 500)
        await store.revoke('bob', 'r1', 700)

        expect(await store.reinstate('ada', 'r1')).toBe(true)
        expect(await store.revokedAt('ada', 'r1')).toBe(500)
        expect(await store.reinstate('ada', 'r1')).toBe(false)
        expect(await store.reinstate('ada', 'r2')).toBe(false)

        expect(await store.reinstate('ada', null)).toBe(true)
        expect(await store.revokedAt('ada', 'r1')).toBe(0)
        expect(await store.revokedAt('ada', 'r2')).toBe(0)
        expect(await store.reinstate('ada', null)).toBe(false)

        expect(await store.revokedAt('bob', 'r1')).toBe(700)
        expect(await store.reinstate('carl', null)).toBe(false)

        await store.revoke('ada', 'r1', 4_000) // revocable again
        expect(await store.revokedAt('ada', 'r1')).toBe(4_000)
      })

      it('keeps a room’s revocations when the room is deleted', async () => {
        const store = await openStore()
        await store.putRoom(roomRecord('r'))
        await store.revoke('ada', 'r', 1_000)
        await store.deleteRoom('r')
        expect(await store.revokedAt('ada', 'r')).toBe(1_000)
      })
    })

    describe('copies, not aliases', () => {
      it('keeps update bytes as they were when stored, whatever the caller does to them', async () => {
        const store = await openStore()
        const appended = bytes(1, 2, 3)
        await store.append('room', 0, [appended])
        appended.fill(0)
        const loaded = await store.load('room')
        expect(plain(loaded)).toEqual({ updates: [[1, 2, 3]], firstSeq: 0, lastSeq: 0 })
        loaded.updates[0]!.fill(9)
        loaded.updates.push(bytes(4))
        expect(plain(await store.load('room'))).toEqual({ updates: [[1, 2, 3]], firstSeq: 0, lastSeq: 0 })

        const merged = bytes(7, 7)
        await store.compact('room', 0, 0, merged)
        merged.fill(0)
        expect(plain(await store.load('room'))).toEqual({ updates: [[7, 7]], firstSeq: 0, lastSeq: 0 })
      })

      it('keeps room records as they were when stored', async () => {
        const store = await openStore()
        const record = roomRecord('r')
        await store.putRoom(record)
        scribble(record)
        expect(await store.getRoom('r')).toEqual(roomRecord('r'))

        const got = await store.getRoom('r')
        scribble(got)
        expect(await store.getRoom('r')).toEqual(roomRecord('r'))

        const [listed] = await store.listRooms({ limit: 1 })
        scribble(listed)
        expect(await store.listRooms({ limit: 1 })).toEqual([roomRecord('r')])
        expect(await store.getRoom('r')).toEqual(roomRecord('r'))
      })

      it('keeps history entries as they were when stored', async () => {
        const store = await openStore()
        const entry = write('ada', 1, [1, 2])
        await store.append('r', 0, [bytes(1)], [entry])
        scribble(entry)
        expect(await store.history('r', 10)).toEqual([write('ada', 1, [1, 2])])

        const [got] = await store.history('r', 10)
        scribble(got)
        expect(await store.history('r', 10)).toEqual([write('ada', 1, [1, 2])])
      })
    })

    describe('lifecycle', () => {
      it('is healthy when opened', async () => {
        const store = await openStore()
        expect(store.health()).toBe('ok')
      })

      it('closes idempotently, and refuses every call once closed', async () => {
        const store = await openStore()
        await store.append('r', 0, [bytes(1)])
        await store.close()
        await store.close() // idempotent
        const call = (run: () => Promise<unknown>): Promise<unknown> => (async () => run())()
        await expect(call(() => store.load('r'))).rejects.toThrow()
        await expect(call(() => store.append('r', 1, [bytes(2)]))).rejects.toThrow()
        await expect(call(() => store.compact('r', 0, 0, bytes(1)))).rejects.toThrow()
        await expect(call(() => store.deleteDocument('r'))).rejects.toThrow()
        await expect(call(() => store.getRoom('r'))).rejects.toThrow()
        await expect(call(() => store.putRoom(roomRecord('r')))).rejects.toThrow()
        await expect(call(() => store.deleteRoom('r'))).rejects.toThrow()
        await expect(call(() => store.listRooms({ limit: 10 }))).rejects.toThrow()
        await expect(call(() => store.countRooms('', 10))).rejects.toThrow()
        await expect(call(() => store.history('r', 10))).rejects.toThrow()
        await expect(call(() => store.revoke('ada', null, 1))).rejects.toThrow()
        await expect(call(() => store.revokedAt('ada', 'r'))).rejects.toThrow()
        await expect(call(() => store.reinstate('ada', null))).rejects.toThrow()
      })
    })
  })
}

storeContract('LevelDB', (dir) => openLevelStore(dir(), LEVEL_OPTIONS))
storeContract('in memory', async () => new MemoryStore())
storeContract('FaultyStore over LevelDB, no faults', async (dir) => {
  const at = dir()
  return new FaultyStore(await openLevelStore(at, LEVEL_OPTIONS), at)
})

const database = testDatabase()
storeContract('PostgreSQL', async () => openPostgresStore(await (await database()).schema()))

describe('MemoryStore', () => {
  it('shares nothing between two stores', async () => {
    const first = createMemoryStore()
    const second = createMemoryStore()
    expect(first).toBeInstanceOf(MemoryStore)
    await first.append('r', 0, [bytes(1)], [write('ada', 1)])
    await first.putRoom(roomRecord('r'))
    await first.revoke('ada', null, 1_000)
    expect(await second.load('r')).toEqual({ updates: [], firstSeq: -1, lastSeq: -1 })
    expect(await second.getRoom('r')).toBeNull()
    expect(await second.history('r', 10)).toEqual([])
    expect(await second.revokedAt('ada', 'r')).toBe(0)
    await first.close()
    await second.close()
  })
})

describe('LevelDB store', () => {
  let dir: string
  beforeEach(() => {
    dir = tempDir()
  })
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('keeps data across close and reopen', async () => {
    const first = await openLevelStore(dir)
    await first.append('room', 0, [bytes(1)])
    await first.append('room', 1, [bytes(2)])
    await first.compact('room', 0, 1, bytes(1, 2))
    await first.append('room', 2, [bytes(3)])
    await first.close()
    await first.close() // idempotent

    const second = await openLevelStore(dir)
    try {
      expect(plain(await second.load('room'))).toEqual({ updates: [[1, 2], [3]], firstSeq: 1, lastSeq: 2 })
    } finally {
      await second.close()
    }
  })

  it('keeps room records, history and revocations across close and reopen', async () => {
    const first = await openLevelStore(dir, LEVEL_OPTIONS)
    await first.putRoom(roomRecord('r'))
    await first.append('r', 0, [bytes(1)], [write('ada', 1)])
    await first.revoke('ada', 'r', 1_000)
    await first.close()

    const second = await openLevelStore(dir, LEVEL_OPTIONS)
    try {
      expect(await second.getRoom('r')).toEqual(roomRecord('r'))
      expect(await second.history('r', 10)).toEqual([write('ada', 1)])
      expect(await second.revokedAt('ada', 'r')).toBe(1_000)
    } finally {
      await second.close()
    }
  })

  it('stores the appends of several rooms that wait for the end of the turn when closed in that turn', async () => {
    const first = await openLevelStore(dir, LEVEL_OPTIONS)
    const appended = Promise.all([first.append('a', 0, [bytes(1)], [write('ada', 1)]), first.append('b', 0, [bytes(2)])])
    await first.close()
    await appended

    const second = await openLevelStore(dir, LEVEL_OPTIONS)
    try {
      expect(plain(await second.load('a'))).toEqual({ updates: [[1]], firstSeq: 0, lastSeq: 0 })
      expect(plain(await second.load('b'))).toEqual({ updates: [[2]], firstSeq: 0, lastSeq: 0 })
      expect(await second.history('a', 10)).toEqual([write('ada', 1)])
    } finally {
      await second.close()
    }
  })

  it('refuses a second store on a data dir in use, and opens once it is free', async () => {
    const first = await openLevelStore(dir)
    const second = openLevelStore(dir)
    await expect(second).rejects.toBeInstanceOf(DataDirInUseError)
    await expect(second).rejects.toMatchObject({ code: 'DATA_DIR_IN_USE' })
    await first.close()
    const third = await openLevelStore(dir)
    await third.close()
  })

  it('creates a missing data dir', async () => {
    const nested = path.join(dir, 'deep', 'data')
    const store = await openLevelStore(nested, { sync: true })
    await store.append('room', 0, [bytes(1)])
    expect(fs.existsSync(nested)).toBe(true)
    await store.close()
  })

  it('refuses a data dir written by another schema version', async () => {
    const { Level } = await import('level')
    const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' })
    await db.put(bytes(0x01, 0x56), bytes(2))
    await db.close()
    await expect(openLevelStore(dir)).rejects.toThrow(/schema version/)
    // The refused open released the lock.
    await expect(openLevelStore(dir)).rejects.not.toBeInstanceOf(DataDirInUseError)
  })
})

describe('store keys', () => {
  it('orders a room’s keys by sequence number (big-endian)', () => {
    const seqs = [0, 1, 255, 256, 65535, 65536, 2 ** 24, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER]
    const keys = seqs.map((seq) => recordKey('room', seq))
    const sorted = [...keys].sort(compareBytes)
    expect(sorted.map(decodeSeq)).toEqual(seqs)
  })

  it('decodes what it encodes, and rejects what is not a sequence number', () => {
    for (const seq of [0, 7, 300, 70000, Number.MAX_SAFE_INTEGER]) expect(decodeSeq(recordKey('r', seq))).toBe(seq)
    expect(() => recordKey('r', -1)).toThrow(RangeError)
    expect(() => recordKey('r', 1.5)).toThrow(RangeError)
    expect(() => recordKey('r', 2 ** 53)).toThrow(RangeError)
    expect(() => recordKey('a\u0000b', 0)).toThrow(RangeError)
    expect(() => decodeSeq(bytes(0x01, 0x56))).toThrow(RangeError)
  })

  it('builds a run of record keys (compaction) equal to the keys built one by one', () => {
    const from = 2 ** 32 - 2
    expect(recordKeys('é-room', from, from + 4).map((k) => Array.from(k))).toEqual([0, 1, 2, 3].map((i) => Array.from(recordKey('é-room', from + i))))
    expect(recordKeys('r', 5, 5)).toEqual([])
  })

  it('gives each room a range holding exactly its own keys', () => {
    const range = roomRange('a')
    for (const seq of [0, 255, 65536, Number.MAX_SAFE_INTEGER]) expect(inRange(recordKey('a', seq), range)).toBe(true)
    for (const other of ['ab', 'a:b', 'a\u0001', 'a\u007f', 'b', '`', 'A', 'é']) {
      for (const seq of [0, Number.MAX_SAFE_INTEGER]) expect(inRange(recordKey(other, seq), range)).toBe(false)
    }
    expect(inRange(recordKey('a', 0), roomRange('ab'))).toBe(false)
  })

  it('validates room ids', () => {
    for (const id of ['a', 'room-1', 'a:b', 'é', '\u{1F600}', 'x'.repeat(256), ' ']) expect(isValidRoomId(id)).toBe(true)
    for (const id of ['', 'x'.repeat(257), 'a\u0000', 'a\u0001b', '\n', 'a\u001f', 'a\u007f', 'a\u0085', '\u0080', 'a\u009f'])
      expect(isValidRoomId(id)).toBe(false)
  })
})
