/**
 * Token claims (SPEC section 2), shared by the server that verifies tokens and the admin client that
 * mints them. Two kinds, told apart by `k`:
 * - ID token: who the user is; permissions come from the room's stored ACL.
 * - Access token: who the user is and, in `perms`, what it may do in which rooms (no ACL lookup).
 * Tokens from an external identity provider carry no `k`; they are ID tokens.
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
export const roomMatches = (pattern: string, roomId: string): boolean =>
  pattern.endsWith('*') ? roomId.startsWith(pattern.slice(0, -1)) : pattern === roomId
