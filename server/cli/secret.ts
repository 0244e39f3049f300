/**
 * The server secret the command line uses when none is configured: generated on first start and
 * kept in `<dataDir>/secret` (mode 0600), read back on every later start.
 *
 * Creation is atomic: the secret is written and fsynced under a temporary name, then hard-linked
 * to its final name, which fails if the file exists. So two servers starting at once agree on one
 * secret, and no reader ever sees a half-written file.
 */

import { randomBytes } from 'node:crypto'
import { link, mkdir, open, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { MIN_SECRET_LENGTH } from './config.ts'

export interface LoadedSecret {
  readonly secret: string
  /** The file it is kept in (print this, never the secret). */
  readonly path: string
  /** Whether this call generated it. */
  readonly created: boolean
  /** The file is readable or writable by group or others: the CLI warns (and still uses it). */
  readonly insecureMode: boolean
}

export async function loadOrCreateSecret(dataDir: string): Promise<LoadedSecret> {
  const path = join(dataDir, 'secret')
  const existing = await readSecretFile(path)
  if (existing !== null) return { ...existing, path, created: false }

  await mkdir(dataDir, { recursive: true })
  const secret = randomBytes(32).toString('base64url')
  const temporary = join(dataDir, `secret.${process.pid}.${randomBytes(6).toString('hex')}.tmp`)
  const handle = await open(temporary, 'wx', 0o600)
  try {
    await handle.writeFile(`${secret}\n`)
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    await link(temporary, path)
  } catch (err) {
    if (errorCode(err) !== 'EEXIST') throw err
    // Another process created it first: use theirs, which is complete (it was linked after fsync).
    const theirs = await readSecretFile(path)
    if (theirs === null) throw err
    return { ...theirs, path, created: false }
  } finally {
    await unlink(temporary)
  }
  return { secret, path, created: true, insecureMode: false }
}

/** The trimmed secret in `path`, or null if there is no such file. */
async function readSecretFile(path: string): Promise<{ secret: string; insecureMode: boolean } | null> {
  let handle: Awaited<ReturnType<typeof open>>
  try {
    handle = await open(path, 'r')
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return null
    throw err
  }
  try {
    const { mode } = await handle.stat()
    const secret = (await handle.readFile('utf8')).trim()
    if (secret.length < MIN_SECRET_LENGTH) {
      throw new Error(`secret file ${path} holds fewer than ${MIN_SECRET_LENGTH} characters; fix it, or delete it to generate a new secret`)
    }
    // Windows has no permission bits to speak of.
    const insecureMode = process.platform !== 'win32' && (mode & 0o077) !== 0
    return { secret, insecureMode }
  } finally {
    await handle.close()
  }
}

const errorCode = (err: unknown): unknown => (typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined)
