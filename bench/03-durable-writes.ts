/**
 * 03 durable writes: acknowledged writes per second through a real server, with LevelDB's fsync
 * off (`syncWrites: false`, the default: survives a process crash) and on (survives power loss).
 *
 * Eight Tandem clients on real sockets, each in its own room, each sending a seeded typing trace
 * with up to 32 writes unacknowledged (a typist does not wait for `saved`). The figure is writes
 * the server acknowledged (`saved`) per second of wall time. Checked: every write acknowledged, and
 * a fresh store over the data dir holds each room's full text.
 *
 * The server runs with no store window (`storeWindowMs: 0`): with the default 50 ms window these
 * clients, never more than 32 writes ahead, would be held to 32 writes per window each, and the
 * figure would measure the window, not the store.
 */

import { encodeFrame, writeAuth, writeUpdate } from '../protocol/messages.ts'
import { LIMIT_DEFINITIONS } from '../server/limits.ts'
import { openLevelStore } from '../server/store/level-store.ts'
import { startServer } from '../test/support/server.ts'
import { round } from './support/stats.ts'
import { removeDir, tempDir } from './support/tandem.ts'
import { connect } from './support/wire.ts'
import { type Trace, textOf, typingTrace } from './support/workload.ts'
import { type BenchOptions, type Result, type Scenario, check, compared } from './types.ts'

const SCENARIO = '03-durable-writes'
const CLIENTS = 8
const WINDOW = 32
/** The widest budgets the server takes: the clients here must never be rate limited. */
const UNLIMITED = {
  messagesPerSecond: LIMIT_DEFINITIONS.messagesPerSecond.max,
  messageBurst: LIMIT_DEFINITIONS.messageBurst.max,
  bytesPerSecond: LIMIT_DEFINITIONS.bytesPerSecond.max,
  byteBurst: LIMIT_DEFINITIONS.byteBurst.max,
}

async function run(syncWrites: boolean, traces: Trace[]): Promise<number> {
  const dataDir = tempDir('durable')
  try {
    const server = await startServer({ syncWrites, limits: UNLIMITED, storeWindowMs: 0 }, dataDir)
    const frames = traces.map((t) => t.updates.map((u) => encodeFrame(writeUpdate, u)))
    const clients = await Promise.all(traces.map((_, i) => connect(`${server.syncUrl}/durable-${i}`)))
    for (const c of clients) c.send(encodeFrame(writeAuth, null))
    const t0 = performance.now()
    await Promise.all(
      clients.map(async (c, i) => {
        const mine = frames[i]!
        for (let sent = 0; sent < mine.length; ) {
          const upTo = Math.min(mine.length, c.saved + WINDOW)
          while (sent < upTo) c.send(mine[sent++]!)
          await c.untilSaved(Math.min(mine.length, c.saved + 1))
        }
        await c.untilSaved(mine.length)
      }),
    )
    const seconds = (performance.now() - t0) / 1_000
    const total = frames.reduce((n, f) => n + f.length, 0)
    check(
      clients.every((c, i) => c.saved === frames[i]!.length),
      'every write acknowledged',
    )
    await Promise.all(clients.map((c) => c.close()))
    await server.stop()
    const store = await openLevelStore(dataDir)
    for (let i = 0; i < traces.length; i++) {
      const { updates } = await store.load(`durable-${i}`)
      check(textOf(updates) === traces[i]!.text, `room durable-${i} stored in full`)
    }
    await store.close()
    return total / seconds
  } finally {
    removeDir(dataDir)
  }
}

export const scenario: Scenario = {
  id: '03',
  name: 'durable-writes',
  async run({ quick, seed }: BenchOptions): Promise<Result[]> {
    const per = quick ? 300 : 8_000
    const traces = Array.from({ length: CLIENTS }, (_, i) => typingTrace(seed + 10 + i, { keystrokes: per }))
    await run(
      false,
      Array.from({ length: CLIENTS }, (_, i) => typingTrace(seed + 100 + i, { keystrokes: 200 })),
    ) // warm-up
    const off = await run(false, traces)
    const on = await run(true, traces)
    const note = `${CLIENTS} clients x ${per} keystrokes, window ${WINDOW}`
    return [
      { scenario: SCENARIO, metric: 'syncWrites: false', value: round(off), unit: 'acked writes/s', note },
      compared(
        { scenario: SCENARIO, metric: 'syncWrites: true', value: round(on), unit: 'acked writes/s', note: `${note}; fsync per group commit` },
        'syncWrites: false',
        round(off),
      ),
    ]
  },
}
