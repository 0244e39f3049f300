/**
 * Hostile and broken input over real sockets and a real LevelDB (SPEC sections 5 and 9): every bad
 * frame closes its sender with the SPEC close code, and nothing of it is applied, stored or relayed,
 * while the other clients of the room (raw and stock y-websocket) keep syncing on open sockets. Also
 * the gates before auth: refusal (4401), auth deadline (4408), bounded pre-auth queue (4529).
 *
 * "Did not happen" is checked behind an ordering barrier, never a sleep: once the offender is closed,
 * a good client writes; when that write has been acknowledged as stored and has reached the other
 * clients, anything the bad frame had caused would have been stored and relayed before it.
 */

import * as prng from 'lib0/prng'
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'
import { writeAwarenessUpdate } from '../protocol/awareness.ts'
import { CloseCode, type ErrorCode } from '../protocol/errors.ts'
import {
  type ServerMessage,
  decodeClientMessage,
  encodeFrame,
  writeAwareness,
  writePermissionDenied,
  writeSyncStep1,
  writeSyncStep2,
  writeUpdate,
} from '../protocol/messages.ts'
import { PermissionBit } from '../protocol/permissions.ts'
import type { AuthResult, Authenticate, Credentials } from '../server/auth/session.ts'
import { type RawClient, type RawClientOptions, rawClient, textUpdate } from './support/raw-client.ts'
import { type TestServer, serversPerFile } from './support/server.ts'
import { type StockPeer, converged, stockPeer, synced } from './support/stock-client.ts'
import { once, until, withDeadline } from './support/wait.ts'

const MAX_MESSAGE_BYTES = 64 * 1024
const OPEN = 1
const WRITER = PermissionBit.read | PermissionBit.presence | PermissionBit.write

// --- the evil content: a writer whose clientID and text must never show up anywhere --------------

const EVIL_CLIENT = 666_666
const EVIL_TEXT = 'EVIL'

const evilDoc = (text = EVIL_TEXT): Y.Doc => {
  const doc = new Y.Doc()
  doc.clientID = EVIL_CLIENT
  // A deletion puts something in the delete set, the last part of an update: a truncated update
  // then has all its structs but no delete set, which plain Y.applyUpdate half-applies.
  doc.getText('t').insert(0, `${text}x`)
  doc.getText('t').delete(text.length, 1)
  doc.getMap('m').set('evil', true)
  return doc
}

const EVIL_UPDATE = Y.encodeStateAsUpdate(evilDoc())
const concat = (...parts: ArrayLike<number>[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => Array.from(p)))

/** Frames whose bytes do not decode as a client message: `seed` replays one. */
const randomFrame = (seed: number, prefixes: readonly number[] = []): Uint8Array => {
  const gen = prng.create(seed)
  for (;;) {
    const prefix = prefixes.length > 0 ? [prng.oneOf(gen, [...prefixes])] : []
    const frame = concat(prefix, prng.uint8Array(gen, prng.int32(gen, 1, 64)))
    try {
      decodeClientMessage(frame)
    } catch {
      return frame
    }
  }
}

interface BadFrame {
  readonly name: string
  readonly frame: () => Uint8Array | string
  readonly close: number
  /** The error code a Tandem-mode sender hears before the close, or null when ws closes at once. */
  readonly error: ErrorCode | null
}

const malformed = (name: string, frame: () => Uint8Array | string): BadFrame => ({
  name,
  frame,
  close: CloseCode.malformed,
  error: 'malformed_message',
})

