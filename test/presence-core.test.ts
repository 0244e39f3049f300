/**
 * Presence ownership on the Presence class alone (no room, no socket), with plain objects as the
 * connections that own states: the first owner of a clientID keeps it, nobody else may set or
 * remove it; caps per owner and per room; the state size cap in UTF-8 bytes; invalid JSON and
 * absurd clocks dropped; y-protocols' clock rule; and the tombstones an owner's departure leaves,
 * which answer echoes of its states instead of letting them claim the clientID.
 */

import { describe, expect, it } from 'vitest'
import type { AwarenessEntry } from '../protocol/awareness.ts'
import { Presence, type PresenceLimits } from '../server/rooms/presence.ts'

interface Owner {
  readonly name: string
}

const LIMITS: PresenceLimits = { maxAwarenessClients: 2, maxAwarenessStateBytes: 64, maxAwarenessEntriesPerRoom: 4 }

const owner = (name: string): Owner => ({ name })
const entry = (clientID: number, clock: number, state: unknown = { cursor: clock }): AwarenessEntry => ({
  clientID,
  clock,
  state: typeof state === 'string' ? state : JSON.stringify(state),
})
const removal = (clientID: number, clock: number): AwarenessEntry => ({ clientID, clock, state: 'null' })

const setup = (limits: Partial<PresenceLimits> = {}) => new Presence<Owner>({ ...LIMITS, ...limits })

const result = (accepted: AwarenessEntry[] = [], extra: { replies?: AwarenessEntry[]; forbidden?: number; invalid?: number } = {}) => ({
  accepted,
  replies: extra.replies ?? [],
  forbidden: extra.forbidden ?? 0,
  invalid: extra.invalid ?? 0,
})

describe('ownership', () => {
  it('the first connection to use a clientID owns it', () => {
    const presence = setup()
    const a = owner('a')
    const first = entry(1, 0)
    expect(presence.apply(a, [first])).toEqual(result([first]))
    expect(presence.snapshot()).toEqual([first])
    expect(presence.size).toBe(1)
  })

  it('another connection can neither set nor remove an owned clientID', () => {
    const presence = setup()
    const [a, b] = [owner('a'), owner('b')]
    presence.apply(a, [entry(1, 3)])
    expect(presence.apply(b, [entry(1, 4, { spoofed: true })])).toEqual(result([], { forbidden: 1 }))
    expect(presence.apply(b, [removal(1, 4)])).toEqual(result([], { forbidden: 1 }))
    // Even at a clock far ahead, and mixed with its own entry.
    const own = entry(2, 0)
    expect(presence.apply(b, [removal(1, 100), own])).toEqual(result([own], { forbidden: 1 }))
    expect(presence.snapshot()).toEqual([entry(1, 3), own])
  })

  it('the owner updates at a higher clock; the same or a lower clock changes nothing', () => {
    const presence = setup()
    const a = owner('a')
    presence.apply(a, [entry(1, 5)])
    expect(presence.apply(a, [entry(1, 5, { cursor: 'stale' })])).toEqual(result())
    expect(presence.apply(a, [entry(1, 4)])).toEqual(result())
    const next = entry(1, 6, { cursor: 'moved' })
    expect(presence.apply(a, [next])).toEqual(result([next]))
    expect(presence.snapshot()).toEqual([next])
  })

  it('the owner removes its state at the same clock, once; a higher clock sets it again', () => {
    const presence = setup()
    const a = owner('a')
    presence.apply(a, [entry(1, 5)])
    expect(presence.apply(a, [removal(1, 5)])).toEqual(result([removal(1, 5)]))
    expect(presence.snapshot()).toEqual([])
    expect(presence.apply(a, [removal(1, 5)])).toEqual(result())
    // The clientID is still the owner's: another connection may not take it.
    expect(presence.apply(owner('b'), [entry(1, 6)])).toEqual(result([], { forbidden: 1 }))
    expect(presence.apply(a, [entry(1, 6)])).toEqual(result([entry(1, 6)]))
  })

  it('a removal of an unknown clientID claims nothing', () => {
    const presence = setup()
    const [a, b] = [owner('a'), owner('b')]
    expect(presence.apply(a, [removal(7, 2)])).toEqual(result())
    expect(presence.size).toBe(0)
    expect(presence.apply(b, [entry(7, 0)])).toEqual(result([entry(7, 0)]))
  })

  it('snapshot lists live states, of the owners picked when asked', () => {
    const presence = setup()
    const [a, b] = [owner('a'), owner('b')]
    presence.apply(a, [entry(1, 1), entry(2, 1)])
    presence.apply(b, [entry(3, 1)])
    presence.apply(a, [removal(2, 1)])
    expect(presence.snapshot()).toEqual([entry(1, 1), entry(3, 1)])
    expect(presence.snapshot((o) => o === b)).toEqual([entry(3, 1)])
    expect(presence.size).toBe(3) // a removed state stays owned
  })
})

