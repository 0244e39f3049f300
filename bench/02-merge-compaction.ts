/**
 * 02 merge and compaction: a room's history of many small updates in a real LevelDB store.
 *
 * For a seeded typing history of 10k and 100k keystrokes (1k / 10k in quick mode): the time to
 * append it in batches (`store.append`, 256 records a call), the time to compact it
 * (`Y.encodeStateAsUpdate` of the doc + `store.compact`), and the time a fresh server takes to load
 * the room (`registry.acquire`) before and after compaction. After compaction a load reads one
 * record, so it should cost about the document's size, not its history's length.
 *
 * Also shows why the room merges at most 32 updates at a time: `Y.mergeUpdates` per update grows
 * with the batch size.
 */

import { cpSync } from 'node:fs'
import { join } from 'node:path'
import * as Y from 'yjs'
import { openLevelStore } from '../server/store/level-store.ts'
import { startServer } from '../test/support/server.ts'
import { countRecords } from '../test/support/store-records.ts'
import { round } from './support/stats.ts'
import { removeDir, tempDir } from './support/tandem.ts'
import { TEXT, type Trace, typingTrace } from './support/workload.ts'
import { type BenchOptions, type Result, type Scenario, check, compared } from './types.ts'

const SCENARIO = '02-merge-compaction'
const APPEND_BATCH = 256
const ROOM = 'history'

/** A fresh server over `dataDir` loads the room; returns the load time and checks the text. */
async function timeLoad(dataDir: string, expected: string): Promise<number> {
  const server = await startServer({ compactAfterRecords: Number.MAX_SAFE_INTEGER }, dataDir)
  try {
    const t0 = performance.now()
    const room = await server.app.tandem.registry.acquire(ROOM)
    const ms = performance.now() - t0
    check(room.doc.getText(TEXT).toString() === expected, 'the loaded room equals the history')
    server.app.tandem.registry.released(room)
    return ms
  } finally {
    await server.stop()
  }
}

async function history(label: string, trace: Trace): Promise<Result[]> {
  const dir = tempDir('history')
  const copy = `${dir}-before`
  try {
    const n = trace.updates.length
    const store = await openLevelStore(join(dir, 'db'))
    const t0 = performance.now()
    for (let seq = 0; seq < n; seq += APPEND_BATCH) {
      await store.append(ROOM, seq, trace.updates.slice(seq, seq + APPEND_BATCH))
    }
    const appendMs = performance.now() - t0
    check((await countRecords(store, ROOM)) === n, `all ${n} records stored`)
    await store.close()
    cpSync(join(dir, 'db'), copy, { recursive: true })
    const loadBefore = await timeLoad(copy, trace.text)

    // Compact as the room does: snapshot of the loaded doc, then one atomic batch.
    const store2 = await openLevelStore(join(dir, 'db'))
    const { updates, firstSeq, lastSeq } = await store2.load(ROOM)
    const doc = new Y.Doc({ gc: true })
    doc.transact(() => {
      for (const u of updates) Y.applyUpdate(doc, u)
    })
    const t1 = performance.now()
    const snapshot = Y.encodeStateAsUpdate(doc)
    await store2.compact(ROOM, firstSeq, lastSeq, snapshot)
    const compactMs = performance.now() - t1
    doc.destroy()
    check((await countRecords(store2, ROOM)) === 1, 'one record after compaction')
    await store2.close()
    const loadAfter = await timeLoad(join(dir, 'db'), trace.text)
    const kb = snapshot.length / 1024
    const note = `${n} updates, doc ${round(kb)} KB`
    return [
      { scenario: SCENARIO, metric: `${label}: append`, value: round(n / (appendMs / 1_000)), unit: 'updates/s', note: `${note}, ${APPEND_BATCH} a batch` },
      { scenario: SCENARIO, metric: `${label}: compact`, value: round(compactMs), unit: 'ms', note },
      compared(
        { scenario: SCENARIO, metric: `${label}: load after compaction`, value: round(loadAfter), unit: 'ms', note },
        `load of ${n} records`,
        round(loadBefore),
      ),
      {
        scenario: SCENARIO,
        metric: `${label}: load after compaction per KB`,
        value: round((loadAfter * 1_000) / kb),
        unit: 'µs/KB',
        note: 'should not grow with history length',
      },
    ]
  } finally {
    removeDir(dir)
    removeDir(copy)
  }
}

/** Y.mergeUpdates cost per update at two batch sizes, on the same keystrokes. */
function mergeGrowth(trace: Trace, big: number): Result {
  const perUpdate = (size: number): number => {
    const t0 = performance.now()
    let merged = 0
    let done = 0
    for (let i = 0; i + size <= trace.updates.length && done < big * 4; i += size) {
      merged += Y.mergeUpdates(trace.updates.slice(i, i + size)).length
      done += size
    }
    check(merged > 0, 'merged something')
    return ((performance.now() - t0) * 1_000) / done
  }
  perUpdate(32) // warm up
  const small = perUpdate(32)
  const large = perUpdate(big)
  return compared(
    { scenario: SCENARIO, metric: `mergeUpdates of ${big}`, value: round(large), unit: 'µs/update', note: 'why the room merges <= 32 at a time' },
    'mergeUpdates of 32',
    round(small),
  )
}

export const scenario: Scenario = {
  id: '02',
  name: 'merge-compaction',
  async run({ quick, seed }: BenchOptions): Promise<Result[]> {
    const small = typingTrace(seed + 2, { keystrokes: quick ? 1_000 : 10_000 })
    const large = typingTrace(seed + 3, { keystrokes: quick ? 10_000 : 100_000 })
    return [...(await history(quick ? '1k' : '10k', small)), ...(await history(quick ? '10k' : '100k', large)), mergeGrowth(large, quick ? 1_024 : 4_096)]
  },
}
