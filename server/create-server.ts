/**
 * `createServer(options)`: builds the Tandem app (Fastify + @fastify/websocket) around a document
 * store, a room registry and a fan-out, and returns it ready to `listen` or `inject`. Nothing here
 * reads the environment or listens; cli.ts does.
 *
 * `app.close()` is the graceful shutdown: stop taking sockets, store every pending write, close
 * every socket with 1012 (clients reconnect), unload rooms, close the store.
 */

import websocket, { type WebsocketPluginOptions } from '@fastify/websocket'
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import { CloseCode } from '../protocol/errors.ts'
import { AccessControl } from './auth/access-control.ts'
import { builtInAuthenticate } from './auth/authenticator.ts'
import { Connection, type ConnectionContext } from './sync/connection.ts'
import { type Fanout, LocalFanout } from './rooms/fanout.ts'
import { LimitedWebSocket } from './sync/socket.ts'
import { MemoryBudget } from './rooms/memory-budget.ts'
import { Metrics } from './metrics.ts'
import { type ServerOptions, resolveOptions } from './options.ts'
import { PendingAccess } from './auth/pending-access.ts'
import { playground } from './playground.ts'
import { TokenBucket } from './token-bucket.ts'
import { errorHandler, notFoundHandler, restApi, sendError } from './rest/index.ts'
import { validatorCompiler } from './rest/validation.ts'
import { RoomRegistry } from './rooms/registry.ts'
import { KeyedSerial } from './keyed-serial.ts'
import { isValidRoomId } from './store/keys.ts'
import { openLevelStore } from './store/level-store.ts'
import type { Store } from './store/types.ts'
import { TokenVerifier } from './auth/token-verifier.ts'

type WsClass = NonNullable<WebsocketPluginOptions['options']>['WebSocket']

/** What a running server exposes to the app that embeds it (and to tests). */
export interface TandemRuntime {
  readonly store: Store
  readonly registry: RoomRegistry
  readonly metrics: Metrics
  readonly connections: ReadonlySet<Connection>
  /** Access changes in effect that the store has not taken yet. */
  readonly pending: PendingAccess
}

declare module 'fastify' {
  interface FastifyInstance {
    tandem: TandemRuntime
  }
}

/** Longest URL-encoded path parameter: a room id of 256 characters, each up to 9 bytes encoded. */
const MAX_ENCODED_ID_LENGTH = 256 * 9

/** Per-IP buckets kept at most; past it the least recently used is forgotten (it starts full again). */
const MAX_IP_BUCKETS = 100_000

/**
 * WebSocket upgrades per IP: a bucket of `perMinute` tokens refilled at `perMinute` a minute, so an
 * IP may open all of them at once, then keeps that pace. Kept in least-recent-use order (a use moves
 * an entry to the end), so the sweep stops at the first entry used within the last minute: the ones
 * before it are full again and forgetting them changes nothing.
 */
class ConnectionRateLimiter {
  readonly #perMinute: number
  readonly #buckets = new Map<string, { bucket: TokenBucket; at: number }>()

  constructor(perMinute: number) {
    this.#perMinute = perMinute
  }

