/**
 * What differs between the wire protocols clients speak (issue 13): how a session's start, its
 * permission changes, its acknowledgements, its notices and its end are told. The connection's
 * state machine (connection.ts) is one for all of them and asks its protocol for the words; a
 * protocol answers null where its clients have no such message. Tandem's own protocol and the stock
 * y-websocket client's are here; Hocuspocus's provider speaks another (hocuspocus/).
 */

import type { ErrorCode, TandemError } from '../../protocol/errors.ts'
import { encodeFrame, writeAccessChanged, writeAuthenticated, writeError, writePermissionDenied, writeSaved } from '../../protocol/messages.ts'
import type { PermissionBits } from '../../protocol/permissions.ts'
import type { Session } from '../auth/session.ts'

export interface ClientProtocol {
  /** For logs and the credentials' `via`. */
  readonly name: 'tandem' | 'compat' | 'hocuspocus'
  /**
   * Whether an expired session is asked for a fresh token (a grace period, then 4401); otherwise it
   * is closed at expiry.
   */
  readonly refreshesTokens: boolean
  /** The session is established (or re-established with a fresh token). */
  authenticated(session: Session): Uint8Array | null
  /** The session's permissions changed (losing read ends it instead). */
  accessChanged(permissions: PermissionBits): Uint8Array | null
  /** The connection's writes so far stored, in all: `count`. */
  saved(count: number): Uint8Array | null
  /** A message was refused, the session stays (sent at most once a second per code). */
  notice(code: ErrorCode, message: string): Uint8Array | null
  /** Why the session ends, said before its close. */
  refusal(error: TandemError): Uint8Array | null
}

/** Tandem's own protocol (protocol/PROTOCOL.md): every decision told with its code. */
export const tandemProtocol: ClientProtocol = {
  name: 'tandem',
  refreshesTokens: true,
  authenticated: (session) => encodeFrame(writeAuthenticated, { ...session }),
  accessChanged: (permissions) => encodeFrame(writeAccessChanged, permissions),
  saved: (count) => encodeFrame(writeSaved, count),
  notice: (code, message) => encodeFrame(writeError, code, message),
  refusal: (error) => encodeFrame(writeError, error.code, error.message),
}

/** Codes a stock y-websocket client is told before its socket closes, as y-protocols' permission-denied. */
const TOLD_BEFORE_CLOSE: ReadonlySet<ErrorCode> = new Set(['unauthorized', 'token_expired', 'forbidden', 'revoked'])

/**
 * The stock y-websocket client (compatibility mode): it understands only y-protocols' auth message
 * (permission-denied with a reason), which it logs and stays connected. It hears why it is turned
 * away, and that its writes are refused; it cannot refresh a token, so it is closed at expiry.
 */
export const yWebsocketProtocol: ClientProtocol = {
  name: 'compat',
  refreshesTokens: false,
  authenticated: () => null,
  accessChanged: () => null,
  saved: () => null,
  notice: (code, message) => (code === 'read_only' ? encodeFrame(writePermissionDenied, `${code}: ${message}`) : null),
  refusal: (error) => (TOLD_BEFORE_CLOSE.has(error.code) ? encodeFrame(writePermissionDenied, error.message) : null),
}
