/**
 * Which engines hold the data (SPEC sections 7 and 7.1), opened for `createServer`: the embedded
 * LevelDB by default; PostgreSQL alone (`databaseUrl`: documents, rooms and ACLs in one database);
 * or Redis and PostgreSQL together (`redisUrl` + `databaseUrl`: the distributed mode, cluster/). An
 * embedding app's own `store` wins over all of them.
 */

import type { FastifyBaseLogger } from 'fastify'
import type { ClusterRuntime } from './cluster/index.ts'
import { ConfigError } from './config-error.ts'
import type { Metrics } from './metrics.ts'
import { DEFAULTS, type ResolvedOptions, type ServerOptions } from './options.ts'
import { type Fanout, LocalFanout } from './rooms/fanout.ts'
import { type StoreHealth, openLevelStore } from './store/level-store.ts'
import type { Store } from './store/types.ts'

export type EngineKind = 'leveldb' | 'postgres' | 'redis+postgres' | 'custom'

export interface Engines {
  readonly kind: EngineKind
  readonly store: Store
  readonly fanout: Fanout
  /** The distributed mode's part of this process, or null. */
  readonly cluster: ClusterRuntime | null
  /** What /healthz says of them. */
  report(): Record<string, string>
  close(): Promise<void>
}

export async function openEngines(
  options: ServerOptions,
  resolved: ResolvedOptions,
  log: FastifyBaseLogger,
  metrics: Metrics,
  onStoreHealth: (health: StoreHealth, reason: string) => void,
): Promise<Engines> {
  const single = (kind: EngineKind, store: Store): Engines => ({
    kind,
    store,
    fanout: new LocalFanout(),
    cluster: null,
    report: () => ({ [kind]: store.health() === 'ok' ? 'ok' : 'read_only' }),
    close: () => store.close(),
  })
  if (options.store !== undefined) return single('custom', options.store)
  if (options.redisUrl !== undefined) {
    if (options.databaseUrl === undefined) {
      throw new ConfigError(
        '--database-url (TANDEM_DATABASE_URL)',
        'the distributed mode needs PostgreSQL too: set --database-url (TANDEM_DATABASE_URL) with --redis-url',
      )
    }
    // Loaded only when asked for: a LevelDB server never loads the Redis and PostgreSQL clients.
    const { openCluster } = await import('./cluster/index.ts')
    const cluster = await openCluster({
      redisUrl: options.redisUrl,
      databaseUrl: options.databaseUrl,
      ...(options.redisPrefix !== undefined && { redisPrefix: options.redisPrefix }),
      waitReplicas: options.redisWaitReplicas ?? 0,
      metrics,
      log,
    })
    return {
      kind: 'redis+postgres',
      store: cluster.store,
      fanout: cluster.fanout,
      cluster,
      report: () => cluster.engines(),
      close: () => cluster.close(),
    }
  }
  if (options.databaseUrl !== undefined) {
    const { openPostgresStore } = await import('./store/postgres-store.ts')
    return single('postgres', await openPostgresStore(options.databaseUrl))
  }
  return single(
    'leveldb',
    await openLevelStore(options.dataDir ?? DEFAULTS.dataDir, {
      sync: resolved.syncWrites,
      reserveBytes: resolved.limits.diskReserveBytes,
      onHealth: onStoreHealth,
    }),
  )
}
