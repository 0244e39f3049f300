/**
 * A full disk, for real (issue 12): the real command line with its data dir on a small tmpfs of
 * its own (support/small-disk.ts). While the disk is full, writers are told and nothing is
 * acknowledged; a revocation and a downgrade still act on live sessions (the REST answer says they
 * are not stored); once space is freed the store reopens and every held write is stored and
 * acknowledged; after kill -9 every acknowledged write is there; and a server starts on a disk
 * that is full, serving what is stored.
 */

import { join } from 'node:path'
import { afterEach, expect, it } from 'vitest'
import * as Y from 'yjs'
import { CloseCode } from '../protocol/errors.ts'
import { mintIdToken } from '../protocol/mint.ts'
import { PermissionBit } from '../protocol/permissions.ts'
import type { CliProcess } from './support/cli-process.ts'
import { type RawClient, rawClient } from './support/raw-client.ts'
import { TEST_SECRET } from './support/server.ts'
import { type SmallDisk, smallDisk } from './support/small-disk.ts'
import { until, withDeadline } from './support/wait.ts'

const clis: CliProcess[] = []
const clients: RawClient[] = []
let disk: SmallDisk | null = null
afterEach(async () => {
  for (const client of clients.splice(0)) client.close()
  for (const cli of clis.splice(0)) if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL')
  await disk?.destroy()
  disk = null
})

const ROOM = 'disk-room'
const token = async (userId: string): Promise<string> => (await mintIdToken(TEST_SECRET, { userId })).token

it('full disk: told, held, fail-closed access, recovered, nothing acknowledged lost, starts on a full disk', async () => {
  disk = await smallDisk(24 * 1024 * 1024)
  const dataDir = join(disk.dir, 'data')
  const args = [
    '--port',
    '0',
    '--data-dir',
    dataDir,
    '--secret',
    TEST_SECRET,
    '--log-level',
    'warn',
    '--store-window-ms',
    '0',
    '--disk-reserve-bytes',
    String(2 * 1024 * 1024),
  ]
  const start = async (): Promise<{ cli: CliProcess; port: number }> => {
    const cli = disk!.runCli(args)
    clis.push(cli)
    return { cli, port: await cli.listening() }
  }
  let { cli, port } = await start()
  const http = (path: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${port}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${TEST_SECRET}`, 'content-type': 'application/json', ...init.headers },
    })
  const connect = async (userId: string): Promise<RawClient> => {
    const client = await rawClient(`ws://127.0.0.1:${port}/v1/sync`, ROOM, { token: await token(userId) })
    clients.push(client)
    return client
  }
  expect(
    (
      await http('/v1/rooms', {
        method: 'POST',
        body: JSON.stringify({ id: ROOM, defaultAccesses: [], usersAccesses: { wes: ['room:write'], dan: ['room:write'], ray: ['room:write'] } }),
      })
    ).status,
  ).toBe(200)

  // wes writes; every write carries a marker, so the store can be checked against what was acknowledged.
  const wes = await connect('wes')
  await wes.next('sync-step-2')
  const doc = new Y.Doc()
  const written: string[] = []
  const write = (marker: string, pad = 0): void => {
    const updates: Uint8Array[] = []
    doc.once('update', (u: Uint8Array) => updates.push(u))
    doc.getText('t').insert(doc.getText('t').length, `[${marker}]${'.'.repeat(pad)}`)
    written.push(marker)
    wes.sendUpdate(updates[0]!)
  }
  const acked = (): number => Math.max(0, ...wes.messages.flatMap((m) => (m.kind === 'saved' ? [m.count] : [])))
  for (let i = 0; i < 20; i++) write(`a${i}`)
  await wes.saved(20)
  const dan = await connect('dan')
  const ray = await connect('ray')
  await Promise.all([dan.next('sync-step-2'), ray.next('sync-step-2')])

  // The disk fills up (the server's reserve aside): writes are held, and wes is told. (The log
  // file's last page has room for a few small records: these are larger than a page together.)
  disk.fill()
  for (let i = 0; i < 10; i++) write(`b${i}`, 2_048)
  await wes.next('error', (m) => m.code === 'server_error')
  const whileFull = acked()
  expect(whileFull).toBeLessThan(30)

  // Access changes still act on live sessions; the answer says they are not stored.
  const revoke = await http('/v1/revoke', { method: 'POST', body: JSON.stringify({ userId: 'dan' }) })
  expect(revoke.status).toBe(503)
  expect(((await revoke.json()) as { error: string }).error).toBe('unavailable')
  expect((await withDeadline('dan closed', dan.closed)).code).toBe(CloseCode.forbidden)
  const danAgain = await connect('dan')
  expect((await withDeadline('dan refused', danAgain.closed)).code).toBe(CloseCode.forbidden)
  const downgrade = await http(`/v1/rooms/${ROOM}`, { method: 'POST', body: JSON.stringify({ usersAccesses: { ray: ['room:read'] } }) })
  expect(downgrade.status).toBe(503)
  await ray.next('access-changed', (m) => m.permissions === PermissionBit.read)
  expect(((await (await http('/healthz')).json()) as { store: string }).store).toBe('read_only')
  expect(acked()).toBe(whileFull) // nothing acknowledged while the store cannot write

  // Space comes back: the store reopens, the held writes are stored and acknowledged, new ones too.
  disk.unfill()
  await wes.saved(30, 20_000)
  // The backend was told the revocation is not stored: it sends it again, and now it is.
  expect((await http('/v1/revoke', { method: 'POST', body: JSON.stringify({ userId: 'dan' }) })).status).toBe(200)
  for (let i = 0; i < 10; i++) write(`c${i}`)
  await wes.saved(40)
  expect(((await (await http('/healthz')).json()) as { store: string }).store).toBe('ok')

  // kill -9 mid-stream, with the disk filling again: every acknowledged write survives.
  for (let i = 0; i < 30; i++) write(`d${i}`)
  disk.fill(64 * 1024)
  for (let i = 0; i < 30; i++) write(`e${i}`, 4_096)
  await until('some writes acknowledged or refused', wes.socket, ['message'], () => acked() >= 40)
  const acknowledged = written.slice(0, acked())
  cli.child.kill('SIGKILL')
  await cli.exited
  // The disk is now full to the last byte, reserve aside: the server must still start.
  disk.fill()
  ;({ cli, port } = await start())
  const reader = await connect('wes')
  await reader.next('sync-step-2', undefined, 20_000)
  const stored = reader.doc.getText('t').toString()
  for (const marker of acknowledged) expect(stored).toContain(`[${marker}]`)
  // And what was refused while the disk was full is refused again: dan stays out.
  const danLater = await connect('dan')
  expect((await withDeadline('dan refused after restart', danLater.closed)).code).toBe(CloseCode.forbidden)
}, 90_000)
