/**
 * Parse-only validation of untrusted Yjs V1 updates and state vectors, run before an update touches
 * a room. Security: `Y.applyUpdate` integrates the structs before it reads the delete set, so a
 * truncated update can be half-applied, and `Y.decodeUpdate` ignores trailing bytes. This module walks
 * the bytes exactly as yjs reads them (utils/updates.js, utils/encoding.js `readClientsStructRefs`,
 * UpdateDecoderV1, structs/Content*.js, utils/DeleteSet.js) without building any Yjs struct, and turns
 * every problem into a `malformed_message` error. Where yjs would accept bytes that later make it throw
 * or misbehave (a struct pointing at itself, zero-length structs, a client written twice, doc options
 * that are not an object), it is stricter than yjs: no yjs writer produces those.
 */

import * as decoding from 'lib0/decoding'
import { TandemError } from '../protocol/errors.ts'

export interface UpdateSummary {
  /** Every struct in the update, GC and Skip included: `Y.decodeUpdate(update).structs.length`. */
  structs: number
  /** Delete ranges in the delete set, summed over clients. */
  deletes: number
  /** Distinct client ids with at least one struct (of any kind), ascending. */
  clients: number[]
}

type Decoder = decoding.Decoder

const BITS5 = 0b11111
const BIT6 = 0b100000 // has parentSub
const BIT7 = 0b1000000 // has right origin
const BIT8 = 0b10000000 // has origin
const SKIP_INFO = 10
const MAX_SAFE = Number.MAX_SAFE_INTEGER
/** lib0 `readAny` recurses; Node overflows near 10,000 levels. A fixed bound keeps the verdict the same at any stack depth. */
const MAX_ANY_DEPTH = 1000

const fail = (reason: string): never => {
  throw new TandemError('malformed_message', reason)
}

const remaining = (d: Decoder): number => d.arr.length - d.pos

/** A varUint that is a safe integer. lib0 lets the final byte push a value past 2^53. */
const uint = (d: Decoder): number => {
  const n = decoding.readVarUint(d)
  if (n > MAX_SAFE) fail('integer out of range')
  return n
}

/** A count of items that each take at least `minBytes`: bounding it stops huge loops and `new Array(n)` in yjs. */
const count = (d: Decoder, minBytes: number, what: string): number => {
  const n = uint(d)
  if (n * minBytes > remaining(d)) fail(`${what} count ${n} exceeds the remaining bytes`)
  return n
}

/** A length that must not be zero: yjs never writes empty structs, and its split logic assumes none. */
const length = (d: Decoder, what: string): number => {
  const n = uint(d)
  if (n === 0) fail(`zero-length ${what}`)
  return n
}

/** lib0's `readUint8` does not check the end of the array: it returns undefined. */
const byte = (d: Decoder): number => {
  if (d.pos >= d.arr.length) fail('update ends early')
  return decoding.readUint8(d)
}

const skip = (d: Decoder, n: number): void => {
  if (n > remaining(d)) fail('update ends early')
  d.pos += n
}

/** lib0 decodes strings with a fatal UTF-8 decoder, as yjs will. */
const string = (d: Decoder): string => decoding.readVarString(d)

const json = (d: Decoder, what: string): void => {
  const text = string(d)
  try {
    JSON.parse(text)
  } catch {
    fail(`${what} is not valid JSON`)
  }
}

/** Walks one lib0 `writeAny` value (tags 127..116) without building it. */
const skipAny = (d: Decoder, depth: number): void => {
  if (depth > MAX_ANY_DEPTH) fail('value nested too deeply')
  const tag = byte(d)
  switch (tag) {
    case 127: case 126: case 121: case 120: return // undefined, null, false, true
    case 125: decoding.readVarInt(d); return
    case 124: skip(d, 4); return // float32
    case 123: case 122: skip(d, 8); return // float64, bigint64
    case 119: string(d); return
    case 118: { // object
      const n = count(d, 2, 'object entry')
      for (let i = 0; i < n; i++) {
        string(d)
        skipAny(d, depth + 1)
      }
      return
    }
    case 117: { // array
      const n = count(d, 1, 'array element')
      for (let i = 0; i < n; i++) skipAny(d, depth + 1)
      return
    }
    case 116: decoding.readVarUint8Array(d); return
    default: fail(`unknown value tag ${tag}`)
  }
}

/**
 * Subdocument options are spread into `new Doc({ guid, ...opts })`: yjs throws on a non-object, and
 * `guid` or `gcFilter` keys would override what the parent document decides. yjs writes gc, autoLoad, meta.
 */
const skipDocOpts = (d: Decoder): void => {
  if (byte(d) !== 118) fail('subdocument options are not an object')
  const n = count(d, 2, 'subdocument option')
  for (let i = 0; i < n; i++) {
    const key = string(d)
    if (key === 'gc' || key === 'autoLoad' || key === 'shouldLoad') {
      const tag = byte(d)
      if (tag !== 120 && tag !== 121) fail(`subdocument option ${key} is not a boolean`)
    } else if (key === 'guid' || key === 'gcFilter') {
      fail(`subdocument option ${key} is not allowed`)
    } else {
      skipAny(d, 1)
    }
  }
}

