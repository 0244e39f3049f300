/** Operations: /healthz, /metrics in Prometheus text, and logs that never carry a token or the secret. */

import { Writable } from 'node:stream'
import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { rawClient, textUpdate } from './support/raw-client.ts'
import { TEST_SECRET, serversPerTest } from './support/server.ts'
import { stockPeer, synced } from './support/stock-client.ts'

const { start } = serversPerTest()

const metricValue = (text: string, name: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
  if (line === undefined) throw new Error(`metric ${name} missing`)
  return Number(line.split(' ').at(-1))
}

describe('operations', () => {
  it('/healthz answers with the counts of rooms and connections', async () => {
    const server = await start()
    const client = await rawClient(server.syncUrl, 'h')
    await client.next('sync-step-2')
    const res = await server.app.inject({ method: 'GET', url: '/healthz' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ status: 'ok', store: 'ok', engines: { leveldb: 'ok' }, rooms: 1, connections: 1 })
  })

  it('/metrics counts rooms, connections, messages, bytes, applied and rejected updates, store latency', async () => {
    const server = await start()
    const writer = await rawClient(server.syncUrl, 'm')
    await writer.next('sync-step-2')
    writer.sendUpdate(textUpdate('one'))
    writer.sendUpdate(textUpdate('two'))
    await writer.saved(2)
    const bad = await rawClient(server.syncUrl, 'm')
    bad.send(Uint8Array.of(0, 2, 3, 1, 2, 3)) // an update that does not parse
    expect((await bad.closed).code).toBe(4400)

    const res = await server.app.inject({ method: 'GET', url: '/metrics' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^text\/plain/)
    const text = res.body
    expect(metricValue(text, 'tandem_rooms_loaded')).toBe(1)
    expect(metricValue(text, 'tandem_connections')).toBe(1)
    expect(metricValue(text, 'tandem_updates_applied_total')).toBe(2)
    expect(text).toMatch(/tandem_updates_rejected_total\{reason="malformed"\} 1/)
    expect(metricValue(text, 'tandem_messages_in_total')).toBeGreaterThanOrEqual(6)
    expect(metricValue(text, 'tandem_bytes_out_total')).toBeGreaterThan(0)
    expect(text).toMatch(/tandem_store_latency_seconds_count\{op="append"\} [1-9]/)
    expect(text).toMatch(/tandem_store_latency_seconds_count\{op="load"\} 1/)
    expect(text).toContain('tandem_compactions_total')

    // Counters only grow between scrapes.
    writer.sendUpdate(textUpdate('three'))
    await writer.saved(3)
    const again = (await server.app.inject({ method: 'GET', url: '/metrics' })).body
    expect(metricValue(again, 'tandem_updates_applied_total')).toBe(3)
  })

  it('logs neither the compatibility ?token= nor the secret', async () => {
    let logs = ''
    const sink = new Writable({
      write(chunk, _enc, done) {
        logs += chunk.toString()
        done()
      },
    })
    const logger = pino({ level: 'trace' }, sink)
    const server = await start({ logger, yWebsocketCompat: true })
    const peer = stockPeer(server.syncUrl, 'logged', { params: { token: 'sup3r-s3cret-t0ken' } })
    try {
      await synced(peer)
    } finally {
      peer.destroy()
    }
    await server.stop()
    expect(logs).toContain('/v1/sync/logged')
    expect(logs).not.toContain('sup3r-s3cret-t0ken')
    expect(logs).not.toContain(TEST_SECRET)
  })
})
