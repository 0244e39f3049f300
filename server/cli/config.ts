/**
 * The command line's configuration (SPEC section 7): flags, else the environment, else defaults,
 * parsed once into a typed `Config`. Pure: it reads only the arguments it is given.
 *
 * Every refusal is a `ConfigError` whose message is one line naming the setting, so the CLI can
 * print it as is. No message ever contains the secret's value (nor a positional argument, which
 * could be a secret passed in the wrong place).
 */

import { parseArgs } from 'node:util'
import { ConfigError } from '../config-error.ts'
import { LIMIT_DEFINITIONS, LIMIT_NAMES, type LimitName, type Limits, checkLimit, formatLimit, limitEnv, limitFlag } from '../limits.ts'
import { DEFAULTS, type LogLevel } from '../options.ts'

export interface Config {
  port: number
  host: string
  dataDir: string
  secret: string | null
  allowAnonymous: boolean
  yWebsocketCompat: boolean
  syncWrites: boolean
  trustIdentityHeaders: boolean
  jwksUrl: string | null
  /** PEM text of an identity provider's public key (the flag or variable may also name a file). */
  jwtPublicKey: string | null
  jwtIssuer: string | null
  jwtAudience: string | null
  /** PostgreSQL URL (documents and ACLs there; with redisUrl, the distributed mode). */
  databaseUrl: string | null
  /** Redis URL: the distributed mode (needs databaseUrl). */
  redisUrl: string | null
  redisPrefix: string
  redisWaitReplicas: number
  logLevel: LogLevel
  /** Serve the demo web app at /playground. */
  playground: boolean
  /** A busy room relays updates at most once per this many ms (0: every event-loop turn; auto: by load). */
  broadcastWindowMs: number | 'auto'
  /** A busy room stores writes at most once per this many ms (0: as soon as the last append is done). */
  /** Null: the engines' default (options.ts). */
  storeWindowMs: number | null
  /** The limits given by a flag or variable; the rest keep their defaults (limits.ts). */
  limits: Partial<Limits>
}

export { ConfigError }

/** `--help` (or `-h`) was given: the caller prints `USAGE` and exits 0. */
export class HelpRequested extends Error {
  override readonly name = 'HelpRequested'
  constructor() {
    super('help requested')
  }
}

export const MIN_SECRET_LENGTH = 32

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

interface Setting {
  readonly flag: string
  readonly env: string
  readonly type: 'string' | 'boolean'
}

const SETTINGS = {
  port: { flag: 'port', env: 'PORT', type: 'string' },
  host: { flag: 'host', env: 'HOST', type: 'string' },
  dataDir: { flag: 'data-dir', env: 'TANDEM_DATA_DIR', type: 'string' },
  secret: { flag: 'secret', env: 'TANDEM_SECRET', type: 'string' },
  allowAnonymous: { flag: 'allow-anonymous', env: 'TANDEM_ALLOW_ANONYMOUS', type: 'boolean' },
  yWebsocketCompat: { flag: 'y-websocket-compat', env: 'TANDEM_Y_WEBSOCKET_COMPAT', type: 'boolean' },
  syncWrites: { flag: 'sync-writes', env: 'TANDEM_SYNC_WRITES', type: 'boolean' },
  trustIdentityHeaders: { flag: 'trust-identity-headers', env: 'TANDEM_TRUST_IDENTITY_HEADERS', type: 'boolean' },
  jwksUrl: { flag: 'jwks-url', env: 'TANDEM_JWKS_URL', type: 'string' },
  jwtPublicKey: { flag: 'jwt-public-key', env: 'TANDEM_JWT_PUBLIC_KEY', type: 'string' },
  jwtIssuer: { flag: 'jwt-issuer', env: 'TANDEM_JWT_ISSUER', type: 'string' },
  jwtAudience: { flag: 'jwt-audience', env: 'TANDEM_JWT_AUDIENCE', type: 'string' },
  databaseUrl: { flag: 'database-url', env: 'TANDEM_DATABASE_URL', type: 'string' },
  redisUrl: { flag: 'redis-url', env: 'TANDEM_REDIS_URL', type: 'string' },
  redisPrefix: { flag: 'redis-prefix', env: 'TANDEM_REDIS_PREFIX', type: 'string' },
  redisWaitReplicas: { flag: 'redis-wait-replicas', env: 'TANDEM_REDIS_WAIT_REPLICAS', type: 'string' },
  logLevel: { flag: 'log-level', env: 'TANDEM_LOG_LEVEL', type: 'string' },
  playground: { flag: 'playground', env: 'TANDEM_PLAYGROUND', type: 'boolean' },
  broadcastWindowMs: { flag: 'broadcast-window-ms', env: 'TANDEM_BROADCAST_WINDOW_MS', type: 'string' },
  storeWindowMs: { flag: 'store-window-ms', env: 'TANDEM_STORE_WINDOW_MS', type: 'string' },
} as const satisfies { readonly [K in Exclude<keyof Config, 'limits'>]: Setting }

