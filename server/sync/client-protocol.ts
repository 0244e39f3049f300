/**
 * What differs between the wire protocols clients speak (issue 13): how a session's start, its
 * permission changes, its acknowledgements, its notices and its end are told. The connection's
 * state machine (connection.ts) is one for all of them and asks its protocol for the words; a
 * protocol answers null where its clients have no such message. Tandem's own protocol and the stock
 * y-websocket client's are here; Hocuspocus's provider's is hocuspocus-protocol.ts.
 */

import type { ErrorCode, TandemError } from '../../protocol/errors.ts'
import { encodeFrame, writeAccessChanged, writeAuthenticated, writeError, writePermissionDenied, writeSaved } from '../../protocol/messages.ts'
import type { PermissionBits } from '../../protocol/permissions.ts'
import type { Session } from '../auth/session.ts'

/** What a protocol says: one frame, several, or nothing (its clients have no such message). */
export type Frames = Uint8Array | readonly Uint8Array[] | null

export interface ClientProtocol {
  /** For logs and the credentials' `via`. */
  readonly name: 'tandem' | 'compat' | 'hocuspocus'
  /**
   * Whether an expired session is asked for a fresh token (a grace period, then 4401); otherwise it
   * is closed at expiry.
   */
  readonly refreshesTokens: boolean
  /**
   * How writes are acknowledged. `count`: `saved` tells how many of the connection's writes were
   * handled, a refused one among them (it is counted in order with the stored ones). `each`: one
   * status per write, told when it is stored, or at once when it is refused (`writeRefused`).
   */
  readonly acknowledges: 'count' | 'each'
  /**
   * Whether a reader is asked for its state on joining, as a writer is (Hocuspocus's provider
   * counts its first sync as unsynced until that state is answered).
   */
  readonly asksReadersForState: boolean
  /** The session is established (or re-established with a fresh token). */
  authenticated(session: Session): Frames
  /** The session's permissions changed (losing read ends it instead). */
  accessChanged(permissions: PermissionBits): Frames
  /** `added` more of the connection's writes were stored (or, with `count`, handled): `total` in all. */
  saved(total: number, added: number): Frames
  /** With `each`: a write was refused, or (`stored`) it added nothing the room lacks. */
  writeStatus(stored: boolean): Frames
  /** A message was refused, the session stays (sent at most once a second per code). */
  notice(code: ErrorCode, message: string): Frames
  /** Why the session ends, said before its close. */
  refusal(error: TandemError): Frames
}

/** Tandem's own protocol (protocol/PROTOCOL.md): every decision told with its code. */
export const tandemProtocol: ClientProtocol = {
  name: 'tandem',
  refreshesTokens: true,
  acknowledges: 'count',
  asksReadersForState: false,
  authenticated: (session) => encodeFrame(writeAuthenticated, { ...session }),
  accessChanged: (permissions) => encodeFrame(writeAccessChanged, permissions),
  saved: (total) => encodeFrame(writeSaved, total),
  writeStatus: () => null,
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
  acknowledges: 'count',
  asksReadersForState: false,
  authenticated: () => null,
  accessChanged: () => null,
  saved: () => null,
  writeStatus: () => null,
  notice: (code, message) => (code === 'read_only' ? encodeFrame(writePermissionDenied, `${code}: ${message}`) : null),
  refusal: (error) => (TOLD_BEFORE_CLOSE.has(error.code) ? encodeFrame(writePermissionDenied, error.message) : null),
}
