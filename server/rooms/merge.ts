/**
 * Merging updates, in the one size both the relay and the store use: `Y.mergeUpdates` grows faster
 * than linearly with its input, so batches are merged at most `MAX_MERGE` at a time.
 */

import * as Y from 'yjs'

export const MAX_MERGE = 32

/** `updates` merged into records of at most MAX_MERGE updates each (a lone update as it is). */
export const mergeInChunks = (updates: readonly Uint8Array[]): Uint8Array[] => {
  const records: Uint8Array[] = []
  for (let i = 0; i < updates.length; i += MAX_MERGE) {
    const chunk = updates.slice(i, i + MAX_MERGE)
    records.push(chunk.length === 1 ? chunk[0]! : Y.mergeUpdates(chunk))
  }
  return records
}
