/**
 * The awareness update payload (y-protocols/awareness): a count, then for each entry its clientID,
 * clock and state as JSON text ("null" removes the state). The server works on entries without
 * parsing states it only relays; `readAwarenessUpdate` / `writeAwarenessUpdate` are the pair.
 */

import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { TandemError } from './errors.ts'

export interface AwarenessEntry {
  readonly clientID: number
  readonly clock: number
  /** The state as JSON text; `"null"` means the client's state is removed. */
  readonly state: string
}

export const REMOVED_STATE = 'null'

export const readAwarenessUpdate = (update: Uint8Array): AwarenessEntry[] => {
  const decoder = decoding.createDecoder(update)
  try {
    const count = decoding.readVarUint(decoder)
    // Each entry takes at least three bytes: a count beyond that is a lie, not a large update.
    if (count * 3 > update.length - decoder.pos) {
      throw new TandemError('malformed_message', `awareness update claims ${count} entries in ${update.length} bytes`)
    }
    const entries: AwarenessEntry[] = []
    for (let i = 0; i < count; i++) {
      const clientID = decoding.readVarUint(decoder)
      const clock = decoding.readVarUint(decoder)
      const state = decoding.readVarString(decoder)
      entries.push({ clientID, clock, state })
    }
    if (decoding.hasContent(decoder)) {
      throw new TandemError('malformed_message', 'trailing bytes after the awareness update')
    }
    return entries
  } catch (err) {
    if (err instanceof TandemError) throw err
    throw new TandemError('malformed_message', `undecodable awareness update: ${(err as Error).message}`, { cause: err })
  }
}

export const writeAwarenessUpdate = (entries: readonly AwarenessEntry[]): Uint8Array => {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, entries.length)
  for (const entry of entries) {
    encoding.writeVarUint(encoder, entry.clientID)
    encoding.writeVarUint(encoder, entry.clock)
    encoding.writeVarString(encoder, entry.state)
  }
  return encoding.toUint8Array(encoder)
}
