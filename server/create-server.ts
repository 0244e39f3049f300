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
import type { LiveSession } from './auth/session.ts'
import type { Connection, ConnectionContext } from './sync/connection.ts'
import type { PeerSocket } from './sync/peer-socket.ts'
import { AdaptiveWindow, fixedWindow } from './rooms/relay-window.ts'
import { signalRoute } from './signal/signal-route.ts'
import { Topics } from './signal/topics.ts'
import { hocuspocusRoute } from './sync/hocuspocus-route.ts'
import { ConnectionRateLimiter, syncRoute } from './sync/route.ts'
import { LimitedWebSocket } from './sync/socket.ts'
import { MemoryBudget } from './rooms/memory-budget.ts'
import { Metrics } from './metrics.ts'
import { type Engines, openEngines } from './engines.ts'
import { DEFAULTS, type ResolvedOptions, type ServerOptions, resolveOptions } from './options.ts'
import { PendingAccess } from './auth/pending-access.ts'
import { playground } from './playground.ts'
import { errorHandler, notFoundHandler, sendError } from './error-reply.ts'
import { restApi } from './rest/index.ts'
import { validatorCompiler } from './rest/validation.ts'
import { RoomRegistry } from './rooms/registry.ts'
import { KeyedSerial } from './keyed-serial.ts'
import type { StoreHealth } from './store/level-store.ts'
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
  const metrics = new Metrics()
  let onStoreHealth: (health: StoreHealth, reason: string) => void = () => {}
  let engines: Engines
  try {
    engines = await openEngines(options, resolved, app.log, metrics, (health, reason) => onStoreHealth(health, reason))
  } catch (err) {
    await app.close()
    throw err
  }
  try {
    await build(app, options, resolved, metrics, engines)
  } catch (err) {
    await engines.close()
    throw err
  }
  onStoreHealth = (health, reason) => {
    if (health === 'ok') {
      app.log.warn({ reason }, 'store writable again: acknowledging writes')
      app.tandem.pending.retryNow()
    } else app.log.error({ reason }, 'store read-only: no write is acknowledged until the disk has room again')
  }
  return app
}

async function build(app: FastifyInstance, options: ServerOptions, resolved: ResolvedOptions, metrics: Metrics, engines: Engines): Promise<void> {
  const { store, fanout } = engines
  app.setValidatorCompiler(validatorCompiler)
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler(notFoundHandler)
  let closing = false
  app.addHook('onRequest', async (_request, reply) => {
    if (closing) await sendError(reply.header('connection', 'close'), 'unavailable', 'the server is shutting down; try again shortly')
  })
  const memory = new MemoryBudget(resolved.limits.maxLoadedMemoryBytes)
  const relayWindow = resolved.broadcastWindowMs === 'auto' ? new AdaptiveWindow(DEFAULTS.autoBroadcastWindowMaxMs) : fixedWindow(resolved.broadcastWindowMs)
  app.addHook('onClose', async () => relayWindow.close())
  const registry = new RoomRegistry(
    {
      store,
      fanout,
      metrics,
      log: app.log,
      compactAfterRecords: resolved.compactAfterRecords,
      presenceLimits: resolved.limits,
      maxRoomBytes: resolved.limits.maxRoomBytes,
      relayWindow,
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
  /** Signalling subscriptions (server/signal): live sessions too, though no room is loaded for them. */
  const signalSessions = new Set<LiveSession>()
  const liveSessions: Iterable<LiveSession> = {
    *[Symbol.iterator]() {
      yield* connections
      yield* signalSessions
    },
  }
  const verifier = new TokenVerifier({ secret: resolved.secret, ...options.jwt })
  // One queue per room for every change to its record: REST writes, deletion, creation on first join.
  const serial = new KeyedSerial()
  const pending = new PendingAccess(store, app.log)
  const access = new AccessControl({
    store,
    pending,
    authorize: options.authorize,
    connections: liveSessions,
    log: app.log,
    serial,
    accessTokenRoomsPerPattern: resolved.limits.accessTokenRoomsPerPattern,
    ...(engines.cluster !== null && { publisher: engines.cluster.publisher }),
  })
  const authenticate =
    options.authenticate ??
    builtInAuthenticate({ verifier, revocations: pending, allowAnonymous: resolved.allowAnonymous, trustIdentityHeaders: resolved.trustIdentityHeaders })
  const context: ConnectionContext = { registry, access, authenticate, limits: resolved.limits, metrics, log: app.log, connections }
  app.decorate('tandem', { store, registry, metrics, connections, pending })

  const sockets = new Set<PeerSocket>()
  const connectionRate = new ConnectionRateLimiter(resolved.limits.connectionsPerIpPerMinute)
  const heartbeat = setInterval(() => {
    for (const socket of sockets) socket.heartbeat()
    connectionRate.sweep(Date.now())
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
      // Sockets with no session left (a Hocuspocus socket between documents) go too.
      for (const socket of [...sockets]) socket.close(CloseCode.serverRestarting, 'server_restarting')
      await registry.closeAll()
    },
  })
  app.addHook('onClose', async () => {
    pending.close()
    await engines.close()
  })
  await engines.cluster?.start(access, registry, liveSessions)

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
    const report = engines.report()
    const degraded = storeHealth !== 'ok' || Object.values(report).some((state) => state !== 'ok') || access.unavailable !== null
    return { status: degraded ? 'degraded' : 'ok', store: storeHealth, engines: report, rooms: registry.size, connections: connections.size }
  })

  app.get('/metrics', async (_request, reply) => {
    reply.type(metrics.registry.contentType)
    return metrics.registry.metrics()
  })

  const syncDeps = { context, limits: resolved.limits, sockets, connectionRate, yWebsocketCompat: resolved.yWebsocketCompat }
  syncRoute(app, syncDeps)
  hocuspocusRoute(app, syncDeps)
  signalRoute(app, { ...syncDeps, access, authenticate, metrics, log: app.log, topics: new Topics(), sessions: signalSessions })
}
