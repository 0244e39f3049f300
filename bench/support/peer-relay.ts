/**
 * The transport floor for 05: a `ws` server (the library Tandem runs on) that relays each message to
 * the other sockets of its room (the URL path) and does nothing else: no Yjs, no auth, no storage.
 * What it costs per edit is what any server pays on this machine to read one frame and write it to
 * N receivers; Tandem's and the peers' figures sit on top of it.
 */

import http from 'node:http'
import { type WebSocket, WebSocketServer } from 'ws'

const rooms = new Map<string, Set<WebSocket>>()
const wss = new WebSocketServer({ noServer: true })
const server = http.createServer((_req, res) => res.end('okay'))
server.on('upgrade', (req, socket, head) =>
  wss.handleUpgrade(req, socket, head, (ws) => {
    const name = req.url ?? '/'
    const room = rooms.get(name) ?? new Set<WebSocket>()
    rooms.set(name, room)
    room.add(ws)
    ws.on('message', (data: Buffer) => {
      for (const peer of room) if (peer !== ws) peer.send(data)
    })
    ws.on('close', () => room.delete(ws))
    ws.send(Uint8Array.of(0x7f)) // a hello the load generator's clients wait for (an unknown message type)
  }),
)
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  console.log(`listening on http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`)
})
process.on('SIGTERM', () => process.exit(0))
