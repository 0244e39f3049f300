/**
 * The REST API as a backend uses it, for tests: raw requests that carry the server secret (through
 * `app.inject`, no port; for what TandemAdmin would refuse to send), room creation through
 * TandemAdmin (support/admin.ts), and ID tokens minted over `POST /v1/identify-user`.
 */

import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { CreateRoomInput } from '../../protocol/rest.ts'
import { adminOf } from './admin.ts'
import { TEST_SECRET } from './server.ts'

export const SECRET_HEADERS = { authorization: `Bearer ${TEST_SECRET}` } as const

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE'

export interface RestRequest {
  /** A JSON value, or raw bytes / text sent as is (set `content-type` in `headers`). */
  readonly body?: unknown
  readonly headers?: Record<string, string>
}

/** One request with the server secret, unless `headers.authorization` overrides it. */
export const rest = (app: FastifyInstance, method: Method, url: string, request: RestRequest = {}): Promise<LightMyRequestResponse> =>
  app.inject({
    method,
    url,
    headers: { ...SECRET_HEADERS, ...request.headers },
    ...(request.body !== undefined && { payload: request.body as string | Buffer | object }),
  })

/** The `error` code of an error response. */
export const codeOf = (res: LightMyRequestResponse): unknown => (res.json() as { error?: unknown }).error

/** Creates a room through TandemAdmin (over inject); rejects with the server's coded error. */
export async function createRoom(app: FastifyInstance | { readonly app: FastifyInstance }, room: CreateRoomInput): Promise<void> {
  await adminOf('app' in app ? app.app : app).createRoom(room)
}

export interface IdentifyInput {
  readonly userId: string
  readonly groupIds?: string[]
  readonly userInfo?: Record<string, unknown>
  readonly sessionId?: string
  readonly tenantId?: string
  readonly ttlSeconds?: number
}

/** An ID token minted by the server, as a backend in another language would get one. */
export async function identify(app: FastifyInstance, input: IdentifyInput): Promise<string> {
  const res = await rest(app, 'POST', '/v1/identify-user', { body: input })
  if (res.statusCode !== 200) throw new Error(`identify-user ${input.userId}: ${res.statusCode} ${res.body}`)
  return (res.json() as { token: string }).token
}
