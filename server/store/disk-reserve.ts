/**
 * A reserve file in the data dir (a ballast, as CockroachDB keeps one): space held back so that
 * LevelDB can recover and the server can start when the disk is full. Opening LevelDB replays its
 * log into a table, which needs free space; on a full disk the open fails. With a reserve, the
 * store gives it up, opens, and stays read-only until the disk has room again, then takes it back.
 */

import { open, rm, stat, statfs } from 'node:fs/promises'
import { join } from 'node:path'

export const RESERVE_FILE = 'reserve'

/** Bytes free for this process on the filesystem of `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const fs = await statfs(dir)
  return fs.bavail * fs.bsize
}

/** Whether `err` (or its cause) is the disk being full. */
export function isDiskFull(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if ((e as { code?: unknown }).code === 'ENOSPC' || /no space left on device/i.test(e.message)) return true
  }
  return false
}

export class DiskReserve {
  readonly #path: string
  readonly #bytes: number

  constructor(dir: string, bytes: number) {
    this.#path = join(dir, RESERVE_FILE)
    this.#bytes = bytes
  }

  get bytes(): number {
    return this.#bytes
  }

  /** Whether the reserve is in place, whole. */
  async held(): Promise<boolean> {
    if (this.#bytes === 0) return true
    try {
      return (await stat(this.#path)).size >= this.#bytes
    } catch {
      return false
    }
  }

  /** Writes the reserve (zeros, fsynced). Says false, leaving nothing behind, when there is no room. */
  async take(): Promise<boolean> {
    if (this.#bytes === 0 || (await this.held())) return true
    const chunk = Buffer.alloc(Math.min(this.#bytes, 1024 * 1024))
    let file: Awaited<ReturnType<typeof open>> | null = null
    try {
      file = await open(this.#path, 'w', 0o600)
      for (let written = 0; written < this.#bytes; written += chunk.length) {
        await file.write(chunk, 0, Math.min(chunk.length, this.#bytes - written))
      }
      await file.sync()
      await file.close()
      return true
    } catch (err) {
      await file?.close().catch(() => undefined)
      await rm(this.#path, { force: true })
      if (isDiskFull(err)) return false
      throw err
    }
  }

  /** Gives the reserve's space back to the filesystem (for LevelDB's recovery). */
  async release(): Promise<void> {
    await rm(this.#path, { force: true })
  }
}
