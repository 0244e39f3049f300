/**
 * 04 memory: heap and RSS per idle connection and per loaded idle room, measured in the server's own
 * process (the real CLI in a child, so the clients here do not count).
 *
 * The child runs with `--expose-gc` and `support/gc-preload.ts`, which on SIGUSR2 collects fully and
 * prints heapUsed and RSS; figures are deltas over many connections or rooms divided by their count.
 * Connections: N anonymous Tandem clients in one room, each open (authenticated) and idle. Rooms: R
 * rooms loaded with a 1 KB document, then R with a 100 KB one (each kept loaded by one connection,
 * whose share is subtracted). Checked: /healthz counts every connection and room, every room's
 * document write was acknowledged.
 */

import { fileURLToPath } from 'node:url'
import { execFile } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { encodeFrame, writeAuth, writeUpdate } from '../protocol/messages.ts'
import { round } from './support/stats.ts'
import { type Child, ROOT, createOpenRoom, removeDir, spawnTandem, tempDir } from './support/tandem.ts'
import { type WireClient, connect } from './support/wire.ts'
import { documentOfSize } from './support/workload.ts'
import { type BenchOptions, type Result, type Scenario, check, compared } from './types.ts'

const SCENARIO = '04-memory'
/**
 * The heap of `count` bare Y.Docs holding `update`, per doc, in a fresh process (the same Yjs):
 * what a room's document costs by itself, so that what a room costs beyond it can be told.
 */
async function bareDocHeap(update: Uint8Array, count: number): Promise<number> {
  const dir = tempDir('bare-doc')
  try {
    const file = join(dir, 'update.bin')
    writeFileSync(file, update)
    const { stdout } = await run(process.execPath, ['--expose-gc', '--import', 'tsx', BARE_DOC_HEAP, file, String(count)], { cwd: ROOT })
    const perDoc = Number(stdout.trim())
    check(Number.isFinite(perDoc) && perDoc > 0, `bare docs measured (${stdout.trim()})`)
    return perDoc
  } finally {
    removeDir(dir)
  }
}

const PRELOAD = fileURLToPath(new URL('./support/gc-preload.ts', import.meta.url))
const BARE_DOC_HEAP = fileURLToPath(new URL('./support/bare-doc-heap.ts', import.meta.url))
const run = promisify(execFile)

interface Mem {
  /** heapUsed without compiled code. */
  heap: number
  /** heapUsed's compiled code. */
  code: number
  rss: number
}

async function memory(server: Child): Promise<Mem> {
  const before = server.stderr().length
  server.child.kill('SIGUSR2')
  for (;;) {
    const m = /bench-mem (\d+) (\d+) (\w+) (\d+)/.exec(server.stderr().slice(before))
    if (m) {
      check(m[3] === 'gc', 'the child can run a full GC')
      return { heap: Number(m[1]) - Number(m[4]), code: Number(m[4]), rss: Number(m[2]) }
    }
    await new Promise((resolve) => server.child.stderr!.once('data', resolve))
  }
}

async function health(httpUrl: string): Promise<{ rooms: number; connections: number }> {
  return (await (await fetch(`${httpUrl}/healthz`)).json()) as { rooms: number; connections: number }
}

async function openClients(url: string, n: number): Promise<WireClient[]> {
  const clients: WireClient[] = []
  // In groups, so the handshakes do not all queue at once.
  for (let i = 0; i < n; i += 50) {
    const group = await Promise.all(Array.from({ length: Math.min(50, n - i) }, () => connect(url)))
    for (const c of group) c.send(encodeFrame(writeAuth, null))
    await Promise.all(group.map((c) => c.greeted))
    clients.push(...group)
  }
  return clients
}

/** Loads `count` rooms with the same document (one writer each, kept connected); returns their clients. */
async function loadRooms(server: Child, prefix: string, count: number, doc: Uint8Array): Promise<WireClient[]> {
  const http = `http://127.0.0.1:${server.port}`
  const clients: WireClient[] = []
  for (let i = 0; i < count; i++) {
    await createOpenRoom(http, `${prefix}-${i}`)
    const [c] = await openClients(`ws://127.0.0.1:${server.port}/v1/sync/${prefix}-${i}`, 1)
    c!.send(encodeFrame(writeUpdate, doc))
    await c!.untilSaved(1)
    clients.push(c!)
  }
  return clients
}

