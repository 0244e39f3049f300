/**
 * The document store contract (run against a real LevelDB in a temp dir, reusable for any other
 * DocumentStore), LevelDB-specific behaviour (the data dir lock), and the key encoding.
 */

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import type { DocumentStore, StoredDocument } from '../server/store/types.ts'
import { DataDirInUseError, openLevelStore } from '../server/store/level-store.ts'
import { isValidRoomId } from '../protocol/ids.ts'
import { decodeSeq, recordKey, roomRange } from '../server/store/keys.ts'

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values)
/** A loaded document with its updates as number arrays, so a Buffer and a Uint8Array compare equal. */
const plain = (doc: StoredDocument): { updates: number[][]; firstSeq: number; lastSeq: number } => ({
  updates: doc.updates.map((u) => Array.from(u)),
  firstSeq: doc.firstSeq,
  lastSeq: doc.lastSeq,
})
const compareBytes = (a: Uint8Array, b: Uint8Array): number => Buffer.compare(a, b)
const inRange = (key: Uint8Array, range: { gte: Uint8Array; lt: Uint8Array }): boolean =>
  compareBytes(key, range.gte) >= 0 && compareBytes(key, range.lt) < 0

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

export function describeDocumentStoreContract(name: string, open: (dir: string) => Promise<DocumentStore>): void {
  describe(`DocumentStore contract: ${name}`, () => {
    let dir: string
    let opened: DocumentStore[]

    const openStore = async (): Promise<DocumentStore> => {
      const store = await open(dir)
      opened.push(store)
      return store
    }

    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tandem-store-'))
      opened = []
    })

    afterEach(async () => {
      for (const store of opened) await store.close()
      fs.rmSync(dir, { recursive: true, force: true })
    })

    it('loads a room never written to as an empty document', async () => {
      const store = await openStore()
      expect(await store.load('never')).toEqual({ updates: [], firstSeq: -1, lastSeq: -1 })
      expect(await store.countRecords('never')).toBe(0)
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
      expect(await store.countRecords('room')).toBe(seqs.length)
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
        expect(await store.countRecords(room)).toBe(i + 1)
      }
    })

    it('appends a batch of records under consecutive sequence numbers', async () => {
      const store = await openStore()
      await store.append('room', 0, [bytes(0)])
      await store.append('room', 1, [bytes(1), bytes(2), bytes(3)])
      expect(plain(await store.load('room'))).toEqual({ updates: [[0], [1], [2], [3]], firstSeq: 0, lastSeq: 3 })
      expect(await store.countRecords('room')).toBe(4)
    })

    it('compacts a range into one record and keeps the records around it', async () => {
      const store = await openStore()
      for (let seq = 0; seq < 10; seq++) await store.append('room', seq, [bytes(seq)])
      await store.append('other', 5, [bytes(99)])
      await store.compact('room', 2, 6, bytes(2, 3, 4, 5, 6))
      expect(await store.countRecords('room')).toBe(6)
      const doc = await store.load('room')
      expect(doc.firstSeq).toBe(0)
      expect(doc.lastSeq).toBe(9)
      expect(doc.updates.map((u) => Array.from(u))).toEqual([[0], [1], [2, 3, 4, 5, 6], [7], [8], [9]])
      expect((await store.load('other')).updates.map((u) => Array.from(u))).toEqual([[99]])

      // Compacting again from the merged record onwards, as a room does.
      await store.compact('room', 0, 9, bytes(42))
      expect(plain(await store.load('room'))).toEqual({ updates: [[42]], firstSeq: 9, lastSeq: 9 })
      expect(await store.countRecords('room')).toBe(1)
      await store.append('room', 10, [bytes(10)])
      expect((await store.load('room')).updates.map((u) => Array.from(u))).toEqual([[42], [10]])
    })

    it('keeps data across close and reopen', async () => {
      const first = await openStore()
      await first.append('room', 0, [bytes(1)])
      await first.append('room', 1, [bytes(2)])
      await first.compact('room', 0, 1, bytes(1, 2))
      await first.append('room', 2, [bytes(3)])
      await first.close()
      await first.close() // idempotent

      const second = await openStore()
      expect(plain(await second.load('room'))).toEqual({ updates: [[1, 2], [3]], firstSeq: 1, lastSeq: 2 })
    })

    it('deletes one room only', async () => {
      const store = await openStore()
      for (const room of ['a', 'ab', 'a:b']) {
        for (let seq = 0; seq < 3; seq++) await store.append(room, seq, [bytes(seq)])
      }
      await store.deleteDocument('a')
      expect(await store.load('a')).toEqual({ updates: [], firstSeq: -1, lastSeq: -1 })
      expect(await store.countRecords('a')).toBe(0)
      expect(await store.countRecords('ab')).toBe(3)
      expect(await store.countRecords('a:b')).toBe(3)
      await store.deleteDocument('never') // no-op
      await store.append('a', 0, [bytes(5)])
      expect(plain(await store.load('a'))).toEqual({ updates: [[5]], firstSeq: 0, lastSeq: 0 })
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
      expect(await store.countRecords('doc')).toBe(1)
      const after = await store.load('doc')
      expect(after.firstSeq).toBe(999)
      expect(after.lastSeq).toBe(999)
      const fromCompacted = docFrom(after.updates)
      expect(content(fromCompacted)).toEqual(content(fromLog))
      expect(Y.encodeStateAsUpdate(fromCompacted)).toEqual(Y.encodeStateAsUpdate(fromLog))
    })
  })
}

describeDocumentStoreContract('LevelDB', (dir) => openLevelStore(dir))

describe('LevelDB store', () => {
  let dir: string
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tandem-store-'))
  })
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true })
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
    for (const id of ['', 'x'.repeat(257), 'a\u0000', 'a\u0001b', '\n', 'a\u001f', 'a\u007f', 'a\u0085', '\u0080', 'a\u009f']) expect(isValidRoomId(id)).toBe(false)
  })
})
