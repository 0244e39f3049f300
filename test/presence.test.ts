/**
 * Awareness (presence) over real sockets, with raw clients and the stock y-websocket client: states
 * reach the others, each clientID belongs to the connection that first used it (SPEC sections 3 and
 * 9), states are capped and checked, malformed payloads close the sender, stale clocks never win, and
 * a quiet socket gets keepalives.
 *
 * "Not relayed" is checked behind an ordering barrier, never a sleep: after the refused entries, the
 * same connection sends a good one; once that has reached the observers, the refused ones would have
 * reached them first (one socket's frames are handled and relayed in order).
 */

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { WebSocket as WsSocket } from 'ws'
import { type AwarenessEntry, REMOVED_STATE, readAwarenessUpdate, writeAwarenessUpdate } from '../protocol/awareness.ts'
import { CloseCode } from '../protocol/errors.ts'
import { encodeFrame, writeAwareness, writeQueryAwareness } from '../protocol/messages.ts'
import { type RawClient, rawClient } from './support/raw-client.ts'
import { type TestServer, startServer } from './support/server.ts'
import { type StockPeer, stockPeer, synced } from './support/stock-client.ts'
import { until, withDeadline } from './support/wait.ts'

const OPEN = 1
const MAX_CLIENTS = 3
const MAX_STATE_BYTES = 1024

// --- helpers -----------------------------------------------------------------------------------

/** An entry with `state` as JSON; `null` is a removal. */
const entry = (clientID: number, clock: number, state: unknown): AwarenessEntry => ({
  clientID,
  clock,
  state: state === null ? REMOVED_STATE : JSON.stringify(state),
})

const awarenessFrame = (...entries: AwarenessEntry[]): Uint8Array => encodeFrame(writeAwareness, writeAwarenessUpdate(entries))

/** Awareness messages a raw client received from message index `from` on, decoded. */
const awarenessMessages = (client: RawClient, from = 0): AwarenessEntry[][] =>
  client.messages.slice(from).flatMap((m) => (m.kind === 'awareness' ? [readAwarenessUpdate(m.update)] : []))

const received = (client: RawClient, from = 0): AwarenessEntry[] => awarenessMessages(client, from).flat()

const receives = (what: string, client: RawClient, match: (e: AwarenessEntry) => boolean, from = 0): Promise<void> =>
  until(what, client.socket, ['message'], () => received(client, from).some(match))

/** The first awareness message at or after `from`, once it is there. */
const nextAwareness = async (client: RawClient, from: number): Promise<AwarenessEntry[]> => {
  await until('an awareness message', client.socket, ['message'], () => awarenessMessages(client, from).length > 0)
  return awarenessMessages(client, from)[0]!
}

const is =
  (clientID: number, clock?: number) =>
  (e: AwarenessEntry): boolean =>
    e.clientID === clientID && (clock === undefined || e.clock === clock)

const states = (peer: StockPeer): Map<number, Record<string, unknown>> => peer.provider.awareness.getStates() as Map<number, Record<string, unknown>>

const stockSees = (what: string, peer: StockPeer, check: (s: Map<number, Record<string, unknown>>) => boolean): Promise<void> =>
  until(what, peer.provider.awareness, ['change', 'update'], () => check(states(peer)))

const raws: RawClient[] = []
const peers: StockPeer[] = []

/** A raw client in the room: authenticated (Tandem mode unless `compat`) and synced. */
const member = async (server: TestServer, room: string, compat = false): Promise<RawClient> => {
  const client = await rawClient(server.syncUrl, room, { auth: !compat })
  raws.push(client)
  await client.next('sync-step-2')
  return client
}

/** A synced stock client whose first state (`{}`, sent on connect) has reached the raw clients `seenBy`. */
const stock = async (server: TestServer, room: string, ...seenBy: RawClient[]): Promise<StockPeer> => {
  const peer = stockPeer(server.syncUrl, room)
  peers.push(peer)
  await synced(peer)
  for (const client of seenBy) await receives("the stock client's first state", client, is(peer.doc.clientID))
  return peer
}

/** Ends a stock client's socket at the TCP level: no close handshake, no goodbye message. */
const dropSocket = (peer: StockPeer): void => {
  ;(peer.provider.ws as unknown as WsSocket).terminate()
}

/**
 * The states a client joining now is sent on join. The server sends them before it answers the
 * client's sync step 1; anything after that answer is a later relay.
 */
