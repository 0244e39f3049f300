/**
 * Token claims (SPEC section 2), shared by the server that verifies tokens and the admin client that
 * mints them. Two kinds, told apart by the `perms` claim:
 * - ID token (no `perms`): who the user is; permissions come from the room's stored ACL.
 * - Access token (`perms`): who the user is and, per room pattern, what it may do (no ACL lookup).
 * Tandem's own minting adds `k` ('id' / 'acc'), optional on input; a `k` that contradicts `perms`
 * is refused. Tokens from an external identity provider are ID tokens.
 */

import type { Permission } from './permissions.ts'

export const TOKEN_KIND = { id: 'id', access: 'acc' } as const

export interface IdTokenClaims {
  readonly k?: typeof TOKEN_KIND.id
  readonly sub: string
  readonly groups?: string[]
  readonly info?: Record<string, unknown>
  /** Session id (one browser tab, say). */
  readonly sid?: string
  /** Tenant id. */
  readonly tid?: string
  readonly exp: number
  readonly iat?: number
}

export interface AccessTokenClaims {
  readonly k: typeof TOKEN_KIND.access
  readonly sub: string
  readonly info?: Record<string, unknown>
  /** Room id or prefix ending in `*` → permissions there. */
  readonly perms: Record<string, Permission[]>
  readonly sid?: string
  readonly tid?: string
  readonly exp: number
  readonly iat?: number
}

export type TokenClaims = IdTokenClaims | AccessTokenClaims

/** Default lifetime of minted tokens: short-lived, like Realtime's room tokens. */
export const DEFAULT_TOKEN_TTL_SECONDS = 600

/** Whether a room id matches an access token's pattern: exact, or a prefix ending in `*`. */
export const roomMatches = (pattern: string, roomId: string): boolean => (pattern.endsWith('*') ? roomId.startsWith(pattern.slice(0, -1)) : pattern === roomId)

/**
 * The most specific pattern of an access token's `perms` that matches `roomId` (SPEC section 2), or
 * null: the longest literal part wins (`org1:doc*` over `org1:*` over `*`), and an exact id beats a
 * prefix of the same length (`doc` over `doc*` for the room `doc`). As for ACLs, where the most
 * specific level decides alone, that pattern's permissions are the whole answer.
 */
export const matchingPattern = (perms: Readonly<Record<string, readonly Permission[]>>, roomId: string): string | null => {
  let best: string | null = null
  let bestRank = -1
  for (const pattern of Object.keys(perms)) {
    if (!roomMatches(pattern, roomId)) continue
    // Twice the literal length, plus one for an exact id: a tie goes to the exact pattern.
    const rank = pattern.endsWith('*') ? 2 * (pattern.length - 1) : 2 * pattern.length + 1
    if (rank > bestRank) {
      best = pattern
      bestRank = rank
    }
  }
  return best
}

/** The permissions an access token's `perms` grants in `roomId`: its most specific matching pattern's. */
export const permissionsForRoom = (perms: Readonly<Record<string, readonly Permission[]>>, roomId: string): readonly Permission[] => {
  const pattern = matchingPattern(perms, roomId)
  return pattern === null ? [] : perms[pattern]!
}
