/**
 * A room's awareness (presence) states, bound to the connections that own them. The server keeps
 * each state as the JSON text it received and relays it as is; it parses it once, only to refuse
 * text that would throw in every receiving client.
 *
 * Ownership is the security rule here: the first connection to use a clientID owns it until it
 * closes; another connection may neither set nor remove that clientID's state (SPEC section 9).
 *
 * When an owner leaves, its states are removed at their current clock (as y-websocket-server does)
 * and a tombstone remembers that clock. The stock client echoes every awareness change it sees, so
 * echoes of a departed client must not claim its clientID: a removal of an unknown clientID claims
 * nothing, and a state at or below the tombstone's clock is answered with the tombstone instead.
 * y-protocols makes the genuine owner answer that by bumping its clock, which then claims it.
 */

import { type AwarenessEntry, REMOVED_STATE } from '../../protocol/awareness.ts'

interface OwnedState<O> {
  owner: O
  clock: number
  state: string
}

export interface PresenceLimits {
  maxAwarenessClients: number
  maxAwarenessStateBytes: number
  maxAwarenessEntriesPerRoom: number
}

export interface PresenceResult {
  /** Entries to relay to the room (they changed something). */
  readonly accepted: AwarenessEntry[]
  /** Entries to send back to the sender only: tombstones of clientIDs it tried to reclaim. */
  readonly replies: AwarenessEntry[]
  /** Entries dropped because another connection owns the clientID, or the owner or room is over its cap. */
  readonly forbidden: number
  /** Entries dropped because their state is oversized or not JSON. */
  readonly invalid: number
}

/** Clocks past this, or jumping further than MAX_CLOCK_STEP at once, are absurd (SPEC section 9). */
const MAX_CLOCK = 2 ** 32
const MAX_CLOCK_STEP = 2 ** 20
const MAX_TOMBSTONES = 10_000

const isJson = (text: string): boolean => {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

export class Presence<O> {
  readonly #records = new Map<number, OwnedState<O>>()
  readonly #owned = new Map<O, Set<number>>()
  readonly #tombstones = new Map<number, number>()
  readonly #limits: PresenceLimits

  constructor(limits: PresenceLimits) {
    this.#limits = limits
  }

  /**
   * Applies entries sent by `owner`, keeping y-protocols' clock rule, and says what to relay.
   * `perOwner` caps the clientIDs one owner holds (default: a connection's cap; another process,
   * relaying many connections already capped there, passes its own).
   */
  apply(owner: O, entries: readonly AwarenessEntry[], perOwner = this.#limits.maxAwarenessClients): PresenceResult {
    const accepted: AwarenessEntry[] = []
    const replies: AwarenessEntry[] = []
    let forbidden = 0
    let invalid = 0
    for (const entry of entries) {
      const record = this.#records.get(entry.clientID)
      if (record !== undefined && record.owner !== owner) {
        forbidden++ // someone else's clientID: spoofing or removing another user's cursor
        continue
      }
      const removes = entry.state === REMOVED_STATE
      if (
        entry.clock > MAX_CLOCK ||
        (record !== undefined && entry.clock - record.clock > MAX_CLOCK_STEP) ||
        Buffer.byteLength(entry.state) > this.#limits.maxAwarenessStateBytes ||
        (!removes && !isJson(entry.state))
      ) {
        invalid++
        continue
      }
      if (record === undefined) {
        if (removes) continue // an echo of a removal: claims nothing
        const tombstone = this.#tombstones.get(entry.clientID)
        if (tombstone !== undefined && entry.clock <= tombstone) {
          replies.push({ clientID: entry.clientID, clock: tombstone, state: REMOVED_STATE })
          continue
        }
        const owned = this.#owned.get(owner) ?? new Set<number>()
        // Per owner, and per room: many connections together must not grow the room without bound.
        if (owned.size >= perOwner || this.#records.size >= this.#limits.maxAwarenessEntriesPerRoom) {
          forbidden++
          continue
        }
        owned.add(entry.clientID)
        this.#owned.set(owner, owned)
        this.#tombstones.delete(entry.clientID)
        this.#records.set(entry.clientID, { owner, clock: entry.clock, state: entry.state })
        accepted.push(entry)
        continue
      }
      if (record.clock < entry.clock || (record.clock === entry.clock && removes && record.state !== REMOVED_STATE)) {
        record.clock = entry.clock
        record.state = entry.state
        accepted.push(entry)
      }
    }
    return { accepted, replies, forbidden, invalid }
  }

  /** Forgets everything `owner` set and returns the removals to relay. */
  removeOwner(owner: O): AwarenessEntry[] {
    const owned = this.#owned.get(owner)
    if (owned === undefined) return []
    this.#owned.delete(owner)
    const removals: AwarenessEntry[] = []
    for (const clientID of owned) {
      const record = this.#records.get(clientID)
      this.#records.delete(clientID)
      if (record === undefined) continue
      this.#tombstones.delete(clientID)
      this.#tombstones.set(clientID, record.clock)
      if (this.#tombstones.size > MAX_TOMBSTONES) this.#tombstones.delete(this.#tombstones.keys().next().value!)
      if (record.state !== REMOVED_STATE) removals.push({ clientID, clock: record.clock, state: REMOVED_STATE })
    }
    return removals
  }

  /** Every live state (of the owners `which` picks, when given), for a newcomer or a query. */
  snapshot(which?: (owner: O) => boolean): AwarenessEntry[] {
    const entries: AwarenessEntry[] = []
    for (const [clientID, record] of this.#records) {
      if (record.state !== REMOVED_STATE && (which === undefined || which(record.owner))) entries.push({ clientID, clock: record.clock, state: record.state })
    }
    return entries
  }

  get size(): number {
    return this.#records.size
  }
}
