/**
 * server/cli: the command line. `main.ts` is the entry (`npm start`, the `tandem` bin): it reads the
 * configuration (config.ts: flags, else the environment, else defaults), the secret (secret.ts),
 * builds the server with `createServer` and listens. It may import anything; nothing imports it.
 */

export { ConfigError, HelpRequested, USAGE, parseConfig, type Config } from './config.ts'
export { loadOrCreateSecret, type LoadedSecret } from './secret.ts'
