/**
 * The room's stored log (RoomLog) on an in-memory store and a clock moved by hand: group commit,
 * the store window, acknowledgements per writer in order (refused and empty writes included),
 * history entries per writer and batch, flush(), retries with backoff on a failing store,
 * compaction on close and when the log grows long, and a closing log giving up after its deadline.
 * Nothing here sleeps: the test waits on promises and on the fake clock it advances.
 */

import type { FastifyBaseLogger } from 'fastify'
import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import type { Actor } from '../protocol/actor.ts'
import { Metrics } from '../server/metrics.ts'
import { MAX_MERGE } from '../server/rooms/merge.ts'
import { RoomLog, type Writer } from '../server/rooms/room-log.ts'
import { FakeClock, settle } from './support/fake-clock.ts'
import { ScriptedStore } from './support/scripted-store.ts'

const ROOM = 'room'

class FakeWriter implements Writer {
  readonly actor: Actor
  /** Every acknowledgement, in order. */
  readonly acks: number[] = []
  delayed = 0
  constructor(name: string) {
    this.actor = { kind: 'service', name }
  }
  acknowledge(count: number): void {
    this.acks.push(count)
  }
  writeDelayed(): void {
    this.delayed++
  }
  get saved(): number {
    return this.acks.reduce((a, b) => a + b, 0)
  }
}

interface LogLine {
  readonly obj: Record<string, unknown>
  readonly msg: string
}

/** A logger that keeps its error lines. */
const recordingLogger = (): { log: FastifyBaseLogger; errors: LogLine[] } => {
  const errors: LogLine[] = []
  const noop = (): void => {}
  const log = {
    level: 'info',
    error: (obj: Record<string, unknown>, msg: string) => errors.push({ obj, msg }),
    fatal: noop,
    warn: noop,
    info: noop,
    debug: noop,
    trace: noop,
    silent: noop,
    child: () => log,
  }
  return { log: log as unknown as FastifyBaseLogger, errors }
}

/** A promise's state, read without waiting on it. */
const track = <T>(promise: Promise<T>): { readonly done: boolean } => {
  const state = { done: false }
  void promise.then(() => {
    state.done = true
  })
  return state
}

interface SetupOptions {
  storeWindowMs?: number
  compactAfterRecords?: number
  stored?: { firstSeq: number; lastSeq: number }
  store?: ScriptedStore
}

const setup = (options: SetupOptions = {}) => {
  const store = options.store ?? new ScriptedStore()
  const clock = new FakeClock()
  const metrics = new Metrics()
  const { log, errors } = recordingLogger()
  // The room's doc: what a compaction snapshots.
  const doc = new Y.Doc()
  const compacted: number[] = []
  const roomLog = new RoomLog(
    ROOM,
    doc,
    options.stored ?? { firstSeq: -1, lastSeq: -1 },
    { store, metrics, log, compactAfterRecords: options.compactAfterRecords ?? 1_000, storeWindowMs: options.storeWindowMs ?? 0, clock },
    (bytes) => compacted.push(bytes),
  )
  let made = 0
  /**
   * An update setting the key `key` of the map 'm', by a new client (so each update stands alone
   * and a batch's content can be read from it), applied to the room's doc as the room would.
   */
  const edit = (key = `k${made}`): Uint8Array => {
    made++
    const editor = new Y.Doc()
    editor.getMap('m').set(key, made)
    const update = Y.encodeStateAsUpdate(editor)
    Y.applyUpdate(doc, update)
    return update
  }
  /** The keys a list of stored records sets, sorted and joined. */
  const textOf = (records: readonly Uint8Array[]): string => {
    const d = new Y.Doc()
    for (const r of records) Y.applyUpdate(d, r)
    return [...d.getMap('m').keys()].sort().join('')
  }
  return { store, clock, metrics, errors, doc, compacted, log: roomLog, edit, textOf }
}

