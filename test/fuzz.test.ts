/**
 * Seeded fuzzing of the wire protocol over real sockets, with real token authentication and a real
 * LevelDB (SPEC section 9). Real frames of every client message type are mutated (bit flips, byte
 * insertions and deletions, truncation, trailing garbage, length fields pointing past the end,
 * splices of two frames, V2 updates, updates whose dependencies are missing, oversized and text
 * frames) and sent as a socket's first frame, queued behind a pending authentication, or on an open
 * session. Each frame's fate is predicted with the protocol decoders, the update validator and a
 * shadow Y.Doc, and the server must do exactly that: close with the SPEC code, or accept it.
 *
 * Throughout, a sentinel writer's periodic writes must reach a sentinel observer in the same room,
 * and the room doc may only hold what was accepted; at the end the room, the observer, the store and
 * the shadow hold the same document. Event-loop stalls and heap growth are measured and bounded.
 *
 * Replay: the seed is printed; `TANDEM_SEED=<n>` runs that seed (`TANDEM_SEED=random` picks one).
 * Generation draws only from the seeded generator, so a seed replays the same frames in order.
 */

import { monitorEventLoopDelay } from 'node:perf_hooks'
import * as prng from 'lib0/prng'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import * as Y from 'yjs'
import { readAwarenessUpdate, writeAwarenessUpdate } from '../protocol/awareness.ts'
import { CloseCode } from '../protocol/errors.ts'
import {
  type ClientMessage,
  type ServerMessage,
  decodeClientMessage,
  decodeServerMessage,
  encodeFrame,
  writeAuth,
  writeAwareness,
  writeQueryAwareness,
  writeSyncStep1,
  writeSyncStep2,
  writeUpdate,
} from '../protocol/messages.ts'
import { TokenVerifier } from '../server/auth/token-verifier.ts'
import { validateStateVector, validateUpdate } from '../server/rooms/update-validator.ts'
import { mb, settledHeapBytes } from '../soak/memory.ts'
import { createRoom, idToken } from './support/access.ts'
import { type RawClient, rawClient } from './support/raw-client.ts'
import { randomEdit } from './support/random.ts'
import { TEST_SECRET, type TestServer, startServer } from './support/server.ts'
import { countRecords } from './support/store-records.ts'
import { untilDocs, withDeadline } from './support/wait.ts'

// biome-ignore lint/suspicious/noExplicitAny: Yjs's shared types are invariant in their event type; any is their one common supertype
type AnyType = Y.AbstractType<any>

const DEFAULT_SEED = 1_957_466
const MAX_FRAMES = 6_000
const BUDGET_MS = 11_000
const MAX_MESSAGE_BYTES = 16 * 1024
const OUTCOME_MS = 5_000
const SENTINEL_PERIOD_MS = 100
const SENTINEL_CLIENT = 4_000_000_001
const ROOM = 'fuzz-room'
const AUTHORS = 4
const MAX_STALL_MS = 500
const MAX_HEAP_GROWTH = 50 * 1024 * 1024

const seedFromEnv = (): number => {
  const forced = process.env.TANDEM_SEED
  if (forced === undefined || forced === '') return DEFAULT_SEED
  if (forced === 'random') return Math.floor(Math.random() * 2 ** 31)
  const seed = Number(forced)
  if (!Number.isSafeInteger(seed)) throw new Error(`TANDEM_SEED must be an integer or "random", got "${forced}"`)
  return seed
}

// --- a minimal socket that records what the server said and how it closed ---------------------

interface Probe {
  readonly socket: WebSocket
  readonly messages: ServerMessage[]
  readonly closed: Promise<{ code: number; reason: string }>
  closeCode: number | null
  /** Frames the server sent that this side could not decode: always a server bug. */
  readonly undecodable: string[]
  /** Resolves once `check` holds or the socket closed (true / false). */
  until(what: string, check: () => boolean): Promise<boolean>
  count(kind: ServerMessage['kind']): number
  writes: number
}

