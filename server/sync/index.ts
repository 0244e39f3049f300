/**
 * server/sync: clients' sockets and sessions. One connection state machine for every wire protocol
 * (connection.ts), what differs between the protocols (client-protocol.ts), what each message of an
 * open session does (dispatch.ts), one client's WebSocket with its budgets, backpressure and
 * heartbeat (peer-socket.ts, over socket.ts's ws class), the upgrade route of Tandem's own
 * protocol and the stock y-websocket client's (route.ts), and the Hocuspocus provider's endpoint,
 * many documents over one socket (hocuspocus-route.ts, hocuspocus-protocol.ts). Imports rooms/, auth/, store/; nothing
 * imports it but the composition root.
 */

export { tandemProtocol, yWebsocketProtocol, type ClientProtocol, type Frames } from './client-protocol.ts'
export { hocuspocusProtocol } from './hocuspocus-protocol.ts'
export { hocuspocusRoute } from './hocuspocus-route.ts'
export { Connection, type ConnectionContext } from './connection.ts'
export { AddressPrefix, PeerSocket, type PeerSocketEvents, type SocketLimits } from './peer-socket.ts'
export { ConnectionRateLimiter, rateLimitUpgrades, syncRoute, type SyncRouteDeps } from './route.ts'
export { LimitedWebSocket, frameBinary } from './socket.ts'
export type { Transport } from './transport.ts'
export { KEEPALIVE_FRAME } from './keepalive.ts'
export { releaseUpgrade } from './upgrade.ts'