/** Frames that fail before they are decoded into a message: no room state is involved at all. */
const UNDECODABLE: BadFrame[] = [
  ...[1, 2, 3, 42, 1337].map((seed) => malformed(`random bytes (seed ${seed})`, () => randomFrame(seed))),
  ...[7, 99].map((seed) => malformed(`random bytes after a known type (seed ${seed})`, () => randomFrame(seed, [0, 1, 3, 32]))),
  malformed('a truncated varUint message type [0x80]', () => Uint8Array.of(0x80)),
  malformed('a truncated varUint sync type [0, 0x80]', () => Uint8Array.of(0, 0x80)),
  malformed('a truncated varUint payload length [0, 2, 0xff]', () => Uint8Array.of(0, 2, 0xff)),
  malformed('an unknown message type 99', () => Uint8Array.of(99)),
  malformed('an unknown message type 99 with a payload', () => Uint8Array.of(99, 1, 2, 3)),
  malformed('a y-protocols auth message (type 2) sent by a client', () => encodeFrame(writePermissionDenied, 'let me in')),
  malformed('an unknown sync message type', () => Uint8Array.of(0, 7, 0)),
  malformed('an update frame cut short', () => encodeFrame(writeUpdate, EVIL_UPDATE).subarray(0, -1)),
  malformed('an update frame with a trailing byte', () => concat(encodeFrame(writeUpdate, EVIL_UPDATE), [0])),
  malformed('an empty frame', () => new Uint8Array(0)),
  malformed('a text frame', () => 'hello'),
  malformed('a text frame holding a valid update message', () => Buffer.from(encodeFrame(writeUpdate, EVIL_UPDATE)).toString('latin1')),
  {
    name: 'an oversized frame (100 KB)',
    frame: () => encodeFrame(writeUpdate, Y.encodeStateAsUpdate(evilDoc(EVIL_TEXT + 'x'.repeat(100 * 1024)))),
    close: CloseCode.tooLarge,
    error: null,
  },
]

/** Well-formed frames whose Yjs payload is bad: refused when the message is handled. */
const BAD_PAYLOAD: BadFrame[] = [
  malformed('an update with trailing garbage', () => encodeFrame(writeUpdate, concat(EVIL_UPDATE, [1, 2, 3]))),
  malformed('an update with its last byte cut', () => encodeFrame(writeUpdate, EVIL_UPDATE.subarray(0, -1))),
  malformed('an update cut inside its structs', () => encodeFrame(writeUpdate, EVIL_UPDATE.subarray(0, 12))),
  malformed('a sync step 2 with its last byte cut', () => encodeFrame(writeSyncStep2, EVIL_UPDATE.subarray(0, -1))),
  malformed('a V2 update sent as a V1 update', () => encodeFrame(writeUpdate, Y.encodeStateAsUpdateV2(evilDoc()))),
  malformed('a V2 update sent as sync step 2', () => encodeFrame(writeSyncStep2, Y.encodeStateAsUpdateV2(evilDoc()))),
  malformed('a sync step 1 with a truncated state vector', () => encodeFrame(writeSyncStep1, Uint8Array.of(1, 5))),
  malformed('a sync step 1 with trailing bytes after the state vector', () => encodeFrame(writeSyncStep1, Uint8Array.of(0, 9))),
]

// The premises the cases rest on: the undecodable ones do not decode, the others do, and plain
// Y.applyUpdate would take in (part of) the evil content that the server must refuse.
describe('the bad frames themselves', () => {
  it.each(UNDECODABLE.filter((c) => c.close === CloseCode.malformed && typeof c.frame() !== 'string').map((c) => [c.name, c]))(
    '%s does not decode',
    (_name, c) => {
      expect(() => decodeClientMessage(c.frame() as Uint8Array)).toThrow()
    },
  )

  it.each(BAD_PAYLOAD.map((c) => [c.name, c]))('%s decodes as a message', (_name, c) => {
    expect(() => decodeClientMessage(c.frame() as Uint8Array)).not.toThrow()
  })

  it('a truncated update is half-applied and trailing garbage ignored by plain Y.applyUpdate', () => {
    const truncated = new Y.Doc()
    expect(() => Y.applyUpdate(truncated, EVIL_UPDATE.subarray(0, -1))).toThrow()
    expect(truncated.getText('t').toString()).toBe(EVIL_TEXT)
    const trailing = new Y.Doc()
    Y.applyUpdate(trailing, concat(EVIL_UPDATE, [1, 2, 3]))
    expect(trailing.getText('t').toString()).toBe(EVIL_TEXT)
  })
})

// --- test scaffolding -------------------------------------------------------------------------

const raws: RawClient[] = []
const peers: StockPeer[] = []

