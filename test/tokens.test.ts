/**
 * Tokens: minting and verifying with real JWTs and real keys. Tandem's HS256 tokens, an external
 * identity provider's keys (a JWKS served here over HTTP, or a PEM key), key confusion, `alg: none`,
 * time claims, and the verified-token cache.
 */

import { type Server, createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type CryptoKey, type JWK, SignJWT, exportJWK, exportSPKI, generateKeyPair } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ErrorCode, TandemError } from '../protocol/errors.ts'
import { mintAccessToken, mintIdToken } from '../protocol/mint.ts'
import { TokenVerifier } from '../server/auth/token-verifier.ts'

const SECRET = 'a-test-secret-that-is-long-enough-to-use'
const ISSUER = 'https://idp.example'
const AUDIENCE = 'tandem-test'

const codeOf = async (promise: Promise<unknown>): Promise<ErrorCode> => {
  try {
    await promise
  } catch (err) {
    expect(err).toBeInstanceOf(TandemError)
    return (err as TandemError).code
  }
  throw new Error('expected a refusal')
}

const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
const nowSeconds = (): number => Math.floor(Date.now() / 1000)

/** An HS256 token signed by hand, for claims `mint*` would refuse to produce. */
const signHs256 = (claims: Record<string, unknown>, secret: string | Uint8Array = SECRET): Promise<string> =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(typeof secret === 'string' ? new TextEncoder().encode(secret) : secret)

