/**
 * A small filesystem of its own for a test's data dir: a tmpfs of a few MiB, mounted in a private
 * mount namespace (`unshare`, as root or as any user where user namespaces are allowed), so a test
 * fills a real disk without touching the machine's. Servers run inside the namespace (`nsenter`);
 * the test reaches the files through `/proc/<pid>/root`. The namespace lives as long as its holder
 * process, so a `kill -9` of a server keeps the data.
 */

import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, openSync, closeSync, rmSync, statfsSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type CliProcess, runCli } from './cli-process.ts'
import { withDeadline } from './wait.ts'

export interface SmallDisk {
  /** The mount point, as processes in the namespace see it. */
  readonly dir: string
  /** The same directory as this process reaches it. */
  readonly hostDir: string
  /** Starts the real command line inside the namespace. */
  runCli(args: string[], env?: NodeJS.ProcessEnv): CliProcess
  /** Bytes free on the small disk. */
  free(): number
  /** Fills the disk with a filler file until only about `leave` bytes are free. */
  fill(leave?: number): void
  /** Deletes the filler. */
  unfill(): void
  destroy(): Promise<void>
}

export async function smallDisk(bytes: number): Promise<SmallDisk> {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-disk-'))
  const holder: ChildProcess = spawn(
    'unshare',
    ['--user', '--map-root-user', '--mount', 'sh', '-c', `mount -t tmpfs -o size=${bytes} tandem-test "$0" && echo mounted && exec sleep 3600`, dir],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let err = ''
  holder.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  await withDeadline(
    'the small disk mounted',
    new Promise<void>((resolve, reject) => {
      holder.stdout!.on('data', (d: Buffer) => d.toString().includes('mounted') && resolve())
      holder.on('exit', (code) =>
        reject(
          new Error(
            `could not mount a tmpfs in a mount namespace (unshare exited ${code}: ${err.trim()}); run the tests as root or where user namespaces are allowed`,
          ),
        ),
      )
    }),
  )
  const hostDir = `/proc/${holder.pid}/root${dir}`
  const filler = join(hostDir, 'filler')
  // In the namespace, from the checkout (nsenter would start in the holder's working directory).
  const prefix = ['nsenter', '-t', String(holder.pid), '--user', '--mount', '--preserve-credentials', `--wd=${process.cwd()}`]
  const free = (): number => {
    const fs = statfsSync(hostDir)
    return fs.bavail * fs.bsize
  }
  return {
    dir,
    hostDir,
    runCli: (args, env) => runCli(args, env, prefix),
    free,
    fill(leave = 0) {
      const fd = openSync(filler, 'a')
      const chunk = Buffer.alloc(64 * 1024)
      try {
        for (let room = free() - leave; room > 0; room = free() - leave) writeSync(fd, chunk, 0, Math.min(chunk.length, room))
      } catch (e) {
        if ((e as { code?: string }).code !== 'ENOSPC') throw e
      } finally {
        closeSync(fd)
      }
    },
    unfill() {
      rmSync(filler, { force: true })
    },
    async destroy() {
      holder.kill('SIGKILL')
      await new Promise((resolve) => holder.once('exit', resolve))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