const openProbe = async (syncUrl: string): Promise<Probe> => {
  const socket = new WebSocket(`${syncUrl}/${ROOM}`)
  const messages: ServerMessage[] = []
  const undecodable: string[] = []
  const waiters = new Set<() => void>()
  const probe: Probe = {
    socket,
    messages,
    undecodable,
    closeCode: null,
    writes: 0,
    closed: new Promise((resolve) => {
      socket.on('close', (code, reason) => {
        probe.closeCode = code
        resolve({ code, reason: reason.toString() })
        for (const w of [...waiters]) w()
      })
    }),
    until: (what, check) =>
      withDeadline(
        what,
        new Promise<boolean>((resolve) => {
          const test = (): void => {
            if (check()) {
              waiters.delete(test)
              resolve(true)
            } else if (probe.closeCode !== null) {
              waiters.delete(test)
              resolve(false)
            }
          }
          waiters.add(test)
          test()
        }),
        OUTCOME_MS,
      ),
    count: (kind) => messages.reduce((n, m) => (m.kind === kind ? n + 1 : n), 0),
  }
  socket.on('error', () => {})
  socket.on('message', (data: Buffer) => {
    try {
      messages.push(decodeServerMessage(new Uint8Array(data)))
    } catch (err) {
      undecodable.push(`${(err as Error).message}: ${Buffer.from(data).toString('hex').slice(0, 200)}`)
    }
    for (const w of [...waiters]) w()
  })
  await withDeadline(
    'probe socket open',
    new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve())
      socket.once('error', reject)
    }),
  )
  return probe
}

// --- seed frames: real messages of every client type ---------------------------------------------

type Source = 'auth' | 'step1' | 'step2' | 'update' | 'awareness' | 'query' | 'v2' | 'missing'

interface Author {
  readonly doc: Y.Doc
  /** Every incremental update this author made, in order (each depends on the ones before). */
  readonly history: Uint8Array[]
  /** How many of them were handed out so far. */
  given: number
}

const captureEdit = (gen: prng.PRNG, doc: Y.Doc): Uint8Array | null => {
  let update: Uint8Array | null = null
  const capture = (u: Uint8Array): void => {
    update = update === null ? u : Y.mergeUpdates([update, u])
  }
  doc.on('update', capture)
  randomEdit(gen, doc)
  doc.off('update', capture)
  return update
}

class Corpus {
  readonly authors: Author[]
  readonly token: string

  constructor(gen: prng.PRNG, token: string) {
    this.token = token
    this.authors = Array.from({ length: AUTHORS }, (_, i) => {
      const doc = new Y.Doc()
      doc.clientID = 1_000 + i * 7_919 + prng.int32(gen, 0, 1_000)
      return { doc, history: [], given: 0 }
    })
  }

