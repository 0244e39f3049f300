import { spawn } from 'node:child_process'
import { startServer } from '../test/support/server.ts'
import { createRoom, idToken } from '../test/support/access.ts'
const server = await startServer({ authenticate: undefined, yWebsocketCompat: true })
await createRoom(server, { id: 'mesh', defaultAccesses: [], usersAccesses: { ann: ['room:write'], bob: ['room:write'] } })
const url = (t: string) => `ws://127.0.0.1:${server.port}/v1/signal?token=${t}`
const peer = async (user: string) => {
  const p = spawn(process.execPath, ['--import', 'tsx', 'test/support/webrtc-peer.ts', 'mesh', url(await idToken({ userId: user }))], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  p.stdout.on('data', (d) => process.stdout.write(`${user}: ${d}`))
  return p
}
const a = await peer('ann')
await new Promise((r) => setTimeout(r, 1500))
const b = await peer('bob')
await new Promise((r) => setTimeout(r, 3000))
a.stdin.write(JSON.stringify({ insert: 'over the mesh' }) + '\n')
await new Promise((r) => setTimeout(r, 3000))
a.kill()
b.kill()
await server.destroy()
process.exit(0)
