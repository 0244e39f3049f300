/**
 * Token verification (SPEC section 2): Tandem's own HS256 tokens, checked with the server secret, and
 * optionally an external identity provider's tokens, checked with its JWKS or a PEM public key. Each
 * token string is verified once and its result kept until the token expires, so reconnects and
 * refreshes of the same token cost a map lookup.
 *
 * Errors are TandemErrors: `token_expired` for an expired token, `unauthorized` for anything else;
 * misconfiguration (a bad key, a secret missing) is a ConfigError when the verifier is made.
 * Their messages are short reasons and never contain the token; nothing here logs.
 */

import { type KeyObject, createPublicKey } from 'node:crypto'
import { type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions, createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose'
import { TandemError } from '../../protocol/errors.ts'
import { ConfigError } from '../config-error.ts'
import { isValidId, isValidUserId } from '../../protocol/ids.ts'
import { isPlainObject, isValidPerms } from '../../protocol/mint.ts'
import type { Permission } from '../../protocol/permissions.ts'
import { TOKEN_KIND } from '../../protocol/tokens.ts'

export interface TokenVerifierOptions {
  /** The server secret: Tandem's own tokens are HS256 with its UTF-8 bytes. */
  readonly secret: string
  /** An external identity provider's JSON Web Key Set. */
  readonly jwksUrl?: string
  /** Or its public key (SPKI PEM, or a certificate). */
  readonly publicKeyPem?: string
  /** Required `iss` of external tokens. */
  readonly issuer?: string
  /** Required `aud` of external tokens. */
  readonly audience?: string
  /** Claim of external tokens that holds the user's group ids. Default `groups`. */
  readonly groupsClaim?: string
  /** Most verified tokens kept. Default 10 000; 0 disables the cache. */
  readonly cacheSize?: number
  /** Clock in ms since the epoch. Default `Date.now`. */
  readonly now?: () => number
}

interface Common {
  readonly userId: string
  readonly info?: Readonly<Record<string, unknown>>
  readonly sessionId?: string
  readonly tenantId?: string
  /** `iat` in ms, 0 when the token has none. */
  readonly issuedAt: number
  /** `exp` in ms. */
  readonly expiresAt: number
}

export type VerifiedToken =
  | (Common & { readonly kind: 'id'; readonly groupIds: readonly string[] })
  | (Common & { readonly kind: 'access'; readonly perms: Readonly<Record<string, readonly Permission[]>> })

/** Accepted clock skew between the token's issuer and this server. */
export const CLOCK_TOLERANCE_SECONDS = 5

/** Longer tokens are refused before any parsing. */
export const MAX_TOKEN_LENGTH = 32_768

const DEFAULT_CACHE_SIZE = 10_000

const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519']
const ASYMMETRIC = new Set(ASYMMETRIC_ALGORITHMS)

/** The algorithms a PEM key can verify, by its type: a key is never used with another family. */
const algorithmsFor = (key: KeyObject): string[] => {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
    case 'rsa-pss':
      return ['PS256', 'PS384', 'PS512']
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve
      if (curve === 'prime256v1') return ['ES256']
      if (curve === 'secp384r1') return ['ES384']
      if (curve === 'secp521r1') return ['ES512']
      throw new ConfigError('jwt.publicKeyPem', `jwt.publicKeyPem: unsupported EC curve ${String(curve)}`)
    }
    case 'ed25519':
      return ['EdDSA', 'Ed25519']
    default:
      throw new ConfigError('jwt.publicKeyPem', `jwt.publicKeyPem: unsupported key type ${String(key.asymmetricKeyType)}`)
  }
}

/** Wraps a failure to get the identity provider's keys (endpoint down, not 200, not a key set). */
class KeysUnavailable extends Error {}

interface External {
  readonly key: KeyObject | JWTVerifyGetKey
  readonly options: JWTVerifyOptions
}

export class TokenVerifier {
  readonly #secret: Uint8Array
  readonly #external: External | null
  readonly #groupsClaim: string
  readonly #cacheSize: number
  readonly #now: () => number
  /** Token string → its verified result, oldest first. */
  readonly #cache = new Map<string, VerifiedToken>()

