/**
 * The endpoint of Tandem's own protocol and the stock y-websocket client's: `GET /v1/sync/:roomId`
 * upgrades to one socket carrying one connection. Upgrades are counted per IP before they happen
 * (a flood costs a status line each). The client's first message says which protocol it speaks:
 * Tandem's `auth` carries its token; anything else is the stock client (compatibility path), whose
 * token, in `--y-websocket-compat` mode only, is the `?token=` query parameter.
 */

import type { FastifyInstance } from 'fastify'
import { decodeClientMessage } from '../../protocol/messages.ts'
import { isValidRoomId } from '../../protocol/ids.ts'
import type { TandemError } from '../../protocol/errors.ts'
import type { Limits } from '../limits.ts'
import { sendError } from '../error-reply.ts'
import { TokenBucket } from '../token-bucket.ts'
import { tandemProtocol, yWebsocketProtocol } from './client-protocol.ts'
import { Connection, type ConnectionContext } from './connection.ts'
import { KEEPALIVE_FRAME } from './keepalive.ts'
import { PeerSocket } from './peer-socket.ts'
import { releaseUpgrade } from './upgrade.ts'

/** Per-IP buckets kept at most; past it the least recently used is forgotten (it starts full again). */
const MAX_IP_BUCKETS = 100_000

/**
 * WebSocket upgrades per IP: a bucket of `perMinute` tokens refilled at `perMinute` a minute, so an
 * IP may open all of them at once, then keeps that pace. Kept in least-recent-use order (a use moves
 * an entry to the end), so the sweep stops at the first entry used within the last minute: the ones
 * before it are full again and forgetting them changes nothing.
 */
export class ConnectionRateLimiter {
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

export interface SyncRouteDeps {
  readonly context: ConnectionContext
  readonly limits: Readonly<Limits>
  /** Every socket of the process (the heartbeat runs over them). */
  readonly sockets: Set<PeerSocket>
  readonly connectionRate: ConnectionRateLimiter
  /** Accept the stock client's `?token=`. */
  readonly yWebsocketCompat: boolean
}

/** Refuses an upgrade from an IP past its rate, before the upgrade. */
export const rateLimitUpgrades =
  (connectionRate: ConnectionRateLimiter, perMinute: number) => async (request: { ip: string }, reply: Parameters<typeof sendError>[0]) => {
    if (!connectionRate.take(request.ip, Date.now())) {
      await sendError(reply, 'rate_limited', `more than ${perMinute} connections a minute from this address; try again later`)
    }
  }

export function syncRoute(app: FastifyInstance, deps: SyncRouteDeps): void {
  const { context, limits, sockets } = deps
  app.get<{ Params: { roomId: string }; Querystring: { token?: string } }>(
    '/v1/sync/:roomId',
    {
      websocket: true,
      onRequest: rateLimitUpgrades(deps.connectionRate, limits.connectionsPerIpPerMinute),
      preValidation: async (request, reply) => {
        if (!isValidRoomId(request.params.roomId)) {
          await sendError(reply, 'malformed_message', 'room ids are 1 to 256 characters, without control characters')
        }
      },
    },
    (ws, request) => {
      const roomId = request.params.roomId
      const queryToken = deps.yWebsocketCompat && typeof request.query.token === 'string' ? request.query.token : null
      releaseUpgrade(ws)
      const socket = new PeerSocket(ws, limits, context.metrics, context.log)
      const connection = new Connection(socket, roomId, { ip: request.ip, headers: request.headers }, context)
      sockets.add(socket)
      socket.listen({
        frame(frame) {
          const message = decodeClientMessage(frame)
          if (!connection.isWaiting) return connection.receive(message, frame)
          if (message.kind === 'auth') return connection.begin(tandemProtocol, { roomId, token: message.token, via: 'tandem' })
          connection.begin(yWebsocketProtocol, { roomId, token: queryToken, via: 'compat' }, { message, frame })
        },
        refuse: (error: TandemError) => connection.refuse(error),
        quiet() {
          if (connection.isOpen) socket.send(KEEPALIVE_FRAME)
        },
        closed() {
          sockets.delete(socket)
          connection.closed()
        },
      })
    },
  )
}
