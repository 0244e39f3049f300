/**
 * 06 distributed: two Tandem processes (the real CLI with `--redis-url` and `--database-url`) on a
 * Redis of the bench's own (appendonly, appendfsync everysec) and the machine's PostgreSQL, next to
 * one embedded process on the same shape. In each room one client types on process A and the other
 * clients receive on process B (in the embedded run, all on one process): every edit crosses
 * processes through the room's stream. Both Tandem processes are pinned to core 0, the load
 * generator to core 1; Redis and PostgreSQL run where the kernel puts them.
 *
 * Figures, per offered rate: cross-process fan-out latency p50/p99 at one receiver per room (arrival
 * minus the send time of the frame's first update), acknowledgement latency (send to `saved`) at the
 * typist, and CPU per edit: of each Tandem process, of Redis, of PostgreSQL, beside the embedded
 * process's; then the time for an ACL change made through A to reach a session on B. Every step
 * checks that every room's receivers converged to the typist's text before it reports.
 *
 * Needs `redis-server` and PostgreSQL at 127.0.0.1:5432 (user postgres, trust): the machines have
 * both (README, "Running several processes").
 */

import { execFileSync, spawn } from 'node:child_process'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import * as decoding from 'lib0/decoding'
import pg from 'pg'
import * as Y from 'yjs'
import { encodeFrame, writeAuth, writeUpdate } from '../protocol/messages.ts'
import { quantile, round } from './support/stats.ts'
import { BENCH_SECRET, type Child, createOpenRoom, removeDir, spawnServer, tempDir } from './support/tandem.ts'
import { type WireClient, clientFrame, connect } from './support/wire.ts'
import { TEXT, dueEdits, typingTrace } from './support/workload.ts'
import { type BenchOptions, type Result, type Scenario, check, compared } from './types.ts'

const SCENARIO = '06-distributed'
const POSTGRES = process.env['TANDEM_BENCH_POSTGRES_URL'] || 'postgres://postgres@127.0.0.1:5432/postgres'

/** CPU (user + system, µs) of a process, from /proc. */
const cpuOf = (pid: number): number => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(f[11]) + Number(f[12])) / 100) * 1e6
  } catch {
    return 0
  }
}

/** CPU of every process whose command starts with `postgres` (the server and its backends), by pid. */
const postgresCpu = (): Map<number, number> => {
  const byPid = new Map<number, number>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim().startsWith('postgres')) byPid.set(Number(entry), cpuOf(Number(entry)))
    } catch {
      // gone meanwhile
    }
  }
  return byPid
}

/** PostgreSQL's CPU between two readings: processes present at both (a backend that exited takes its CPU with it). */
const postgresDelta = (before: Map<number, number>, after: Map<number, number>): number => {
  let total = 0
  for (const [pid, cpu] of after) total += cpu - (before.get(pid) ?? 0)
  return Math.max(0, total)
}

const freePort = async (): Promise<number> => {
  const { createServer } = await import('node:net')
  return new Promise((resolve) => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0))
    })
  })
}

async function startRedis(): Promise<{ url: string; pid: number; stop(): void; dir: string }> {
  const port = await freePort()
  const dir = tempDir('redis')
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', ''],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  await new Promise<void>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('Ready to accept connections')) resolve()
    })
    child.once('exit', () => reject(new Error(`redis-server exited: ${out}`)))
  })
  return { url: `redis://127.0.0.1:${port}`, pid: child.pid!, dir, stop: () => child.kill('SIGKILL') }
}

const tandem = (dataDir: string, extra: string[]): Promise<Child> =>
  spawnServer(
    [
      '--import',
      'tsx',
      'server/cli/main.ts',
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--data-dir',
      dataDir,
      '--secret',
      BENCH_SECRET,
      '--allow-anonymous',
      '--log-level',
      'warn',
      ...extra,
    ],
    /listening on http:\/\/[^:]+:(\d+)/,
    { cpu: 0, env: { TANDEM_SECRET: '', PORT: '', HOST: '', TANDEM_DATA_DIR: '', TANDEM_REDIS_URL: '', TANDEM_DATABASE_URL: '' } },
  )

/** First (client, clock) of the update in a sync update frame: the trace's clock names the edit. */
function firstClock(frame: Buffer): number {
  const d = decoding.createDecoder(frame)
  decoding.readVarUint(d)
  decoding.readVarUint(d)
  decoding.readVarUint(d)
  if (decoding.readVarUint(d) === 0) return -1
  decoding.readVarUint(d)
  decoding.readVarUint(d)
  return decoding.readVarUint(d)
}

