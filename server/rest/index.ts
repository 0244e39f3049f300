/**
 * The REST API as one Fastify plugin: OpenAPI at /docs/json, the secret key on every /v1 route,
 * and per-IP rate limits. Errors become `{ error, message }` in ../error-reply.ts.
 */

import { createHash, timingSafeEqual } from 'node:crypto'
import rateLimit from '@fastify/rate-limit'
import swagger from '@fastify/swagger'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { TandemError } from '../../protocol/errors.ts'
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
