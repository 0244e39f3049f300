/**
 * Crashes at random moments, through the real command line: `kill -9` while clients write as fast
 * as acknowledgements allow (sometimes in the middle of a burst), and while a long log is being
 * compacted. After each restart, every acknowledged write is there, each writer's surviving writes
 * are a prefix of what it sent, and nothing is duplicated. Seeded (lib0/prng): each run prints its
 * seed and figures; `TANDEM_SEED=<n>` replays one.
 */

import { rmSync } from 'node:fs'
import * as prng from 'lib0/prng'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { decodeServerMessage } from '../protocol/messages.ts'
import { openLevelStore } from '../server/store/level-store.ts'
import { type CliProcess, runCli } from './support/cli-process.ts'
import { seedsFromEnv } from './support/random.ts'
import { countRecords } from './support/store-records.ts'
import { type RawClient, rawClient } from './support/raw-client.ts'
import { TEST_SECRET, makeDataDir } from './support/server.ts'
import { withDeadline } from './support/wait.ts'

const SEEDS = seedsFromEnv([0x7a3d01, 0x51c9e2, 0x2f60b7])

const started: CliProcess[] = []
const dirs: string[] = []
const clients: RawClient[] = []

afterEach(() => {
  for (const c of clients.splice(0)) c.close()
  for (const cli of started.splice(0)) if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL')
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

// No store window: the flow-controlled writers below (a few writes in flight, more only once
// acknowledged) must reach thousands of acknowledgements in seconds, and a window makes each of
// their round trips last it. Kills under the default window: durability.test.ts.
const start = async (dataDir: string): Promise<{ cli: CliProcess; port: number }> => {
  const cli = runCli(['--port', '0', '--data-dir', dataDir, '--secret', TEST_SECRET, '--allow-anonymous', '--log-level', 'warn', '--store-window-ms', '0'])
  started.push(cli)
  return { cli, port: await cli.listening() }
}

/** Creates a room any anonymous client may write, over REST, as a backend would. */
const createRoom = async (port: number, id: string): Promise<void> => {
  const res = await fetch(`http://127.0.0.1:${port}/v1/rooms`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id, defaultAccesses: ['room:write'] }),
  })
  expect(res.status).toBe(200)
}

const connect = async (port: number, room: string): Promise<RawClient> => {
  const client = await rawClient(`ws://127.0.0.1:${port}/v1/sync`, room)
  clients.push(client)
  return client
}

/** Reads a room's whole content from a running server, as a new client. */
const readRoom = async (port: number, room: string): Promise<Y.Doc> => {
  const reader = await connect(port, room)
  await reader.next('sync-step-2')
  reader.close()
  return reader.doc
}

const kill = async (cli: CliProcess): Promise<void> => {
  if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL')
  expect((await withDeadline('the killed server to exit', cli.exited)).signal).toBe('SIGKILL')
}

const lastSaved = (client: RawClient): number => client.messages.reduce((max, m) => (m.kind === 'saved' ? Math.max(max, m.count) : max), 0)

/**
 * One writer: its own Y.Doc whose write `j` sets `k<i> = i` in Y.Map 'm' and pushes `i` to Y.Array
 * 'log' in one transaction (one update), where `i = base + j`. The array shows a duplicate that
 * the map would hide.
 */
class Writer {
  readonly #doc = new Y.Doc()
  sent = 0

  constructor(
    readonly client: RawClient,
    readonly base: number,
  ) {
    this.#doc.on('update', (u: Uint8Array) => client.sendUpdate(u))
  }

  write(): void {
    const i = this.base + this.sent++
    this.#doc.transact(() => {
      this.#doc.getMap<number>('m').set(`k${i}`, i)
      this.#doc.getArray<number>('log').push([i])
    })
  }

  get acked(): number {
    return lastSaved(this.client)
  }
}

/** How many writes of the writer with `base` a doc holds. */
const countOf = (doc: Y.Doc, base: number): number =>
  doc
    .getArray<number>('log')
    .toArray()
    .filter((i) => i >= base && i < base + 100_000).length

