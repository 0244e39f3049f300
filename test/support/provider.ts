/**
 * Helpers for TandemProvider tests in Node: providers on ws with one call (cross-tab off unless
 * asked), a WebSocket class that counts the sockets a provider opens, counting upgrade requests on
 * the server, a provider's event log, event-based waits on provider state and documents, a clock a
 * test moves by hand (the provider's `scheduler`), and a tiny app auth endpoint (node:http) for the
 * `{ endpoint }` auth form.
 */

import { type IncomingMessage, createServer as createHttpServer } from 'node:http'
import { WebSocket } from 'ws'
import * as Y from 'yjs'
import { type Scheduler, TandemProvider, type Status, type TandemProviderOptions } from '../../client/provider.ts'
import type { TandemError } from '../../protocol/errors.ts'
import type { TestServer } from './server.ts'
import { until, untilDocs } from './wait.ts'

/** The provider's `WebSocketPolyfill` type (the DOM one); ws is compatible at run time. */
type WebSocketClass = NonNullable<TandemProviderOptions['WebSocketPolyfill']>

/**
 * A ws WebSocket class that counts the sockets created with it: every connection attempt a provider
 * makes is one construction, refused or not. `sockets` holds them, oldest first.
 */
export const countingWebSocket = (): { readonly Class: WebSocketClass; readonly count: () => number; readonly sockets: readonly WebSocket[] } => {
  const sockets: WebSocket[] = []
  class CountingWebSocket extends WebSocket {
    constructor(...args: ConstructorParameters<typeof WebSocket>) {
      super(...args)
      sockets.push(this)
    }
  }
  return { Class: CountingWebSocket as unknown as WebSocketClass, count: () => sockets.length, sockets }
}

/** A timer of a `ManualClock`, as `pending()` lists it. */
export interface ManualTimer {
  readonly kind: 'timeout' | 'interval'
  /** The delay it was armed with (an interval's period). */
  readonly ms: number
  /** How far ahead of the clock it fires next. */
  readonly dueIn: number
}

/**
 * A provider `scheduler` whose time moves only when the test says: no timer fires by itself, so a
 * test can see that nothing is armed (no reconnection scheduled) and run a backoff or a 30 s silence
 * in no real time. `now()` starts at the real time, so token expiry reads as it would.
 */
export interface ManualClock extends Scheduler {
  /**
   * Moves the clock `ms` ahead, running every timer that comes due on the way, soonest first (ties in
   * the order they were armed), each with `now()` at its due time; timers armed by those callbacks
   * run too if they come due before the end.
   */
  advance(ms: number): void
  /** The timers armed and not yet fired or cleared, soonest first. */
  pending(): ManualTimer[]
  /** Every `setTimeout` delay asked for so far, in order (the provider's backoffs). */
  readonly timeouts: number[]
}

export const manualClock = (options: { start?: number; random?: () => number } = {}): ManualClock => {
  interface Timer {
    readonly id: number
    readonly kind: 'timeout' | 'interval'
    readonly ms: number
    due: number
    readonly callback: () => void
  }
  let now = options.start ?? Date.now()
  let nextId = 1
  const timers = new Map<number, Timer>()
  const timeouts: number[] = []
  const soonest = (): Timer[] => [...timers.values()].sort((a, b) => a.due - b.due || a.id - b.id)
  const arm = (kind: Timer['kind'], callback: () => void, ms: number): number => {
    const id = nextId++
    // At least 1 ms, as Node (an interval of 0 would otherwise fire forever within one advance).
    timers.set(id, { id, kind, ms, due: now + Math.max(1, ms), callback })
    return id
  }
  return {
    now: () => now,
    setTimeout: (callback, ms) => {
      timeouts.push(ms)
      return arm('timeout', callback, ms)
    },
    setInterval: (callback, ms) => arm('interval', callback, ms),
    clearTimeout: (handle) => void timers.delete(handle as number),
    clearInterval: (handle) => void timers.delete(handle as number),
    random: options.random ?? (() => 0.5),
    advance(ms) {
      const end = now + ms
      for (let timer = soonest()[0]; timer !== undefined && timer.due <= end; timer = soonest()[0]) {
        now = timer.due
        if (timer.kind === 'timeout') timers.delete(timer.id)
        else timer.due += Math.max(1, timer.ms)
        timer.callback()
      }
      now = end
    },
    pending: () => soonest().map((t) => ({ kind: t.kind, ms: t.ms, dueIn: t.due - now })),
    timeouts,
  }
}

/** Counts WebSocket upgrade requests the server's HTTP listener received (every connection attempt that reached it). */
export const countUpgrades = (server: TestServer): { readonly count: () => number; readonly urls: string[] } => {
  const urls: string[] = []
  server.app.server.on('upgrade', (request: IncomingMessage) => urls.push(request.url ?? ''))
  return { count: () => urls.length, urls }
}

export type ProviderOptions = Partial<Omit<TandemProviderOptions, 'url' | 'room' | 'auth'>>

