/**
 * The signalling endpoint for WebRTC peers (SPEC section 5.1): `GET /v1/signal` upgrades to a
 * socket of y-webrtc's JSON messages. The token is Tandem's first message (`auth`), or, for the
 * stock y-webrtc client in `--y-websocket-compat` mode only, the `?token=` query parameter. A
 * socket may subscribe to, and publish on, only the topics (rooms) its token grants `room:read` in;
 * other subscriptions are ignored (told to Tandem clients). Each subscription is a live session
 * (topic-session.ts), re-evaluated like any connection's. Messages are handled in order, one at a
 * time (a subscribe is decided before the publish that follows it), with a bounded queue.
 */

import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { CloseCode, TandemError } from '../../protocol/errors.ts'
import { isValidRoomId } from '../../protocol/ids.ts'
import { canRead } from '../../protocol/permissions.ts'
import { type SignalClientMessage, decodeSignalMessage, encodeSignalMessage } from '../../protocol/signal.ts'
import type { AccessControl } from '../auth/access-control.ts'
import { type Authenticate, type ConnectionRequest, type LiveSession, type Session, isRefusal, sessionOf } from '../auth/session.ts'
import type { Limits } from '../limits.ts'
import type { Metrics } from '../metrics.ts'
import { PeerSocket } from '../sync/peer-socket.ts'
import { type ConnectionRateLimiter, rateLimitUpgrades } from '../sync/route.ts'
import { releaseUpgrade } from '../sync/upgrade.ts'
import { type SignalPeer, TopicSession } from './topic-session.ts'
import type { Topics } from './topics.ts'

export interface SignalContext {
  readonly access: AccessControl
  readonly authenticate: Authenticate
  readonly limits: Readonly<Limits>
  readonly metrics: Metrics
  readonly log: FastifyInstance['log']
  readonly topics: Topics
  /** Every topic session of the process (access control re-evaluates them). */
  readonly sessions: Set<LiveSession>
  /** Every socket of the process (the heartbeat runs over them). */
  readonly sockets: Set<PeerSocket>
  readonly connectionRate: ConnectionRateLimiter
  readonly yWebsocketCompat: boolean
}

const text = (frame: Buffer): string => frame.toString('utf8')

class SignalSocket implements SignalPeer {
  readonly id = randomUUID()
  readonly #socket: PeerSocket
  readonly #request: ConnectionRequest
  readonly #ctx: SignalContext
  readonly #subscriptions = new Map<string, TopicSession>()
  #token: string | null
  #speaksTandem = false
  #first = true
  #closed = false
  /** Messages handled one at a time, in order; `#queued` of them wait. */
  #chain: Promise<void> = Promise.resolve()
  #queued = 0

  constructor(socket: PeerSocket, request: ConnectionRequest, queryToken: string | null, ctx: SignalContext) {
    this.#socket = socket
    this.#request = request
    this.#token = queryToken
    this.#ctx = ctx
  }

  get speaksTandem(): boolean {
    return this.#speaksTandem
  }

  sendText(text: string): void {
    this.#socket.sendText(text)
  }

  left(session: TopicSession): void {
    if (this.#subscriptions.get(session.roomId) === session) this.#subscriptions.delete(session.roomId)
  }

  /** A text frame: decoded now (a malformed one ends the socket), handled in order. */
  receive(frame: Buffer): void {
    if (frame.length > this.#ctx.limits.signalMessageBytes) {
      throw new TandemError('message_too_large', `signalling messages are at most ${this.#ctx.limits.signalMessageBytes} bytes`)
    }
    const message = decodeSignalMessage(text(frame))
    if (this.#first) {
      this.#first = false
      if (message.type === 'auth') {
        this.#speaksTandem = true
        this.#token = message.token
        this.sendText(encodeSignalMessage({ type: 'tandem:authenticated', connectionId: this.id }))
        return
      }
    }
    if (message.type === 'ping') {
      this.sendText(encodeSignalMessage({ type: 'pong' }))
      return
    }
    if (++this.#queued > this.#ctx.limits.preAuthMaxMessages) {
      throw new TandemError('rate_limited', 'too many signalling messages waiting; slow down')
    }
    this.#chain = this.#chain.then(async () => {
      this.#queued--
      if (this.#closed) return
      try {
        await this.#handle(message)
      } catch (err) {
        this.#ctx.log.warn({ err }, 'signalling message failed')
      }
    })
  }

