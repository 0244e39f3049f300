/** Per-connection limits: floods, clients that stop reading or answering, and credentials that are not tokens. */

import { afterEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { encodeFrame, writeAuth } from '../protocol/messages.ts'
import { rawClient, textUpdate } from './support/raw-client.ts'
import { TEST_SECRET, type TestServer, startServer } from './support/server.ts'
import { vanishingClient } from './support/vanishing-client.ts'
import { once, until } from './support/wait.ts'

let server: TestServer | undefined
afterEach(async () => {
  await server?.destroy()
  server = undefined
})

describe('rate limits', () => {
  it('closes a connection past its message budget with 4529 rate_limited; others keep syncing', async () => {
    server = await startServer({ limits: { messagesPerSecond: 10, messageBurst: 40 } })
    const flooder = await rawClient(server.syncUrl, 'flood')
    const other = await rawClient(server.syncUrl, 'flood')
    await Promise.all([flooder.next('sync-step-2'), other.next('sync-step-2')])
    const doc = new Y.Doc()
    doc.on('update', (u: Uint8Array) => flooder.sendUpdate(u))
    for (let i = 0; i < 200; i++) doc.getArray<number>('a').push([i])

    expect((await flooder.closed).code).toBe(4529)
    expect(flooder.messages.at(-1)).toMatchObject({ kind: 'error', code: 'rate_limited' })
    // The writes within the budget were applied; nothing past it.
    const applied = server.app.tandem.registry.get('flood')!.doc.getArray('a').length
    expect(applied).toBeGreaterThan(0)
    expect(applied).toBeLessThan(200)

    other.sendUpdate(textUpdate('still here'))
    await other.saved(1)
    const late = await rawClient(server.syncUrl, 'flood')
    await until('late sees it', late.doc, ['update'], () => late.doc.getText('t').toString() === 'still here')
  })

  it('closes a connection past its byte budget with 4529', async () => {
    server = await startServer({ limits: { bytesPerSecond: 1024, byteBurst: 8 * 1024 } })
    const client = await rawClient(server.syncUrl, 'bytes')
    await client.next('sync-step-2')
    const big = textUpdate('x'.repeat(4 * 1024))
    client.sendUpdate(big)
    client.sendUpdate(textUpdate('y'.repeat(4 * 1024)))
    client.sendUpdate(textUpdate('z'.repeat(4 * 1024)))
    expect((await client.closed).code).toBe(4529)
  })
})

/** The server's own socket of the newest connection (ws keeps them in `clients`). */
const newestServerSocket = (s: TestServer): import('ws').WebSocket => [...s.app.websocketServer.clients].at(-1)!

describe('sockets that stop answering', () => {
  it('a client that stops reading is disconnected once its unsent bytes pass the bound; the room goes on', async () => {
    server = await startServer({ limits: { maxBufferedBytes: 256 * 1024, maxMessageBytes: 1024 * 1024 } })
    const slow = await vanishingClient(server.port, '/v1/sync/slow', [encodeFrame(writeAuth, null)])
    const slowSide = newestServerSocket(server)
    const gone = once('the slow reader closed by the server', slowSide, 'close')
    const writer = await rawClient(server.syncUrl, 'slow')
    await writer.next('sync-step-2')
    const doc = new Y.Doc()
    doc.on('update', (u: Uint8Array) => writer.sendUpdate(u))
    // Far more than loopback's socket buffers hold: the server must not buffer it all for the reader.
    for (let i = 0; i < 48 && writer.socket.readyState === writer.socket.OPEN; i++) doc.getArray('a').push([new Uint8Array(512 * 1024).fill(i)])
    await gone
    expect([...server.app.tandem.connections].length).toBe(1)
    await writer.saved(48)
    slow.destroy()
  })

  it('a client that stops answering pings is ended after two missed pongs, authenticated or not', async () => {
    server = await startServer({ keepaliveMs: 200, limits: { authTimeoutMs: 60_000 } })
    await vanishingClient(server.port, '/v1/sync/asleep')
    const gone = once('the silent socket ended', newestServerSocket(server), 'close')
    await gone
    expect(server.app.tandem.connections.size).toBe(0)
  })
})

describe('credentials that are not tokens', () => {
  it('the server secret sent as a socket token is refused (4401)', async () => {
    server = await startServer({ authenticate: undefined })
    const client = await rawClient(server.syncUrl, 'room', { token: TEST_SECRET })
    expect((await client.closed).code).toBe(4401)
    expect(client.messages).toEqual([expect.objectContaining({ kind: 'error', code: 'unauthorized' })])
  })
})

describe('HTTP', () => {
  it('sets the request timeout from the limits', async () => {
    server = await startServer({ limits: { requestTimeoutMs: 12_345 } })
    expect(server.app.server.requestTimeout).toBe(12_345)
  })
})