/** A provider in Node, tracked so `destroyProviders` ends it. */
export interface Peer {
  readonly provider: TandemProvider
  readonly doc: Y.Doc
  readonly text: Y.Text
  /** Every event the provider emitted, in order, as `[name, payload]`. */
  readonly events: [string, unknown][]
  statuses(): Status[]
  errors(): string[]
}

const live = new Set<Peer>()

const EVENTS = ['status', 'synced', 'authenticated', 'access-changed', 'revoked', 'saved', 'error'] as const

export const peer = (server: TestServer, room: string, auth: TandemProviderOptions['auth'], options: ProviderOptions = {}): Peer => {
  const doc = options.doc ?? new Y.Doc()
  const events: [string, unknown][] = []
  // The log starts before the constructor connects, so no early event is missed.
  const provider = new TandemProvider({
    url: `ws://127.0.0.1:${server.port}`,
    room,
    auth,
    WebSocketPolyfill: WebSocket as unknown as WebSocketClass,
    crossTab: false,
    ...options,
    doc,
    connect: false,
  })
  for (const name of EVENTS) provider.on(name, (payload: unknown) => events.push([name, payload]))
  if (options.connect ?? true) provider.connect()
  const p: Peer = {
    provider,
    doc,
    text: doc.getText('text'),
    events,
    statuses: () => events.flatMap(([name, payload]) => (name === 'status' ? [(payload as { status: Status }).status] : [])),
    errors: () => events.flatMap(([name, payload]) => (name === 'error' ? [(payload as TandemError).code as string] : [])),
  }
  live.add(p)
  return p
}

export const destroyPeer = (p: Peer): void => {
  if (!live.delete(p)) return
  p.provider.destroy()
  p.doc.destroy()
}

export const destroyPeers = (): void => {
  for (const p of [...live]) destroyPeer(p)
}

const PROVIDER_EVENTS = [...EVENTS]

/** Resolves once `check()` holds, re-checked on every provider event. */
export const untilProvider = (what: string, p: Peer, check: () => boolean, ms?: number): Promise<void> => until(what, p.provider, PROVIDER_EVENTS, check, ms)

export const connected = (p: Peer, ms?: number): Promise<void> =>
  untilProvider('provider connected and synced', p, () => p.provider.status === 'connected' && p.provider.synced, ms)

/** Resolves once the server acknowledged every local change as stored. */
export const allSaved = (p: Peer, ms?: number): Promise<void> =>
  until('unsavedChanges back to 0', p.provider, ['saved'], () => p.provider.unsavedChanges === 0, ms)

/** Resolves once the text of `p` reads `expected`, re-checked on its doc's updates. */
export const textIs = (p: Peer, expected: string, ms?: number): Promise<void> =>
  untilDocs(`text to read ${JSON.stringify(expected)}`, [p.doc], () => p.text.toString() === expected, ms)

/** Resolves once the text of `p` contains `part`. */
export const textHas = (p: Peer, part: string, ms?: number): Promise<void> =>
  untilDocs(`text to contain ${JSON.stringify(part)}`, [p.doc], () => p.text.toString().includes(part), ms)

/** Resolves with the payload of the next `event` the provider emits (after this call). */
export const nextEvent = <T>(p: Peer, event: (typeof EVENTS)[number], match: (payload: T) => boolean = () => true, ms?: number): Promise<T> => {
  const from = p.events.length
  let found: T | undefined
  return until(
    `provider event ${event}`,
    p.provider,
    [event],
    () => {
      const hit = p.events.slice(from).find(([name, payload]) => name === event && match(payload as T))
      if (hit !== undefined) found = hit[1] as T
      return hit !== undefined
    },
    ms,
  ).then(() => found as T)
}

/** Live server connections of a user (by the actor's userId). */
export const connectionsOf = (server: TestServer, userId: string): string[] =>
  [...server.app.tandem.connections].flatMap((c) => {
    const actor = c.session?.actor
    return actor?.kind === 'user' && actor.userId === userId ? [c.id] : []
  })

/** A tiny app backend on 127.0.0.1 that answers `POST` with `{ token }`, as an app's auth route would. */
export interface AuthEndpoint {
  readonly url: string
  /** Every request's parsed JSON body and headers, in order. */
  readonly requests: { body: unknown; headers: IncomingMessage['headers'] }[]
  close(): Promise<void>
}

export const startAuthEndpoint = async (
  answer: (body: unknown, headers: IncomingMessage['headers']) => Promise<{ status: number; body: unknown }>,
): Promise<AuthEndpoint> => {
  const requests: AuthEndpoint['requests'] = []
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      let body: unknown = null
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
      } catch {
        body = null
      }
      requests.push({ body, headers: req.headers })
      answer(body, req.headers).then(
        (reply) => {
          res.writeHead(reply.status, { 'content-type': 'application/json' })
          res.end(JSON.stringify(reply.body))
        },
        (err: unknown) => {
          res.writeHead(500, { 'content-type': 'application/json' })
          res.end(JSON.stringify({ error: String(err) }))
        },
      )
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return {
    url: `http://127.0.0.1:${port}/api/tandem-auth`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
