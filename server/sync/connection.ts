/**
 * One client in one room: the state machine every wire protocol shares.
 *
 *   waiting ──begin──▶ authenticating ──▶ joining ──▶ open ──▶ closed
 *
 * `waiting` until the client's credentials arrive (its endpoint says which protocol it speaks and
 * calls `begin`); `authenticating` while they are verified and the session's permissions decided;
 * `joining` while the room loads. Until `open`, messages are decoded and queued (bounded), and
 * nothing of the room is sent. Once open, each message goes to dispatch.ts, gated by a read of the
 * session's permissions. What the client is told, and how, is its protocol's (client-protocol.ts);
 * how frames reach it is its transport's (a socket, or one document of a shared socket).
 *
 * Over 300 lines on purpose: the state machine's transitions, the epoch loop that decides again
 * when access changed meanwhile, re-authentication and expiry all touch the same state; split,
 * each part would have to see the others' fields.
 */

import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import * as Y from 'yjs'
import { CloseCode, type ErrorCode, TandemError, toTandemError } from '../../protocol/errors.ts'
import { type ClientMessage, encodeFrame, writeSyncStep1 } from '../../protocol/messages.ts'
import { type PermissionBits, canRead, canWrite, canWritePresence } from '../../protocol/permissions.ts'
import type { AccessControl } from '../auth/access-control.ts'
import {
  type Actor,
  type Authenticate,
  type ConnectionRequest,
  type Credentials,
  type LiveSession,
  type Session,
  isRefusal,
  sessionOf,
} from '../auth/session.ts'
import type { Limits } from '../limits.ts'
import type { Metrics } from '../metrics.ts'
import type { SharedFrame } from '../rooms/fanout.ts'
import type { RoomRegistry } from '../rooms/registry.ts'
import type { Room, RoomMember } from '../rooms/room.ts'
import type { ClientProtocol, Frames } from './client-protocol.ts'
import type { Transport } from './transport.ts'
import { dispatch } from './dispatch.ts'

export type { Transport }

/** setTimeout's longest delay; longer expiries re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1
const NOTICE_INTERVAL_MS = 1_000

export interface ConnectionContext {
  readonly registry: RoomRegistry
  readonly access: AccessControl
  readonly authenticate: Authenticate
  readonly limits: Readonly<Limits>
  readonly metrics: Metrics
  readonly log: FastifyBaseLogger
  /** Every connection of the process, open or not (access control and REST read it). */
  readonly connections: Set<Connection>
}

type State = 'waiting' | 'authenticating' | 'joining' | 'open' | 'closed'

interface Queued {
  readonly message: ClientMessage
  readonly frame: Uint8Array
}

export class Connection implements RoomMember, LiveSession {
  readonly id = randomUUID()
  readonly roomId: string
  readonly #transport: Transport
  readonly #request: ConnectionRequest
  readonly #ctx: ConnectionContext
  /** Made on first use: most connections never log, and a child logger costs heap per connection. */
  #log: FastifyBaseLogger | null = null

  #state: State = 'waiting'
  #protocol: ClientProtocol | null = null
  #session: Session | null = null
  #room: Room | null = null
  #queue: Queued[] = []
  #queueBytes = 0
  #authTimer: NodeJS.Timeout | null
  #expiryTimer: NodeJS.Timeout | null = null
  #reauthAttempt = 0
  #saved = 0
  /** When each notice code was last told (made on the first notice: most connections get none). */
  #noticeAt: Map<ErrorCode, number> | null = null
  /** Whether the free first sync answer (the join's) was given (dispatch.ts). */
  answeredSync = false

