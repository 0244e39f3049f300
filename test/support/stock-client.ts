/** The stock y-websocket WebsocketProvider (from the registry), as an editor would use it, in Node. */

import { WebSocket } from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import { until, untilDocs } from './wait.ts'

export interface StockPeer {
  readonly doc: Y.Doc
  readonly provider: WebsocketProvider
  destroy(): void
}

export const stockPeer = (syncUrl: string, room: string, options: { doc?: Y.Doc; params?: Record<string, string>; connect?: boolean } = {}): StockPeer => {
  const doc = options.doc ?? new Y.Doc()
  const provider = new WebsocketProvider(syncUrl, room, doc, {
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    // Peers in one process would otherwise sync over BroadcastChannel, around the server.
    disableBc: true,
    params: options.params ?? {},
    connect: options.connect ?? true,
  })
  return {
    doc,
    provider,
    destroy() {
      provider.destroy()
      doc.destroy()
    },
  }
}

export const synced = (peer: StockPeer): Promise<void> => until('stock client synced', peer.provider, ['sync'], () => peer.provider.synced)

/** Resolves once every doc's state vector equals the first's, re-checked on any doc's update. */
export const converged = (docs: Y.Doc[], ms = 15_000): Promise<void> =>
  untilDocs(
    'docs converged',
    docs,
    () => {
      const first = Buffer.from(Y.encodeStateVector(docs[0]!))
      return docs.every((d) => first.equals(Y.encodeStateVector(d)))
    },
    ms,
  )
