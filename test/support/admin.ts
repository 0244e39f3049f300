/**
 * `TandemAdmin`, the backends' typed client, talking to a test server through `app.inject` (no
 * port, no socket): the tests' REST helpers are built on it, so they use the shapes users do.
 */

import type { FastifyInstance } from 'fastify'
import { TandemAdmin } from '../../client/admin.ts'
import { TEST_SECRET } from './server.ts'

/** A `fetch` that hands each request to the app's `inject`. */
export const injectFetch = (app: FastifyInstance): typeof fetch =>
  (async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url)
    const body = init.body
    const headers: Record<string, string> = {}
    new Headers(init.headers).forEach((value, name) => {
      headers[name] = value
    })
    const res = await app.inject({
      method: (init.method ?? 'GET') as 'GET',
      url: url.pathname + url.search,
      headers,
      ...(body != null && { payload: body instanceof Uint8Array ? Buffer.from(body) : (body as string) }),
    })
    return new Response(res.statusCode === 204 ? null : new Uint8Array(res.rawPayload), {
      status: res.statusCode,
      headers: res.headers as Record<string, string>,
    })
  }) as typeof fetch

const admins = new WeakMap<FastifyInstance, TandemAdmin>()

/** The admin client of a test server, over inject, with the test secret. */
export const adminOf = (app: FastifyInstance): TandemAdmin => {
  let admin = admins.get(app)
  if (admin === undefined) {
    admin = new TandemAdmin({ url: 'http://tandem.test', secret: TEST_SECRET, fetch: injectFetch(app) })
    admins.set(app, admin)
  }
  return admin
}