export const scenario: Scenario = {
  id: '04',
  name: 'memory',
  async run({ quick, seed }: BenchOptions): Promise<Result[]> {
    const connections = quick ? 50 : 500
    const rooms = quick ? 10 : 50
    const dataDir = tempDir('memory')
    const server = await spawnTandem(dataDir, { nodeFlags: ['--expose-gc'], preload: [PRELOAD] })
    const all: WireClient[] = []
    try {
      const http = `http://127.0.0.1:${server.port}`
      await createOpenRoom(http, 'idle')
      const url = `ws://127.0.0.1:${server.port}/v1/sync/idle`
      all.push(...(await openClients(url, 5))) // the room is loaded and the paths warm before the baseline
      const m0 = await memory(server)
      all.push(...(await openClients(url, connections)))
      const m1 = await memory(server)
      check((await health(http)).connections === connections + 5, 'every connection is open')

      const small = documentOfSize(seed + 20, 1024)
      const large = documentOfSize(seed + 21, 100 * 1024)
      all.push(...(await loadRooms(server, 'small', rooms, small.update)))
      const m2 = await memory(server)
      all.push(...(await loadRooms(server, 'large', rooms, large.update)))
      const m3 = await memory(server)
      const h = await health(http)
      check(h.rooms === 1 + 2 * rooms && h.connections === connections + 5 + 2 * rooms, `every room loaded (${h.rooms}) and connection open (${h.connections})`)

      const perConnHeap = (m1.heap - m0.heap) / connections
      const perConnRss = (m1.rss - m0.rss) / connections
      const smallRoom = (m2.heap - m1.heap) / rooms - perConnHeap
      const largeRoom = (m3.heap - m2.heap) / rooms - perConnHeap
      const kb = (x: number): number => round(x / 1024)
      const docAlone = await bareDocHeap(small.update, 200)
      const overhead = smallRoom - docAlone
      return [
        {
          scenario: SCENARIO,
          metric: 'idle connection heap',
          value: kb(perConnHeap),
          unit: 'KB',
          target: '< 8 KB',
          met: perConnHeap < 8 * 1024,
          note: `${connections} connections, after full GC; compiled code is counted apart (it grew ${kb(m1.code - m0.code)} KB in all while they opened: the JIT's, once per process)`,
        },
        { scenario: SCENARIO, metric: 'idle connection RSS', value: kb(perConnRss), unit: 'KB', note: 'RSS moves in pages: noisy' },
        {
          scenario: SCENARIO,
          metric: `idle room heap, ${kb(small.update.length)} KB doc`,
          value: kb(smallRoom),
          unit: 'KB',
          note: `${rooms} rooms, its connection subtracted; compiled code grew ${kb(m2.code - m1.code)} KB in all while they loaded, ${kb(m3.code - m2.code)} KB while as many larger rooms loaded next`,
        },
        compared(
          {
            scenario: SCENARIO,
            metric: `idle room heap, ${kb(large.update.length)} KB doc`,
            value: kb(largeRoom),
            unit: 'KB',
            note: `doc ${round(large.update.length / small.update.length)}x larger`,
          },
          `room of a ${kb(small.update.length)} KB doc`,
          kb(smallRoom),
        ),
        { scenario: SCENARIO, metric: 'idle room heap per doc KB (large)', value: round(largeRoom / large.update.length), unit: 'heap B / doc B' },
        {
          scenario: SCENARIO,
          metric: `idle room overhead beyond its document (${kb(small.update.length)} KB doc)`,
          value: kb(overhead),
          unit: 'KB',
          target: '< 16 KB',
          met: overhead < 16 * 1024,
          note: `room ${kb(smallRoom)} KB, the same document alone ${kb(docAlone)} KB (bare Y.Docs in a process of their own)`,
        },
      ]
    } finally {
      await Promise.all(all.map((c) => c.close()))
      await server.stop()
      removeDir(dataDir)
    }
  },
}
