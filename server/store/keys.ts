/**
 * LevelDB key encoding for the document store. Keys are versioned byte tuples that sort as their
 * fields do:
 *
 *   update record:  [SCHEMA_VERSION] [KIND_UPDATE] roomId(UTF-8) [0x00] seq(u64 big-endian)
 *   history entry:  [SCHEMA_VERSION] [KIND_HISTORY] roomId(UTF-8) [0x00] seq(u64 big-endian) index(u16 big-endian)
 *   room record:    [SCHEMA_VERSION] [KIND_ROOM] roomId(UTF-8)
 *   revocation:     [SCHEMA_VERSION] [KIND_REVOCATION] userId(UTF-8)
 *   schema marker:  [SCHEMA_VERSION] [KIND_VERSION]
 *
 * Room IDs never contain U+0000, so the 0x00 separator ends the room ID unambiguously and one
 * room's records are exactly the keys from `prefix 0x00` up to (not including) `prefix 0x01`.
 * Pure: no I/O.
 */

export const SCHEMA_VERSION = 0x01
/** Kind byte of update records: 'u'. */
export const KIND_UPDATE = 0x75
/** Kind byte of write-history entries: 'h'. */
export const KIND_HISTORY = 0x68
/** Kind byte of room records (ACL and metadata): 'r'. */
export const KIND_ROOM = 0x72
/** Kind byte of user revocations: 'x'. */
export const KIND_REVOCATION = 0x78
/** Kind byte of the schema-version marker: 'V'. */
export const KIND_VERSION = 0x56

const SEPARATOR = 0x00
const SEQ_BYTES = 8
const encoder = new TextEncoder()

/** The key under which the store's schema version is kept. */
export const VERSION_KEY: Uint8Array = Uint8Array.of(SCHEMA_VERSION, KIND_VERSION)

/** `[SCHEMA_VERSION][kind]roomId` followed by `terminator`. */
function roomPrefix(roomId: string, terminator: number, extra: number, kind = KIND_UPDATE): Uint8Array {
  if (roomId.includes('\u0000')) throw new RangeError('room id must not contain U+0000')
  const id = encoder.encode(roomId)
  const key = new Uint8Array(2 + id.length + 1 + extra)
  key[0] = SCHEMA_VERSION
  key[1] = kind
  key.set(id, 2)
  key[2 + id.length] = terminator
  return key
}

/** `[SCHEMA_VERSION][kind]name`, for kinds keyed by one string. */
export function namedKey(kind: number, name: string): Uint8Array {
  const bytes = encoder.encode(name)
  const key = new Uint8Array(2 + bytes.length)
  key[0] = SCHEMA_VERSION
  key[1] = kind
  key.set(bytes, 2)
  return key
}

/** Every key of one kind (room records, revocations), in name order. */
export function kindRange(kind: number): { gte: Uint8Array; lt: Uint8Array } {
  return { gte: Uint8Array.of(SCHEMA_VERSION, kind), lt: Uint8Array.of(SCHEMA_VERSION, kind + 1) }
}

/** The name of a `namedKey`. */
export function decodeName(key: Uint8Array): string {
  return new TextDecoder().decode(key.subarray(2))
}

/** Key of the `index`th history entry of the batch stored at `seq`. */
export function historyKey(roomId: string, seq: number, index: number): Uint8Array {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`invalid sequence number ${seq}`)
  const key = roomPrefix(roomId, SEPARATOR, SEQ_BYTES + 2, KIND_HISTORY)
  const view = new DataView(key.buffer)
  view.setBigUint64(key.length - SEQ_BYTES - 2, BigInt(seq), false)
  view.setUint16(key.length - 2, index, false)
  return key
}

/** Bounds covering exactly one room's history entries, oldest first. */
export function historyRange(roomId: string): { gte: Uint8Array; lt: Uint8Array } {
  return { gte: roomPrefix(roomId, SEPARATOR, 0, KIND_HISTORY), lt: roomPrefix(roomId, SEPARATOR + 1, 0, KIND_HISTORY) }
}

/** Key of one update record of a room. `seq` is a non-negative safe integer. */
export function recordKey(roomId: string, seq: number): Uint8Array {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`invalid sequence number ${seq}`)
  const key = roomPrefix(roomId, SEPARATOR, SEQ_BYTES)
  new DataView(key.buffer).setBigUint64(key.length - SEQ_BYTES, BigInt(seq), false)
  return key
}

/** Keys of a room's records `fromSeq` up to (not including) `toSeq`: the room id encoded once (compaction). */
export function recordKeys(roomId: string, fromSeq: number, toSeq: number): Uint8Array[] {
  const first = recordKey(roomId, fromSeq)
  const keys: Uint8Array[] = []
  for (let seq = fromSeq; seq < toSeq; seq++) {
    const key = seq === fromSeq ? first : first.slice()
    new DataView(key.buffer).setBigUint64(key.length - SEQ_BYTES, BigInt(seq), false)
    keys.push(key)
  }
  return keys
}

/** Bounds covering exactly one room's update records, in sequence order. */
export function roomRange(roomId: string): { gte: Uint8Array; lt: Uint8Array } {
  return { gte: roomPrefix(roomId, SEPARATOR, 0), lt: roomPrefix(roomId, SEPARATOR + 1, 0) }
}

/** The sequence number of an update record's key. */
export function decodeSeq(key: Uint8Array): number {
  if (key.length < 2 + 1 + SEQ_BYTES || key[0] !== SCHEMA_VERSION || key[1] !== KIND_UPDATE) {
    throw new RangeError('not an update record key')
  }
  const view = new DataView(key.buffer, key.byteOffset, key.byteLength)
  const seq = view.getBigUint64(key.byteLength - SEQ_BYTES, false)
  if (seq > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`sequence number ${seq} too large`)
  return Number(seq)
}
