/**
 * A store whose disk can fail, for tests: a real LevelStore (in a temp dir) behind the `Store`
 * interface, where `append`, `compact` or `load` can be told to throw what a full or read-only disk
 * makes LevelDB throw, until told to recover. It counts every call and every failure, and emits
 * `call` after each one, so tests wait on events, not sleeps.
 */

import { EventEmitter } from 'node:events'
import { openLevelStore, type LevelStore } from '../../server/store/level-store.ts'
import type { ListRoomsOptions, RoomRecord, Store, StoredDocument, WriteRecord } from '../../server/store/types.ts'
import { makeDataDir } from './server.ts'

export type FaultyOperation = 'append' | 'compact' | 'load'

/** What LevelDB reports when the disk is full. */
export const diskFull = (): Error => new Error('IO error: No space left on device')

interface FaultyEvents {
  /** `operation` was called; `failed` says whether it was made to throw. */
  call: [operation: FaultyOperation, failed: boolean]
}

export class FaultyStore implements Store {
  /** Calls of each operation, failed ones included. */
  readonly calls: Record<FaultyOperation, number> = { append: 0, compact: 0, load: 0 }
  /** Calls that were made to fail. */
  readonly failures: Record<FaultyOperation, number> = { append: 0, compact: 0, load: 0 }
  readonly events = new EventEmitter<FaultyEvents>()
  readonly #failing = new Set<FaultyOperation>()

  constructor(
    /** The real store underneath (for reads a test makes behind the server's back). */
    readonly inner: LevelStore,
    /** Its LevelDB directory. */
    readonly dir: string,
  ) {}

  /** Makes every later call of `operation` throw until `recover(operation)`. */
  fail(...operations: FaultyOperation[]): void {
    for (const op of operations) this.#failing.add(op)
  }

  recover(...operations: FaultyOperation[]): void {
    for (const op of operations.length > 0 ? operations : (['append', 'compact', 'load'] as const)) this.#failing.delete(op)
  }

  async #run<T>(operation: FaultyOperation, run: () => Promise<T>): Promise<T> {
    this.calls[operation]++
    const failed = this.#failing.has(operation)
    if (failed) this.failures[operation]++
    try {
      if (failed) throw diskFull()
      return await run()
    } finally {
      this.events.emit('call', operation, failed)
    }
  }

  load(roomId: string): Promise<StoredDocument> {
    return this.#run('load', () => this.inner.load(roomId))
  }

  append(roomId: string, firstSeq: number, updates: readonly Uint8Array[], writes?: readonly WriteRecord[]): Promise<void> {
    return this.#run('append', () => this.inner.append(roomId, firstSeq, updates, writes))
  }

  compact(roomId: string, fromSeq: number, throughSeq: number, merged: Uint8Array): Promise<void> {
    return this.#run('compact', () => this.inner.compact(roomId, fromSeq, throughSeq, merged))
  }

  deleteDocument(roomId: string): Promise<void> {
    return this.inner.deleteDocument(roomId)
  }

  getRoom(roomId: string): Promise<RoomRecord | null> {
    return this.inner.getRoom(roomId)
  }

  putRoom(record: RoomRecord): Promise<void> {
    return this.inner.putRoom(record)
  }

  deleteRoom(roomId: string): Promise<void> {
    return this.inner.deleteRoom(roomId)
  }

  listRooms(options: ListRoomsOptions): Promise<RoomRecord[]> {
    return this.inner.listRooms(options)
  }

  history(roomId: string, limit: number): Promise<WriteRecord[]> {
    return this.inner.history(roomId, limit)
  }

  revoke(userId: string, roomId: string | null, at: number): Promise<void> {
    return this.inner.revoke(userId, roomId, at)
  }

  revokedAt(userId: string, roomId: string): Promise<number> {
    return this.inner.revokedAt(userId, roomId)
  }

  reinstate(userId: string, roomId: string | null): Promise<boolean> {
    return this.inner.reinstate(userId, roomId)
  }

  health(): 'ok' | 'read_only' {
    return this.inner.health()
  }

  countRooms(prefix: string, upTo: number): Promise<number> {
    return this.inner.countRooms(prefix, upTo)
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}

/** A FaultyStore over a LevelStore in `dir` (a new temp dir by default), healthy until told otherwise. */
export async function openFaultyStore(dir = makeDataDir()): Promise<FaultyStore> {
  return new FaultyStore(await openLevelStore(dir), dir)
}
