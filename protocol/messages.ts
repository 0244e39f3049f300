/**
 * The wire messages: y-websocket's framing (a varUint message type, then its payload, one message per
 * WebSocket frame) and Tandem's own message types, as matching `write*` / `read*` pairs over lib0.
 * Frames are decoded once, at the edge, into a discriminated union; anything that does not decode
 * exactly (truncated, trailing bytes, and, from a client, an unknown type) is a `malformed_message`
 * error. A server message of a type a client does not know decodes as `unknown` (PROTOCOL.md,
 * Versioning): a newer server may add notices.
 *
 * PROTOCOL.md beside this file gives every message's bytes.
 */

import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { type ErrorCode, TandemError, isErrorCode } from './errors.ts'
import { type PermissionBits, closePermissionBits } from './permissions.ts'

/** Tandem protocol version, sent in `auth` and `authenticated`. */
export const PROTOCOL_VERSION = 1

export const MessageType = {
  /** y-protocols/sync: step 1, step 2, update. */
  sync: 0,
  /** y-protocols/awareness update. */
  awareness: 1,
  /** y-protocols/auth: permission denied (understood by the stock y-websocket client). */
  auth: 2,
  /** Ask the server for every awareness state. */
  queryAwareness: 3,
  /** Tandem, client → server: authenticate with a token. */
  tandemAuth: 32,
  /** Tandem, server → client: the session's identity and permissions. */
  authenticated: 33,
  /** Tandem, server → client: the session's permissions changed. */
  accessChanged: 34,
  /** Tandem, server → client: an error with a code. */
  error: 35,
  /** Tandem, server → client: this many of the connection's writes are stored. */
  saved: 36,
} as const

export const SyncType = { step1: 0, step2: 1, update: 2 } as const

/** y-protocols/auth sub-type: permission denied. */
const AUTH_PERMISSION_DENIED = 0

/** Who a session is, as the server tells the client once it authenticated. */
export interface SessionInfo {
  readonly connectionId: string
  readonly actor: unknown
  readonly info: unknown
  readonly permissions: PermissionBits
  /** Milliseconds since the epoch, or null when the session does not expire. */
  readonly expiresAt: number | null
}

export type SyncMessage =
  | { readonly kind: 'sync-step-1'; readonly stateVector: Uint8Array }
  | { readonly kind: 'sync-step-2'; readonly update: Uint8Array }
  | { readonly kind: 'update'; readonly update: Uint8Array }

/** What a client may send. */
export type ClientMessage =
  | SyncMessage
  | { readonly kind: 'awareness'; readonly update: Uint8Array }
  | { readonly kind: 'query-awareness' }
  | { readonly kind: 'auth'; readonly version: number; readonly token: string | null }

/** What a server may send. */
export type ServerMessage =
  | SyncMessage
  | { readonly kind: 'awareness'; readonly update: Uint8Array }
  | { readonly kind: 'permission-denied'; readonly reason: string }
  | { readonly kind: 'authenticated'; readonly version: number; readonly identity: SessionInfo }
  | { readonly kind: 'access-changed'; readonly permissions: PermissionBits }
  | { readonly kind: 'error'; readonly code: ErrorCode; readonly message: string }
  | { readonly kind: 'saved'; readonly count: number }
  /**
   * A message type this client does not know, from a newer server (PROTOCOL.md, "Versioning"): its
   * payload is skipped unread, and a client ignores it.
   */
  | { readonly kind: 'unknown'; readonly type: number }

const finish = (encoder: encoding.Encoder): Uint8Array => encoding.toUint8Array(encoder)

// --- sync (y-protocols/sync, wrapped in message type 0) ---------------------------------------

export const writeSyncStep1 = (encoder: encoding.Encoder, stateVector: Uint8Array): void => {
  encoding.writeVarUint(encoder, MessageType.sync)
  encoding.writeVarUint(encoder, SyncType.step1)
  encoding.writeVarUint8Array(encoder, stateVector)
}

