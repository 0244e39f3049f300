/**
 * One room: its Y.Doc, its presence, and the path of every accepted write through it.
 *
 * A write is applied to the doc at once (so the next sync answer has it), then goes two ways:
 * - broadcast: writes waiting to be relayed are merged into one update, encoded once into one frame
 *   (a lone update is relayed in the frame it arrived in), and handed to the fan-out channel. A
 *   quiet room relays at the end of the turn a write came in; a busy one relays at most once per
 *   relay window (a leading-edge throttle; relay-window.ts: by default the window opens only while
 *   the process is busy): the first write after a pause goes out at once, later ones wait at most
 *   the window and share one frame per receiver, so the cost of a fan-out (a socket write per
 *   receiver) is paid per window, not per keystroke;
 * - store: the room's log (room-log.ts) stores it and acknowledges its writer.
 *
 * Size cap: the room keeps an estimate of its document's encoded size (measured at load and at each
 * compaction, plus the length of every update applied since) and refuses a write that would take
 * it past `maxRoomBytes`, before applying it: one add and one compare per write, no encoding.
 *
 * Over 300 lines on purpose: the order of a write's checks (size, memory, integration cost), its
 * apply, relay and store reads top to bottom in one place; batching is broadcast-batch.ts, storing
 * room-log.ts, presence presence.ts.
 */

import * as Y from 'yjs'
import type { FastifyBaseLogger } from 'fastify'
import type { Actor } from '../../protocol/actor.ts'
import { type AwarenessEntry, readAwarenessUpdate, writeAwarenessUpdate } from '../../protocol/awareness.ts'
import { TandemError } from '../../protocol/errors.ts'
import { encodeFrame, writeAwareness, writeUpdate } from '../../protocol/messages.ts'
import type { Member, RoomChannel, Fanout } from './fanout.ts'
import type { Metrics } from '../metrics.ts'
import { Presence, type PresenceLimits, type PresenceResult } from './presence.ts'
import { estimateIntegration } from './integration-cost.ts'
import { type MemoryBudget, STRUCT_HEAP_BYTES } from './memory-budget.ts'
import { BroadcastBatch } from './broadcast-batch.ts'
import { RoomLog, type Writer } from './room-log.ts'
import type { DocumentStore } from '../store/types.ts'
import { type ItemRef, type UpdateSummary, validateUpdate } from './update-validator.ts'
import type { RelayWindow } from './relay-window.ts'

export type { Writer } from './room-log.ts'

/** A connection as the room sees it. */
export interface RoomMember extends Member, Writer {}

export interface RoomDeps {
  readonly store: DocumentStore
  readonly fanout: Fanout
  readonly metrics: Metrics
  readonly log: FastifyBaseLogger
  readonly compactAfterRecords: number
  readonly presenceLimits: PresenceLimits
  /** Largest estimated document size; see `Room.applyUpdate`. */
  readonly maxRoomBytes: number
  /** A busy room relays writes at most once per this window (0 ms: at the end of every turn). */
  readonly relayWindow: RelayWindow
  /** A busy room stores writes at most once per this many ms (see room-log.ts). */
  readonly storeWindowMs: number
  /** Integration budgets (integration-cost.ts): one update, the pending structs, a load. */
  readonly maxUpdateIntegrationSteps: number
  readonly maxPendingStructs: number
  readonly maxLoadIntegrationSteps: number
  /** Records up to this size are estimated at load (a larger one is a compaction snapshot). */
  readonly maxMessageBytes: number
  /** Largest estimated heap of one room's document (structs and content). */
  readonly maxRoomMemoryBytes: number
  /** The process-wide budget every loaded room takes its heap estimate from. */
  readonly memory: MemoryBudget
}

/** The origin of updates that other processes' rooms stored (fan-out across processes). */
const REMOTE = Symbol('remote')