  constructor(options: TokenVerifierOptions) {
    if (typeof options.secret !== 'string' || options.secret.length === 0) {
      throw new ConfigError('secret', 'secret must be a non-empty string')
    }
    if (options.jwksUrl !== undefined && options.publicKeyPem !== undefined) {
      throw new ConfigError('jwt', 'configure either jwt.jwksUrl or jwt.publicKeyPem, not both')
    }
    const cacheSize = options.cacheSize ?? DEFAULT_CACHE_SIZE
    if (!Number.isInteger(cacheSize) || cacheSize < 0) {
      throw new ConfigError('jwt.cacheSize', 'cacheSize must be a non-negative integer')
    }
    this.#secret = new TextEncoder().encode(options.secret)
    this.#groupsClaim = options.groupsClaim ?? 'groups'
    this.#cacheSize = cacheSize
    this.#now = options.now ?? Date.now

    const checks: JWTVerifyOptions = {
      ...(options.issuer !== undefined && { issuer: options.issuer }),
      ...(options.audience !== undefined && { audience: options.audience }),
    }
    if (options.jwksUrl !== undefined) {
      const remote = createRemoteJWKSet(new URL(options.jwksUrl), { cooldownDuration: 30_000, cacheMaxAge: 600_000 })
      // jose reports a failed fetch as whatever fetch threw; tag it so the refusal can say so.
      // "No key with this kid" stays as it is: that is the token's fault, not the provider's.
      const key: JWTVerifyGetKey = async (header, token) => {
        try {
          return await remote(header, token)
        } catch (err) {
          const code = (err as { code?: unknown }).code
          if (code === 'ERR_JWKS_NO_MATCHING_KEY' || code === 'ERR_JWKS_MULTIPLE_MATCHING_KEYS') throw err
          throw new KeysUnavailable('identity provider keys unavailable', { cause: err })
        }
      }
      // The key set holds keys of several types; jose matches each key's `kty` (and `crv`) to the alg.
      this.#external = { key, options: { ...checks, algorithms: ASYMMETRIC_ALGORITHMS } }
    } else if (options.publicKeyPem !== undefined) {
      let key: KeyObject
      try {
        key = createPublicKey(options.publicKeyPem)
      } catch (err) {
        throw new ConfigError('jwt.publicKeyPem', 'jwt.publicKeyPem is not a valid public key', { cause: err })
      }
      this.#external = { key, options: { ...checks, algorithms: algorithmsFor(key) } }
    } else {
      this.#external = null
    }
  }

  /** The verified identity a token carries, or a `token_expired` / `unauthorized` TandemError. */
  async verify(token: string): Promise<VerifiedToken> {
    const cached = this.#cache.get(token)
    if (cached !== undefined) {
      // Same rule as jose's (exp plus tolerance); an expired entry is dropped, not re-verified.
      if (this.#now() < cached.expiresAt + CLOCK_TOLERANCE_SECONDS * 1000) return cached
      this.#cache.delete(token)
      throw new TandemError('token_expired', 'token expired')
    }
    const verified = await this.#verifyFresh(token)
    this.#remember(token, verified)
    return verified
  }

  async #verifyFresh(token: string): Promise<VerifiedToken> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      throw unauthorized('malformed token')
    }
    let alg: unknown
    try {
      alg = decodeProtectedHeader(token).alg
    } catch {
      throw unauthorized('malformed token')
    }

