/**
 * Seeded random workloads for tests: the seeds to run (`TANDEM_SEED` replays one), random edits to
 * every shared type (nested ones too), a content fingerprint that does not depend on how a doc
 * happens to encode, and a wait for docs to hold the same state, deletions included.
 */

import * as prng from 'lib0/prng'
import * as Y from 'yjs'
import { untilDocs } from './wait.ts'

/** The seeds to run: `TANDEM_SEED` (one seed, to replay a failure) or the defaults. */
export const seedsFromEnv = (defaults: readonly number[]): number[] => {
  const forced = process.env.TANDEM_SEED
  if (forced === undefined || forced === '') return [...defaults]
  const seed = Number(forced)
  if (!Number.isSafeInteger(seed)) throw new Error(`TANDEM_SEED must be an integer, got "${forced}"`)
  return [seed]
}

/** A random delay of 0 to `maxMs` (< 100) ms, often none: part of the workload, not a wait. */
export const pause = (gen: prng.PRNG, maxMs = 30): Promise<void> => {
  const ms = prng.bool(gen) ? 0 : prng.int32(gen, 0, maxMs)
  return new Promise((resolve) => setTimeout(resolve, ms))
}

const KEYS = ['a', 'b', 'c', 'd', 'e', 'f']
const MAX_DEPTH = 3
const FORMATS: Array<Record<string, unknown>> = [{ bold: true }, { bold: null }, { italic: true }, { italic: null }, { color: 'red' }, { color: 'blue' }]

/** A value to store: plain JSON, or (above the depth limit) a new shared type with content. */
const randomValue = (gen: prng.PRNG, depth: number): unknown => {
  switch (prng.int32(gen, 0, depth < MAX_DEPTH ? 6 : 3)) {
    case 0:
      return prng.int32(gen, -1000, 1000)
    case 1:
      return prng.word(gen, 0, 8)
    case 2:
      return { w: prng.word(gen, 1, 4), n: prng.int32(gen, 0, 9), ok: prng.bool(gen) }
    case 3:
      return [prng.word(gen, 1, 3), null, prng.int32(gen, 0, 99)]
    case 4:
      return new Y.Text(prng.word(gen, 1, 8))
    case 5:
      return new Y.Map<unknown>([[prng.oneOf(gen, KEYS), prng.word(gen, 1, 5)]])
    default:
      return Y.Array.from<number | string>([prng.int32(gen, 0, 9), prng.word(gen, 1, 4)])
  }
}

const editText = (gen: prng.PRNG, text: Y.Text): void => {
  const length = text.length
  const roll = prng.int32(gen, 0, 9)
  if (roll < 5 || length === 0) {
    const attributes = prng.int32(gen, 0, 3) === 0 ? prng.oneOf(gen, FORMATS) : undefined
    text.insert(prng.int32(gen, 0, length), prng.word(gen, 1, 6), attributes)
  } else if (roll < 8) {
    const index = prng.int32(gen, 0, length - 1)
    text.delete(index, prng.int32(gen, 1, Math.min(6, length - index)))
  } else {
    const index = prng.int32(gen, 0, length - 1)
    text.format(index, prng.int32(gen, 1, Math.min(8, length - index)), prng.oneOf(gen, FORMATS))
  }
}

const editMap = (gen: prng.PRNG, map: Y.Map<unknown>, depth: number): void => {
  const key = prng.oneOf(gen, KEYS)
  const current = map.get(key)
  const roll = prng.int32(gen, 0, 9)
  if (roll < 4 && current instanceof Y.AbstractType) editType(gen, current, depth + 1)
  else if (roll < 8) map.set(key, randomValue(gen, depth))
  else map.delete(key)
}

const editArray = (gen: prng.PRNG, array: Y.Array<unknown>, depth: number): void => {
  const length = array.length
  const roll = prng.int32(gen, 0, 9)
  if (roll < 3 && length > 0) {
    const item = array.get(prng.int32(gen, 0, length - 1))
    if (item instanceof Y.AbstractType) {
      editType(gen, item, depth + 1)
      return
    }
  }
  if (roll < 7 || length === 0) {
    const items = Array.from({ length: prng.int32(gen, 1, 3) }, () => randomValue(gen, depth))
    array.insert(prng.int32(gen, 0, length), items)
  } else {
    const index = prng.int32(gen, 0, length - 1)
    array.delete(index, prng.int32(gen, 1, Math.min(3, length - index)))
  }
}

// biome-ignore lint/suspicious/noExplicitAny: Yjs's shared types are invariant in their event type; any is their one common supertype
const editType = (gen: prng.PRNG, type: Y.AbstractType<any>, depth: number): void => {
  if (type instanceof Y.Text) editText(gen, type)
  else if (type instanceof Y.Map) editMap(gen, type, depth)
  else if (type instanceof Y.Array) editArray(gen, type, depth)
}

/** One random edit to the doc's Y.Text 'text', Y.Map 'map' or Y.Array 'array', or to a type nested in them. */
export const randomEdit = (gen: prng.PRNG, doc: Y.Doc): void => {
  switch (prng.int32(gen, 0, 2)) {
    case 0:
      editText(gen, doc.getText('text'))
      return
    case 1:
      editMap(gen, doc.getMap('map'), 1)
      return
    default:
      editArray(gen, doc.getArray('array'), 1)
      return
  }
}

/**
 * Inserts `[marker]` into the doc's Y.Text 'log' at a random marker boundary. Markers are never
 * deleted and never split (Yjs integrates a concurrent insert whole, between items), so each one
 * must appear intact, once, in the converged text.
 */
export const insertMarker = (gen: prng.PRNG, doc: Y.Doc, marker: string): void => {
  const log = doc.getText('log')
  const text = log.toString()
  const bounds = [0]
  for (let i = 0; i < text.length; i++) if (text[i] === ']') bounds.push(i + 1)
  log.insert(prng.oneOf(gen, bounds), `[${marker}]`)
}

/** The markers in a log text, in order. */
export const markersIn = (doc: Y.Doc): string[] =>
  [
    ...doc
      .getText('log')
      .toString()
      .matchAll(/\[([^\]]*)\]/g),
  ].map((m) => m[1]!)

/** JSON with object keys sorted: two peers may order a Y.Map's keys differently. */
const canonical = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(canonical)
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
    )
  }
  return value
}

/** Everything a reader sees in the doc (text with formatting, map and array JSON, the log), as one string. */
export const contentOf = (doc: Y.Doc): string =>
  JSON.stringify(
    canonical({
      text: doc.getText('text').toDelta(),
      map: doc.getMap('map').toJSON(),
      array: doc.getArray('array').toJSON(),
      log: doc.getText('log').toString(),
    }),
  )

/**
 * Resolves once every doc holds the same snapshot (state vector and delete set), re-checked on
 * any doc's update. Equal state vectors alone miss a deletion still in flight.
 */
export const sameState = (docs: Y.Doc[], ms = 15_000): Promise<void> =>
  untilDocs(
    'docs hold the same state, deletions included',
    docs,
    () => {
      const first = Y.snapshot(docs[0]!)
      return docs.every((d) => Y.equalSnapshots(first, Y.snapshot(d)))
    },
    ms,
  )
