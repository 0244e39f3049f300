/**
 * A room's awareness (presence) states, bound to the connections that own them. The server keeps
 * each state as the JSON text it received and relays it as is; it parses it once, only to refuse
 * text that would throw in every receiving client.
 *
 * Ownership is the security rule here: the first connection to use a clientID owns it until it
 * closes; another connection may neither set nor remove that clientID's state (SPEC section 9).
 */

import { type AwarenessEntry, REMOVED_STATE } from '../protocol/awareness.ts'

interface Record<O> {
  owner: O
  clock: number
  state: string
}

export interface PresenceLimits {
  maxAwarenessClients: number
  maxAwarenessStateBytes: number
}

export interface PresenceResult {
  /** Entries to relay to the room (they changed something). */
  readonly accepted: AwarenessEntry[]
  /** Entries dropped because another connection owns the clientID or the owner is over its cap. */
  readonly forbidden: number
  /** Entries dropped because their state is oversized or not JSON. */
  readonly invalid: number
}

const isJson = (text: string): boolean => {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

export class Presence<O> {
  readonly #records = new Map<number, Record<O>>()
  readonly #owned = new Map<O, Set<number>>()
  readonly #limits: PresenceLimits

  constructor(limits: PresenceLimits) {
    this.#limits = limits
  }

  /** Applies entries sent by `owner`, keeping y-protocols' clock rule, and says what to relay. */
  apply(owner: O, entries: readonly AwarenessEntry[]): PresenceResult {
    const accepted: AwarenessEntry[] = []
    let forbidden = 0
    let invalid = 0
    for (const entry of entries) {
      const record = this.#records.get(entry.clientID)
      if (record !== undefined && record.owner !== owner) {
        forbidden++ // someone else's clientID: spoofing or removing another user's cursor
        continue
      }
      if (entry.state.length > this.#limits.maxAwarenessStateBytes || !isJson(entry.state)) {
        invalid++
        continue
      }
      if (record === undefined) {
        const owned = this.#owned.get(owner) ?? new Set<number>()
        if (owned.size >= this.#limits.maxAwarenessClients) {
          forbidden++
          continue
        }
        owned.add(entry.clientID)
        this.#owned.set(owner, owned)
        this.#records.set(entry.clientID, { owner, clock: entry.clock, state: entry.state })
        accepted.push(entry)
        continue
      }
      const removes = entry.state === REMOVED_STATE
      if (record.clock < entry.clock || (record.clock === entry.clock && removes && record.state !== REMOVED_STATE)) {
        record.clock = entry.clock
        record.state = entry.state
        accepted.push(entry)
      }
    }
    return { accepted, forbidden, invalid }
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
      if (record !== undefined && record.state !== REMOVED_STATE) {
        removals.push({ clientID, clock: record.clock + 1, state: REMOVED_STATE })
      }
    }
    return removals
  }

  /** Every live state, for a newcomer or a query. */
  snapshot(): AwarenessEntry[] {
    const entries: AwarenessEntry[] = []
    for (const [clientID, record] of this.#records) {
      if (record.state !== REMOVED_STATE) entries.push({ clientID, clock: record.clock, state: record.state })
    }
    return entries
  }

  get size(): number {
    return this.#records.size
  }
}
