/**
 * server/cluster: the distributed mode (SPEC section 7.1): many Tandem processes as one server, on
 * Redis and PostgreSQL. Each room's durable log is a Redis Stream (cluster-store.ts) whose entries
 * reach every process with members in the room over its feed channel (log-feed.ts,
 * cluster-fanout.ts); rooms, ACLs, checkpoints, history and revocations live in PostgreSQL
 * (store/postgres-store.ts, lease.ts); access changes travel on a control stream (control-bus.ts,
 * read by stream-reader.ts); presence on pub/sub, with heartbeats that remove a dead process's
 * clients (process-heartbeat.ts). Imports store/, rooms/, auth/; only the
 * composition root imports it. `openCluster` builds one process's part of it.
 */

import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import { TandemError } from '../../protocol/errors.ts'
import type { AccessControl } from '../auth/access-control.ts'
import type { AccessPublisher } from '../auth/access-events.ts'
import type { LiveSession } from '../auth/session.ts'
import type { Metrics } from '../metrics.ts'
import type { RoomRegistry } from '../rooms/registry.ts'
import { openPostgresStore } from '../store/postgres-store.ts'
import { ClusterFanout } from './cluster-fanout.ts'
import { ClusterStore } from './cluster-store.ts'
import { ControlBus } from './control-bus.ts'
import { ClusterKeys } from './keys.ts'
import { LogFeed } from './log-feed.ts'
import { ProcessHeartbeat } from './process-heartbeat.ts'
import { type RedisClient, binary, connectRedis } from './redis.ts'
import { StreamReader } from './stream-reader.ts'

export { ClusterStore } from './cluster-store.ts'
export { ClusterFanout } from './cluster-fanout.ts'
export { FencedError, Leases } from './lease.ts'
export { ClusterKeys } from './keys.ts'

export interface ClusterOptions {
  readonly redisUrl: string
  readonly databaseUrl: string
  /** Every Redis key starts with it. Default `tandem:`. */
  readonly redisPrefix?: string
  /** Replicas that must have a write before it is acknowledged (`WAIT`). Default 0. */
  readonly waitReplicas?: number
  /** How long the control stream may go unread before this process fails closed. Default 3000 ms. */
  readonly controlStaleMs?: number
  readonly metrics: Metrics
  readonly log: FastifyBaseLogger
}

export interface ClusterRuntime {
  readonly processId: string
  readonly store: ClusterStore
  readonly fanout: ClusterFanout
  /** Tells the other processes of this one's access changes (give it to AccessControl). */
  readonly publisher: AccessPublisher
  /** Wires the process's access control and rooms to the control stream, and starts reading. */
  start(access: AccessControl, registry: RoomRegistry, connections: Iterable<LiveSession>): Promise<void>
  /** Whether each engine answers. */
  engines(): { redis: 'ok' | 'unreachable'; postgres: 'ok' | 'unreachable' }
  close(): Promise<void>
}

export async function openCluster(options: ClusterOptions): Promise<ClusterRuntime> {
  const processId = randomUUID()
  const keys = new ClusterKeys(options.redisPrefix ?? 'tandem:')
  const log = options.log.child({ process: processId })
  const postgres = await openPostgresStore(options.databaseUrl)
  const clients: RedisClient[] = []
  try {
    await ClusterStore.migrate(postgres.pool)
    const command = await connectRedis(options.redisUrl, 'tandem-command', log)
    clients.push(command)
    const readerClient = await connectRedis(options.redisUrl, 'tandem-reader', log)
    clients.push(readerClient)
    const subscriber = await connectRedis(options.redisUrl, 'tandem-subscriber', log)
    clients.push(subscriber)
    const reader = new StreamReader(readerClient, command, log)
    const commandBinary = binary(command)
    const feed = new LogFeed({ keys, subscriber, command: commandBinary, log })
    const store = new ClusterStore({
      keys,
      command,
      binary: commandBinary,
      postgres,
      processId,
      waitReplicas: options.waitReplicas ?? 0,
      position: (roomId) => feed.position(roomId),
      metrics: options.metrics,
    })
    const fanout = new ClusterFanout({
      keys,
      command,
      subscriber,
      feed,
      processId,
      metrics: options.metrics,
      loadedThrough: (roomId) => store.loadedThrough(roomId),
    })
    const control = new ControlBus({ keys, command, reader, processId, log, staleAfterMs: options.controlStaleMs ?? 3_000 })
    const heartbeat = new ProcessHeartbeat({
      keys,
      command,
      processId,
      log,
      sources: () => fanout.sources,
      gone: (source) => fanout.sourceGone(source),
      everyMs: 1_000,
      ttlMs: 3_000,
    })
    let pgReachable = true
    const pgCheck = setInterval(() => {
      postgres.pool.query('SELECT 1').then(
        () => (pgReachable = true),
        () => (pgReachable = false),
      )
    }, 1_000)
    pgCheck.unref()

    return {
      processId,
      store,
      fanout,
      publisher: control,
      async start(access, registry, connections) {
        await control.start({
          apply: async (event) => {
            await access.applyRemote(event)
            // A room deleted elsewhere: dropped here too (its records are gone from the stores).
            if (event.kind === 'deleted') await registry.delete(event.roomId, async () => access.changed())
          },
          stale: (reason) => {
            access.unavailable = reason
            if (reason === null) return
            for (const connection of [...connections]) connection.end(new TandemError('unavailable', reason))
          },
        })
        reader.start()
        await heartbeat.start()
      },
      engines: () => ({ redis: command.isReady ? 'ok' : 'unreachable', postgres: pgReachable ? 'ok' : 'unreachable' }),
      async close() {
        clearInterval(pgCheck)
        control.stop()
        await heartbeat.stop()
        feed.close()
        await reader.stop()
        for (const client of clients) await client.quit().catch(() => client.destroy())
        await store.close()
      },
    }
  } catch (err) {
    for (const client of clients) client.destroy()
    await postgres.close()
    throw err
  }
}