describe('group commit', () => {
  it('writes of one turn go out in one append, merged into one record', async () => {
    const { store, log, edit, textOf } = setup()
    const [a, b] = [new FakeWriter('a'), new FakeWriter('b')]
    log.append(edit('1'), a, [])
    log.append(edit('2'), b, [])
    log.append(edit('3'), a, [])
    expect(store.appends).toHaveLength(0) // nothing before the turn ends
    await settle()
    expect(store.appends).toHaveLength(1)
    expect(store.appends[0]!.firstSeq).toBe(0)
    expect(store.appends[0]!.updates).toHaveLength(1)
    expect(textOf(store.appends[0]!.updates)).toBe('123')
    expect(a.acks).toEqual([2])
    expect(b.acks).toEqual([1])
    expect(log.records).toBe(1)
  })

  it('writes made while an append is in flight go out together in the next', async () => {
    const { store, log, edit, textOf } = setup()
    store.hold = true
    const [a, b] = [new FakeWriter('a'), new FakeWriter('b')]
    log.append(edit('1'), a, [])
    await settle()
    expect(store.heldCount).toBe(1)
    log.append(edit('2'), a, [])
    log.append(edit('3'), b, [])
    await settle()
    expect(store.appends).toHaveLength(1) // they wait for the one in flight
    expect(a.acks).toEqual([]) // nothing acknowledged before it is stored
    store.release()
    await settle()
    expect(a.acks).toEqual([1])
    expect(store.appends).toHaveLength(2)
    expect(store.appends[1]!.firstSeq).toBe(1)
    expect(store.appends[1]!.updates).toHaveLength(1)
    expect(textOf(store.appends[1]!.updates)).toBe('23')
    expect(b.acks).toEqual([])
    store.release()
    await settle()
    expect(a.acks).toEqual([1, 1])
    expect(b.acks).toEqual([1])
    expect(store.appends).toHaveLength(2)
    expect(log.records).toBe(2)
  })

  it(`a batch of more than MAX_MERGE (${MAX_MERGE}) updates is stored as several records of one append`, async () => {
    const { store, log, edit, textOf } = setup()
    const a = new FakeWriter('a')
    const keys = Array.from({ length: MAX_MERGE + 1 }, (_, i) => `key${String(i).padStart(3, '0')}`)
    for (const key of keys) log.append(edit(key), a, [])
    await settle()
    expect(store.appends).toHaveLength(1)
    expect(store.appends[0]!.updates).toHaveLength(2)
    expect(textOf(store.records(ROOM))).toBe(keys.join(''))
    expect(log.records).toBe(2)
    log.append(edit(), a, [])
    await settle()
    expect(store.appends[1]!.firstSeq).toBe(2)
    expect(a.acks).toEqual([MAX_MERGE + 1, 1])
  })
})

