/**
 * 05 end to end, side by side: capacity over real sockets of Tandem (the CLI: auth, ACL gating and
 * LevelDB persistence on), @y/websocket-server 0.1.1 and @hocuspocus/server 3.x (both without
 * persistence, their defaults). Each server runs in its own child process pinned to core 0; the
 * load generator here is pinned to core 1.
 *
 * Shapes: 100 rooms x 5 clients and 10 rooms x 50 clients (quick: 20 x 5, 4 x 25). In each room one
 * client types a seeded insert-only trace (so an update's first clock names it) at a rising offered
 * rate; the others only read each frame's header. Latency: arrival time minus the send time of the
 * first update a frame carries (Tandem merges a turn's updates into one frame: this takes the oldest,
 * the worst). A rate is held when p99 latency is under 50 ms and, once sent, every room's check
 * receiver converges to the sender's text. Figures: the highest rate held, and the server's CPU
 * (from /proc/<pid>/stat) per incoming edit at the lowest rate, Tandem / peer.
 */

import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import * as Y from 'yjs'
import { encodeFrame, writeAuth, writeUpdate } from '../protocol/messages.ts'
import { quantile, round } from './support/stats.ts'
import { type Child, createOpenRoom, removeDir, spawnServer, spawnTandem, tempDir } from './support/tandem.ts'
import { type WireClient, connect } from './support/wire.ts'
import { TEXT, typingTrace } from './support/workload.ts'
import { type BenchOptions, type Result, type Scenario, check, compared } from './types.ts'

const SCENARIO = '05-e2e-side-by-side'
const P99_MS = 50

interface Flavor {
  readonly name: string
  start(dir: string): Promise<Child>
  url(port: number, room: string): string
  /** Frames to send right after opening, before any update. */
  hello(room: string): Uint8Array[]
  frame(room: string, update: Uint8Array): Uint8Array
  /** Where the y-websocket message starts in a frame the server sends. */
  prefix?: (frame: Buffer) => number
  prepare?(port: number, rooms: string[]): Promise<void>
}

const hocusFrame = (room: string, write: (e: encoding.Encoder) => void): Uint8Array => {
  const e = encoding.createEncoder()
  encoding.writeVarString(e, room)
  write(e)
  return encoding.toUint8Array(e)
}

const FLAVORS: Flavor[] = [
  {
    name: 'tandem',
    start: (dir) => spawnTandem(dir, { cpu: 0 }),
    url: (port, room) => `ws://127.0.0.1:${port}/v1/sync/${room}`,
    hello: () => [encodeFrame(writeAuth, null)],
    frame: (_room, update) => encodeFrame(writeUpdate, update),
    async prepare(port, rooms) {
      for (const room of rooms) await createOpenRoom(`http://127.0.0.1:${port}`, room)
    },
  },
  {
    name: 'y-websocket-server',
    start: () => spawnServer(['--import', 'tsx', 'bench/support/peer-ywebsocket.ts'], /listening on http:\/\/[^:]+:(\d+)/, { cpu: 0 }),
    url: (port, room) => `ws://127.0.0.1:${port}/${room}`,
    hello: () => [],
    frame: (_room, update) => encodeFrame(writeUpdate, update),
  },
  {
    name: 'hocuspocus',
    start: () => spawnServer(['--import', 'tsx', 'bench/support/peer-hocuspocus.ts'], /listening on http:\/\/[^:]+:(\d+)/, { cpu: 0 }),
    url: (port) => `ws://127.0.0.1:${port}/`,
    // Hocuspocus: every message starts with the document name; the first is auth (type 2, token 0).
    hello: (room) => [hocusFrame(room, (e) => {
      encoding.writeVarUint(e, 2)
      encoding.writeVarUint(e, 0)
      encoding.writeVarString(e, 'bench')
    })],
    frame: (room, update) => hocusFrame(room, (e) => writeUpdate(e, update)),
    prefix: (frame) => {
      const d = decoding.createDecoder(frame)
      decoding.readVarString(d)
      return d.pos
    },
  },
]

interface Shape {
  readonly rooms: number
  readonly clients: number
  readonly rates: number[]
}

