/**
 * The document store: the narrow interface every room persists through. LevelDB implements it
 * today (level-store.ts); another backend (a shared store for several processes) implements the
 * same contract and passes the same contract tests (test/store.test.ts).
 *
 * A room's document is a log of Yjs V1 updates, each under a sequence number. Appending adds a
 * record; compacting atomically replaces every record up to a sequence number with one merged
 * update stored under that same number, so loading costs about the document's size, not its
 * history. Sequence numbers are chosen by the room (it is the only writer of its log), start at 0,
 * and only grow.
 */

import type { Room } from '../../protocol/rest.ts'
import type { Actor } from '../../protocol/actor.ts'

export interface StoredDocument {
  /** The stored updates, in sequence order. */
  readonly updates: Uint8Array[]
  /** Sequence number of the first stored record, or -1 when the room has none. */
  readonly firstSeq: number
  /** Sequence number of the last stored record, or -1 when the room has none. */
  readonly lastSeq: number
}

export interface DocumentStore {
  /** Reads every stored record of a room. A room never written to loads as an empty document. */
  load(roomId: string): Promise<StoredDocument>
  /**
   * Stores `updates` as records `firstSeq`, `firstSeq + 1`, ... in one atomic batch (a group commit).
   * Resolves once LevelDB has them (in its log: survives a process crash; with `sync` on, also a
   * power loss). Rejects on a storage failure; nothing is then acknowledged. `writes` are the
   * history entries of these updates, stored in the same batch.
   */
  append(roomId: string, firstSeq: number, updates: readonly Uint8Array[], writes?: readonly WriteRecord[]): Promise<void>
  /**
   * In one atomic batch, deletes the records `fromSeq..throughSeq` and stores `merged` under
   * `throughSeq`. `merged` must contain everything those records did.
   */
  compact(roomId: string, fromSeq: number, throughSeq: number, merged: Uint8Array): Promise<void>
  /** Removes every record of a room. */
  deleteDocument(roomId: string): Promise<void>
  /** `read_only` after a write failed, until the store knows it can write again (LevelDB: reopened on a disk with room). */
  health(): 'ok' | 'read_only'
  close(): Promise<void>
}

/** One entry of a room's write history: who wrote, when, how much. */
export interface WriteRecord {
  readonly actor: Actor
  /** Milliseconds since the epoch when the batch was stored. */
  readonly at: number
  /** Write messages of this actor in the batch. */
  readonly writes: number
  /** Update bytes of this actor in the batch. */
  readonly bytes: number
  /** Yjs clientIDs whose structs the writes carried. */
  readonly clientIDs: readonly number[]
}

/** A room's access control list and metadata, set only by the backend (REST): the REST API's shape. */
export type RoomRecord = Room

export interface ListRoomsOptions {
  readonly prefix?: string
  /** Room id after which the page starts. */
  readonly startingAfter?: string
  readonly limit: number
}

/** Rooms' ACL records, write history and user revocations. */
export interface RoomStore {
  getRoom(roomId: string): Promise<RoomRecord | null>
  putRoom(record: RoomRecord): Promise<void>
  /** Deletes a room's record, document and history in one atomic batch. */
  deleteRoom(roomId: string): Promise<void>
  listRooms(options: ListRoomsOptions): Promise<RoomRecord[]>
  /** How many rooms have an id starting with `prefix`, counted up to `upTo` (a quota check). */
  countRooms(prefix: string, upTo: number): Promise<number>
  /** The newest `limit` history entries, newest first. */
  history(roomId: string, limit: number): Promise<WriteRecord[]>
  /** Refuses the user's tokens issued before `at` (in `roomId`, or everywhere when null). */
  revoke(userId: string, roomId: string | null, at: number): Promise<void>
  /** The latest revocation of a user that applies to `roomId`, or 0 when none. */
  revokedAt(userId: string, roomId: string): Promise<number>
  /** Lifts the user's revocation (in `roomId`, or the one for every room when null); says whether there was one. */
  reinstate(userId: string, roomId: string | null): Promise<boolean>
}

/** Everything the server keeps: one LevelDB implements both. */
export interface Store extends DocumentStore, RoomStore {}
