/**
 * The Hocuspocus provider's wire protocol (`@hocuspocus/provider` 2.x to 4.x, what TipTap's
 * Collaboration extension speaks), as pure encode/decode functions over lib0.
 *
 * Every frame starts with its document's address (a varString: the document name, which is the
 * Tandem room id, or with the 4.x provider's `sessionAwareness` the name, a NUL and a session id),
 * then a varUint message type and its payload. Sync (0), awareness (1) and query-awareness (3)
 * payloads are y-protocols' own, laid out as in Tandem's frames: the rest of a frame after its
 * address is a Tandem frame (messages.ts), so it is decoded and relayed as one. The one frame with
 * no address is the 4.x provider's bare Pong (one byte, 10).
 *
 * PROTOCOL.md, "The Hocuspocus endpoint", gives the bytes of each message.
 */

import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { TandemError } from './errors.ts'
import { type ClientMessage, decodeClientMessage } from './messages.ts'

export const HocuspocusMessageType = {
  sync: 0,
  awareness: 1,
  auth: 2,
  queryAwareness: 3,
  /** Server to server in Hocuspocus (a sync that asks for no step 1 back); never from a provider. */
  syncReply: 4,
  stateless: 5,
  /** Server to server in Hocuspocus; never from a provider. */
  broadcastStateless: 6,
  /** Provider → server: the provider detached from this document. */
  close: 7,
  /** Server → provider: one write stored (1) or refused (0). */
  syncStatus: 8,
  ping: 9,
  pong: 10,
} as const

/** Sub-types of the auth message (2). */
export const HocuspocusAuthType = { token: 0, permissionDenied: 1, authenticated: 2 } as const

/** The scopes the provider knows (its `authorizedScope`). */
export type HocuspocusScope = 'read-write' | 'readonly'

/** What separates a document name from a session id in a 4.x `sessionAwareness` address. */
const SESSION_SEPARATOR = '\0'

/** What a provider may send about one document. */
export type HocuspocusClientMessage =
  | Exclude<ClientMessage, { kind: 'auth' }>
  | { readonly kind: 'token'; readonly token: string | null }
  | { readonly kind: 'stateless'; readonly payload: string }
  | { readonly kind: 'close' }

export type HocuspocusClientFrame =
  | {
      readonly kind: 'document'
      /** The address as sent: what every reply about this document starts with. */
      readonly address: string
      /** The document (room) the address names. */
      readonly documentName: string
      readonly message: HocuspocusClientMessage
      /** The frame after its address: a Tandem frame for sync and awareness messages. */
      readonly body: Uint8Array
    }
  | { readonly kind: 'pong' }

/** The room an address names: a 4.x `sessionAwareness` address is the name, a NUL, a session id. */
export const documentNameOf = (address: string): string => {
  const separator = address.indexOf(SESSION_SEPARATOR)
  return separator === -1 ? address : address.slice(0, separator)
}

const malformed = (message: string, cause?: unknown): TandemError => new TandemError('malformed_message', message, cause === undefined ? undefined : { cause })

/**
 * Decodes a frame a provider sent. Anything that does not decode exactly, any type a provider never
 * sends (the server-only ones included) and trailing bytes are `malformed_message`.
 */
export const decodeHocuspocusFrame = (frame: Uint8Array): HocuspocusClientFrame => {
  if (frame.length === 1 && frame[0] === HocuspocusMessageType.pong) return { kind: 'pong' }
  const decoder = decoding.createDecoder(frame)
  let address: string
  let type: number
  try {
    address = decoding.readVarString(decoder)
    type = decoding.readVarUint(decoder)
  } catch (err) {
    throw malformed(`undecodable frame: ${(err as Error).message}`, err)
  }
  const bodyStart = decoder.pos - varUintLength(type)
  const body = frame.subarray(bodyStart)
  const document = (message: HocuspocusClientMessage): HocuspocusClientFrame => ({
    kind: 'document',
    address,
    documentName: documentNameOf(address),
    message,
    body,
  })
  switch (type) {
    case HocuspocusMessageType.sync:
    case HocuspocusMessageType.awareness:
    case HocuspocusMessageType.queryAwareness:
      // The same bytes as Tandem's frames of these types (which decodes them exactly).
      return document(decodeClientMessage(body) as HocuspocusClientMessage)
    case HocuspocusMessageType.auth:
      return document(readRest(decoder, frame, readToken))
    case HocuspocusMessageType.stateless:
      return document(readRest(decoder, frame, (d) => ({ kind: 'stateless', payload: decoding.readVarString(d) })))
    case HocuspocusMessageType.close:
      return document(readRest(decoder, frame, () => ({ kind: 'close' })))
    case HocuspocusMessageType.syncStatus:
    case HocuspocusMessageType.syncReply:
    case HocuspocusMessageType.broadcastStateless:
    case HocuspocusMessageType.ping:
      throw malformed(`message type ${type} is not sent by a provider`)
    default:
      throw malformed(`unknown message type ${type}`)
  }
}