  constructor(transport: Transport, roomId: string, request: ConnectionRequest, ctx: ConnectionContext) {
    this.#transport = transport
    this.roomId = roomId
    this.#request = request
    this.#ctx = ctx
    ctx.connections.add(this)
    ctx.metrics.connections.set(ctx.connections.size)
    this.#authTimer = setTimeout(
      () => this.#fail(new TandemError('unauthorized', 'no authentication in time'), CloseCode.authTimeout),
      ctx.limits.authTimeoutMs,
    )
  }

  get log(): FastifyBaseLogger {
    this.#log ??= this.#ctx.log.child({ connectionId: this.id, roomId: this.roomId })
    return this.#log
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

  get isWaiting(): boolean {
    return this.#state === 'waiting'
  }

  get context(): ConnectionContext {
    return this.#ctx
  }

  get transport(): Transport {
    return this.#transport
  }

  send(frame: Uint8Array, shared?: SharedFrame): void {
    this.#transport.send(frame, shared)
  }

  /** Sends what the protocol said, if anything. */
  #tell(frames: Frames | undefined): void {
    if (frames == null) return
    if (frames instanceof Uint8Array) this.send(frames)
    else for (const frame of frames) this.send(frame)
  }

  get acknowledges(): 'count' | 'each' {
    return this.#protocol?.acknowledges ?? 'count'
  }

  /** The client presented its credentials, in the words of `protocol`; `first` is queued when given. */
  begin(protocol: ClientProtocol, credentials: Credentials, first?: Queued): void {
    this.#protocol = protocol
    if (first !== undefined) this.#enqueue(first.message, first.frame)
    void this.#authenticate(credentials)
  }

  /** A decoded message after `begin`: queued until the session is open, then dispatched. */
  receive(message: ClientMessage, frame: Uint8Array): void {
    switch (this.#state) {
      case 'waiting':
      case 'closed':
        return
      case 'authenticating':
      case 'joining':
        this.#enqueue(message, frame)
        return
      case 'open':
        dispatch(this, this.#room!, this.#session!, message, frame)
    }
  }

  acknowledge(count: number): void {
    this.#saved += count
    this.#tell(this.#protocol?.saved(this.#saved, count))
  }

  writeStatus(stored: boolean): void {
    this.#tell(this.#protocol?.writeStatus(stored))
  }

  writeDelayed(): void {
    this.notice('server_error', 'writes are not stored yet; the server is retrying')
  }

  /** Tells the client about a refused message, at most once a second per code; the session stays. */
  notice(code: ErrorCode, message: string): void {
    const now = Date.now()
    if (now - (this.#noticeAt?.get(code) ?? 0) < NOTICE_INTERVAL_MS) return
    const frames = this.#protocol?.notice(code, message)
    if (frames == null) return
    this.#noticeAt ??= new Map()
    this.#noticeAt.set(code, now)
    this.#tell(frames)
  }

  /** A message could not be handled: the session ends with the error's code (logged by kind). */
  refuse(err: unknown, closeCode?: number): void {
    const error = toTandemError(err)
    if (error.code === 'malformed_message') this.#ctx.metrics.rejected.malformed++
    if (error.code === 'server_error') this.log.error({ err: error.cause ?? err }, 'message handling failed')
    else this.log.debug({ code: error.code, reason: error.message }, 'refused message')
    this.#fail(error, closeCode)
  }

  /** Ends the session with a coded error: told to the client, then closed with the code's close code. */
  end(error: TandemError, closeCode?: number): void {
    this.#fail(error, closeCode)
  }

  close(code: number, reason: string): void {
    if (this.#state === 'closed') return
    this.closed()
    this.#transport.close(code, reason)
  }

  #enqueue(message: ClientMessage, frame: Uint8Array): void {
    const { preAuthMaxMessages, preAuthMaxBytes } = this.#ctx.limits
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
      this.refuse(err, full ? CloseCode.tryAgainLater : undefined)
    }
  }

  /** Authenticates, then decides the session's permissions here; throws the refusal. */
  async #establish(credentials: Credentials): Promise<Session> {
    const grant = await this.#ctx.authenticate(credentials, this.#request)
    if (isRefusal(grant)) throw new TandemError(grant.refused, grant.reason)
    const base = sessionOf(grant, this.id)
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

    this.#tell(this.#protocol!.authenticated(session))
    // A reader is not asked for its state: it may not write it (y-protocols, read-only users),
    // unless its protocol counts that answer (Hocuspocus's).
    if (canWrite(session.permissions) || this.#protocol!.asksReadersForState) {
      this.send(encodeFrame(writeSyncStep1, Y.encodeStateVector(room.doc)))
    }
    const presence = room.presenceFrame()
    if (presence !== null) this.send(presence)

    const queued = this.#queue
    this.#queue = []
    this.#queueBytes = 0
    for (const { message, frame } of queued) {
      if (this.#state !== 'open') return
      try {
        dispatch(this, room, this.#session!, message, frame)
      } catch (err) {
        this.refuse(err)
      }
    }
  }

  /** Fresh credentials inside the socket: re-evaluated without reconnecting; the last sent decides. */
  async reauthenticate(credentials: Credentials): Promise<void> {
    const attempt = ++this.#reauthAttempt
    try {
      const session = await this.#establish(credentials)
      if (this.#state !== 'open' || attempt !== this.#reauthAttempt) return
      const previous = this.#session!.permissions
      this.#session = session
      this.#armExpiry(session.expiresAt)
      this.#tell(this.#protocol!.authenticated(session))
      this.#permissionsChanged(previous, session.permissions)
    } catch (err) {
      if (attempt === this.#reauthAttempt) this.refuse(err)
    }
  }

  /**
   * Applies permissions recomputed after an access change: without read the session is revoked;
   * otherwise the client hears of it, and losing write takes effect with this call.
   */
  setPermissions(permissions: PermissionBits): void {
    const session = this.#session
    if (this.#state !== 'open' || session === null) return
    if (!canRead(permissions)) {
      this.end(new TandemError('revoked', 'access to this room was removed'))
      return
    }
    if (permissions === session.permissions) return
    const previous = session.permissions
    session.permissions = permissions
    this.#tell(this.#protocol!.accessChanged(permissions))
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

  /** At expiry, a client that can refresh is asked for a fresh token within a grace period; others are closed. */
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
      if (!this.#protocol!.refreshesTokens) {
        this.end(new TandemError('token_expired', 'the token has expired'))
        return
      }
      this.#noticeAt?.delete('token_expired')
      this.notice('token_expired', 'the token has expired: send a fresh one')
      this.#expiryTimer = setTimeout(
        () => this.end(new TandemError('token_expired', 'the token expired and no fresh one arrived')),
        this.#ctx.limits.tokenRefreshGraceMs,
      )
    }
    this.#expiryTimer = setTimeout(fire, Math.min(Math.max(0, expiresAt - Date.now()), MAX_TIMER_MS))
  }

  /** Tells the client why, in the words of its protocol, and closes with the code's close code. */
  #fail(error: TandemError, closeCode?: number): void {
    if (this.#state === 'closed') return
    this.#tell(this.#protocol?.refusal(error))
    this.close(closeCode ?? error.closeCode ?? CloseCode.serverError, error.code)
  }

  /** Read through a method: the state changes across awaits, which narrowing cannot see. */
  #closed(): boolean {
    return this.#state === 'closed'
  }

  /** The connection is over (its transport is gone, or it closed it): timers, queue and room let go. */
  closed(): void {
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
    if (room?.leave(this)) this.#ctx.registry.released(room)
  }
}
