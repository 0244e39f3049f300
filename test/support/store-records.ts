/**
 * What tests, benchmarks and soaks ask a store about its contents that the server never needs:
 * how many update records a room's log holds (a compacted log holds one).
 */

import type { DocumentStore } from '../../server/store/types.ts'

/** The number of stored update records of `roomId`. */
export const countRecords = async (store: Pick<DocumentStore, 'load'>, roomId: string): Promise<number> => (await store.load(roomId)).updates.length
