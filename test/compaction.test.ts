/**
 * Compaction and room lifecycle: a long history loads as a snapshot, the log shrinks without losing
 * or duplicating anything, and idle rooms leave memory only after their writes are stored.
 */

import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { openLevelStore } from '../server/store/level-store.ts'
import { rawClient } from './support/raw-client.ts'
import { type TestServer, makeDataDir, serversPerTest } from './support/server.ts'
import { countRecords } from './support/store-records.ts'
import { once, until } from './support/wait.ts'

const { start, track } = serversPerTest()

/** 10,000 small updates as separate Yjs updates, like a long editing session. */
const history = (count: number): { updates: Uint8Array[]; text: string } => {
  const doc = new Y.Doc()
  const updates: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => updates.push(u))
  const text = doc.getText('t')
  for (let i = 0; i < count; i++) {
    if (i % 5 === 4) text.delete(text.length - 1, 1)
    else text.insert(text.length, String.fromCharCode(97 + (i % 26)))
  }
  return { updates, text: text.toString() }
}

const contentOf = async (server: TestServer, room: string): Promise<string> => {
  const reader = await rawClient(server.syncUrl, room)
  await reader.next('sync-step-2')
  reader.close()
  return reader.doc.getText('t').toString()
}

describe('compaction', () => {
  it('a room with 10,000 stored updates reloads with the same content and its log shrinks to one record', async () => {
    const dataDir = makeDataDir()
    const { updates, text } = history(10_000)
    const store = await openLevelStore(dataDir)
    for (let i = 0; i < updates.length; i += 1_000) await store.append('long', i, updates.slice(i, i + 1_000))
    expect(await countRecords(store, 'long')).toBe(10_000)
    await store.close()

    const server = await start({ idleUnloadMs: 50 }, dataDir)
    const unloaded = once('room unloaded', server.app.tandem.registry.events, 'unloaded')
    expect(await contentOf(server, 'long')).toBe(text)
    await unloaded
    // Loading a log past the threshold compacts it; unloading leaves a single snapshot.
    expect(await countRecords(server.app.tandem.store, 'long')).toBe(1)
    expect(server.app.tandem.metrics.compactions).toBeGreaterThanOrEqual(1)

    const restarted = await server.restart()
    track(restarted)
    expect(await contentOf(restarted, 'long')).toBe(text)
  })

  it('compacts in the background while writes keep arriving, losing and duplicating nothing', async () => {
    const server = await start({ compactAfterRecords: 50 })
    const writer = await rawClient(server.syncUrl, 'busy')
    await writer.next('sync-step-2')
    const { updates, text } = history(3_000)
    // Send in waves, waiting for each wave's acknowledgement, so the log grows record by record.
    for (let i = 0; i < updates.length; i += 100) {
      for (const u of updates.slice(i, i + 100)) writer.sendUpdate(u)
      await writer.saved(Math.min(i + 100, updates.length))
    }
    const room = server.app.tandem.registry.get('busy')!
    await room.flush()
    expect(server.app.tandem.metrics.compactions).toBeGreaterThan(0)
    expect(await countRecords(server.app.tandem.store, 'busy')).toBeLessThan(50)
    expect(room.doc.getText('t').toString()).toBe(text)

    const stored = await server.app.tandem.store.load('busy')
    const fromDisk = new Y.Doc()
    for (const u of stored.updates) Y.applyUpdate(fromDisk, u)
    expect(fromDisk.getText('t').toString()).toBe(text)
  })
})

describe('room lifecycle', () => {
  it('unloads an idle room after its writes are stored, and loads it again for the next editor', async () => {
    const server = await start({ idleUnloadMs: 20 })
    const { registry } = server.app.tandem
    const writer = await rawClient(server.syncUrl, 'idle')
    const doc = new Y.Doc()
    doc.on('update', (u: Uint8Array) => writer.sendUpdate(u))
    doc.getText('t').insert(0, 'kept')
    await until('room loaded', registry.events, ['loaded'], () => registry.get('idle') !== undefined)
    const unloaded = once('room unloaded', registry.events, 'unloaded')
    writer.close()
    await unloaded
    expect(registry.get('idle')).toBeUndefined()

    expect(await contentOf(server, 'idle')).toBe('kept')
  })

  it('an editor arriving while the room unloads gets the whole document', async () => {
    const server = await start({ idleUnloadMs: 0 })
    const { registry } = server.app.tandem
    for (let round = 0; round < 20; round++) {
      const writer = await rawClient(server.syncUrl, 'churn')
      await writer.next('sync-step-2')
      const doc = new Y.Doc()
      Y.applyUpdate(doc, Y.encodeStateAsUpdate(writer.doc))
      doc.on('update', (u: Uint8Array) => writer.sendUpdate(u))
      doc.getArray<number>('a').push([round])
      await writer.saved(1)
      writer.close()
      // The next round connects at once: sometimes before, during or after the unload.
    }
    await until('no rooms', registry.events, ['unloaded'], () => registry.size === 0)
    const reader = await rawClient(server.syncUrl, 'churn')
    await reader.next('sync-step-2')
    expect(reader.doc.getArray('a').toArray()).toEqual(Array.from({ length: 20 }, (_, i) => i))
  })
})