const join = async (server: TestServer, room: string, options?: RawClientOptions): Promise<RawClient> => {
  const client = await rawClient(server.syncUrl, room, options)
  raws.push(client)
  return client
}

/** A raw client that is in the room: authenticated (Tandem mode) and answered its sync step 1. */
const member = async (server: TestServer, room: string, mode: 'tandem' | 'compat'): Promise<RawClient> => {
  const client = await join(server, room, { auth: mode === 'tandem' })
  await client.next('sync-step-2')
  return client
}

const stock = (server: TestServer, room: string): StockPeer => {
  const peer = stockPeer(server.syncUrl, room)
  peers.push(peer)
  return peer
}

/**
 * Resolves once the server has read every frame sent before (ws answers a ping in stream order), or
 * once it closed the socket.
 */
const serverRead = async (client: RawClient): Promise<void> => {
  const pong = once('a pong', client.socket, 'pong')
  pong.catch(() => {}) // a closed socket never answers: the close settles the race
  client.socket.ping()
  await Promise.race([pong, client.closed])
}

const closedWith = (client: RawClient): Promise<{ code: number; reason: string }> => withDeadline('the server to close the socket', client.closed)

const hasEvil = (doc: Y.Doc): boolean =>
  Y.decodeStateVector(Y.encodeStateVector(doc)).has(EVIL_CLIENT) || doc.getText('t').toString().includes(EVIL_TEXT) || doc.getMap('m').has('evil')

const docOf = (updates: readonly Uint8Array[]): Y.Doc => {
  const doc = new Y.Doc()
  for (const update of updates) Y.applyUpdate(doc, update)
  return doc
}

const structClients = (update: Uint8Array): number[] => Y.decodeUpdate(update).structs.map((s) => s.id.client)

/** Every document update a raw client received, decoded: none may carry the evil client. */
const relayedClients = (client: RawClient): number[] =>
  client.messages.flatMap((m) => (m.kind === 'update' || m.kind === 'sync-step-2' ? structClients(m.update) : []))

const textOf = (doc: Y.Doc): string => doc.getText('t').toString()

const sees = (what: string, doc: Y.Doc, text: string): Promise<void> => until(what, doc, ['update'], () => textOf(doc).includes(text))

/**
 * A room with a good Tandem writer, a raw observer and a stock y-websocket client, all synced on a
 * first write, and a record of what the room and the store hold.
 */
interface Scene {
  readonly server: TestServer
  readonly room: string
  readonly writer: RawClient
  readonly writerDoc: Y.Doc
  readonly observer: RawClient
  readonly stock: StockPeer
  /** Status changes of the stock client away from connected: must stay empty. */
  readonly stockDrops: string[]
  readonly state: Uint8Array
  readonly stored: readonly Uint8Array[]
}

let roomSeq = 0
const freshRoom = (label: string): string => `bad-${label}-${++roomSeq}`

const openScene = async (server: TestServer, label: string): Promise<Scene> => {
  const room = freshRoom(label)
  const writer = await member(server, room, 'tandem')
  const observer = await member(server, room, 'tandem')
  const peer = stock(server, room)
  await synced(peer)
  const stockDrops: string[] = []
  peer.provider.on('status', ({ status }: { status: string }) => {
    if (status !== 'connected') stockDrops.push(status)
  })

  const writerDoc = new Y.Doc()
  writer.sendUpdate(textUpdate('base;', writerDoc))
  await writer.saved(1)
  await Promise.all([sees('observer has base', observer.doc, 'base;'), sees('stock has base', peer.doc, 'base;')])

  const roomDoc = server.app.tandem.registry.get(room)!.doc
  const { updates } = await server.app.tandem.store.load(room)
  expect(updates.length).toBeGreaterThan(0)
  return { server, room, writer, writerDoc, observer, stock: peer, stockDrops, state: Y.encodeStateAsUpdate(roomDoc), stored: updates }
}

/**
 * After the offender was closed: the room is unchanged, a good write made now is stored and reaches
 * the observer and the stock client (which also still writes), and the bad content is nowhere.
 */
