/**
 * A clock and timers that move only when a test says so (room-log.ts's `LogClock`): `advance(ms)`
 * runs every timer that falls due, in order, letting the promises each one starts settle before
 * the next, so a test steps through backoffs and windows without real waiting.
 */

import type { LogClock } from '../../server/rooms/room-log.ts'

/** Lets every queued promise reaction run (one event-loop turn: no timer, no sleep). */
export const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

interface Timer {
  readonly id: number
  readonly at: number
  readonly ms: number
  readonly fn: () => void
}

export class FakeClock implements LogClock {
  /** The monotonic time (ms); the wall clock is this plus `wallOffset`. */
  #t: number
  readonly wallOffset: number
  #timers: Timer[] = []
  #nextId = 1
  /** Reads of each clock, to check how often the code under test asks. */
  nowReads = 0
  wallReads = 0
  /** The delay of every timer set, in order. */
  readonly delays: number[] = []

  constructor(start = 1_000, wallOffset = 1_700_000_000_000) {
    this.#t = start
    this.wallOffset = wallOffset
  }

  /** The time, without counting a read. */
  get time(): number {
    return this.#t
  }

  now(): number {
    this.nowReads++
    return this.#t
  }

  wallNow(): number {
    this.wallReads++
    return this.#t + this.wallOffset
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const timer = { id: this.#nextId++, at: this.#t + Math.max(0, ms), ms, fn }
    this.#timers.push(timer)
    this.delays.push(ms)
    return timer.id
  }

  clearTimeout(handle: unknown): void {
    this.#timers = this.#timers.filter((t) => t.id !== handle)
  }

  /** Timers set and not yet run or cleared. */
  get pending(): number {
    return this.#timers.length
  }

  /** Moves time on by `ms`, running (and settling after) each timer due by then, earliest first. */
  async advance(ms: number): Promise<void> {
    const target = this.#t + ms
    await settle()
    for (;;) {
      let next: Timer | undefined
      for (const t of this.#timers) if (t.at <= target && (next === undefined || t.at < next.at)) next = t
      if (next === undefined) break
      this.#timers = this.#timers.filter((t) => t !== next)
      this.#t = next.at
      next.fn()
      await settle()
    }
    this.#t = target
    await settle()
  }

  /** Runs the earliest pending timer (time moves to it); false when none is pending. */
  async runNext(): Promise<boolean> {
    await settle()
    if (this.#timers.length === 0) return false
    const next = this.#timers.reduce((a, b) => (b.at < a.at ? b : a))
    await this.advance(next.at - this.#t)
    return true
  }
}
