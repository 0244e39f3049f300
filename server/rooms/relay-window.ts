/**
 * How long a busy room may hold its relays to merge them (broadcast-batch.ts), decided by how busy
 * the process is. While the event loop has slack, a relay goes out at the end of the turn its write
 * came in: batching would only add latency. Once the loop is busy (its utilization, sampled every
 * 100 ms and smoothed, past `BUSY`), frames queue anyway, and merging the writes of a few ms into
 * one frame per receiver cuts the fan-out's cost (a socket write per receiver per frame); the window
 * grows with the load up to its maximum at `SATURATED`. Measured on bench 05 (10 x 50): the fixed
 * 10 ms window halves CPU per edit at 3,200 edits/s and above, but at 1,600/s, where the process is
 * 45 % busy, it raised p99 from 5 to 12 ms for no gain in capacity: hence no window below `BUSY`.
 *
 * The window is read per batch (a field), never computed per write.
 */

import { type EventLoopUtilization, performance } from 'node:perf_hooks'

/** Utilization under which relays are not held. */
export const BUSY = 0.5
/** Utilization at which the window is its maximum. */
export const SATURATED = 0.8
const SAMPLE_MS = 100
/** Weight of the newest sample (about a half-second memory). */
const SMOOTHING = 0.3

/** The window for a smoothed event-loop utilization `elu` (0 to 1), at most `maxMs`. */
export const windowFor = (elu: number, maxMs: number): number => {
  if (elu <= BUSY) return 0
  return Math.min(maxMs, Math.round(((elu - BUSY) / (SATURATED - BUSY)) * maxMs))
}

export interface RelayWindow {
  /** The current window in ms (0: relay at the end of the turn). */
  readonly ms: number
  close(): void
}

/** A window that never changes: `0` (off) or a fixed number of ms. */
export const fixedWindow = (ms: number): RelayWindow => ({ ms, close: () => {} })

/** The adaptive window, up to `maxMs`, sampling this process's event loop. */
export class AdaptiveWindow implements RelayWindow {
  readonly #maxMs: number
  readonly #timer: NodeJS.Timeout
  #last: EventLoopUtilization = performance.eventLoopUtilization()
  #elu = 0
  ms = 0

  constructor(maxMs: number) {
    this.#maxMs = maxMs
    this.#timer = setInterval(() => this.#sample(), SAMPLE_MS)
    this.#timer.unref()
  }

  /** The smoothed utilization (for metrics and tests). */
  get utilization(): number {
    return this.#elu
  }

  #sample(): void {
    const now = performance.eventLoopUtilization()
    const recent = performance.eventLoopUtilization(now, this.#last).utilization
    this.#last = now
    this.#elu += SMOOTHING * (recent - this.#elu)
    this.ms = windowFor(this.#elu, this.#maxMs)
  }

  close(): void {
    clearInterval(this.#timer)
  }
}
