/**
 * The signalling protocol for WebRTC peers at `GET /v1/signal`: y-webrtc's JSON messages (one per
 * text frame: subscribe, unsubscribe, publish, ping; the server relays a publish to every
 * subscriber of its topic, the sender too, and answers ping with pong), which the stock y-webrtc
 * client speaks, plus Tandem's: `auth` first (the token inside the socket), and, to clients that
 * sent it, the session's decisions (`tandem:*`). A topic is a room id.
 *
 * Every publish the server relays carries `tandem`: who sent it as the server knows them (the
 * sender's signalling session, user and permissions in that room), never taken from the client, so
 * a peer connection set up from relayed signals is bound to an identity the server vouched for.
 *
 * PROTOCOL.md, "Signalling", gives every message.
 */

import { TandemError } from './errors.ts'
import { type Permission, isPermission } from './permissions.ts'

/** Who sent a relayed publish, as the server stamps it. */
export interface SignalSender {
  /** The sender's signalling session (one per socket). */
  readonly connectionId: string
  /** The sender's user id, or null for an anonymous session. */
  readonly userId: string | null
  /** The sender's permissions in the topic's room, now. */
  readonly permissions: readonly Permission[]
}

export type SignalClientMessage =
  | { readonly type: 'auth'; readonly token: string | null }
  | { readonly type: 'subscribe'; readonly topics: readonly string[] }
  | { readonly type: 'unsubscribe'; readonly topics: readonly string[] }
  /** `body` is the message as sent, but the fields only the server sets (`clients`, `tandem`). */
  | { readonly type: 'publish'; readonly topic: string; readonly body: Readonly<Record<string, unknown>> }
  | { readonly type: 'ping' }

export type SignalServerMessage =
  | ({ readonly type: 'publish'; readonly topic: string; readonly clients: number; readonly tandem: SignalSender } & Readonly<Record<string, unknown>>)
  | { readonly type: 'pong' }
  | { readonly type: 'tandem:authenticated'; readonly connectionId: string }
  /** The session may use the topic, with these permissions (sent again when they change). */
  | { readonly type: 'tandem:subscribed'; readonly topic: string; readonly permissions: readonly Permission[] }
  /** Another session's permissions in the topic changed; none: it left or lost access. */
  | { readonly type: 'tandem:peer'; readonly topic: string; readonly connectionId: string; readonly permissions: readonly Permission[] }
  | { readonly type: 'tandem:error'; readonly code: string; readonly message: string; readonly topic?: string }

/** The fields of a publish only the server writes. */
const SERVER_FIELDS = new Set(['type', 'topic', 'clients', 'tandem'])

const malformed = (message: string): TandemError => new TandemError('malformed_message', message)

const stringList = (value: unknown, field: string): readonly string[] => {
  if (!Array.isArray(value) || !value.every((t) => typeof t === 'string')) throw malformed(`${field} must be an array of strings`)
  return value
}

/** Decodes one text frame a client sent. Anything but the messages above is `malformed_message`. */
export const decodeSignalMessage = (text: string): SignalClientMessage => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw malformed('signalling messages are JSON')
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw malformed('a signalling message is a JSON object')
  const message = parsed as Record<string, unknown>
  switch (message.type) {
    case 'auth':
      if (message.token !== null && typeof message.token !== 'string') throw malformed('auth.token must be a string or null')
      return { type: 'auth', token: message.token === '' ? null : (message.token as string | null) }
    case 'subscribe':
    case 'unsubscribe':
      return { type: message.type, topics: stringList(message.topics ?? [], `${message.type}.topics`) }
    case 'publish': {
      if (typeof message.topic !== 'string') throw malformed('publish.topic must be a string')
      const body: Record<string, unknown> = {}
      for (const [key, value] of Object.entries(message)) if (!SERVER_FIELDS.has(key)) body[key] = value
      return { type: 'publish', topic: message.topic, body }
    }
    case 'ping':
      return { type: 'ping' }
    default:
      throw malformed(`unknown signalling message type ${JSON.stringify(message.type)?.slice(0, 40)}`)
  }
}

/** The text of a publish as relayed: the sender's fields, then what the server stamps. */
export const encodeRelayedPublish = (topic: string, body: Readonly<Record<string, unknown>>, clients: number, sender: SignalSender): string =>
  JSON.stringify({ ...body, type: 'publish', topic, clients, tandem: sender })

export const encodeSignalMessage = (message: SignalServerMessage): string => JSON.stringify(message)

/** Decodes what a server sent (Tandem's own client; unknown types are ignored, as y-webrtc does). */
export const decodeSignalServerMessage = (text: string): SignalServerMessage | null => {
  const parsed = JSON.parse(text) as { type?: unknown; tandem?: { permissions?: unknown } }
  if (typeof parsed !== 'object' || parsed === null || typeof parsed.type !== 'string') return null
  if (parsed.type === 'publish') {
    const permissions = parsed.tandem?.permissions
    if (!Array.isArray(permissions) || !permissions.every(isPermission)) return null
  }
  return parsed as SignalServerMessage
}