/**
 * Checks a restored doc against writers whose server was killed: no value under the wrong key, no
 * duplicate, and for each writer a prefix of what it sent that holds at least what was acknowledged.
 * Returns the writes checked.
 */
const checkRestored = (doc: Y.Doc, writers: readonly { base: number; sent: number; acked: number }[]): number => {
  const map = doc.getMap<number>('m').toJSON() as Record<string, number>
  const log = doc.getArray<number>('log').toArray()
  expect(new Set(log).size).toBe(log.length)
  expect(new Set(log)).toEqual(new Set(Object.values(map)))
  for (const [key, value] of Object.entries(map)) expect(key).toBe(`k${value}`)
  let checked = 0
  for (const w of writers) {
    const mine = log
      .filter((i) => i >= w.base && i < w.base + 100_000)
      .map((i) => i - w.base)
      .sort((a, b) => a - b)
    expect(mine).toEqual(Array.from({ length: mine.length }, (_, j) => j))
    expect(mine.length).toBeGreaterThanOrEqual(w.acked)
    expect(mine.length).toBeLessThanOrEqual(w.sent)
    checked += mine.length
  }
  return checked
}

/**
 * Two writers in `room` write until `shouldKill()` says so, then the server dies. `window`: each
 * keeps that many writes in flight, topping up on every `saved`. `burst`: each sends `burst`
 * writes at once. Resolves once the server is dead and both sockets closed.
 */
const writeUntilKilled = async (
  cli: CliProcess,
  port: number,
  room: string,
  bases: readonly number[],
  mode: { kind: 'window'; window: number; killAt: number } | { kind: 'burst'; burst: number; killAt: number },
): Promise<Writer[]> => {
  const writers = await Promise.all(bases.map(async (base) => new Writer(await connect(port, room), base)))
  await Promise.all(writers.map((w) => w.client.next('sync-step-2')))
  let killed = false
  const total = (): number => writers.reduce((sum, w) => sum + w.acked, 0)
  for (const w of writers) {
    // Registered after rawClient's own listener: `messages` already holds the new `saved`.
    w.client.socket.on('message', () => {
      if (killed) return
      if (total() >= mode.killAt) {
        killed = true
        cli.child.kill('SIGKILL')
        return
      }
      if (mode.kind === 'window') while (w.sent - w.acked < mode.window) w.write()
    })
  }
  for (const w of writers) {
    if (mode.kind === 'window') for (let j = 0; j < mode.window; j++) w.write()
    else for (let j = 0; j < mode.burst; j++) w.write()
  }
  await withDeadline('the kill', cli.exited, 20_000)
  killed = true
  await Promise.all(writers.map((w) => w.client.closed))
  return writers
}

describe('kill -9 during heavy writing', () => {
  for (const seed of SEEDS) {
    it(`every acknowledged write survives, nothing duplicated (seed ${seed})`, async () => {
      const gen = prng.create(seed)
      const dataDir = makeDataDir()
      dirs.push(dataDir)
      const room = 'heavy'
      let server = await start(dataDir)
      await createRoom(server.port, room)
      const survivors: { base: number; sent: number; acked: number }[] = []

      // Round 1 keeps a window of writes in flight; round 2, on the restarted server, sends bursts.
      const rounds = [
        { kind: 'window' as const, window: prng.int32(gen, 1, 48), killAt: prng.int32(gen, 20, 2_500) },
        { kind: 'burst' as const, burst: prng.int32(gen, 200, 1_500), killAt: 0 },
      ]
      rounds[1]!.killAt = prng.int32(gen, 1, Math.floor((rounds[1] as { burst: number }).burst * 1.9))
      for (const [r, mode] of rounds.entries()) {
        const bases = [r * 1_000_000, r * 1_000_000 + 100_000]
        const writers = await writeUntilKilled(server.cli, server.port, room, bases, mode)
        survivors.push(...writers.map((w) => ({ base: w.base, sent: w.sent, acked: w.acked })))
        server = await start(dataDir)
        const checked = checkRestored(await readRoom(server.port, room), survivors)
        const acked = writers.reduce((sum, w) => sum + w.acked, 0)
        const sent = writers.reduce((sum, w) => sum + w.sent, 0)
        const detail = mode.kind === 'window' ? `window ${mode.window}` : `burst 2x${mode.burst}`
        console.log(
          `crash seed=${seed} heavy round ${r + 1} (${detail}, kill at >= ${mode.killAt} acks): ` +
            `${acked} acked, ${sent} sent this round; ${checked} writes checked after restart (all rounds)`,
        )
        // What survived a kill stays, exactly: the next check wants precisely those writes again.
        const doc = await readRoom(server.port, room)
        for (const s of survivors) s.acked = s.sent = countOf(doc, s.base)
      }
      await kill(server.cli)
    })
  }
})