/** One flag and variable per limit, named after it (limits.ts). */
const LIMIT_SETTINGS = Object.fromEntries(LIMIT_NAMES.map((name) => [name, { flag: limitFlag(name), env: limitEnv(name), type: 'string' }])) as Record<
  LimitName,
  Setting
>

const ALL_SETTINGS: readonly Setting[] = [...Object.values(SETTINGS), ...Object.values(LIMIT_SETTINGS)]

export const USAGE = `Usage: tandem [options]

Each option may instead be set by the environment variable in brackets; a flag wins.

  --port <n>              port to listen on, 0 for any free one [PORT] (default 1234)
  --host <address>        address to listen on [HOST] (default 127.0.0.1)
  --data-dir <path>       LevelDB directory [TANDEM_DATA_DIR] (default ${DEFAULTS.dataDir})
  --secret <string>       server secret, at least ${MIN_SECRET_LENGTH} characters [TANDEM_SECRET]
                          (default: generated on first start, kept in <data-dir>/secret)
  --allow-anonymous       let clients without credentials in [TANDEM_ALLOW_ANONYMOUS]
  --y-websocket-compat    accept the stock y-websocket client's ?token= [TANDEM_Y_WEBSOCKET_COMPAT]
  --sync-writes           fsync every acknowledged write [TANDEM_SYNC_WRITES]
  --trust-identity-headers  take x-user-id, x-group-ids, x-tenant-id from a trusted gateway
                          [TANDEM_TRUST_IDENTITY_HEADERS]
  --jwks-url <url>        accept tokens signed by an identity provider's keys [TANDEM_JWKS_URL]
  --jwt-public-key <pem>  ... or by this public key, PEM text or a file [TANDEM_JWT_PUBLIC_KEY]
  --jwt-issuer <iss>      required issuer of those tokens [TANDEM_JWT_ISSUER]
  --jwt-audience <aud>    required audience of those tokens [TANDEM_JWT_AUDIENCE]
  --database-url <url>    PostgreSQL: documents, rooms and ACLs there instead of LevelDB
                          [TANDEM_DATABASE_URL]
  --redis-url <url>       Redis: with --database-url, many processes as one server (the
                          distributed mode; every process needs the same --secret) [TANDEM_REDIS_URL]
  --redis-prefix <p>      every Redis key starts with it [TANDEM_REDIS_PREFIX] (default tandem:)
  --redis-wait-replicas <n>  Redis replicas a write must reach before it is acknowledged
                          [TANDEM_REDIS_WAIT_REPLICAS] (default 0)
  --log-level <level>     ${LOG_LEVELS.join(', ')} [TANDEM_LOG_LEVEL] (default info)
  --broadcast-window-ms <n|auto>  a busy room relays document updates at most once per n ms,
                          merged into one frame per receiver (the first after a pause goes at
                          once); less CPU per edit in busy rooms for up to n ms of added latency,
                          0 to 1000, or auto [TANDEM_BROADCAST_WINDOW_MS] (default auto: 10 ms for
                          rooms of 16+ receivers while the event loop is busy, else every turn)
  --store-window-ms <n>   a busy room stores (and acknowledges) writes at most once per n ms, in
                          one record (the first after a pause at once); relaying is not delayed,
                          0 to 1000 [TANDEM_STORE_WINDOW_MS] (default ${DEFAULTS.storeWindowMs}; with
                          --redis-url ${DEFAULTS.clusterStoreWindowMs}: other processes relay what is stored)
  --playground            serve the demo web app at /playground; a local demo whose admin
                          panel changes ACLs with the secret: never on a shared server
                          [TANDEM_PLAYGROUND]
  -h, --help              print this help

Limits (every one also settable as createServer({ limits })); each takes an integer:

${LIMIT_NAMES.map((name) => {
  const d = LIMIT_DEFINITIONS[name]
  return `  --${limitFlag(name)} <n>  ${d.bounds}, ${d.unit === 'count' ? '' : `in ${d.unit}, `}${formatLimit(name, d.min)} to ${formatLimit(name, d.max)} [${limitEnv(name)}] (default ${formatLimit(name, d.default)})`
}).join('\n')}

Environment only:

  TANDEM_V8_PRETENURING   keep V8's allocation-site pretenuring, which the command line turns off
                          (fewer short-lived objects promoted per edit; README, Performance)

Boolean variables take 1/true/yes/on or 0/false/no/off; an empty variable counts as unset.
`

