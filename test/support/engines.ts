/**
 * Real Redis and PostgreSQL servers of a test's own, for the tests that stop or restart them (the
 * machine's own services stay untouched): `redis-server` and PostgreSQL's `initdb`/`postgres` on
 * free ports, with their data in temp dirs, stopped by the test or after it. Redis keeps an
 * append-only file fsynced on every write (`appendfsync always`), the persistence under which a
 * Redis restart loses nothing it acknowledged. PostgreSQL runs as the `postgres` user when the
 * tests run as root (it refuses root). Binaries: `TANDEM_REDIS_SERVER` (default `redis-server` on
 * the PATH) and `TANDEM_POSTGRES_BIN` (default the Debian path of PostgreSQL 15).
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { withDeadline } from './wait.ts'

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const waitForOutput = (child: ChildProcess, what: string, pattern: RegExp): Promise<void> => {
  let out = ''
  return withDeadline(
    what,
    new Promise<void>((resolve, reject) => {
      const check = (data: Buffer): void => {
        out += data.toString()
        if (pattern.test(out)) resolve()
      }
      child.stdout?.on('data', check)
      child.stderr?.on('data', check)
      child.once('exit', (code) => reject(new Error(`${what}: exited ${code}: ${out.slice(-2000)}`)))
    }),
    20_000,
  )
}

export interface EngineServer {
  readonly url: string
  readonly port: number
  /** Stops it (SIGTERM: a clean shutdown; SIGKILL: a crash); its data stays. */
  stop(signal?: NodeJS.Signals): Promise<void>
  /** Starts it again on the same port and data. */
  start(): Promise<void>
  /** Stops it and removes its data. */
  destroy(): Promise<void>
}

const stopChild = async (child: ChildProcess | null, signal: NodeJS.Signals): Promise<void> => {
  if (child === null || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill(signal)
  await exited
}

export async function startRedis(): Promise<EngineServer> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'tandem-redis-'))
  const binary = process.env['TANDEM_REDIS_SERVER'] || 'redis-server'
  let child: ChildProcess | null = null
  const start = async (): Promise<void> => {
    child = spawn(
      binary,
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--protected-mode', 'no'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    await waitForOutput(child, `redis-server on ${port}`, /Ready to accept connections/)
  }
  await start()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: (signal = 'SIGTERM') => stopChild(child, signal),
    start,
    async destroy() {
      await stopChild(child, 'SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

const POSTGRES_BIN = process.env['TANDEM_POSTGRES_BIN'] || '/usr/lib/postgresql/15/bin'

export async function startPostgres(): Promise<EngineServer> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'tandem-pg-'))
  const data = join(dir, 'data')
  // PostgreSQL refuses to run as root: as root, it runs as the postgres user.
  const asRoot = process.getuid?.() === 0
  const run = (command: string, args: string[]): string[] =>
    asRoot ? ['runuser', '-u', 'postgres', '--', join(POSTGRES_BIN, command), ...args] : [join(POSTGRES_BIN, command), ...args]
  if (asRoot) chmodSync(dir, 0o777)
  const [initdb, ...initArgs] = run('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync'])
  execFileSync(initdb!, initArgs, { stdio: 'ignore' })
  let child: ChildProcess | null = null
  const start = async (): Promise<void> => {
    const [postgres, ...args] = run('postgres', ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'])
    child = spawn(postgres!, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    await waitForOutput(child, `postgres on ${port}`, /database system is ready to accept connections/)
  }
  await start()
  // The postmaster itself (runuser does not pass signals on): SIGINT is its fast shutdown.
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const current = child
    if (current === null || current.exitCode !== null || current.signalCode !== null) return
    const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0])
    const exited = new Promise((resolve) => current.once('exit', resolve))
    process.kill(pid, signal === 'SIGTERM' ? 'SIGINT' : signal)
    if (signal === 'SIGKILL') current.kill('SIGKILL')
    await exited
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    stop,
    start,
    async destroy() {
      await stop('SIGKILL').catch(() => undefined)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
