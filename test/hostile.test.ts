/**
 * Valid but hostile input from a session that may write or read (issue 12): updates that are well
 * formed and small but cost seconds to integrate, documents whose heap is far larger than their
 * bytes, and readers asking for the whole document again and again. Each attack is refused with a
 * coded close before it costs the process, nothing of it is applied, and real editing (typing,
 * pastes, concurrent offline sessions merged) is never refused.
 */

import * as prng from 'lib0/prng'
import { afterEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { typingTrace } from '../bench/support/workload.ts'
import { CloseCode } from '../protocol/errors.ts'
import { encodeFrame, writeQueryAwareness, writeSyncStep1, writeSyncStep2 } from '../protocol/messages.ts'
import { createRoom } from './support/rest.ts'
import { randomEdit } from './support/random.ts'
import { type RawClient, rawClient } from './support/raw-client.ts'
import { type TestServer, serversPerTest } from './support/server.ts'
import { untilDocs, withDeadline } from './support/wait.ts'

const { start, track } = serversPerTest()
const clients: RawClient[] = []
afterEach(() => {
  for (const client of clients.splice(0)) client.close()
})

const join = async (server: TestServer, room: string): Promise<RawClient> => {
  const client = await rawClient(server.syncUrl, room)
  clients.push(client)
  await client.next('sync-step-2')
  return client
}

const closedWith = async (client: RawClient): Promise<{ code: number; error: unknown }> => {
  const { code } = await withDeadline('the close', client.closed)
  const error = [...client.messages].reverse().find((m) => m.kind === 'error')
  return { code, error: error?.kind === 'error' ? error.code : null }
}

/** A text of `n` one-character items, each inserted left of the previous (nothing merges). */
const backwardText = (n: number, name = 't'): Uint8Array => {
  const doc = new Y.Doc()
  const text = doc.getText(name)
  doc.transact(() => {
    for (let i = 0; i < n; i++) text.insert(0, 'a')
  })
  return Y.encodeStateAsUpdate(doc)
}

/** `count` items with no origins into text `t`, each from its own client: every one scans the whole text. */
const originlessItems = (count: number, firstClient = 0): Uint8Array =>
  Y.mergeUpdates(
    Array.from({ length: count }, (_, i) => {
      const doc = new Y.Doc()
      doc.clientID = 1_000 + firstClient + i
      doc.getText('t').insert(0, 'x')
      return Y.encodeStateAsUpdate(doc)
    }),
  )

const textOf = (server: TestServer, room: string): string => server.app.tandem.registry.get(room)!.doc.getText('t').toString()

describe('a tiny update that would cost seconds', () => {
  it('is refused with 4413 update_too_costly before it is applied; the room and its writers go on', async () => {
    const server = await start()
    const base = backwardText(200_000) // ~2 MB: under every size limit
    const writer = await join(server, 'scan')
    writer.sendUpdate(base)
    await writer.saved(1)

    const attack = originlessItems(200) // ~2 KB; applied, it scans 200 x 200,000 items
    expect(attack.length).toBeLessThan(4_096)
    const attacker = await join(server, 'scan')
    attacker.sendUpdate(attack)
    expect(await closedWith(attacker)).toEqual({ code: CloseCode.tooLarge, error: 'update_too_costly' })
    expect(textOf(server, 'scan')).toHaveLength(200_000)

    // The honest writer is untouched and still writes.
    const doc = new Y.Doc()
    Y.applyUpdate(doc, base)
    const edits: Uint8Array[] = []
    doc.on('update', (u: Uint8Array) => edits.push(u))
    doc.getText('t').insert(100_000, 'honest')
    writer.sendUpdate(edits[0]!)
    await writer.saved(2)
    expect(textOf(server, 'scan')).toContain('honest')
  })

  it('many updates each under the limit are bounded per connection over time (4529)', async () => {
    const server = await start({ limits: { integrationStepsBurst: 1_000_000, integrationStepsPerSecond: 1_000 } })
    const writer = await join(server, 'rate')
    writer.sendUpdate(backwardText(100_000))
    await writer.saved(1)
    const attacker = await join(server, 'rate')
    // Each scans ~3 x 100,000 items: under the per-update limit, over the connection's burst by the fourth.
    for (let i = 0; i < 6; i++) attacker.sendUpdate(originlessItems(3, 10 * i))
    expect(await closedWith(attacker)).toEqual({ code: CloseCode.rateLimited, error: 'rate_limited' })
  })

  it('updates waiting for missing dependencies are bounded per room (maxPendingStructs)', async () => {
    const server = await start({ limits: { maxPendingStructs: 5 } })
    const writer = await join(server, 'pending')
    const doc = new Y.Doc()
    doc.getText('t').insert(0, 'never sent')
    const later: Uint8Array[] = []
    doc.on('update', (u: Uint8Array) => later.push(u))
    // Ten items, each before the previous: the first is placed by the unsent one, which the room lacks.
    for (let i = 0; i < 10; i++) doc.getText('t').insert(0, `${i}`)
    writer.sendUpdate(Y.mergeUpdates(later))
    expect(await closedWith(writer)).toEqual({ code: CloseCode.tooLarge, error: 'update_too_costly' })
  })

  it('a stored room whose updates would stall its load is refused (1011), not loaded', async () => {
    const server = await start()
    await server.stop()
    // Written before the budget existed (straight into the store): the text and the attack on it.
    const { openLevelStore } = await import('../server/store/level-store.ts')
    const store = await openLevelStore(server.dataDir)
    await store.append('stored-scan', 0, [backwardText(200_000), originlessItems(200)])
    await store.close()
    const again = track(await server.restart())
    const reader = await rawClient(again.syncUrl, 'stored-scan')
    clients.push(reader)
    expect(await closedWith(reader)).toEqual({ code: CloseCode.serverError, error: 'server_error' })
    expect((await again.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200)
  })

  it('never refuses real editing: a typing trace with pastes, and concurrent offline sessions merged', async () => {
    const server = await start()
    const typist = await join(server, 'real')
    const trace = typingTrace(3, { keystrokes: 3_000, pastes: 20 })
    for (const update of trace.updates) typist.sendUpdate(update)
    await typist.saved(trace.updates.length)
    expect(textOf(server, 'real')).toBe(trace.text)

    // Five editors go offline, each edits every shared type at random, then each sends its sync
    // step 2 (all its offline edits in one update), round after round.
    const gen = prng.create(11)
    const peers = Array.from({ length: 5 }, () => new Y.Doc())
    const sockets = await Promise.all(peers.map(() => join(server, 'offline')))
    const room = server.app.tandem.registry.get('offline')!
    let sent = 0
    for (let round = 0; round < 20; round++) {
      for (const peer of peers) Y.applyUpdate(peer, Y.encodeStateAsUpdate(room.doc, Y.encodeStateVector(peer)))
      for (const peer of peers) for (let i = 0; i < 40; i++) randomEdit(gen, peer)
      peers.forEach((peer, i) => {
        sockets[i]!.send(encodeFrame(writeSyncStep2, Y.encodeStateAsUpdate(peer, Y.encodeStateVector(room.doc))))
      })
      sent++
      await Promise.all(sockets.map((socket) => socket.saved(sent)))
    }
    for (const peer of peers) Y.applyUpdate(peer, Y.encodeStateAsUpdate(room.doc, Y.encodeStateVector(peer)))
    await untilDocs('every editor converged', [room.doc, ...peers], () =>
      peers.every((p) => Buffer.from(Y.encodeStateVector(p)).equals(Buffer.from(Y.encodeStateVector(room.doc)))),
    )
    expect(sockets.every((s) => s.socket.readyState === s.socket.OPEN)).toBe(true)
  })
})

describe('memory by what a document holds, not its bytes', () => {
  /**
   * `count` one-character items that cannot merge (inserted backwards), from one fresh client, in a
   * text of their own (so placing them scans nothing: this is about memory, not integration work).
   */
  let texts = 0
  const unmergeable = (count: number): Uint8Array => backwardText(count, `text-${++texts}`)

  it('a room past maxRoomMemoryBytes refuses the write (4413), however few bytes it is', async () => {
    const server = await start({ limits: { maxRoomMemoryBytes: 1024 * 1024 } })
    const writer = await join(server, 'heap')
    const update = unmergeable(3_000) // ~30 KB on the wire, ~1.5 MB of heap
    expect(update.length).toBeLessThan(64 * 1024)
    writer.sendUpdate(update)
    expect(await closedWith(writer)).toEqual({ code: CloseCode.tooLarge, error: 'message_too_large' })
    expect(server.app.tandem.registry.get('heap')!.doc.store.clients.size).toBe(0) // nothing applied
  })

  it('a room at its limit stays at it after it is unloaded and loaded again (the writer cannot start over)', async () => {
    const server = await start({ idleUnloadMs: 20, limits: { maxRoomMemoryBytes: 1024 * 1024 } })
    const writer = await join(server, 'full')
    writer.sendUpdate(unmergeable(1_500))
    await writer.saved(1)
    writer.close()
    const registry = server.app.tandem.registry
    await withDeadline('the room unloaded', new Promise((resolve) => registry.events.once('unloaded', resolve)))
    const again = await join(server, 'full')
    again.sendUpdate(unmergeable(1_000))
    expect(await closedWith(again)).toEqual({ code: CloseCode.tooLarge, error: 'message_too_large' })
  })

  it('past the process-wide budget a write is refused with 1013 (try again later) and idle rooms are unloaded', async () => {
    const server = await start({ idleUnloadMs: 60_000, limits: { maxLoadedMemoryBytes: 2 * 1024 * 1024 } })
    const first = await join(server, 'idle-one')
    first.sendUpdate(unmergeable(2_500)) // ~1.3 MB of the 2 MB
    await first.saved(1)
    first.close()
    await withDeadline(
      'idle-one has no member',
      new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (server.app.tandem.registry.get('idle-one')?.size === 0) {
            clearInterval(check)
            resolve()
          }
        }, 5)
      }),
    )
    const second = await join(server, 'busy-two')
    const unloaded = new Promise((resolve) => server.app.tandem.registry.events.once('unloaded', resolve))
    second.sendUpdate(unmergeable(2_500))
    expect(await closedWith(second)).toEqual({ code: CloseCode.tryAgainLater, error: 'unavailable' })
    expect(await withDeadline('the idle room unloaded', unloaded)).toBe('idle-one')
    // The writer's client reconnects and sends again: now it fits.
    const retry = await join(server, 'busy-two')
    retry.sendUpdate(unmergeable(2_500))
    await retry.saved(1)
  })
})

