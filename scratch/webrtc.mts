import WebSocket from 'ws'
import * as Y from 'yjs'
import wrtc from '@roamhq/wrtc'
import { WebrtcProvider } from 'y-webrtc'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
const second = (await import(pathToFileURL(createRequire(import.meta.url).resolve('y-webrtc')).href + '?peer=2')) as typeof import('y-webrtc')
import { startServer } from '../test/support/server.ts'
import { createRoom, idToken } from '../test/support/access.ts'
;(globalThis as any).WebSocket = WebSocket
const server = await startServer({ authenticate: undefined, yWebsocketCompat: true })
await createRoom(server, { id: 'mesh', defaultAccesses: [], usersAccesses: { ann: ['room:write'], bob: ['room:write'] } })
const url = (t: string) => `ws://127.0.0.1:${server.port}/v1/signal?token=${t}`
const a = new Y.Doc(),
  b = new Y.Doc()
const pa = new WebrtcProvider('mesh', a, {
  signaling: [url(await idToken({ userId: 'ann' }))],
  peerOpts: { wrtc, config: { iceServers: [] } },
  filterBcConns: false,
} as any)
await new Promise((r) => setTimeout(r, 700))
const pb = new second.WebrtcProvider('mesh', b, {
  signaling: [url(await idToken({ userId: 'bob' }))],
  peerOpts: { wrtc, config: { iceServers: [] } },
  filterBcConns: false,
} as any)
pb.on('peers', (e: any) => console.log('b peers', e.webrtcPeers))
a.getText('t').insert(0, 'over the mesh')
const t0 = Date.now()
while (b.getText('t').toString() !== 'over the mesh' && Date.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 50))
console.log('b has', JSON.stringify(b.getText('t').toString()), Date.now() - t0, 'ms')
pa.destroy()
pb.destroy()
await server.destroy()
process.exit(0)
