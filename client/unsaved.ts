/**
 * Counts local changes the server has not yet acknowledged as stored. The server acknowledges writes
 * by count (`saved`), per connection; each write the provider sends covers some local changes (an
 * update: one; a sync step 2: all not yet sent). When the connection drops, what was sent but not
 * acknowledged counts as unsent again: the next sync step 2 carries it.
 */

export class UnsavedChanges {
  #unsent = 0
  #sent = 0
  #inflight: { write: number; changes: number }[] = []

  get count(): number {
    let n = this.#unsent
    for (const w of this.#inflight) n += w.changes
    return n
  }

  /** A local change was made. */
  local(): void {
    this.#unsent++
  }

  /** One local change went out as an update message. */
  sentUpdate(): void {
    this.#sent++
    const changes = this.#unsent > 0 ? 1 : 0
    this.#unsent -= changes
    this.#inflight.push({ write: this.#sent, changes })
  }

  /** A sync step 2 went out: it carries every change not sent yet. */
  sentStep2(): void {
    this.#sent++
    this.#inflight.push({ write: this.#sent, changes: this.#unsent })
    this.#unsent = 0
  }

  /** The server stored this connection's first `count` writes. */
  saved(count: number): void {
    while (this.#inflight.length > 0 && this.#inflight[0]!.write <= count) this.#inflight.shift()
  }

  /**
   * The session lost write: the server may refuse what is in flight (it still counts it), so those
   * changes count as unsent again; the sync step 2 sent once write is back carries them.
   */
  writeLost(): void {
    for (const w of this.#inflight) {
      this.#unsent += w.changes
      w.changes = 0
    }
  }

  /** The connection dropped: writes not acknowledged must go again. */
  disconnected(): void {
    for (const w of this.#inflight) this.#unsent += w.changes
    this.#inflight = []
    this.#sent = 0
  }
}
