/**
 * The store folder's public face: the `Store` contract the server persists through, the LevelDB
 * store it ships with, and the in-memory store (tests, embedding without a disk).
 */

export type { DocumentStore, ListRoomsOptions, RoomRecord, RoomStore, Store, StoredDocument, WriteRecord } from './types.ts'
export { DataDirInUseError, LevelStore, StoreReadOnlyError, openLevelStore } from './level-store.ts'
export type { LevelStoreOptions, StoreHealth } from './level-store.ts'
export { MemoryStore, createMemoryStore } from './memory-store.ts'