describe('store window', () => {
  it('stores the first write after a pause at once, later ones at most once per window', async () => {
    const { store, clock, log, edit, textOf } = setup({ storeWindowMs: 100 })
    const a = new FakeWriter('a')
    log.append(edit('1'), a, [])
    await settle()
    expect(store.appends).toHaveLength(1) // the first write: at once
    expect(clock.pending).toBe(0)

    await clock.advance(10)
    log.append(edit('2'), a, [])
    await settle()
    expect(store.appends).toHaveLength(1)
    expect(clock.delays).toEqual([90]) // the rest of the window
    await clock.advance(89)
    expect(store.appends).toHaveLength(1)
    await clock.advance(1)
    expect(store.appends).toHaveLength(2)
    expect(store.appends[1]!.writes[0]!.at).toBe(clock.wallOffset + 1_100)

    // Writes right after an append wait a whole window, and share one append.
    log.append(edit('3'), a, [])
    await clock.advance(50)
    log.append(edit('4'), a, [])
    await clock.advance(49)
    expect(store.appends).toHaveLength(2)
    await clock.advance(1)
    expect(store.appends).toHaveLength(3)
    expect(textOf(store.appends[2]!.updates)).toBe('34')
    expect(a.acks).toEqual([1, 1, 2])

    // After a pause longer than the window: at once again.
    await clock.advance(1_000)
    log.append(edit('5'), a, [])
    await settle()
    expect(store.appends).toHaveLength(4)
    expect(clock.pending).toBe(0)
  })

  it('a flush, or the log closing, does not wait out the window', async () => {
    const { store, clock, log, edit } = setup({ storeWindowMs: 1_000 })
    const a = new FakeWriter('a')
    log.append(edit(), a, [])
    await settle()
    log.append(edit(), a, [])
    await settle()
    expect(clock.pending).toBe(1)
    const flushed = track(log.flush())
    await settle()
    expect(store.appends).toHaveLength(2)
    expect(flushed.done).toBe(true)
    expect(clock.pending).toBe(0) // the window's timer was cleared

    log.append(edit(), a, [])
    await settle()
    expect(store.appends).toHaveLength(2)
    log.closing()
    await settle()
    expect(store.appends).toHaveLength(3)
    // Closing: no more windows.
    log.append(edit(), a, [])
    await settle()
    expect(store.appends).toHaveLength(4)
    expect(a.acks).toEqual([1, 1, 1, 1])
  })

  it('a flush just as the loop starts waiting for the window is not lost, whatever the microtask it runs in', async () => {
    for (let depth = 0; depth < 40; depth++) {
      const { store, log, edit } = setup({ storeWindowMs: 1_000 })
      const a = new FakeWriter('a')
      store.hold = true
      log.append(edit('1'), a, [])
      await settle()
      log.append(edit('2'), a, []) // queued behind the held append, then waits for the window
      store.release()
      let flushed: { readonly done: boolean } | null = null
      const later = (n: number): void => {
        if (n === 0) flushed = track(log.flush())
        else queueMicrotask(() => later(n - 1))
      }
      later(depth)
      await settle()
      store.release()
      await settle()
      expect({ depth, done: flushed!.done, saved: a.saved }).toEqual({ depth, done: true, saved: 2 })
    }
  })

  it('reads no monotonic clock without a window, and the wall clock once per append', async () => {
    const { store, clock, log, edit } = setup({ storeWindowMs: 0 })
    const a = new FakeWriter('a')
    store.hold = true
    for (let batch = 0; batch < 4; batch++) {
      for (let i = 0; i < 5; i++) log.append(edit(), a, [])
      log.append(null, a, [])
      await settle()
      store.release()
    }
    await settle()
    store.release()
    await settle()
    expect(a.saved).toBe(24)
    expect(clock.nowReads).toBe(0)
    expect(clock.wallReads).toBe(store.appends.length)
  })
})

describe('acknowledgements', () => {
  it('each writer is acknowledged its count in order, refused and empty writes included', async () => {
    const { store, log, edit } = setup()
    store.hold = true
    const [a, b] = [new FakeWriter('a'), new FakeWriter('b')]
    log.append(edit(), a, [])
    await settle()
    log.append(null, a, [])
    log.append(null, b, [])
    log.append(edit(), a, [])
    await settle()
    expect(a.acks).toEqual([])
    store.release()
    await settle()
    expect(a.acks).toEqual([1])
    expect(b.acks).toEqual([]) // its refused write is counted with the batch it joined
    store.release()
    await settle()
    expect(a.acks).toEqual([1, 2])
    expect(b.acks).toEqual([1])
    expect(store.appends).toHaveLength(2)
  })

  it('a batch of writes that store nothing is acknowledged without a store append', async () => {
    const { store, log } = setup()
    const [a, b] = [new FakeWriter('a'), new FakeWriter('b')]
    log.append(null, a, [])
    log.append(null, b, [])
    log.append(null, a, [])
    await settle()
    expect(store.appends).toHaveLength(0)
    expect(a.acks).toEqual([2])
    expect(b.acks).toEqual([1])
    expect(log.records).toBe(0)
  })

  it('refused writes behind a stored one are not acknowledged before it', async () => {
    const { store, log, edit } = setup()
    store.hold = true
    const a = new FakeWriter('a')
    log.append(edit(), a, [])
    log.append(null, a, [])
    await settle()
    expect(a.acks).toEqual([])
    store.release()
    await settle()
    expect(a.acks).toEqual([2])
  })
})

