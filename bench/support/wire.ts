/**
 * Cheap load-generator clients: a minimal WebSocket client on a raw TCP socket (RFC 6455, binary
 * frames only), so the client side costs as little as it can and the server is what is measured.
 *
 * - Sends are pre-framed: `clientFrame` masks a payload once with the all-zero key (a valid mask
 *   that leaves the bytes as they are), and `sendFramed` writes those bytes as they are.
 * - Receives read the frame header and the first bytes of the message (its type, Tandem's `saved`
 *   count); an update is never decoded or applied unless the caller asks for the frame.
 * - Pings are answered (servers close sockets that miss pongs); nothing else is supported: no
 *   fragmentation, no extensions, no text frames.
 */

import { randomBytes } from 'node:crypto'
import { type NetConnectOpts, type Socket, connect as tcpConnect } from 'node:net'
import * as decoding from 'lib0/decoding'
import { MessageType, SyncType } from '../../protocol/messages.ts'

export interface WireClient {
  /** Writes the server said are stored (Tandem's `saved`). */
  saved: number
  /** Sync update frames received (relayed edits), and their bytes. */
  updates: number
  updateBytes: number
  bytes: number
  /** Resolves on the first message from the server (Tandem: `authenticated`, once the room is open). */
  readonly greeted: Promise<void>
  /** Frames and sends one message. */
  send(payload: Uint8Array): void
  /** Sends a message framed beforehand by `clientFrame`. */
  sendFramed(frame: Buffer): void
  /** Resolves when `saved` reaches `count`. */
  untilSaved(count: number, ms?: number): Promise<void>
  /** Closes with a close frame and waits for the socket to end. */
  close(): Promise<void>
  /** Drops the connection at once. */
  terminate(): void
  /**
   * Stops reading: what the server sends waits in the kernel's receive buffer, at no cost to either
   * side, until `resume`. A receiver that only has to prove it got everything reads in bulk.
   */
  pause(): void
  resume(): void
}

export interface WireOptions {
  /** Called for every relayed sync update frame, with the message. */
  onUpdate?: (message: Buffer) => void
  /** Called for every `saved` acknowledgement, with the count of writes stored so far. */
  onSaved?: (count: number) => void
  /** Parse message types after this many bytes of prefix (Hocuspocus prefixes the document name). */
  prefix?: (message: Buffer) => number
}

const OP_BINARY = 0x2
const OP_CLOSE = 0x8
const OP_PING = 0x9
const OP_PONG = 0xa

/** A client frame (FIN, `opcode`) carrying `payload`, masked with the all-zero key. */
export function clientFrame(payload: Uint8Array, opcode = OP_BINARY): Buffer {
  const n = payload.length
  const ext = n > 65535 ? 8 : n > 125 ? 2 : 0
  const frame = Buffer.allocUnsafe(2 + ext + 4 + n)
  frame[0] = 0x80 | opcode
  frame[1] = 0x80 | (ext === 8 ? 127 : ext === 2 ? 126 : n)
  if (ext === 2) frame.writeUInt16BE(n, 2)
  else if (ext === 8) frame.writeBigUInt64BE(BigInt(n), 2)
  frame.writeUInt32BE(0, 2 + ext) // the masking key: zero, so the payload is sent as it is
  frame.set(payload, 6 + ext)
  return frame
}