/** First (client, clock) of the update in a sync update frame starting at `pos`. */
function firstClock(frame: Buffer, pos: number): number {
  const d = decoding.createDecoder(frame)
  d.pos = pos
  decoding.readVarUint(d) // message type
  decoding.readVarUint(d) // sync type
  decoding.readVarUint(d) // update length
  if (decoding.readVarUint(d) === 0) return -1 // no struct section (a delete)
  decoding.readVarUint(d) // structs
  decoding.readVarUint(d) // client
  return decoding.readVarUint(d)
}

interface StepResult {
  rate: number
  p99: number
  held: boolean
  cpuUsPerEdit: number
  edits: number
}

async function runShape(flavor: Flavor, shape: Shape, seconds: number, seed: number): Promise<StepResult[]> {
  const dir = tempDir(`e2e-${flavor.name}`)
  const server = await flavor.start(dir)
  const sockets: WireClient[] = []
  try {
    const roomNames = Array.from({ length: shape.rooms }, (_, i) => `e2e-${i}`)
    await flavor.prepare?.(server.port, roomNames)
    const perRoomMax = Math.ceil((shape.rates.reduce((a, b) => a + b, 0) * seconds) / shape.rooms) + 10
    const rooms = await Promise.all(
      roomNames.map(async (name, r) => {
        const trace = typingTrace(seed + 500 + r, { keystrokes: perRoomMax, authors: 1, deleteRate: 0 })
        const frames = trace.updates.map((u) => flavor.frame(name, u))
        const sendTimes = new Float64Array(trace.updates.length + 1)
        const latencies: number[] = []
        const checkFrames: Buffer[] = []
        const prefix = flavor.prefix
        const clients: WireClient[] = []
        for (let c = 0; c < shape.clients; c++) {
          const isSender = c === 0
          const isCheck = c === 1
          const client = await connect(flavor.url(server.port, name), {
            prefix,
            onUpdate: isSender
              ? undefined
              : (frame) => {
                  const clock = firstClock(frame, prefix?.(frame) ?? 0)
                  if (clock >= 0 && clock < sendTimes.length && sendTimes[clock]! > 0) latencies.push(performance.now() - sendTimes[clock]!)
                  if (isCheck) checkFrames.push(frame)
                },
          })
          for (const f of flavor.hello(name)) client.send(f)
          clients.push(client)
        }
        await Promise.all(clients.map((c) => c.greeted))
        sockets.push(...clients)
        const check = { doc: new Y.Doc(), ref: new Y.Doc(), applied: 0 }
        return { name, trace, frames, sendTimes, latencies, checkFrames, clients, sent: 0, check }
      }),
    )

    const results: StepResult[] = []
    // The first step, at the lowest rate, only warms the server's JIT and is not reported.
    for (const [step, rate] of [shape.rates[0]!, ...shape.rates].entries()) {
      for (const room of rooms) room.latencies.length = 0
      const perRoom = rate / shape.rooms
      const cpu0 = server.cpuUs()
      const base = rooms.map((r) => r.sent)
      const t0 = performance.now()
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          const elapsed = (performance.now() - t0) / 1_000
          const due = Math.floor(Math.min(elapsed, seconds) * perRoom)
          const now = performance.now()
          rooms.forEach((room, r) => {
            while (room.sent - base[r]! < due && room.sent < room.frames.length) {
              room.sendTimes[room.sent] = now
              room.clients[0]!.send(room.frames[room.sent++]!)
            }
          })
          if (elapsed >= seconds) {
            clearInterval(timer)
            resolve()
          }
        }, 2)
      })
      // Drain: wait until every check receiver converged to its sender (or give up after 10 s).
      const drainStart = performance.now()
      let converged = false
      while (performance.now() - drainStart < 10_000) {
        converged = rooms.every((room) => {
          const { doc, ref } = room.check
          for (const f of room.checkFrames.splice(0)) {
            const d = decoding.createDecoder(f)
            d.pos = room.clients[1] && flavor.prefix ? flavor.prefix(f) : 0
            decoding.readVarUint(d)
            decoding.readVarUint(d)
            Y.applyUpdate(doc, decoding.readVarUint8Array(d))
          }
          while (room.check.applied < room.sent) Y.applyUpdate(ref, room.trace.updates[room.check.applied++]!)
          return doc.getText(TEXT).length === ref.getText(TEXT).length
        })
        if (converged) break
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      const cpu = server.cpuUs() - cpu0
      const edits = rooms.reduce((n, r, i) => n + r.sent - base[i]!, 0)
      const all = rooms.flatMap((r) => r.latencies)
      const p99 = quantile(all, 0.99)
      process.stderr.write(`[bench]   ${step === 0 ? '(warm-up) ' : ''}${flavor.name} ${shape.rooms}x${shape.clients} @${rate}/s: p99 ${round(p99)} ms, cpu ${round(cpu / edits)} µs/edit, converged ${converged}\n`)
      check(converged || step > 0, `${flavor.name}: converges at the warm-up rate`)
      if (step === 0) continue
      results.push({ rate, p99, held: converged && p99 <= P99_MS, cpuUsPerEdit: cpu / edits, edits })
      if (!converged || p99 > P99_MS) break
    }
    // Correct before a figure: every room's check receiver holds exactly its sender's text.
    for (const room of rooms) check(room.check.doc.getText(TEXT).toString() === room.check.ref.getText(TEXT).toString() || !results.at(-1)!.held, `${flavor.name}: room ${room.name} converged`)
    return results
  } finally {
    for (const s of sockets) s.socket.terminate()
    await server.stop()
    removeDir(dir)
  }
}

