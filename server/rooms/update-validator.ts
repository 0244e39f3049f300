/**
 * Parse-only validation of untrusted Yjs V1 updates and state vectors, run before an update touches a
 * room. Security: `Y.applyUpdate` integrates structs before it reads the delete set, so a truncated
 * update can be half-applied, and `Y.decodeUpdate` ignores trailing bytes. This walks the bytes the way
 * yjs reads them (utils/encoding.js `readClientsStructRefs`, UpdateDecoderV1, Item.js `contentRefs`,
 * Content*.js, DeleteSet.js) without building structs, and turns every problem into `malformed_message`.
 * It is stricter than yjs where yjs accepts bytes that later make it throw or drop data (zero-length
 * structs, a struct pointing at itself, a client written twice, subdocument options that are not an
 * object); no yjs writer produces those. It cannot see the room's state: see the tests for what it misses.
 */

import * as decoding from 'lib0/decoding'
import { TandemError } from '../../protocol/errors.ts'

export interface UpdateSummary {
  /** Every struct, GC and Skip included: `Y.decodeUpdate(update).structs.length`. */
  structs: number
  /** Delete ranges in the delete set, summed over clients. */
  deletes: number
  /** Distinct client ids with at least one struct (of any kind), ascending. */
  clients: number[]
  /** Every Item (not GC or Skip), in the order the update holds them: where each wants to go. */
  items: ItemRef[]
}

/** No client: an absent origin, right origin or parent id. */
export const NONE = -1

/**
 * Where an Item of an update asks to be integrated: its id and length, its left and right origins,
 * and, when it has neither, its parent (a root type by name, or a type by its item's id) and key.
 * What integration-cost.ts needs to estimate the work of integrating it, before it is applied.
 */
export class ItemRef {
  originClient = NONE
  originClock = 0
  rightClient = NONE
  rightClock = 0
  /** A root type's name, when the parent is one. */
  parentName: string | null = null
  /** The id of the parent type's item, when the parent is one (`parentClient` NONE otherwise). */
  parentClient = NONE
  parentClock = 0
  /** The map key, for an entry of a map-like type. */
  parentSub: string | null = null
  /** Whether the content is a new shared type (a parent for later items). */
  isType = false

  constructor(
    readonly client: number,
    readonly clock: number,
    public length: number,
  ) {}
}

type Decoder = decoding.Decoder

const BITS5 = 0b11111 // content ref
const BIT6 = 0b100000 // has parentSub
const BIT7 = 0b1000000 // has right origin
const BIT8 = 0b10000000 // has origin
const SKIP = 10
/** lib0 `readAny` recurses and Node overflows near 10,000 levels: a fixed bound gives the same verdict at any stack depth. */
const MAX_ANY_DEPTH = 1000

const fail = (reason: string): never => {
  throw new TandemError('malformed_message', reason)
}

const remaining = (d: Decoder): number => d.arr.length - d.pos

/** A varUint that is a safe integer: lib0 lets the last byte push a value past 2^53. */
const uint = (d: Decoder): number => {
  const n = decoding.readVarUint(d)
  return n > Number.MAX_SAFE_INTEGER ? fail('integer out of range') : n
}

/** A count of things that take at least `minBytes` each. Security: yjs runs `new Array(count)` on it. */
const count = (d: Decoder, minBytes: number, what: string): number => {
  const n = uint(d)
  return n * minBytes > remaining(d) ? fail(`${what} count ${n} exceeds the remaining bytes`) : n
}

/** Security: yjs throws on zero-length structs once it splits or searches next to them. */
const length = (d: Decoder, what: string): number => {
  const n = uint(d)
  return n === 0 ? fail(`zero-length ${what}`) : n
}

/** lib0's `readUint8` does not check the end of the array: it returns undefined. */
const byte = (d: Decoder): number => (d.pos < d.arr.length ? decoding.readUint8(d) : fail('update ends early'))

const skip = (d: Decoder, n: number): void => {
  if (n > remaining(d)) fail('update ends early')
  d.pos += n
}

/** lib0 decodes strings with a fatal UTF-8 decoder, so bad UTF-8 throws here as it would in yjs. */
const string = (d: Decoder): string => decoding.readVarString(d)

