/**
 * The Hocuspocus provider's endpoint (SPEC section 5.1): `GET /v1/hocuspocus` upgrades to one
 * socket that carries many documents, each a Connection of its own (the same state machine,
 * gating, limits and durability as Tandem's own protocol) over a transport that puts the
 * document's address before its frames. A document opens with the provider's Token message; until
 * its session is open its messages are queued (bounded); it closes on its own (the provider's Close,
 * or a refusal told as PermissionDenied) while the socket and its other documents go on. What ends
 * the whole socket is what the socket itself refuses: its budgets, a frame that does not decode.
 */

import type { FastifyInstance } from 'fastify'
import { CloseCode, TandemError } from '../../protocol/errors.ts'
import { addressed, encodeAddress, decodeHocuspocusFrame, writeHocuspocusPermissionDenied } from '../../protocol/hocuspocus.ts'
import { isValidRoomId } from '../../protocol/ids.ts'
import { encodeFrame } from '../../protocol/messages.ts'
import type { SharedFrame } from '../rooms/fanout.ts'
import { TokenBucket } from '../token-bucket.ts'
import { Connection } from './connection.ts'
import { hocuspocusProtocol } from './hocuspocus-protocol.ts'
import { KEEPALIVE_FRAME } from './keepalive.ts'
import { AddressPrefix, PeerSocket } from './peer-socket.ts'
import { releaseUpgrade } from './upgrade.ts'
import { type SyncRouteDeps, rateLimitUpgrades } from './route.ts'
import type { Transport } from './transport.ts'

/** One document of a shared socket: its frames go out behind its address. */
class DocumentTransport implements Transport {
  readonly #socket: PeerSocket
  readonly #address: AddressPrefix
  readonly #closed: () => void

  constructor(socket: PeerSocket, address: string, closed: () => void) {
    this.#socket = socket
    // Every receiver of a room has the same address (its id) but with 4.x `sessionAwareness`.
    this.#address = new AddressPrefix(encodeAddress(address), `hocuspocus:${address}`)
    this.#closed = closed
  }

  send(frame: Uint8Array, shared?: SharedFrame): void {
    this.#socket.sendAddressed(this.#address, frame, shared)
  }

  /** Closes this document only: the provider was told why (PermissionDenied), the socket stays. */
  close(): void {
    this.#closed()
  }

  takeOutbound(bytes: number): boolean {
    return this.#socket.takeOutbound(bytes)
  }

  takeIntegration(steps: number): boolean {
    return this.#socket.takeIntegration(steps)
  }
}

export function hocuspocusRoute(app: FastifyInstance, deps: SyncRouteDeps): void {
  const { context, limits, sockets } = deps
  app.get('/v1/hocuspocus', { websocket: true, onRequest: rateLimitUpgrades(deps.connectionRate, limits.connectionsPerIpPerMinute) }, (ws, request) => {
    releaseUpgrade(ws)
    const socket = new PeerSocket(ws, limits, context.metrics, context.log)
    const requestInfo = { ip: request.ip, headers: request.headers }
    /** The socket's documents, by address. */
    const documents = new Map<string, Connection>()
    // Opening a document costs an authentication: a socket may open `documentsPerSocket` at once,
    // then that many a minute (a refused document re-sent in a loop is a flood, not a retry).
    const opens = new TokenBucket(limits.documentsPerSocket / 60, limits.documentsPerSocket, Date.now())
    sockets.add(socket)
    // A socket that never opens a document is closed, as a connection that never authenticates is.
    let opened = false
    const idle = setTimeout(() => {
      if (!opened) socket.close(CloseCode.authTimeout, 'unauthorized')
    }, limits.authTimeoutMs)

    /** Refuses one document before it has a connection: the provider hears why, nothing else changes. */
    const deny = (address: string, error: TandemError): void => {
      context.log.debug({ address, code: error.code }, 'hocuspocus document refused')
      socket.send(addressed(encodeAddress(address), encodeFrame(writeHocuspocusPermissionDenied, `${error.code}: ${error.message}`)))
    }

    const open = (address: string, roomId: string, token: string | null): void => {
      if (!isValidRoomId(roomId)) {
        deny(address, new TandemError('malformed_message', 'room ids are 1 to 256 characters, without control characters'))
        return
      }
      if (documents.size >= limits.documentsPerSocket) {
        deny(address, new TandemError('rate_limited', `more than ${limits.documentsPerSocket} documents on one socket`))
        return
      }
      if (!opens.take(1, Date.now())) {
        deny(address, new TandemError('rate_limited', `more than ${limits.documentsPerSocket} documents opened a minute on one socket; slow down`))
        return
      }
      opened = true
      clearTimeout(idle)
      let connection: Connection | null = null
      const transport = new DocumentTransport(socket, address, () => {
        if (connection !== null && documents.get(address) === connection) documents.delete(address)
      })
      connection = new Connection(transport, roomId, requestInfo, context)
      documents.set(address, connection)
      connection.begin(hocuspocusProtocol, { roomId, token, via: 'hocuspocus' })
    }

    socket.listen({
      frame(frame) {
        const decoded = decodeHocuspocusFrame(frame)
        // The 4.x provider's answer to a Ping; Tandem keeps sockets alive with messages every
        // provider reads (2.x and 3.x would misread a bare Ping), so it is only ever tolerated.
        if (decoded.kind === 'pong') return
        const { address, documentName, message, body } = decoded
        const connection = documents.get(address)
        switch (message.kind) {
          case 'token':
            if (connection === undefined) open(address, documentName, message.token)
            // A fresh token for an open document (the provider's token refresh): decided again
            // without reconnecting. One arriving while the first is still verified is dropped: the
            // provider sends its token once per attach.
            else if (connection.isOpen) void connection.reauthenticate({ roomId: connection.roomId, token: message.token, via: 'hocuspocus' })
            return
          case 'close':
            connection?.close(CloseCode.normal, 'provider_initiated')
            return
          case 'stateless':
            // Tandem has no server-side stateless hooks: nothing to hand it to.
            return
          default:
            if (connection === undefined) {
              deny(address, new TandemError('unauthorized', 'send the Token message for this document first'))
              return
            }
            try {
              connection.receive(message, body)
            } catch (err) {
              // What one document's message broke (its queue's bound, a write its room refuses)
              // ends that document only.
              connection.refuse(err)
            }
        }
      },
      refuse(error: TandemError) {
        // The socket's own refusal (its budgets, an undecodable frame) ends every document on it.
        for (const connection of [...documents.values()]) connection.end(error)
        socket.close(error.closeCode ?? CloseCode.serverError, error.code)
      },
      quiet() {
        // Providers drop a socket that hears nothing for 30 s: an empty awareness update about one
        // of its documents is read and ignored by every version.
        const first = documents.values().next().value
        if (first?.isOpen) first.send(KEEPALIVE_FRAME)
      },
      closed() {
        clearTimeout(idle)
        sockets.delete(socket)
        for (const connection of [...documents.values()]) connection.closed()
        documents.clear()
      },
    })
  })
}
