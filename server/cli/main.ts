/**
 * The command line: reads the configuration, builds the server with `createServer`, listens, and
 * shuts down gracefully on SIGTERM or SIGINT. Every refusal is one line on stderr and exit code 1.
 */

import './v8-tuning.ts'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { ConfigError, HelpRequested, USAGE, parseConfig, type Config } from './config.ts'
import { createServer } from '../create-server.ts'
import { loadOrCreateSecret } from './secret.ts'

function fail(message: string): never {
  process.stderr.write(`tandem: ${message.replace(/\s*\n\s*/g, ' ')}\n`)
  process.exit(1)
}

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err))

let config: Config
try {
  config = parseConfig(process.argv.slice(2), process.env)
} catch (err) {
  if (err instanceof HelpRequested) {
    process.stdout.write(USAGE)
    process.exit(0)
  }
  if (err instanceof ConfigError) fail(err.message)
  throw err
}

const dataDir = resolve(config.dataDir)
let secret = config.secret
// Several processes must share one secret: a generated one would be each process's own.
if (secret === null && config.redisUrl !== null) fail('set --secret (TANDEM_SECRET) in the distributed mode: every process must share it')
if (secret === null) {
  const loaded = await loadOrCreateSecret(dataDir).catch((err: unknown) => fail(messageOf(err)))
  secret = loaded.secret
  console.log(`tandem: secret kept in ${loaded.path}`)
  if (loaded.insecureMode) {
    process.stderr.write(`tandem: warning: ${loaded.path} is readable by other users (chmod 600 it)\n`)
  }
}

/** A PEM given as a file path is read here; the server takes PEM text. */
const readPem = (value: string | null): string | undefined => {
  if (value === null) return undefined
  if (value.includes('-----BEGIN')) return value
  try {
    return readFileSync(value, 'utf8')
  } catch (err) {
    return fail(`invalid --jwt-public-key (TANDEM_JWT_PUBLIC_KEY): not PEM text, and not a readable file (${messageOf(err)})`)
  }
}

const {
  allowAnonymous,
  yWebsocketCompat,
  syncWrites,
  trustIdentityHeaders,
  logLevel,
  playground,
  broadcastWindowMs,
  storeWindowMs,
  limits,
  redisPrefix,
  redisWaitReplicas,
} = config
const engines = {
  ...(config.databaseUrl !== null && { databaseUrl: config.databaseUrl }),
  ...(config.redisUrl !== null && { redisUrl: config.redisUrl, redisPrefix, redisWaitReplicas }),
}
const jwt = {
  ...(config.jwksUrl !== null && { jwksUrl: config.jwksUrl }),
  ...(config.jwtPublicKey !== null && { publicKeyPem: readPem(config.jwtPublicKey) }),
  ...(config.jwtIssuer !== null && { issuer: config.jwtIssuer }),
  ...(config.jwtAudience !== null && { audience: config.jwtAudience }),
}
const app = await createServer({
  dataDir,
  secret,
  allowAnonymous,
  yWebsocketCompat,
  syncWrites,
  trustIdentityHeaders,
  jwt,
  logLevel,
  playground,
  broadcastWindowMs,
  ...(storeWindowMs !== null && { storeWindowMs }),
  limits,
  ...engines,
}).catch((err: unknown) => {
  // Misconfiguration and start-up refusals (a data dir in use, of another schema): one line.
  if (err instanceof ConfigError) fail(err.message)
  throw err
})

let closing = false
const shutdown = (): void => {
  if (closing) process.exit(1) // a second signal: stop waiting
  closing = true
  app.close().then(
    () => process.exit(0),
    (err: unknown) => fail(`shutdown failed: ${messageOf(err)}`),
  )
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)

try {
  await app.listen({ port: config.port, host: config.host })
} catch (err) {
  await app.close()
  fail(`cannot listen on ${config.host}:${config.port}: ${messageOf(err)}`)
}

const address = app.server.address()
const port = typeof address === 'object' && address !== null ? address.port : config.port
const origin = `${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`
console.log(`tandem: listening on http://${origin} (ws://${origin}/v1/sync/:roomId), data in ${dataDir}`)
if (playground) console.log(`tandem: playground at http://${origin}/playground (a local demo: anyone who reaches it can change ACLs)`)
