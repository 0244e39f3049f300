/**
 * One stock y-webrtc peer in a process of its own (y-webrtc allows one Y.Doc per room per process):
 * `tsx test/support/webrtc-peer.ts <room> <signalling url>` opens a WebrtcProvider with
 * `@roamhq/wrtc`, then reads commands from stdin, one JSON per line (`{"insert": "text"}`), and
 * prints its state on stdout, one JSON per line, on every change: `{ text, peers }`.
 */

import { createInterface } from 'node:readline'
import wrtc from '@roamhq/wrtc'
import { WebrtcProvider } from 'y-webrtc'
import WebSocket from 'ws'
import * as Y from 'yjs'

;(globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket

const [room, url] = process.argv.slice(2)
if (room === undefined || url === undefined) throw new Error('usage: webrtc-peer.ts <room> <signalling url>')
const doc = new Y.Doc()
const text = doc.getText('text')
const provider = new WebrtcProvider(room, doc, {
  signaling: [url],
  // Only this machine: no STUN or TURN server, host candidates.
  peerOpts: { wrtc, config: { iceServers: [] } },
  filterBcConns: false,
} as ConstructorParameters<typeof WebrtcProvider>[2])

let peers = 0
const report = (): void => void process.stdout.write(`${JSON.stringify({ text: text.toString(), peers })}\n`)
provider.on('peers', (event: { webrtcPeers: string[] }) => {
  peers = event.webrtcPeers.length
  report()
})
doc.on('update', report)
report()

createInterface({ input: process.stdin }).on('line', (line) => {
  const command = JSON.parse(line) as { insert?: string; exit?: boolean }
  if (command.insert !== undefined) text.insert(text.length, command.insert)
  if (command.exit === true) {
    provider.destroy()
    process.exit(0)
  }
})