interface Step {
  readonly rate: number
  readonly p50: number
  readonly p99: number
  readonly ackP50: number
  readonly ackP99: number
  readonly usPerEditA: number
  readonly usPerEditB: number
  readonly redisUsPerEdit: number
  readonly postgresUsPerEdit: number
  readonly genUsPerEdit: number
}

interface Topology {
  readonly name: string
  readonly writer: Child
  readonly reader: Child
  readonly redisPid: number | null
}

async function runSteps(topology: Topology, rooms: number, clients: number, rates: number[], seconds: number, seed: number): Promise<Step[]> {
  const names = Array.from({ length: rooms }, (_, i) => `dist-${i}`)
  for (const name of names) await createOpenRoom(`http://127.0.0.1:${topology.writer.port}`, name)
  const perRoomMax = Math.ceil(((rates[0]! + rates.reduce((a, b) => a + b, 0)) * seconds) / rooms) + 10
  const sockets: WireClient[] = []
  const state = await Promise.all(
    names.map(async (name, r) => {
      const trace = typingTrace(seed + 900 + r, { keystrokes: perRoomMax, authors: 1, deleteRate: 0 })
      const frames = trace.updates.map((u) => clientFrame(encodeFrame(writeUpdate, u)))
      const sendTimes = new Float64Array(frames.length + 1)
      const latencies: number[] = []
      const acks: number[] = []
      const checkFrames: Buffer[] = []
      let lastSaved = 0
      const writer = await connect(`ws://127.0.0.1:${topology.writer.port}/v1/sync/${name}`, {
        onSaved: (count) => {
          const now = performance.now()
          for (let i = lastSaved; i < count; i++) if (sendTimes[i]! > 0) acks.push(now - sendTimes[i]!)
          lastSaved = count
        },
      })
      writer.send(encodeFrame(writeAuth, null))
      const receivers: WireClient[] = []
      for (let c = 1; c < clients; c++) {
        const receiver = await connect(`ws://127.0.0.1:${topology.reader.port}/v1/sync/${name}`, {
          onUpdate:
            c === 1
              ? (frame) => {
                  const clock = firstClock(frame)
                  if (clock >= 0 && clock < sendTimes.length && sendTimes[clock]! > 0) latencies.push(performance.now() - sendTimes[clock]!)
                  checkFrames.push(frame)
                }
              : undefined,
        })
        receiver.send(encodeFrame(writeAuth, null))
        receivers.push(receiver)
      }
      await Promise.all([writer.greeted, ...receivers.map((c) => c.greeted)])
      sockets.push(writer, ...receivers)
      return { trace, frames, sendTimes, latencies, acks, checkFrames, writer, receivers, sent: 0, doc: new Y.Doc(), ref: new Y.Doc(), applied: 0 }
    }),
  )

  const step = async (rate: number, label: string): Promise<Step> => {
    for (const room of state) {
      room.latencies.length = 0
      room.acks.length = 0
    }
    const perRoom = rate / rooms
    const cpuA = topology.writer.cpuUs()
    const cpuB = topology.reader.cpuUs()
    const cpuRedis = topology.redisPid === null ? 0 : cpuOf(topology.redisPid)
    const cpuPg = postgresCpu()
    const gen0 = process.cpuUsage()
    const base = state.map((r) => r.sent)
    const t0 = performance.now()
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const elapsed = (performance.now() - t0) / 1_000
        const now = performance.now()
        state.forEach((room, r) => {
          const due = dueEdits(Math.min(elapsed, seconds), perRoom, r, state.length)
          while (room.sent - base[r]! < due && room.sent < room.frames.length) {
            room.sendTimes[room.sent] = now
            room.writer.sendFramed(room.frames[room.sent++]!)
          }
        })
        if (elapsed >= seconds) {
          clearInterval(timer)
          resolve()
        }
      }, 2)
    })
    // Drain: every room's check receiver converged to the typist's text, the others got the same bytes.
    const drainStart = performance.now()
    let converged = false
    while (performance.now() - drainStart < 15_000) {
      converged = state.every((room) => {
        for (const f of room.checkFrames.splice(0)) {
          const d = decoding.createDecoder(f)
          decoding.readVarUint(d)
          decoding.readVarUint(d)
          Y.applyUpdate(room.doc, decoding.readVarUint8Array(d))
        }
        while (room.applied < room.sent) Y.applyUpdate(room.ref, room.trace.updates[room.applied++]!)
        const [checker, ...others] = room.receivers
        return room.doc.getText(TEXT).length === room.ref.getText(TEXT).length && others.every((c) => c.updateBytes === checker!.updateBytes)
      })
      if (converged) break
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    check(converged, `${topology.name} @${rate}/s: every room's receivers converged to the typist's text`)
    const edits = state.reduce((n, r, i) => n + r.sent - base[i]!, 0)
    const gen = process.cpuUsage(gen0)
    const all = state.flatMap((r) => r.latencies)
    const acks = state.flatMap((r) => r.acks)
    const result: Step = {
      rate,
      p50: quantile(all, 0.5),
      p99: quantile(all, 0.99),
      ackP50: quantile(acks, 0.5),
      ackP99: quantile(acks, 0.99),
      usPerEditA: (topology.writer.cpuUs() - cpuA) / edits,
      usPerEditB: topology.reader === topology.writer ? 0 : (topology.reader.cpuUs() - cpuB) / edits,
      redisUsPerEdit: topology.redisPid === null ? 0 : (cpuOf(topology.redisPid) - cpuRedis) / edits,
      postgresUsPerEdit: postgresDelta(cpuPg, postgresCpu()) / edits,
      genUsPerEdit: (gen.user + gen.system) / edits,
    }
    process.stderr.write(
      `[bench]   ${label}${topology.name} ${rooms}x${clients} @${rate}/s: fan-out p50 ${round(result.p50)} p99 ${round(result.p99)} ms, ack p50 ${round(result.ackP50)} p99 ${round(result.ackP99)} ms, ` +
        `CPU/edit A ${round(result.usPerEditA)} B ${round(result.usPerEditB)} redis ${round(result.redisUsPerEdit)} postgres ${round(result.postgresUsPerEdit)} load ${round(result.genUsPerEdit)} µs\n`,
    )
    return result
  }

  try {
    await step(rates[0]!, '(warm-up) ')
    const steps: Step[] = []
    for (const rate of rates) steps.push(await step(rate, ''))
    return steps
  } finally {
    for (const s of sockets) s.terminate()
  }
}