    // Security: which key verifies a token is chosen by its (still unverified) `alg`, and each path
    // then allows only its own algorithms. So an HS256 token signed with the identity provider's
    // public key as the HMAC secret (key confusion) goes to the secret path and fails there, and an
    // RS256/ES256 token can never be checked against the server secret. `none` and any other
    // algorithm are refused here, before jose sees the token.
    const common: JWTVerifyOptions = {
      requiredClaims: ['exp', 'sub'],
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      currentDate: new Date(this.#now()),
    }
    let payload: JWTPayload
    let external: boolean
    try {
      if (typeof alg === 'string' && alg.startsWith('HS')) {
        ;({ payload } = await jwtVerify(token, this.#secret, { ...common, algorithms: ['HS256'] }))
        external = false
      } else if (typeof alg === 'string' && ASYMMETRIC.has(alg)) {
        if (this.#external === null) throw unauthorized('no identity provider configured')
        const { key, options } = this.#external
        ;({ payload } =
          typeof key === 'function' ? await jwtVerify(token, key, { ...common, ...options }) : await jwtVerify(token, key, { ...common, ...options }))
        external = true
      } else {
        throw unauthorized('unsupported algorithm')
      }
    } catch (err) {
      throw toTokenError(err)
    }
    return this.#claims(payload, external)
  }

  /** Maps verified claims to a VerifiedToken, refusing claims of the wrong shape. */
  #claims(payload: JWTPayload, external: boolean): VerifiedToken {
    const { sub, exp, iat } = payload
    if (!isValidUserId(sub)) throw unauthorized('invalid sub claim')
    if (typeof exp !== 'number') throw unauthorized('invalid exp claim')
    const info = payload.info
    const sid = payload.sid
    const tid = payload.tid
    const common = {
      userId: sub,
      issuedAt: typeof iat === 'number' ? iat * 1000 : 0,
      expiresAt: exp * 1000,
    }

    if (external) {
      // External tokens: only sub and the groups claim are mapped; sid and tid when they are ids.
      const groups = payload[this.#groupsClaim]
      const groupIds = Array.isArray(groups) && groups.every(isValidId) ? Object.freeze([...groups]) : []
      return Object.freeze({
        kind: 'id',
        ...common,
        groupIds,
        ...(isValidId(sid) && { sessionId: sid }),
        ...(isValidId(tid) && { tenantId: tid }),
      })
    }

    if (info !== undefined && !isPlainObject(info)) throw unauthorized('invalid info claim')
    if (sid !== undefined && !isValidId(sid)) throw unauthorized('invalid sid claim')
    if (tid !== undefined && !isValidId(tid)) throw unauthorized('invalid tid claim')
    const optional = {
      ...(info !== undefined && { info }),
      ...(sid !== undefined && { sessionId: sid }),
      ...(tid !== undefined && { tenantId: tid }),
    }
    // What makes an access token is its `perms` claim (SPEC section 2), so a backend that signs
    // `{ sub, perms, exp }` with any JWT library gets one. Tandem's own `k` marker is optional on
    // input; claims that contradict each other are refused, never read as the other kind.
    const k = payload.k
    const perms = payload.perms
    const groups = payload.groups
    if (k !== undefined && k !== TOKEN_KIND.id && k !== TOKEN_KIND.access) throw unauthorized('unknown token kind')
    if (perms !== undefined) {
      if (k === TOKEN_KIND.id) throw unauthorized('contradictory claims: k says ID token, perms says access token')
      if (groups !== undefined) throw unauthorized('contradictory claims: groups (ID token) beside perms (access token)')
      if (!isValidPerms(perms)) throw unauthorized('invalid perms claim')
      return Object.freeze({ kind: 'access', ...common, ...optional, perms })
    }
    if (k === TOKEN_KIND.access) throw unauthorized('contradictory claims: k says access token, but there is no perms claim')
    if (groups !== undefined && !(Array.isArray(groups) && groups.every(isValidId))) {
      throw unauthorized('invalid groups claim')
    }
    return Object.freeze({ kind: 'id', ...common, ...optional, groupIds: Object.freeze([...((groups as string[] | undefined) ?? [])]) })
  }

  #remember(token: string, verified: VerifiedToken): void {
    if (this.#cacheSize === 0) return
    while (this.#cache.size >= this.#cacheSize) {
      const oldest = this.#cache.keys().next()
      if (oldest.done === true) break
      this.#cache.delete(oldest.value)
    }
    this.#cache.set(token, verified)
  }
}

const unauthorized = (reason: string): TandemError => new TandemError('unauthorized', reason)

/** The one place jose's errors become Tandem's. Reasons are fixed strings: jose's may quote claims. */
const toTokenError = (err: unknown): TandemError => {
  if (err instanceof TandemError) return err
  if (err instanceof KeysUnavailable) return unauthorized('identity provider keys unavailable')
  const code = (err as { code?: unknown } | null)?.code
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return new TandemError('token_expired', 'token expired')
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return unauthorized('invalid signature')
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
      const claim = (err as { claim?: unknown }).claim
      return unauthorized(typeof claim === 'string' ? `invalid ${claim} claim` : 'invalid claims')
    }
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return unauthorized('no matching key')
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return unauthorized('algorithm not allowed')
    default:
      return unauthorized('invalid token')
  }
}
