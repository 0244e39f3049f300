/**
 * What a Hocuspocus provider is told (protocol/hocuspocus.ts): the session's scope as Authenticated
 * (sent again when it changes), each write's SyncStatus once it is stored (never before) or at once
 * when it is refused, notices as stateless messages an app can read, and a session's end as
 * PermissionDenied for its one document (the socket and its other documents stay: providers 3.x
 * and 4.x reconnect on any close, so closing the socket for one document's refusal would loop).
 * The frames here are bodies: the document transport puts the document's address before each.
 */

import type { ErrorCode, TandemError } from '../../protocol/errors.ts'
import {
  HocuspocusAuthType,
  HocuspocusMessageType,
  type HocuspocusScope,
  noticePayload,
  writeHocuspocusAuthenticated,
  writeHocuspocusPermissionDenied,
  writeStateless,
  writeSyncStatus,
} from '../../protocol/hocuspocus.ts'
import { encodeFrame } from '../../protocol/messages.ts'
import { type PermissionBits, canWrite } from '../../protocol/permissions.ts'
import type { ClientProtocol } from './client-protocol.ts'

const scopeOf = (permissions: PermissionBits): HocuspocusScope => (canWrite(permissions) ? 'read-write' : 'readonly')

const STORED = encodeFrame(writeSyncStatus, true)
const REFUSED = encodeFrame(writeSyncStatus, false)
/** Asks the provider for its token again (3.4 and later send one; older ones ignore it). */
const TOKEN_REQUEST = Uint8Array.of(HocuspocusMessageType.auth, HocuspocusAuthType.token)

export const hocuspocusProtocol: ClientProtocol = {
  name: 'hocuspocus',
  refreshesTokens: true,
  acknowledges: 'each',
  asksReadersForState: true,
  authenticated: (session) => encodeFrame(writeHocuspocusAuthenticated, scopeOf(session.permissions)),
  accessChanged: (permissions) => encodeFrame(writeHocuspocusAuthenticated, scopeOf(permissions)),
  saved: (_total, added) => Array.from({ length: added }, () => STORED),
  writeStatus: (stored) => (stored ? STORED : REFUSED),
  notice: (code: ErrorCode, message: string) => {
    const notice = encodeFrame(writeStateless, noticePayload(code, message))
    return code === 'token_expired' ? [notice, TOKEN_REQUEST] : notice
  },
  refusal: (error: TandemError) => encodeFrame(writeHocuspocusPermissionDenied, `${error.code}: ${error.message}`),
}
