/**
 * What each message of an open session does (the Hocuspocus model's message receiver, apart from
 * the connection's lifecycle). Every message is gated by one read of the session's permissions,
 * decided before: no store lookup, no parse. Refusals throw a coded TandemError (the session ends)
 * or are told as notices (the session stays), by message kind, never rewritten.
 */

import { readAwarenessUpdate } from '../../protocol/awareness.ts'
import { TandemError } from '../../protocol/errors.ts'
import { type ClientMessage, encodeFrame, writeSyncStep2 } from '../../protocol/messages.ts'
import { canWrite, canWritePresence } from '../../protocol/permissions.ts'
import type { Credentials, Session } from '../auth/session.ts'
import type { ErrorCode } from '../../protocol/errors.ts'
import type { FastifyBaseLogger } from 'fastify'
import type { Metrics } from '../metrics.ts'
import type { RoomMember } from '../rooms/room.ts'
import type { Transport } from './transport.ts'
import type { Room } from '../rooms/room.ts'
import { validateStateVector, validateUpdate } from '../rooms/update-validator.ts'
import { EMPTY_AWARENESS_FRAME } from './keepalive.ts'

/** The open session a message arrives on, as dispatch needs it (sync/connection.ts). */
export interface OpenSession extends RoomMember {
  readonly roomId: string
  readonly context: { readonly metrics: Metrics; readonly log: FastifyBaseLogger }
  readonly transport: Pick<Transport, 'takeOutbound' | 'takeIntegration'>
  /** Whether the free first sync answer (the join's) was given. */
  answeredSync: boolean
  /** How the client's protocol acknowledges writes (client-protocol.ts). */
  readonly acknowledges: 'count' | 'each'
  /** With `each`: tells the client a write was refused, or that it added nothing and so is stored. */
  writeStatus(stored: boolean): void
  notice(code: ErrorCode, message: string): void
  reauthenticate(credentials: Credentials): Promise<void>
}

export function dispatch(connection: OpenSession, room: Room, session: Session, message: ClientMessage, frame: Uint8Array): void {
  const { metrics, log } = connection.context
  switch (message.kind) {
    case 'sync-step-1': {
      validateStateVector(message.stateVector)
      const answer = encodeFrame(writeSyncStep2, room.syncAnswer(message.stateVector))
      // What the server sends counts against the budget too: a reader asking for the whole
      // document again and again is a flood. Its first sync, the join's, is free.
      if (connection.answeredSync) chargeOutbound(connection, answer.length)
      connection.answeredSync = true
      connection.send(answer)
      return
    }
    case 'sync-step-2':
    case 'update': {
      if (!canWrite(session.permissions)) {
        refuseWrite(connection, room, message)
        return
      }
      const summary = validateUpdate(message.update)
      // Bounded before it is applied: what Yjs would scan to place it (a tiny update can cost
      // seconds against a long list), per update and per connection over time.
      const steps = room.integrationCost(summary)
      if (steps > 0 && !connection.transport.takeIntegration(steps)) {
        throw new TandemError('rate_limited', 'these updates cost too much to integrate; slow down and reconnect later')
      }
      try {
        room.applyUpdate(message.update, connection, summary, message.kind === 'update' ? frame : null)
      } catch (err) {
        // The room is full (its size or memory limit, or the process's): nothing was applied,
        // queued or relayed, and the TandemError says how the socket closes.
        if (err instanceof TandemError) throw err
        // Yjs can still refuse a well-formed update against some document states; the update
        // was neither queued nor relayed, and its sender is the one to go.
        metrics.rejected.apply_failed++
        log.warn({ err }, 'applying a validated update failed')
        throw new TandemError('malformed_message', 'the update could not be applied to this document', { cause: err })
      }
      return
    }
    case 'awareness': {
      if (!canWritePresence(session.permissions)) {
        connection.notice('presence_forbidden', 'this session may not show presence in the room')
        return
      }
      const result = room.applyAwareness(connection, frame, readAwarenessUpdate(message.update))
      if (result.forbidden + result.invalid > 0) {
        connection.notice('presence_forbidden', 'awareness entries for clients this connection does not own, or invalid, were dropped')
      }
      return
    }
    case 'query-awareness': {
      const answer = room.presenceFrame() ?? EMPTY_AWARENESS_FRAME
      chargeOutbound(connection, answer.length)
      connection.send(answer)
      return
    }
    case 'auth':
      // Fresh credentials inside the socket: re-evaluated without reconnecting.
      void connection.reauthenticate({ roomId: connection.roomId, token: message.token, via: 'tandem' })
      return
    default: {
      const unreachable: never = message
      throw new TandemError('malformed_message', `unhandled message ${String(unreachable)}`)
    }
  }
}

/**
 * A reader's write, dropped whole: never applied, stored or relayed. Counted so that `saved` stays
 * in step, or answered at once by a protocol that acknowledges each write; there, a reader's state
 * (the sync step 2 a Hocuspocus provider sends every reader) that adds nothing is answered as stored.
 */
const refuseWrite = (connection: OpenSession, room: Room, message: Extract<ClientMessage, { update: Uint8Array }>): void => {
  if (connection.acknowledges === 'count') {
    room.skipWrite(connection)
  } else {
    if (message.kind === 'sync-step-2') {
      validateUpdate(message.update)
      // The comparison walks the document: it costs what integrating that much would.
      if (!connection.transport.takeIntegration(room.structCount + 1)) {
        throw new TandemError('rate_limited', 'too many states sent; slow down and reconnect later')
      }
      if (room.containsUpdate(message.update)) {
        connection.writeStatus(true)
        return
      }
    }
    connection.writeStatus(false)
  }
  connection.context.metrics.rejected.read_only++
  connection.notice('read_only', 'this session may not write to the room')
}

/** Takes an answer's bytes from the client's byte budget. */
const chargeOutbound = (connection: OpenSession, bytes: number): void => {
  if (!connection.transport.takeOutbound(bytes)) throw new TandemError('rate_limited', 'too many bytes asked for; slow down and reconnect later')
}
