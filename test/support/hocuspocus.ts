/**
 * The real `@hocuspocus/provider` packages against Tandem: 4.x (the current one) and, through npm
 * aliases, 3.x and 2.x. An `Editor` is one unmodified provider on a Y.Doc, with what it reported
 * recorded (scopes, refusals, stateless messages, the sockets it opened) so tests wait on events.
 */

import * as v4 from '@hocuspocus/provider'
import * as v2 from 'hocuspocus-provider-2'
import * as v3 from 'hocuspocus-provider-3'
import WebSocket from 'ws'
import * as Y from 'yjs'
import type { TestServer } from './server.ts'
import { until } from './wait.ts'

export type ProviderVersion = 2 | 3 | 4
export const PROVIDER_VERSIONS: readonly ProviderVersion[] = [4, 3, 2]

// The 2.x provider reads the global WebSocket, which Node 20 does not have.
;(globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket

/** The three packages share their API where these tests use it; 4.x's types stand for all. */
type Provider = v4.HocuspocusProvider
type ProviderSocket = v4.HocuspocusProviderWebsocket
const packages = { 4: v4, 3: v3, 2: v2 } as unknown as Record<ProviderVersion, typeof v4>

export const hocuspocusUrl = (server: Pick<TestServer, 'port'>): string => `ws://127.0.0.1:${server.port}/v1/hocuspocus`

export interface Editor {
  readonly version: ProviderVersion
  readonly provider: Provider
  readonly doc: Y.Doc
  readonly text: Y.Text
  /** The scope of every `authenticated` event, in order. */
  readonly scopes: string[]
  /** The reason of every `authenticationFailed` event, in order. */
  readonly refusals: string[]
  /** Stateless payloads received (Tandem's notices among them). */
  readonly stateless: string[]
  destroy(): void
}

/** A socket several providers share (many rooms over one connection). */
export const sharedSocket = (version: ProviderVersion, url: string): ProviderSocket =>
  new packages[version].HocuspocusProviderWebsocket({ url, WebSocketPolyfill: WebSocket } as v4.HocuspocusProviderWebsocketConfiguration)

export interface EditorOptions {
  readonly name: string
  readonly token: string | (() => Promise<string>)
  /** A server's endpoint (the provider opens its own socket), or a shared socket. */
  readonly url?: string
  readonly socket?: ProviderSocket
  readonly doc?: Y.Doc
}

export const editor = (version: ProviderVersion, options: EditorOptions): Editor => {
  const doc = options.doc ?? new Y.Doc()
  // A 2.x provider's own socket outlives it (its `preserveConnection` keeps it, and it reconnects):
  // given one here, it is closed with the provider.
  const own = version === 2 && options.socket === undefined ? sharedSocket(2, options.url!) : null
  const scopes: string[] = []
  const refusals: string[] = []
  const stateless: string[] = []
  const provider: Provider = new packages[version].HocuspocusProvider({
    name: options.name,
    token: options.token,
    document: doc,
    ...(options.socket !== undefined || own !== null ? { websocketProvider: options.socket ?? own } : { url: options.url, WebSocketPolyfill: WebSocket }),
    // 2.x passes no scope with the event: its provider's field has it by then.
    onAuthenticated: (data?: { scope?: string }) => scopes.push(data?.scope ?? String((provider as { authorizedScope?: string }).authorizedScope)),
    onAuthenticationFailed: ({ reason }: { reason: string }) => refusals.push(reason),
    onStateless: ({ payload }: { payload: string }) => stateless.push(payload),
  } as v4.HocuspocusProviderConfiguration)
  // 3.x and 4.x attach to a shared socket only when told; 2.x attaches on construction.
  if (options.socket !== undefined && version !== 2) provider.attach()
  const destroy = (): void => {
    provider.destroy()
    own?.destroy()
  }
  return { version, provider, doc, text: doc.getText('text'), scopes, refusals, stateless, destroy }
}

/** Tandem's notices among an editor's stateless messages: their codes. */
export const noticeCodes = (e: Editor): string[] =>
  e.stateless.flatMap((payload) => {
    const notice = JSON.parse(payload) as { tandem?: string; code?: string }
    return notice.tandem === 'error' && notice.code !== undefined ? [notice.code] : []
  })

export const authenticated = (e: Editor, scope?: string): Promise<void> =>
  until(`v${e.version} ${e.provider.configuration.name} authenticated${scope ? ` as ${scope}` : ''}`, e.provider, ['authenticated'], () =>
    scope === undefined ? e.scopes.length > 0 : e.scopes.at(-1) === scope,
  )

export const refused = (e: Editor, code: string): Promise<void> =>
  until(`v${e.version} ${e.provider.configuration.name} refused with ${code}`, e.provider, ['authenticationFailed'], () =>
    e.refusals.some((reason) => reason.startsWith(`${code}:`)),
  )

export const synced = (e: Editor): Promise<void> =>
  until(`v${e.version} ${e.provider.configuration.name} synced`, e.provider, ['synced'], () => e.provider.isSynced || e.provider.synced)

/** Waits for the provider's count of unacknowledged changes to be 0 (every write stored). */
export const allSaved = (e: Editor, ms?: number): Promise<void> =>
  until(`v${e.version} ${e.provider.configuration.name} saved`, e.provider, ['unsyncedChanges'], () => !e.provider.hasUnsyncedChanges, ms)

export const noticed = (e: Editor, code: string): Promise<void> =>
  until(`v${e.version} ${e.provider.configuration.name} noticed ${code}`, e.provider, ['stateless'], () => noticeCodes(e).includes(code))

export const textIs = (e: Editor, text: string, ms?: number): Promise<void> =>
  until(`v${e.version} ${e.provider.configuration.name} text ${JSON.stringify(text)}`, e.doc, ['update'], () => e.text.toString() === text, ms)