/** Another process, as the owner of its clients' presence states here (it is never sent to). */
class RemoteOwner implements RoomMember {
  readonly actor: Actor
  constructor(readonly source: string) {
    this.actor = { kind: 'service', name: `process ${source}` }
  }
  send(): void {}
  acknowledge(): void {}
  writeDelayed(): void {}
}

/** Structs of a document: its struct store's lists, summed (one length per client). */
const countStructs = (doc: Y.Doc): number => {
  let n = 0
  for (const structs of doc.store.clients.values()) n += structs.length
  return n
}

/** The V1 update with no structs and no deletions. */
const isEmptyUpdate = (update: Uint8Array): boolean => update.length === 2 && update[0] === 0 && update[1] === 0

export class Room {
  readonly id: string
  readonly doc: Y.Doc
  readonly presence: Presence<RoomMember>
  readonly #channel: RoomChannel<RoomMember>
  readonly #deps: RoomDeps
  readonly #log: RoomLog
  /** Estimated encoded size of the document, in bytes (see the module comment). */
  #bytes: number
  /** Structs the document holds (exact at load and compaction, plus each update's since): its heap. */
  #structs: number
  /** What this room has taken from the process's memory budget. */
  #taken: number
  #destroyed = false
  /**
   * What a sync step 1 with an empty state vector gets (the whole document) and the presence frame
   * every joiner and query-awareness gets, each encoded once while unchanged: a reader asking again
   * and again costs a copy to its socket, not an encode of the document.
   */
  #fullState: Uint8Array | null = null
  #presenceFrame: Uint8Array | null = null
  /** The owners of other processes' presence, by process. */
  readonly #remoteOwners = new Map<string, RemoteOwner>()
  /** The items of the doc's pending structs, for the update that Yjs holds them in. */
  #pendingCache: { update: Uint8Array; items: readonly ItemRef[] } | null = null

  /** Applied updates waiting to be relayed (broadcast-batch.ts). */
  readonly #broadcast: BroadcastBatch<Writer>

