/**
 * One WebSocket: one client in one room.
 *
 * Life: `waiting` for the first message (Tandem's `auth`, or, from the stock y-websocket client, any
 * sync message: the compatibility path) → `authenticating` → `joining` (the room loads) → `open`.
 * Until `open`, messages are decoded and queued (bounded), and nothing of the room is sent.
 * Once open, every message is gated by a read of `session.permissions`: no lookup, no parse.
 */

import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import * as Y from 'yjs'
import { readAwarenessUpdate, writeAwarenessUpdate } from '../../protocol/awareness.ts'
import { CloseCode, type ErrorCode, TandemError, toTandemError } from '../../protocol/errors.ts'
import {
  type ClientMessage,
  decodeClientMessage,
  encodeFrame,
  writeAccessChanged,
  writeAuthenticated,
  writeAwareness,
  writeError,
  writePermissionDenied,
  writeSaved,
  writeSyncStep1,
  writeSyncStep2,
} from '../../protocol/messages.ts'
import { type PermissionBits, canRead, canWrite, canWritePresence } from '../../protocol/permissions.ts'
import type { AccessControl } from '../auth/access-control.ts'
import { LimitedWebSocket, frameBinary } from './socket.ts'
import type { Metrics } from '../metrics.ts'
import { TokenBucket } from '../token-bucket.ts'
import type { ResolvedOptions } from '../options.ts'
import type { Room, RoomMember } from '../rooms/room.ts'
import type { RoomRegistry } from '../rooms/registry.ts'
import { type Actor, type Authenticate, type ConnectionRequest, type Credentials, type Session, isRefusal } from '../auth/session.ts'

/** setTimeout's longest delay; longer expiries re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1
import { validateStateVector, validateUpdate } from '../rooms/update-validator.ts'

export interface ConnectionContext {
  readonly registry: RoomRegistry
  readonly access: AccessControl
  readonly authenticate: Authenticate
  readonly options: ResolvedOptions
  readonly metrics: Metrics
  readonly log: FastifyBaseLogger
  readonly connections: Set<Connection>
}

type State = 'waiting' | 'authenticating' | 'joining' | 'open' | 'closed'

interface Queued {
  readonly message: ClientMessage
  readonly frame: Uint8Array
}

const OPEN = 1
/** Frames up to this size are framed by Tandem and written with one socket write (see `send`). */
const SMALL_FRAME = 4_096
/** An awareness update with no entries: every client ignores it, and it keeps quiet sockets alive. */
const KEEPALIVE_FRAME = encodeFrame(writeAwareness, writeAwarenessUpdate([]))
/** The answer to query-awareness in a room with no presence. */
const EMPTY_AWARENESS_FRAME = KEEPALIVE_FRAME
/** Codes a stock y-websocket client is told about through y-protocols' permission-denied message. */
const AUTH_CODES: ReadonlySet<ErrorCode> = new Set(['unauthorized', 'token_expired', 'forbidden', 'revoked'])
const NOTICE_INTERVAL_MS = 1_000

export class Connection implements RoomMember {
  readonly id = randomUUID()
  readonly roomId: string
  readonly #socket: WebSocket
  /** The same socket when it can take frames built once (`sendFrame`): decided once, not per send. */
  readonly #framing: LimitedWebSocket | null
  readonly #request: ConnectionRequest
  readonly #queryToken: string | null
  readonly #ctx: ConnectionContext
  readonly #log: FastifyBaseLogger

  #state: State = 'waiting'
  #mode: 'tandem' | 'compat' | null = null
  #session: Session | null = null
  #room: Room | null = null
  #queue: Queued[] = []
  #queueBytes = 0
  #authTimer: NodeJS.Timeout | null
  #saved = 0
  /** Whether anything was sent since the last heartbeat (a flag, not a clock read per send). */
  #sentSinceHeartbeat = false
  #missedPongs = 0
  readonly #noticeAt = new Map<ErrorCode, number>()
  #expiryTimer: NodeJS.Timeout | null = null
  #reauthAttempt = 0
  readonly #messageBudget: TokenBucket
  readonly #byteBudget: TokenBucket
  readonly #integrationBudget: TokenBucket
  /** Whether the free first sync answer (the join's) was given. */
  #answeredSync = false

