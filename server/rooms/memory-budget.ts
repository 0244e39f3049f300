/**
 * The process-wide memory budget of loaded rooms (issue: memory not bounded by maxRoomBytes). Each
 * room holds an estimate of its document's heap (room.ts: its structs and their content) and takes
 * it from this budget when it loads and as it grows; an unloaded room gives it back. A load or a
 * write that does not fit is refused (`unavailable`: try again later) and the registry unloads idle
 * rooms to make space, so the heap stays well below V8's limit and one writer cannot crash the
 * process that serves every room.
 */

import { getHeapStatistics } from 'node:v8'

/** A struct (Item or GC, with its ID and content object) costs about this much heap; measured 210-480 bytes. */
export const STRUCT_HEAP_BYTES = 500

export class MemoryBudget {
  readonly limit: number
  #used = 0
  /** Called when a take fails: the registry unloads idle rooms. */
  onPressure: () => void = () => {}

  /** `limit` 0: half of V8's heap limit. */
  constructor(limit: number) {
    this.limit = limit > 0 ? limit : Math.floor(getHeapStatistics().heap_size_limit / 2)
  }

  get used(): number {
    return this.#used
  }

  /** Takes `bytes` if they fit; otherwise takes nothing, asks for space, and says false. */
  tryTake(bytes: number): boolean {
    if (this.#used + bytes > this.limit) {
      this.onPressure()
      return false
    }
    this.#used += bytes
    return true
  }

  /** Takes `bytes` whether or not they fit (writes another process already accepted). */
  take(bytes: number): void {
    this.#used += bytes
  }

  give(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes)
  }
}