const checkUnharmed = async (scene: Scene, offender?: RawClient): Promise<void> => {
  const { server, room, writer, writerDoc, observer, stock: peer } = scene
  const roomDoc = server.app.tandem.registry.get(room)!.doc
  expect(Y.encodeStateAsUpdate(roomDoc)).toEqual(scene.state)

  writer.sendUpdate(textUpdate('after;', writerDoc))
  await writer.saved(2)
  await Promise.all([sees('observer has the later write', observer.doc, 'after;'), sees('stock has the later write', peer.doc, 'after;')])

  // Stored: the earlier records untouched, then exactly what the room holds, none of it evil.
  const { updates } = await server.app.tandem.store.load(room)
  expect(updates.slice(0, scene.stored.length)).toEqual(scene.stored)
  for (const update of updates) expect(structClients(update)).not.toContain(EVIL_CLIENT)
  const storedDoc = docOf(updates)
  expect(Y.encodeStateVector(storedDoc)).toEqual(Y.encodeStateVector(roomDoc))
  expect(textOf(storedDoc)).toBe(textOf(roomDoc))

  // The stock client still writes, and that reaches the observer.
  peer.doc.getText('t').insert(0, 'stock;')
  await sees('observer has the stock write', observer.doc, 'stock;')
  await converged([roomDoc, observer.doc, peer.doc])

  for (const doc of [roomDoc, observer.doc, peer.doc, storedDoc]) expect(hasEvil(doc)).toBe(false)
  expect(relayedClients(observer)).not.toContain(EVIL_CLIENT)
  if (offender !== undefined) expect(relayedClients(offender)).not.toContain(EVIL_CLIENT)

  expect(writer.socket.readyState).toBe(OPEN)
  expect(observer.socket.readyState).toBe(OPEN)
  expect(peer.provider.wsconnected).toBe(true)
  expect(scene.stockDrops).toEqual([])
  await serverStillServes(server, room, textOf(roomDoc))
}

/** Liveness and a newcomer that syncs the room's current content. */
const serverStillServes = async (server: TestServer, room: string, text?: string): Promise<void> => {
  const health = await server.app.inject({ method: 'GET', url: '/healthz' })
  expect(health.statusCode).toBe(200)
  const newcomer = await member(server, room, 'tandem')
  if (text !== undefined) expect(textOf(newcomer.doc)).toBe(text)
  newcomer.close()
}

const deferred = <T>(): { promise: Promise<T>; resolve: (value: T) => void } => {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

afterEach(() => {
  vi.restoreAllMocks()
  for (const client of raws.splice(0)) client.close()
  for (const peer of peers.splice(0)) peer.destroy()
})

const { start } = serversPerFile()

// --- bad frames from a client in the room ----------------------------------------------------

describe('a bad frame from a client already in the room', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await start({ allowAnonymous: true, limits: { maxMessageBytes: MAX_MESSAGE_BYTES } })
  })

  const cases = [...UNDECODABLE, ...BAD_PAYLOAD].map((c) => [c.name, c] as const)

  it.each(cases)('Tandem client, %s: error and close code, nothing applied, stored or relayed', async (_name, c) => {
    const scene = await openScene(server, 'tandem')
    const offender = await member(server, scene.room, 'tandem')
    const before = offender.messages.length

    offender.send(c.frame())
    const { code } = await closedWith(offender)

    expect(code).toBe(c.close)
    if (c.error !== null) {
      const last = offender.messages.at(-1)
      expect(last).toMatchObject({ kind: 'error', code: c.error })
      // Nothing else after the refusal: the error is the last word before the close.
      expect(offender.messages.slice(before).map((m) => m.kind)).toEqual(['error'])
    }
    await checkUnharmed(scene, offender)
  })

  it.each(cases)('stock-style client (no auth message), %s: close code, nothing applied, stored or relayed', async (_name, c) => {
    const scene = await openScene(server, 'compat')
    const offender = await member(server, scene.room, 'compat')

    offender.send(c.frame())
    const { code } = await closedWith(offender)

    expect(code).toBe(c.close)
    // A stock client does not understand Tandem's error message: it is not sent one.
    expect(offender.messages.filter((m) => m.kind === 'error')).toEqual([])
    await checkUnharmed(scene, offender)
  })

  it('several offenders in a row, while the stock client keeps editing, leave the room intact', async () => {
    const scene = await openScene(server, 'many')
    for (const c of [...UNDECODABLE, ...BAD_PAYLOAD]) {
      const offender = await member(server, scene.room, 'tandem')
      scene.stock.doc.getText('t').insert(0, '.')
      offender.send(c.frame())
      expect((await closedWith(offender)).code).toBe(c.close)
    }
    await converged([scene.stock.doc, scene.observer.doc])
    const roomDoc = server.app.tandem.registry.get(scene.room)!.doc
    await converged([roomDoc, scene.stock.doc])
    // The stock edits changed the room; the check below compares with the room as it is now.
    const rebased: Scene = { ...scene, state: Y.encodeStateAsUpdate(roomDoc) }
    await checkUnharmed(rebased)
  })
})

