/** @hocuspocus/server 3.x with no extensions (no persistence), for 05. */

import { Server } from '@hocuspocus/server'

const server = new Server({ port: 0, address: '127.0.0.1', quiet: true, stopOnSignals: false })
await server.listen()
console.log(`listening on http://127.0.0.1:${server.address.port}`)
process.on('SIGTERM', () => process.exit(0))
