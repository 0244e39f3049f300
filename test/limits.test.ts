/** Per-connection limits: a flooding client is closed with 4529 and the room goes on for everyone else. */

import { afterEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { rawClient, textUpdate } from './support/raw-client.ts'
import { type TestServer, startServer } from './support/server.ts'
import { until } from './support/wait.ts'

let server: TestServer | undefined
afterEach(async () => {
  await server?.destroy()
  server = undefined
})

describe('rate limits', () => {
  it('closes a connection past its message budget with 4529 rate_limited; others keep syncing', async () => {
    server = await startServer({ limits: { messagesPerSecond: 10, messageBurst: 40 } })
    const flooder = await rawClient(server.syncUrl, 'flood')
    const other = await rawClient(server.syncUrl, 'flood')
    await Promise.all([flooder.next('sync-step-2'), other.next('sync-step-2')])
    const doc = new Y.Doc()
    doc.on('update', (u: Uint8Array) => flooder.sendUpdate(u))
    for (let i = 0; i < 200; i++) doc.getArray<number>('a').push([i])

    expect((await flooder.closed).code).toBe(4529)
    expect(flooder.messages.at(-1)).toMatchObject({ kind: 'error', code: 'rate_limited' })
    // The writes within the budget were applied; nothing past it.
    const applied = server.app.tandem.registry.get('flood')!.doc.getArray('a').length
    expect(applied).toBeGreaterThan(0)
    expect(applied).toBeLessThan(200)

    other.sendUpdate(textUpdate('still here'))
    await other.saved(1)
    const late = await rawClient(server.syncUrl, 'flood')
    await until('late sees it', late.doc, ['update'], () => late.doc.getText('t').toString() === 'still here')
  })

  it('closes a connection past its byte budget with 4529', async () => {
    server = await startServer({ limits: { bytesPerSecond: 1024, byteBurst: 8 * 1024 } })
    const client = await rawClient(server.syncUrl, 'bytes')
    await client.next('sync-step-2')
    const big = textUpdate('x'.repeat(4 * 1024))
    client.sendUpdate(big)
    client.sendUpdate(textUpdate('y'.repeat(4 * 1024)))
    client.sendUpdate(textUpdate('z'.repeat(4 * 1024)))
    expect((await client.closed).code).toBe(4529)
  })
})