describe('caps', () => {
  it('one connection owns at most maxAwarenessClients clientIDs, removed ones included', () => {
    const presence = setup()
    const [a, b] = [owner('a'), owner('b')]
    expect(presence.apply(a, [entry(1, 0), entry(2, 0), entry(3, 0)])).toEqual(result([entry(1, 0), entry(2, 0)], { forbidden: 1 }))
    presence.apply(a, [removal(2, 0)])
    expect(presence.apply(a, [entry(3, 0)])).toEqual(result([], { forbidden: 1 }))
    // The cap is per connection: another one may take the clientID.
    expect(presence.apply(b, [entry(3, 0)])).toEqual(result([entry(3, 0)]))
  })

  it('a caller may pass its own per-owner cap', () => {
    const presence = setup({ maxAwarenessEntriesPerRoom: 10 })
    const relay = owner('another process')
    const entries = [1, 2, 3, 4, 5].map((id) => entry(id, 0))
    expect(presence.apply(relay, entries, Number.POSITIVE_INFINITY)).toEqual(result(entries))
    expect(presence.apply(owner('b'), [entry(6, 0), entry(7, 0)], 1)).toEqual(result([entry(6, 0)], { forbidden: 1 }))
  })

  it('a room holds at most maxAwarenessEntriesPerRoom clientIDs, whoever asks', () => {
    const presence = setup()
    const [a, b, c] = [owner('a'), owner('b'), owner('c')]
    presence.apply(a, [entry(1, 0), entry(2, 0)])
    presence.apply(b, [entry(3, 0), entry(4, 0)])
    expect(presence.apply(c, [entry(5, 0)])).toEqual(result([], { forbidden: 1 }))
    expect(presence.apply(c, [entry(5, 0)], Number.POSITIVE_INFINITY)).toEqual(result([], { forbidden: 1 }))
    // Owners already in keep updating theirs.
    expect(presence.apply(a, [entry(1, 1)])).toEqual(result([entry(1, 1)]))
    // A departure frees room.
    presence.removeOwner(b)
    expect(presence.apply(c, [entry(5, 0)])).toEqual(result([entry(5, 0)]))
  })

  it('a state over maxAwarenessStateBytes is invalid, counted in UTF-8 bytes', () => {
    const presence = setup()
    const a = owner('a')
    const fits = JSON.stringify('é'.repeat(31)) // 33 characters, 64 bytes
    const over = JSON.stringify('é'.repeat(32)) // 34 characters, 66 bytes
    expect(Buffer.byteLength(fits)).toBe(64)
    expect(over.length).toBeLessThan(64)
    expect(presence.apply(a, [entry(1, 0, over)])).toEqual(result([], { invalid: 1 }))
    expect(presence.apply(a, [entry(1, 0, fits)])).toEqual(result([entry(1, 0, fits)]))
    expect(presence.apply(a, [entry(1, 1, JSON.stringify('x'.repeat(63)))])).toEqual(result([], { invalid: 1 }))
    expect(presence.snapshot()).toEqual([entry(1, 0, fits)])
  })
})

