/**
 * The Redis connections of one process (node-redis): one for commands, one for the blocking stream
 * reads, one for pub/sub (Redis wants those apart). Each reconnects by itself with capped backoff;
 * commands fail at once while disconnected (no offline queue), so a write is never acknowledged
 * late from a queue, and the room logs retry and tell their writers instead.
 */

import type { FastifyBaseLogger } from 'fastify'
import { RESP_TYPES, createClient } from 'redis'

export type RedisClient = ReturnType<typeof createClient>

/** A client whose bulk strings come back as Buffers (updates are bytes). */
export const binary = (client: RedisClient) => client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer })
export type BinaryClient = ReturnType<typeof binary>

const RECONNECT_MAX_MS = 1_000

export async function connectRedis(url: string, name: string, log: FastifyBaseLogger): Promise<RedisClient> {
  const client = createClient({
    url,
    name,
    disableOfflineQueue: true,
    socket: { reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, RECONNECT_MAX_MS) },
  })
  let reported = 0
  client.on('error', (err: Error) => {
    // Reconnection errors come once per attempt: logged at most once a second.
    const now = Date.now()
    if (now - reported < 1_000) return
    reported = now
    log.warn({ err: err.message, connection: name }, 'redis connection error; reconnecting')
  })
  await client.connect()
  return client
}
