/**
 * The ws WebSocket class the server uses.
 *
 * - Oversized frames: ws refuses a frame larger than `maxPayload` as soon as its header arrives
 *   (nothing is buffered) and closes with 1009. Tandem's contract is 4413 (`message_too_large`,
 *   final), so the stock y-websocket client stops instead of resending the same oversized message
 *   forever. This is the one place that translates it.
 * - Frames built once: `sendFrame` writes a message already framed by `frameBinary` (server frames
 *   are not masked, so the same bytes serve every receiver) with one socket write, where `send`
 *   frames it again for each receiver and writes header and payload as two buffers. It reaches into
 *   ws's sender (private, checked by test/limited-socket.test.ts against the ws version we ship) and
 *   falls back to `send` whenever ws may hold queued frames, so frames are never reordered.
 */

import type { Duplex } from 'node:stream'
import { WebSocket } from 'ws'
import { CloseCode } from '../../protocol/errors.ts'

const MESSAGE_TOO_BIG = 1009

/** `payload` as one unmasked, final, binary WebSocket frame (RFC 6455 5.2). Pure. */
export function frameBinary(payload: Uint8Array): Buffer {
  const n = payload.length
  const header = n > 65535 ? 10 : n > 125 ? 4 : 2
  const frame = Buffer.allocUnsafe(header + n)
  frame[0] = 0x82 // FIN, binary
  if (header === 2) frame[1] = n
  else if (header === 4) {
    frame[1] = 126
    frame.writeUInt16BE(n, 2)
  } else {
    frame[1] = 127
    frame.writeBigUInt64BE(BigInt(n), 2)
  }
  frame.set(payload, header)
  return frame
}

/** The payload of a frame `frameBinary` built (a view, no copy). */
export function payloadOf(frame: Buffer): Buffer {
  const length = frame[1]! & 0x7f
  return frame.subarray(length === 127 ? 10 : length === 126 ? 4 : 2)
}

/** The parts of ws's WebSocket that `sendFrame` relies on (ws 8). */
interface WsInternals {
  _socket?: Duplex
  _sender?: { _state?: unknown; _queue?: unknown[] }
}

export class LimitedWebSocket extends WebSocket {
  override close(code?: number, data?: string | Buffer): void {
    if (code === MESSAGE_TOO_BIG) super.close(CloseCode.tooLarge, 'message_too_large')
    else super.close(code, data)
  }

  /** Whether `sendFrame` writes straight to the socket now (ws idle: nothing queued or deflating). */
  get canWriteFrames(): boolean {
    const { _socket: socket, _sender: sender } = this as unknown as WsInternals
    return socket !== undefined && sender !== undefined && sender._state === 0 && sender._queue?.length === 0
  }

  /** Sends `payload`, given also as `frame` (`frameBinary(payload)`), which is written if it can be. */
  sendFrame(payload: Uint8Array, frame: Buffer): void {
    if (this.canWriteFrames) (this as unknown as WsInternals)._socket!.write(frame)
    else this.send(payload)
  }
}