const snapshotNow = async (server: TestServer, room: string): Promise<AwarenessEntry[]> => {
  const client = await member(server, room)
  const answered = client.messages.findIndex((m) => m.kind === 'sync-step-2')
  const entries = client.messages.slice(0, answered).flatMap((m) => (m.kind === 'awareness' ? readAwarenessUpdate(m.update) : []))
  client.close()
  return entries
}

let roomSeq = 0
const freshRoom = (label: string): string => `presence-${label}-${++roomSeq}`

afterEach(() => {
  for (const client of raws.splice(0)) client.close()
  for (const peer of peers.splice(0)) peer.destroy()
})

// --- presence ----------------------------------------------------------------------------------

describe('presence', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({ allowAnonymous: true, limits: { maxAwarenessClients: MAX_CLIENTS, maxAwarenessStateBytes: MAX_STATE_BYTES } })
  })
  afterAll(async () => {
    await server.destroy()
  })

  it("a state reaches raw and stock clients, and a stock client's state reaches raw clients", async () => {
    const room = freshRoom('reach')
    const ada = await member(server, room)
    const observer = await member(server, room)
    const sam = await stock(server, room)

    ada.send(awarenessFrame(entry(101, 1, { name: 'Ada' })))
    await receives('observer sees ada', observer, is(101, 1))
    expect(received(observer).find(is(101))!.state).toBe('{"name":"Ada"}')
    await stockSees('stock sees ada', sam, (s) => s.get(101)?.name === 'Ada')

    sam.provider.awareness.setLocalStateField('name', 'Sam')
    const samId = sam.doc.clientID
    await receives('observer sees sam', observer, (e) => e.clientID === samId && e.state.includes('Sam'))
    await receives('ada sees sam', ada, (e) => e.clientID === samId && e.state.includes('Sam'))
    // Nothing is echoed to its sender.
    expect(received(ada).filter(is(101))).toEqual([])
  })

  it('a newcomer receives every existing state on join, raw or stock', async () => {
    const room = freshRoom('newcomer')
    const ada = await member(server, room)
    const observer = await member(server, room)
    const sam = await stock(server, room)
    ada.send(awarenessFrame(entry(101, 3, { name: 'Ada' })))
    sam.provider.awareness.setLocalStateField('name', 'Sam')
    const samId = sam.doc.clientID
    await receives('observer sees ada', observer, is(101))
    await receives('observer sees sam', observer, (e) => e.clientID === samId && e.state.includes('Sam'))

    const raw = await member(server, room)
    const kinds = raw.messages.map((m) => m.kind)
    expect(kinds.indexOf('awareness')).toBeGreaterThan(kinds.indexOf('authenticated'))
    const snapshot = awarenessMessages(raw)[0]!
    expect(snapshot).toContainEqual(entry(101, 3, { name: 'Ada' }))
    expect(snapshot.find((e) => e.clientID === samId)?.state).toContain('Sam')

    const late = await stock(server, room)
    await stockSees('the late stock client sees both', late, (s) => s.get(101)?.name === 'Ada' && s.get(samId)?.name === 'Sam')
  })

  it('query-awareness answers with the current states, without removed ones', async () => {
    const room = freshRoom('query')
    const asker = await member(server, room)

    let from = asker.messages.length
    asker.send(encodeFrame(writeQueryAwareness))
    expect(await nextAwareness(asker, from)).toEqual([])

    const ada = await member(server, room)
    const bob = await member(server, room)
    ada.send(awarenessFrame(entry(101, 1, { v: 1 })))
    ada.send(awarenessFrame(entry(101, 2, { v: 2 })))
    bob.send(awarenessFrame(entry(202, 1, { v: 'bob' })))
    bob.send(awarenessFrame(entry(202, 2, null)))
    await receives('asker sees ada v2', asker, is(101, 2))
    await receives('asker sees bob leave', asker, is(202, 2))

    from = asker.messages.length
    asker.send(encodeFrame(writeQueryAwareness))
    expect(await nextAwareness(asker, from)).toEqual([entry(101, 2, { v: 2 })])
    expect(asker.socket.readyState).toBe(OPEN)
  })

  describe('a clientID belongs to the connection that first used it', () => {
    /** A room where a raw client (101) and a stock client have states, seen by a raw and a stock observer. */
    const victims = async (label: string) => {
      const room = freshRoom(label)
      const victim = await member(server, room)
      const observer = await member(server, room)
      const stockVictim = await stock(server, room)
      const watcher = await stock(server, room)
      victim.send(awarenessFrame(entry(101, 1, { name: 'victim' })))
      stockVictim.provider.awareness.setLocalStateField('name', 'stock victim')
      const stockId = stockVictim.doc.clientID
      await stockSees('watcher sees both victims', watcher, (s) => s.get(101)?.name === 'victim' && s.get(stockId)?.name === 'stock victim')
      await receives('observer sees the stock victim', observer, (e) => e.clientID === stockId && e.state.includes('stock victim'))
      return { room, victim, observer, stockVictim, stockId, watcher }
    }

    const victimsIntact = async (v: Awaited<ReturnType<typeof victims>>, from: number): Promise<void> => {
      const touched = received(v.observer, from).filter((e) => e.clientID === 101 || e.clientID === v.stockId)
      expect(touched).toEqual([])
      expect(states(v.watcher).get(101)).toEqual({ name: 'victim' })
      expect(states(v.watcher).get(v.stockId)).toEqual({ name: 'stock victim' })
      const current = await snapshotNow(server, v.room)
      expect(current).toContainEqual(entry(101, 1, { name: 'victim' }))
      expect(current.find((e) => e.clientID === v.stockId)?.state).toBe('{"name":"stock victim"}')
    }

    it("a state for another connection's clientID is dropped: presence_forbidden, and the spoofer stays", async () => {
      const v = await victims('spoof')
      const spoofer = await member(server, v.room)
      const from = v.observer.messages.length

      spoofer.send(awarenessFrame(entry(101, 50, { name: 'evil' })))
      spoofer.send(awarenessFrame(entry(v.stockId, 999, { name: 'evil' })))
      expect(await spoofer.next('error')).toMatchObject({ code: 'presence_forbidden' })

      // Barrier: the spoofer's own state, sent after, reaches everyone.
      spoofer.send(awarenessFrame(entry(303, 1, { name: 'spoofer' })))
      await receives("observer sees the spoofer's own state", v.observer, is(303), from)
      await stockSees("watcher sees the spoofer's own state", v.watcher, (s) => s.get(303)?.name === 'spoofer')

      expect(received(v.observer, from).filter((e) => e.state.includes('evil'))).toEqual([])
      expect(received(v.victim).filter((e) => e.state.includes('evil'))).toEqual([])
      await victimsIntact(v, from)
      expect(spoofer.socket.readyState).toBe(OPEN)
    })

    it("a removal of another connection's state is dropped", async () => {
      const v = await victims('remove')
      const spoofer = await member(server, v.room)
      const from = v.observer.messages.length

      spoofer.send(awarenessFrame(entry(101, 2, null), entry(v.stockId, 1000, null)))
      expect(await spoofer.next('error')).toMatchObject({ code: 'presence_forbidden' })
      spoofer.send(awarenessFrame(entry(303, 1, { name: 'spoofer' })))
      await receives("observer sees the spoofer's own state", v.observer, is(303), from)
      await stockSees("watcher sees the spoofer's own state", v.watcher, (s) => s.has(303))

      await victimsIntact(v, from)
      expect(spoofer.socket.readyState).toBe(OPEN)
    })

    it("a frame mixing own and others' entries relays only the own ones", async () => {
      const v = await victims('mixed')
      const spoofer = await member(server, v.room)
      const from = v.observer.messages.length

      spoofer.send(awarenessFrame(entry(101, 9, { name: 'evil' }), entry(303, 1, { name: 'spoofer' }), entry(v.stockId, 9, null)))
      expect(await nextAwareness(v.observer, from)).toEqual([entry(303, 1, { name: 'spoofer' })])
      expect(await spoofer.next('error')).toMatchObject({ code: 'presence_forbidden' })
      await stockSees("watcher sees the spoofer's own state", v.watcher, (s) => s.has(303))
      await victimsIntact(v, from)
    })

    it('a stock-style spoofer (no auth message) is dropped without an error, and stays', async () => {
      const v = await victims('compat')
      const spoofer = await member(server, v.room, true)
      const from = v.observer.messages.length

      spoofer.send(awarenessFrame(entry(101, 50, { name: 'evil' })))
      spoofer.send(awarenessFrame(entry(303, 1, { name: 'spoofer' })))
      await receives("observer sees the spoofer's own state", v.observer, is(303), from)
      expect(spoofer.messages.filter((m) => m.kind === 'error')).toEqual([])
      await victimsIntact(v, from)
      expect(spoofer.socket.readyState).toBe(OPEN)
    })

    it('when the owner disconnects, its states are removed at the others at their clock', async () => {
      const room = freshRoom('leave')
      const owner = await member(server, room)
      const observer = await member(server, room)
      const watcher = await stock(server, room)
      const sam = await stock(server, room)
      owner.send(awarenessFrame(entry(101, 7, { name: 'a' }), entry(102, 3, { name: 'b' })))
      sam.provider.awareness.setLocalStateField('name', 'Sam')
      const samId = sam.doc.clientID
      await stockSees('watcher sees all three', watcher, (s) => s.has(101) && s.has(102) && s.get(samId)?.name === 'Sam')
      await receives('observer sees sam', observer, (e) => e.clientID === samId && e.state.includes('Sam'))
      const samClock = received(observer)
        .filter((e) => e.clientID === samId)
        .at(-1)!.clock

      const from = observer.messages.length
      owner.close()
      await receives('observer hears 101 removed', observer, is(101), from)
      await receives('observer hears 102 removed', observer, is(102), from)
      expect(received(observer, from)).toEqual(expect.arrayContaining([entry(101, 7, null), entry(102, 3, null)]))
      await stockSees("watcher drops the owner's states", watcher, (s) => !s.has(101) && !s.has(102))

      // A stock client whose socket just drops (a crashed tab): no goodbye, the server removes it.
      sam.provider.shouldConnect = false
      dropSocket(sam)
      await receives('observer hears sam removed', observer, (e) => e.clientID === samId && e.state === REMOVED_STATE, from)
      expect(received(observer, from).filter((e) => e.clientID === samId)[0]).toEqual(entry(samId, samClock, null))
      await stockSees('watcher drops sam', watcher, (s) => !s.has(samId))

      // A newcomer sees none of them.
      const ids = (await snapshotNow(server, room)).map((e) => e.clientID)
      expect(ids).not.toContain(101)
      expect(ids).not.toContain(samId)
    })

    it('a stock client that disconnects says goodbye itself; its state is gone at the others', async () => {
      const room = freshRoom('goodbye')
      const observer = await member(server, room)
      const sam = await stock(server, room, observer)
      const watcher = await stock(server, room, observer)
      sam.provider.awareness.setLocalStateField('name', 'Sam')
      const samId = sam.doc.clientID
      await stockSees('watcher sees sam', watcher, (s) => s.get(samId)?.name === 'Sam')

      sam.provider.disconnect() // sends its own removal at its current clock, then closes
      await stockSees('watcher drops sam', watcher, (s) => !s.has(samId))
      await receives('observer hears sam removed', observer, (e) => e.clientID === samId && e.state === REMOVED_STATE)
      expect((await snapshotNow(server, room)).map((e) => e.clientID)).not.toContain(samId)
    })

    // The stock y-websocket client re-sends every awareness change it applies, removals included.
    // Those echoes of a departed client must not claim its clientID, or a stock client that
    // reconnects with the same Y.Doc (same clientID: a network drop, a laptop waking up) would be
    // refused as a spoofer. And it shows again at once, without changing its state: the server
    // answers its stale clock with the tombstone, and y-protocols makes it bump its clock.
    it('a stock client that reconnects after its socket dropped shows its presence again', async () => {
      const room = freshRoom('reconnect')
      const observer = await member(server, room)
      const sam = await stock(server, room, observer)
      const watcher = await stock(server, room, observer)
      sam.provider.awareness.setLocalStateField('name', 'Sam 1')
      const samId = sam.doc.clientID
      await stockSees('watcher sees sam', watcher, (s) => s.get(samId)?.name === 'Sam 1')

      sam.provider.shouldConnect = false // reconnect when the test says so, not on a timer
      dropSocket(sam)
      await stockSees('watcher drops sam', watcher, (s) => !s.has(samId))
      // Barrier: the watcher echoed the removal as it applied it; a write it makes now comes after.
      watcher.doc.getText('t').insert(0, 'watcher;')
      await until("observer has the watcher's write", observer.doc, ['update'], () => observer.doc.getText('t').toString().includes('watcher;'))

      const from = observer.messages.length
      sam.provider.connect()
      await synced(sam)
      await stockSees('watcher sees sam again, unchanged', watcher, (s) => s.get(samId)?.name === 'Sam 1')
      sam.provider.awareness.setLocalStateField('name', 'Sam 3')
      // Barrier: sam's write is relayed after its awareness frames, which went first on its socket.
      sam.doc.getText('t').insert(0, 'sam;')
      await until("observer has sam's write", observer.doc, ['update'], () => observer.doc.getText('t').toString().includes('sam;'))

      expect(
        received(observer, from)
          .filter((e) => e.clientID === samId)
          .map((e) => e.state),
      ).toContain('{"name":"Sam 3"}')
      await stockSees('watcher sees sam again', watcher, (s) => s.get(samId)?.name === 'Sam 3')
    })

    it("when the spoofer disconnects, the victim's state stays", async () => {
      const v = await victims('spoofer-leaves')
      const spoofer = await member(server, v.room)
      const from = v.observer.messages.length
      spoofer.send(awarenessFrame(entry(303, 1, { name: 'spoofer' }), entry(101, 5, { name: 'evil' }), entry(v.stockId, 5, { name: 'evil' })))
      await receives('observer sees the spoofer', v.observer, is(303), from)

      spoofer.close()
      // Barrier: the removal of the spoofer's own state comes from its teardown.
      await receives('observer hears the spoofer leave', v.observer, (e) => e.clientID === 303 && e.state === REMOVED_STATE, from)
      await stockSees('watcher drops the spoofer', v.watcher, (s) => !s.has(303))
      await victimsIntact(v, from)

      expect(await snapshotNow(server, v.room)).toContainEqual(entry(101, 1, { name: 'victim' }))
    })

    it(`a connection owns at most maxAwarenessClients (${MAX_CLIENTS}) clientIDs; extra ones are dropped`, async () => {
      const room = freshRoom('cap')
      const greedy = await member(server, room)
      const observer = await member(server, room)
      const other = await member(server, room)
      const from = observer.messages.length
      const ids = [401, 402, 403, 404, 405]

      greedy.send(awarenessFrame(...ids.map((id) => entry(id, 1, { id }))))
      expect((await nextAwareness(observer, from)).map((e) => e.clientID)).toEqual(ids.slice(0, MAX_CLIENTS))
      expect(await greedy.next('error')).toMatchObject({ code: 'presence_forbidden' })

      // A later frame may update the ones it owns, not add more.
      greedy.send(awarenessFrame(entry(406, 1, { id: 406 })))
      greedy.send(awarenessFrame(entry(401, 2, { id: 401, again: true })))
      await receives('observer sees 401 updated', observer, is(401, 2), from)
      expect(new Set(received(observer, from).map((e) => e.clientID))).toEqual(new Set(ids.slice(0, MAX_CLIENTS)))

      // The cap is per connection: another one may still use a clientID the greedy one could not.
      other.send(awarenessFrame(entry(404, 1, { by: 'other' })))
      await receives('observer sees 404 from the other connection', observer, is(404), from)

      greedy.close()
      for (const id of ids.slice(0, MAX_CLIENTS)) {
        await receives(`observer hears ${id} removed`, observer, (e) => e.clientID === id && e.state === REMOVED_STATE, from)
      }
      const asked = observer.messages.length
      observer.send(encodeFrame(writeQueryAwareness))
      expect(await nextAwareness(observer, asked)).toEqual([entry(404, 1, { by: 'other' })])
    })
  })

  describe('invalid states', () => {
    const atLimit = `"${'x'.repeat(MAX_STATE_BYTES - 2)}"`
    const overLimit = `"${'x'.repeat(MAX_STATE_BYTES - 1)}"`

    it('oversized and non-JSON states are dropped, not relayed, and do not claim the clientID', async () => {
      const room = freshRoom('invalid')
      const sender = await member(server, room)
      const observer = await member(server, room)
      const watcher = await stock(server, room, observer)
      const from = observer.messages.length

      sender.send(
        awarenessFrame(
          entry(501, 1, { ok: 1 }),
          { clientID: 502, clock: 1, state: overLimit },
          { clientID: 503, clock: 1, state: '{"not": json' },
          { clientID: 504, clock: 1, state: '' },
          { clientID: 505, clock: 1, state: atLimit },
        ),
      )
      expect(await nextAwareness(observer, from)).toEqual([entry(501, 1, { ok: 1 }), { clientID: 505, clock: 1, state: atLimit }])
      expect(await sender.next('error')).toMatchObject({ code: 'presence_forbidden' })

      // An invalid state for a clientID it owns is dropped too; the next good one goes through.
      sender.send(awarenessFrame({ clientID: 501, clock: 2, state: overLimit }))
      sender.send(awarenessFrame({ clientID: 501, clock: 3, state: '{' }))
      sender.send(awarenessFrame(entry(501, 4, { ok: 4 })))
      await receives('observer sees 501 at clock 4', observer, is(501, 4), from)
      await stockSees('watcher sees 501 at 4', watcher, (s) => s.get(501)?.ok === 4)
      const relayed = received(observer, from)
      expect(relayed.filter((e) => [502, 503, 504].includes(e.clientID) || (e.clientID === 501 && (e.clock === 2 || e.clock === 3)))).toEqual([])
      expect(sender.socket.readyState).toBe(OPEN)

      // The dropped entries did not make the sender their owner: another connection may use them.
      const other = await member(server, room)
      other.send(awarenessFrame(entry(502, 1, { by: 'other' }), entry(503, 1, { by: 'other' })))
      await receives('observer sees 503 from the other connection', observer, is(503), from)
      expect(received(observer, from).filter((e) => e.clientID === 502 || e.clientID === 503)).toEqual([
        entry(502, 1, { by: 'other' }),
        entry(503, 1, { by: 'other' }),
      ])
    })

    // A state of multi-byte characters must not pass at up to 3x the byte limit.
    it('the state size limit counts UTF-8 bytes, not characters', async () => {
      const room = freshRoom('bytes')
      const sender = await member(server, room)
      const observer = await member(server, room)
      const from = observer.messages.length
      const wide = `"${'€'.repeat(400)}"` // 402 characters, 1202 bytes
      expect(Buffer.byteLength(wide)).toBeGreaterThan(MAX_STATE_BYTES)
      expect(wide.length).toBeLessThan(MAX_STATE_BYTES)

      sender.send(awarenessFrame({ clientID: 601, clock: 1, state: wide }))
      sender.send(awarenessFrame(entry(602, 1, { ok: true })))
      await receives('observer sees 602', observer, is(602), from)
      expect(received(observer, from).filter(is(601))).toEqual([])
    })

    it('absurd clocks are dropped: past 2^32, or a jump of more than 2^20 at once', async () => {
      const room = freshRoom('clocks')
      const sender = await member(server, room)
      const observer = await member(server, room)
      const from = observer.messages.length
      sender.send(awarenessFrame({ clientID: 801, clock: 2 ** 40, state: '{"hide":"everyone"}' }))
      sender.send(awarenessFrame(entry(802, 1, { ok: true })))
      sender.send(awarenessFrame(entry(802, 2 ** 21, { jumped: true })))
      sender.send(awarenessFrame(entry(803, 1, { ok: true })))
      await receives('observer sees 803', observer, is(803), from)
      expect(received(observer, from).filter(is(801))).toEqual([])
      expect(
        received(observer, from)
          .filter(is(802))
          .map((e) => e.clock),
      ).toEqual([1])
      await sender.next('error', (m) => m.code === 'presence_forbidden')
    })

    const payload = writeAwarenessUpdate([entry(701, 1, { bad: true })])
    const malformedPayloads: [string, Uint8Array][] = [
      ['a payload cut by one byte', encodeFrame(writeAwareness, payload.subarray(0, -1))],
      ['a frame cut by one byte', encodeFrame(writeAwareness, payload).subarray(0, -1)],
      ['a payload with a trailing byte', encodeFrame(writeAwareness, Uint8Array.from([...payload, 0]))],
      ['a count of more entries than are there', encodeFrame(writeAwareness, Uint8Array.from([2, ...payload.subarray(1)]))],
      ['a count far beyond the bytes', encodeFrame(writeAwareness, Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f, ...payload.subarray(1)]))],
      ['an empty payload', encodeFrame(writeAwareness, new Uint8Array(0))],
      ['a state that is not UTF-8', encodeFrame(writeAwareness, Uint8Array.from([1, 0xbd, 0x05, 1, 2, 0xff, 0xfe]))],
      ['a truncated varUint clientID', encodeFrame(writeAwareness, Uint8Array.of(1, 0x80))],
    ]

    it.each(malformedPayloads)('%s closes the sender with 4400 and relays nothing', async (_name, frame) => {
      const room = freshRoom('malformed')
      const owner = await member(server, room)
      const observer = await member(server, room)
      const watcher = await stock(server, room)
      const offender = await member(server, room)
      offender.send(awarenessFrame(entry(701, 1, { good: true })))
      await stockSees("watcher sees the offender's good state", watcher, (s) => s.get(701)?.good === true)
      const from = observer.messages.length

      offender.send(frame)
      const { code } = await withDeadline('offender closed', offender.closed)
      expect(code).toBe(CloseCode.malformed)
      expect(offender.messages.at(-1)).toMatchObject({ kind: 'error', code: 'malformed_message' })

      // Barrier: a later state from another member reaches the observer and the stock client.
      owner.send(awarenessFrame(entry(101, 1, { after: true })))
      await receives('observer sees the later state', observer, is(101), from)
      await stockSees('watcher sees the later state', watcher, (s) => s.get(101)?.after === true)
      expect(received(observer, from).filter((e) => e.state.includes('bad'))).toEqual([])
      expect(Object.keys(states(watcher).get(701) ?? {})).not.toContain('bad')
      expect(owner.socket.readyState).toBe(OPEN)
      expect(observer.socket.readyState).toBe(OPEN)
      expect(watcher.provider.wsconnected).toBe(true)
    })

    it('a malformed payload from a stock-style client closes it with 4400, without an error message', async () => {
      const room = freshRoom('malformed-compat')
      const observer = await member(server, room)
      const offender = await member(server, room, true)
      offender.send(malformedPayloads[0]![1])
      expect((await withDeadline('offender closed', offender.closed)).code).toBe(CloseCode.malformed)
      expect(offender.messages.filter((m) => m.kind === 'error')).toEqual([])
      expect(observer.socket.readyState).toBe(OPEN)
    })
  })

  it('stale clocks are not relayed, and a stock client never goes back to an older state', async () => {
    const room = freshRoom('stale')
    const owner = await member(server, room)
    const observer = await member(server, room)
    const watcher = await stock(server, room)
    const seen: unknown[] = []
    watcher.provider.awareness.on('change', () => seen.push(states(watcher).get(101) ?? null))

    owner.send(awarenessFrame(entry(101, 5, { v: 5 })))
    await stockSees('watcher at 5', watcher, (s) => s.get(101)?.v === 5)
    const from = observer.messages.length

    owner.send(awarenessFrame(entry(101, 3, { v: 3 }))) // older
    owner.send(awarenessFrame(entry(101, 5, { v: 'five again' }))) // same clock, other state
    owner.send(awarenessFrame(entry(101, 4, null))) // an older removal
    owner.send(awarenessFrame(entry(101, 6, { v: 6 })))
    await receives('observer sees clock 6', observer, is(101, 6), from)
    await stockSees('watcher at 6', watcher, (s) => s.get(101)?.v === 6)
    expect(received(observer, from)).toEqual([entry(101, 6, { v: 6 })])
    expect(seen).toEqual([{ v: 5 }, { v: 6 }])

    // A removal at the same clock wins (y-protocols' rule), and is relayed.
    owner.send(awarenessFrame(entry(101, 6, null)))
    await stockSees('watcher drops 101', watcher, (s) => !s.has(101))
    expect(received(observer, from)).toEqual([entry(101, 6, { v: 6 }), entry(101, 6, null)])

    const asked = observer.messages.length
    observer.send(encodeFrame(writeQueryAwareness))
    expect((await nextAwareness(observer, asked)).filter(is(101))).toEqual([])
  })
})

describe('keepalive', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({ allowAnonymous: true, keepaliveMs: 400 })
  })
  afterAll(async () => {
    await server.destroy()
  })

  it('a lone quiet client receives an awareness message with zero entries within the interval', async () => {
    const client = await member(server, freshRoom('keepalive'))
    const from = client.messages.length
    // The one timed wait: keepaliveMs is 400, so 2 s is a deadline, not a guess.
    await until('a keepalive', client.socket, ['message'], () => awarenessMessages(client, from).some((entries) => entries.length === 0), 2_000)
    expect(client.socket.readyState).toBe(OPEN)
  })
})
