/**
 * Seeded Yjs workloads: a typing trace (keystrokes with some backspaces, a few authors taking turns)
 * and pastes, as the V1 updates a real client would send, each in causal order.
 */

import * as prng from 'lib0/prng'
import * as Y from 'yjs'

export interface TraceOptions {
  readonly keystrokes: number
  /** Pastes of pasteBytes[0]..pasteBytes[1] characters, spread through the trace. */
  readonly pastes?: number
  readonly pasteBytes?: readonly [number, number]
  /** Authors taking turns (each its own Yjs client). */
  readonly authors?: number
  /** Share of keystrokes that are backspaces. */
  readonly deleteRate?: number
}

export interface Trace {
  readonly updates: Uint8Array[]
  /** Which of `updates` are pastes (the rest are keystrokes). */
  readonly isPaste: boolean[]
  /** The text every peer must end with. */
  readonly text: string
  readonly bytes: number
}

export const TEXT = 't'

export function typingTrace(seed: number, options: TraceOptions): Trace {
  const gen = prng.create(seed)
  const authors = Array.from({ length: options.authors ?? 3 }, (_, i) => {
    const doc = new Y.Doc()
    doc.clientID = 1_000 + seed * 16 + i
    return { doc, text: doc.getText(TEXT), pending: [] as Uint8Array[], cursor: 0 }
  })
  const updates: Uint8Array[] = []
  const isPaste: boolean[] = []
  const pastes = options.pastes ?? 0
  const total = options.keystrokes + pastes
  const pasteEvery = pastes > 0 ? Math.floor(total / pastes) : Infinity
  const [pasteMin, pasteMax] = options.pasteBytes ?? [1024, 10 * 1024]
  const deleteRate = options.deleteRate ?? 0.12
  let current = authors[0]!
  let runLeft = 0
  let bytes = 0
  for (let i = 0; i < total; i++) {
    if (runLeft-- <= 0) {
      current = prng.oneOf(gen, authors)
      runLeft = prng.int32(gen, 5, 60)
      for (const u of current.pending) Y.applyUpdate(current.doc, u)
      current.pending = []
      current.cursor = prng.int32(gen, 0, current.text.length)
    }
    const { text } = current
    current.cursor = Math.min(current.cursor, text.length)
    let update: Uint8Array | null = null
    const capture = (u: Uint8Array): void => {
      update = u
    }
    current.doc.on('update', capture)
    const paste = (i + 1) % pasteEvery === 0
    if (paste) {
      const s = prng.word(gen, pasteMin, pasteMax)
      text.insert(current.cursor, s)
      current.cursor += s.length
    } else if (current.cursor > 0 && prng.real53(gen) < deleteRate) {
      text.delete(current.cursor - 1, 1)
      current.cursor--
    } else {
      text.insert(current.cursor, prng.char(gen))
      current.cursor++
    }
    current.doc.off('update', capture)
    if (update === null) continue
    updates.push(update)
    isPaste.push(paste)
    bytes += (update as Uint8Array).length
    for (const other of authors) if (other !== current) other.pending.push(update)
  }
  for (const u of current.pending) Y.applyUpdate(current.doc, u)
  const text = current.text.toString()
  for (const a of authors) a.doc.destroy()
  return { updates, isPaste, text, bytes }
}

/** The text a list of updates produces (for correctness checks). */
export function textOf(updates: Iterable<Uint8Array>): string {
  const doc = new Y.Doc()
  doc.transact(() => {
    for (const u of updates) Y.applyUpdate(doc, u)
  })
  const text = doc.getText(TEXT).toString()
  doc.destroy()
  return text
}

/** A document of about `bytes` characters built by typing and pasting: one state update. */
export function documentOfSize(seed: number, bytes: number): { update: Uint8Array; text: string } {
  const pasteSize = Math.max(64, Math.floor(bytes / 40))
  const trace = typingTrace(seed, {
    keystrokes: Math.min(2_000, Math.floor(bytes / 4)),
    pastes: Math.max(1, Math.floor(bytes / pasteSize) - 1),
    pasteBytes: [pasteSize, pasteSize],
  })
  const doc = new Y.Doc()
  doc.transact(() => {
    for (const u of trace.updates) Y.applyUpdate(doc, u)
  })
  const update = Y.encodeStateAsUpdate(doc)
  doc.destroy()
  return { update, text: trace.text }
}

/**
 * How many edits room `room` of `rooms` has due `elapsed` seconds into a step at `perRoom` edits a
 * second. Each room types at its own phase (room r starts r/rooms of a period late), so the offered
 * load arrives evenly, as independent typists' does. Without it every room's edit fell due in the
 * same 2 ms tick: on 100 x 5 a burst of 100 edits (400 socket writes) each period at any rate, and a
 * step's p50/p99 measured how long a server takes to work through that burst, not a quiet room.
 */
export const dueEdits = (elapsed: number, perRoom: number, room: number, rooms: number): number => Math.floor(elapsed * perRoom + room / rooms)