export const scenario: Scenario = {
  id: '05',
  name: 'e2e-side-by-side',
  async run({ quick, seed }: BenchOptions): Promise<Result[]> {
    const pinned = existsSync('/usr/bin/taskset')
    if (pinned) execFileSync('taskset', ['-pc', '1', String(process.pid)], { stdio: 'ignore' })
    try {
      const shapes: Shape[] = quick
        ? [{ rooms: 20, clients: 5, rates: [500, 1000, 2000] }, { rooms: 4, clients: 25, rates: [200, 400] }]
        : [{ rooms: 100, clients: 5, rates: [500, 1000, 2000, 4000, 8000, 16000] }, { rooms: 10, clients: 50, rates: [100, 200, 400, 800, 1600, 3200] }]
      const seconds = quick ? 1 : 3
      const out: Result[] = []
      for (const shape of shapes) {
        const label = `${shape.rooms}x${shape.clients}`
        const byFlavor = new Map<string, StepResult[]>()
        for (const flavor of FLAVORS) byFlavor.set(flavor.name, await runShape(flavor, shape, seconds, seed))
        const best = (name: string): number => Math.max(0, ...byFlavor.get(name)!.filter((s) => s.held).map((s) => s.rate))
        const cpuAtFirst = (name: string): number => byFlavor.get(name)![0]!.cpuUsPerEdit
        const ceiling = `of ${shape.rates.at(-1)} offered`
        for (const peer of FLAVORS.slice(1)) {
          const held = { scenario: SCENARIO, metric: `${label}: max edits/s, p99 < ${P99_MS} ms`, value: best('tandem'), unit: 'edits/s', note: `highest rate held ${ceiling} (0: not even the lowest)` }
          // A ratio to 0 (a server that held no rate) means nothing: then only the baseline is shown.
          out.push(best(peer.name) > 0 && best('tandem') > 0 ? compared(held, peer.name, best(peer.name)) : { ...held, baseline: { label: peer.name, value: best(peer.name) } })
          out.push(compared({ scenario: SCENARIO, metric: `${label}: server CPU at ${shape.rates[0]}/s`, value: round(cpuAtFirst('tandem')), unit: 'µs/edit', note: 'Tandem persists to LevelDB; peers do not persist' }, peer.name, round(cpuAtFirst(peer.name))))
        }
      }
      return out
    } finally {
      if (pinned) execFileSync('taskset', ['-pc', '0-1023', String(process.pid)], { stdio: 'ignore' })
    }
  },
}