  #edit(gen: prng.PRNG, author: Author = prng.oneOf(gen, this.authors)): { author: Author; update: Uint8Array } {
    for (let tries = 0; tries < 5; tries++) {
      const update = captureEdit(gen, author.doc)
      if (update !== null) {
        author.history.push(update)
        return { author, update }
      }
    }
    return this.#edit(gen, author)
  }

  /** The next update of an author, in order: it applies once the ones before it did. */
  #nextUpdate(gen: prng.PRNG): Uint8Array {
    const author = prng.oneOf(gen, this.authors)
    if (author.given >= author.history.length) this.#edit(gen, author)
    return author.history[author.given++]!
  }

  /** An update whose dependencies were never sent: valid, but it can only wait (pending structs). */
  #missing(gen: prng.PRNG): Uint8Array {
    const { author } = this.#edit(gen)
    return this.#edit(gen, author).update
  }

  frame(gen: prng.PRNG, source: Source): Uint8Array {
    switch (source) {
      case 'auth':
        return encodeFrame(writeAuth, this.token)
      case 'step1':
        return encodeFrame(writeSyncStep1, Y.encodeStateVector(prng.oneOf(gen, this.authors).doc))
      case 'step2': {
        // The whole state of one author (fills its gaps), or what it has beyond an earlier point.
        const author = prng.oneOf(gen, this.authors)
        if (author.history.length === 0) this.#edit(gen, author)
        // Everything, or only what it made after an earlier point (which may not have been sent).
        const k = prng.int32(gen, 0, author.history.length)
        const from = k === 0 ? Uint8Array.of(0) : Y.encodeStateVectorFromUpdate(Y.mergeUpdates(author.history.slice(0, k)))
        return encodeFrame(writeSyncStep2, Y.encodeStateAsUpdate(author.doc, from))
      }
      case 'update':
        return encodeFrame(writeUpdate, this.#nextUpdate(gen))
      case 'missing':
        return encodeFrame(prng.bool(gen) ? writeUpdate : writeSyncStep2, this.#missing(gen))
      case 'v2': {
        const author = prng.oneOf(gen, this.authors)
        const v2 = prng.bool(gen) ? Y.encodeStateAsUpdateV2(author.doc) : Y.convertUpdateFormatV1ToV2(this.#edit(gen).update)
        return encodeFrame(prng.bool(gen) ? writeUpdate : writeSyncStep2, v2)
      }
      case 'awareness': {
        const entries = Array.from({ length: prng.int32(gen, 1, 3) }, () => ({
          clientID: prng.int32(gen, 1, 50),
          clock: prng.int32(gen, 0, 20),
          state: prng.int32(gen, 0, 5) === 0 ? 'null' : JSON.stringify({ user: prng.word(gen, 1, 8), cursor: prng.int32(gen, 0, 99) }),
        }))
        return encodeFrame(writeAwareness, writeAwarenessUpdate(entries))
      }
      case 'query':
        return encodeFrame(writeQueryAwareness)
      default: {
        const unreachable: never = source
        throw new Error(`unknown source ${String(unreachable)}`)
      }
    }
  }
}

const SOURCES: Source[] = ['auth', 'step1', 'step2', 'update', 'update', 'update', 'awareness', 'query', 'v2', 'missing']

// --- mutations ----------------------------------------------------------------------------------

const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

const varUint = (n: number): Uint8Array => {
  const bytes: number[] = []
  while (n > 0x7f) {
    bytes.push(0x80 | (n % 0x80))
    n = Math.floor(n / 0x80)
  }
  bytes.push(n)
  return Uint8Array.from(bytes)
}

type Mutation = (gen: prng.PRNG, bytes: Uint8Array, other: () => Uint8Array) => Uint8Array

const pos = (gen: prng.PRNG, bytes: Uint8Array, end = bytes.length): number => (end <= 0 ? 0 : prng.int32(gen, 0, end))

const MUTATIONS: Record<string, Mutation> = {
  bitFlip: (gen, bytes) => {
    if (bytes.length === 0) return Uint8Array.of(1 << prng.int32(gen, 0, 7))
    const out = bytes.slice()
    const i = pos(gen, out, out.length - 1)
    out[i] = out[i]! ^ (1 << prng.int32(gen, 0, 7))
    return out
  },
  insertByte: (gen, bytes) => {
    const i = pos(gen, bytes)
    return concat(bytes.subarray(0, i), Uint8Array.of(prng.int32(gen, 0, 255)), bytes.subarray(i))
  },
  deleteByte: (gen, bytes) => {
    if (bytes.length === 0) return bytes
    const i = pos(gen, bytes, bytes.length - 1)
    return concat(bytes.subarray(0, i), bytes.subarray(i + 1))
  },
  truncate: (gen, bytes) => bytes.slice(0, pos(gen, bytes, Math.max(0, bytes.length - 1))),
  trailingGarbage: (gen, bytes) => concat(bytes, prng.uint8Array(gen, prng.int32(gen, 1, 8))),
  /** A varUint that claims more than is there, written over the bytes at a random place. */
  lengthPastEnd: (gen, bytes) => {
    const i = pos(gen, bytes, Math.max(0, bytes.length - 1))
    const claim = prng.oneOf(gen, [bytes.length - i + 1, bytes.length * 2 + 1, 2 ** 31, 2 ** 53 - 1, 0x7f])
    const field = varUint(claim)
    return concat(bytes.subarray(0, i), field, bytes.subarray(Math.min(bytes.length, i + prng.int32(gen, 0, field.length))))
  },
  splice: (gen, bytes, other) => {
    const b = other()
    return concat(bytes.subarray(0, pos(gen, bytes)), b.subarray(pos(gen, b)))
  },
  duplicateRange: (gen, bytes) => {
    const i = pos(gen, bytes)
    const j = Math.min(bytes.length, i + prng.int32(gen, 1, 16))
    return concat(bytes.subarray(0, j), bytes.subarray(i, j), bytes.subarray(j))
  },
}
const MUTATION_NAMES = Object.keys(MUTATIONS)

/** The payload of a sync or awareness frame, to mutate inside an envelope that still decodes. */
const splitEnvelope = (frame: Uint8Array): { wrap: (payload: Uint8Array) => Uint8Array; payload: Uint8Array } | null => {
  let message: ClientMessage
  try {
    message = decodeClientMessage(frame)
  } catch {
    return null
  }
  switch (message.kind) {
    case 'sync-step-1':
      return { payload: message.stateVector, wrap: (p) => encodeFrame(writeSyncStep1, p) }
    case 'sync-step-2':
      return { payload: message.update, wrap: (p) => encodeFrame(writeSyncStep2, p) }
    case 'update':
      return { payload: message.update, wrap: (p) => encodeFrame(writeUpdate, p) }
    case 'awareness':
      return { payload: message.update, wrap: (p) => encodeFrame(writeAwareness, p) }
    case 'auth': {
      const token = message.token ?? ''
      return { payload: new TextEncoder().encode(token), wrap: (p) => encodeFrame(writeAuth, Buffer.from(p).toString('latin1')) }
    }
    default:
      return null
  }
}

interface Fuzzed {
  readonly frame: Uint8Array | string
  readonly how: string
}

const mutate = (gen: prng.PRNG, corpus: Corpus): Fuzzed => {
  const source = prng.oneOf(gen, SOURCES)
  let frame = corpus.frame(gen, source)
  const roll = prng.int32(gen, 0, 99)
  if (roll < 22) return { frame, how: `${source} as is` }
  if (roll < 24) return { frame: Buffer.from(frame).toString('latin1'), how: `${source} as a text frame` }
  if (roll < 26) {
    return { frame: concat(frame, prng.uint8Array(gen, MAX_MESSAGE_BYTES + prng.int32(gen, -4, 64))), how: `${source} padded near the size limit` }
  }
  const other = (): Uint8Array => corpus.frame(gen, prng.oneOf(gen, SOURCES))
  const steps: string[] = []
  const inner = roll < 63 ? splitEnvelope(frame) : null
  let bytes = inner?.payload ?? frame
  for (let n = prng.int32(gen, 1, 3); n > 0; n--) {
    const name = prng.oneOf(gen, MUTATION_NAMES)
    bytes = MUTATIONS[name]!(gen, bytes, other)
    steps.push(name)
  }
  frame = inner !== null ? inner.wrap(bytes) : bytes
  return { frame, how: `${source}, ${inner !== null ? 'payload' : 'frame'}: ${steps.join(' + ')}` }
}

// --- what the server must do with a frame --------------------------------------------------------

type Phase = 'first' | 'queued' | 'open'

type Expectation =
  | { readonly close: number; readonly why: string }
  | { readonly accept: 'auth' | 'write' | 'step1' | 'awareness' | 'query'; readonly update?: Uint8Array }

/** Fingerprint of a doc: content (independent of how structs happen to be split), deletions, pending structs. */
const fingerprint = (doc: Y.Doc, { withContent = true, skipClient }: { withContent?: boolean; skipClient?: number } = {}): string => {
  const sv = [...Y.decodeStateVector(Y.encodeStateVector(doc)).entries()].filter(([c]) => c !== skipClient).sort((a, b) => a[0] - b[0])
  const ds = [...Y.snapshot(doc).ds.clients.entries()].sort((a, b) => a[0] - b[0]).map(([client, items]) => [client, items.map((i) => [i.clock, i.len])])
  const pending = doc.store.pendingStructs
  // Pending structs as clock ranges per client: how mergeUpdates splits and skips them varies.
  // Only what lies beyond the integrated state counts: a pending struct may overlap it.
  const state = Y.decodeStateVector(Y.encodeStateVector(doc))
  const pendingStructs =
    pending === null
      ? null
      : clockRanges(
          Y.decodeUpdateV2(pending.update)
            .structs.filter((s) => s.constructor.name !== 'Skip')
            .flatMap((s) => {
              const from = Math.max(s.id.clock, state.get(s.id.client) ?? 0)
              return from < s.id.clock + s.length ? [{ id: Y.createID(s.id.client, from), length: s.id.clock + s.length - from }] : []
            }),
        )
  const pendingDs =
    doc.store.pendingDs === null
      ? null
      : [...Y.decodeUpdateV2(doc.store.pendingDs).ds.clients.entries()].map(([c, items]) => [c, items.map((i) => [i.clock, i.len])])
  const content = withContent
    ? [...doc.share.entries()]
        .sort((a, b) => (a[0] < b[0] ? -1 : 1))
        .map(([name, type]) => [name, dumpType(type)])
        .filter(([, dump]) => JSON.stringify(dump) !== EMPTY_TYPE)
    : null
  return JSON.stringify({ sv, ds, pendingStructs, pendingDs, content }, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))
}

const clockRanges = (structs: readonly { id: Y.ID; length: number }[]): [number, [number, number][]][] => {
  const byClient = new Map<number, [number, number][]>()
  for (const s of [...structs].sort((a, b) => a.id.client - b.id.client || a.id.clock - b.id.clock)) {
    const ranges = byClient.get(s.id.client) ?? []
    const last = ranges.at(-1)
    if (last !== undefined && last[1] >= s.id.clock) last[1] = Math.max(last[1], s.id.clock + s.length)
    else ranges.push([s.id.clock, s.id.clock + s.length])
    byClient.set(s.id.client, ranges)
  }
  return [...byClient.entries()]
}

/**
 * The fingerprint after a round trip through one encoded update. Yjs retries pending structs only
 * when the clock it noted as missing arrives, so a doc that got the same updates in other batches
 * (the observer, a compacted log) can hold as pending what another integrated; re-encoding settles it.
 */
const normalized = (doc: Y.Doc): string => {
  const copy = new Y.Doc()
  Y.applyUpdate(copy, Y.encodeStateAsUpdate(doc))
  return fingerprint(copy)
}

/** Which top-level parts of two fingerprints differ, for a readable failure. */
const differs = (a: string, b: string): string => {
  const x = JSON.parse(a) as Record<string, unknown>
  const y = JSON.parse(b) as Record<string, unknown>
  return Object.keys(x)
    .filter((k) => JSON.stringify(x[k]) !== JSON.stringify(y[k]))
    .map((k) => `${k}: ${JSON.stringify(x[k]).slice(0, 300)} vs ${JSON.stringify(y[k]).slice(0, 300)}`)
    .join('\n  ')
}

const EMPTY_TYPE = JSON.stringify({ list: [], map: [] })

const dumpValue = (value: unknown): unknown => {
  if (value instanceof Y.AbstractType) return dumpType(value)
  if (value instanceof Y.Doc) return { doc: value.guid }
  if (value instanceof Uint8Array) return { bytes: Buffer.from(value).toString('hex') }
  return value
}

const dumpType = (type: AnyType): unknown => {
  const list: unknown[] = []
  for (let item = type._start; item !== null; item = item.right) {
    if (!item.deleted && item.countable) list.push(...item.content.getContent().map(dumpValue))
  }
  const map = [...type._map.entries()]
    .filter(([, item]) => !item.deleted)
    .sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([key, item]) => [key, dumpValue(item.content.getContent().at(-1))])
  return { list, map }
}