describe('history', () => {
  it('has one entry per writer and batch: its writes, bytes and clientIDs, at the wall time', async () => {
    const { store, clock, log, edit } = setup()
    const [a, b, reader] = [new FakeWriter('a'), new FakeWriter('b'), new FakeWriter('reader')]
    const [u1, u2, u3] = [edit('one'), edit('two'), edit('three')]
    log.append(u1, a, [10])
    log.append(u3, b, [12])
    log.append(u2, a, [11, 10])
    log.append(null, reader, [])
    await settle()
    const at = clock.wallOffset + clock.time
    expect(store.appends[0]!.writes).toEqual([
      { actor: a.actor, at, writes: 2, bytes: u1.length + u2.length, clientIDs: [10, 11] },
      { actor: b.actor, at, writes: 1, bytes: u3.length, clientIDs: [12] },
    ])
    expect(reader.acks).toEqual([1]) // acknowledged, but it wrote nothing to the history

    await clock.advance(5_000)
    const u4 = edit('four')
    log.append(u4, a, [10])
    await settle()
    expect(store.appends[1]!.writes).toEqual([{ actor: a.actor, at: at + 5_000, writes: 1, bytes: u4.length, clientIDs: [10] }])
  })

  it('a writer whose only writes in a batch stored nothing has no entry in it', async () => {
    const { store, log, edit } = setup()
    const [a, b] = [new FakeWriter('a'), new FakeWriter('b')]
    log.append(null, a, [])
    log.append(edit(), b, [3])
    await settle()
    expect(store.appends[0]!.writes.map((w) => w.actor)).toEqual([b.actor])
    expect(a.acks).toEqual([1])
  })
})

describe('flush', () => {
  it('resolves once the writes counted before it are stored, not the ones after', async () => {
    const { store, log, edit } = setup()
    store.hold = true
    const a = new FakeWriter('a')
    log.append(edit(), a, [])
    await settle()
    const first = track(log.flush())
    log.append(edit(), a, [])
    const second = track(log.flush())
    await settle()
    expect(first.done).toBe(false)
    store.release()
    await settle()
    expect(first.done).toBe(true)
    expect(second.done).toBe(false) // its write is in the append still held
    expect(store.heldCount).toBe(1)
    store.release()
    await settle()
    expect(second.done).toBe(true)
  })

  it('resolves at once with nothing to store, and after refused writes are counted', async () => {
    const { log } = setup()
    const a = new FakeWriter('a')
    const idle = track(log.flush())
    await settle()
    expect(idle.done).toBe(true)
    log.append(null, a, [])
    const refused = track(log.flush())
    expect(refused.done).toBe(false)
    await settle()
    expect(refused.done).toBe(true)
    expect(a.acks).toEqual([1])
  })

  it('resolves on a discarded log, whose write in flight is waited for and later writes dropped', async () => {
    const { store, log, edit } = setup()
    store.hold = true
    const a = new FakeWriter('a')
    log.append(edit(), a, [])
    await settle()
    log.append(edit(), a, [])
    const flushed = track(log.flush())
    const discarded = track(log.discard())
    await settle()
    expect(flushed.done).toBe(true)
    expect(discarded.done).toBe(false)
    store.release()
    await settle()
    expect(discarded.done).toBe(true)
    expect(store.appends).toHaveLength(1)
    expect(a.acks).toEqual([1]) // the stored one; the dropped one is never said saved
    log.append(edit(), a, [])
    await settle()
    expect(store.appends).toHaveLength(1)
  })
})