/** The auth message a provider sends: Token, then (4.x) its version, which is not needed here. */
const readToken = (decoder: decoding.Decoder): HocuspocusClientMessage => {
  const sub = decoding.readVarUint(decoder)
  if (sub !== HocuspocusAuthType.token) throw malformed(`auth message ${sub} is not sent by a provider`)
  const token = decoding.readVarString(decoder)
  if (decoding.hasContent(decoder)) decoding.readVarString(decoder)
  return { kind: 'token', token: token === '' ? null : token }
}

const readRest = <T>(decoder: decoding.Decoder, frame: Uint8Array, read: (decoder: decoding.Decoder) => T): T => {
  let message: T
  try {
    message = read(decoder)
  } catch (err) {
    if (err instanceof TandemError) throw err
    throw malformed(`undecodable frame: ${(err as Error).message}`, err)
  }
  if (decoding.hasContent(decoder)) throw malformed(`${frame.length - decoder.pos} trailing bytes after the message`)
  return message
}

const varUintLength = (n: number): number => {
  let length = 1
  for (let rest = n >>> 7; rest > 0; rest >>>= 7) length++
  return length
}

// --- server → provider: the bodies (after the address) -------------------------------------------

/** The document is open, with this scope (sent again when the scope changes). */
export const writeHocuspocusAuthenticated = (encoder: encoding.Encoder, scope: HocuspocusScope): void => {
  encoding.writeVarUint(encoder, HocuspocusMessageType.auth)
  encoding.writeVarUint(encoder, HocuspocusAuthType.authenticated)
  encoding.writeVarString(encoder, scope)
}

/** The document is closed to this provider, and why (the provider emits `authenticationFailed`). */
export const writeHocuspocusPermissionDenied = (encoder: encoding.Encoder, reason: string): void => {
  encoding.writeVarUint(encoder, HocuspocusMessageType.auth)
  encoding.writeVarUint(encoder, HocuspocusAuthType.permissionDenied)
  encoding.writeVarString(encoder, reason)
}

/** One write of the provider's was stored (true) or refused (false). */
export const writeSyncStatus = (encoder: encoding.Encoder, stored: boolean): void => {
  encoding.writeVarUint(encoder, HocuspocusMessageType.syncStatus)
  encoding.writeVarUint(encoder, stored ? 1 : 0)
}

/** A stateless message: a string the provider hands to the app (`onStateless`). */
export const writeStateless = (encoder: encoding.Encoder, payload: string): void => {
  encoding.writeVarUint(encoder, HocuspocusMessageType.stateless)
  encoding.writeVarString(encoder, payload)
}

/** The address every frame about one document starts with. */
export const encodeAddress = (address: string): Uint8Array => {
  const encoder = encoding.createEncoder()
  encoding.writeVarString(encoder, address)
  return encoding.toUint8Array(encoder)
}

/** A body (a Tandem frame, or one of the writers above) behind its document's address. */
export const addressed = (address: Uint8Array, body: Uint8Array): Uint8Array => {
  const frame = new Uint8Array(address.length + body.length)
  frame.set(address, 0)
  frame.set(body, address.length)
  return frame
}

/**
 * The payload of Tandem's notices as stateless messages: JSON an app can tell from its own
 * stateless messages by its `tandem` key.
 */
export const noticePayload = (code: string, message: string): string => JSON.stringify({ tandem: 'error', code, message })
