/**
 * The playground (`npm run playground`, `--playground`): a small web app served by the server itself
 * at /playground, where one page opens a room as three users with different access, and an admin
 * panel changes their access live. Off by default.
 *
 * Security: this is a local demo. Its admin bridge (/playground/api/*) holds the server secret and
 * lets anyone who can reach it change ACLs, revoke users and mint tokens. The secret itself never
 * leaves the server, and the bridge only touches rooms whose id starts with `playground`, but a
 * server exposed to others must not run with it.
 *
 * The bridge calls the server's own REST routes with `app.inject` and the secret, so the real
 * routes, their validation and the live re-evaluation of sessions are what the page exercises. The
 * page script (playground/app.ts, CodeMirror 6 + y-codemirror.next + TandemProvider) is bundled with
 * esbuild, a devDependency, when the plugin starts: the playground runs from a source checkout.
 */

import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { TandemError, isErrorCode } from '../protocol/errors.ts'
import { mintIdToken } from '../protocol/mint.ts'
import type { Permission } from '../protocol/permissions.ts'

export interface PlaygroundOptions {
  /** The server secret: used for the REST calls and to mint tokens, never sent to the browser. */
  readonly secret: string
}

export type PlaygroundAccess = 'write' | 'presence' | 'read' | 'none'

export const PLAYGROUND_ACCESS: Readonly<Record<PlaygroundAccess, Permission[]>> = {
  write: ['room:write'],
  presence: ['room:presence:write'],
  read: ['room:read'],
  none: [],
}

/** The prefix of every room the bridge may touch: it cannot change a real room's ACL. */
export const PLAYGROUND_ROOM_PREFIX = 'playground'

const APP_ENTRY = fileURLToPath(new URL('../playground/app.ts', import.meta.url))
const HTML_FILE = fileURLToPath(new URL('../playground/index.html', import.meta.url))

const DEMO_COLORS: Readonly<Record<string, string>> = { ada: '#d9480f', bob: '#1c7ed6', cyd: '#2b8a3e' }
const COLORS = ['#9c36b5', '#e67700', '#0c8599', '#c2255c']

/** Name and cursor colour a user shows to others: "ada" → Ada; other ids get a colour from a hash. */
export const userInfoOf = (user: string): { name: string; color: string } => {
  let hash = 0
  for (const char of user) hash = (hash * 31 + char.charCodeAt(0)) >>> 0
  return { name: user.charAt(0).toUpperCase() + user.slice(1), color: DEMO_COLORS[user] ?? COLORS[hash % COLORS.length]! }
}

const room = { type: 'string', pattern: `^${PLAYGROUND_ROOM_PREFIX}[A-Za-z0-9._-]{0,48}$` } as const
const user = { type: 'string', pattern: '^[a-z][a-z0-9-]{0,31}$' } as const
const access = (values: PlaygroundAccess[]) => ({ type: 'string', enum: values }) as const
const body = (properties: Record<string, unknown>) => ({ type: 'object', properties, required: Object.keys(properties), additionalProperties: false }) as const
const roomParams = body({ room })

async function bundleApp(): Promise<string> {
  if (!existsSync(APP_ENTRY)) throw new TandemError('server_error', `the playground runs from a source checkout (${APP_ENTRY} is missing)`)
  // A devDependency, loaded only when the playground is on.
  const { build } = await import('esbuild')
  const result = await build({
    entryPoints: [APP_ENTRY],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    minify: true,
    write: false,
    logLevel: 'silent',
  })
  return result.outputFiles[0]!.text
}