/** Time from an ACL change sent through A to the `access-changed` a session on B hears. */
async function aclPropagation(a: Child, b: Child, count: number): Promise<number[]> {
  const room = 'acl-propagation'
  const auth = { authorization: `Bearer ${BENCH_SECRET}`, 'content-type': 'application/json' }
  await fetch(`http://127.0.0.1:${a.port}/v1/rooms`, { method: 'POST', headers: auth, body: JSON.stringify({ id: room, defaultAccesses: ['room:write'] }) })
  const { WebSocket } = await import('ws')
  const ws = new WebSocket(`ws://127.0.0.1:${b.port}/v1/sync/${room}`)
  const changes: number[] = []
  let opened: () => void = () => {}
  const open = new Promise<void>((resolve) => {
    opened = resolve
  })
  ws.on('message', (data: Buffer) => {
    const d = decoding.createDecoder(new Uint8Array(data))
    const type = decoding.readVarUint(d)
    if (type === 33) opened() // authenticated
    if (type === 34) changes.push(performance.now()) // access-changed
  })
  await new Promise((resolve) => ws.once('open', resolve))
  ws.send(encodeFrame(writeAuth, null))
  await open
  const times: number[] = []
  for (let i = 0; i < count; i++) {
    const before = changes.length
    const sent = performance.now()
    const res = await fetch(`http://127.0.0.1:${a.port}/v1/rooms/${room}`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ defaultAccesses: i % 2 === 0 ? ['room:presence:write'] : ['room:write'] }),
    })
    check(res.ok, 'the ACL change is answered 200')
    const deadline = performance.now() + 5_000
    while (changes.length === before && performance.now() < deadline) await new Promise((resolve) => setImmediate(resolve))
    check(changes.length > before, 'the session on the other process heard the change')
    times.push(changes[before]! - sent)
  }
  ws.terminate()
  return times
}

