import { mkdtemp, readFile, rm, stat, writeFile, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ConfigError, HelpRequested, USAGE, parseConfig, type Config } from '../server/cli/config.ts'
import { LIMIT_DEFINITIONS, LIMIT_NAMES, limitEnv, limitFlag, limitsTable } from '../server/limits.ts'
import { loadOrCreateSecret } from '../server/cli/secret.ts'

const SECRET = 'a-perfectly-fine-secret-of-40-characters!'

const DEFAULTS: Config = {
  port: 1234,
  host: '127.0.0.1',
  dataDir: './data',
  secret: null,
  allowAnonymous: false,
  yWebsocketCompat: false,
  syncWrites: false,
  trustIdentityHeaders: false,
  jwksUrl: null,
  jwtPublicKey: null,
  jwtIssuer: null,
  jwtAudience: null,
  playground: false,
  logLevel: 'info',
  broadcastWindowMs: 'auto',
  storeWindowMs: null,
  limits: {},
  databaseUrl: null,
  redisUrl: null,
  redisPrefix: 'tandem:',
  redisWaitReplicas: 0,
}

/** Asserts `run` throws a one-line ConfigError naming `setting`, and returns it. */
function configError(run: () => unknown, setting: string): ConfigError {
  let caught: unknown
  try {
    run()
  } catch (err) {
    caught = err
  }
  expect(caught).toBeInstanceOf(ConfigError)
  const err = caught as ConfigError
  expect(err.setting).toBe(setting)
  expect(err.message).toContain(setting)
  expect(err.message).not.toMatch(/[\r\n]/)
  return err
}