describe('kill -9 during compaction', () => {
  const RECORDS = 20_000
  /**
   * Records of about 100 bytes (a paste each, every fifth a deletion), so the compaction batch is
   * not trivially small. Its commit still takes only milliseconds, so a timed kill rarely lands
   * inside it: LevelDB's atomic batch is what covers that instant; the runs check both sides.
   */
  const PASTE = 100
  let history: { updates: Uint8Array[]; text: string }

  beforeAll(() => {
    const doc = new Y.Doc()
    const updates: Uint8Array[] = []
    doc.on('update', (u: Uint8Array) => updates.push(u))
    const text = doc.getText('t')
    let length = 0
    for (let i = 0; i < RECORDS; i++) {
      if (i % 5 === 4) {
        text.delete(--length, 1)
      } else {
        text.insert(length, String.fromCharCode(97 + (i % 26)).repeat(PASTE))
        length += PASTE
      }
    }
    history = { updates, text: text.toString() }
  })

  for (const seed of SEEDS) {
    it(`a long log compacted on load survives a kill at any point of it (seed ${seed})`, async () => {
      const gen = prng.create(seed)
      const dataDir = makeDataDir()
      dirs.push(dataDir)
      const room = 'long'
      const setup = await openLevelStore(dataDir)
      for (let i = 0; i < RECORDS; i += 1_000) await setup.append(room, i, history.updates.slice(i, i + 1_000))
      await setup.close()

      const first = await start(dataDir)
      await createRoom(first.port, room)
      // Connecting loads the 20,000-record log; the room starts compacting it, then opens the
      // session (`authenticated`). A few writes, sent at once, are appended after that.
      // Counted from the session opening (the compaction batch is in flight), or from connecting
      // (the log is still loading): even seeds take the latter.
      const fromConnect = seed % 2 === 0
      const delayMs = fromConnect ? prng.int32(gen, 1, 300) : prng.int32(gen, 0, 12)
      const writes = prng.int32(gen, 0, 100)
      const client = await connect(first.port, room)
      const writer = new Writer(client, 0)
      for (let j = 0; j < writes; j++) writer.write()
      // The fault: a kill at a random moment from the session opening (0: at once, on the frame).
      const opened = new Promise<void>((resolve) =>
        client.socket.prependListener('message', (data: Buffer) => {
          if (decodeServerMessage(new Uint8Array(data)).kind !== 'authenticated') return
          if (delayMs === 0) first.cli.child.kill('SIGKILL')
          resolve()
        }),
      )
      if (!fromConnect) await withDeadline('the room to open', opened)
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs))
      await kill(first.cli)
      await client.closed

      // The compaction batch is atomic: the log is whole, or one snapshot plus what came after it.
      const store = await openLevelStore(dataDir)
      const records = await countRecords(store, room)
      await store.close()
      expect(records >= RECORDS || records <= 1 + writes).toBe(true)

      const second = await start(dataDir)
      const restored = await readRoom(second.port, room)
      expect(restored.getText('t').toString()).toBe(history.text)
      const checked = checkRestored(restored, [{ base: 0, sent: writer.sent, acked: writer.acked }])
      console.log(
        `crash seed=${seed} compaction (kill ${delayMs} ms after ${fromConnect ? 'connecting' : 'the session opened'}): ${records} records after the kill ` +
          `(${records >= RECORDS ? 'compaction not committed' : 'compacted'}); content of the ${RECORDS} records checked, ` +
          `and ${checked} of ${writes} racing writes (${writer.acked} acked)`,
      )
      await kill(second.cli)
    })
  }
})
