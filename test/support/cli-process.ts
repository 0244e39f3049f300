/** Runs the real command line (`node --import tsx server/cli/main.ts`) as a child process. */

import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { withDeadline } from './wait.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))

export interface CliProcess {
  readonly child: ChildProcess
  readonly stdout: () => string
  readonly stderr: () => string
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Resolves with the port from the "listening on" line. */
  listening(): Promise<number>
}

/** `prefix` runs the command through another, e.g. `nsenter` into a mount namespace (support/small-disk.ts). */
export const runCli = (args: string[], env: NodeJS.ProcessEnv = {}, prefix: readonly string[] = []): CliProcess => {
  const command = [...prefix, process.execPath, '--import', 'tsx', 'server/cli/main.ts', ...args]
  const child = spawn(command[0]!, command.slice(1), {
    cwd: root,
    env: { ...process.env, TANDEM_SECRET: '', PORT: '', HOST: '', TANDEM_DATA_DIR: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  const watchers = new Set<() => void>()
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString()
    for (const w of watchers) w()
  })
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString()
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      resolve({ code, signal })
      for (const w of watchers) w()
    })
  })
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    listening: () =>
      withDeadline(
        'the server to listen',
        new Promise<number>((resolve, reject) => {
          const check = (): void => {
            const match = /listening on http:\/\/[^:]+:(\d+)/.exec(out)
            if (match) {
              watchers.delete(check)
              resolve(Number(match[1]))
            } else if (child.exitCode !== null || child.signalCode !== null) {
              watchers.delete(check)
              reject(new Error(`server exited before listening: ${err}`))
            }
          }
          watchers.add(check)
          check()
        }),
        20_000,
      ),
  }
}
