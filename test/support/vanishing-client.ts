/**
 * A WebSocket client opened by hand on a raw TCP socket that, after the upgrade (and any frames the
 * test gives it), stops reading: it never answers a ping or a close frame, and the server's writes
 * to it pile up. What a laptop that went to sleep, or a client that stopped reading, looks like.
 */

import { type Socket, connect } from 'node:net'
import { expect } from 'vitest'
import { withDeadline } from './wait.ts'

/** A masked binary frame, as a client must send (RFC 6455 section 5.3); payloads under 64 KiB. */
const clientFrame = (payload: Uint8Array): Buffer => {
  const mask = Buffer.from([0x12, 0x34, 0x56, 0x78])
  const head = payload.length < 126 ? Buffer.from([0x82, 0x80 | payload.length]) : Buffer.from([0x82, 0x80 | 126, payload.length >> 8, payload.length & 0xff])
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!))
  return Buffer.concat([head, mask, body])
}

export async function vanishingClient(port: number, path: string, frames: Uint8Array[] = []): Promise<Socket> {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await withDeadline('tcp connect', new Promise<void>((resolve) => socket.once('connect', () => resolve())))
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
  )
  const head = await withDeadline('upgrade answer', new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString()))))
  expect(head).toMatch(/^HTTP\/1.1 101/)
  for (const frame of frames) socket.write(clientFrame(frame))
  socket.pause()
  return socket
}