// --- bad frames before auth --------------------------------------------------------------------

describe('a bad frame as the very first frame, before auth', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await start({ allowAnonymous: true, limits: { maxMessageBytes: MAX_MESSAGE_BYTES } })
  })

  it.each(UNDECODABLE.map((c) => [c.name, c] as const))('%s: close code, and nothing of the room is sent', async (_name, c) => {
    const scene = await openScene(server, 'first')
    const offender = await join(server, scene.room, { auth: false, sync: false })

    offender.send(c.frame())
    const { code } = await closedWith(offender)

    expect(code).toBe(c.close)
    expect(offender.messages).toEqual([])
    await checkUnharmed(scene, offender)
  })

  // A well-formed first message that is not Tandem's auth makes a stock y-websocket client: it is
  // authenticated (anonymously here) and joins, then its message is handled and refused.
  it.each(BAD_PAYLOAD.map((c) => [c.name, c] as const))('%s: the compatibility path refuses it after joining', async (_name, c) => {
    const scene = await openScene(server, 'first-compat')
    const offender = await join(server, scene.room, { auth: false, sync: false })

    offender.send(c.frame())
    const { code } = await closedWith(offender)

    expect(code).toBe(c.close)
    expect(offender.messages.filter((m) => m.kind === 'error' || m.kind === 'update')).toEqual([])
    await checkUnharmed(scene, offender)
  })
})

