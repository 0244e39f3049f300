/**
 * What an idle socket keeps: not its upgrade request. @fastify/websocket's own error listener and
 * the upgrade's never-finished ServerResponse would keep the HTTP request, the Fastify request and
 * reply and the request's logger alive for as long as the socket is open (about 1.6 KB of an idle
 * connection's heap); every endpoint lets them go once the socket is handed over (sync/upgrade.ts).
 */

import type { IncomingMessage } from 'node:http'
import v8 from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { type RawClient, rawClient, textUpdate } from './support/raw-client.ts'
import { type TestServer, startServer } from './support/server.ts'
import { once } from './support/wait.ts'

v8.setFlagsFromString('--expose_gc')
const gc = runInNewContext('gc') as () => void

let server: TestServer | undefined
const sockets: WebSocket[] = []
const clients: RawClient[] = []
afterEach(async () => {
  for (const s of sockets.splice(0)) s.terminate()
  for (const c of clients.splice(0)) c.close()
  await server?.destroy()
  server = undefined
})

const openSocket = async (url: string): Promise<WebSocket> => {
  const socket = new WebSocket(url)
  sockets.push(socket)
  await once(`${url} open`, socket, 'open')
  return socket
}

/** Collects until nothing more goes (a WeakRef is cleared only by a full collection after its turn). */
const collected = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setImmediate(resolve))
    gc()
  }
}

describe('an open socket and its upgrade request', () => {
  it('lets the request go on every endpoint while the socket stays open and working', async () => {
    server = await startServer()
    const requests: WeakRef<IncomingMessage>[] = []
    server.app.server.on('upgrade', (request: IncomingMessage) => requests.push(new WeakRef(request)))

    const writer = await rawClient(server.syncUrl, 'memory')
    const reader = await rawClient(server.syncUrl, 'memory')
    clients.push(writer, reader)
    await Promise.all([writer.next('sync-step-2'), reader.next('sync-step-2')])
    await openSocket(`ws://127.0.0.1:${server.port}/v1/hocuspocus`)
    await openSocket(`ws://127.0.0.1:${server.port}/v1/signal`)
    expect(requests).toHaveLength(4)

    await collected()
    expect(requests.filter((r) => r.deref() !== undefined)).toHaveLength(0)

    // The sockets are the same sockets: an update still goes from one to the other.
    writer.sendUpdate(textUpdate('still here'))
    await reader.next('update')
    expect(reader.doc.getText('t').toString()).toBe('still here')
    expect(sockets.every((s) => s.readyState === WebSocket.OPEN)).toBe(true)
  })
})
