/**
 * Process-wide resource limits: WebSocket upgrades per IP, rooms loaded at once, the size of one
 * room's document, and awareness entries per room. Each refusal is checked to apply, store and
 * relay nothing, behind an ordering barrier rather than a sleep.
 */

import type { IncomingMessage } from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import * as Y from 'yjs'
import { type AwarenessEntry, readAwarenessUpdate, writeAwarenessUpdate } from '../protocol/awareness.ts'
import { CloseCode } from '../protocol/errors.ts'
import { encodeFrame, writeAwareness } from '../protocol/messages.ts'
import { type RawClient, rawClient, textUpdate } from './support/raw-client.ts'
import { codeOf, createRoom, rest } from './support/rest.ts'
import { type TestServer, startServer } from './support/server.ts'
import { once, until, withDeadline } from './support/wait.ts'

let server: TestServer | undefined
const clients: RawClient[] = []
afterEach(async () => {
  for (const client of clients.splice(0)) client.close()
  await server?.destroy()
  server = undefined
})

const join = async (room: string): Promise<RawClient> => {
  const client = await rawClient(server!.syncUrl, room)
  clients.push(client)
  return client
}

/** The server side of the socket opened last (to wait for the server to see it close). */
const lastServerSocket = (): WebSocket => [...server!.app.websocketServer.clients].at(-1)!

/** Closes a client and waits until the server has torn its connection down. */
const leave = async (client: RawClient, serverSocket: WebSocket): Promise<void> => {
  const closed = once('the server sees the socket close', serverSocket, 'close')
  client.close()
  await closed
}

/** The document a room's store holds, read back from its records. */
const storedText = async (room: string): Promise<string> => {
  await server!.app.tandem.registry.get(room)?.flush()
  const stored = await server!.app.tandem.store.load(room)
  const doc = new Y.Doc()
  for (const update of stored.updates) Y.applyUpdate(doc, update)
  return doc.getText('t').toString()
}

describe('connections per IP', () => {
  it('refuses the upgrade past connectionsPerIpPerMinute with 429 rate_limited; open sockets go on', async () => {
    server = await startServer({ limits: { connectionsPerIpPerMinute: 5 } })
    const open = await Promise.all([1, 2, 3, 4, 5].map(() => join('ip')))
    await Promise.all(open.map((client) => client.next('sync-step-2')))

    const refused = new WebSocket(`${server.syncUrl}/ip`)
    refused.on('error', () => {})
    const [, response] = await once<[unknown, IncomingMessage]>('the refusal', refused, 'unexpected-response')
    expect(response.statusCode).toBe(429)
    const body = await withDeadline(
      'the refusal body',
      (async () => {
        let text = ''
        for await (const chunk of response) text += String(chunk)
        return JSON.parse(text) as { error: string }
      })(),
    )
    expect(body.error).toBe('rate_limited')

    // The sockets already open are untouched.
    open[0]!.sendUpdate(textUpdate('still open'))
    await open[0]!.saved(1)
    expect(server.app.tandem.connections.size).toBe(5)
  })

  it('counts each address on its own', async () => {
    server = await startServer({ limits: { connectionsPerIpPerMinute: 3 } })
    const attempt = async (remoteAddress: string): Promise<number> =>
      (await server!.app.inject({ method: 'GET', url: '/v1/sync/ip', remoteAddress })).statusCode
    const first = [await attempt('10.0.0.1'), await attempt('10.0.0.1'), await attempt('10.0.0.1')]
    expect(first).not.toContain(429)
    expect(await attempt('10.0.0.1')).toBe(429)
    expect(await attempt('10.0.0.2')).not.toBe(429)
  })
})

describe('rooms per process', () => {
  it('refuses a join past maxRooms with 1013 rate_limited; an idle room is unloaded to make room', async () => {
    server = await startServer({ limits: { maxRooms: 2 }, idleUnloadMs: 60_000 })
    const { registry } = server.app.tandem
    const a = await join('r1')
    const aServer = lastServerSocket()
    await a.next('sync-step-2')
    a.sendUpdate(textUpdate('kept'))
    await a.saved(1)
    const b = await join('r2')
    await b.next('sync-step-2')

    const refused = await join('r3')
    expect((await refused.closed).code).toBe(CloseCode.tryAgainLater)
    expect(refused.messages.at(-1)).toMatchObject({ kind: 'error', code: 'rate_limited' })
    expect(registry.get('r3')).toBeUndefined()
    expect(registry.size).toBe(2)

    // r1 goes idle: it is stored and unloaded for r3, and loads again later with its text.
    await leave(a, aServer)
    const c = await join('r3')
    const cServer = lastServerSocket()
    await c.next('sync-step-2')
    expect(registry.get('r1')).toBeUndefined()
    expect(registry.size).toBe(2)

    await leave(c, cServer)
    const again = await join('r1')
    await until('r1 reloaded with its text', again.doc, ['update'], () => again.doc.getText('t').toString() === 'kept')
    expect(registry.get('r3')).toBeUndefined()
  })
})

