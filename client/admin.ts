/**
 * `TandemAdmin`: the typed REST client an app's backend uses to manage rooms, their ACLs and
 * documents, list live sessions, revoke users, and mint tokens locally with the server secret
 * (SPEC sections 4 and 8). Runtime-neutral: global `fetch` and `Uint8Array` only, no Node imports,
 * so it bundles for browsers and edge runtimes as well as Node.
 *
 * Every failure (a coded error body, an unexpected response, a network failure) rejects with a
 * `TandemError`; callers switch on its `code`.
 */

import type { Actor } from '../protocol/actor.ts'
import { type ErrorCode, TandemError, isErrorCode } from '../protocol/errors.ts'
import { type AccessTokenInput, type IdTokenInput, type MintOptions, mintAccessToken, mintIdToken } from '../protocol/mint.ts'
import type { Permission } from '../protocol/permissions.ts'
import type { ActiveUser, CreateRoomInput, HistoryEntry, ListRoomsQuery, Metadata, Room, RoomList, RoomPatch } from '../protocol/rest.ts'
import { toBase64 } from 'lib0/buffer'

export type { Permission }
export type IdentifyUserInput = IdTokenInput
export type AuthorizeInput = AccessTokenInput

export type { Actor }

export type { ActiveUser, CreateRoomInput, HistoryEntry, Metadata, Room, RoomPatch }

/** A page of a list: `nextCursor` is the `startingAfter` of the next page, null on the last. */
export type Page<T> = Omit<RoomList, 'data'> & { readonly data: T[] }

/** `limit` 1 to 100 (the server's default is 20), `prefix`, `startingAfter`: all optional. */
export type ListRoomsOptions = Partial<ListRoomsQuery>

export interface MintedToken {
  readonly token: string
  /** When the token expires, in ms since the epoch. */
  readonly expiresAt: number
}

export interface TandemAdminOptions {
  /** The server's base URL, e.g. `http://localhost:1234`. */
  readonly url: string
  /** The server secret: sent as a bearer key and used to sign tokens. Keep it on the backend. */
  readonly secret: string
  /** A `fetch` to use instead of the global one. */
  readonly fetch?: typeof fetch
}

type Query = Record<string, string | number | undefined>

interface Request {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  readonly path: string
  readonly query?: Query
  readonly json?: unknown
  readonly binary?: Uint8Array
}

/** The coded error a failed response stands for: the server's `{ error, message }`, else one by status. */
const responseError = async (response: Response): Promise<TandemError> => {
  const text = await response.text().catch(() => '')
  let body: unknown = null
  try {
    body = JSON.parse(text)
  } catch {
    // not JSON: a proxy's page or an empty body; coded by status below.
  }
  if (typeof body === 'object' && body !== null) {
    const { error, message } = body as { error?: unknown; message?: unknown }
    if (isErrorCode(error) && typeof message === 'string') return new TandemError(error, message)
  }
  const code: ErrorCode = response.status >= 400 && response.status < 500 ? 'invalid_request' : 'server_error'
  return new TandemError(code, `HTTP ${response.status}${text === '' ? '' : `: ${text.slice(0, 200)}`}`)
}

export class TandemAdmin {
  readonly #base: string
  readonly #secret: string
  readonly #fetch: typeof fetch