/** Reads an item's content (Item.js `contentRefs`) and returns its length in clock ticks. */
const readContent = (d: Decoder, ref: number): number => {
  switch (ref) {
    case 1: return length(d, 'deleted content') // ContentDeleted
    case 2: { // ContentJSON
      const n = count(d, 1, 'JSON entry')
      if (n === 0) fail('zero-length JSON content')
      for (let i = 0; i < n; i++) {
        const text = string(d)
        if (text !== 'undefined') {
          try {
            JSON.parse(text)
          } catch {
            fail('JSON content is not valid JSON')
          }
        }
      }
      return n
    }
    case 3: decoding.readVarUint8Array(d); return 1 // ContentBinary
    case 4: { // ContentString: length in UTF-16 code units, as yjs counts it
      const n = string(d).length
      if (n === 0) fail('zero-length string content')
      return n
    }
    case 5: json(d, 'embed'); return 1 // ContentEmbed
    case 6: string(d); json(d, 'format value'); return 1 // ContentFormat
    case 7: { // ContentType: YArray, YMap, YText, YXmlElement, YXmlFragment, YXmlHook, YXmlText
      const typeRef = uint(d)
      if (typeRef > 6) fail(`unknown type ref ${typeRef}`)
      if (typeRef === 3 || typeRef === 5) string(d) // node name, hook name
      return 1
    }
    case 8: { // ContentAny
      const n = count(d, 1, 'value')
      if (n === 0) fail('zero-length any content')
      for (let i = 0; i < n; i++) skipAny(d, 0)
      return n
    }
    case 9: string(d); skipDocOpts(d); return 1 // ContentDoc: guid, options
    default: return fail(`unknown content ref ${ref}`)
  }
}

/**
 * yjs only checks that an origin or parent from another client is present; one from the item's own
 * client is assumed to be earlier, and `getItem` throws mid-transaction when it is not.
 */
const checkId = (d: Decoder, client: number, clock: number, what: string): void => {
  const idClient = uint(d)
  const idClock = uint(d)
  if (idClient === client && idClock >= clock) fail(`${what} is not before the struct it belongs to`)
}

/** Reads one Item after its info byte and returns its length. */
const readItem = (d: Decoder, info: number, client: number, clock: number): number => {
  if (info & BIT8) checkId(d, client, clock, 'origin')
  if (info & BIT7) checkId(d, client, clock, 'right origin')
  if ((info & (BIT7 | BIT8)) === 0) {
    const parentInfo = uint(d)
    if (parentInfo === 1) string(d) // root type name
    else if (parentInfo === 0) checkId(d, client, clock, 'parent')
    else fail(`unknown parent info ${parentInfo}`)
    if (info & BIT6) string(d) // parentSub
  }
  return readContent(d, info & BITS5)
}

const readUpdate = (d: Decoder): UpdateSummary => {
  let structs = 0
  const seen = new Set<number>()
  const clients: number[] = []
  const sections = count(d, 3, 'client')
  for (let i = 0; i < sections; i++) {
    const n = uint(d)
    const client = uint(d)
    let clock = uint(d)
    if (n > remaining(d)) fail(`struct count ${n} exceeds the remaining bytes`)
    // readClientsStructRefs keeps only the last section of a client; yjs never writes two.
    if (seen.has(client)) fail(`client ${client} appears twice`)
    seen.add(client)
    if (n > 0) clients.push(client)
    for (let j = 0; j < n; j++) {
      const info = byte(d)
      if (info === SKIP_INFO) clock += length(d, 'skip')
      else if ((info & BITS5) === 0) clock += length(d, 'GC')
      else if ((info & BITS5) === SKIP_INFO) fail('skip with flags') // the two yjs readers disagree on it
      else clock += readItem(d, info, client, clock)
      if (clock > MAX_SAFE) fail('clock out of range')
    }
    structs += n
  }
  let deletes = 0
  const dsClients = count(d, 2, 'delete set client')
  for (let i = 0; i < dsClients; i++) {
    uint(d) // client
    const n = count(d, 2, 'delete range')
    for (let j = 0; j < n; j++) {
      if (uint(d) + length(d, 'delete range') > MAX_SAFE) fail('delete range out of range')
    }
    deletes += n
  }
  if (remaining(d) !== 0) fail(`${remaining(d)} bytes after the delete set`)
  clients.sort((a, b) => a - b)
  return { structs, deletes, clients }
}

/** Anything lib0 or the platform throws (end of array, bad UTF-8, stack overflow) becomes ours. */
const guard = <T>(what: string, read: (d: Decoder) => T, bytes: Uint8Array): T => {
  try {
    return read(decoding.createDecoder(bytes))
  } catch (err) {
    if (err instanceof TandemError) throw err
    const reason = err instanceof Error ? err.message : String(err)
    throw new TandemError('malformed_message', `unreadable ${what}: ${reason}`, { cause: err })
  }
}

const readStateVector = (d: Decoder): void => {
  const n = count(d, 2, 'state vector entry')
  for (let i = 0; i < n; i++) {
    uint(d) // client
    uint(d) // clock
  }
  if (remaining(d) !== 0) fail(`${remaining(d)} bytes after the state vector`)
}

/** Checks that `update` is a well-formed Yjs V1 update, and summarizes it. Throws `malformed_message`. */
export function validateUpdate(update: Uint8Array): UpdateSummary {
  return guard('update', readUpdate, update)
}

/** Checks that `sv` is a well-formed state vector: count, then (client, clock) pairs, nothing after. */
export function validateStateVector(sv: Uint8Array): void {
  guard('state vector', readStateVector, sv)
}