export const writeSyncStep2 = (encoder: encoding.Encoder, update: Uint8Array): void => {
  encoding.writeVarUint(encoder, MessageType.sync)
  encoding.writeVarUint(encoder, SyncType.step2)
  encoding.writeVarUint8Array(encoder, update)
}

export const writeUpdate = (encoder: encoding.Encoder, update: Uint8Array): void => {
  encoding.writeVarUint(encoder, MessageType.sync)
  encoding.writeVarUint(encoder, SyncType.update)
  encoding.writeVarUint8Array(encoder, update)
}

const readSync = (decoder: decoding.Decoder): SyncMessage => {
  const syncType = decoding.readVarUint(decoder)
  const payload = decoding.readVarUint8Array(decoder)
  switch (syncType) {
    case SyncType.step1:
      return { kind: 'sync-step-1', stateVector: payload }
    case SyncType.step2:
      return { kind: 'sync-step-2', update: payload }
    case SyncType.update:
      return { kind: 'update', update: payload }
    default:
      throw new TandemError('malformed_message', `unknown sync message type ${syncType}`)
  }
}

// --- awareness and y-protocols auth ------------------------------------------------------------

export const writeAwareness = (encoder: encoding.Encoder, awarenessUpdate: Uint8Array): void => {
  encoding.writeVarUint(encoder, MessageType.awareness)
  encoding.writeVarUint8Array(encoder, awarenessUpdate)
}

export const writeQueryAwareness = (encoder: encoding.Encoder): void => {
  encoding.writeVarUint(encoder, MessageType.queryAwareness)
}

export const writePermissionDenied = (encoder: encoding.Encoder, reason: string): void => {
  encoding.writeVarUint(encoder, MessageType.auth)
  encoding.writeVarUint(encoder, AUTH_PERMISSION_DENIED)
  encoding.writeVarString(encoder, reason)
}

// --- Tandem messages ---------------------------------------------------------------------------

export const writeAuth = (encoder: encoding.Encoder, token: string | null): void => {
  encoding.writeVarUint(encoder, MessageType.tandemAuth)
  encoding.writeVarUint(encoder, PROTOCOL_VERSION)
  encoding.writeVarString(encoder, token ?? '')
}

export const writeAuthenticated = (encoder: encoding.Encoder, identity: SessionInfo): void => {
  encoding.writeVarUint(encoder, MessageType.authenticated)
  encoding.writeVarUint(encoder, PROTOCOL_VERSION)
  encoding.writeVarString(encoder, identity.connectionId)
  encoding.writeVarUint(encoder, identity.permissions)
  encoding.writeVarUint(encoder, identity.expiresAt ?? 0)
  encoding.writeVarString(encoder, JSON.stringify({ actor: identity.actor, info: identity.info ?? null }))
}

export const writeAccessChanged = (encoder: encoding.Encoder, permissions: PermissionBits): void => {
  encoding.writeVarUint(encoder, MessageType.accessChanged)
  encoding.writeVarUint(encoder, permissions)
}

export const writeError = (encoder: encoding.Encoder, code: ErrorCode, message: string): void => {
  encoding.writeVarUint(encoder, MessageType.error)
  encoding.writeVarString(encoder, code)
  encoding.writeVarString(encoder, message)
}

export const writeSaved = (encoder: encoding.Encoder, count: number): void => {
  encoding.writeVarUint(encoder, MessageType.saved)
  encoding.writeVarUint(encoder, count)
}

const readAuthenticated = (decoder: decoding.Decoder): ServerMessage => {
  const version = decoding.readVarUint(decoder)
  const connectionId = decoding.readVarString(decoder)
  const permissions = closePermissionBits(decoding.readVarUint(decoder))
  const expiresAt = decoding.readVarUint(decoder)
  const rest = JSON.parse(decoding.readVarString(decoder)) as { actor?: unknown; info?: unknown }
  return {
    kind: 'authenticated',
    version,
    identity: { connectionId, permissions, expiresAt: expiresAt === 0 ? null : expiresAt, actor: rest.actor, info: rest.info ?? null },
  }
}

