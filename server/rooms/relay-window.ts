/**
 * How long a busy room may hold its relays to merge them (broadcast-batch.ts), decided by how busy
 * the process is. While the event loop has slack, a relay goes out at the end of the turn its write
 * came in: holding it would only add latency. Once the loop is busy (its utilization, sampled every
 * 100 ms and smoothed, past `OPEN`), frames queue anyway, and merging a room's writes of a window
 * into one frame per receiver cuts the fan-out's cost (a socket write per receiver per frame): the
 * window opens, at its maximum, and closes again only once the utilization falls under `CLOSE`
 * (with the window open the process is less busy for the same load; the gap keeps it from opening
 * and closing by turns).
 *
 * Measured on bench 05 (10 rooms x 50 clients, this 2-core VM): a fixed 10 ms window cuts CPU per
 * edit from 227 to 133 µs at 3,200 edits/s and from 156 to 71 at 6,400, for a p99 of 12 to 14 ms
 * instead of 7; at 1,600/s, where the process is 45 % busy without it, it gains little and raises
 * p99 from 5 to 12 ms. A window that grew smoothly with the utilization stayed small where it
 * mattered (the saving lowers the utilization that sized it) and saved nothing at 3,200/s. With
 * these thresholds the window stays shut at 1,600/s (45 % busy) and, once open at 3,200/s, stays
 * open (53 % busy with it).
 *
 * The window is read per batch (a field), never computed per write.
 */

import { type EventLoopUtilization, performance } from 'node:perf_hooks'

/** Smoothed utilization over which the window opens. */
export const OPEN = 0.6
/** Smoothed utilization under which an open window closes. */
export const CLOSE = 0.4
const SAMPLE_MS = 100
/** Weight of the newest sample (about a half-second memory). */
const SMOOTHING = 0.3

/** Whether the window is open after a sample of smoothed utilization `elu`, given whether it was. */
export const windowOpen = (elu: number, wasOpen: boolean): boolean => (wasOpen ? elu >= CLOSE : elu > OPEN)

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
  #open = false
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
    this.#open = windowOpen(this.#elu, this.#open)
    this.ms = this.#open ? this.#maxMs : 0
  }

  close(): void {
    clearInterval(this.#timer)
  }
}