describe('parseConfig', () => {
  it('fills in the defaults', () => {
    expect(parseConfig([], {})).toEqual(DEFAULTS)
  })

  it('reads every setting from the environment', () => {
    const config = parseConfig([], {
      PORT: '8080',
      HOST: '0.0.0.0',
      TANDEM_DATA_DIR: '/var/lib/tandem',
      TANDEM_SECRET: SECRET,
      TANDEM_ALLOW_ANONYMOUS: 'true',
      TANDEM_Y_WEBSOCKET_COMPAT: 'YES',
      TANDEM_SYNC_WRITES: '1',
      TANDEM_TRUST_IDENTITY_HEADERS: 'on',
      TANDEM_JWKS_URL: 'https://idp.example/.well-known/jwks.json',
      TANDEM_JWT_ISSUER: 'https://idp.example/',
      TANDEM_JWT_AUDIENCE: 'tandem',
      TANDEM_PLAYGROUND: 'yes',
      TANDEM_LOG_LEVEL: 'debug',
      TANDEM_BROADCAST_WINDOW_MS: '10',
      TANDEM_STORE_WINDOW_MS: '0',
    })
    expect(config).toEqual({
      port: 8080,
      host: '0.0.0.0',
      dataDir: '/var/lib/tandem',
      secret: SECRET,
      allowAnonymous: true,
      yWebsocketCompat: true,
      syncWrites: true,
      trustIdentityHeaders: true,
      jwksUrl: 'https://idp.example/.well-known/jwks.json',
      jwtPublicKey: null,
      jwtIssuer: 'https://idp.example/',
      jwtAudience: 'tandem',
      playground: true,
      logLevel: 'debug',
      broadcastWindowMs: 10,
      storeWindowMs: 0,
      limits: {},
      databaseUrl: null,
      redisUrl: null,
      redisPrefix: 'tandem:',
      redisWaitReplicas: 0,
    })
  })

  it('reads every setting from flags', () => {
    const config = parseConfig(
      [
        '--port=0',
        '--host',
        '::',
        '--data-dir',
        'd',
        `--secret=${SECRET}`,
        '--allow-anonymous',
        '--y-websocket-compat',
        '--sync-writes',
        '--trust-identity-headers',
        '--jwt-public-key',
        'keys/idp.pem',
        '--playground',
        '--log-level',
        'silent',
        '--broadcast-window-ms=1000',
        '--store-window-ms',
        '7',
      ],
      {},
    )
    expect(config).toEqual({
      port: 0,
      host: '::',
      dataDir: 'd',
      secret: SECRET,
      allowAnonymous: true,
      yWebsocketCompat: true,
      syncWrites: true,
      trustIdentityHeaders: true,
      jwksUrl: null,
      jwtPublicKey: 'keys/idp.pem',
      jwtIssuer: null,
      jwtAudience: null,
      playground: true,
      logLevel: 'silent',
      broadcastWindowMs: 1000,
      storeWindowMs: 7,
      limits: {},
      databaseUrl: null,
      redisUrl: null,
      redisPrefix: 'tandem:',
      redisWaitReplicas: 0,
    })
  })

  it('refuses a JWKS URL that is not http(s), and a JWKS URL together with a public key', () => {
    configError(() => parseConfig(['--jwks-url', 'not a url'], {}), '--jwks-url (TANDEM_JWKS_URL)')
    configError(() => parseConfig([], { TANDEM_JWKS_URL: 'file:///etc/keys' }), '--jwks-url (TANDEM_JWKS_URL)')
    configError(() => parseConfig(['--jwks-url', 'https://a/jwks', '--jwt-public-key', 'k.pem'], {}), '--jwt-public-key (TANDEM_JWT_PUBLIC_KEY)')
  })

  it('takes auto (the default) or a number of ms as the broadcast window', () => {
    expect(parseConfig([], {}).broadcastWindowMs).toBe('auto')
    expect(parseConfig(['--broadcast-window-ms', 'auto'], {}).broadcastWindowMs).toBe('auto')
    expect(parseConfig([], { TANDEM_BROADCAST_WINDOW_MS: '0' }).broadcastWindowMs).toBe(0)
    configError(() => parseConfig([], { TANDEM_STORE_WINDOW_MS: 'auto' }), '--store-window-ms (TANDEM_STORE_WINDOW_MS)')
  })

  it('refuses a broadcast or store window that is not a whole number of ms from 0 to 1000', () => {
    for (const bad of ['-1', '1001', '2.5', 'ten', '1e3']) {
      configError(() => parseConfig([`--broadcast-window-ms=${bad}`], {}), '--broadcast-window-ms (TANDEM_BROADCAST_WINDOW_MS)')
      configError(() => parseConfig([], { TANDEM_STORE_WINDOW_MS: bad }), '--store-window-ms (TANDEM_STORE_WINDOW_MS)')
    }
  })

  it('reads every limit from its flag or its variable, validated against its bounds', () => {
    for (const name of LIMIT_NAMES) {
      const { min, max } = LIMIT_DEFINITIONS[name]
      expect(parseConfig([`--${limitFlag(name)}`, String(max)], {}).limits).toEqual({ [name]: max })
      expect(parseConfig([], { [limitEnv(name)]: String(min) }).limits).toEqual({ [name]: min })
      const setting = `--${limitFlag(name)} (${limitEnv(name)})`
      for (const bad of [String(max + 1), '12abc', '-1', '1.5']) {
        if (bad === '-1' && min === 0) continue
        configError(() => parseConfig([`--${limitFlag(name)}=${bad}`], {}), setting)
      }
    }
    expect(parseConfig(['--connections-per-ip-per-minute', '5000'], { TANDEM_MAX_ROOMS: '20' }).limits).toEqual({
      connectionsPerIpPerMinute: 5000,
      maxRooms: 20,
    })
  })

  it("lists every limit in --help and in the README's table, from the one definition", async () => {
    for (const name of LIMIT_NAMES) expect(USAGE).toContain(`--${limitFlag(name)} <n>`)
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
    expect(readme).toContain(limitsTable())
  })

  it('lets a flag win over the environment', () => {
    const env = { PORT: '80', HOST: 'example.org', TANDEM_LOG_LEVEL: 'trace', TANDEM_ALLOW_ANONYMOUS: 'off' }
    const config = parseConfig(['--port', '81', '--host', 'localhost', '--log-level', 'warn', '--allow-anonymous'], env)
    expect(config).toMatchObject({ port: 81, host: 'localhost', logLevel: 'warn', allowAnonymous: true })
  })

  it('ignores an invalid environment value a flag overrides', () => {
    expect(parseConfig(['--port', '81'], { PORT: 'abc' }).port).toBe(81)
  })

  it('reads every boolean spelling, case-insensitively', () => {
    for (const yes of ['1', 'true', 'TRUE', 'yes', 'On']) {
      expect(parseConfig([], { TANDEM_SYNC_WRITES: yes }).syncWrites).toBe(true)
    }
    for (const no of ['0', 'false', 'No', 'OFF']) {
      expect(parseConfig([], { TANDEM_SYNC_WRITES: no }).syncWrites).toBe(false)
    }
  })

  it('treats an empty variable as unset', () => {
    expect(parseConfig([], { PORT: '', TANDEM_SECRET: '', TANDEM_ALLOW_ANONYMOUS: '' })).toEqual(DEFAULTS)
  })

  it('accepts the port range bounds', () => {
    expect(parseConfig(['--port', '0'], {}).port).toBe(0)
    expect(parseConfig(['--port', '65535'], {}).port).toBe(65535)
  })

  it.each(['abc', '65536', '-1', '1.5', '1e3', ' 80', '0x50', '99999999'])('refuses port %j', (value) => {
    const err = configError(() => parseConfig([], { PORT: value }), '--port (PORT)')
    expect(err.message).toBe(`invalid --port (PORT): expected an integer from 0 to 65535, got ${JSON.stringify(value)}`)
    configError(() => parseConfig([`--port=${value}`], {}), '--port (PORT)')
  })

  it('refuses an empty host or data dir', () => {
    configError(() => parseConfig(['--host='], {}), '--host (HOST)')
    configError(() => parseConfig([], { HOST: '  ' }), '--host (HOST)')
    configError(() => parseConfig(['--data-dir='], {}), '--data-dir (TANDEM_DATA_DIR)')
  })

  it.each([
    ['TANDEM_ALLOW_ANONYMOUS', '--allow-anonymous (TANDEM_ALLOW_ANONYMOUS)'],
    ['TANDEM_Y_WEBSOCKET_COMPAT', '--y-websocket-compat (TANDEM_Y_WEBSOCKET_COMPAT)'],
    ['TANDEM_SYNC_WRITES', '--sync-writes (TANDEM_SYNC_WRITES)'],
  ])('refuses a boolean %s that is not one of the spellings', (name, setting) => {
    const err = configError(() => parseConfig([], { [name]: 'maybe' }), setting)
    expect(err.message).toContain('"maybe"')
  })

  it('refuses a value given to a boolean flag', () => {
    configError(() => parseConfig(['--sync-writes=yes'], {}), '--sync-writes (TANDEM_SYNC_WRITES)')
  })

  it('refuses an unknown log level, and accepts any case', () => {
    configError(() => parseConfig([], { TANDEM_LOG_LEVEL: 'verbose' }), '--log-level (TANDEM_LOG_LEVEL)')
    expect(parseConfig(['--log-level', 'ERROR'], {}).logLevel).toBe('error')
  })

  it('refuses a string flag without its value', () => {
    configError(() => parseConfig(['--port'], {}), '--port (PORT)')
    // As strict parseArgs does, rather than take "--host" as the port.
    configError(() => parseConfig(['--port', '--host', 'x'], {}), '--port (PORT)')
  })

  it('refuses an unknown flag, naming it', () => {
    const err = configError(() => parseConfig(['--prot', '80'], {}), '--prot')
    expect(err.message).toBe('unknown option "--prot" (see --help)')
    configError(() => parseConfig(['-x'], {}), '-x')
    configError(() => parseConfig(['--bogus=value'], {}), '--bogus')
  })

  it('refuses a positional argument without echoing it', () => {
    const err = configError(() => parseConfig(['--sync-writes', SECRET], {}), 'argument 2')
    expect(err.message).not.toContain(SECRET)
  })

  it('refuses a short secret, never showing it', () => {
    const short = 'shh-this-is-31-characters-long!'
    expect(short).toHaveLength(31)
    for (const err of [
      configError(() => parseConfig([], { TANDEM_SECRET: short }), '--secret (TANDEM_SECRET)'),
      configError(() => parseConfig(['--secret', short], {}), '--secret (TANDEM_SECRET)'),
      configError(() => parseConfig([`--secret=${short}`], {}), '--secret (TANDEM_SECRET)'),
    ]) {
      expect(err.message).toContain('32')
      expect(err.message).not.toContain(short)
      expect(err.message).not.toContain(short.slice(0, 8))
    }
    expect(parseConfig([], { TANDEM_SECRET: `${short}x` }).secret).toBe(`${short}x`)
  })

  it('never shows a secret in any other error', () => {
    const env = { TANDEM_SECRET: SECRET }
    const runs = [
      () => parseConfig(['--port', 'abc'], env),
      () => parseConfig(['--nope'], env),
      () => parseConfig(['--secret', SECRET, '--port=x'], {}),
      () => parseConfig([`--secret=${SECRET}`, '--log-level', 'loud'], {}),
    ]
    for (const run of runs) {
      expect(run).toThrow(ConfigError)
      try {
        run()
      } catch (err) {
        expect(String((err as Error).message)).not.toContain(SECRET)
        expect(String((err as Error).stack)).not.toContain(SECRET)
      }
    }
  })

  it('asks for help on --help or -h, before any other check', () => {
    expect(() => parseConfig(['--help'], {})).toThrow(HelpRequested)
    expect(() => parseConfig(['-h', '--bogus'], { PORT: 'abc' })).toThrow(HelpRequested)
    expect(USAGE).toContain('--y-websocket-compat')
  })
})

