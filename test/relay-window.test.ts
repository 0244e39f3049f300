/**
 * The adaptive relay window (server/rooms/relay-window.ts): no window while the event loop has
 * slack, the whole window once it is busy, back to none when the load goes; and a
 * room's relays under it: at once while quiet, merged into fewer frames while the process is busy.
 */

import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { decodeServerMessage } from '../protocol/messages.ts'
import { BroadcastBatch } from '../server/rooms/broadcast-batch.ts'
import { AdaptiveWindow, CLOSE, MIN_HELD_RECEIVERS, OPEN, fixedWindow, windowOpen } from '../server/rooms/relay-window.ts'
import { withDeadline } from './support/wait.ts'

/** Keeps the event loop `share` busy (sync work in 20 ms slices) for `ms`. */
const load = (share: number, ms: number): Promise<void> =>
  new Promise((resolve) => {
    const end = performance.now() + ms
    const slice = (): void => {
      const busyUntil = performance.now() + 20 * share
      while (performance.now() < busyUntil) {}
      if (performance.now() >= end) resolve()
      else setTimeout(slice, 20 * (1 - share))
    }
    slice()
  })

const until = (what: string, check: () => boolean, ms = 5_000): Promise<void> =>
  withDeadline(
    what,
    (async () => {
      while (!check()) await new Promise((r) => setTimeout(r, 20))
    })(),
    ms,
  )

describe('the relay window', () => {
  it('opens past OPEN and closes only under CLOSE', () => {
    expect(windowOpen(0, false)).toBe(false)
    expect(windowOpen(OPEN, false)).toBe(false)
    expect(windowOpen(OPEN + 0.01, false)).toBe(true)
    expect(windowOpen((OPEN + CLOSE) / 2, true)).toBe(true)
    expect(windowOpen((OPEN + CLOSE) / 2, false)).toBe(false)
    expect(windowOpen(CLOSE - 0.01, true)).toBe(false)
  })

  it('opens while the event loop is busy, for rooms with many receivers, and closes once it is idle again', async () => {
    const window = new AdaptiveWindow(10)
    try {
      const many = MIN_HELD_RECEIVERS
      expect(window.ms(many)).toBe(0)
      await load(0.95, 1_500)
      expect(window.ms(many)).toBe(10)
      // A room with few receivers is never held: merging would save less than it costs.
      expect(window.ms(MIN_HELD_RECEIVERS - 1)).toBe(0)
      await until('the window to close', () => window.ms(many) === 0)
      expect(window.utilization).toBeLessThan(CLOSE)
    } finally {
      window.close()
    }
  })

  it('a batch relays each update at once with no window, and merges a busy burst under one', async () => {
    const relay = (window: ReturnType<typeof fixedWindow>) => {
      const frames: Uint8Array[] = []
      const batch = new BroadcastBatch<string>(window, (frame) => frames.push(frame))
      return { frames, batch }
    }
    const doc = new Y.Doc()
    const updates: Uint8Array[] = []
    doc.on('update', (u: Uint8Array) => updates.push(u))
    for (let i = 0; i < 10; i++) doc.getText('t').insert(i, 'x')

    const open = relay(fixedWindow(0))
    const windowed = relay(fixedWindow(50))
    for (const u of updates) {
      open.batch.add(u, 'a', null)
      windowed.batch.add(u, 'a', null)
      // One turn per update, as keystrokes arrive.
      await new Promise((r) => setImmediate(r))
    }
    await until('every update relayed', () => open.frames.length === 10)
    // Under the window: the first at once, the other nine held and merged into one frame.
    await until('the held updates relayed', () => windowed.frames.length === 2)
    const merged = new Y.Doc()
    for (const f of windowed.frames) {
      const m = decodeServerMessage(f)
      if (m.kind === 'update') Y.applyUpdate(merged, m.update)
    }
    expect(merged.getText('t').toString()).toBe('x'.repeat(10))
  })

  it('rooms held at once relay in the same turn, none later than its window', async () => {
    const window = fixedWindow(300)
    try {
      const relays: { room: string; at: number; turn: number }[] = []
      let turn = 0
      const ticking = setInterval(() => turn++, 1)
      const room = (name: string) => new BroadcastBatch<string>(window, () => relays.push({ room: name, at: performance.now(), turn }))
      const a = room('a')
      const b = room('b')
      const update = (text: string): Uint8Array => {
        const doc = new Y.Doc()
        doc.getText('t').insert(0, text)
        return Y.encodeStateAsUpdate(doc)
      }
      // Each room's first write goes at the end of its turn (nothing held yet); b's 60 ms after a's.
      a.add(update('a1'), 'w', null)
      await until('a relayed its first write', () => relays.length === 1)
      await new Promise((r) => setTimeout(r, 60))
      b.add(update('b1'), 'w', null)
      await until('b relayed its first write', () => relays.length === 2)
      // Their next writes fall inside their windows: held. On timers of their own, b would relay
      // about 60 ms after a.
      const heldAt = performance.now()
      a.add(update('a2'), 'w', null)
      b.add(update('b2'), 'w', null)
      await until('both held writes relayed', () => relays.length === 4)
      clearInterval(ticking)
      const [ra, rb] = relays.slice(2)
      expect(new Set([ra!.room, rb!.room])).toEqual(new Set(['a', 'b']))
      // One timer for both: the same turn, so a busy process pays one wakeup per window.
      expect(ra!.turn).toBe(rb!.turn)
      // Neither waited past its window (b, whose window had further to go, waited less).
      expect(ra!.at - heldAt).toBeLessThan(300)
    } finally {
      window.close()
    }
  })
})
