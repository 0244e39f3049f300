/** The server as a library: `createServer(options)` and the types an embedding app needs. */

export { createServer, type TandemRuntime } from './create-server.ts'
export type { ServerOptions, Limits, LogLevel } from './options.ts'
export { DEFAULT_LIMITS } from './options.ts'
export type { Actor, Authenticate, AuthResult, ConnectionRequest, Credentials, Refusal, Session, SessionGrant } from './session.ts'
export type { DocumentStore, StoredDocument } from './store/types.ts'
export { openLevelStore, DataDirInUseError } from './store/level-store.ts'
export type { Fanout, RoomChannel, Member, RemoteFrames } from './fanout.ts'
export { LocalFanout } from './fanout.ts'