  private constructor(id: string, doc: Y.Doc, stored: { firstSeq: number; lastSeq: number }, bytes: number, taken: number, deps: RoomDeps) {
    this.id = id
    this.doc = doc
    this.#bytes = bytes
    this.#structs = countStructs(doc)
    this.#deps = deps
    // Taken for the load's estimate; from now on this room holds its exact estimate.
    this.#taken = taken
    this.#rebalance()
    this.presence = new Presence(deps.presenceLimits)
    this.#channel = deps.fanout.open<RoomMember>(id, {
      update: (update) => this.#applyRemote(update),
      awareness: (awarenessUpdate, source) => this.#applyRemoteAwareness(awarenessUpdate, source),
      sourceGone: (source) => {
        const owner = this.#remoteOwners.get(source)
        if (owner === undefined) return
        this.#remoteOwners.delete(source)
        const removals = this.presence.removeOwner(owner)
        if (removals.length > 0) this.#relayAwareness(removals, null, false)
      },
      localPresence: () => {
        const entries = this.presence.snapshot((owner) => !(owner instanceof RemoteOwner))
        return entries.length === 0 ? null : writeAwarenessUpdate(entries)
      },
    })
    // A batch from one writer skips that writer; a mixed batch goes to all (Yjs ignores echoes).
    this.#broadcast = new BroadcastBatch<Writer>(
      deps.relayWindow,
      (frame, origin) => this.#channel.broadcast(frame, origin),
      () => this.#channel.size,
    )
    // A compaction's snapshot is the whole document: the estimates become exact again.
    this.#log = new RoomLog(id, doc, stored, deps, (snapshotBytes) => {
      this.#bytes = snapshotBytes
      this.#structs = countStructs(doc)
      this.#rebalance()
    })
  }

  /**
   * Loads a room's stored state. A store failure rejects: a room is never opened empty instead. So
   * does a stored log whose integration would stall the process (written before the integration
   * budget existed): its updates are estimated as a live update is, against the load's budget.
   */
  static async load(id: string, deps: RoomDeps): Promise<Room> {
    const stored = await deps.metrics.timeStore('load', () => deps.store.load(id))
    // What the log will hold in memory, known before any of it is built: a load the process's
    // budget cannot take is refused (try again later), never built to crash the process.
    let estimate = 0
    for (const update of stored.updates) estimate += update.length + STRUCT_HEAP_BYTES * validateUpdate(update, { items: false }).structs
    if (!deps.memory.tryTake(estimate)) {
      throw new TandemError('unavailable', 'this server holds as many documents as its memory allows; try again later')
    }
    const doc = new Y.Doc({ gc: true })
    try {
      let steps = 0
      doc.transact(() => {
        for (const update of stored.updates) {
          if (update.length <= deps.maxMessageBytes) {
            steps += estimateIntegration(doc, validateUpdate(update).items, deps.maxLoadIntegrationSteps - steps).steps
            if (steps > deps.maxLoadIntegrationSteps) {
              deps.log.error(
                { roomId: id, limit: deps.maxLoadIntegrationSteps },
                'room not loaded: its stored updates would take too long to integrate (maxLoadIntegrationSteps)',
              )
              throw new TandemError('server_error', "this room's stored document is too costly to load; the operator can raise maxLoadIntegrationSteps")
            }
          }
          Y.applyUpdate(doc, update)
        }
      })
    } catch (err) {
      deps.memory.give(estimate)
      doc.destroy()
      throw err
    }
    // One stored record is a snapshot (or a lone update): its length is the size. A longer log is
    // measured once, at the cost of the load that just replayed it.
    const bytes = stored.updates.length === 1 ? stored.updates[0]!.length : Y.encodeStateAsUpdate(doc).length
    return new Room(id, doc, stored, bytes, estimate, deps)
  }

  /** Structs the document holds (an estimate between compactions: merged ones still count). */
  get structCount(): number {
    return this.#structs
  }

  /**
   * Whether the document already holds everything `update` has (a reader's state, answered as
   * stored when it adds nothing). Costs a walk of the document's structs: callers budget it.
   */
  containsUpdate(update: Uint8Array): boolean {
    return Y.snapshotContainsUpdate(Y.snapshot(this.doc), update)
  }

  /** Estimated heap of the document: its structs and their content. */
  get estimatedMemory(): number {
    return this.#structs * STRUCT_HEAP_BYTES + this.#bytes
  }

  /** Makes what this room holds in the process's budget its current estimate. */
  #rebalance(): void {
    const now = this.estimatedMemory
    if (now > this.#taken) this.#deps.memory.take(now - this.#taken)
    else this.#deps.memory.give(this.#taken - now)
    this.#taken = now
  }

  get size(): number {
    return this.#channel.size
  }

  /** The sync step 2 answer to a (validated) state vector: the cached whole document for an empty one. */
  syncAnswer(stateVector: Uint8Array): Uint8Array {
    if (stateVector.length !== 1 || stateVector[0] !== 0) return Y.encodeStateAsUpdate(this.doc, stateVector)
    this.#fullState ??= Y.encodeStateAsUpdate(this.doc)
    return this.#fullState
  }

  /** Every presence state as one awareness frame (null when there is none), encoded once per change. */
  presenceFrame(): Uint8Array | null {
    if (this.#presenceFrame === null) {
      const entries = this.presence.snapshot()
      if (entries.length === 0) return null
      this.#presenceFrame = encodeFrame(writeAwareness, writeAwarenessUpdate(entries))
    }
    return this.#presenceFrame
  }

  /** Estimated encoded size of the document. */
  get estimatedBytes(): number {
    return this.#bytes
  }

  /** Records in the stored log (for tests and operations). */
  get storedRecords(): number {
    return this.#log.records
  }

  members(): IterableIterator<RoomMember> {
    return this.#channel.members()
  }

  join(member: RoomMember): void {
    this.#channel.join(member)
  }

  /** Removes a member and its presence; says whether the room is now empty. */
  leave(member: RoomMember): boolean {
    this.#channel.leave(member)
    const removals = this.presence.removeOwner(member)
    if (removals.length > 0) this.#relayAwareness(removals, null, true)
    return this.#channel.size === 0
  }

  /**
   * The estimated integration work of a validated update (integration-cost.ts), counting the
   * room's pending structs it may complete. Throws `update_too_costly` past the update budget, or
   * when it would leave more structs waiting for missing dependencies than the room may hold.
   */
  integrationCost(summary: UpdateSummary): number {
    const pending = this.#pendingItems()
    const items = pending.length === 0 ? summary.items : [...summary.items, ...pending]
    const budget = this.#deps.maxUpdateIntegrationSteps
    const { steps, missing } = estimateIntegration(this.doc, items, budget)
    if (steps > budget) {
      this.#deps.metrics.rejected.too_costly++
      throw new TandemError('update_too_costly', `integrating this update would take more than ${budget} steps (maxUpdateIntegrationSteps)`)
    }
    if (missing > this.#deps.maxPendingStructs) {
      this.#deps.metrics.rejected.too_costly++
      throw new TandemError('update_too_costly', `more than ${this.#deps.maxPendingStructs} structs would wait for missing dependencies (maxPendingStructs)`)
    }
    return steps
  }

  /** The items Yjs holds back for missing dependencies (V2 inside Yjs), decoded once per change. */
  #pendingItems(): readonly ItemRef[] {
    const pending = this.doc.store.pendingStructs
    if (pending === null) return []
    if (this.#pendingCache?.update !== pending.update) {
      this.#pendingCache = { update: pending.update, items: validateUpdate(Y.convertUpdateFormatV2ToV1(pending.update)).items }
    }
    return this.#pendingCache.items
  }

  /**
   * Applies a validated update by `origin` (its Yjs clientIDs from validation) and queues it for
   * the fan-out and the store. `frame`, when given, is the sync-update frame it arrived in, byte for
   * byte what the fan-out would encode. Throws if Yjs refuses the update; nothing is then queued.
   * Throws `message_too_large` (nothing applied, queued or relayed) if the update would take the
   * document past `maxRoomBytes`.
   */
  applyUpdate(update: Uint8Array, origin: Writer, summary: Pick<UpdateSummary, 'clients' | 'structs'>, frame: Uint8Array | null = null): void {
    const clientIDs = summary.clients
    if (isEmptyUpdate(update)) {
      // Nothing to apply, relay or store (a reconnecting client's step 2 often is this), but the
      // writer still counts it, so it is acknowledged in order with its other writes.
      this.#log.append(null, origin, clientIDs)
      return
    }
    if (this.#bytes + update.length > this.#deps.maxRoomBytes) {
      this.#deps.metrics.rejected.too_large++
      throw new TandemError('message_too_large', `the room's document would pass its size limit of ${this.#deps.maxRoomBytes} bytes`)
    }
    // Memory, by what the document will hold (about 500 bytes a struct), not by wire bytes: small
    // items that cannot merge cost far more heap than their bytes.
    const memory = summary.structs * STRUCT_HEAP_BYTES + update.length
    if (this.estimatedMemory + memory > this.#deps.maxRoomMemoryBytes) {
      this.#deps.metrics.rejected.too_large++
      throw new TandemError(
        'message_too_large',
        `the room's document would pass its memory limit of ${this.#deps.maxRoomMemoryBytes} bytes (maxRoomMemoryBytes)`,
      )
    }
    if (!this.#deps.memory.tryTake(memory)) {
      throw new TandemError('unavailable', 'this server holds as many documents as its memory allows; try again later')
    }
    this.#taken += memory
    this.#fullState = null
    Y.applyUpdate(this.doc, update, origin)
    this.#bytes += update.length
    this.#structs += summary.structs
    this.#deps.metrics.updatesApplied++

    this.#broadcast.add(update, origin, frame)

    this.#log.append(update, origin, clientIDs)
  }

  /**
   * Counts a write that was refused (a reader's), so acknowledgements stay in step with what the
   * writer sent: its `saved` count covers every write handled, stored or not.
   */
  skipWrite(origin: Writer): void {
    this.#log.append(null, origin, [])
  }

  /** Applies awareness entries from `member` and relays what it may set. */
  applyAwareness(member: RoomMember, frame: Uint8Array, entries: readonly AwarenessEntry[]): PresenceResult {
    const result = this.presence.apply(member, entries)
    if (result.accepted.length > 0) this.#presenceFrame = null
    if (result.replies.length > 0) member.send(encodeFrame(writeAwareness, writeAwarenessUpdate(result.replies)))
    if (result.accepted.length === entries.length) {
      // Nothing was dropped: relay the frame as received, without re-encoding it.
      if (entries.length > 0) {
        this.#channel.broadcast(frame, member)
        this.#channel.shareAwareness(entries)
      }
    } else if (result.accepted.length > 0) {
      this.#relayAwareness(result.accepted, member, true)
    }
    return result
  }

  /** Relays awareness entries the server decided on (removals of a member's states). */
  relayAwareness(entries: readonly AwarenessEntry[], except: RoomMember | null): void {
    this.#relayAwareness(entries, except, true)
  }

  /** Relays the waiting writes to the room now: merged into one update, encoded once for all. */
  flushBroadcast(): void {
    this.#broadcast.flush()
  }

  /** Resolves once every write applied so far is stored (not the ones that arrive meanwhile). */
  flush(): Promise<void> {
    this.flushBroadcast()
    return this.#log.flush()
  }

  /** The room is going (shutdown): a failing store is retried a little longer, then given up on. */
  closing(): void {
    this.#log.closing()
  }

  /** Stores what was applied, compacts the log to one record, and frees the doc. */
  async close(): Promise<void> {
    if (this.#destroyed) return
    this.flushBroadcast()
    await this.#log.close()
    this.#destroy()
  }

  /** Drops the room without storing anything more (it is being deleted); waits for a write in flight. */
  async discard(): Promise<void> {
    this.#broadcast.discard()
    await this.#log.discard()
    this.#destroy()
  }

  #destroy(): void {
    if (this.#destroyed) return
    this.#destroyed = true
    this.#deps.memory.give(this.#taken)
    this.#taken = 0
    this.#channel.close()
    this.doc.destroy()
  }

  #applyRemote(update: Uint8Array): void {
    // Already accepted by another process: applied whatever its size, and counted.
    this.#fullState = null
    Y.applyUpdate(this.doc, update, REMOTE)
    this.#bytes += update.length
    this.#structs += validateUpdate(update, { items: false }).structs
    this.#rebalance()
    this.#channel.broadcast(encodeFrame(writeUpdate, update))
  }

  /** Relays presence to the members here; `share`: it was decided here, so other processes hear it too. */
  #relayAwareness(entries: readonly AwarenessEntry[], except: RoomMember | null, share: boolean): void {
    this.#presenceFrame = null
    this.#channel.broadcast(encodeFrame(writeAwareness, writeAwarenessUpdate(entries)), except)
    if (share) this.#channel.shareAwareness(entries)
  }

  /** Presence of another process's clients: owned by that process, already capped per client there. */
  #applyRemoteAwareness(awarenessUpdate: Uint8Array, source: string): void {
    let owner = this.#remoteOwners.get(source)
    if (owner === undefined) {
      owner = new RemoteOwner(source)
      this.#remoteOwners.set(source, owner)
    }
    const result = this.presence.apply(owner, readAwarenessUpdate(awarenessUpdate), Number.POSITIVE_INFINITY)
    if (result.accepted.length > 0) this.#relayAwareness(result.accepted, null, false)
  }
}
