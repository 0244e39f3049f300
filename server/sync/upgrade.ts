/**
 * What an upgraded socket no longer needs of its HTTP request.
 *
 * @fastify/websocket hands a route its socket with two references to the upgrade's request that
 * live as long as the socket: the plugin's own 'error' listener closes over the Fastify request and
 * reply (to route errors to its error handler), and the TCP socket still points at the upgrade's
 * ServerResponse, which never finishes (the reply is hijacked) and holds the reply, the request, the
 * IncomingMessage and the request's child logger in turn. That was about 1.6 KB of every idle
 * socket's 8.7 KB (bench 04). What a session needs of the request (address, headers) is read before
 * this; errors on the socket are PeerSocket's to handle, which adds its listener right after.
 */

import type { WebSocket } from 'ws'

interface UpgradedTcp {
  _httpMessage?: { detachSocket?: (socket: unknown) => void } | null
}

export function releaseUpgrade(ws: WebSocket): void {
  ws.removeAllListeners('error')
  // `_socket` (ws) and `_httpMessage` (node:http) are internals: when they look different, the
  // request simply stays with the socket, as before.
  const tcp = (ws as unknown as { _socket?: UpgradedTcp })._socket
  const response = tcp?._httpMessage
  if (typeof response?.detachSocket === 'function') response.detachSocket(tcp)
}