describe('minting and verifying Tandem tokens', () => {
  const verifier = new TokenVerifier({ secret: SECRET })

  it('round-trips an ID token', async () => {
    const before = Date.now()
    const { token, expiresAt } = await mintIdToken(SECRET, {
      userId: 'alice',
      groupIds: ['eng', 'ops'],
      userInfo: { name: 'Alice' },
      sessionId: 'tab-1',
      tenantId: 'acme',
    })
    const verified = await verifier.verify(token)
    expect(verified).toEqual({
      kind: 'id',
      userId: 'alice',
      groupIds: ['eng', 'ops'],
      info: { name: 'Alice' },
      sessionId: 'tab-1',
      tenantId: 'acme',
      issuedAt: verified.issuedAt,
      expiresAt,
    })
    expect(verified.issuedAt).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000)
    expect(expiresAt - verified.issuedAt).toBe(600_000)
  })

  it('round-trips an access token', async () => {
    const { token, expiresAt } = await mintAccessToken(
      SECRET,
      { userId: 'bob', rooms: { 'doc-1': ['room:write'], 'team-*': ['room:read'] } },
      { ttlSeconds: 60 },
    )
    const verified = await verifier.verify(token)
    expect(verified).toMatchObject({
      kind: 'access',
      userId: 'bob',
      perms: { 'doc-1': ['room:write'], 'team-*': ['room:read'] },
      expiresAt,
    })
    expect(expiresAt - verified.issuedAt).toBe(60_000)
  })

  it('treats a token without `k` as an ID token with no groups', async () => {
    const token = await signHs256({ sub: 'carol', exp: nowSeconds() + 60 })
    expect(await verifier.verify(token)).toMatchObject({ kind: 'id', userId: 'carol', groupIds: [], issuedAt: 0 })
  })

  it('refuses bad minting input with invalid_request', async () => {
    expect(await codeOf(mintIdToken(SECRET, { userId: '' }))).toBe('invalid_request')
    expect(await codeOf(mintIdToken(SECRET, { userId: 'a\nb' }))).toBe('invalid_request')
    expect(await codeOf(mintIdToken(SECRET, { userId: 'x'.repeat(257) }))).toBe('invalid_request')
    expect(await codeOf(mintIdToken(SECRET, { userId: 'a' }, { ttlSeconds: 0 }))).toBe('invalid_request')
    expect(await codeOf(mintIdToken(SECRET, { userId: 'a' }, { ttlSeconds: 1.5 }))).toBe('invalid_request')
    expect(await codeOf(mintIdToken(SECRET, { userId: 'a' }, { ttlSeconds: 86_400 * 30 + 1 }))).toBe('invalid_request')
    const rooms = { r: ['room:admin'] } as unknown as Record<string, ['room:read']>
    expect(await codeOf(mintAccessToken(SECRET, { userId: 'a', rooms }))).toBe('invalid_request')
  })

  it('refuses a token signed with another secret', async () => {
    const { token } = await mintIdToken('another-secret-of-reasonable-length!!', { userId: 'alice' })
    expect(await codeOf(verifier.verify(token))).toBe('unauthorized')
  })

  it('refuses alg: none', async () => {
    const token = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: 'alice', exp: nowSeconds() + 60 })}.`
    expect(await codeOf(verifier.verify(token))).toBe('unauthorized')
  })

  it('refuses HS384 even with the right secret (HS256 only)', async () => {
    const token = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS384' }).setExpirationTime('1m').sign(new TextEncoder().encode(SECRET))
    expect(await codeOf(verifier.verify(token))).toBe('unauthorized')
  })

  it('refuses garbage', async () => {
    expect(await codeOf(verifier.verify(''))).toBe('unauthorized')
    expect(await codeOf(verifier.verify('not.a.jwt'))).toBe('unauthorized')
    expect(await codeOf(verifier.verify('x'.repeat(100_000)))).toBe('unauthorized')
  })

  it('reports an expired token as token_expired', async () => {
    const { token } = await mintIdToken(SECRET, { userId: 'alice' }, { ttlSeconds: 60, now: Date.now() - 3_600_000 })
    expect(await codeOf(verifier.verify(token))).toBe('token_expired')
  })

  it('refuses a token that is not yet valid', async () => {
    const token = await signHs256({ sub: 'alice', nbf: nowSeconds() + 600, exp: nowSeconds() + 1200 })
    expect(await codeOf(verifier.verify(token))).toBe('unauthorized')
  })

  it('refuses a token without exp, or without sub', async () => {
    expect(await codeOf(verifier.verify(await signHs256({ sub: 'alice' })))).toBe('unauthorized')
    expect(await codeOf(verifier.verify(await signHs256({ exp: nowSeconds() + 60 })))).toBe('unauthorized')
  })

  it('refuses claims of the wrong shape', async () => {
    const exp = nowSeconds() + 60
    const bad = [
      { sub: '', exp },
      { sub: 'a\u0000b', exp },
      { sub: 'x'.repeat(257), exp },
      { sub: 42, exp },
      { k: 'acc', sub: 'a', exp },
      { k: 'acc', sub: 'a', exp, perms: { r: ['room:admin'] } },
      { k: 'acc', sub: 'a', exp, perms: { r: 'room:read' } },
      { k: 'admin', sub: 'a', exp },
      { sub: 'a', exp, groups: 'eng' },
      { sub: 'a', exp, info: 'hello' },
    ]
    for (const claims of bad) expect(await codeOf(verifier.verify(await signHs256(claims)))).toBe('unauthorized')
  })

  it('refuses an asymmetric token when no identity provider is configured', async () => {
    const { privateKey } = await generateKeyPair('ES256')
    const token = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'ES256' }).setExpirationTime('1m').sign(privateKey)
    expect(await codeOf(verifier.verify(token))).toBe('unauthorized')
  })
})

describe('an identity provider with a PEM public key', () => {
  let privateKey: CryptoKey
  let verifier: TokenVerifier

  beforeAll(async () => {
    const pair = await generateKeyPair('ES256', { extractable: true })
    privateKey = pair.privateKey
    const pem = await exportSPKI(pair.publicKey)
    verifier = new TokenVerifier({ secret: SECRET, publicKeyPem: pem, issuer: ISSUER, audience: AUDIENCE, groupsClaim: 'roles' })
  })

  const external = (claims: Record<string, unknown>, { iss = ISSUER, aud = AUDIENCE } = {}): Promise<string> =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).setIssuer(iss).setAudience(aud).setIssuedAt().setExpirationTime('5m').sign(privateKey)

  it('verifies an ES256 token and maps the groups claim', async () => {
    const verified = await verifier.verify(await external({ sub: 'dave', roles: ['eng'], groups: ['ignored'] }))
    expect(verified).toMatchObject({ kind: 'id', userId: 'dave', groupIds: ['eng'] })
  })

  it('never reads an external token as an access token', async () => {
    const verified = await verifier.verify(await external({ sub: 'dave', k: 'acc', perms: { '*': ['room:write'] } }))
    expect(verified).toMatchObject({ kind: 'id', userId: 'dave', groupIds: [] })
  })

  it('refuses a wrong issuer and a wrong audience', async () => {
    expect(await codeOf(verifier.verify(await external({ sub: 'dave' }, { iss: 'https://evil.example' })))).toBe('unauthorized')
    expect(await codeOf(verifier.verify(await external({ sub: 'dave' }, { aud: 'someone-else' })))).toBe('unauthorized')
  })

  it('refuses a token signed by another key', async () => {
    const other = await generateKeyPair('ES256')
    const token = await new SignJWT({ sub: 'dave' })
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime('5m')
      .sign(other.privateKey)
    expect(await codeOf(verifier.verify(token))).toBe('unauthorized')
  })
})

describe('key confusion', () => {
  it('refuses an HS256 token whose HMAC secret is the RSA public key PEM', async () => {
    const pair = await generateKeyPair('RS256', { extractable: true })
    const pem = await exportSPKI(pair.publicKey)
    const verifier = new TokenVerifier({ secret: SECRET, publicKeyPem: pem })
    // The attack: the public key is public, so anyone can "sign" with it as an HMAC secret.
    const forged = await signHs256({ sub: 'mallory', exp: nowSeconds() + 60 }, new TextEncoder().encode(pem))
    expect(await codeOf(verifier.verify(forged))).toBe('unauthorized')
    // While a real RS256 token from that provider passes.
    const real = await new SignJWT({ sub: 'dave' }).setProtectedHeader({ alg: 'RS256' }).setExpirationTime('1m').sign(pair.privateKey)
    expect(await verifier.verify(real)).toMatchObject({ userId: 'dave' })
  })
})

describe('an identity provider with a JWKS', () => {
  const KID = 'key-1'
  let privateKey: CryptoKey
  let jwk: JWK
  let server: Server
  let jwksUrl: string
  let requests = 0

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true })
    privateKey = pair.privateKey
    jwk = { ...(await exportJWK(pair.publicKey)), kid: KID, alg: 'RS256', use: 'sig' }
    server = createServer((_req, res) => {
      requests++
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ keys: [jwk] }))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`
  })

  afterAll(async () => {
    if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  const sign = (claims: Record<string, unknown>, kid = KID): Promise<string> =>
    new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid }).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('5m').sign(privateKey)

  const fresh = (): TokenVerifier => new TokenVerifier({ secret: SECRET, jwksUrl, issuer: ISSUER, audience: AUDIENCE })

  it('verifies a token, and a second verify of it hits neither the JWKS nor jose', async () => {
    const verifier = fresh()
    const start = requests
    const token = await sign({ sub: 'erin', groups: ['eng'] })
    const first = await verifier.verify(token)
    expect(first).toMatchObject({ kind: 'id', userId: 'erin', groupIds: ['eng'] })
    expect(requests - start).toBe(1)
    expect(await verifier.verify(token)).toBe(first)
    expect(requests - start).toBe(1)
  })

  it('refuses an unknown kid, refetching at most once per cooldown', async () => {
    const verifier = fresh()
    const start = requests
    expect(await codeOf(verifier.verify(await sign({ sub: 'erin' }, 'rotated-away')))).toBe('unauthorized')
    expect(await codeOf(verifier.verify(await sign({ sub: 'erin' }, 'another-unknown')))).toBe('unauthorized')
    expect(await codeOf(verifier.verify(await sign({ sub: 'erin' }, 'rotated-away')))).toBe('unauthorized')
    // One fetch for the first verify; the misses inside the 30 s cooldown do not refetch.
    expect(requests - start).toBe(1)
    // A known kid still verifies from the fetched set.
    expect(await verifier.verify(await sign({ sub: 'erin' }))).toMatchObject({ userId: 'erin' })
    expect(requests - start).toBe(1)
  })

  it('refuses wrong issuer and audience', async () => {
    const verifier = fresh()
    const wrongIss = await new SignJWT({ sub: 'erin' })
      .setProtectedHeader({ alg: 'RS256', kid: KID })
      .setIssuer('https://evil.example')
      .setAudience(AUDIENCE)
      .setExpirationTime('5m')
      .sign(privateKey)
    const noAud = await new SignJWT({ sub: 'erin' }).setProtectedHeader({ alg: 'RS256', kid: KID }).setIssuer(ISSUER).setExpirationTime('5m').sign(privateKey)
    expect(await codeOf(verifier.verify(wrongIss))).toBe('unauthorized')
    expect(await codeOf(verifier.verify(noAud))).toBe('unauthorized')
  })

  it('refuses when the JWKS endpoint is down', async () => {
    const down = createServer()
    await new Promise<void>((resolve) => down.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(down.address() as AddressInfo).port}/jwks`
    await new Promise<void>((resolve) => down.close(() => resolve()))
    const verifier = new TokenVerifier({ secret: SECRET, jwksUrl: url })
    expect(await codeOf(verifier.verify(await sign({ sub: 'erin' })))).toBe('unauthorized')
  })
})

describe('the verified-token cache', () => {
  it('keeps a result until the token expires, then reports token_expired', async () => {
    let clock = Date.now()
    const verifier = new TokenVerifier({ secret: SECRET, now: () => clock })
    const { token, expiresAt } = await mintIdToken(SECRET, { userId: 'alice' }, { ttlSeconds: 60, now: clock })
    const first = await verifier.verify(token)
    expect(await verifier.verify(token)).toBe(first)
    clock = expiresAt + 10_000
    expect(await codeOf(verifier.verify(token))).toBe('token_expired')
    // Dropped from the cache: a fresh verification at the same clock says the same.
    expect(await codeOf(verifier.verify(token))).toBe('token_expired')
  })

  it('evicts the oldest entry when full', async () => {
    const verifier = new TokenVerifier({ secret: SECRET, cacheSize: 2 })
    const tokens = await Promise.all(['a', 'b', 'c'].map(async (userId) => (await mintIdToken(SECRET, { userId })).token))
    const [a, b, c] = tokens as [string, string, string]
    const firstA = await verifier.verify(a)
    const firstB = await verifier.verify(b)
    await verifier.verify(c)
    expect(await verifier.verify(b)).toBe(firstB)
    const againA = await verifier.verify(a)
    expect(againA).not.toBe(firstA)
    expect(againA).toEqual(firstA)
  })

  it('does not cache refusals', async () => {
    const verifier = new TokenVerifier({ secret: SECRET })
    const token = await signHs256({ sub: 'alice', exp: nowSeconds() + 60 }, 'wrong-secret-wrong-secret-wrong-secret')
    expect(await codeOf(verifier.verify(token))).toBe('unauthorized')
    expect(await codeOf(verifier.verify(token))).toBe('unauthorized')
  })
})