describe('while authentication is pending', () => {
  let server: TestServer
  let calls: { credentials: Credentials; result: ReturnType<typeof deferred<AuthResult>> }[]
  let called: (() => void) | null
  const PRE_AUTH_MESSAGES = 4
  const PRE_AUTH_BYTES = 4 * 1024

  /** Holds the token `slow` until the test resolves it; grants anything else at once. */
  const authenticate: Authenticate = (credentials) => {
    if (credentials.token !== 'slow') return { actor: { kind: 'anonymous', sessionId: 'fast' }, permissions: WRITER }
    const result = deferred<AuthResult>()
    calls.push({ credentials, result })
    called?.()
    return result.promise
  }

  const pendingAuth = async (room: string): Promise<RawClient> => {
    const waiting = new Promise<void>((resolve) => {
      called = resolve
    })
    const client = await join(server, room, { token: 'slow', sync: false })
    await withDeadline('authenticate to be called', waiting)
    called = null
    return client
  }

  beforeAll(async () => {
    calls = []
    called = null
    server = await start({
      authenticate,
      limits: { maxMessageBytes: MAX_MESSAGE_BYTES, preAuthMaxMessages: PRE_AUTH_MESSAGES, preAuthMaxBytes: PRE_AUTH_BYTES },
    })
  })

  afterEach(() => {
    // Let every held authentication finish: the server must ignore it for a closed socket.
    for (const call of calls.splice(0)) call.result.resolve({ actor: { kind: 'user', userId: 'late' }, permissions: WRITER })
  })

  it.each(UNDECODABLE.map((c) => [c.name, c] as const))('%s: the error code, the close code, and nothing of the room', async (_name, c) => {
    const scene = await openScene(server, 'pending')
    const offender = await pendingAuth(scene.room)

    offender.send(c.frame())
    const { code } = await closedWith(offender)

    expect(code).toBe(c.close)
    if (c.error !== null) expect(offender.messages).toMatchObject([{ kind: 'error', code: c.error }])
    else expect(offender.messages).toEqual([])
    await checkUnharmed(scene, offender)
  })

  it('a bad update queued before auth completes is refused once the session opens, never applied', async () => {
    const scene = await openScene(server, 'queued')
    const offender = await pendingAuth(scene.room)
    offender.send(encodeFrame(writeUpdate, EVIL_UPDATE.subarray(0, -1)))
    await serverRead(offender) // queued, not handled: the session is not open yet
    expect(offender.messages).toEqual([])
    calls.shift()!.result.resolve({ actor: { kind: 'user', userId: 'slow' }, permissions: WRITER })

    const { code } = await closedWith(offender)
    expect(code).toBe(CloseCode.malformed)
    // Nothing of the room before the session was established; the refusal is the last word.
    expect(offender.messages[0]?.kind).toBe('authenticated')
    expect(offender.messages.at(-1)).toMatchObject({ kind: 'error', code: 'malformed_message' })
    await checkUnharmed(scene, offender)
  })

  it(`more than preAuthMaxMessages (${PRE_AUTH_MESSAGES}) queued messages close with 4529`, async () => {
    const scene = await openScene(server, 'flood')
    const offender = await pendingAuth(scene.room)
    for (let i = 0; i <= PRE_AUTH_MESSAGES; i++) offender.sendUpdate(textUpdate(`queued ${i};`, evilDoc()))

    const { code } = await closedWith(offender)
    expect(code).toBe(CloseCode.rateLimited)
    expect(offender.messages).toMatchObject([{ kind: 'error', code: 'rate_limited' }])
    // Authentication finishing now changes nothing for the closed socket.
    calls.shift()!.result.resolve({ actor: { kind: 'user', userId: 'slow' }, permissions: WRITER })
    await checkUnharmed(scene, offender)
  })

  it(`queued messages may not pass preAuthMaxBytes (${PRE_AUTH_BYTES}) either: 4529`, async () => {
    const scene = await openScene(server, 'flood-bytes')
    const offender = await pendingAuth(scene.room)
    const big = writeAwarenessUpdate([{ clientID: 1, clock: 1, state: JSON.stringify({ pad: 'x'.repeat(PRE_AUTH_BYTES / 2) }) }])
    offender.send(encodeFrame(writeAwareness, big))
    offender.send(encodeFrame(writeAwareness, big))

    const { code } = await closedWith(offender)
    expect(code).toBe(CloseCode.rateLimited)
    expect(offender.messages).toMatchObject([{ kind: 'error', code: 'rate_limited' }])
    await checkUnharmed(scene, offender)
  })

  it('preAuthMaxMessages queued writes are kept, then applied in order and acknowledged once auth completes', async () => {
    const scene = await openScene(server, 'queue-ok')
    const offender = await pendingAuth(scene.room)
    const doc = new Y.Doc()
    for (let i = 0; i < PRE_AUTH_MESSAGES; i++) offender.sendUpdate(textUpdate(`q${i};`, doc))
    await serverRead(offender) // all queued: the queue is full, not over
    expect(offender.socket.readyState).toBe(OPEN)
    calls.shift()!.result.resolve({ actor: { kind: 'user', userId: 'slow' }, permissions: WRITER })
    await offender.saved(PRE_AUTH_MESSAGES)
    await sees('observer has the queued writes', scene.observer.doc, `q${PRE_AUTH_MESSAGES - 1};`)
    expect(textOf(scene.observer.doc)).toContain(Array.from({ length: PRE_AUTH_MESSAGES }, (_, i) => `q${PRE_AUTH_MESSAGES - 1 - i};`).join(''))
    expect(offender.socket.readyState).toBe(OPEN)
  })
})

// --- refusal, deadline -----------------------------------------------------------------------

/** Server messages that carry something of the room. */
const roomMessages = (messages: readonly ServerMessage[]): ServerMessage[] =>
  messages.filter((m) => m.kind === 'sync-step-1' || m.kind === 'sync-step-2' || m.kind === 'update' || m.kind === 'awareness' || m.kind === 'authenticated')