/** The shadow: a doc that applies exactly the accepted updates, in order. */
class Shadow {
  doc = new Y.Doc()
  readonly accepted: Uint8Array[] = []

  /** Whether Yjs takes the update (it is then applied); a refused one leaves the shadow as it was. */
  tryApply(update: Uint8Array): boolean {
    try {
      Y.applyUpdate(this.doc, update)
      this.accepted.push(update)
      return true
    } catch {
      // Yjs may have applied part of it before throwing: rebuild from what was accepted.
      this.doc = new Y.Doc()
      for (const u of this.accepted) Y.applyUpdate(this.doc, u)
      return false
    }
  }
}

const verifier = new TokenVerifier({ secret: TEST_SECRET, cacheSize: 0 })
const tokenValid = async (token: string | null): Promise<boolean> =>
  token !== null &&
  (await verifier.verify(token).then(
    () => true,
    () => false,
  ))

const expectationFor = async (frame: Uint8Array | string, phase: Phase, shadow: Shadow): Promise<Expectation> => {
  const size = typeof frame === 'string' ? Buffer.byteLength(frame) : frame.length
  if (size > MAX_MESSAGE_BYTES) return { close: CloseCode.tooLarge, why: 'over maxMessageBytes' }
  if (typeof frame === 'string') return { close: CloseCode.malformed, why: 'a text frame' }
  let message: ClientMessage
  try {
    message = decodeClientMessage(frame)
  } catch {
    return { close: CloseCode.malformed, why: 'does not decode' }
  }
  if (message.kind === 'auth') return (await tokenValid(message.token)) ? { accept: 'auth' } : { close: CloseCode.unauthorized, why: 'bad token' }
  // Any other first message is a stock client's: no `?token=` (and no compat), so refused.
  if (phase === 'first') return { close: CloseCode.unauthorized, why: 'first message is not auth' }
  switch (message.kind) {
    case 'sync-step-1':
      try {
        validateStateVector(message.stateVector)
        return { accept: 'step1' }
      } catch {
        return { close: CloseCode.malformed, why: 'bad state vector' }
      }
    case 'sync-step-2':
    case 'update':
      try {
        validateUpdate(message.update)
      } catch {
        return { close: CloseCode.malformed, why: 'update fails validation' }
      }
      return shadow.tryApply(message.update)
        ? { accept: 'write', update: message.update }
        : { close: CloseCode.malformed, why: 'Yjs refuses the validated update' }
    case 'awareness':
      try {
        readAwarenessUpdate(message.update)
        return { accept: 'awareness' }
      } catch {
        return { close: CloseCode.malformed, why: 'bad awareness update' }
      }
    case 'query-awareness':
      return { accept: 'query' }
    default: {
      const unreachable: never = message
      throw new Error(`unhandled ${String(unreachable)}`)
    }
  }
}

