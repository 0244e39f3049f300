/**
 * Sessions: who a connection is and what it may do, decided once when it authenticates (and again
 * only when its access changes). The message loop reads `session.permissions`, a bit set, and
 * nothing else.
 *
 * `Authenticate` is the seam identity plugs into: the server calls it once per connection with the
 * credentials the client presented (the token from Tandem's auth message, or, for the stock
 * y-websocket client, the compatibility `?token=` parameter) and gets a session or a refusal.
 */

import type { IncomingHttpHeaders } from 'node:http'
import type { Actor } from '../../protocol/actor.ts'
import type { ErrorCode, TandemError } from '../../protocol/errors.ts'
import type { PermissionBits } from '../../protocol/permissions.ts'
import type { Identity } from './acl.ts'
import type { RoomRecord } from '../store/types.ts'

export type { Actor }

export interface Session {
  /** Unique per connection, also sent to the client. */
  readonly connectionId: string
  readonly actor: Actor
  /** Free-form user info shown to other participants (name, colour, avatar). */
  readonly info: unknown
  /** Current permissions in this room; replaced (never mutated in place) when access changes. */
  permissions: PermissionBits
  /** When the credentials expire (ms since epoch), or null for sessions that do not. */
  readonly expiresAt: number | null
  /** What the session's permissions are derived from, re-read whenever the room's access changes. */
  readonly identity: Identity
}

/**
 * A session as access control and the REST API see it: one client in one room, whatever socket
 * and wire protocol carry it (sync/connection.ts implements it).
 */
export interface LiveSession {
  /** The connection id (also the session's `connectionId`). */
  readonly id: string
  readonly roomId: string
  /** Null until the session is established. */
  readonly session: Session | null
  /** Established and in its room. */
  readonly isOpen: boolean
  /** Applies permissions recomputed after an access change (losing read ends the session). */
  setPermissions(permissions: PermissionBits): void
  /** Ends the session with a coded error, told to the client in its protocol's words. */
  end(error: TandemError, closeCode?: number): void
}

export interface Credentials {
  readonly roomId: string
  /** The presented token, or null when the client presented none. */
  readonly token: string | null
  /** `tandem`: Tandem's auth message; `compat`: a stock y-websocket client (no auth message); `hocuspocus`: a Hocuspocus provider's Token message; `signal`: a signalling socket's token, once per room it subscribes to. */
  readonly via: 'tandem' | 'compat' | 'hocuspocus' | 'signal'
}

/** What the server knows of the request that opened the socket. */
export interface ConnectionRequest {
  readonly ip: string
  readonly headers: IncomingHttpHeaders
}

/**
 * Who the client is. Its permissions come from `identity` and the room's ACL (SPEC section 3), or,
 * when `permissions` is given instead, from the grant alone (a custom rule that needs no ACL).
 * Either way the `authorize` option, when set, has the last word.
 */
export type SessionGrant = {
  readonly actor: Actor
  readonly info?: unknown
  readonly expiresAt?: number | null
} & ({ readonly identity: Identity; readonly permissions?: undefined } | { readonly permissions: PermissionBits; readonly identity?: undefined })

/** The session a grant makes for connection `connectionId`, before its permissions in a room are decided. */
export const sessionOf = (grant: SessionGrant, connectionId: string): Omit<Session, 'permissions'> => ({
  connectionId,
  actor: grant.actor,
  info: grant.info ?? null,
  expiresAt: grant.expiresAt ?? null,
  identity: grant.identity ?? { kind: 'fixed', permissions: grant.permissions },
})

export interface Refusal {
  readonly refused: Extract<ErrorCode, 'unauthorized' | 'token_expired' | 'forbidden' | 'revoked' | 'room_not_found'>
  readonly reason: string
}

/** The room as `authorize` sees it: its id and its ACL record (null when it has none). */
export interface RoomView {
  readonly id: string
  readonly record: RoomRecord | null
}

/** Custom rules (plan checks, ownership) run once per session and on every re-evaluation. */
export type Authorize = (
  session: Session,
  room: RoomView,
) => PermissionBits | { readonly denied: true; readonly reason: string } | Promise<PermissionBits | { readonly denied: true; readonly reason: string }>

export type AuthResult = SessionGrant | Refusal

export type Authenticate = (credentials: Credentials, request: ConnectionRequest) => AuthResult | Promise<AuthResult>

export const isRefusal = (result: AuthResult): result is Refusal => 'refused' in result
