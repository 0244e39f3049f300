/**
 * The REST API as one Fastify plugin: OpenAPI at /docs/json, the secret key on every /v1 route,
 * per-IP rate limits, and the one error handler that turns anything thrown into
 * `{ error: code, message }` with the code's HTTP status.
 */

import { createHash, timingSafeEqual } from 'node:crypto'
import rateLimit from '@fastify/rate-limit'
import swagger from '@fastify/swagger'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ERROR_TABLE, type ErrorCode, TandemError } from '../../protocol/errors.ts'
import { type RoomRoutesDeps, roomRoutes } from './rooms.ts'
import { tokenRoutes } from './tokens.ts'

export interface RestOptions extends RoomRoutesDeps {
  readonly secret: string
  /** Requests one IP may make per minute. */
  readonly requestsPerMinute: number
  /** Largest request body (PUT ydoc takes a Yjs update of up to this size). */
  readonly bodyLimit: number
}

const digest = (value: string): Buffer => createHash('sha256').update(value).digest()

/** `Authorization: Bearer <secret>`, compared in constant time. A user's token is not the secret. */
const secretCheck = (secret: string) => {
  const expected = digest(secret)
  return async (request: FastifyRequest): Promise<void> => {
    const header = request.headers.authorization
    const presented = header !== undefined && /^bearer /i.test(header) ? header.slice(7) : null
    if (presented === null || !timingSafeEqual(digest(presented), expected)) {
      throw new TandemError('unauthorized', 'send the server secret as Authorization: Bearer <secret>')
    }
  }
}

/** Longest `message` an error body carries: messages may quote input, which never comes back unbounded. */
const MAX_MESSAGE_LENGTH = 200

const bounded = (message: string): string => (message.length > MAX_MESSAGE_LENGTH ? `${message.slice(0, MAX_MESSAGE_LENGTH)}...` : message)

/** Answers `{ error, message }` with the code's status from the one error table. */
export const sendError = (reply: FastifyReply, code: ErrorCode, message: string) =>
  reply.code(ERROR_TABLE[code].status).send({ error: code, message: bounded(message) })

/** The Tandem code for an error the framework, a plugin or Node raised with an HTTP status. */
const codeForStatus = (status: number): ErrorCode => {
  switch (status) {
    case 401:
      return 'unauthorized'
    case 404:
      return 'not_found'
    case 413:
      return 'message_too_large'
    case 429:
      return 'rate_limited'
    case 503:
      return 'unavailable'
    default:
      return status < 500 ? 'invalid_request' : 'server_error'
  }
}

/**
 * The one boundary where anything thrown from a route, or by Fastify itself (a body that is not
 * JSON, a path parameter over its length, an unknown route), becomes a coded error body.
 */
export const errorHandler = (err: FastifyError | TandemError, request: FastifyRequest, reply: FastifyReply) => {
  if (err instanceof TandemError) return sendError(reply, err.code, err.message)
  if (err.validation !== undefined) return sendError(reply, 'invalid_request', err.message)
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') return sendError(reply, 'invalid_request', 'a path parameter is too long (room ids are at most 256 characters)')
  if (err.code === 'FST_ERR_BAD_URL') return sendError(reply, 'invalid_request', 'the URL does not decode')
  const code = codeForStatus(err.statusCode ?? 500)
  if (code !== 'server_error') return sendError(reply, code, err.message)
  request.log.error({ err }, 'request failed')
  return sendError(reply, 'server_error', 'internal error')
}

/** An unknown route: `not_found`, naming the route without echoing a long URL. */
export const notFoundHandler = (request: FastifyRequest, reply: FastifyReply) => sendError(reply, 'not_found', `no route ${request.method} ${request.url.split('?')[0]}`)

export async function restApi(app: FastifyInstance, options: RestOptions): Promise<void> {
  await app.register(swagger, {
    openapi: {
      info: { title: 'Tandem REST API', version: '1' },
      components: { securitySchemes: { secret: { type: 'http', scheme: 'bearer', description: 'The server secret' } } },
      security: [{ secret: [] }],
    },
  })
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: options.bodyLimit }, (_request, body, done) => done(null, body))
  app.get('/docs/json', { schema: { hide: true } }, async () => app.swagger())

  await app.register(async (api) => {
    await api.register(rateLimit, {
      max: options.requestsPerMinute,
      timeWindow: 60_000,
      errorResponseBuilder: (_request, context) =>
        Object.assign(new Error(`rate limit: ${context.max} requests a minute; retry in ${Math.ceil(context.ttl / 1000)} s`), { statusCode: 429 }),
    })
    api.addHook('onRequest', secretCheck(options.secret))
    await roomRoutes(api, options)
    await tokenRoutes(api, options)
  })
}
