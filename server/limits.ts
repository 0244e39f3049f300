/**
 * Every limit the server enforces, defined once: its default, its bounds, what happens past it, and
 * from these its command-line flag (`--max-message-bytes`) and environment variable
 * (`TANDEM_MAX_MESSAGE_BYTES`). `createServer({ limits })`, the CLI's parser (config.ts), its
 * `--help`, and the README's limits table (checked by test/limits-table.test.ts) all read this table.
 */

export interface LimitDefinition {
  readonly default: number
  readonly min: number
  readonly max: number
  /** How the README and `--help` show the value. */
  readonly unit: 'bytes' | 'ms' | 'count'
  /** What it bounds, one line. */
  readonly bounds: string
  /** What happens past it. */
  readonly pastIt: string
}

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB
const HOUR_MS = 3_600_000

/** The limits, in the order the README lists them. */
export const LIMIT_DEFINITIONS = {
  maxMessageBytes: { default: 8 * MiB, min: 1 * KiB, max: 64 * MiB, unit: 'bytes', bounds: 'largest WebSocket message', pastIt: 'close 4413' },
  preAuthMaxMessages: {
    default: 1024,
    min: 1,
    max: 1_000_000,
    unit: 'count',
    bounds: 'messages queued before the session is established',
    pastIt: 'close 4529',
  },
  preAuthMaxBytes: {
    default: 8 * MiB,
    min: 1 * KiB,
    max: 1 * GiB,
    unit: 'bytes',
    bounds: 'bytes queued before the session is established',
    pastIt: 'close 4529',
  },
  authTimeoutMs: { default: 10_000, min: 100, max: HOUR_MS, unit: 'ms', bounds: 'time to authenticate', pastIt: 'close 4408' },
  maxBufferedBytes: {
    default: 16 * MiB,
    min: 64 * KiB,
    max: 1 * GiB,
    unit: 'bytes',
    bounds: 'bytes unsent to one socket (a client that stopped reading)',
    pastIt: 'close 1013',
  },
  messagesPerSecond: {
    default: 1_000,
    min: 1,
    max: 1_000_000,
    unit: 'count',
    bounds: 'messages per second one connection sends, sustained',
    pastIt: 'close 4529',
  },
  messageBurst: { default: 10_000, min: 1, max: 10_000_000, unit: 'count', bounds: 'messages one connection sends in a burst', pastIt: 'close 4529' },
  bytesPerSecond: {
    default: 4 * MiB,
    min: 1 * KiB,
    max: 1 * GiB,
    unit: 'bytes',
    bounds: 'bytes per second one connection sends, sustained',
    pastIt: 'close 4529',
  },
  byteBurst: { default: 32 * MiB, min: 1 * KiB, max: 4 * GiB, unit: 'bytes', bounds: 'bytes one connection sends in a burst', pastIt: 'close 4529' },
  tokenRefreshGraceMs: { default: 15_000, min: 100, max: HOUR_MS, unit: 'ms', bounds: 'time to send a fresh token after expiry', pastIt: 'close 4401' },
  requestTimeoutMs: { default: 30_000, min: 1_000, max: HOUR_MS, unit: 'ms', bounds: 'time for an HTTP request to arrive whole', pastIt: '408' },
  restRequestsPerMinute: { default: 1_200, min: 1, max: 10_000_000, unit: 'count', bounds: 'REST requests per IP per minute', pastIt: '429' },
  maxAwarenessClients: { default: 4, min: 1, max: 1_000, unit: 'count', bounds: 'awareness clientIDs one connection owns', pastIt: 'entries dropped' },
  maxAwarenessStateBytes: { default: 64 * KiB, min: 64, max: 8 * MiB, unit: 'bytes', bounds: 'one awareness state (UTF-8)', pastIt: 'entry dropped' },
  maxAwarenessEntriesPerRoom: {
    default: 1_000,
    min: 1,
    max: 1_000_000,
    unit: 'count',
    bounds: 'awareness clientIDs in one room',
    pastIt: 'new clientIDs dropped (`presence_forbidden`)',
  },
  connectionsPerIpPerMinute: {
    default: 600,
    min: 1,
    max: 10_000_000,
    unit: 'count',
    bounds: 'WebSocket upgrades per IP per minute (all at once if it likes, then that pace)',
    pastIt: '429 before the upgrade',
  },
  documentsPerSocket: {
    default: 64,
    min: 1,
    max: 100_000,
    unit: 'count',
    bounds: 'documents (rooms) open at once on one Hocuspocus-protocol socket, and opened per minute after a first burst of as many',
    pastIt: 'PermissionDenied for that document',
  },
  signalMessageBytes: {
    default: 64 * KiB,
    min: 1 * KiB,
    max: 8 * MiB,
    unit: 'bytes',
    bounds: 'one signalling message (`/v1/signal`; an offer with its candidates is a few KiB)',
    pastIt: 'close 4413',
  },
  topicsPerSocket: {
    default: 64,
    min: 1,
    max: 100_000,
    unit: 'count',
    bounds: 'signalling topics (rooms) one socket subscribes to',
    pastIt: 'the subscription is ignored (`rate_limited` told to Tandem clients)',
  },
  maxRooms: {
    default: 10_000,
    min: 1,
    max: 10_000_000,
    unit: 'count',
    bounds: 'rooms loaded at once (an idle room is unloaded early to make room)',
    pastIt: 'close 1013 (`rate_limited`; REST 429)',
  },
  maxRoomBytes: {
    default: 64 * MiB,
    min: 1 * KiB,
    max: 4 * GiB,
    unit: 'bytes',
    bounds: "one room's document (estimated: exact at load and compaction, plus each update since)",
    pastIt: 'close 4413 (`message_too_large`; REST 413); nothing applied',
  },
  maxRoomMemoryBytes: {
    default: 512 * MiB,
    min: 64 * KiB,
    max: 64 * GiB,
    unit: 'bytes',
    bounds: "one room's document in memory, estimated from what it holds (about 500 bytes a struct, plus its content)",
    pastIt: 'close 4413 (`message_too_large`; REST 413); nothing applied',
  },
  maxLoadedMemoryBytes: {
    default: 0,
    min: 0,
    max: 1024 * GiB,
    unit: 'bytes',
    bounds: "all loaded rooms' documents in memory, estimated as above; 0: half of V8's heap limit",
    pastIt: 'the write or load is refused (`unavailable`, close 1013, REST 503) and idle rooms are unloaded',
  },
  maxUpdateIntegrationSteps: {
    default: 1_000_000,
    min: 1_000,
    max: 1_000_000_000,
    unit: 'count',
    bounds: 'estimated integration work of one update (items Yjs must scan past to place it; about 40 ns each)',
    pastIt: 'close 4413 (`update_too_costly`; REST 413); nothing applied',
  },
  integrationStepsPerSecond: {
    default: 2_000_000,
    min: 1_000,
    max: 1_000_000_000,
    unit: 'count',
    bounds: 'integration work one connection causes per second, sustained',
    pastIt: 'close 4529',
  },
  integrationStepsBurst: {
    default: 10_000_000,
    min: 1_000,
    max: 10_000_000_000,
    unit: 'count',
    bounds: 'integration work one connection causes in a burst',
    pastIt: 'close 4529',
  },
  maxPendingStructs: {
    default: 10_000,
    min: 0,
    max: 10_000_000,
    unit: 'count',
    bounds: 'structs a room holds that wait for missing dependencies',
    pastIt: 'close 4413 (`update_too_costly`); nothing applied',
  },
  maxLoadIntegrationSteps: {
    default: 20_000_000,
    min: 1_000,
    max: 10_000_000_000,
    unit: 'count',
    bounds: "estimated integration work of loading a room's stored updates (its compacted snapshot aside)",
    pastIt: 'the room is not loaded (1011; logged)',
  },
  diskReserveBytes: {
    default: 16 * MiB,
    min: 0,
    max: 16 * GiB,
    unit: 'bytes',
    bounds: 'space held in `<data-dir>/reserve` so the store can recover, and the server start, on a full disk',
    pastIt: 'after a failed write the store is read-only until the disk has twice this free',
  },
  accessTokenRoomsPerPattern: {
    default: 1_000,
    min: 0,
    max: 10_000_000,
    unit: 'count',
    bounds: 'rooms under one access-token pattern `p*` that joins may create (counting every room whose id starts with `p`)',
    pastIt: 'join refused (`forbidden`, 4403)',
  },
} as const satisfies Record<string, LimitDefinition>