  take(ip: string, now: number): boolean {
    const entry = this.#buckets.get(ip) ?? { bucket: new TokenBucket(this.#perMinute / 60, this.#perMinute, now), at: now }
    this.#buckets.delete(ip)
    this.#buckets.set(ip, entry)
    entry.at = now
    if (this.#buckets.size > MAX_IP_BUCKETS) this.#buckets.delete(this.#buckets.keys().next().value!)
    return entry.bucket.take(1, now)
  }

  /** Forgets the buckets that are full again. */
  sweep(now: number): void {
    for (const [ip, entry] of this.#buckets) {
      if (now - entry.at < 60_000) return
      this.#buckets.delete(ip)
    }
  }
}

/** Request log lines never carry a token: the compatibility `?token=` is cut from logged URLs. */
const redactUrl = (url: string): string => url.replace(/([?&]token=)[^&]*/gi, '$1[redacted]')

const serializeRequest = (req: FastifyRequest): { method: string; url: string; ip: string } => ({
  method: req.method,
  url: redactUrl(req.url),
  ip: req.ip,
})
const REDACT = ['req.headers.authorization', 'req.headers.cookie']

/** Fastify's own pino, or the app's logger; either way with the request serializer that redacts. */
const loggerOptions = (options: ServerOptions): Pick<FastifyServerOptions, 'logger' | 'loggerInstance'> =>
  options.logger !== undefined
    ? { loggerInstance: options.logger.child({}, { serializers: { req: serializeRequest }, redact: REDACT }) }
    : { logger: { level: options.logLevel ?? 'info', redact: REDACT, serializers: { req: serializeRequest } } }

export async function createServer(options: ServerOptions): Promise<FastifyInstance> {
  const resolved = resolveOptions(options)
  let storeHealthChanged = (health: string, reason: string): void => {
    process.stderr.write(`tandem: store ${health}: ${reason}\n`)
  }
  const store =
    options.store ??
    (await openLevelStore(options.dataDir ?? './data', {
      sync: resolved.syncWrites,
      reserveBytes: resolved.limits.diskReserveBytes,
      // Before the app exists its logger does not either: what the store says goes to stderr then.
      onHealth: (health, reason) => storeHealthChanged(health, reason),
    }))
  try {
    const app = await build(options, resolved, store)
    storeHealthChanged = (health, reason) => {
      if (health === 'ok') {
        app.log.warn({ reason }, 'store writable again: acknowledging writes')
        app.tandem.pending.retryNow()
      }
      else app.log.error({ reason }, 'store read-only: no write is acknowledged until the disk has room again')
    }
    return app
  } catch (err) {
    await store.close()
    throw err
  }
}

async function build(options: ServerOptions, resolved: ReturnType<typeof resolveOptions>, store: Store): Promise<FastifyInstance> {
  const app = Fastify({
    ...loggerOptions(options),
    // Refused while closing by the hook below, with a coded body (Fastify's own 503 has none).
    return503OnClosing: false,
    requestTimeout: resolved.limits.requestTimeoutMs,
    // Room ids are up to 256 characters, URL-encoded up to 9 bytes each (%XX%XX%XX).
    routerOptions: { maxParamLength: MAX_ENCODED_ID_LENGTH },
    // Fastify's own refusals (a path parameter too long, a URL that does not decode) get coded bodies.
    frameworkErrors: errorHandler,
  })
  app.setValidatorCompiler(validatorCompiler)
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler(notFoundHandler)
  let closing = false
  app.addHook('onRequest', async (_request, reply) => {
    if (closing) await sendError(reply.header('connection', 'close'), 'unavailable', 'the server is shutting down; try again shortly')
  })
  const metrics = new Metrics()
  const memory = new MemoryBudget(resolved.limits.maxLoadedMemoryBytes)
  const fanout: Fanout = new LocalFanout()
  const registry = new RoomRegistry(
    {
      store,
      fanout,
      metrics,
      log: app.log,
      compactAfterRecords: resolved.compactAfterRecords,
      presenceLimits: resolved.limits,
      maxRoomBytes: resolved.limits.maxRoomBytes,
      broadcastWindowMs: resolved.broadcastWindowMs,
      storeWindowMs: resolved.storeWindowMs,
      maxUpdateIntegrationSteps: resolved.limits.maxUpdateIntegrationSteps,
      maxPendingStructs: resolved.limits.maxPendingStructs,
      maxLoadIntegrationSteps: resolved.limits.maxLoadIntegrationSteps,
      maxMessageBytes: resolved.limits.maxMessageBytes,
      maxRoomMemoryBytes: resolved.limits.maxRoomMemoryBytes,
      memory,
    },
    resolved.idleUnloadMs,
    resolved.limits.maxRooms,
  )
  const connections = new Set<Connection>()
  const verifier = new TokenVerifier({ secret: resolved.secret, ...options.jwt })
  // One queue per room for every change to its record: REST writes, deletion, creation on first join.
  const serial = new KeyedSerial()
  const pending = new PendingAccess(store, app.log)
  const access = new AccessControl({
    store,
    pending,
    authorize: options.authorize,
    connections,
    log: app.log,
    serial,
    accessTokenRoomsPerPattern: resolved.limits.accessTokenRoomsPerPattern,
  })
  const authenticate =
    options.authenticate ??
    builtInAuthenticate({ verifier, revocations: pending, allowAnonymous: resolved.allowAnonymous, trustIdentityHeaders: resolved.trustIdentityHeaders })
  const context: ConnectionContext = {
    registry,
    access,
    authenticate,
    options: resolved,
    metrics,
    log: app.log,
    connections,
  }
  app.decorate('tandem', { store, registry, metrics, connections, pending })

  const connectionRate = new ConnectionRateLimiter(resolved.limits.connectionsPerIpPerMinute)
  const heartbeat = setInterval(() => {
    const now = Date.now()
    for (const connection of connections) connection.heartbeat()
    connectionRate.sweep(now)
  }, resolved.keepaliveMs / 2)
  heartbeat.unref()

  const wsOptions = {
    maxPayload: resolved.limits.maxMessageBytes,
    // A peer that never answers our close frame (asleep, gone) must not hold up a shutdown
    // (ws 8.23 option, not yet in @types/ws).
    closeTimeout: 1_000,
    // The plugin's types want the ws module's namespace-like class; ws itself takes any subclass.
    WebSocket: LimitedWebSocket as unknown as WsClass,
  }
  await app.register(websocket, {
    options: wsOptions,
    preClose: async () => {
      closing = true
      clearInterval(heartbeat)
      registry.shuttingDown()
      await registry.flushAll()
      for (const connection of [...connections]) connection.close(CloseCode.serverRestarting, 'server_restarting')
      await registry.closeAll()
    },
  })
  app.addHook('onClose', async () => {
    pending.close()
    await store.close()
  })

  await app.register(restApi, {
    secret: resolved.secret,
    store,
    registry,
    access,
    connections,
    serial,
    pending,
    requestsPerMinute: resolved.limits.restRequestsPerMinute,
    bodyLimit: resolved.limits.maxMessageBytes,
  })

  // A local demo: anyone who reaches it can change playground rooms' ACLs, so only on request.
  if (options.playground === true) await app.register(playground, { secret: resolved.secret })

  app.get('/healthz', async () => {
    const storeHealth = store.health()
    return { status: storeHealth === 'ok' ? 'ok' : 'degraded', store: storeHealth, rooms: registry.size, connections: connections.size }
  })

  app.get('/metrics', async (_request, reply) => {
    reply.type(metrics.registry.contentType)
    return metrics.registry.metrics()
  })

  app.get<{ Params: { roomId: string }; Querystring: { token?: string } }>(
    '/v1/sync/:roomId',
    {
      websocket: true,
      // Refused before the upgrade: a flood of sockets from one IP costs a status line each.
      onRequest: async (request, reply) => {
        if (!connectionRate.take(request.ip, Date.now())) {
          const perMinute = resolved.limits.connectionsPerIpPerMinute
          await sendError(reply, 'rate_limited', `more than ${perMinute} connections a minute from this address; try again later`)
        }
      },
      preValidation: async (request, reply) => {
        if (!isValidRoomId(request.params.roomId)) {
          await sendError(reply, 'malformed_message', 'room ids are 1 to 256 characters, without control characters')
        }
      },
    },
    (socket, request) => {
      const token = typeof request.query.token === 'string' ? request.query.token : null
      new Connection(socket, request.params.roomId, { ip: request.ip, headers: request.headers }, token, context)
    },
  )

  return app
}