describe('a failing store', () => {
  it('retries a lone write with its own bytes, though writes queued meanwhile reuse nothing of it', async () => {
    const { store, clock, log, edit, textOf } = setup()
    store.failAppends = true
    const a = new FakeWriter('a')
    log.append(edit('1'), a, [])
    await settle()
    log.append(edit('2'), a, []) // queued while the first is retried: a new buffer, not the first one's
    await clock.advance(50)
    store.failAppends = false
    await clock.advance(100)
    await settle()
    expect(store.appends.map((attempt) => textOf(attempt.updates))).toEqual(['1', '1', '1', '2'])
    expect(a.acks).toEqual([1, 1])
  })

  it('is retried with a doubling backoff up to 5 s, writers told their writes wait', async () => {
    const { store, clock, metrics, errors, log, edit, textOf } = setup()
    store.failAppends = true
    const [a, b, later] = [new FakeWriter('a'), new FakeWriter('b'), new FakeWriter('later')]
    log.append(edit('1'), a, [])
    log.append(edit('2'), b, [])
    await settle()
    expect(store.appends).toHaveLength(1)
    expect(a.delayed).toBe(1)
    expect(b.delayed).toBe(1)
    expect(metrics.storeErrors).toBe(1)
    expect(errors.map((e) => e.obj.retryInMs)).toEqual([50])

    const backoff = [50, 100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000]
    for (const [i, delay] of backoff.entries()) {
      expect(clock.delays.at(-1)).toBe(delay)
      await clock.advance(delay - 1)
      expect(store.appends).toHaveLength(i + 1)
      await clock.advance(1)
      expect(store.appends).toHaveLength(i + 2)
      if (i === 2) log.append(edit('3'), later, []) // arrives while the batch is retried
    }
    expect(a.delayed).toBe(backoff.length + 1)
    expect(later.delayed).toBe(0) // not in the failing batch
    expect(a.acks).toEqual([])
    // Every attempt was the same batch, at the same sequence number.
    for (const attempt of store.appends) {
      expect(attempt.firstSeq).toBe(0)
      expect(textOf(attempt.updates)).toBe('12')
    }

    store.failAppends = false
    await clock.advance(5_000)
    expect(a.acks).toEqual([1])
    expect(b.acks).toEqual([1])
    expect(later.acks).toEqual([1])
    expect(store.stored.map((s) => s.firstSeq)).toEqual([0, 1])
    expect(textOf(store.records(ROOM))).toBe('123')
    expect(metrics.storeErrors).toBe(backoff.length + 1)
  })

  it('a flush waits through the retries for its writes', async () => {
    const { store, clock, log, edit } = setup()
    store.failAppends = true
    log.append(edit(), new FakeWriter('a'), [])
    const flushed = track(log.flush())
    await clock.advance(1_000)
    expect(flushed.done).toBe(false)
    store.failAppends = false
    await clock.runNext()
    expect(flushed.done).toBe(true)
  })
})

describe('close', () => {
  it('compacts a multi-record log into one snapshot of the document', async () => {
    const { store, metrics, compacted, log, edit, textOf, doc } = setup()
    const a = new FakeWriter('a')
    for (const text of ['a', 'b', 'c']) {
      log.append(edit(text), a, [])
      await settle()
    }
    expect(log.records).toBe(3)
    await log.close()
    expect(store.compacts).toHaveLength(1)
    const { fromSeq, throughSeq, merged } = store.compacts[0]!
    expect([fromSeq, throughSeq]).toEqual([0, 2])
    expect(textOf([merged])).toBe('abc')
    expect(merged).toEqual(Y.encodeStateAsUpdate(doc))
    expect(compacted).toEqual([merged.length])
    expect(metrics.compactions).toBe(1)
    expect(log.records).toBe(1)
    expect(store.records(ROOM)).toHaveLength(1)
    // Closed: nothing more is stored.
    log.append(edit(), a, [])
    await settle()
    expect(store.appends).toHaveLength(3)
  })

  it('does not compact a one-record log', async () => {
    const { store, log, edit } = setup()
    log.append(edit(), new FakeWriter('a'), [])
    await log.close()
    expect(store.appends).toHaveLength(1)
    expect(store.compacts).toHaveLength(0)
  })

  it('stores the waiting writes first, without waiting out the window, then compacts', async () => {
    const { store, clock, log, edit, textOf } = setup({ storeWindowMs: 60_000 })
    const a = new FakeWriter('a')
    log.append(edit('1'), a, [])
    await settle()
    log.append(edit('2'), a, [])
    await log.close()
    expect(clock.time).toBe(1_000) // no time passed
    expect(a.acks).toEqual([1, 1])
    expect(store.compacts).toHaveLength(1)
    expect(textOf(store.records(ROOM))).toBe('12')
  })

  it('a closing log gives up after its deadline on a store that keeps failing', async () => {
    const { store, clock, errors, log, edit } = setup()
    store.failAppends = true
    const a = new FakeWriter('a')
    log.append(edit(), a, [])
    log.append(null, a, [])
    await settle()
    expect(store.appends).toHaveLength(1)
    const closed = track(log.close())
    await settle()
    expect(store.appends).toHaveLength(2) // closing ends the backoff at once
    const closingAt = clock.time

    await clock.advance(2_000)
    expect(closed.done).toBe(false)
    expect(clock.delays.slice(1).every((d) => d === 50)).toBe(true) // short retries while closing
    await clock.advance(49)
    expect(closed.done).toBe(false)
    await clock.advance(1)
    expect(closed.done).toBe(true)
    expect(clock.time - closingAt).toBe(2_050)
    expect(store.appends).toHaveLength(2 + 2_050 / 50)
    expect(a.acks).toEqual([]) // never said saved
    expect(errors.at(-1)!.obj.unstoredWrites).toBe(2)
    expect(errors.at(-1)!.msg).toMatch(/2 writes of this room were not stored/)
    expect(store.compacts).toHaveLength(0)

    // Given up: later writes and flushes do not wait on the store.
    log.append(edit(), a, [])
    await expect(log.flush()).resolves.toBeUndefined()
    await settle()
    expect(store.appends).toHaveLength(2 + 2_050 / 50)
    expect(clock.pending).toBe(0)
  })

  it('a closing log stores what it can if the store recovers before the deadline', async () => {
    const { store, clock, errors, log, edit } = setup()
    store.failAppends = true
    const a = new FakeWriter('a')
    log.append(edit(), a, [])
    await settle()
    const closed = track(log.close())
    await clock.advance(1_500)
    store.failAppends = false
    await clock.advance(50)
    expect(closed.done).toBe(true)
    expect(a.acks).toEqual([1])
    expect(errors.some((e) => e.obj.unstoredWrites !== undefined)).toBe(false)
  })
})