describe('clients that are not let in', () => {
  it('without allowAnonymous, a client with no credentials is closed with 4401 and receives nothing of the document', async () => {
    const server = await start({ allowAnonymous: false, authenticate: undefined })
    const room = freshRoom('private')
    const secret = new Y.Doc()
    await server.app.tandem.store.append(room, 0, [textUpdate('secret text', secret)])

    const tandem = await join(server, room)
    const compat = await join(server, room, { auth: false })
    // The stock client reports y-protocols' permission-denied with console.warn.
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    const peer = stock(server, room)
    const stockClosed = new Promise<{ code: number }>((resolve) => peer.provider.on('closed', (event: { code: number }) => resolve(event)))

    expect((await closedWith(tandem)).code).toBe(CloseCode.unauthorized)
    expect(tandem.messages).toMatchObject([{ kind: 'error', code: 'unauthorized' }])
    expect((await closedWith(compat)).code).toBe(CloseCode.unauthorized)
    // The stock client hears y-protocols' permission-denied, which it understands.
    expect(compat.messages.map((m) => m.kind)).toEqual(['permission-denied'])
    expect((await withDeadline('stock client closed', stockClosed)).code).toBe(CloseCode.unauthorized)
    expect(peer.provider.shouldConnect).toBe(false) // 44xx is final: it stops reconnecting
    expect(warn).toHaveBeenCalledWith(expect.stringContaining('Permission denied'))

    for (const client of [tandem, compat]) expect(roomMessages(client.messages)).toEqual([])
    expect(textOf(peer.doc)).toBe('')
    await server.app.inject({ method: 'GET', url: '/healthz' }).then((r) => expect(r.statusCode).toBe(200))
  })

  it('a refused client receives nothing of a live room: no document, no presence', async () => {
    const authenticate: Authenticate = (credentials) =>
      credentials.token === 'member' ? { actor: { kind: 'user', userId: 'member' }, permissions: WRITER } : { refused: 'unauthorized', reason: 'no token' }
    const server = await start({ authenticate })
    const room = freshRoom('live-private')
    const inside = await join(server, room, { token: 'member' })
    await inside.next('sync-step-2')
    inside.sendUpdate(textUpdate('members only'))
    inside.send(encodeFrame(writeAwareness, writeAwarenessUpdate([{ clientID: 77, clock: 1, state: '{"name":"member"}' }])))
    await inside.saved(1)

    const outsider = await join(server, room, { token: 'wrong' })
    expect((await closedWith(outsider)).code).toBe(CloseCode.unauthorized)
    expect(outsider.messages).toMatchObject([{ kind: 'error', code: 'unauthorized' }])
    expect(roomMessages(outsider.messages)).toEqual([])
    expect(inside.socket.readyState).toBe(OPEN)
  })

  it('a client that never sends anything is closed with 4408; so is one whose authentication never completes', async () => {
    const authenticate: Authenticate = (credentials) =>
      credentials.token === 'hang' ? new Promise<AuthResult>(() => {}) : { actor: { kind: 'anonymous', sessionId: 's' }, permissions: WRITER }
    const server = await start({ authenticate, limits: { authTimeoutMs: 300 } })
    const room = freshRoom('silent')
    const good = await member(server, room, 'tandem')
    good.sendUpdate(textUpdate('hello'))
    await good.saved(1)

    const silent = await join(server, room, { auth: false, sync: false })
    const hanging = await join(server, room, { token: 'hang' })
    expect((await closedWith(silent)).code).toBe(CloseCode.authTimeout)
    expect(silent.messages).toEqual([])
    expect((await closedWith(hanging)).code).toBe(CloseCode.authTimeout)
    expect(hanging.messages).toMatchObject([{ kind: 'error', code: 'unauthorized' }])
    expect(roomMessages(hanging.messages)).toEqual([])

    // The deadline is for authenticating only: a member that stays quiet afterwards is not closed.
    expect(good.socket.readyState).toBe(OPEN)
    await serverStillServes(server, room, 'hello')
  })
})