describe('room document size', () => {
  const MAX = 4096

  it('refuses a write past maxRoomBytes with 4413 message_too_large: nothing applied, stored or relayed', async () => {
    server = await startServer({ limits: { maxRoomBytes: MAX } })
    const writer = await join('big')
    const observer = await join('big')
    const other = await join('big')
    await Promise.all([writer, observer, other].map((client) => client.next('sync-step-2')))

    writer.sendUpdate(textUpdate('a'.repeat(1000)))
    await writer.saved(1)
    const room = server.app.tandem.registry.get('big')!
    const before = room.estimatedBytes
    expect(before).toBeGreaterThanOrEqual(1000)

    writer.sendUpdate(textUpdate('b'.repeat(MAX)))
    expect((await writer.closed).code).toBe(CloseCode.tooLarge)
    expect(writer.messages.at(-1)).toMatchObject({ kind: 'error', code: 'message_too_large' })
    expect(room.estimatedBytes).toBe(before)
    expect(room.doc.getText('t').toString()).not.toContain('b')

    // Barrier: a later write reaches the observer after anything relayed before it.
    other.sendUpdate(textUpdate('c'))
    await other.saved(1)
    await until('observer has c', observer.doc, ['update'], () => observer.doc.getText('t').toString().includes('c'))
    expect(observer.doc.getText('t').toString()).not.toContain('b')
    expect(await storedText('big')).not.toContain('b')
  })

  it('refuses a REST write past maxRoomBytes with 413 message_too_large', async () => {
    server = await startServer({ limits: { maxRoomBytes: MAX } })
    await createRoom(server.app, { id: 'rest-big', defaultAccesses: ['room:write'] })
    const put = (update: Uint8Array) =>
      rest(server!.app, 'PUT', '/v1/rooms/rest-big/ydoc', { body: Buffer.from(update), headers: { 'content-type': 'application/octet-stream' } })
    expect((await put(textUpdate('a'.repeat(1000)))).statusCode).toBe(200)
    const refused = await put(textUpdate('b'.repeat(MAX)))
    expect(refused.statusCode).toBe(413)
    expect(codeOf(refused)).toBe('message_too_large')
    expect(await storedText('rest-big')).toBe('a'.repeat(1000))
  })

  it('counts updates whose dependencies are missing (they are stored too)', async () => {
    server = await startServer({ limits: { maxRoomBytes: MAX } })
    const writer = await join('pending')
    await writer.next('sync-step-2')
    const doc = new Y.Doc()
    textUpdate('x', doc) // never sent: the next update depends on it
    const dangling = textUpdate('y'.repeat(3000), doc)
    writer.sendUpdate(dangling)
    await writer.saved(1)
    const room = server.app.tandem.registry.get('pending')!
    expect(room.doc.getText('t').toString()).toBe('') // pending, not integrated
    expect(room.estimatedBytes).toBeGreaterThanOrEqual(dangling.length)

    writer.sendUpdate(textUpdate('z'.repeat(1500)))
    expect((await writer.closed).code).toBe(CloseCode.tooLarge)
  })

  it('measures the document again on load and at compaction', async () => {
    server = await startServer({ limits: { maxRoomBytes: MAX }, compactAfterRecords: 4 })
    const writer = await join('measured')
    await writer.next('sync-step-2')
    const doc = new Y.Doc()
    for (let i = 0; i < 6; i++) writer.sendUpdate(textUpdate(`${i}`.repeat(300), doc))
    await writer.saved(6)
    const room = server.app.tandem.registry.get('measured')!
    await room.flush()
    const exact = Y.encodeStateAsUpdate(room.doc).length
    // Six separate updates carry six headers: the running sum is an upper bound. The reload (the
    // unload compacted the log into one snapshot) starts again from the exact size.
    expect(room.estimatedBytes).toBeGreaterThanOrEqual(exact)

    server = await server.restart()
    const reader = await join('measured')
    await until('reloaded', reader.doc, ['update'], () => reader.doc.getText('t').length === 1800)
    const reloaded = server.app.tandem.registry.get('measured')!
    expect(reloaded.estimatedBytes).toBe(Y.encodeStateAsUpdate(reloaded.doc).length)
  })
})

describe('awareness entries per room', () => {
  const entry = (clientID: number, clock = 1): AwarenessEntry => ({ clientID, clock, state: JSON.stringify({ clientID }) })
  const frame = (...entries: AwarenessEntry[]): Uint8Array => encodeFrame(writeAwareness, writeAwarenessUpdate(entries))
  const seen = (client: RawClient): number[] =>
    client.messages.flatMap((m) => (m.kind === 'awareness' ? readAwarenessUpdate(m.update).map((e) => e.clientID) : []))

  it('drops new clientIDs past maxAwarenessEntriesPerRoom (presence_forbidden); leaving frees them', async () => {
    server = await startServer({ limits: { maxAwarenessEntriesPerRoom: 3, maxAwarenessClients: 4 } })
    const first = await join('crowd')
    const firstServer = lastServerSocket()
    const second = await join('crowd')
    const observer = await join('crowd')
    await Promise.all([first, second, observer].map((client) => client.next('sync-step-2')))

    first.send(frame(entry(1), entry(2)))
    second.send(frame(entry(3), entry(4)))
    expect(await second.next('error')).toMatchObject({ code: 'presence_forbidden' })
    // Barrier: an update to an entry second owns comes after anything relayed for 4.
    second.send(frame(entry(3, 2)))
    await until('observer sees 3 at clock 2', observer.socket, ['message'], () =>
      observer.messages.some((m) => m.kind === 'awareness' && readAwarenessUpdate(m.update).some((e) => e.clientID === 3 && e.clock === 2)),
    )
    expect(seen(observer)).not.toContain(4)
    expect(server.app.tandem.registry.get('crowd')!.presence.size).toBe(3)

    // The first connection leaves: its two entries go, and the room has space again.
    await leave(first, firstServer)
    second.send(frame(entry(4)))
    await until('observer sees 4', observer.socket, ['message'], () => seen(observer).includes(4))
  })
})
