/**
 * The updates a room relays, batched: writes waiting to be relayed are merged into one update,
 * encoded once into one frame (a lone update goes out in the frame it arrived in, byte for byte),
 * and handed on. A quiet room relays at the end of the turn a write came in; with a window, a busy
 * one relays at most once per `windowMs` (a leading-edge throttle): the first write after a pause
 * goes out at once, later ones wait at most the window and share one frame per receiver, so the
 * cost of a fan-out (a socket write per receiver) is paid per window, not per keystroke. The window
 * is the process's (relay-window.ts: by default it opens only while the event loop is busy, and
 * only for rooms with many receivers), read once per batch.
 */

import * as Y from 'yjs'
import { encodeFrame, writeUpdate } from '../../protocol/messages.ts'
import { MAX_MERGE } from './merge.ts'
import type { RelayWindow } from './relay-window.ts'

export class BroadcastBatch<O> {
  readonly #window: RelayWindow
  /** Receives each batch's frame and its single origin (null when several wrote: all receive it). */
  readonly #relay: (frame: Uint8Array, origin: O | null) => void
  #updates: Uint8Array[] = []
  #origin: O | null = null
  /** The frame the batch's only update arrived in, relayed as is (no re-encoding). */
  #frame: Uint8Array | null = null
  /** Cancels the scheduled relay (null: none scheduled). */
  #cancel: (() => void) | null = null
  /** When the last batch was relayed (performance.now(); read once per batch, not per write). */
  #lastFlush = -Infinity

  /** How many receive a relay (the room's fan-out), which the window may depend on. */
  readonly #receivers: () => number

  constructor(window: RelayWindow, relay: (frame: Uint8Array, origin: O | null) => void, receivers: () => number = () => 0) {
    this.#window = window
    this.#receivers = receivers
    this.#relay = relay
  }

  /** Adds an applied update by `origin`; `frame`, when given, is the sync-update frame it came in. */
  add(update: Uint8Array, origin: O, frame: Uint8Array | null): void {
    if (this.#updates.length === 0) this.#origin = origin
    else if (this.#origin !== origin) this.#origin = null
    this.#frame = this.#updates.length === 0 ? frame : null
    this.#updates.push(update)
    if (this.#updates.length >= MAX_MERGE) this.flush()
    else if (this.#cancel === null) this.#schedule()
  }

  readonly #flushHeld = (): void => this.flush()

  /** Relays the waiting updates now: merged into one update, encoded once for all. */
  flush(): void {
    this.#clearTimer()
    const updates = this.#updates
    if (updates.length === 0) return
    if (this.#window.ms(this.#receivers()) > 0) this.#lastFlush = performance.now()
    const origin = this.#origin
    const received = this.#frame
    this.#updates = []
    this.#origin = null
    this.#frame = null
    this.#relay(received ?? encodeFrame(writeUpdate, updates.length === 1 ? updates[0]! : Y.mergeUpdates(updates)), origin)
  }

  /** Forgets the waiting updates (the room is being deleted). */
  discard(): void {
    this.#clearTimer()
    this.#updates = []
    this.#origin = null
    this.#frame = null
  }

  /** The first write of a batch: relay it at the end of this turn, or when the window is over. */
  #schedule(): void {
    const windowMs = this.#window.ms(this.#receivers())
    const wait = windowMs > 0 ? this.#lastFlush + windowMs - performance.now() : 0
    if (wait > 0) {
      this.#cancel = this.#window.hold(this.#flushHeld, wait)
    } else {
      const immediate = setImmediate(() => this.flush())
      this.#cancel = () => clearImmediate(immediate)
    }
  }

  #clearTimer(): void {
    this.#cancel?.()
    this.#cancel = null
  }
}
