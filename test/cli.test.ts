/** The command line as a person runs it: where it listens, its secret, and one-line refusals. */

import { readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Level } from 'level'
import { SCHEMA_VERSION, VERSION_KEY } from '../server/store/keys.ts'
import { type CliProcess, runCli } from './support/cli-process.ts'
import { makeDataDir } from './support/server.ts'

const started: CliProcess[] = []
const dirs: string[] = []
const run = (args: string[], env?: NodeJS.ProcessEnv): CliProcess => {
  const cli = runCli(args, env)
  started.push(cli)
  return cli
}
const dataDir = (): string => {
  const dir = makeDataDir()
  dirs.push(dir)
  return dir
}

afterEach(() => {
  for (const cli of started.splice(0)) if (cli.child.exitCode === null) cli.child.kill('SIGKILL')
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

describe('tandem command line', () => {
  it('prints where it listens, generates a 0600 secret in the data dir and prints its path, not its value', async () => {
    const dir = dataDir()
    const cli = run(['--port', '0', '--data-dir', dir])
    const port = await cli.listening()
    const secretPath = join(dir, 'secret')
    const secret = readFileSync(secretPath, 'utf8').trim()
    expect(statSync(secretPath).mode & 0o777).toBe(0o600)
    expect(cli.stdout()).toContain(`secret kept in ${secretPath}`)
    expect(cli.stdout()).toContain(`listening on http://127.0.0.1:${port}`)
    expect(cli.stdout() + cli.stderr()).not.toContain(secret)

    const health = await fetch(`http://127.0.0.1:${port}/healthz`)
    expect(health.status).toBe(200)
    cli.child.kill('SIGTERM')
    expect((await cli.exited).code).toBe(0)
  })

  it('reads settings from the environment', async () => {
    const dir = dataDir()
    const cli = run([], { PORT: '0', TANDEM_DATA_DIR: dir, TANDEM_LOG_LEVEL: 'warn' })
    await cli.listening()
    expect(cli.stdout()).toContain(`data in ${dir}`)
  })

  it('a second server on the same data dir fails fast with one line', async () => {
    const dir = dataDir()
    const first = run(['--port', '0', '--data-dir', dir])
    await first.listening()
    const second = run(['--port', '0', '--data-dir', dir])
    const exit = await second.exited
    expect(exit.code).toBe(1)
    const lines = second.stderr().trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/data dir .* is in use by another Tandem server/)
    // The first one is unharmed.
    expect(first.child.exitCode).toBeNull()
  })

  it.each([
    [['--port', 'abc'], /--port \(PORT\)/],
    [['--log-level', 'loud'], /--log-level \(TANDEM_LOG_LEVEL\)/],
    [['--secret', 'short'], /--secret \(TANDEM_SECRET\)/],
    [['--bogus'], /--bogus/],
    [['--max-rooms', 'many'], /--max-rooms \(TANDEM_MAX_ROOMS\)/],
  ])('invalid config %j stops the start with one line naming the setting', async (args, pattern) => {
    const cli = run([...args, '--data-dir', dataDir()])
    expect((await cli.exited).code).toBe(1)
    const lines = cli.stderr().trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(pattern)
  })

  it('takes a limit from its flag: a raised connections-per-IP limit admits a reconnect storm behind one NAT', async () => {
    const cli = run(['--port', '0', '--data-dir', dataDir(), '--connections-per-ip-per-minute', '2000', '--log-level', 'warn'])
    const port = await cli.listening()
    // 700 requests to the upgrade route from one address (counted before any upgrade): past the
    // default of 600, within the raised limit.
    const statuses: number[] = []
    for (let i = 0; i < 700; i++) statuses.push((await fetch(`http://127.0.0.1:${port}/v1/sync/room`)).status)
    expect(statuses.filter((status) => status === 429)).toHaveLength(0)
    expect(statuses).toHaveLength(700)
  })

  it('a data dir written by another store schema stops the start with one line, not a stack trace', async () => {
    const dir = dataDir()
    const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' })
    await db.put(VERSION_KEY, Uint8Array.of(SCHEMA_VERSION + 1))
    await db.close()
    const cli = run(['--port', '0', '--data-dir', dir])
    expect((await cli.exited).code).toBe(1)
    const lines = cli.stderr().trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/holds store schema version 2, this server reads version 1/)
  })

  it('a bad value in the environment is named too', async () => {
    const cli = run(['--data-dir', dataDir()], { TANDEM_ALLOW_ANONYMOUS: 'maybe' })
    expect((await cli.exited).code).toBe(1)
    expect(cli.stderr().trim()).toMatch(/TANDEM_ALLOW_ANONYMOUS/)
  })
})
