/**
 * Storage faults (SPEC section 6): LevelDB write and read errors, simulated at the store interface
 * (test/support/faulty-store.ts). A failed append keeps the room working in memory, tells the
 * writer its writes wait, holds back `saved`, and retries by itself; a failed compaction leaves
 * the log intact; a failed load refuses the join and never writes an empty document over the
 * stored one; shutdown and room deletion do not hang on a disk that stays broken.
 */

import { Writable } from 'node:stream'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import * as Y from 'yjs'
import { openLevelStore } from '../server/store/level-store.ts'
import { type FaultyStore, openFaultyStore } from './support/faulty-store.ts'
import { type RawClient, rawClient } from './support/raw-client.ts'
import { createRoom, rest } from './support/rest.ts'
import { type TestServer, makeDataDir, startServer } from './support/server.ts'
import { countRecords } from './support/store-records.ts'
import { until, withDeadline } from './support/wait.ts'
import { rmSync } from 'node:fs'
import type { ServerOptions } from '../server/options.ts'

interface Harness {
  readonly faulty: FaultyStore
  readonly server: TestServer
  /** Parsed log lines, when the harness was started with `captureLogs`. */
  readonly logs: Record<string, unknown>[]
}

const harnesses: Harness[] = []
const clients: RawClient[] = []
/** Shutdowns a test started and may have left hanging (the disk was still broken). */
const closing: Promise<void>[] = []

const start = async (options: Partial<ServerOptions> = {}, faultyStore?: FaultyStore): Promise<Harness> => {
  const faulty = faultyStore ?? (await openFaultyStore())
  const logs: Record<string, unknown>[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>)
      done()
    },
  })
  const server = await startServer({ store: faulty, logger: pino({ level: 'info' }, sink), ...options }, faulty.dir)
  const harness = { faulty, server, logs }
  harnesses.push(harness)
  return harness
}

const connect = async (server: TestServer, room: string): Promise<RawClient> => {
  const client = await rawClient(server.syncUrl, room)
  clients.push(client)
  return client
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.close()
  // A broken disk heals, so whatever still waits on it (a shutdown, a deletion) can finish.
  const all = harnesses.splice(0)
  for (const h of all) h.faulty.recover()
  await withDeadline('hanging shutdowns to finish once the disk recovered', Promise.all(closing.splice(0)), 15_000)
  for (const h of all) {
    await h.server.stop()
    rmSync(h.faulty.dir, { recursive: true, force: true })
  }
})

/** A writer's own Y.Doc: `set(i)` writes `k<i> = i` to Y.Map 'm' and sends it as one update. */
const writerDoc = (client: RawClient): { set(i: number): void } => {
  const doc = new Y.Doc()
  doc.on('update', (u: Uint8Array) => client.sendUpdate(u))
  return { set: (i) => doc.getMap<number>('m').set(`k${i}`, i) }
}

/** `k0 = 0, ..., k<n-1> = n-1`, as Y.Map 'm' JSON. */
const keys = (from: number, to: number): Record<string, number> => Object.fromEntries(Array.from({ length: to - from }, (_, i) => [`k${from + i}`, from + i]))

const lastSaved = (client: RawClient): number => client.messages.reduce((max, m) => (m.kind === 'saved' ? Math.max(max, m.count) : max), 0)

/** The room's document as stored in `dir`, read through a fresh LevelStore (the server is stopped). */
const storedMap = async (dir: string, room: string): Promise<{ map: Record<string, unknown>; records: number }> => {
  const store = await openLevelStore(dir)
  try {
    const stored = await store.load(room)
    const doc = new Y.Doc()
    for (const u of stored.updates) Y.applyUpdate(doc, u)
    return { map: doc.getMap('m').toJSON(), records: stored.updates.length }
  } finally {
    await store.close()
  }
}

const failedCalls = (faulty: FaultyStore, op: 'append' | 'compact' | 'load', count: number): Promise<void> =>
  until(`${count} failed ${op} calls`, faulty.events, ['call'], () => faulty.failures[op] >= count)