const json = (d: Decoder, what: string): void => {
  const text = string(d)
  if (what === 'JSON content' && text === 'undefined') return // ContentJSON's one exception
  try {
    JSON.parse(text)
  } catch {
    fail(`${what} is not valid JSON`)
  }
}

/** Walks one lib0 `writeAny` value (tags 127 down to 116) without building it. */
const skipAny = (d: Decoder, depth: number): void => {
  if (depth > MAX_ANY_DEPTH) fail('value nested too deeply')
  const tag = byte(d)
  switch (tag) {
    case 127:
    case 126:
    case 121:
    case 120:
      return // undefined, null, false, true
    case 125:
      decoding.readVarInt(d)
      return
    case 124:
      skip(d, 4)
      return // float32
    case 123:
    case 122:
      skip(d, 8)
      return // float64, bigint64
    case 119:
      string(d)
      return
    case 118: // object
      for (let n = count(d, 2, 'object entry'); n > 0; n--) {
        string(d)
        skipAny(d, depth + 1)
      }
      return
    case 117: // array
      for (let n = count(d, 1, 'array element'); n > 0; n--) skipAny(d, depth + 1)
      return
    case 116:
      decoding.readVarUint8Array(d)
      return
    default:
      fail(`unknown value tag ${tag}`)
  }
}

const isBooleanTag = (tag: number): boolean => tag === 120 || tag === 121

/**
 * yjs spreads these into `new Doc({ guid, ...opts })` and throws on a non-object. Security: `guid` or
 * `gcFilter` would override what the parent decides. yjs writes gc, autoLoad and meta.
 */
const skipDocOpts = (d: Decoder): void => {
  if (byte(d) !== 118) fail('subdocument options are not an object')
  for (let n = count(d, 2, 'subdocument option'); n > 0; n--) {
    const key = string(d)
    if (key === 'guid' || key === 'gcFilter') fail(`subdocument option ${key} is not allowed`)
    if (key !== 'gc' && key !== 'autoLoad' && key !== 'shouldLoad') skipAny(d, 1)
    else if (!isBooleanTag(byte(d))) fail(`subdocument option ${key} is not a boolean`)
  }
}

/** Reads an item's content (Item.js `contentRefs`) and returns its length in clock ticks. */
const readContent = (d: Decoder, ref: number): number => {
  switch (ref) {
    case 1:
      return length(d, 'deleted content') // ContentDeleted
    case 2: {
      // ContentJSON
      const n = count(d, 1, 'JSON entry')
      for (let i = 0; i < n; i++) json(d, 'JSON content')
      return n === 0 ? fail('zero-length JSON content') : n
    }
    case 3:
      decoding.readVarUint8Array(d)
      return 1 // ContentBinary
    case 4:
      return string(d).length || fail('zero-length string content') // ContentString, in UTF-16 units
    case 5:
      json(d, 'embed')
      return 1 // ContentEmbed
    case 6:
      string(d)
      json(d, 'format value')
      return 1 // ContentFormat: key, value
    case 7: {
      // ContentType: YArray, YMap, YText, YXmlElement, YXmlFragment, YXmlHook, YXmlText
      const typeRef = uint(d)
      if (typeRef > 6) fail(`unknown type ref ${typeRef}`)
      if (typeRef === 3 || typeRef === 5) string(d) // node name, hook name
      return 1
    }
    case 8: {
      // ContentAny
      const n = count(d, 1, 'value')
      for (let i = 0; i < n; i++) skipAny(d, 0)
      return n === 0 ? fail('zero-length any content') : n
    }
    case 9:
      string(d)
      skipDocOpts(d)
      return 1 // ContentDoc: guid, options
    default:
      return fail(`unknown content ref ${ref}`)
  }
}

/**
 * Security: yjs checks that an origin or parent from another client is present, but assumes one from
 * the item's own client is earlier, and throws mid-transaction when it is not. Returns the id's clock
 * (its client is `idClient`, read first).
 */
let idClient = 0
const readId = (d: Decoder, client: number, clock: number, what: string): number => {
  idClient = uint(d)
  const idClock = uint(d)
  if (idClock >= clock && idClient === client) fail(`${what} is not before the struct it belongs to`)
  return idClock
}

