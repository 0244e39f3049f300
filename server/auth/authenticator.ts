/**
 * The built-in `authenticate`: a verified token (ID or access token, SPEC section 2), else the
 * identity headers of a trusted gateway (only with `trustIdentityHeaders`), else an anonymous
 * session (only with `allowAnonymous`), else a refusal. Apps with their own identity replace it
 * through the `authenticate` option of createServer.
 */

import { randomUUID } from 'node:crypto'
import { isValidId } from '../../protocol/ids.ts'
import type { Authenticate, AuthResult } from './session.ts'
import type { PendingAccess } from './pending-access.ts'
import { CLOCK_TOLERANCE_SECONDS, type TokenVerifier } from './token-verifier.ts'

export interface AuthenticatorDeps {
  readonly verifier: TokenVerifier
  /** Revocations in effect, stored or not yet. */
  readonly revocations: Pick<PendingAccess, 'revokedAt'>
  readonly allowAnonymous: boolean
  readonly trustIdentityHeaders: boolean
}

const header = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[0] : value)

export const builtInAuthenticate =
  (deps: AuthenticatorDeps): Authenticate =>
  async (credentials, request): Promise<AuthResult> => {
    if (credentials.token !== null) {
      const token = await deps.verifier.verify(credentials.token)
      // A revocation refuses every token issued before it, so a revoked user cannot simply reconnect.
      // `iat` comes from the issuer's clock: a token minted just before the revocation by a backend
      // whose clock runs ahead must not pass, so the same skew tolerance as for `exp` applies.
      const revokedAt = await deps.revocations.revokedAt(token.userId, credentials.roomId)
      if (revokedAt > 0 && token.issuedAt <= revokedAt + CLOCK_TOLERANCE_SECONDS * 1000) {
        return { refused: 'revoked', reason: 'this user was revoked' }
      }
      const actor = {
        kind: 'user' as const,
        userId: token.userId,
        ...(token.sessionId !== undefined && { sessionId: token.sessionId }),
        ...(token.tenantId !== undefined && { tenantId: token.tenantId }),
      }
      const identity =
        token.kind === 'access' ? { kind: 'access' as const, perms: token.perms } : { kind: 'user' as const, userId: token.userId, groupIds: token.groupIds }
      return { actor, info: token.info ?? null, identity, expiresAt: token.expiresAt }
    }

    // Security: only behind a gateway the operator trusts to set (and strip) these headers.
    const userId = deps.trustIdentityHeaders ? header(request.headers['x-user-id']) : undefined
    if (userId !== undefined) {
      if (!isValidId(userId)) return { refused: 'unauthorized', reason: 'invalid x-user-id header' }
      // No token to date: a revoked gateway user stays out until the backend reinstates them.
      if ((await deps.revocations.revokedAt(userId, credentials.roomId)) > 0) return { refused: 'revoked', reason: 'this user was revoked' }
      const groupIds = (header(request.headers['x-group-ids']) ?? '')
        .split(',')
        .map((g) => g.trim())
        .filter(isValidId)
      const tenantId = header(request.headers['x-tenant-id'])
      const actor = { kind: 'user' as const, userId, ...(tenantId !== undefined && isValidId(tenantId) && { tenantId }) }
      return { actor, identity: { kind: 'user', userId, groupIds } }
    }

    if (deps.allowAnonymous) {
      return { actor: { kind: 'anonymous', sessionId: randomUUID() }, identity: { kind: 'anonymous' } }
    }
    return { refused: 'unauthorized', reason: 'a token is required' }
  }
