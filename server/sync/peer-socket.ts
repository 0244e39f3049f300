/**
 * One client's WebSocket, whatever it carries: what it may send (message, byte and integration
 * budgets: past them `rate_limited`), what it is sent (one socket write per frame, a frame shared by
 * a broadcast framed once; a client that stops reading is closed with 1013 before the server
 * buffers without bound), and whether it is alive (a ping a heartbeat, two missed pongs end it, a
 * keepalive message to a socket that was sent nothing for a whole heartbeat). The frames it takes
 * are handed to its owner (a wire protocol's endpoint) as they arrive; it knows no message format.
 */

import type { FastifyBaseLogger } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import { CloseCode, TandemError } from '../../protocol/errors.ts'
import type { Limits } from '../limits.ts'
import type { Metrics } from '../metrics.ts'
import type { SharedFrame } from '../rooms/fanout.ts'
import { TokenBucket } from '../token-bucket.ts'
import { LimitedWebSocket, frameBinary, payloadOf } from './socket.ts'

const OPEN = 1
/** Frames up to this size are framed here and written with one socket write (see `send`). */
const SMALL_FRAME = 4_096
/** The kind of framing a WebSocket frame is (SharedFrame's cache key). */
const WS_FRAME = 'ws'

/**
 * What a multiplexed socket puts before each frame of one of its documents: the address's bytes,
 * and how to frame a shared frame behind them (cached in the SharedFrame under `kind`, so the
 * receivers of one address share one build).
 */
export class AddressPrefix {
  readonly bytes: Uint8Array
  readonly kind: string
  readonly frame: (frame: Uint8Array) => Buffer

  constructor(bytes: Uint8Array, kind: string) {
    this.bytes = bytes
    this.kind = kind
    this.frame = (frame) => frameBinary(concat(bytes, frame))
  }
}

const concat = (prefix: Uint8Array, frame: Uint8Array): Uint8Array => {
  const out = new Uint8Array(prefix.length + frame.length)
  out.set(prefix, 0)
  out.set(frame, prefix.length)
  return out
}

export type SocketLimits = Pick<
  Limits,
  'maxBufferedBytes' | 'messagesPerSecond' | 'messageBurst' | 'bytesPerSecond' | 'byteBurst' | 'integrationStepsPerSecond' | 'integrationStepsBurst'
>

export interface PeerSocketEvents {
  /** A binary frame within the budgets. Throwing a TandemError refuses it (the owner's `refuse` runs). */
  frame(frame: Buffer): void
  /** Something the socket refused itself (a budget, a text frame). */
  refuse(error: TandemError): void
  /** Nothing was sent for a whole heartbeat: the owner sends what keeps its client's socket alive. */
  quiet(): void
  /** The socket is gone, however it went. */
  closed(): void
}

export class PeerSocket {
  readonly #ws: WebSocket
  /** The same socket when it can take frames built once (`sendFrame`): decided once, not per send. */
  readonly #framing: LimitedWebSocket | null
  readonly #limits: SocketLimits
  readonly #metrics: Metrics
  readonly #log: FastifyBaseLogger
  readonly #messageBudget: TokenBucket
  readonly #byteBudget: TokenBucket
  readonly #integrationBudget: TokenBucket
  #events: PeerSocketEvents | null = null
  #closed = false
  /** Whether anything was sent since the last heartbeat (a flag, not a clock read per send). */
  #sentSinceHeartbeat = false
  #missedPongs = 0

  /** Text frames (JSON signalling) instead of binary ones. */
  readonly #text: boolean

