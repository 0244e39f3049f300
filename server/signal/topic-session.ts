/**
 * One signalling socket's subscription to one topic (room): a live session as access control sees
 * it, re-evaluated like any connection's. Losing read (an ACL change, a revocation, the room's
 * deletion, expiry) takes the socket out of the topic at once, and the topic's other Tandem
 * clients hear it (their mesh links to it go); a change that keeps read is told the same way.
 */

import type { TandemError } from '../../protocol/errors.ts'
import { type PermissionBits, canRead, fromPermissionBits } from '../../protocol/permissions.ts'
import { encodeSignalMessage } from '../../protocol/signal.ts'
import type { LiveSession, Session } from '../auth/session.ts'
import type { Topics } from './topics.ts'

/** What a topic session needs of its socket. */
export interface SignalPeer {
  readonly id: string
  /** Whether the client sent Tandem's `auth` (and so reads `tandem:*` messages). */
  readonly speaksTandem: boolean
  sendText(text: string): void
  /** The subscription is over (the socket forgets it). */
  left(session: TopicSession): void
}

/** setTimeout's longest delay; longer expiries re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1

export class TopicSession implements LiveSession {
  readonly roomId: string
  readonly socket: SignalPeer
  readonly #topics: Topics
  readonly #sessions: Set<LiveSession>
  #session: Session
  #open = true
  #expiry: NodeJS.Timeout | null = null

  constructor(socket: SignalPeer, roomId: string, session: Session, topics: Topics, sessions: Set<LiveSession>) {
    this.socket = socket
    this.roomId = roomId
    this.#session = session
    this.#topics = topics
    this.#sessions = sessions
    topics.add(this)
    sessions.add(this)
    this.#armExpiry()
    this.#tellSelf()
    topics.peerChanged(this, session.permissions)
  }

  get id(): string {
    return this.socket.id
  }

  get session(): Session {
    return this.#session
  }

  get isOpen(): boolean {
    return this.#open
  }

  /** A fresh session for the same topic (the client sent a fresh token). */
  replace(session: Session): void {
    if (!this.#open) return
    const changed = session.permissions !== this.#session.permissions
    this.#session = session
    this.#armExpiry()
    this.#tellSelf()
    if (changed) this.#topics.peerChanged(this, session.permissions)
  }

  setPermissions(permissions: PermissionBits): void {
    if (!this.#open) return
    if (!canRead(permissions)) {
      this.leave()
      this.#tellError('revoked', 'access to this room was removed')
      return
    }
    if (permissions === this.#session.permissions) return
    this.#session = { ...this.#session, permissions }
    this.#tellSelf()
    this.#topics.peerChanged(this, permissions)
  }

  end(error: TandemError): void {
    if (!this.#open) return
    this.leave()
    this.#tellError(error.code, error.message)
  }

  /** Leaves the topic: its peers hear that this session is gone. */
  leave(): void {
    if (!this.#open) return
    this.#open = false
    if (this.#expiry !== null) clearTimeout(this.#expiry)
    this.#topics.remove(this)
    this.#sessions.delete(this)
    this.#topics.peerChanged(this, 0)
    this.socket.left(this)
  }

  #armExpiry(): void {
    if (this.#expiry !== null) clearTimeout(this.#expiry)
    this.#expiry = null
    const expiresAt = this.#session.expiresAt
    if (expiresAt === null) return
    const fire = (): void => {
      const left = expiresAt - Date.now()
      if (left > 0) {
        this.#expiry = setTimeout(fire, Math.min(left, MAX_TIMER_MS))
        return
      }
      this.leave()
      this.#tellError('token_expired', 'the token has expired: send a fresh one and subscribe again')
    }
    this.#expiry = setTimeout(fire, Math.min(Math.max(0, expiresAt - Date.now()), MAX_TIMER_MS))
  }

  #tellSelf(): void {
    if (this.socket.speaksTandem) {
      this.socket.sendText(encodeSignalMessage({ type: 'tandem:subscribed', topic: this.roomId, permissions: fromPermissionBits(this.#session.permissions) }))
    }
  }

  #tellError(code: string, message: string): void {
    if (this.socket.speaksTandem) this.socket.sendText(encodeSignalMessage({ type: 'tandem:error', code, message, topic: this.roomId }))
  }
}