const label = (s: Setting): string => `--${s.flag} (${s.env})`

/** A value shown in an error: quoted, escaped onto one line, and cut short. */
const shown = (value: string): string => JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}...` : value)

const invalid = (s: Setting, why: string): ConfigError => new ConfigError(label(s), `invalid ${label(s)}: ${why}`)

const PARSE_OPTIONS = {
  ...Object.fromEntries(ALL_SETTINGS.map((s) => [s.flag, { type: s.type }])),
  help: { type: 'boolean', short: 'h' },
} as const

/**
 * Reads the flags into a map from flag name to value (`true` for a boolean flag). parseArgs runs
 * non-strict with tokens so that every refusal gets our own one-line message; the checks below are
 * the ones strict mode makes.
 */
function readFlags(argv: readonly string[]): Map<string, string | true> {
  const { tokens } = parseArgs({
    args: [...argv],
    options: PARSE_OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  })
  if (tokens.some((t) => t.kind === 'option' && t.name === 'help')) throw new HelpRequested()

  const byFlag = new Map<string, Setting>(ALL_SETTINGS.map((s) => [s.flag, s]))
  const flags = new Map<string, string | true>()
  for (const token of tokens) {
    if (token.kind === 'option-terminator') continue
    if (token.kind === 'positional') {
      const setting = `argument ${token.index + 1}`
      throw new ConfigError(setting, `unexpected ${setting}: tandem takes only --options (see --help)`)
    }
    const setting = byFlag.get(token.name)
    if (setting === undefined) {
      throw new ConfigError(token.rawName, `unknown option ${shown(token.rawName)} (see --help)`)
    }
    if (setting.type === 'boolean') {
      if (token.value !== undefined) throw invalid(setting, `--${setting.flag} takes no value`)
      flags.set(setting.flag, true)
      continue
    }
    // Strict parseArgs refuses `--port --host x` as ambiguous rather than take "--host" as the port.
    if (token.value === undefined || (!token.inlineValue && token.value.startsWith('-'))) {
      throw invalid(setting, `missing value (for a value starting with "-", write --${setting.flag}=-...)`)
    }
    flags.set(setting.flag, token.value)
  }
  return flags
}

export function parseConfig(argv: string[], env: NodeJS.ProcessEnv): Config {
  const flags = readFlags(argv)

  /** The flag's value, else the environment's (an empty variable counts as unset). */
  const text = (s: Setting): string | undefined => {
    const flag = flags.get(s.flag)
    if (typeof flag === 'string') return flag
    const fromEnv = env[s.env]
    return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv
  }
  const bool = (s: Setting): boolean => flags.get(s.flag) === true || parseBoolean(s, text(s))

  return {
    port: parsePort(text(SETTINGS.port)),
    host: parseNonEmpty(SETTINGS.host, text(SETTINGS.host) ?? '127.0.0.1'),
    dataDir: parseNonEmpty(SETTINGS.dataDir, text(SETTINGS.dataDir) ?? DEFAULTS.dataDir),
    secret: parseSecret(text(SETTINGS.secret)),
    allowAnonymous: bool(SETTINGS.allowAnonymous),
    yWebsocketCompat: bool(SETTINGS.yWebsocketCompat),
    syncWrites: bool(SETTINGS.syncWrites),
    trustIdentityHeaders: bool(SETTINGS.trustIdentityHeaders),
    ...parseJwt(text(SETTINGS.jwksUrl), text(SETTINGS.jwtPublicKey)),
    jwtIssuer: text(SETTINGS.jwtIssuer) ?? null,
    jwtAudience: text(SETTINGS.jwtAudience) ?? null,
    ...parseEngines(text(SETTINGS.databaseUrl), text(SETTINGS.redisUrl), text(SETTINGS.redisPrefix), text(SETTINGS.redisWaitReplicas)),
    logLevel: parseLogLevel(text(SETTINGS.logLevel)),
    playground: bool(SETTINGS.playground),
    broadcastWindowMs:
      text(SETTINGS.broadcastWindowMs) === 'auto'
        ? 'auto'
        : parseWindow(SETTINGS.broadcastWindowMs, text(SETTINGS.broadcastWindowMs), DEFAULTS.broadcastWindowMs, ' or auto'),
    storeWindowMs: text(SETTINGS.storeWindowMs) === undefined ? null : parseWindow(SETTINGS.storeWindowMs, text(SETTINGS.storeWindowMs), 0),
    limits: parseLimits(text),
  }
}

function parseLimits(text: (s: Setting) => string | undefined): Partial<Limits> {
  const limits: Partial<Limits> = {}
  for (const name of LIMIT_NAMES) {
    const setting = LIMIT_SETTINGS[name]
    const value = text(setting)
    if (value === undefined) continue
    const n = /^\d{1,16}$/.test(value) ? Number(value) : NaN
    const why = Number.isNaN(n) ? `expected an integer, got ${shown(value)}` : checkLimit(name, n)
    if (why !== null) throw invalid(setting, why)
    limits[name] = n
  }
  return limits
}

function parseJwt(jwksUrl: string | undefined, publicKey: string | undefined): Pick<Config, 'jwksUrl' | 'jwtPublicKey'> {
  if (jwksUrl !== undefined && publicKey !== undefined) {
    throw invalid(SETTINGS.jwtPublicKey, `give either ${label(SETTINGS.jwksUrl)} or a public key, not both`)
  }
  if (jwksUrl !== undefined && !URL.canParse(jwksUrl)) throw invalid(SETTINGS.jwksUrl, `expected a URL, got ${shown(jwksUrl)}`)
  if (jwksUrl !== undefined && !/^https?:$/.test(new URL(jwksUrl).protocol)) throw invalid(SETTINGS.jwksUrl, `expected an http(s) URL, got ${shown(jwksUrl)}`)
  return { jwksUrl: jwksUrl ?? null, jwtPublicKey: publicKey ?? null }
}

function parseEngines(
  databaseUrl: string | undefined,
  redisUrl: string | undefined,
  prefix: string | undefined,
  waitReplicas: string | undefined,
): Pick<Config, 'databaseUrl' | 'redisUrl' | 'redisPrefix' | 'redisWaitReplicas'> {
  // URLs may carry a password: never shown, only their scheme is checked.
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) throw invalid(SETTINGS.databaseUrl, 'expected a postgres:// or postgresql:// URL')
  if (redisUrl !== undefined && !/^rediss?:\/\//.test(redisUrl)) throw invalid(SETTINGS.redisUrl, 'expected a redis:// or rediss:// URL')
  if (redisUrl !== undefined && databaseUrl === undefined) {
    throw invalid(SETTINGS.redisUrl, `the distributed mode needs PostgreSQL too: set ${label(SETTINGS.databaseUrl)}`)
  }
  const redisPrefix = prefix ?? 'tandem:'
  if (!/^[\w:.-]{1,64}$/.test(redisPrefix)) throw invalid(SETTINGS.redisPrefix, `expected 1 to 64 letters, digits, _ : . -, got ${shown(redisPrefix)}`)
  const replicas = waitReplicas === undefined ? 0 : /^\d{1,2}$/.test(waitReplicas) ? Number(waitReplicas) : NaN
  if (Number.isNaN(replicas)) throw invalid(SETTINGS.redisWaitReplicas, `expected an integer from 0 to 99, got ${shown(waitReplicas!)}`)
  return { databaseUrl: databaseUrl ?? null, redisUrl: redisUrl ?? null, redisPrefix, redisWaitReplicas: replicas }
}

function parseBoolean(s: Setting, value: string | undefined): boolean {
  if (value === undefined) return false
  const lower = value.toLowerCase()
  if (['1', 'true', 'yes', 'on'].includes(lower)) return true
  if (['0', 'false', 'no', 'off'].includes(lower)) return false
  throw invalid(s, `expected one of 1, true, yes, on, 0, false, no, off, got ${shown(value)}`)
}

function parsePort(value: string | undefined): number {
  if (value === undefined) return 1234
  const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN
  if (!(n <= 65535)) throw invalid(SETTINGS.port, `expected an integer from 0 to 65535, got ${shown(value)}`)
  return n
}

function parseWindow<F>(s: Setting, value: string | undefined, fallback: F, or = ''): number | F {
  if (value === undefined) return fallback
  const n = /^\d{1,4}$/.test(value) ? Number(value) : NaN
  if (!(n <= 1000)) throw invalid(s, `expected an integer from 0 to 1000 (ms)${or}, got ${shown(value)}`)
  return n
}

function parseNonEmpty(s: Setting, value: string): string {
  if (value.trim() === '') throw invalid(s, `expected a non-empty value, got ${shown(value)}`)
  return value
}

function parseSecret(value: string | undefined): string | null {
  if (value === undefined) return null
  // The value itself is never shown, not even in part.
  if (value.length < MIN_SECRET_LENGTH) {
    throw invalid(SETTINGS.secret, `must be at least ${MIN_SECRET_LENGTH} characters long (try: openssl rand -base64 32)`)
  }
  return value
}

function parseLogLevel(value: string | undefined): LogLevel {
  if (value === undefined) return 'info'
  const level = LOG_LEVELS.find((l) => l === value.toLowerCase())
  if (level === undefined) throw invalid(SETTINGS.logLevel, `expected one of ${LOG_LEVELS.join(', ')}, got ${shown(value)}`)
  return level
}