  constructor(ws: WebSocket, limits: SocketLimits, metrics: Metrics, log: FastifyBaseLogger, options: { text?: boolean } = {}) {
    this.#ws = ws
    this.#text = options.text ?? false
    this.#framing = ws instanceof LimitedWebSocket ? ws : null
    this.#limits = limits
    this.#metrics = metrics
    this.#log = log
    const now = Date.now()
    this.#messageBudget = new TokenBucket(limits.messagesPerSecond, limits.messageBurst, now)
    this.#byteBudget = new TokenBucket(limits.bytesPerSecond, limits.byteBurst, now)
    this.#integrationBudget = new TokenBucket(limits.integrationStepsPerSecond, limits.integrationStepsBurst, now)
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary))
    ws.on('close', () => this.#teardown())
    ws.on('pong', () => {
      this.#missedPongs = 0
    })
    ws.on('error', (err: Error & { code?: string }) => {
      // ws has already closed the socket (an oversized frame: 4413, see socket.ts).
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') metrics.rejected.too_large++
      log.debug({ err }, 'socket error')
      this.#teardown()
    })
  }

  /** Who hears what this socket takes; set once, before any frame can arrive (the same turn). */
  listen(events: PeerSocketEvents): void {
    this.#events = events
  }

  get isClosed(): boolean {
    return this.#closed
  }

  send(frame: Uint8Array, shared?: SharedFrame): void {
    this.#write(frame, shared, WS_FRAME, frameBinary)
  }

  /** Sends one text frame (a text socket's message). */
  sendText(text: string): void {
    const ws = this.#ws
    if (ws.readyState !== OPEN) return
    if (ws.bufferedAmount > this.#limits.maxBufferedBytes) {
      this.close(CloseCode.tryAgainLater, 'slow_reader')
      return
    }
    ws.send(text)
    this.#sentSinceHeartbeat = true
    this.#metrics.messagesOut++
    this.#metrics.bytesOut += text.length
  }

  /**
   * Sends `frame` behind `address` (a multiplexed socket's document, its Hocuspocus address: see
   * AddressPrefix); a shared frame is framed once for every receiver with the same address.
   */
  sendAddressed(address: AddressPrefix, frame: Uint8Array, shared?: SharedFrame): void {
    if (shared !== undefined) this.#write(frame, shared, address.kind, address.frame)
    else this.#write(concat(address.bytes, frame), undefined, WS_FRAME, frameBinary)
  }

  #write(frame: Uint8Array, shared: SharedFrame | undefined, kind: string, build: (frame: Uint8Array) => Buffer): void {
    const ws = this.#ws
    if (ws.readyState !== OPEN) return
    if (ws.bufferedAmount > this.#limits.maxBufferedBytes) {
      // A client that stopped reading would make the server buffer without bound.
      this.close(CloseCode.tryAgainLater, 'slow_reader')
      return
    }
    // One socket write of a frame built once (small frames are framed here: a copy is cheaper
    // than ws's two-buffer write); large frames of one receiver go through ws as they are.
    if (shared !== undefined) {
      const wire = shared.wire(kind, build)
      const payload = kind === WS_FRAME ? frame : payloadOf(wire)
      if (this.#framing !== null) this.#framing.sendFrame(payload, wire)
      else ws.send(payload)
    } else if (this.#framing !== null && frame.length <= SMALL_FRAME) {
      this.#framing.sendFrame(frame, frameBinary(frame))
    } else {
      ws.send(frame)
    }
    this.#sentSinceHeartbeat = true
    this.#metrics.messagesOut++
    this.#metrics.bytesOut += frame.length
  }

  /** Counts `bytes` the server sends on request (a sync answer) against the byte budget. */
  takeOutbound(bytes: number): boolean {
    return this.#byteBudget.take(bytes, Date.now())
  }

  /** Counts the estimated work of integrating an update against the integration budget. */
  takeIntegration(steps: number): boolean {
    return this.#integrationBudget.take(steps, Date.now())
  }

  close(code: number, reason: string): void {
    if (this.#closed) return
    this.#teardown()
    this.#ws.close(code, reason)
  }

  /** Pings, ends a socket that missed two pongs, and keeps a quiet client's socket alive. */
  heartbeat(): void {
    if (this.#closed) return
    if (this.#missedPongs >= 2) {
      this.#log.info('no pong: terminating')
      this.#ws.terminate()
      this.#teardown()
      return
    }
    this.#missedPongs++
    this.#ws.ping()
    // The stock y-websocket client drops a socket that received nothing for 30 s: one quiet for a
    // whole heartbeat interval gets a keepalive.
    if (!this.#sentSinceHeartbeat) this.#events?.quiet()
    this.#sentSinceHeartbeat = false
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    if (this.#closed) return
    const frame = data as Buffer // binaryType is 'nodebuffer': always one Buffer
    this.#metrics.messagesIn++
    this.#metrics.bytesIn += frame.length
    const events = this.#events!
    try {
      const now = Date.now()
      if (!this.#messageBudget.take(1, now) || !this.#byteBudget.take(frame.length, now)) {
        throw new TandemError('rate_limited', 'too many messages or bytes; slow down and reconnect later')
      }
      if (isBinary === this.#text) {
        throw new TandemError('malformed_message', this.#text ? 'the signalling protocol is text frames of JSON' : 'text frames are not part of the protocol')
      }
      events.frame(frame)
    } catch (err) {
      events.refuse(err instanceof TandemError ? err : new TandemError('server_error', 'message handling failed', { cause: err }))
    }
  }

  #teardown(): void {
    if (this.#closed) return
    this.#closed = true
    this.#events?.closed()
  }
}
