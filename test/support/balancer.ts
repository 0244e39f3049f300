/**
 * A load balancer for tests, in front of several Tandem processes: each TCP connection goes to the
 * next backend in turn that accepts it, so a client reconnecting after its process died lands on
 * another one, as behind HAProxy or nginx.
 */

import { type Server, type Socket, connect, createServer } from 'node:net'

export interface Balancer {
  readonly port: number
  setBackends(ports: readonly number[]): void
  close(): Promise<void>
}

export async function startBalancer(backends: readonly number[]): Promise<Balancer> {
  let ports = [...backends]
  let next = 0
  const open = new Set<Socket>()
  const server: Server = createServer((client) => {
    open.add(client)
    client.on('close', () => open.delete(client))
    client.on('error', () => {})
    const tryBackend = (attempt: number): void => {
      if (attempt >= ports.length) return void client.destroy()
      const port = ports[(next + attempt) % ports.length]!
      const upstream = connect(port, '127.0.0.1')
      let connected = false
      upstream.once('connect', () => {
        connected = true
        next = (next + attempt + 1) % ports.length
        open.add(upstream)
        upstream.on('close', () => open.delete(upstream))
        client.pipe(upstream).pipe(client)
        upstream.on('close', () => client.destroy())
        client.on('close', () => upstream.destroy())
      })
      upstream.on('error', () => {
        upstream.destroy()
        if (connected) client.destroy()
        else tryBackend(attempt + 1)
      })
    }
    tryBackend(0)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  return {
    port: typeof address === 'object' && address !== null ? address.port : 0,
    setBackends(list) {
      ports = [...list]
      next = 0
    },
    async close() {
      for (const socket of open) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
