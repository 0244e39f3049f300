/**
 * server/auth: who a client is and what it may do. Sessions and the seams identity plugs into
 * (session.ts), the built-in authenticator (authenticator.ts) over token verification
 * (token-verifier.ts), ACL precedence as pure functions (acl.ts), live access control: decisions,
 * re-evaluation, revocation, deletion (access-control.ts), and access changes in effect before the
 * store has them (pending-access.ts). Imports store/; never rooms/ or sync/.
 */

export { AccessControl, type AccessControlDeps } from './access-control.ts'
export { resolvePermissions, type Identity, type RoomAccesses } from './acl.ts'
export { builtInAuthenticate, type AuthenticatorDeps } from './authenticator.ts'
export { PendingAccess } from './pending-access.ts'
export { isRefusal, sessionOf } from './session.ts'
export type {
  Actor,
  Authenticate,
  AuthResult,
  Authorize,
  ConnectionRequest,
  Credentials,
  LiveSession,
  Refusal,
  RoomView,
  Session,
  SessionGrant,
} from './session.ts'
export { CLOCK_TOLERANCE_SECONDS, MAX_TOKEN_LENGTH, TokenVerifier, type TokenVerifierOptions, type VerifiedToken } from './token-verifier.ts'
