/** The server as a library: `createServer(options)` and the types an embedding app needs. */

export { createServer, type TandemRuntime } from './create-server.ts'
export type { ServerOptions, Limits, LogLevel } from './options.ts'
export { DEFAULT_LIMITS } from './options.ts'
export type { Actor, Authenticate, Authorize, AuthResult, ConnectionRequest, Credentials, Refusal, RoomView, Session, SessionGrant } from './auth/session.ts'
export type { Identity, RoomAccesses } from './auth/acl.ts'
export { resolvePermissions } from './auth/acl.ts'
export type { DocumentStore, RoomRecord, RoomStore, Store, StoredDocument, WriteRecord } from './store/types.ts'
export { openLevelStore, DataDirInUseError, StoreReadOnlyError } from './store/level-store.ts'
export { MemoryStore, createMemoryStore } from './store/memory-store.ts'
export { ConfigError } from './config-error.ts'
export type { Fanout, RoomChannel, Member, RemoteFrames } from './rooms/fanout.ts'
export { LocalFanout } from './rooms/fanout.ts'