export async function connect(url: string, options: WireOptions = {}): Promise<WireClient> {
  const { hostname, port, pathname, search } = new URL(url)
  // A paused client buffers one read and then stops reading (Node would read up to 16 KiB first).
  const tcp: NetConnectOpts & { readableHighWaterMark: number } = { host: hostname, port: Number(port), noDelay: true, readableHighWaterMark: 1 }
  const socket = tcpConnect(tcp)
  socket.on('error', () => {})
  const early = await handshake(socket, hostname, Number(port), pathname + search)

  let waiter: { count: number; resolve: () => void } | null = null
  let greet!: () => void
  const greeted = new Promise<void>((resolve) => {
    greet = resolve
  })
  const client: WireClient = {
    saved: 0,
    updates: 0,
    updateBytes: 0,
    bytes: 0,
    greeted,
    send: (payload) => void socket.write(clientFrame(payload)),
    sendFramed: (frame) => void socket.write(frame),
    untilSaved: (count, ms = 60_000) =>
      new Promise<void>((resolve, reject) => {
        if (client.saved >= count) return resolve()
        const onClose = (): void => {
          clearTimeout(timer)
          reject(new Error(`socket closed at saved ${client.saved} of ${count}`))
        }
        const timer = setTimeout(() => {
          socket.off('close', onClose)
          reject(new Error(`saved ${client.saved} of ${count} after ${ms} ms`))
        }, ms)
        socket.once('close', onClose)
        waiter = {
          count,
          resolve: () => {
            clearTimeout(timer)
            socket.off('close', onClose)
            resolve()
          },
        }
      }),
    close: () =>
      new Promise<void>((resolve) => {
        if (socket.destroyed) return resolve()
        socket.once('close', () => resolve())
        socket.end(clientFrame(Uint8Array.of(0x03, 0xe8), OP_CLOSE)) // 1000
        setTimeout(() => socket.destroy(), 1_000).unref()
      }),
    terminate: () => void socket.destroy(),
    pause: () => void socket.pause(),
    resume: () => void socket.resume(),
  }

  const onMessage = (message: Buffer): void => {
    client.bytes += message.length
    greet()
    const d = decoding.createDecoder(message)
    if (options.prefix) d.pos = options.prefix(message)
    const type = decoding.readVarUint(d)
    if (type === MessageType.saved) {
      client.saved = decoding.readVarUint(d)
      options.onSaved?.(client.saved)
      if (waiter !== null && client.saved >= waiter.count) {
        const w = waiter
        waiter = null
        w.resolve()
      }
    } else if (type === MessageType.sync && decoding.readVarUint(d) === SyncType.update) {
      client.updates++
      client.updateBytes += message.length
      options.onUpdate?.(message)
    }
  }

  // Server frames are never masked; a frame may span reads, and a read may hold many frames.
  let pending: Buffer | null = null
  const onData = (chunk: Buffer): void => {
    const buf = pending === null ? chunk : Buffer.concat([pending, chunk])
    pending = null
    let pos = 0
    while (buf.length - pos >= 2) {
      const opcode = buf[pos]! & 0x0f
      let len = buf[pos + 1]! & 0x7f
      let start = pos + 2
      if (len === 126) {
        if (buf.length - pos < 4) break
        len = buf.readUInt16BE(pos + 2)
        start += 2
      } else if (len === 127) {
        if (buf.length - pos < 10) break
        len = Number(buf.readBigUInt64BE(pos + 2))
        start += 8
      }
      if (buf.length < start + len) break
      const payload = buf.subarray(start, start + len)
      pos = start + len
      if (opcode === OP_BINARY) onMessage(payload)
      else if (opcode === OP_PING) socket.write(clientFrame(payload, OP_PONG))
      else if (opcode === OP_CLOSE) socket.end()
    }
    if (pos < buf.length) pending = buf.subarray(pos)
  }
  socket.on('data', onData)
  if (early.length > 0) onData(early)
  return client
}

/** The HTTP upgrade: resolves once the server answered 101, with the frame bytes that came with it. */
function handshake(socket: Socket, host: string, port: number, path: string): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    let head = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk])
      const end = head.indexOf('\r\n\r\n')
      if (end < 0) return
      socket.off('data', onData)
      socket.off('error', reject)
      const status = head.subarray(0, head.indexOf('\r\n')).toString()
      if (!/^HTTP\/1\.1 101 /.test(status)) {
        socket.destroy()
        reject(new Error(`upgrade refused: ${status}`))
        return
      }
      resolve(head.subarray(end + 4))
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.once('connect', () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      )
    })
  })
}
