/**
 * How long a busy room may hold its relays to merge them (broadcast-batch.ts), decided by how busy
 * the process is. While the event loop has slack, a relay goes out at the end of the turn its write
 * came in: holding it would only add latency. Once the loop is busy (its utilization, sampled at
 * most every 100 ms when a batch asks and smoothed over about 300 ms, past `OPEN`), frames queue anyway, and merging a room's writes of a window
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
 * Its size stays 10 ms. A later run on a slower VM (y-websocket-server held 1,600 edits/s on 10 x
 * 50, and Tandem's event loop was busy enough to open the window from 800/s) tried more: against
 * y-websocket-server's CPU per edit at 1,600 and 2,400/s, 10 ms gave 0.86x and 0.77x, 16 ms (one
 * frame at 60 fps) 0.62x and 0.56x, 25 ms 0.53x and 0.50x (p50 23 ms). But with 16 ms a full run's
 * p99 sat at 45 to 66 ms on that VM, over the 50 ms a step may take, on Tandem's own protocol
 * and the Hocuspocus endpoint alike; with 10 ms it was 22 to 46 ms. A larger window is
 * `--broadcast-window-ms n` for whoever trades latency for CPU.
 *
 * The window is read per batch (a field), never computed per write.
 */

import { type EventLoopUtilization, performance } from 'node:perf_hooks'

/** Smoothed utilization over which the window opens. */
export const OPEN = 0.6
/** Smoothed utilization under which an open window closes. */
export const CLOSE = 0.4
const SAMPLE_MS = 100
/** The smoothing's memory: a sample covering this long weighs about 63 %. */
const SMOOTHING_MS = 300

/** Whether the window is open after a sample of smoothed utilization `elu`, given whether it was. */
export const windowOpen = (elu: number, wasOpen: boolean): boolean => (wasOpen ? elu >= CLOSE : elu > OPEN)

export interface RelayWindow {
  /** The window in ms now for a room whose relays reach `receivers` (0: at the end of the turn). */
  ms(receivers: number): number
  /** Runs `relay` within `ms`, with every other room held meanwhile; returns what cancels it. */
  hold(relay: () => void, ms: number): () => void
  close(): void
}

/**
 * The one timer that every held room waits on. The first room held starts it; the rooms held
 * before it fires relay in the same turn, so a busy process pays one timer wakeup per window, not
 * one per room (each of bench 05's 100 rooms setting its own was up to 10,000 wakeups a second at
 * a 10 ms window, about 0.05 to 0.25 ms of CPU each on the VMs measured here). No room waits longer
 * than the window: a room held after the timer started waits less.
 */
export class HeldRelays {
  #due = new Set<() => void>()
  #timer: ReturnType<typeof setTimeout> | null = null

  hold(relay: () => void, ms: number): () => void {
    this.#due.add(relay)
    this.#timer ??= setTimeout(() => this.#run(), ms)
    return () => this.#due.delete(relay)
  }

  #run(): void {
    this.#timer = null
    const due = this.#due
    this.#due = new Set()
    for (const relay of due) relay()
  }

  /** Relays what is held now (the server is closing: nothing accepted waits on a timer). */
  close(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#run()
  }
}

/** A window that never changes: `0` (off) or a fixed number of ms, for every room. */
export const fixedWindow = (ms: number): RelayWindow => {
  const held = new HeldRelays()
  return { ms: () => ms, hold: (relay, wait) => held.hold(relay, wait), close: () => held.close() }
}

/**
 * Rooms whose relays reach fewer than this many are never held by the adaptive window: merging a
 * few updates saves a few socket writes, less than the latency it adds. On bench 05, 100 rooms x 5
 * clients (4 receivers) lost capacity with the window while each room had its own timer (p99 over
 * 50 ms from 12,000 edits/s, where it held 28,000 without); on one shared timer it held 28,000, but
 * saved only 5 to 10 % of CPU at 4,000 to 8,000/s and raised p50 to 16-18 ms at 8,000/s. 10 x 50
 * (49 receivers) gained. Between the two, a judgement.
 */
export const MIN_HELD_RECEIVERS = 16

/**
 * The adaptive window, up to `maxMs`, sampling this process's event loop when a batch asks, at
 * most every 100 ms: no timer, so an idle process is never woken for it (a timer wakeup costs
 * about 0.25 ms of CPU on the VMs measured here: a 100 ms interval alone cost 0.26 % of a core).
 */
export class AdaptiveWindow implements RelayWindow {
  readonly #maxMs: number
  readonly #held = new HeldRelays()
  #last: EventLoopUtilization = performance.eventLoopUtilization()
  #sampledAt = performance.now()
  #elu = 0
  #open = false
  #ms = 0

  constructor(maxMs: number) {
    this.#maxMs = maxMs
  }

  /** The window now (a batch's question: one clock read, a sample at most every 100 ms). */
  ms(receivers: number): number {
    if (receivers < MIN_HELD_RECEIVERS) return 0
    const now = performance.now()
    if (now - this.#sampledAt >= SAMPLE_MS) this.#sample(now)
    return this.#ms
  }

  /** The smoothed utilization as of the last sample (for metrics and tests). */
  get utilization(): number {
    return this.#elu
  }

  #sample(now: number): void {
    const elu = performance.eventLoopUtilization()
    const recent = performance.eventLoopUtilization(elu, this.#last).utilization
    // Weighted by the time the sample covers: a long quiet gap counts as long.
    const weight = 1 - Math.exp(-(now - this.#sampledAt) / SMOOTHING_MS)
    this.#last = elu
    this.#sampledAt = now
    this.#elu += weight * (recent - this.#elu)
    this.#open = windowOpen(this.#elu, this.#open)
    this.#ms = this.#open ? this.#maxMs : 0
  }

  hold(relay: () => void, ms: number): () => void {
    return this.#held.hold(relay, ms)
  }

  close(): void {
    this.#held.close()
  }
}
