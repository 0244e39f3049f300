/**
 * Minting Tandem's own tokens (SPEC section 2): HS256 JWTs signed with the server secret, used by the
 * admin client and by `POST /v1/identify-user` / `POST /v1/authorize`. Pure: jose's web API only, so
 * it runs in Node and in browsers alike.
 *
 * The shape checks here (`isValidUserId`, `isValidPerms`) are also what the server's verifier applies
 * to incoming claims, so what one side mints the other accepts.
 */

import { SignJWT } from 'jose'
import { TandemError } from './errors.ts'
import { MAX_ID_LENGTH, isValidId, isValidUserId } from './ids.ts'
import { type Permission, isPermission } from './permissions.ts'
import { type AccessTokenClaims, DEFAULT_TOKEN_TTL_SECONDS, type IdTokenClaims, TOKEN_KIND } from './tokens.ts'

/** The `iss` of every token Tandem mints. */
export const TANDEM_ISSUER = 'tandem'

/** Longest accepted token lifetime: 30 days. */
export const MAX_TOKEN_TTL_SECONDS = 86_400 * 30

/** A plain JSON object (not null, not an array). */
export const isPlainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/** An access token's `perms`: room id or prefix ending in `*` → a list of valid permissions. */
export const isValidPerms = (value: unknown): value is Record<string, Permission[]> => {
  if (!isPlainObject(value)) return false
  for (const [pattern, permissions] of Object.entries(value)) {
    if (!isValidId(pattern)) return false
    if (!Array.isArray(permissions) || !permissions.every(isPermission)) return false
  }
  return true
}

export interface MintOptions {
  /** Lifetime in whole seconds, 1 to 30 days. Default DEFAULT_TOKEN_TTL_SECONDS (10 min). */
  readonly ttlSeconds?: number
  /** Current time in ms since the epoch. Default `Date.now()`. */
  readonly now?: number
}

export interface MintedToken {
  readonly token: string
  /** When the token expires, in ms since the epoch. */
  readonly expiresAt: number
}

export interface IdTokenInput {
  readonly userId: string
  readonly groupIds?: readonly string[]
  readonly userInfo?: Record<string, unknown>
  readonly sessionId?: string
  readonly tenantId?: string
}

export interface AccessTokenInput {
  readonly userId: string
  readonly userInfo?: Record<string, unknown>
  /** Room id or prefix ending in `*` → permissions there. */
  readonly rooms: Readonly<Record<string, readonly Permission[]>>
  readonly sessionId?: string
  readonly tenantId?: string
}

const invalid = (message: string): TandemError => new TandemError('invalid_request', message)

/** userInfo travels in every token and to every peer: it stays small and shallow. */
export const MAX_INFO_DEPTH = 16
export const MAX_INFO_BYTES = 16 * 1024

const depthWithin = (value: unknown, depth: number): boolean => {
  if (value === null || typeof value !== 'object') return true
  if (depth === 0) return false
  return Object.values(value).every((v) => depthWithin(v, depth - 1))
}

/** Whether `value` is JSON nested at most `depth` levels and at most MAX_INFO_BYTES long. */
export const isSmallJson = (value: unknown, depth: number): boolean => {
  if (!depthWithin(value, depth)) return false
  try {
    return JSON.stringify(value).length <= MAX_INFO_BYTES
  } catch {
    return false
  }
}

const checkCommon = (input: { readonly userId: unknown; readonly userInfo?: unknown; readonly sessionId?: unknown; readonly tenantId?: unknown }): void => {
  if (!isValidUserId(input.userId)) throw invalid(`userId must be 1 to ${MAX_ID_LENGTH} characters, no control characters`)
  if (input.userInfo !== undefined && !isPlainObject(input.userInfo)) throw invalid('userInfo must be an object')
  if (input.userInfo !== undefined && !isSmallJson(input.userInfo, MAX_INFO_DEPTH)) {
    throw invalid(`userInfo must be JSON nested at most ${MAX_INFO_DEPTH} levels, at most ${MAX_INFO_BYTES} bytes`)
  }
  if (input.sessionId !== undefined && !isValidId(input.sessionId)) throw invalid('sessionId is not a valid id')
  if (input.tenantId !== undefined && !isValidId(input.tenantId)) throw invalid('tenantId is not a valid id')
}

const times = (options: MintOptions): { iat: number; exp: number } => {
  const ttl = options.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) {
    throw invalid(`ttlSeconds must be an integer from 1 to ${MAX_TOKEN_TTL_SECONDS}`)
  }
  const now = options.now ?? Date.now()
  if (!Number.isFinite(now)) throw invalid('now must be a finite number')
  // iat keeps milliseconds (a NumericDate may be fractional, RFC 7519 section 2), so a revocation
  // refuses exactly the tokens minted before it, even within the same second.
  const iat = now / 1000
  return { iat, exp: iat + ttl }
}

const sign = async (secret: string, claims: Record<string, unknown>, iat: number, exp: number): Promise<MintedToken> => {
  if (typeof secret !== 'string' || secret.length === 0) throw invalid('secret must be a non-empty string')
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(TANDEM_ISSUER)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(new TextEncoder().encode(secret))
  return { token, expiresAt: exp * 1000 }
}

/** An ID token: who the user is; the room's stored ACL decides what it may do. */
export async function mintIdToken(secret: string, input: IdTokenInput, options: MintOptions = {}): Promise<MintedToken> {
  checkCommon(input)
  if (input.groupIds !== undefined && !(Array.isArray(input.groupIds) && input.groupIds.every(isValidId))) {
    throw invalid('groupIds must be an array of valid ids')
  }
  const { iat, exp } = times(options)
  const claims: Omit<IdTokenClaims, 'exp' | 'iat'> = {
    k: TOKEN_KIND.id,
    sub: input.userId,
    ...(input.groupIds !== undefined && { groups: [...input.groupIds] }),
    ...(input.userInfo !== undefined && { info: input.userInfo }),
    ...(input.sessionId !== undefined && { sid: input.sessionId }),
    ...(input.tenantId !== undefined && { tid: input.tenantId }),
  }
  return sign(secret, claims, iat, exp)
}

/** An access token: who the user is and, per room pattern, what it may do (no ACL lookup). */
export async function mintAccessToken(secret: string, input: AccessTokenInput, options: MintOptions = {}): Promise<MintedToken> {
  checkCommon(input)
  if (!isValidPerms(input.rooms)) {
    throw invalid('rooms must map room ids or prefixes ending in * to lists of valid permissions')
  }
  const { iat, exp } = times(options)
  const perms: Record<string, Permission[]> = {}
  for (const [pattern, permissions] of Object.entries(input.rooms)) perms[pattern] = [...permissions]
  const claims: Omit<AccessTokenClaims, 'exp' | 'iat'> = {
    k: TOKEN_KIND.access,
    sub: input.userId,
    ...(input.userInfo !== undefined && { info: input.userInfo }),
    perms,
    ...(input.sessionId !== undefined && { sid: input.sessionId }),
    ...(input.tenantId !== undefined && { tid: input.tenantId }),
  }
  return sign(secret, claims, iat, exp)
}
