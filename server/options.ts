/**
 * What `createServer` accepts, and the defaults it fills in. The command line (cli.ts, config.ts)
 * builds these from flags and the environment; embedding apps pass them directly.
 */

import type { FastifyBaseLogger } from 'fastify'
import { ConfigError } from './config-error.ts'
import { DEFAULT_LIMITS, LIMIT_NAMES, type Limits, checkLimit, limitEnv, limitFlag } from './limits.ts'
import type { Authenticate, Authorize } from './auth/session.ts'
import type { Store } from './store/types.ts'

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

export { DEFAULT_LIMITS, type Limits } from './limits.ts'

export interface ServerOptions {
  /** LevelDB directory; ignored when `store` or `databaseUrl` is given. */
  dataDir?: string
  /**
   * PostgreSQL (15+) URL: documents, rooms, ACLs, history and revocations in PostgreSQL instead of
   * LevelDB. With `redisUrl`, the distributed mode: many processes as one server (SPEC 7.1).
   */
  databaseUrl?: string
  /** Redis (7+) URL: the distributed mode, with `databaseUrl` (each room's durable log, the bus between processes). */
  redisUrl?: string
  /** Every Redis key of this deployment starts with it (default `tandem:`). */
  redisPrefix?: string
  /** Redis replicas a write must reach before it is acknowledged (`WAIT`; default 0). */
  redisWaitReplicas?: number
  /** A document store to use instead of opening LevelDB at `dataDir` (the server closes it). */
  store?: Store
  /** Server secret (signs tokens, authenticates REST). Never logged. */
  secret: string
  /** Let clients without credentials in, anonymously, with each room's `defaultAccesses` only. Off by default. */
  allowAnonymous?: boolean
  /** Accept the stock y-websocket client's `?token=` query parameter. Off by default. */
  yWebsocketCompat?: boolean
  /** Trust `x-user-id`, `x-group-ids`, `x-tenant-id` from a gateway in front of the server. Off by default. */
  trustIdentityHeaders?: boolean
  /** Custom identity: replaces the built-in token / anonymous authentication. */
  authenticate?: Authenticate
  /** Custom rules, run after the ACL decided, once per session and on every re-evaluation. */
  authorize?: Authorize
  /** Tokens from an external identity provider (Tandem's own HS256 tokens are always accepted). */
  jwt?: { jwksUrl?: string; publicKeyPem?: string; issuer?: string; audience?: string; groupsClaim?: string }
  /** Have LevelDB fsync every acknowledged write (survives power loss, not only a crash). */
  syncWrites?: boolean
  /** How long a room with no connections stays loaded, after its writes are flushed. */
  idleUnloadMs?: number
  /** A connection that received nothing for this long gets a keepalive message and a ping. */
  keepaliveMs?: number
  /** Compact a room's log once it holds this many records. */
  compactAfterRecords?: number
  /**
   * A busy room relays document updates at most once per this many ms, merged into one frame (the
   * first update after a pause goes out at once). 0 relays at the end of every event-loop turn.
   * Default `'auto'`: 0 while the event loop has slack, 10 ms while it is busy
   * (server/rooms/relay-window.ts).
   */
  broadcastWindowMs?: number | 'auto'
  /**
   * A busy room stores writes at most once per this many ms, in one record per window (the first
   * write after a pause is stored at once); their acknowledgements wait as long. Fewer, larger
   * LevelDB writes, history entries and acknowledgements per edit; relaying to other clients is
   * not delayed. 0 stores as soon as the previous append is done. Default 500 (why: DEFAULTS).
   */
  storeWindowMs?: number
  limits?: Partial<Limits>
  logLevel?: LogLevel
  /** A logger instance to use instead of Fastify's own (pino). */
  logger?: FastifyBaseLogger
  /** Serve the playground at /playground (server/playground.ts): a local demo whose admin panel can change any playground room's ACL. Off by default. */
  playground?: boolean
}

export interface ResolvedOptions {
  readonly secret: string
  readonly allowAnonymous: boolean
  readonly yWebsocketCompat: boolean
  readonly trustIdentityHeaders: boolean
  readonly syncWrites: boolean
  readonly idleUnloadMs: number
  readonly keepaliveMs: number
  readonly compactAfterRecords: number
  readonly broadcastWindowMs: number | 'auto'
  readonly storeWindowMs: number
  readonly limits: Readonly<Limits>
}

/** The limits with the defaults filled in; an invalid one is a ConfigError naming it. */
const resolveLimits = (given: Partial<Limits> | undefined): Readonly<Limits> => {
  const limits = { ...DEFAULT_LIMITS, ...given }
  for (const name of LIMIT_NAMES) {
    const why = checkLimit(name, limits[name])
    if (why !== null) throw new ConfigError(`limits.${name} (--${limitFlag(name)}, ${limitEnv(name)})`, `invalid limits.${name}: ${why}`)
  }
  return Object.freeze(limits)
}

/** The defaults of the options that have one, defined here only (the CLI shows and uses these). */
export const DEFAULTS = {
  dataDir: './data',
  idleUnloadMs: 10_000,
  keepaliveMs: 15_000,
  compactAfterRecords: 500,
  broadcastWindowMs: 'auto',
  /** The window `'auto'` opens (bench 05 on 10 x 50: see relay-window.ts; one frame at 60 fps is 16 ms). */
  autoBroadcastWindowMaxMs: 10,
  /**
   * A room of one typist (20 edits/s on bench 05's 100 x 5) stores every edit alone at 50 ms, once per
   * 10 edits at 500: 20 % less CPU per edit there (46-52 µs against 56-68), half the main thread's
   * preemptions. `saved` then lags a busy room's writes by up to 500 ms: no user sees that, and a
   * client resends what was not acknowledged (Hocuspocus debounces its store by 2 s).
   */
  storeWindowMs: 500,
  /**
   * In the distributed mode, other processes relay a write once it is in the room's stream: a
   * shorter window keeps cross-process relays as prompt (more XADDs per busy room).
   */
  clusterStoreWindowMs: 10,
} as const

export const resolveOptions = (options: ServerOptions): ResolvedOptions => ({
  secret: options.secret,
  allowAnonymous: options.allowAnonymous ?? false,
  yWebsocketCompat: options.yWebsocketCompat ?? false,
  trustIdentityHeaders: options.trustIdentityHeaders ?? false,
  syncWrites: options.syncWrites ?? false,
  idleUnloadMs: options.idleUnloadMs ?? DEFAULTS.idleUnloadMs,
  keepaliveMs: options.keepaliveMs ?? DEFAULTS.keepaliveMs,
  compactAfterRecords: options.compactAfterRecords ?? DEFAULTS.compactAfterRecords,
  broadcastWindowMs: options.broadcastWindowMs ?? DEFAULTS.broadcastWindowMs,
  storeWindowMs: options.storeWindowMs ?? (options.redisUrl !== undefined ? DEFAULTS.clusterStoreWindowMs : DEFAULTS.storeWindowMs),
  limits: resolveLimits(options.limits),
})
