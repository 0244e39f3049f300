/**
 * The updates a room's log holds until its next append, copied into one growing buffer.
 *
 * A store window keeps a busy room's writes for up to its length (500 ms by default): longer than
 * V8's young generation lives at a few thousand edits a second. Kept as they arrive, each update is
 * a view into the WebSocket message it came in (a Uint8Array, a Buffer, their ArrayBuffer); those
 * outlive a scavenge, are copied, promoted, and left for a full GC. Copied here, a window's updates
 * are one buffer and an array of offsets (with the window waited out on a timer, room-log.ts: on a
 * 100-room probe at 6,000 edits/s, 1-3 full GCs in 8 s instead of 2-5, p99 6.1-7.9 ms instead of
 * 7.5-16).
 */

const INITIAL_BYTES = 256

export class PendingUpdates {
  #bytes: Uint8Array | null = null
  #length = 0
  /** Where each update ends in `#bytes`. */
  #ends: number[] = []

  push(update: Uint8Array): void {
    const needed = this.#length + update.length
    if (this.#bytes === null || needed > this.#bytes.length) {
      const grown = new Uint8Array(Math.max(INITIAL_BYTES, needed, 2 * (this.#bytes?.length ?? 0)))
      if (this.#bytes !== null) grown.set(this.#bytes.subarray(0, this.#length))
      this.#bytes = grown
    }
    this.#bytes.set(update, this.#length)
    this.#length = needed
    this.#ends.push(needed)
  }

  /** The updates held, in order, and nothing held any more (the buffer is not reused: they stay valid). */
  take(): Uint8Array[] {
    const bytes = this.#bytes
    const updates: Uint8Array[] = []
    let start = 0
    for (const end of this.#ends) {
      updates.push(bytes!.subarray(start, end))
      start = end
    }
    this.clear()
    return updates
  }

  clear(): void {
    this.#bytes = null
    this.#length = 0
    this.#ends = []
  }
}
