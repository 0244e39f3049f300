/**
 * A scripted in-memory DocumentStore for unit tests of rooms and their logs (not the product's
 * MemoryStore, server/store/memory-store.ts): it keeps records as the
 * contract says (append adds, compact replaces a range with one record), records every call, and
 * can be told to fail appends or to hold each append until the test releases it.
 */

import type { DocumentStore, StoredDocument, WriteRecord } from '../../server/store/types.ts'

export interface AppendCall {
  readonly roomId: string
  readonly firstSeq: number
  readonly updates: readonly Uint8Array[]
  readonly writes: readonly WriteRecord[]
  /** Whether this call was made to fail. */
  readonly failed: boolean
}

export interface CompactCall {
  readonly roomId: string
  readonly fromSeq: number
  readonly throughSeq: number
  readonly merged: Uint8Array
  readonly failed: boolean
}

/** The error a failing append or compaction rejects with. */
export const storeDown = (): Error => new Error('store down (test)')

export class ScriptedStore implements DocumentStore {
  readonly #rooms = new Map<string, Map<number, Uint8Array>>()
  readonly appends: AppendCall[] = []
  readonly compacts: CompactCall[] = []
  /** Appends (and compactions) reject while these are true. */
  failAppends = false
  failCompacts = false
  /** While true, each append waits (after it is recorded) until `release()`. */
  hold = false
  readonly #held: Array<() => void> = []

  /** Appends waiting to be released. */
  get heldCount(): number {
    return this.#held.length
  }

  /** Lets the oldest held append finish; false when none is held. */
  release(): boolean {
    const next = this.#held.shift()
    next?.()
    return next !== undefined
  }

  /** Appends that succeeded (or will, once released). */
  get stored(): AppendCall[] {
    return this.appends.filter((a) => !a.failed)
  }

  /** The stored records of a room, in order (a copy). */
  records(roomId: string): Uint8Array[] {
    const room = this.#rooms.get(roomId)
    if (room === undefined) return []
    return [...room.entries()].sort(([a], [b]) => a - b).map(([, u]) => u)
  }

  async load(roomId: string): Promise<StoredDocument> {
    const room = this.#rooms.get(roomId)
    if (room === undefined || room.size === 0) return { updates: [], firstSeq: -1, lastSeq: -1 }
    const seqs = [...room.keys()].sort((a, b) => a - b)
    return { updates: seqs.map((s) => room.get(s)!), firstSeq: seqs[0]!, lastSeq: seqs.at(-1)! }
  }

  async append(roomId: string, firstSeq: number, updates: readonly Uint8Array[], writes: readonly WriteRecord[] = []): Promise<void> {
    const failed = this.failAppends
    this.appends.push({ roomId, firstSeq, updates: [...updates], writes: [...writes], failed })
    if (failed) throw storeDown()
    if (this.hold) await new Promise<void>((resolve) => this.#held.push(resolve))
    let room = this.#rooms.get(roomId)
    if (room === undefined) {
      room = new Map()
      this.#rooms.set(roomId, room)
    }
    updates.forEach((u, i) => {
      if (room.has(firstSeq + i)) throw new Error(`record ${firstSeq + i} of ${roomId} written twice`)
      room.set(firstSeq + i, u)
    })
  }

  async compact(roomId: string, fromSeq: number, throughSeq: number, merged: Uint8Array): Promise<void> {
    const failed = this.failCompacts
    this.compacts.push({ roomId, fromSeq, throughSeq, merged, failed })
    if (failed) throw storeDown()
    const room = this.#rooms.get(roomId) ?? new Map<number, Uint8Array>()
    for (const seq of [...room.keys()]) if (seq >= fromSeq && seq <= throughSeq) room.delete(seq)
    room.set(throughSeq, merged)
    this.#rooms.set(roomId, room)
  }

  async deleteDocument(roomId: string): Promise<void> {
    this.#rooms.delete(roomId)
  }

  health(): 'ok' | 'read_only' {
    return this.failAppends ? 'read_only' : 'ok'
  }

  async close(): Promise<void> {}
}