export type LimitName = keyof typeof LIMIT_DEFINITIONS

export type Limits = { [K in LimitName]: number }

export const LIMIT_NAMES = Object.keys(LIMIT_DEFINITIONS) as LimitName[]

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze(Object.fromEntries(LIMIT_NAMES.map((name) => [name, LIMIT_DEFINITIONS[name].default])) as Limits)

const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)

/** `maxMessageBytes` → `max-message-bytes`. */
export const limitFlag = (name: LimitName): string => kebab(name)

/** `maxMessageBytes` → `TANDEM_MAX_MESSAGE_BYTES`. */
export const limitEnv = (name: LimitName): string => `TANDEM_${kebab(name).replace(/-/g, '_').toUpperCase()}`

/** Why `value` is not a valid setting of `name`, or null when it is. */
export const checkLimit = (name: LimitName, value: number): string | null => {
  const { min, max } = LIMIT_DEFINITIONS[name]
  if (!Number.isSafeInteger(value)) return `expected an integer, got ${String(value)}`
  if (value < min || value > max) return `expected ${formatLimit(name, min)} to ${formatLimit(name, max)}, got ${formatLimit(name, value)}`
  return null
}

/** A value as people read it: `8 MiB`, `10 s`, `1,000`. */
export const formatLimit = (name: LimitName, value: number): string => {
  const { unit } = LIMIT_DEFINITIONS[name]
  if (unit === 'bytes') {
    for (const [size, label] of [
      [GiB, 'GiB'],
      [MiB, 'MiB'],
      [KiB, 'KiB'],
    ] as const) {
      if (value >= size && value % size === 0) return `${value / size} ${label}`
    }
    return `${value.toLocaleString('en-US')} bytes`
  }
  if (unit === 'ms') return value % 1000 === 0 ? `${value / 1000} s` : `${value.toLocaleString('en-US')} ms`
  return value.toLocaleString('en-US')
}

/** The README's limits table (Markdown), generated from the definitions. */
export const limitsTable = (): string => {
  const rows = LIMIT_NAMES.map((name) => {
    const d = LIMIT_DEFINITIONS[name]
    return `| \`${name}\` | \`--${limitFlag(name)}\` / \`${limitEnv(name)}\` | ${formatLimit(name, d.default)} | ${d.bounds} | ${d.pastIt} |`
  })
  return ['| limit | flag / environment | default | bounds | past it |', '|---|---|---|---|---|', ...rows].join('\n')
}