export async function playground(app: FastifyInstance, options: PlaygroundOptions): Promise<void> {
  const [script, html] = await Promise.all([bundleApp(), Promise.resolve(readFileSync(HTML_FILE, 'utf8'))])
  const authorization = `Bearer ${options.secret}`

  /** One call to the server's own REST API; a coded error answer is rethrown as that error. */
  const rest = async (method: 'GET' | 'POST', url: string, payload?: object): Promise<unknown> => {
    const response = await app.inject({ method, url, headers: { authorization }, ...(payload !== undefined && { payload }) })
    const json: unknown = response.json()
    if (response.statusCode >= 400) {
      const { error, message } = (json ?? {}) as { error?: unknown; message?: unknown }
      throw new TandemError(
        isErrorCode(error) ? error : 'server_error',
        typeof message === 'string' ? message : `REST ${method} ${url}: ${response.statusCode}`,
      )
    }
    return json
  }
  const roomUrl = (id: string): string => `/v1/rooms/${encodeURIComponent(id)}`
  const token = async (userId: string): Promise<string> => (await mintIdToken(options.secret, { userId, userInfo: userInfoOf(userId) })).token

  const setAccess = async (roomId: string, userId: string, level: PlaygroundAccess): Promise<void> => {
    await rest('POST', roomUrl(roomId), { usersAccesses: { [userId]: PLAYGROUND_ACCESS[level] } })
  }

  app.get('/playground', { schema: { hide: true } }, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(html),
  )
  app.get('/playground/app.js', { schema: { hide: true } }, async (_request, reply) =>
    reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-store').send(script),
  )

  app.post<{ Body: { room: string; user: string; access: Exclude<PlaygroundAccess, 'none'> } }>(
    '/playground/api/session',
    { schema: { hide: true, body: body({ room, user, access: access(['write', 'presence', 'read']) }) } },
    async (request) => {
      const { room: roomId, user: userId, access: level } = request.body
      try {
        await rest('POST', '/v1/rooms', { id: roomId, defaultAccesses: [], usersAccesses: { [userId]: PLAYGROUND_ACCESS[level] } })
      } catch (err) {
        // Another pane created it first (the three join at once): set this user's entry instead.
        if (!(err instanceof TandemError && err.code === 'room_exists')) throw err
        await setAccess(roomId, userId, level)
      }
      return { token: await token(userId), info: userInfoOf(userId) }
    },
  )

  app.post<{ Body: { user: string } }>('/playground/api/token', { schema: { hide: true, body: body({ user }) } }, async (request) => ({
    token: await token(request.body.user),
  }))

  app.post<{ Body: { room: string; user: string; access: PlaygroundAccess } }>(
    '/playground/api/access',
    { schema: { hide: true, body: body({ room, user, access: access(['write', 'presence', 'read', 'none']) }) } },
    async (request) => {
      await setAccess(request.body.room, request.body.user, request.body.access)
      return { ok: true }
    },
  )

  app.post<{ Body: { room: string; user: string } }>('/playground/api/revoke', { schema: { hide: true, body: body({ room, user }) } }, async (request) =>
    rest('POST', '/v1/revoke', { userId: request.body.user, roomId: request.body.room }),
  )

  app.post<{ Body: { room: string; user: string } }>('/playground/api/reinstate', { schema: { hide: true, body: body({ room, user }) } }, async (request) =>
    rest('POST', '/v1/reinstate', { userId: request.body.user, roomId: request.body.room }),
  )

  app.get('/playground/api/rooms', { schema: { hide: true } }, async () => rest('GET', `/v1/rooms?prefix=${PLAYGROUND_ROOM_PREFIX}&limit=100`))

  app.get<{ Params: { room: string } }>('/playground/api/rooms/:room', { schema: { hide: true, params: roomParams } }, async (request) =>
    rest('GET', roomUrl(request.params.room)),
  )

  app.get<{ Params: { room: string } }>('/playground/api/rooms/:room/active-users', { schema: { hide: true, params: roomParams } }, async (request) =>
    rest('GET', `${roomUrl(request.params.room)}/active-users`),
  )

  app.get<{ Params: { room: string } }>('/playground/api/rooms/:room/history', { schema: { hide: true, params: roomParams } }, async (request) =>
    rest('GET', `${roomUrl(request.params.room)}/history?limit=10`),
  )
}