  async #handle(message: SignalClientMessage): Promise<void> {
    switch (message.type) {
      case 'auth':
        // A fresh token: every subscription is decided again with it.
        this.#token = message.token
        for (const topic of [...this.#subscriptions.keys()]) await this.#subscribe(topic)
        return
      case 'subscribe':
        for (const topic of message.topics) await this.#subscribe(topic)
        return
      case 'unsubscribe':
        for (const topic of message.topics) this.#subscriptions.get(topic)?.leave()
        return
      case 'publish': {
        // Only on a topic it holds: others are ignored, as the protocol has no error for them.
        const session = this.#subscriptions.get(message.topic)
        if (session?.isOpen) this.#ctx.topics.publish(session, message.body)
        return
      }
      case 'ping':
        return
    }
  }

  /** Decides whether the socket may hold `topic`, and subscribes or re-decides it. */
  async #subscribe(topic: string): Promise<void> {
    const existing = this.#subscriptions.get(topic)
    if (existing === undefined && !isValidRoomId(topic)) {
      this.#refuse(topic, 'malformed_message', 'not a room id')
      return
    }
    if (existing === undefined && this.#subscriptions.size >= this.#ctx.limits.topicsPerSocket) {
      this.#refuse(topic, 'rate_limited', `more than ${this.#ctx.limits.topicsPerSocket} topics on one socket`)
      return
    }
    let session: Session
    try {
      session = await this.#establish(topic)
    } catch (err) {
      const error = err instanceof TandemError ? err : new TandemError('server_error', 'the subscription could not be decided')
      if (existing !== undefined) existing.end(error)
      else this.#refuse(topic, error.code, error.message)
      return
    }
    if (this.#closed) return
    if (existing?.isOpen) existing.replace(session)
    else this.#subscriptions.set(topic, new TopicSession(this, topic, session, this.#ctx.topics, this.#ctx.sessions))
  }

  /** The session for `topic` with the socket's token, decided again while access changed meanwhile. */
  async #establish(topic: string): Promise<Session> {
    const { access, authenticate } = this.#ctx
    for (;;) {
      const epoch = access.epoch
      const grant = await authenticate({ roomId: topic, token: this.#token, via: 'signal' }, this.#request)
      if (isRefusal(grant)) throw new TandemError(grant.refused, grant.reason)
      const base = sessionOf(grant, this.id)
      if (base.expiresAt !== null && base.expiresAt <= Date.now()) throw new TandemError('token_expired', 'the token has expired')
      const permissions = await access.evaluate(topic, base)
      if (!canRead(permissions)) throw new TandemError('forbidden', 'no access to this room')
      if (access.epoch === epoch) return { ...base, permissions }
    }
  }

  #refuse(topic: string, code: string, message: string): void {
    this.#ctx.log.debug({ topic, code }, 'signalling subscription refused')
    if (this.#speaksTandem) this.sendText(encodeSignalMessage({ type: 'tandem:error', code, message, topic }))
  }

  closed(): void {
    if (this.#closed) return
    this.#closed = true
    for (const session of [...this.#subscriptions.values()]) session.leave()
  }
}

export function signalRoute(app: FastifyInstance, ctx: SignalContext): void {
  const { limits } = ctx
  app.get<{ Querystring: { token?: string } }>(
    '/v1/signal',
    { websocket: true, onRequest: rateLimitUpgrades(ctx.connectionRate, limits.connectionsPerIpPerMinute) },
    (ws, request) => {
      const queryToken = ctx.yWebsocketCompat && typeof request.query.token === 'string' ? request.query.token : null
      releaseUpgrade(ws)
      const socket = new PeerSocket(ws, limits, ctx.metrics, ctx.log, { text: true })
      const signal = new SignalSocket(socket, { ip: request.ip, headers: request.headers }, queryToken, ctx)
      ctx.sockets.add(socket)
      socket.listen({
        frame: (frame) => signal.receive(frame),
        refuse(error: TandemError) {
          ctx.log.debug({ code: error.code, reason: error.message }, 'signalling socket refused')
          if (signal.speaksTandem) signal.sendText(encodeSignalMessage({ type: 'tandem:error', code: error.code, message: error.message }))
          socket.close(error.closeCode ?? CloseCode.serverError, error.code)
        },
        // y-webrtc clients ping every 15 s themselves; the server's ws pings keep the others honest.
        quiet() {},
        closed() {
          ctx.sockets.delete(socket)
          signal.closed()
        },
      })
    },
  )
}
