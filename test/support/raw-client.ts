/**
 * A raw protocol client for tests: a real ws socket speaking Tandem's framing, built only from
 * protocol/ encoders and decoders. It records every decoded server message and the close code.
 */

import { WebSocket } from 'ws'
import * as Y from 'yjs'
import { type ServerMessage, decodeServerMessage, encodeFrame, writeAuth, writeSyncStep1, writeUpdate } from '../../protocol/messages.ts'
import { withDeadline } from './wait.ts'

export interface RawClient {
  readonly socket: WebSocket
  readonly messages: ServerMessage[]
  /** The document as this client saw it from the server's sync and update messages. */
  readonly doc: Y.Doc
  readonly closed: Promise<{ code: number; reason: string }>
  send(frame: Uint8Array | Buffer | string): void
  /** Sends a Yjs update as a sync update message. */
  sendUpdate(update: Uint8Array): void
  /** Resolves with the first message (already received or to come) that matches. */
  next<K extends ServerMessage['kind']>(
    kind: K,
    match?: (m: Extract<ServerMessage, { kind: K }>) => boolean,
    ms?: number,
  ): Promise<Extract<ServerMessage, { kind: K }>>
  /** Resolves once the server acknowledged at least `count` writes of this connection. */
  saved(count: number, ms?: number): Promise<void>
  close(): void
}

export interface RawClientOptions {
  /** Send Tandem's auth message first (default); false behaves like a stock y-websocket client. */
  auth?: boolean
  token?: string | null
  /** Send sync step 1 after auth (default true). */
  sync?: boolean
  /** Headers of the upgrade request (a trusted gateway's identity headers, say). */
  headers?: Record<string, string>
}

export async function rawClient(syncUrl: string, room: string, options: RawClientOptions = {}): Promise<RawClient> {
  const socket = new WebSocket(`${syncUrl}/${encodeURIComponent(room)}`, { headers: options.headers ?? {} })
  const messages: ServerMessage[] = []
  const waiters = new Set<() => void>()
  const doc = new Y.Doc()
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.on('close', (code, reason) => {
      resolve({ code, reason: reason.toString() })
      for (const w of waiters) w()
    })
  })
  socket.on('error', () => {})
  socket.on('message', (data: Buffer) => {
    const message = decodeServerMessage(new Uint8Array(data))
    if (message.kind === 'sync-step-2' || message.kind === 'update') Y.applyUpdate(doc, message.update, 'server')
    messages.push(message)
    for (const w of waiters) w()
  })
  await withDeadline(
    'socket open',
    new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve())
      socket.once('error', reject)
    }),
  )
  const send = (frame: Uint8Array | Buffer | string): void => socket.send(frame)
  if (options.auth ?? true) send(encodeFrame(writeAuth, options.token ?? null))
  if (options.sync ?? true) send(encodeFrame(writeSyncStep1, Y.encodeStateVector(doc)))

  const waitFor = <T>(what: string, find: () => T | undefined, ms = 10_000): Promise<T> =>
    withDeadline(
      what,
      new Promise<T>((resolve, reject) => {
        const check = (): void => {
          const found = find()
          if (found !== undefined) {
            waiters.delete(check)
            resolve(found)
          } else if (socket.readyState === WebSocket.CLOSED) {
            waiters.delete(check)
            reject(new Error(`socket closed while waiting for ${what}`))
          }
        }
        waiters.add(check)
        check()
      }),
      ms,
    )

  return {
    socket,
    messages,
    doc,
    closed,
    send,
    sendUpdate: (update) => send(encodeFrame(writeUpdate, update)),
    // biome-ignore lint/suspicious/noExplicitAny: narrowing a union by a generic kind needs a cast that TypeScript cannot check
    next: (kind, match, ms) => waitFor(`a ${kind} message`, () => messages.find((m): m is any => m.kind === kind && (match?.(m as any) ?? true)) as any, ms),
    saved: async (count, ms) => {
      await waitFor(`saved >= ${count}`, () => (messages.some((m) => m.kind === 'saved' && m.count >= count) ? true : undefined), ms)
    },
    close: () => socket.close(),
  }
}

/** A small real Yjs update: `text` inserted at the start of Y.Text 't' by a fresh client. */
export const textUpdate = (text: string, doc = new Y.Doc()): Uint8Array => {
  let update: Uint8Array | null = null
  const capture = (u: Uint8Array): void => {
    update = u
  }
  doc.on('update', capture)
  doc.getText('t').insert(0, text)
  doc.off('update', capture)
  return update!
}