export const scenario: Scenario = {
  id: '06',
  name: 'distributed',
  async run({ quick, seed }: BenchOptions): Promise<Result[]> {
    check(existsSync('/proc/self/stat'), 'the bench reads CPU times from /proc')
    execFileSync('redis-server', ['--version'])
    const rooms = quick ? 20 : 100
    const clients = 4
    const rates = quick ? [400] : [500, 1_000, 2_000, 4_000]
    const seconds = quick ? 1 : 2
    const admin = new pg.Client({ connectionString: POSTGRES })
    await admin.connect()
    const database = `tandem_bench_${process.pid}`
    await admin.query(`CREATE DATABASE ${database}`)
    const databaseUrl = `${POSTGRES.replace(/\/[^/]*$/, '')}/${database}`
    const redis = await startRedis()
    const dirs = [tempDir('dist-a'), tempDir('dist-b'), tempDir('embedded')]
    const engines = ['--redis-url', redis.url, '--database-url', databaseUrl]
    const children: Child[] = []
    try {
      const embedded = await tandem(dirs[2]!, [])
      children.push(embedded)
      const embeddedSteps = await runSteps({ name: 'embedded', writer: embedded, reader: embedded, redisPid: null }, rooms, clients, rates, seconds, seed)
      await embedded.stop()
      const a = await tandem(dirs[0]!, engines)
      const b = await tandem(dirs[1]!, engines)
      children.push(a, b)
      const distributed = await runSteps({ name: 'distributed', writer: a, reader: b, redisPid: redis.pid }, rooms, clients, rates, seconds, seed)
      const acl = await aclPropagation(a, b, quick ? 20 : 100)

      const results: Result[] = []
      distributed.forEach((d, i) => {
        const e = embeddedSteps[i]!
        const perProcess = (d.usPerEditA + d.usPerEditB) / 2
        const shape = `${rooms}x${clients} @${d.rate}/s`
        results.push(
          compared(
            {
              scenario: SCENARIO,
              metric: `${shape}: CPU per edit per process`,
              value: round(perProcess),
              unit: 'µs',
              target: quick ? undefined : 'ratio <= 1.3',
            },
            'embedded process',
            round(e.usPerEditA),
          ),
        )
        // Every edit is handled twice over: validated, applied and stored where it came in, applied
        // and relayed where its receivers are. The cluster's whole CPU per edit, for the model.
        results.push(
          compared(
            { scenario: SCENARIO, metric: `${shape}: CPU per edit, both processes`, value: round(d.usPerEditA + d.usPerEditB), unit: 'µs' },
            'embedded process',
            round(e.usPerEditA),
          ),
        )
        results.push({ scenario: SCENARIO, metric: `${shape}: Redis CPU per edit`, value: round(d.redisUsPerEdit), unit: 'µs' })
        results.push({ scenario: SCENARIO, metric: `${shape}: PostgreSQL CPU per edit`, value: round(d.postgresUsPerEdit), unit: 'µs' })
        results.push(
          compared(
            { scenario: SCENARIO, metric: `${shape}: cross-process fan-out p99`, value: round(d.p99), unit: 'ms', target: quick ? undefined : 'value < 50' },
            'embedded p99',
            round(e.p99),
          ),
        )
        results.push({ scenario: SCENARIO, metric: `${shape}: cross-process fan-out p50`, value: round(d.p50), unit: 'ms' })
        results.push(compared({ scenario: SCENARIO, metric: `${shape}: acknowledgement p99`, value: round(d.ackP99), unit: 'ms' }, 'embedded', round(e.ackP99)))
      })
      results.push({ scenario: SCENARIO, metric: 'ACL change to a session on the other process: p50', value: round(quantile(acl, 0.5)), unit: 'ms' })
      results.push({
        scenario: SCENARIO,
        metric: 'ACL change to a session on the other process: p99',
        value: round(quantile(acl, 0.99)),
        unit: 'ms',
        target: quick ? undefined : 'value < 100',
      })
      for (const r of results) {
        if (r.target === 'ratio <= 1.3') Object.assign(r, { met: (r.ratio ?? Infinity) <= 1.3 })
        if (r.target === 'value < 50') Object.assign(r, { met: r.value < 50 })
        if (r.target === 'value < 100') Object.assign(r, { met: r.value < 100 })
      }
      return results
    } finally {
      for (const c of children) await c.stop()
      redis.stop()
      for (const d of [...dirs, redis.dir]) removeDir(d)
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
      await admin.end()
    }
  },
}