// --- frames ------------------------------------------------------------------------------------

/** Builds one frame with a writer: `encodeFrame(writeSaved, 3)`. */
export const encodeFrame = <A extends unknown[]>(write: (encoder: encoding.Encoder, ...args: A) => void, ...args: A): Uint8Array => {
  const encoder = encoding.createEncoder()
  write(encoder, ...args)
  return finish(encoder)
}

/** Runs a reader over one frame; any decoding failure or trailing byte is `malformed_message`. */
const readFrame = <T>(frame: Uint8Array, read: (decoder: decoding.Decoder, type: number) => T): T => {
  const decoder = decoding.createDecoder(frame)
  let message: T
  try {
    message = read(decoder, decoding.readVarUint(decoder))
  } catch (err) {
    if (err instanceof TandemError) throw err
    throw new TandemError('malformed_message', `undecodable frame: ${(err as Error).message}`, { cause: err })
  }
  if (decoding.hasContent(decoder)) {
    throw new TandemError('malformed_message', `${frame.length - decoder.pos} trailing bytes after the message`)
  }
  return message
}

/** Decodes a frame a client sent. Throws `malformed_message` for anything else. */
export const decodeClientMessage = (frame: Uint8Array): ClientMessage =>
  readFrame<ClientMessage>(frame, (decoder, type) => {
    switch (type) {
      case MessageType.sync:
        return readSync(decoder)
      case MessageType.awareness:
        return { kind: 'awareness', update: decoding.readVarUint8Array(decoder) }
      case MessageType.queryAwareness:
        return { kind: 'query-awareness' }
      case MessageType.tandemAuth: {
        const version = decoding.readVarUint(decoder)
        const token = decoding.readVarString(decoder)
        return { kind: 'auth', version, token: token === '' ? null : token }
      }
      default:
        throw new TandemError('malformed_message', `unknown message type ${type}`)
    }
  })

/**
 * Decodes a frame a server sent. A type number it does not know is `{ kind: 'unknown' }`, whatever
 * its payload (a newer server's notice); anything else that does not decode exactly (a known type
 * truncated or with trailing bytes, a client-only type, an empty frame) throws `malformed_message`.
 */
export const decodeServerMessage = (frame: Uint8Array): ServerMessage =>
  readFrame<ServerMessage>(frame, (decoder, type) => {
    switch (type) {
      case MessageType.sync:
        return readSync(decoder)
      case MessageType.awareness:
        return { kind: 'awareness', update: decoding.readVarUint8Array(decoder) }
      case MessageType.auth: {
        const sub = decoding.readVarUint(decoder)
        if (sub !== AUTH_PERMISSION_DENIED) throw new TandemError('malformed_message', `unknown auth message ${sub}`)
        return { kind: 'permission-denied', reason: decoding.readVarString(decoder) }
      }
      case MessageType.authenticated:
        return readAuthenticated(decoder)
      case MessageType.accessChanged:
        return { kind: 'access-changed', permissions: closePermissionBits(decoding.readVarUint(decoder)) }
      case MessageType.error: {
        const code = decoding.readVarString(decoder)
        const message = decoding.readVarString(decoder)
        // A code from a newer server is still an error; it is reported as server_error.
        return isErrorCode(code) ? { kind: 'error', code, message } : { kind: 'error', code: 'server_error', message: `${code}: ${message}` }
      }
      case MessageType.saved:
        return { kind: 'saved', count: decoding.readVarUint(decoder) }
      // Known types a server never sends: a server that sends them is broken, not newer.
      case MessageType.queryAwareness:
      case MessageType.tandemAuth:
        throw new TandemError('malformed_message', `client-only message type ${type} from the server`)
      default:
        // A newer server's type: its payload's layout is unknown here, so all of it is skipped (no
        // trailing-bytes check can apply to it).
        decoding.readTailAsUint8Array(decoder)
        return { kind: 'unknown', type }
    }
  })

/** @deprecated The old name of `SessionInfo` (it collided with the server's `Identity`). */
export type Identity = SessionInfo
