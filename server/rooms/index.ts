/**
 * server/rooms: the documents. The loaded rooms (registry.ts), one room with its Y.Doc, presence,
 * broadcast and size caps (room.ts) and its stored log (room-log.ts), who receives what a room
 * relays (fanout.ts), presence ownership (presence.ts), what an untrusted update is and costs before
 * it is applied (update-validator.ts, integration-cost.ts), the process's memory budget
 * (memory-budget.ts), how long a busy room may hold its relays (relay-window.ts), merging in
 * bounded chunks (merge.ts) and the document as JSON (doc-json.ts). Imports store/; never sync/ or
 * auth/.
 */

export { RoomRegistry, type RegistryEvents } from './registry.ts'
export { Room, type RoomDeps, type RoomMember, type Writer } from './room.ts'
export { LocalFanout, SharedFrame, type Fanout, type Member, type RemoteFrames, type RoomChannel } from './fanout.ts'
export { Presence, type PresenceLimits, type PresenceResult } from './presence.ts'
export { validateStateVector, validateUpdate, ItemRef, type UpdateSummary } from './update-validator.ts'
export { estimateIntegration, type IntegrationEstimate } from './integration-cost.ts'
export { MemoryBudget, STRUCT_HEAP_BYTES } from './memory-budget.ts'
export { docToJson } from './doc-json.ts'
export { AdaptiveWindow, MIN_HELD_RECEIVERS, fixedWindow, windowOpen, type RelayWindow } from './relay-window.ts'
export { MAX_MERGE, mergeInChunks } from './merge.ts'
