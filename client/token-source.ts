/**
 * Where the provider's tokens come from (SPEC section 8): a fixed token, an async function, or an
 * auth endpoint POSTed `{ room }` that answers `{ token }` (as Liveblocks' authEndpoint). A fetched
 * token is reused until shortly before it expires; `fresh` forces a new one.
 */

import { fromBase64UrlEncoded } from 'lib0/buffer'
import { TandemError } from '../protocol/errors.ts'

export type AuthOption = string | (() => Promise<string>) | { readonly endpoint: string; readonly headers?: Record<string, string> }

/** What the token cache reads the time from: the provider's scheduler, so tests can move it. */
export interface Clock {
  /** Milliseconds since the epoch, as `Date.now()`. */
  now(): number
}

/** A token is fetched again this long before its `exp`. */
const EXPIRY_MARGIN_MS = 5_000

/** Not `fatal`: only `exp` is read, and a claim with bytes that are not UTF-8 should not hide it. */
const utf8 = new TextDecoder()

/** The `exp` of a JWT in ms, read without verifying (the server verifies), or null. */
export const tokenExpiry = (token: string): number | null => {
  const payload = token.split('.')[1]
  if (payload === undefined) return null
  try {
    // The payload is base64url of UTF-8 JSON: bytes first, then UTF-8 (atob alone gives one
    // character per byte, which garbles every claim outside ASCII, a user's name say).
    const json = JSON.parse(utf8.decode(fromBase64UrlEncoded(payload))) as { exp?: unknown }
    return typeof json.exp === 'number' ? json.exp * 1000 : null
  } catch {
    return null // not a JWT the client can read: the server decides
  }
}

export class TokenSource {
  readonly #option: AuthOption
  readonly #room: string
  readonly #fetch: typeof fetch
  readonly #clock: Clock
  #cached: { token: string; expiresAt: number | null } | null = null

  constructor(option: AuthOption, room: string, fetchImpl: typeof fetch, clock: Clock) {
    this.#option = option
    this.#room = room
    this.#fetch = fetchImpl
    this.#clock = clock
  }

  /** Whether asking again can give a different token. */
  get canRefresh(): boolean {
    return typeof this.#option !== 'string'
  }

  async get(fresh = false): Promise<string> {
    const option = this.#option
    if (typeof option === 'string') return option
    const cached = this.#cached
    if (!fresh && cached !== null && (cached.expiresAt === null || cached.expiresAt - EXPIRY_MARGIN_MS > this.#clock.now())) return cached.token
    const token = typeof option === 'function' ? await option() : await this.#fromEndpoint(option)
    if (typeof token !== 'string' || token === '') throw new TandemError('unauthorized', 'the auth option gave no token')
    this.#cached = { token, expiresAt: tokenExpiry(token) }
    return token
  }

  async #fromEndpoint(option: { readonly endpoint: string; readonly headers?: Record<string, string> }): Promise<string> {
    let response: Response
    try {
      response = await this.#fetch(option.endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...option.headers },
        body: JSON.stringify({ room: this.#room }),
      })
    } catch (err) {
      throw new TandemError('server_error', `auth endpoint unreachable: ${(err as Error).message}`, { cause: err })
    }
    if (!response.ok) {
      throw new TandemError(
        response.status === 403 ? 'forbidden' : response.status >= 500 ? 'server_error' : 'unauthorized',
        `auth endpoint answered ${response.status}`,
      )
    }
    const body = (await response.json().catch(() => null)) as { token?: unknown } | null
    if (typeof body?.token !== 'string') throw new TandemError('unauthorized', 'auth endpoint answered without { token }')
    return body.token
  }
}
