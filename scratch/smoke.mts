import WebSocket from 'ws'
import * as Y from 'yjs'
import { HocuspocusProvider } from '@hocuspocus/provider'
import { HocuspocusProvider as P3 } from 'hocuspocus-provider-3'
import { HocuspocusProvider as P2 } from 'hocuspocus-provider-2'
import { startServer } from '/work/main/test/support/server.ts'
;(globalThis as any).WebSocket = WebSocket
const server = await startServer({})
const url = `ws://127.0.0.1:${server.port}/v1/hocuspocus`
for (const [v, P] of [
  ['4', HocuspocusProvider],
  ['3', P3],
  ['2', P2],
] as const) {
  const docA = new Y.Doc(),
    docB = new Y.Doc()
  const mk = (doc: Y.Doc) =>
    new (P as any)({
      url,
      name: 'room-' + v,
      token: 'x',
      document: doc,
      WebSocketPolyfill: WebSocket,
      onAuthenticated: (d: any) => console.log(v, 'authenticated', d?.scope),
      onAuthenticationFailed: (d: any) => console.log(v, 'failed', d),
      onSynced: () => console.log(v, 'synced'),
    })
  const a = mk(docA)
  const b = mk(docB)
  await new Promise((r) => setTimeout(r, 500))
  docA.getText('t').insert(0, 'hello ' + v)
  await new Promise((r) => setTimeout(r, 500))
  console.log(
    v,
    JSON.stringify(docB.getText('t').toString()),
    'unsynced',
    a.unsyncedChanges,
    a.hasUnsyncedChanges,
    'scope',
    a.authorizedScope,
    'aw',
    b.awareness?.getStates().size,
  )
  a.destroy()
  b.destroy()
}
await server.destroy()
process.exit(0)