  constructor(options: TandemAdminOptions) {
    if (typeof options.secret !== 'string' || options.secret === '') throw new TandemError('invalid_request', 'secret must be a non-empty string')
    this.#base = options.url.replace(/\/+$/, '')
    this.#secret = options.secret
    // Called through a wrapper: a browser's fetch throws when invoked with another `this`.
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init))
  }

  /** Sends one request; resolves with the successful response, rejects with a TandemError. */
  async #send(request: Request): Promise<Response> {
    const params = new URLSearchParams()
    for (const [key, value] of Object.entries(request.query ?? {})) if (value !== undefined) params.set(key, String(value))
    const search = params.toString() === '' ? '' : `?${params}`
    const headers: Record<string, string> = { authorization: `Bearer ${this.#secret}` }
    let body: BodyInit | undefined
    if (request.json !== undefined) {
      headers['content-type'] = 'application/json'
      body = JSON.stringify(request.json)
    } else if (request.binary !== undefined) {
      headers['content-type'] = 'application/octet-stream'
      body = new Uint8Array(request.binary) // a copy over a plain ArrayBuffer, as BodyInit requires
    }
    let response: Response
    try {
      response = await this.#fetch(`${this.#base}${request.path}${search}`, { method: request.method, headers, ...(body !== undefined && { body }) })
    } catch (err) {
      throw new TandemError('server_error', `request to ${this.#base} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }
    if (!response.ok) throw await responseError(response)
    return response
  }

  async #json<T>(request: Request): Promise<T> {
    const response = await this.#send(request)
    try {
      return (await response.json()) as T
    } catch (err) {
      throw new TandemError('server_error', `${request.method} ${request.path}: the response is not JSON`, { cause: err })
    }
  }

  #room(id: string, rest = ''): string {
    return `/v1/rooms/${encodeURIComponent(id)}${rest}`
  }

  createRoom(input: CreateRoomInput): Promise<Room> {
    return this.#json({ method: 'POST', path: '/v1/rooms', json: input })
  }

  getRoom(id: string): Promise<Room> {
    return this.#json({ method: 'GET', path: this.#room(id) })
  }

  listRooms(options: ListRoomsOptions = {}): Promise<Page<Room>> {
    const { prefix, limit, startingAfter } = options
    return this.#json({ method: 'GET', path: '/v1/rooms', query: { prefix, limit, startingAfter } })
  }

  /** Applies `patch`; the server re-evaluates the room's live sessions before it answers. */
  updateRoom(id: string, patch: RoomPatch): Promise<Room> {
    return this.#json({ method: 'POST', path: this.#room(id), json: patch })
  }

  /** Deletes the room and its document; its sessions are closed with 4404. */
  async deleteRoom(id: string): Promise<void> {
    await this.#send({ method: 'DELETE', path: this.#room(id) })
  }

  /** The document as JSON, one property per root shared type. */
  getYDoc(id: string): Promise<Record<string, unknown>> {
    return this.#json({ method: 'GET', path: this.#room(id, '/ydoc') })
  }

  /** The document as a Yjs V1 update; with `stateVector`, only what that state lacks. */
  async getYDocBinary(id: string, options: { stateVector?: Uint8Array } = {}): Promise<Uint8Array> {
    const query = options.stateVector === undefined ? {} : { stateVector: toBase64(options.stateVector) }
    const response = await this.#send({ method: 'GET', path: this.#room(id, '/ydoc-binary'), query })
    return new Uint8Array(await response.arrayBuffer())
  }

  /** Applies a Yjs V1 update as the service actor; resolves once it is stored and relayed. */
  async sendYjsUpdate(id: string, update: Uint8Array): Promise<void> {
    await this.#send({ method: 'PUT', path: this.#room(id, '/ydoc'), binary: update })
  }

  async activeUsers(id: string): Promise<ActiveUser[]> {
    return (await this.#json<{ data: ActiveUser[] }>({ method: 'GET', path: this.#room(id, '/active-users') })).data
  }

  /** The write log, newest first. */
  async history(id: string, options: { limit?: number } = {}): Promise<HistoryEntry[]> {
    const query = { limit: options.limit }
    return (await this.#json<{ data: HistoryEntry[] }>({ method: 'GET', path: this.#room(id, '/history'), query })).data
  }

  /** Closes the user's sessions (in one room, or everywhere) and refuses its older tokens. */
  revoke(input: { userId: string; roomId?: string }): Promise<{ closed: number }> {
    return this.#json({ method: 'POST', path: '/v1/revoke', json: input })
  }

  /**
   * Lifts a revocation (in one room, or the one for every room): the user's tokens issued before it,
   * and a gateway's identity headers for that user, are accepted again.
   */
  reinstate(input: { userId: string; roomId?: string }): Promise<{ reinstated: boolean }> {
    return this.#json({ method: 'POST', path: '/v1/reinstate', json: input })
  }

  /** Mints an ID token locally (no network): the rooms' ACLs decide what the user may do. */
  identifyUser(input: IdentifyUserInput, options: Pick<MintOptions, 'ttlSeconds'> = {}): Promise<MintedToken> {
    return mintIdToken(this.#secret, input, options)
  }

  /** Mints an access token locally (no network): per room id or `prefix*`, the permissions it grants. */
  authorize(input: AuthorizeInput, options: Pick<MintOptions, 'ttlSeconds'> = {}): Promise<MintedToken> {
    return mintAccessToken(this.#secret, input, options)
  }
}