describe('invalid entries', () => {
  it.each(['{"cursor":', 'undefined', '', "{'a':1}", 'NaN'])('state %j is not JSON: dropped, claims nothing', (state) => {
    const presence = setup()
    expect(presence.apply(owner('a'), [entry(1, 0, state)])).toEqual(result([], { invalid: 1 }))
    expect(presence.size).toBe(0)
    expect(presence.apply(owner('b'), [entry(1, 0)])).toEqual(result([entry(1, 0)]))
  })

  it('any JSON value is a state', () => {
    const presence = setup({ maxAwarenessClients: 10, maxAwarenessEntriesPerRoom: 10 })
    const entries = ['1', '"text"', '[]', 'true', '{}'].map((state, i) => entry(i + 1, 0, state))
    expect(presence.apply(owner('a'), entries)).toEqual(result(entries))
  })

  it('clocks past 2^32 are dropped', () => {
    const presence = setup()
    const a = owner('a')
    expect(presence.apply(a, [entry(1, 2 ** 32 + 1)])).toEqual(result([], { invalid: 1 }))
    expect(presence.apply(a, [entry(1, 2 ** 32)])).toEqual(result([entry(1, 2 ** 32)]))
    expect(presence.apply(a, [removal(1, 2 ** 32 + 1)])).toEqual(result([], { invalid: 1 }))
  })

  it('a clock jumping more than 2^20 at once is dropped; a first state may start anywhere', () => {
    const presence = setup()
    const a = owner('a')
    expect(presence.apply(a, [entry(1, 2 ** 31)])).toEqual(result([entry(1, 2 ** 31)]))
    expect(presence.apply(a, [entry(1, 2 ** 31 + 2 ** 20 + 1)])).toEqual(result([], { invalid: 1 }))
    expect(presence.apply(a, [entry(1, 2 ** 31 + 2 ** 20)])).toEqual(result([entry(1, 2 ** 31 + 2 ** 20)]))
  })

  it('counts each kind of drop in one message and relays the rest', () => {
    const presence = setup()
    const [a, b] = [owner('a'), owner('b')]
    presence.apply(b, [entry(9, 0)])
    const good = entry(1, 0)
    const r = presence.apply(a, [entry(9, 1), entry(2, 0, '{'), good, entry(3, 2 ** 33)])
    expect(r).toEqual(result([good], { forbidden: 1, invalid: 2 }))
  })
})

describe('departures and tombstones', () => {
  it('removeOwner removes its live states at their current clock and forgets them', () => {
    const presence = setup()
    const [a, b] = [owner('a'), owner('b')]
    presence.apply(a, [entry(1, 7), entry(2, 3)])
    presence.apply(a, [removal(2, 3)])
    presence.apply(b, [entry(3, 1)])
    // Only the live state needs a removal relayed.
    expect(presence.removeOwner(a)).toEqual([removal(1, 7)])
    expect(presence.snapshot()).toEqual([entry(3, 1)])
    expect(presence.size).toBe(1)
    expect(presence.removeOwner(a)).toEqual([])
    expect(presence.removeOwner(owner('never seen'))).toEqual([])
  })

  it('a state at or below the tombstone is answered with the tombstone, and not accepted', () => {
    const presence = setup()
    const [a, echoer] = [owner('a'), owner('echoer')]
    presence.apply(a, [entry(1, 7)])
    presence.removeOwner(a)
    for (const clock of [7, 6, 0]) {
      expect(presence.apply(echoer, [entry(1, clock)])).toEqual(result([], { replies: [removal(1, 7)] }))
    }
    expect(presence.size).toBe(0)
    // An echo of the removal itself claims nothing and needs no answer.
    expect(presence.apply(echoer, [removal(1, 7)])).toEqual(result())
    expect(presence.size).toBe(0)
  })

  it('a removed state leaves its tombstone too', () => {
    const presence = setup()
    const a = owner('a')
    presence.apply(a, [entry(4, 2)])
    presence.apply(a, [removal(4, 3)])
    expect(presence.removeOwner(a)).toEqual([])
    expect(presence.apply(owner('b'), [entry(4, 3)])).toEqual(result([], { replies: [removal(4, 3)] }))
  })

  it('a state above the tombstone is accepted and claims the clientID', () => {
    const presence = setup()
    const [a, back, other] = [owner('a'), owner('a again'), owner('other')]
    presence.apply(a, [entry(1, 7)])
    presence.removeOwner(a)
    expect(presence.apply(back, [entry(1, 8)])).toEqual(result([entry(1, 8)]))
    expect(presence.snapshot()).toEqual([entry(1, 8)])
    // Claimed: the tombstone is gone, and others are refused as for any owned clientID.
    expect(presence.apply(other, [entry(1, 9)])).toEqual(result([], { forbidden: 1 }))
    expect(presence.apply(other, [entry(1, 7)])).toEqual(result([], { forbidden: 1 }))
    // Its next departure leaves a tombstone at the new clock.
    expect(presence.removeOwner(back)).toEqual([removal(1, 8)])
    expect(presence.apply(other, [entry(1, 8)])).toEqual(result([], { replies: [removal(1, 8)] }))
    expect(presence.apply(other, [entry(1, 9)])).toEqual(result([entry(1, 9)]))
  })

  it('an owner at its cap still gets the tombstone answer, not a refusal', () => {
    const presence = setup({ maxAwarenessClients: 1 })
    const [a, b] = [owner('a'), owner('b')]
    presence.apply(a, [entry(1, 5)])
    presence.removeOwner(a)
    presence.apply(b, [entry(3, 0)])
    expect(presence.apply(b, [entry(1, 5)])).toEqual(result([], { replies: [removal(1, 5)] }))
  })
})
