/**
 * A TCP proxy on 127.0.0.1 in front of one port whose forwarding can be paused: while paused, bytes
 * wait in both directions and the sockets stay open (a stalled path to the server, as a network
 * that stops delivering without closing anything); resumed, what waited flows on.
 */

import { type Socket, connect, createServer } from 'node:net'

export interface PausableProxy {
  readonly port: number
  pause(): void
  resume(): void
  close(): Promise<void>
}

export async function startPausableProxy(target: number): Promise<PausableProxy> {
  const pairs = new Set<[Socket, Socket]>()
  /** Bytes held while paused, in order, with where they go. */
  let held: [Socket, Buffer][] = []
  let paused = false
  const forward = (to: Socket) => (chunk: Buffer) => {
    if (paused) held.push([to, chunk])
    else to.write(chunk)
  }
  const server = createServer((client) => {
    const upstream = connect({ port: target, host: '127.0.0.1', noDelay: true })
    client.setNoDelay(true)
    const pair: [Socket, Socket] = [client, upstream]
    pairs.add(pair)
    for (const socket of pair) {
      socket.on('error', () => {})
      socket.on('close', () => {
        pairs.delete(pair)
        client.destroy()
        upstream.destroy()
      })
    }
    client.on('data', forward(upstream))
    upstream.on('data', forward(client))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  return {
    port: typeof address === 'object' && address !== null ? address.port : 0,
    pause() {
      paused = true
    },
    resume() {
      paused = false
      for (const [to, chunk] of held) if (!to.destroyed) to.write(chunk)
      held = []
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const pair of pairs) for (const socket of pair) socket.destroy()
        server.close(() => resolve())
      }),
  }
}
