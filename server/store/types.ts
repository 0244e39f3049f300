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
   * power loss). Rejects on a storage failure; nothing is then acknowledged.
   */
  append(roomId: string, firstSeq: number, updates: readonly Uint8Array[]): Promise<void>
  /**
   * In one atomic batch, deletes the records `fromSeq..throughSeq` and stores `merged` under
   * `throughSeq`. `merged` must contain everything those records did.
   */
  compact(roomId: string, fromSeq: number, throughSeq: number, merged: Uint8Array): Promise<void>
  /** Removes every record of a room. */
  deleteDocument(roomId: string): Promise<void>
  /** Number of stored records of a room (for tests and operations, not the hot path). */
  countRecords(roomId: string): Promise<number>
  close(): Promise<void>
}
