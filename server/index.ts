/** The server as a library: `createServer(options)` and the types an embedding app needs. */

export { createServer, type TandemRuntime } from './create-server.ts'
export type { ServerOptions, Limits, LogLevel } from './options.ts'
export { DEFAULT_LIMITS } from './options.ts'
export type { Actor, Authenticate, Authorize, AuthResult, ConnectionRequest, Credentials, Refusal, RoomView, Session, SessionGrant } from './session.ts'
export type { Identity, RoomAccesses } from './access.ts'
export { resolvePermissions } from './access.ts'
export type { DocumentStore, RoomRecord, RoomStore, Store, StoredDocument, WriteRecord } from './store/types.ts'
export { openLevelStore, DataDirInUseError } from './store/level-store.ts'
export type { Fanout, RoomChannel, Member, RemoteFrames } from './fanout.ts'
export { LocalFanout } from './fanout.ts'