describe('append failures', () => {
  it('keep the room working in memory, tell the writer, hold back saved, and retry until stored', async () => {
    const { faulty, server } = await start()
    const writer = await connect(server, 'r')
    const watcher = await connect(server, 'r')
    await Promise.all([writer.next('sync-step-2'), watcher.next('sync-step-2')])
    const doc = writerDoc(writer)
    for (let i = 0; i < 5; i++) doc.set(i)
    await writer.saved(5)

    faulty.fail('append')
    for (let i = 5; i < 25; i++) doc.set(i)
    // Applied and relayed at once: the other client and a newcomer see every write.
    await until('watcher has all 25 keys', watcher.doc, ['update'], () => watcher.doc.getMap('m').size === 25)
    const late = await connect(server, 'r')
    await late.next('sync-step-2')
    expect(late.doc.getMap('m').toJSON()).toEqual(keys(0, 25))

    // The writer hears its writes wait (a notice, not a close), and is not told they are saved.
    const notice = await writer.next('error')
    expect(notice.code).toBe('server_error')
    await failedCalls(faulty, 'append', 3)
    expect(lastSaved(writer)).toBe(5)
    expect(writer.socket.readyState).toBe(WebSocket.OPEN)
    expect(server.app.tandem.metrics.storeErrors).toBeGreaterThanOrEqual(3)

    // The disk recovers: the room retries by itself, and saved catches up.
    faulty.recover('append')
    await writer.saved(25, 15_000)
    expect(lastSaved(writer)).toBe(25)
    expect(writer.messages.filter((m) => m.kind === 'error' && m.code !== 'server_error')).toEqual([])

    await server.stop()
    expect((await storedMap(faulty.dir, 'r')).map).toEqual(keys(0, 25))
  })

  it('writes that arrive during the outage join the retried ones, from several writers', async () => {
    const { faulty, server } = await start()
    const a = await connect(server, 'r')
    const b = await connect(server, 'r')
    await Promise.all([a.next('sync-step-2'), b.next('sync-step-2')])
    const docA = writerDoc(a)
    const docB = writerDoc(b)
    faulty.fail('append')
    docA.set(0)
    await failedCalls(faulty, 'append', 1)
    for (let i = 1; i < 10; i++) (i % 2 === 0 ? docA : docB).set(i)
    await failedCalls(faulty, 'append', 3)
    expect(lastSaved(a) + lastSaved(b)).toBe(0)
    faulty.recover('append')
    await Promise.all([a.saved(5, 15_000), b.saved(5, 15_000)])
    await server.stop()
    expect((await storedMap(faulty.dir, 'r')).map).toEqual(keys(0, 10))
  })
})

describe('compaction failures', () => {
  it('leave the stored log intact, and the server keeps working and compacts once the disk recovers', async () => {
    const { faulty, server } = await start({ compactAfterRecords: 10 })
    faulty.fail('compact')
    const writer = await connect(server, 'r')
    await writer.next('sync-step-2')
    const doc = writerDoc(writer)
    // One record per write: each is acknowledged before the next goes out.
    for (let i = 0; i < 15; i++) {
      doc.set(i)
      await writer.saved(i + 1)
    }
    await failedCalls(faulty, 'compact', 1)
    // The log is whole (the compaction batch is atomic) and loads to the full content.
    expect(await countRecords(faulty.inner, 'r')).toBe(15)
    const stored = await faulty.inner.load('r')
    const fromDisk = new Y.Doc()
    for (const u of stored.updates) Y.applyUpdate(fromDisk, u)
    expect(fromDisk.getMap('m').toJSON()).toEqual(keys(0, 15))

    // Still serving: a newcomer syncs everything, and writes are stored and acknowledged.
    const other = await connect(server, 'r')
    await other.next('sync-step-2')
    expect(other.doc.getMap('m').toJSON()).toEqual(keys(0, 15))
    writerDoc(other).set(15)
    await other.saved(1)

    // Recovered: the next write's idle pass compacts.
    faulty.recover('compact')
    // Counted once a compaction has finished ('call' is emitted then; `calls` counts at the start).
    let compacted = 0
    faulty.events.on('call', (operation: string, failed: boolean) => {
      if (operation === 'compact' && !failed) compacted++
    })
    doc.set(16)
    await writer.saved(16)
    await until('a compaction succeeded', faulty.events, ['call'], () => compacted > 0)
    expect(await countRecords(faulty.inner, 'r')).toBe(1)

    // Broken again at shutdown: closing (which compacts a multi-record log) still finishes.
    faulty.fail('compact')
    for (let i = 17; i < 20; i++) {
      doc.set(i)
      await writer.saved(i)
    }
    const failuresBefore = faulty.failures.compact
    await withDeadline('app.close() while compaction fails', server.stop(), 5_000)
    expect(faulty.failures.compact).toBeGreaterThan(failuresBefore)
    const after = await storedMap(faulty.dir, 'r')
    expect(after.map).toEqual(keys(0, 20))
    expect(after.records).toBe(4)
  })
})

