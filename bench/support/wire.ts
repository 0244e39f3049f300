/**
 * Cheap load-generator clients: raw `ws` sockets sending pre-encoded frames. A receiver reads only
 * each frame's message type (and the `saved` count), never applies an update: the client side costs
 * as little as it can, so the server is what is measured.
 */

import * as decoding from 'lib0/decoding'
import { WebSocket } from 'ws'
import { MessageType, SyncType } from '../../protocol/messages.ts'

export interface WireClient {
  readonly socket: WebSocket
  /** Writes the server said are stored (Tandem's `saved`). */
  saved: number
  /** Sync update frames received (relayed edits). */
  updates: number
  bytes: number
  /** Resolves on the first message from the server (Tandem: `authenticated`, once the room is open). */
  readonly greeted: Promise<void>
  send(frame: Uint8Array): void
  /** Resolves when `saved` reaches `count`. */
  untilSaved(count: number, ms?: number): Promise<void>
  close(): Promise<void>
}

export interface WireOptions {
  /** Called for every relayed sync update frame, with the frame. */
  onUpdate?: (frame: Buffer) => void
  /** Parse message types after this many bytes of prefix (Hocuspocus prefixes the document name). */
  prefix?: (frame: Buffer) => number
}

export async function connect(url: string, options: WireOptions = {}): Promise<WireClient> {
  const socket = new WebSocket(url, { perMessageDeflate: false })
  let waiter: { count: number; resolve: () => void } | null = null
  let greet!: () => void
  const greeted = new Promise<void>((resolve) => {
    greet = resolve
  })
  const client: WireClient = {
    socket,
    saved: 0,
    updates: 0,
    bytes: 0,
    greeted,
    send: (frame) => socket.send(frame),
    untilSaved: (count, ms = 60_000) =>
      new Promise<void>((resolve, reject) => {
        if (client.saved >= count) return resolve()
        const onClose = (code: number): void => {
          clearTimeout(timer)
          reject(new Error(`socket closed (${code}) at saved ${client.saved} of ${count}`))
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
        if (socket.readyState === WebSocket.CLOSED) return resolve()
        socket.once('close', () => resolve())
        socket.close()
      }),
  }
  socket.on('error', () => {})
  socket.on('message', (data: Buffer) => {
    client.bytes += data.length
    greet()
    const d = decoding.createDecoder(data)
    if (options.prefix) d.pos = options.prefix(data)
    const type = decoding.readVarUint(d)
    if (type === MessageType.saved) {
      client.saved = decoding.readVarUint(d)
      if (waiter !== null && client.saved >= waiter.count) {
        const w = waiter
        waiter = null
        w.resolve()
      }
    } else if (type === MessageType.sync && decoding.readVarUint(d) === SyncType.update) {
      client.updates++
      options.onUpdate?.(data)
    }
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve())
    socket.once('error', reject)
  })
  return client
}