describe('readers cannot make the server encode the document again and again', () => {
  it('repeated sync requests are encoded once while the document is unchanged, and charged to the byte budget (4529)', async () => {
    const server = await start({ limits: { byteBurst: 5 * 1024 * 1024, bytesPerSecond: 1024 } })
    await createRoom(server.app, { id: 'reread', defaultAccesses: ['room:read'] })
    const writer = await join(server, 'reread')
    const big = backwardText(200_000) // ~2 MB
    writer.sendUpdate(big)
    await writer.saved(1)
    const room = server.app.tandem.registry.get('reread')!
    expect(room.syncAnswer(Uint8Array.of(0))).toBe(room.syncAnswer(Uint8Array.of(0))) // one encoding

    const reader = await join(server, 'reread') // its first sync answer (the join) is free
    for (let i = 0; i < 4; i++) reader.send(encodeFrame(writeSyncStep1, Uint8Array.of(0)))
    expect(await closedWith(reader)).toEqual({ code: CloseCode.rateLimited, error: 'rate_limited' })
    const steps2 = reader.messages.filter((m) => m.kind === 'sync-step-2').length
    expect(steps2).toBe(3) // the join's, then two charged ones within the 5 MiB burst
  })

  it('query-awareness answers come from one encoding per presence change and count too', async () => {
    const server = await start({ limits: { byteBurst: 4096, bytesPerSecond: 1024 } })
    const member = await join(server, 'presence')
    const room = server.app.tandem.registry.get('presence')!
    expect(room.presenceFrame()).toBeNull()
    const asker = await join(server, 'presence')
    for (let i = 0; i < 5_000; i++) asker.send(encodeFrame(writeQueryAwareness))
    expect(await closedWith(asker)).toEqual({ code: CloseCode.rateLimited, error: 'rate_limited' })
    expect(member.socket.readyState).toBe(member.socket.OPEN)
  })
})
