/**
 * server/limited-socket.ts over real sockets: frames Tandem builds once (`frameBinary`) and writes
 * itself reach a stock ws client whole and in order with what ws sends, at every length encoding;
 * and the ws version we ship still has the internals the direct write relies on (an upgrade that
 * changes them makes this fail rather than silently fall back to the slower path).
 */

import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import { LimitedWebSocket, frameBinary } from '../server/sync/socket.ts'
import { until } from './support/wait.ts'

const servers: WebSocketServer[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) {
    for (const c of s.clients) c.terminate()
    await new Promise<void>((resolve) => s.close(() => resolve()))
  }
})

/** A ws server of LimitedWebSockets and a stock client connected to it. */
async function pair(): Promise<{ server: LimitedWebSocket; client: WebSocket; received: Buffer[] }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, WebSocket: LimitedWebSocket } as ConstructorParameters<typeof WebSocketServer>[0])
  servers.push(wss)
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()))
  const serverSide = new Promise<LimitedWebSocket>((resolve) => wss.once('connection', (ws) => resolve(ws as LimitedWebSocket)))
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`)
  const received: Buffer[] = []
  client.on('message', (data: Buffer) => received.push(data))
  await new Promise<void>((resolve, reject) => {
    client.once('open', () => resolve())
    client.once('error', reject)
  })
  return { server: await serverSide, client, received }
}

const payload = (length: number, seed: number): Uint8Array => Uint8Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff)

describe('frames built once', () => {
  it('arrive whole at every length encoding (7-bit, 16-bit, 64-bit)', async () => {
    const { server, client, received } = await pair()
    expect(server.canWriteFrames).toBe(true) // the shipped ws still looks as sendFrame expects
    const lengths = [0, 1, 125, 126, 127, 65_535, 65_536, 70_000]
    lengths.forEach((n, i) => {
      server.sendFrame(payload(n, i), frameBinary(payload(n, i)))
    })
    await until('every frame', client, ['message'], () => received.length === lengths.length)
    expect(lengths.filter((n, i) => !received[i]!.equals(payload(n, i)))).toEqual([])
  })

  it('keep their order with messages ws frames itself', async () => {
    const { server, client, received } = await pair()
    const sent: Uint8Array[] = []
    for (let i = 0; i < 200; i++) {
      const p = payload(i % 3 === 0 ? 70_000 : 20, i)
      sent.push(p)
      if (i % 2 === 0) server.send(p)
      else server.sendFrame(p, frameBinary(p))
    }
    await until('every message', client, ['message'], () => received.length === sent.length)
    expect(sent.map((_, i) => i).filter((i) => !received[i]!.equals(sent[i]!))).toEqual([])
  })

  it('the same frame bytes serve several receivers', async () => {
    const a = await pair()
    const b = await pair()
    const p = payload(300, 7)
    const frame = frameBinary(p)
    a.server.sendFrame(p, frame)
    b.server.sendFrame(p, frame)
    await until('a', a.client, ['message'], () => a.received.length === 1)
    await until('b', b.client, ['message'], () => b.received.length === 1)
    expect(new Uint8Array(a.received[0]!)).toEqual(p)
    expect(new Uint8Array(b.received[0]!)).toEqual(p)
  })
})
