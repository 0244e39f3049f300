/**
 * Durability through the real command line: every write the server acknowledged as saved survives
 * `kill -9` of the process and a restart on the same data dir, nothing duplicated.
 */

import { rmSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { type CliProcess, runCli } from './support/cli-process.ts'
import { rawClient } from './support/raw-client.ts'
import { TEST_SECRET, makeDataDir } from './support/server.ts'
import { until } from './support/wait.ts'

const started: CliProcess[] = []
const dirs: string[] = []
const start = (dataDir: string): CliProcess => {
  const cli = runCli(['--port', '0', '--data-dir', dataDir, '--secret', TEST_SECRET, '--allow-anonymous', '--log-level', 'warn'])
  started.push(cli)
  return cli
}

/** Creates rooms any anonymous client may write, over REST, as a backend would. */
const createRooms = async (port: number, ...ids: string[]): Promise<void> => {
  for (const id of ids) {
    const res = await fetch(`http://127.0.0.1:${port}/v1/rooms`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_SECRET}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id, defaultAccesses: ['room:write'] }),
    })
    expect(res.status).toBe(200)
  }
}

afterEach(() => {
  for (const cli of started.splice(0)) if (cli.child.exitCode === null) cli.child.kill('SIGKILL')
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

/** Reads a room's whole content from a running server, as a new client. */
const readRoom = async (port: number, room: string): Promise<Y.Doc> => {
  const reader = await rawClient(`ws://127.0.0.1:${port}/v1/sync`, room)
  await reader.next('sync-step-2')
  reader.close()
  return reader.doc
}

describe('durability', () => {
  it('every acknowledged write survives kill -9, nothing duplicated', async () => {
    const dataDir = makeDataDir()
    dirs.push(dataDir)
    const first = start(dataDir)
    const port = await first.listening()
    await createRooms(port, 'alpha', 'beta')

    // Two writers in two rooms, each a real Y.Doc whose updates go out one by one.
    const expected = new Map<string, string>()
    for (const room of ['alpha', 'beta']) {
      const client = await rawClient(`ws://127.0.0.1:${port}/v1/sync`, room)
      const doc = new Y.Doc()
      const updates: Uint8Array[] = []
      doc.on('update', (u: Uint8Array) => updates.push(u))
      const text = doc.getText('t')
      for (let i = 0; i < 300; i++) {
        text.insert(text.length, `${room}-${i};`)
        if (i % 7 === 0) text.delete(0, 1)
      }
      doc.getMap('m').set('done', true)
      for (const u of updates) client.sendUpdate(u)
      await client.saved(updates.length)
      expected.set(room, text.toString())
      client.close()
    }

    first.child.kill('SIGKILL')
    expect((await first.exited).signal).toBe('SIGKILL')

    const second = start(dataDir)
    const port2 = await second.listening()
    for (const [room, text] of expected) {
      const doc = await readRoom(port2, room)
      expect(doc.getText('t').toString()).toBe(text)
      expect(doc.getMap('m').get('done')).toBe(true)
    }
  })

  it('writes acknowledged just before the kill are there, while later ones may be missing but never half-there', async () => {
    const dataDir = makeDataDir()
    dirs.push(dataDir)
    const first = start(dataDir)
    const port = await first.listening()
    await createRooms(port, 'gamma')
    const client = await rawClient(`ws://127.0.0.1:${port}/v1/sync`, 'gamma')
    const doc = new Y.Doc()
    const updates: Uint8Array[] = []
    doc.on('update', (u: Uint8Array) => updates.push(u))
    const map = doc.getMap<number>('m')
    for (let i = 0; i < 500; i++) map.set(`k${i}`, i)
    for (const u of updates) client.sendUpdate(u)

    // Kill as soon as the first 200 writes are acknowledged; the rest are in flight.
    await client.saved(200)
    const acked = Math.max(...client.messages.flatMap((m) => (m.kind === 'saved' ? [m.count] : [])))
    first.child.kill('SIGKILL')
    await first.exited

    const second = start(dataDir)
    const restored = await readRoom(await second.listening(), 'gamma')
    const keys = [...restored.getMap<number>('m').keys()].map((k) => Number(k.slice(1))).sort((a, b) => a - b)
    // Writes are stored in order: what survived is a prefix, at least as long as what was acknowledged.
    expect(keys.length).toBeGreaterThanOrEqual(acked)
    expect(keys).toEqual(Array.from({ length: keys.length }, (_, i) => i))
  })

  it('SIGTERM stores pending writes, exits 0, and a restart has them', async () => {
    const dataDir = makeDataDir()
    dirs.push(dataDir)
    const first = start(dataDir)
    const port = await first.listening()
    await createRooms(port, 'delta')
    const writer = await rawClient(`ws://127.0.0.1:${port}/v1/sync`, 'delta')
    const watcher = await rawClient(`ws://127.0.0.1:${port}/v1/sync`, 'delta')
    const doc = new Y.Doc()
    doc.on('update', (u: Uint8Array) => writer.sendUpdate(u))
    for (let i = 0; i < 100; i++) doc.getArray<number>('a').push([i])
    // Once the watcher has every write, the server has applied them all; then stop it at once.
    await until('watcher has all', watcher.doc, ['update'], () => watcher.doc.getArray('a').length === 100)
    first.child.kill('SIGTERM')
    const [closeWriter, exit] = await Promise.all([writer.closed, first.exited])
    expect(closeWriter.code).toBe(1012)
    expect(exit.code).toBe(0)

    const second = start(dataDir)
    const restored = await readRoom(await second.listening(), 'delta')
    expect(restored.getArray('a').toArray()).toEqual(Array.from({ length: 100 }, (_, i) => i))
  })
})