describe('loadOrCreateSecret', () => {
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-secret-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('creates the data dir and a 0600 secret file, then reuses it', async () => {
    const dataDir = join(dir, 'nested', 'data')
    const first = await loadOrCreateSecret(dataDir)
    expect(first).toMatchObject({ path: join(dataDir, 'secret'), created: true, insecureMode: false })
    expect(first.secret).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect((await readFile(first.path, 'utf8')).trim()).toBe(first.secret)
    if (process.platform !== 'win32') expect((await stat(first.path)).mode & 0o777).toBe(0o600)

    const second = await loadOrCreateSecret(dataDir)
    expect(second).toEqual({ ...first, created: false })
  })

  it('agrees on one secret when several start at once', async () => {
    const results = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateSecret(dir)))
    expect(new Set(results.map((r) => r.secret)).size).toBe(1)
    expect(results.filter((r) => r.created)).toHaveLength(1)
  })

  it('reads an existing file, trimmed', async () => {
    await writeFile(join(dir, 'secret'), `  ${SECRET}\n\n`, { mode: 0o600 })
    expect(await loadOrCreateSecret(dir)).toMatchObject({ secret: SECRET, created: false, insecureMode: false })
  })

  it('rejects a file holding a short secret, naming the file', async () => {
    const path = join(dir, 'secret')
    await writeFile(path, 'too-short\n', { mode: 0o600 })
    await expect(loadOrCreateSecret(dir)).rejects.toThrow(path)
    await expect(loadOrCreateSecret(dir)).rejects.not.toThrow('too-short')
  })

  it.skipIf(process.platform === 'win32')('still uses a file others can read, flagging it', async () => {
    const path = join(dir, 'secret')
    await writeFile(path, SECRET)
    await chmod(path, 0o644)
    expect(await loadOrCreateSecret(dir)).toMatchObject({ secret: SECRET, insecureMode: true })
  })
})