  constructor(socket: WebSocket, roomId: string, request: ConnectionRequest, queryToken: string | null, ctx: ConnectionContext) {
    this.#socket = socket
    this.#framing = socket instanceof LimitedWebSocket ? socket : null
    this.roomId = roomId
    this.#request = request
    this.#queryToken = queryToken
    this.#ctx = ctx
    this.#log = ctx.log.child({ connectionId: this.id, roomId })
    ctx.connections.add(this)
    ctx.metrics.connections.set(ctx.connections.size)
    const { limits } = ctx.options
    const now = Date.now()
    this.#messageBudget = new TokenBucket(limits.messagesPerSecond, limits.messageBurst, now)
    this.#byteBudget = new TokenBucket(limits.bytesPerSecond, limits.byteBurst, now)
    this.#integrationBudget = new TokenBucket(limits.integrationStepsPerSecond, limits.integrationStepsBurst, now)

    socket.on('message', (data, isBinary) => this.#onMessage(data, isBinary))
    socket.on('close', () => this.#teardown())
    socket.on('pong', () => {
      this.#missedPongs = 0
    })
    socket.on('error', (err: Error & { code?: string }) => {
      // ws has already closed the socket (an oversized frame: 4413, see limited-socket.ts).
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') ctx.metrics.rejected.too_large++
      this.#log.debug({ err }, 'socket error')
      this.#teardown()
    })
    this.#authTimer = setTimeout(
      () => this.#fail(new TandemError('unauthorized', 'no authentication in time'), CloseCode.authTimeout),
      ctx.options.limits.authTimeoutMs,
    )
  }

  get session(): Session | null {
    return this.#session
  }

  /** Who this connection writes as; only asked once its session exists. */
  get actor(): Actor {
    return this.#session!.actor
  }

  get isOpen(): boolean {
    return this.#state === 'open'
  }

  send(frame: Uint8Array, wire?: Buffer): void {
    if (this.#socket.readyState !== OPEN) return
    if (this.#socket.bufferedAmount > this.#ctx.options.limits.maxBufferedBytes) {
      // A client that stopped reading would make the server buffer without bound.
      this.close(CloseCode.tryAgainLater, 'slow_reader')
      return
    }
    // One socket write of a frame built once (small frames are framed here: a copy is cheaper
    // than ws's two-buffer write); large frames of one receiver go through ws as they are.
    if (this.#framing !== null && (wire !== undefined || frame.length <= SMALL_FRAME)) {
      this.#framing.sendFrame(frame, wire ?? frameBinary(frame))
    } else {
      this.#socket.send(frame)
    }
    this.#sentSinceHeartbeat = true
    this.#ctx.metrics.messagesOut++
    this.#ctx.metrics.bytesOut += frame.length
  }

  acknowledge(count: number): void {
    this.#saved += count
    if (this.#mode === 'tandem') this.send(encodeFrame(writeSaved, this.#saved))
  }

  writeDelayed(): void {
    this.#notice('server_error', 'writes are not stored yet; the server is retrying')
  }

  /** Pings, ends a socket that missed two pongs, and keeps a quiet client's socket alive. */
  heartbeat(): void {
    if (this.#state === 'closed') return
    if (this.#missedPongs >= 2) {
      this.#log.info('no pong: terminating')
      this.#socket.terminate()
      this.#teardown()
      return
    }
    this.#missedPongs++
    this.#socket.ping()
    // The stock y-websocket client drops a socket that received nothing for 30 s: one quiet for a
    // whole heartbeat interval (keepaliveMs / 2) gets a keepalive.
    if (this.#state === 'open' && !this.#sentSinceHeartbeat) this.send(KEEPALIVE_FRAME)
    this.#sentSinceHeartbeat = false
  }

  close(code: number, reason: string): void {
    if (this.#state === 'closed') return
    this.#teardown()
    this.#socket.close(code, reason)
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    if (this.#state === 'closed') return
    const frame = data as Buffer // binaryType is 'nodebuffer': always one Buffer
    this.#ctx.metrics.messagesIn++
    this.#ctx.metrics.bytesIn += frame.length
    try {
      const now = Date.now()
      if (!this.#messageBudget.take(1, now) || !this.#byteBudget.take(frame.length, now)) {
        throw new TandemError('rate_limited', 'too many messages or bytes; slow down and reconnect later')
      }
      if (!isBinary) throw new TandemError('malformed_message', 'text frames are not part of the protocol')
      const message = decodeClientMessage(frame)
      switch (this.#state) {
        case 'waiting':
          this.#begin(message, frame)
          return
        case 'authenticating':
        case 'joining':
          this.#enqueue(message, frame)
          return
        case 'open':
          this.#handle(message, frame)
      }
    } catch (err) {
      this.#onError(err)
    }
  }

  #onError(err: unknown, closeCode?: number): void {
    const error = toTandemError(err)
    if (error.code === 'malformed_message') this.#ctx.metrics.rejected.malformed++
    if (error.code === 'server_error') this.#log.error({ err }, 'message handling failed')
    else this.#log.debug({ code: error.code, reason: error.message }, 'refused message')
    this.#fail(error, closeCode)
  }

  /** The first message says which client this is and carries its credentials. */
  #begin(message: ClientMessage, frame: Uint8Array): void {
    if (message.kind === 'auth') {
      this.#mode = 'tandem'
      void this.#authenticate({ roomId: this.roomId, token: message.token, via: 'tandem' })
      return
    }
    this.#mode = 'compat'
    this.#enqueue(message, frame)
    const token = this.#ctx.options.yWebsocketCompat ? this.#queryToken : null
    void this.#authenticate({ roomId: this.roomId, token, via: 'compat' })
  }

  #enqueue(message: ClientMessage, frame: Uint8Array): void {
    const { preAuthMaxMessages, preAuthMaxBytes } = this.#ctx.options.limits
    this.#queue.push({ message, frame })
    this.#queueBytes += frame.length
    if (this.#queue.length > preAuthMaxMessages || this.#queueBytes > preAuthMaxBytes) {
      throw new TandemError('rate_limited', 'too many messages before authentication completed')
    }
  }

  async #authenticate(credentials: Credentials): Promise<void> {
    this.#state = 'authenticating'
    let room: Room | null = null
    try {
      // Decided again while an access change happened meanwhile (the connection could not hear it).
      for (;;) {
        const epoch = this.#ctx.access.epoch
        const session = await this.#establish(credentials)
        if (this.#closed()) break
        this.#session = session
        this.#state = 'joining'
        room ??= await this.#ctx.registry.acquire(this.roomId)
        if (this.#closed() || this.#ctx.access.epoch === epoch) break
      }
      if (this.#closed()) {
        if (room !== null) this.#ctx.registry.released(room)
        return
      }
      this.#open(room!, this.#session!)
    } catch (err) {
      if (room !== null) this.#ctx.registry.released(room)
      // Joining with no room yet: the registry refused to load one past `maxRooms`. That is the
      // server's capacity, not this client's doing: 1013 (try again later), not rate_limited's 4529.
      const full = this.#state === 'joining' && room === null && err instanceof TandemError && err.code === 'rate_limited'
      this.#onError(err, full ? CloseCode.tryAgainLater : undefined)
    }
  }

  /** Authenticates, then decides the session's permissions here; throws the refusal. */
  async #establish(credentials: Credentials): Promise<Session> {
    const grant = await this.#ctx.authenticate(credentials, this.#request)
    if (isRefusal(grant)) throw new TandemError(grant.refused, grant.reason)
    const base = {
      connectionId: this.id,
      actor: grant.actor,
      info: grant.info ?? null,
      expiresAt: grant.expiresAt ?? null,
      identity: grant.identity ?? { kind: 'fixed' as const, permissions: grant.permissions },
    }
    const permissions = await this.#ctx.access.evaluate(this.roomId, base, { join: true })
    if (!canRead(permissions)) throw new TandemError('forbidden', 'no access to this room')
    if (base.expiresAt !== null && base.expiresAt <= Date.now()) throw new TandemError('token_expired', 'the token has expired')
    return { ...base, permissions }
  }

  #open(room: Room, session: Session): void {
    this.#room = room
    room.join(this)
    this.#state = 'open'
    if (this.#authTimer !== null) clearTimeout(this.#authTimer)
    this.#authTimer = null
    this.#armExpiry(session.expiresAt)

    if (this.#mode === 'tandem') this.send(encodeFrame(writeAuthenticated, { ...session }))
    // A reader is not asked for its state: it may not write it (y-protocols, read-only users).
    if (canWrite(session.permissions)) this.send(encodeFrame(writeSyncStep1, Y.encodeStateVector(room.doc)))
    const presence = room.presenceFrame()
    if (presence !== null) this.send(presence)

    const queued = this.#queue
    this.#queue = []
    this.#queueBytes = 0
    for (const { message, frame } of queued) {
      if (this.#state !== 'open') return
      this.#handle(message, frame)
    }
  }

  #handle(message: ClientMessage, frame: Uint8Array): void {
    const room = this.#room!
    const permissions = this.#session!.permissions
    switch (message.kind) {
      case 'sync-step-1': {
        validateStateVector(message.stateVector)
        const answer = encodeFrame(writeSyncStep2, room.syncAnswer(message.stateVector))
        // What the server sends counts against the budget too: a reader asking for the whole
        // document again and again is a flood. Its first sync, the join's, is free.
        if (this.#answeredSync) this.#chargeOutbound(answer.length)
        this.#answeredSync = true
        this.send(answer)
        return
      }
      case 'sync-step-2':
      case 'update': {
        if (!canWrite(permissions)) {
          // Dropped whole: never applied, stored or relayed; counted so `saved` stays in step.
          this.#ctx.metrics.rejected.read_only++
          room.skipWrite(this)
          this.#notice('read_only', 'this session may not write to the room')
          return
        }
        const summary = validateUpdate(message.update)
        // Bounded before it is applied: what Yjs would scan to place it (a tiny update can cost
        // seconds against a long list), per update and per connection over time.
        const steps = room.integrationCost(summary)
        if (steps > 0 && !this.#integrationBudget.take(steps, Date.now())) {
          throw new TandemError('rate_limited', 'these updates cost too much to integrate; slow down and reconnect later')
        }
        try {
          room.applyUpdate(message.update, this, summary, message.kind === 'update' ? frame : null)
        } catch (err) {
          // The room is full (maxRoomBytes): nothing was applied, queued or relayed. The socket
          // closes with 4413, final: this client's later updates build on the refused one, and a
          // reconnect would send it again; its changes stay unsaved, which its user can see.
          if (err instanceof TandemError) throw err
          // Yjs can still refuse a well-formed update against some document states; the update
          // was neither queued nor relayed, and its sender is the one to go.
          this.#ctx.metrics.rejected.apply_failed++
          this.#log.warn({ err }, 'applying a validated update failed')
          throw new TandemError('malformed_message', 'the update could not be applied to this document', { cause: err })
        }
        return
      }
      case 'awareness': {
        if (!canWritePresence(permissions)) {
          this.#notice('presence_forbidden', 'this session may not show presence in the room')
          return
        }
        const result = room.applyAwareness(this, frame, readAwarenessUpdate(message.update))
        if (result.forbidden + result.invalid > 0) {
          this.#notice('presence_forbidden', 'awareness entries for clients this connection does not own, or invalid, were dropped')
        }
        return
      }
      case 'query-awareness': {
        const answer = room.presenceFrame() ?? EMPTY_AWARENESS_FRAME
        this.#chargeOutbound(answer.length)
        this.send(answer)
        return
      }
      case 'auth':
        // Fresh credentials inside the socket: re-evaluated without reconnecting.
        void this.#reauthenticate(message.token)
        return
      default: {
        const unreachable: never = message
        throw new TandemError('malformed_message', `unhandled message ${String(unreachable)}`)
      }
    }
  }

  /** Takes an answer's bytes from the connection's byte budget. */
  #chargeOutbound(bytes: number): void {
    if (!this.#byteBudget.take(bytes, Date.now())) {
      throw new TandemError('rate_limited', 'too many bytes asked for; slow down and reconnect later')
    }
  }

  async #reauthenticate(token: string | null): Promise<void> {
    // The token sent last decides, whichever verification finishes first.
    const attempt = ++this.#reauthAttempt
    try {
      const session = await this.#establish({ roomId: this.roomId, token, via: 'tandem' })
      if (this.#state !== 'open' || attempt !== this.#reauthAttempt) return
      const previous = this.#session!.permissions
      this.#session = session
      this.#armExpiry(session.expiresAt)
      this.send(encodeFrame(writeAuthenticated, { ...session }))
      this.#permissionsChanged(previous, session.permissions)
    } catch (err) {
      if (attempt === this.#reauthAttempt) this.#onError(err)
    }
  }

  /**
   * Applies permissions recomputed after an access change: without read the session is revoked;
   * otherwise the client hears `access-changed`, and losing write takes effect with this call.
   */
  setPermissions(permissions: PermissionBits): void {
    const session = this.#session
    const room = this.#room
    if (this.#state !== 'open' || session === null || room === null) return
    if (!canRead(permissions)) {
      this.end(new TandemError('revoked', 'access to this room was removed'))
      return
    }
    if (permissions === session.permissions) return
    const previous = session.permissions
    session.permissions = permissions
    if (this.#mode === 'tandem') this.send(encodeFrame(writeAccessChanged, permissions))
    this.#permissionsChanged(previous, permissions)
  }

  /** What follows a change of permissions, however it came (ACL change or re-authentication). */
  #permissionsChanged(previous: PermissionBits, permissions: PermissionBits): void {
    const room = this.#room
    if (room === null) return
    // A reader that may now write is asked for what it has, as a writer is on joining.
    if (!canWrite(previous) && canWrite(permissions)) this.send(encodeFrame(writeSyncStep1, Y.encodeStateVector(room.doc)))
    if (canWritePresence(previous) && !canWritePresence(permissions)) {
      const removals = room.presence.removeOwner(this)
      if (removals.length > 0) room.relayAwareness(removals, this)
    }
  }

  /** Ends the session with a coded error: told to the client, then closed with the code's close code. */
  end(error: TandemError, closeCode?: number): void {
    this.#fail(error, closeCode)
  }

  /** At expiry, asks a Tandem client for a fresh token and gives it a grace period; a stock client cannot refresh. */
  #armExpiry(expiresAt: number | null): void {
    if (this.#expiryTimer !== null) clearTimeout(this.#expiryTimer)
    this.#expiryTimer = null
    if (expiresAt === null) return
    const fire = (): void => {
      const left = expiresAt - Date.now()
      if (left > 0) {
        this.#expiryTimer = setTimeout(fire, Math.min(left, MAX_TIMER_MS))
        return
      }
      if (this.#mode !== 'tandem') {
        this.end(new TandemError('token_expired', 'the token has expired'))
        return
      }
      this.#noticeAt.delete('token_expired')
      this.#notice('token_expired', 'the token has expired: send a fresh one')
      this.#expiryTimer = setTimeout(
        () => this.end(new TandemError('token_expired', 'the token expired and no fresh one arrived')),
        this.#ctx.options.limits.tokenRefreshGraceMs,
      )
    }
    this.#expiryTimer = setTimeout(fire, Math.min(Math.max(0, expiresAt - Date.now()), MAX_TIMER_MS))
  }

  /**
   * Tells the client about a refused message, at most once a second per code; the socket stays. A
   * Tandem client gets the coded error. The stock y-websocket client understands only y-protocols'
   * permission-denied (it logs the reason and stays connected): it hears about refused writes.
   */
  #notice(code: ErrorCode, message: string): void {
    if (this.#mode === 'compat' && code !== 'read_only') return
    const now = Date.now()
    if (now - (this.#noticeAt.get(code) ?? 0) < NOTICE_INTERVAL_MS) return
    this.#noticeAt.set(code, now)
    this.send(this.#mode === 'tandem' ? encodeFrame(writeError, code, message) : encodeFrame(writePermissionDenied, `${code}: ${message}`))
  }

  /** Tells the client why, in the form it understands, and closes with the code's close code. */
  #fail(error: TandemError, closeCode?: number): void {
    if (this.#state === 'closed') return
    if (this.#mode === 'tandem') this.send(encodeFrame(writeError, error.code, error.message))
    else if (this.#mode === 'compat' && AUTH_CODES.has(error.code)) this.send(encodeFrame(writePermissionDenied, error.message))
    this.close(closeCode ?? error.closeCode ?? CloseCode.serverError, error.code)
  }

  /** Read through a method: the state changes across awaits, which narrowing cannot see. */
  #closed(): boolean {
    return this.#state === 'closed'
  }

  #teardown(): void {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    if (this.#authTimer !== null) clearTimeout(this.#authTimer)
    this.#authTimer = null
    if (this.#expiryTimer !== null) clearTimeout(this.#expiryTimer)
    this.#expiryTimer = null
    this.#queue = []
    this.#ctx.connections.delete(this)
    this.#ctx.metrics.connections.set(this.#ctx.connections.size)
    const room = this.#room
    this.#room = null
    if (room !== null && room.leave(this)) this.#ctx.registry.released(room)
  }
}