describe('compaction of a long log', () => {
  it('replaces the log with one snapshot once it reaches compactAfterRecords', async () => {
    const { store, log, edit, textOf } = setup({ compactAfterRecords: 3 })
    const a = new FakeWriter('a')
    for (const text of ['a', 'b']) {
      log.append(edit(text), a, [])
      await settle()
    }
    expect(store.compacts).toHaveLength(0)
    log.append(edit('c'), a, [])
    await settle()
    expect(store.compacts.map((c) => [c.fromSeq, c.throughSeq])).toEqual([[0, 2]])
    expect(log.records).toBe(1)
    log.append(edit('d'), a, [])
    await settle()
    expect(store.appends.at(-1)!.firstSeq).toBe(3)
    expect(log.records).toBe(2)
    expect(textOf(store.records(ROOM))).toBe('abcd')
  })

  it('a failed compaction leaves the log as it was, and is tried again after the next write', async () => {
    const { store, metrics, log, edit, textOf } = setup({ compactAfterRecords: 2 })
    store.failCompacts = true
    const a = new FakeWriter('a')
    for (const text of ['a', 'b']) {
      log.append(edit(text), a, [])
      await settle()
    }
    expect(store.compacts).toHaveLength(1)
    expect(metrics.storeErrors).toBe(1)
    expect(log.records).toBe(2)
    expect(a.acks).toEqual([1, 1])
    store.failCompacts = false
    log.append(edit('c'), a, [])
    await settle()
    expect(store.compacts.map((c) => [c.fromSeq, c.throughSeq, c.failed])).toEqual([
      [0, 1, true],
      [0, 2, false],
    ])
    expect(log.records).toBe(1)
    expect(textOf(store.records(ROOM))).toBe('abc')
  })

  it('a log loaded long is compacted at once', async () => {
    const store = new ScriptedStore()
    const source = new Y.Doc()
    for (let seq = 0; seq < 4; seq++) {
      const before = Y.encodeStateVector(source)
      source.getMap('m').set(String(seq), seq)
      await store.append(ROOM, seq, [Y.encodeStateAsUpdate(source, before)])
    }
    const { log, doc, textOf } = setup({ store, compactAfterRecords: 3, stored: { firstSeq: 0, lastSeq: 3 } })
    Y.applyUpdate(doc, Y.encodeStateAsUpdate(source))
    await settle()
    expect(store.compacts.map((c) => [c.fromSeq, c.throughSeq])).toEqual([[0, 3]])
    expect(log.records).toBe(1)
    expect(textOf(store.records(ROOM))).toBe('0123')
  })
})
