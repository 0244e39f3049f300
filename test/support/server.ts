/** Starts a real Tandem server on 127.0.0.1 with a real LevelDB in a temp dir, for tests. */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, afterEach } from 'vitest'
import { createServer } from '../../server/create-server.ts'
import type { ServerOptions } from '../../server/options.ts'
import type { Authenticate } from '../../server/auth/session.ts'
import { PermissionBit } from '../../protocol/permissions.ts'
import { randomUUID } from 'node:crypto'

export const TEST_SECRET = 'test-secret-that-is-long-enough-0123456789'

export interface TestServer {
  readonly app: FastifyInstance
  readonly dataDir: string
  readonly port: number
  /** ws://127.0.0.1:PORT/v1/sync — the base URL a stock y-websocket client takes. */
  readonly syncUrl: string
  readonly httpUrl: string
  /** Closes the server gracefully (keeps the data dir). */
  stop(): Promise<void>
  /** Stops and starts a new server on the same data dir and port. */
  restart(): Promise<TestServer>
  /** Stops and removes the data dir. */
  destroy(): Promise<void>
}

/** For tests about syncing, not access: every client is an anonymous writer, whatever the ACL. */
export const openAccess: Authenticate = () => ({
  actor: { kind: 'anonymous', sessionId: randomUUID() },
  permissions: PermissionBit.read | PermissionBit.presence | PermissionBit.write,
})

export const makeDataDir = (): string => mkdtempSync(join(tmpdir(), 'tandem-test-'))

export async function startServer(options: Partial<ServerOptions> = {}, dataDir = makeDataDir(), port = 0): Promise<TestServer> {
  // `authenticate: undefined` in `options` selects the built-in token authentication.
  // A small disk reserve: hundreds of servers a run need not each write the default 16 MiB.
  const limits = { diskReserveBytes: 64 * 1024, ...options.limits }
  const app = await createServer({ secret: TEST_SECRET, logLevel: 'silent', authenticate: openAccess, ...options, limits, dataDir })
  await app.listen({ host: '127.0.0.1', port })
  const address = app.server.address()
  const bound = typeof address === 'object' && address !== null ? address.port : port
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await app.close()
  }
  return {
    app,
    dataDir,
    port: bound,
    syncUrl: `ws://127.0.0.1:${bound}/v1/sync`,
    httpUrl: `http://127.0.0.1:${bound}`,
    stop,
    async restart() {
      await stop()
      return startServer(options, dataDir, bound)
    },
    async destroy() {
      await stop()
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

/** Servers a test file starts, destroyed newest first after each test (`each`) or after the file (`all`). */
const tracked = (hook: (fn: () => Promise<void>) => void): { start: typeof startServer; track: (server: TestServer) => TestServer } => {
  const servers: TestServer[] = []
  hook(async () => {
    for (const server of servers.splice(0).reverse()) await server.destroy()
  })
  const track = (server: TestServer): TestServer => {
    servers.push(server)
    return server
  }
  return { start: async (...args) => track(await startServer(...args)), track }
}

/** `start` starts a server destroyed after the test; `track` adds one started elsewhere (a restart). */
export const serversPerTest = () => tracked(afterEach)

/** `start` starts a server destroyed once the whole file has run. */
export const serversPerFile = () => tracked(afterAll)