// --- the run --------------------------------------------------------------------------------------

const BARRIER = encodeFrame(writeSyncStep1, Uint8Array.of(0))
const hex = (frame: Uint8Array | string): string =>
  typeof frame === 'string' ? `text(${frame.length})` : Buffer.from(frame.subarray(0, 96)).toString('hex') + (frame.length > 96 ? `…(${frame.length} B)` : '')

describe('protocol fuzzing', () => {
  const seed = seedFromEnv()
  let server: TestServer
  const probes: Probe[] = []
  const clients: RawClient[] = []

  beforeAll(async () => {
    server = await startServer({
      authenticate: undefined,
      compactAfterRecords: 40,
      // Every probe waits for its acknowledgements: a store window would cut the frames a run gets through.
      storeWindowMs: 0,
      limits: { maxMessageBytes: MAX_MESSAGE_BYTES, connectionsPerIpPerMinute: 1_000_000 },
    })
    await createRoom(server, {
      id: ROOM,
      defaultAccesses: [],
      usersAccesses: { fuzzer: ['room:write'], 'sentinel-writer': ['room:write'], 'sentinel-observer': ['room:read'] },
    })
  })

  afterAll(async () => {
    for (const p of probes) p.socket.terminate()
    for (const c of clients) c.close()
    await server?.destroy()
  })

  it(`survives mutated frames (seed ${seed})`, { timeout: 60_000 }, async () => {
    console.log(`fuzz seed ${seed} (replay: TANDEM_SEED=${seed})`)
    const gen = prng.create(seed)
    const token = await idToken({ userId: 'fuzzer' })
    const corpus = new Corpus(gen, token)
    const shadow = new Shadow()
    const failures: string[] = []

    // Sentinels: a writer whose periodic writes must keep reaching an observer in the same room.
    const observer = await rawClient(server.syncUrl, ROOM, { token: await idToken({ userId: 'sentinel-observer' }) })
    const writer = await rawClient(server.syncUrl, ROOM, { token: await idToken({ userId: 'sentinel-writer' }), sync: false })
    clients.push(observer, writer)
    await observer.next('sync-step-2')
    await writer.next('authenticated')
    const sentinelDoc = new Y.Doc()
    sentinelDoc.clientID = SENTINEL_CLIENT
    const sentinelText = (doc: Y.Doc): string => {
      try {
        return doc.getText('sentinel').toString()
      } catch {
        return ''
      }
    }
    let sentinelWrites = 0
    let stopSentinel = false
    const sentinel = (async () => {
      while (!stopSentinel && failures.length === 0) {
        let update: Uint8Array | null = null
        sentinelDoc.once('update', (u: Uint8Array) => {
          update = u
        })
        const marker = `[${++sentinelWrites}]`
        sentinelDoc.getText('sentinel').insert(sentinelDoc.getText('sentinel').length, marker)
        shadow.accepted.push(update!)
        Y.applyUpdate(shadow.doc, update!)
        writer.sendUpdate(update!)
        try {
          await untilDocs(`the observer to receive sentinel write ${marker}`, [observer.doc], () => sentinelText(observer.doc).includes(marker), OUTCOME_MS)
        } catch (err) {
          failures.push(`sentinel: ${(err as Error).message}; observer open: ${observer.socket.readyState === WebSocket.OPEN}`)
        }
        await new Promise((resolve) => setTimeout(resolve, SENTINEL_PERIOD_MS))
      }
    })()

    const roomDoc = (): Y.Doc => server.app.tandem.registry.get(ROOM)!.doc
    const heapBefore = await settledHeapBytes()
    const stalls = monitorEventLoopDelay({ resolution: 10 })
    stalls.enable()

    let open: Probe | null = null
    const authenticated = async (): Promise<Probe> => {
      const probe = await openProbe(server.syncUrl)
      probes.push(probe)
      probe.socket.send(encodeFrame(writeAuth, token))
      if (!(await probe.until('authenticated', () => probe.count('authenticated') > 0))) {
        throw new Error(`a fresh session was refused with ${probe.closeCode}`)
      }
      return probe
    }

    const stats = { frames: 0, accepted: 0, closed: new Map<number, number>(), byPhase: new Map<Phase, number>(), rateLimited: 0 }
    const started = Date.now()
    while (stats.frames < MAX_FRAMES && Date.now() - started < BUDGET_MS && failures.length === 0) {
      const index = stats.frames++
      const { frame, how } = mutate(gen, corpus)
      const phase = prng.oneOf(gen, ['first', 'queued', 'open', 'open', 'open'] as const)
      stats.byPhase.set(phase, (stats.byPhase.get(phase) ?? 0) + 1)
      const fail = (what: string): void => {
        failures.push(`frame #${index} (seed ${seed}, ${phase}, ${how}): ${what}\n  bytes ${hex(frame)}`)
      }

      let probe: Probe
      if (phase === 'open') {
        open ??= await authenticated()
        probe = open
      } else {
        probe = await openProbe(server.syncUrl)
        probes.push(probe)
        if (phase === 'queued') probe.socket.send(encodeFrame(writeAuth, token))
      }
      const before = { step2: probe.count('sync-step-2'), authenticated: probe.count('authenticated'), awareness: probe.count('awareness') }
      const expected = await expectationFor(frame, phase, shadow)
      probe.socket.send(frame)
      probe.socket.send(BARRIER)

      if ('close' in expected) {
        const { code } = await withDeadline(`close ${expected.close} (${expected.why})`, probe.closed, OUTCOME_MS).catch((err: Error) => {
          fail(err.message)
          return { code: -1 }
        })
        stats.closed.set(code, (stats.closed.get(code) ?? 0) + 1)
        if (code === CloseCode.rateLimited) stats.rateLimited++
        else if (code !== expected.close && code !== -1) fail(`closed with ${code}, expected ${expected.close} (${expected.why})`)
        if (probe === open) open = null
      } else {
        stats.accepted++
        const waits: Promise<boolean>[] = [
          probe.until('the barrier answer', () => probe.count('sync-step-2') > before.step2 + (expected.accept === 'step1' ? 1 : 0)),
        ]
        if (expected.accept === 'auth') {
          const target = phase === 'first' ? 0 : before.authenticated + (phase === 'queued' ? 1 : 0)
          waits.push(probe.until('a new authenticated message', () => probe.count('authenticated') > target))
        }
        if (expected.accept === 'query') waits.push(probe.until('the awareness answer', () => probe.count('awareness') > before.awareness))
        if (expected.accept === 'write') {
          probe.writes++
          waits.push(probe.until(`saved ${probe.writes}`, () => probe.messages.some((m) => m.kind === 'saved' && m.count >= probe.writes)))
        }
        try {
          const held = await Promise.all(waits)
          if (held.includes(false)) fail(`an acceptable frame (${expected.accept}) closed the socket with ${probe.closeCode}`)
        } catch (err) {
          fail((err as Error).message)
        }
        if (phase === 'first' || phase === 'queued') {
          // A session that came up this way serves as the open one from now on.
          if (open !== null) open.socket.close()
          open = probe.closeCode === null ? probe : null
        }
      }
      if (probe.undecodable.length > 0) fail(`the server sent undecodable frames: ${probe.undecodable.join('; ')}`)
      if (probe !== open && probe.closeCode === null) probe.socket.close()

      // Nothing of a refused frame in the room, and every accepted one in it.
      const room = fingerprint(roomDoc(), { withContent: false, skipClient: SENTINEL_CLIENT })
      const expectedRoom = fingerprint(shadow.doc, { withContent: false, skipClient: SENTINEL_CLIENT })
      if (room !== expectedRoom) fail(`the room doc differs from the shadow after this frame:\n  ${differs(room, expectedRoom)}`)
      if (observer.socket.readyState !== WebSocket.OPEN) fail('the sentinel observer was disconnected')
      if (writer.socket.readyState !== WebSocket.OPEN) fail('the sentinel writer was disconnected')
    }
    const elapsed = Date.now() - started
    stalls.disable()
    stopSentinel = true
    await sentinel

    // The end state: room, observer, store and shadow hold one document.
    for (const p of probes) if (p.closeCode === null) p.socket.close()
    if (failures.length === 0) {
      await writer.saved(sentinelWrites)
      const room = server.app.tandem.registry.get(ROOM)!
      await room.flush()
      const expectedDoc = fingerprint(shadow.doc)
      const expectedNormal = normalized(shadow.doc)
      await untilDocs('the observer to hold the shadow document', [observer.doc], () => normalized(observer.doc) === expectedNormal, OUTCOME_MS).catch(
        (err: Error) => failures.push(`${err.message}\n  ${differs(normalized(observer.doc), expectedNormal)}`),
      )
      const stored = new Y.Doc()
      for (const update of (await server.app.tandem.store.load(ROOM)).updates) Y.applyUpdate(stored, update)
      const roomPrint = fingerprint(room.doc)
      const storedPrint = normalized(stored)
      if (roomPrint !== expectedDoc) failures.push(`the room doc differs from the shadow at the end:\n  ${differs(roomPrint, expectedDoc)}`)
      if (storedPrint !== expectedNormal && process.env.TANDEM_FUZZ_DUMP !== undefined) {
        const { writeFileSync } = await import('node:fs')
        writeFileSync(
          process.env.TANDEM_FUZZ_DUMP,
          JSON.stringify({
            accepted: shadow.accepted.map((u) => Buffer.from(u).toString('base64')),
            stored: (await server.app.tandem.store.load(ROOM)).updates.map((u) => Buffer.from(u).toString('base64')),
          }),
        )
      }
      if (storedPrint !== expectedNormal) failures.push(`the stored doc differs from the shadow at the end:\n  ${differs(storedPrint, expectedNormal)}`)
      const health = await server.app.inject({ method: 'GET', url: '/healthz' })
      expect(health.statusCode).toBe(200)
    }

    const heapAfter = await settledHeapBytes()
    const maxStallMs = stalls.max / 1e6
    const closes = [...stats.closed.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([c, n]) => `${c}×${n}`)
      .join(' ')
    console.log(
      `fuzzed ${stats.frames} frames in ${elapsed} ms (seed ${seed}): ${stats.accepted} accepted, closes ${closes}; ` +
        `phases ${[...stats.byPhase.entries()].map(([p, n]) => `${p}=${n}`).join(' ')}; sentinel writes ${sentinelWrites}; ` +
        `stored records ${await countRecords(server.app.tandem.store, ROOM)}`,
    )
    console.log(
      `fuzz: longest event-loop stall ${maxStallMs.toFixed(1)} ms; heap ${mb(heapBefore)} before, ${mb(heapAfter)} after (growth ${mb(heapAfter - heapBefore)})`,
    )

    expect(failures).toEqual([])
    expect(stats.frames).toBeGreaterThan(200)
    expect(maxStallMs).toBeLessThan(MAX_STALL_MS)
    expect(heapAfter - heapBefore).toBeLessThan(MAX_HEAP_GROWTH)
  })
})