/** Reads one Item after its info byte into `ref` (its length set last). */
const readItem = (d: Decoder, info: number, ref: ItemRef): void => {
  const { client, clock } = ref
  if (info & BIT8) {
    ref.originClock = readId(d, client, clock, 'origin')
    ref.originClient = idClient
  }
  if (info & BIT7) {
    ref.rightClock = readId(d, client, clock, 'right origin')
    ref.rightClient = idClient
  }
  if ((info & (BIT7 | BIT8)) === 0) {
    const parentInfo = uint(d) // yjs writes 1 for a root type name, 0 for a parent id
    if (parentInfo === 1) ref.parentName = string(d)
    else if (parentInfo === 0) {
      ref.parentClock = readId(d, client, clock, 'parent')
      ref.parentClient = idClient
    } else fail(`unknown parent info ${parentInfo}`)
    if (info & BIT6) ref.parentSub = string(d)
  }
  const ref5 = info & BITS5
  ref.isType = ref5 === 7
  ref.length = readContent(d, ref5)
}

const readUpdate = (d: Decoder, collect: boolean): UpdateSummary => {
  let structs = 0
  const clients: number[] = []
  const items: ItemRef[] = []
  const seen = new Set<number>()
  for (let sections = count(d, 3, 'client'); sections > 0; sections--) {
    const n = uint(d)
    const client = uint(d)
    let clock = uint(d)
    if (n > remaining(d)) fail(`struct count ${n} exceeds the remaining bytes`)
    // readClientsStructRefs keeps only a client's last section; yjs never writes two.
    if (seen.has(client)) fail(`client ${client} appears twice`)
    seen.add(client)
    if (n > 0) clients.push(client)
    for (let i = 0; i < n; i++) {
      const info = byte(d)
      if (info === SKIP) clock += length(d, 'skip')
      else if ((info & BITS5) === 0) clock += length(d, 'GC')
      else if ((info & BITS5) === SKIP)
        fail('skip with flags') // yjs's two readers disagree on it
      else {
        const ref = new ItemRef(client, clock, 0)
        readItem(d, info, ref)
        if (collect) items.push(ref)
        clock += ref.length
      }
      if (clock > Number.MAX_SAFE_INTEGER) fail('clock out of range')
    }
    structs += n
  }
  let deletes = 0
  for (let dsClients = count(d, 2, 'delete set client'); dsClients > 0; dsClients--) {
    uint(d) // client
    const n = count(d, 2, 'delete range')
    for (let i = 0; i < n; i++) {
      if (uint(d) + length(d, 'delete range') > Number.MAX_SAFE_INTEGER) fail('delete range out of range')
    }
    deletes += n
  }
  if (remaining(d) !== 0) fail(`${remaining(d)} bytes after the delete set`)
  return { structs, deletes, clients: clients.sort((a, b) => a - b), items }
}

/** The one boundary: what lib0 or the platform throws (end of array, bad UTF-8, stack overflow) becomes ours. */
const guard = <T>(what: string, read: (d: Decoder) => T, bytes: Uint8Array): T => {
  try {
    return read(decoding.createDecoder(bytes))
  } catch (err) {
    if (err instanceof TandemError) throw err
    const reason = err instanceof Error ? err.message : String(err)
    throw new TandemError('malformed_message', `unreadable ${what}: ${reason}`, { cause: err })
  }
}

/**
 * Checks that `update` is a well-formed Yjs V1 update and summarizes it, or throws
 * `malformed_message`. `items: false` leaves `items` empty (a stored snapshot: only its size counts).
 */
export function validateUpdate(update: Uint8Array, options: { items?: boolean } = {}): UpdateSummary {
  const collect = options.items ?? true
  return guard('update', (d) => readUpdate(d, collect), update)
}

/** Checks that `sv` is a well-formed state vector: a count, (client, clock) pairs, nothing after. */
export function validateStateVector(sv: Uint8Array): void {
  guard(
    'state vector',
    (d) => {
      for (let n = count(d, 2, 'state vector entry'); n > 0; n--) {
        uint(d) // client
        uint(d) // clock
      }
      if (remaining(d) !== 0) fail(`${remaining(d)} bytes after the state vector`)
    },
    sv,
  )
}
