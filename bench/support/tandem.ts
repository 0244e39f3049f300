/** Starting Tandem for benchmarks: in process (test/support/server.ts) or as the real CLI in a child process. */

import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const BENCH_SECRET = 'bench-secret-that-is-long-enough-0123456789abcdef'

export const tempDir = (prefix: string): string => mkdtempSync(join(tmpdir(), `tandem-bench-${prefix}-`))
export const removeDir = (dir: string): void => rmSync(dir, { recursive: true, force: true })

export interface Child {
  readonly child: ChildProcess
  readonly port: number
  readonly pid: number
  /** Lines the child wrote on stderr. */
  readonly stderr: () => string
  /** CPU time (user + system) the child used so far, in microseconds, from /proc/<pid>/stat. */
  cpuUs(): number
  /** The same, split into user and system (kernel: socket writes, epoll, LevelDB's file writes). */
  cpu(): { user: number; system: number }
  /**
   * The main thread's share of it (µs), and how often the kernel took the core from the main thread
   * (involuntary context switches): on a pinned core, every other thread (LevelDB's writer and
   * compaction, libuv's pool, V8's GC helpers) runs by preempting it.
   */
  mainThread(): { cpuUs: number; preempted: number }
  stop(): Promise<void>
}

/**
 * Spawns `node <args>` and resolves once it printed a line matching `listening` (its port in the
 * first group). `cpu` pins it to one core with taskset when available.
 */
export async function spawnServer(args: string[], listening: RegExp, options: { env?: NodeJS.ProcessEnv; cpu?: number } = {}): Promise<Child> {
  const { existsSync, readFileSync } = await import('node:fs')
  const pin = options.cpu !== undefined && existsSync('/usr/bin/taskset')
  const guarded = ['--import', './bench/support/exit-with-parent.mjs', ...args]
  const [cmd, argv] = pin ? ['taskset', ['-c', String(options.cpu), process.execPath, ...guarded]] : [process.execPath, guarded]
  // stdin is a pipe from this process: a server notices it closing when the bench dies whole.
  const child = spawn(cmd as string, argv as string[], { cwd: ROOT, env: { ...process.env, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] })
  // A bench that dies (an uncaught error) takes its servers with it: no orphan keeps a port or CI busy.
  // A bench that dies without exit handlers (a segfault in a native module) too: exit-with-parent.mjs.
  const orphaned = (): void => void child.kill('SIGKILL')
  process.once('exit', orphaned)
  child.once('exit', () => process.off('exit', orphaned))
  let out = ''
  let err = ''
  const port = await new Promise<number>((resolve, reject) => {
    const onData = (): void => {
      const m = listening.exec(out + err)
      if (m) resolve(Number(m[1]))
    }
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      onData()
    })
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString()
      onData()
    })
    child.once('exit', (code) => reject(new Error(`server exited (${code}) before listening: ${err || out}`)))
    setTimeout(() => reject(new Error(`server did not listen in 30 s: ${err || out}`)), 30_000).unref()
  })
  const pid = child.pid!
  const ticks = 100 // USER_HZ on Linux
  const cpu = (): { user: number; system: number } => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { user: (Number(fields[11]) / ticks) * 1e6, system: (Number(fields[12]) / ticks) * 1e6 } // utime, stime
  }
  const mainThread = (): { cpuUs: number; preempted: number } => {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const status = readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8')
    const preempted = Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? NaN)
    return { cpuUs: ((Number(fields[11]) + Number(fields[12])) / ticks) * 1e6, preempted }
  }
  return {
    child,
    port,
    pid,
    stderr: () => err,
    cpu,
    mainThread,
    cpuUs() {
      const { user, system } = cpu()
      return user + system
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    },
  }
}

/** The Tandem CLI in a child process, anonymous writers allowed (rooms still need an ACL record). */
export const spawnTandem = (dataDir: string, options: { cpu?: number; preload?: string[]; nodeFlags?: string[]; args?: string[] } = {}): Promise<Child> =>
  spawnServer(
    [
      ...(options.nodeFlags ?? []),
      '--import',
      'tsx',
      ...(options.preload ?? []).flatMap((p) => ['--import', p]),
      'server/cli/main.ts',
      ...['--port', '0', '--host', '127.0.0.1', '--data-dir', dataDir, '--secret', BENCH_SECRET, '--allow-anonymous', '--log-level', 'warn'],
      ...(options.args ?? []),
    ],
    /listening on http:\/\/[^:]+:(\d+)/,
    // The defaults, whatever this shell's environment says (an empty variable counts as unset).
    { cpu: options.cpu, env: { TANDEM_SECRET: '', PORT: '', HOST: '', TANDEM_DATA_DIR: '', TANDEM_BROADCAST_WINDOW_MS: '', TANDEM_STORE_WINDOW_MS: '' } },
  )

/** Creates a room's ACL record that lets anyone with a session write (the CLI's rooms need one). */
export async function createOpenRoom(httpUrl: string, id: string): Promise<void> {
  const res = await fetch(`${httpUrl}/v1/rooms`, {
    method: 'POST',
    headers: { authorization: `Bearer ${BENCH_SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id, defaultAccesses: ['room:write'] }),
  })
  if (!res.ok) throw new Error(`POST /v1/rooms ${id}: ${res.status} ${await res.text()}`)
}