describe('load failures', () => {
  it('refuse the joining client with server_error and never write an empty document over the stored one', async () => {
    const dir = makeDataDir()
    const seed = new Y.Doc()
    seed.getMap<number>('m').set('k0', 0)
    seed.getMap<number>('m').set('k1', 1)
    const setup = await openLevelStore(dir)
    await setup.append('r', 0, [Y.encodeStateAsUpdate(seed)])
    await setup.close()

    const faulty = await openFaultyStore(dir)
    faulty.fail('load')
    const { server } = await start({}, faulty)
    // Two joins at once share the failing load; one of them writes before the room is there.
    const [first, second] = await Promise.all([connect(server, 'r'), connect(server, 'r')])
    writerDoc(first).set(99)
    for (const client of [first, second]) {
      const error = await client.next('error')
      expect(error.code).toBe('server_error')
      expect((await client.closed).code).toBe(1011)
    }
    expect(faulty.failures.load).toBeGreaterThanOrEqual(1)
    expect(server.app.tandem.registry.get('r')).toBeUndefined()
    expect(faulty.calls.append + faulty.calls.compact).toBe(0)
    expect(await countRecords(faulty.inner, 'r')).toBe(1)

    // The disk recovers: the next join loads the old content (the refused write was never applied).
    faulty.recover('load')
    const third = await connect(server, 'r')
    await third.next('sync-step-2')
    expect(third.doc.getMap('m').toJSON()).toEqual(keys(0, 2))
    third.close()
    await third.closed

    await server.stop()
    expect(faulty.calls.append).toBe(0)
    expect(await storedMap(dir, 'r')).toEqual({ map: keys(0, 2), records: 1 })
  })
})

describe('shutdown and deletion while appends fail', () => {
  it('if the disk recovers during the shutdown, close finishes and every applied write is stored', async () => {
    const { faulty, server } = await start()
    const writer = await connect(server, 'r')
    await writer.next('sync-step-2')
    const doc = writerDoc(writer)
    faulty.fail('append')
    for (let i = 0; i < 10; i++) doc.set(i)
    await failedCalls(faulty, 'append', 1)
    const stopped = server.stop()
    closing.push(stopped)
    await failedCalls(faulty, 'append', 3)
    faulty.recover('append')
    await withDeadline('app.close() after the disk recovered', stopped, 10_000)
    expect((await writer.closed).code).toBe(1012)
    expect((await storedMap(faulty.dir, 'r')).map).toEqual(keys(0, 10))
  })

  // A closing room retries a failing store for 2 s, then gives up and says in the log what it
  // could not store; a shutdown never waits on a broken disk.
  it('close ends within 5 s on a disk that stays broken, closes sockets with 1012, and logs the writes it could not store', async () => {
    const { faulty, server, logs } = await start()
    const writer = await connect(server, 'r')
    await writer.next('sync-step-2')
    const doc = writerDoc(writer)
    doc.set(0)
    await writer.saved(1)
    faulty.fail('append')
    for (let i = 1; i < 10; i++) doc.set(i)
    await failedCalls(faulty, 'append', 1)
    const logsBefore = logs.length

    const stopped = server.stop()
    closing.push(stopped)
    await withDeadline('app.close() while every append fails', stopped, 5_000)
    expect((await writer.closed).code).toBe(1012)
    // Clients keep their unacknowledged writes and resend them on reconnecting; the log says which
    // room lost which writes on this server.
    const reported = logs
      .slice(logsBefore)
      .filter((line) => line.roomId === 'r' && (line.level as number) >= 50 && /not (been )?stored|unsaved|lost/i.test(String(line.msg)))
    expect(reported.length).toBeGreaterThanOrEqual(1)
    expect((await storedMap(faulty.dir, 'r')).map).toEqual(keys(0, 1))
  })

  // A deleted room's store retry stops at once, so the DELETE (and REST writes queued behind it)
  // does not wait on a broken disk.
  it('deleting a room answers within 5 s while its appends fail', async () => {
    const { faulty, server } = await start()
    await createRoom(server.app, { id: 'r', defaultAccesses: ['room:write'] })
    const writer = await connect(server, 'r')
    await writer.next('sync-step-2')
    faulty.fail('append')
    writerDoc(writer).set(0)
    await failedCalls(faulty, 'append', 1)
    const deleting = rest(server.app, 'DELETE', '/v1/rooms/r')
    closing.push(deleting.then(() => undefined))
    const res = await withDeadline('DELETE /v1/rooms/r while appends fail', deleting, 5_000)
    expect(res.statusCode).toBe(204)
    expect((await writer.closed).code).toBe(4404)
    expect(await countRecords(faulty.inner, 'r')).toBe(0)
  })
})
