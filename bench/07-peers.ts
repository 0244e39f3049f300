/**
 * 07 peers: the peer-assisted path. Two TandemProviders (in this process, real WebRTC through
 * `@roamhq/wrtc`) on one room of a Tandem CLI in a child process: the latency of an edit from one
 * to the other through the server (no mesh) and over the mesh alone (the server path stalled by a
 * pausable proxy: a lower bound, both on one machine); the server's CPU per edit with and without
 * the mesh (every writer still sends its own edits to the server); the server's CPU per join of
 * the mesh (signalling: auth, subscribe, announce, offer, answer, candidates); and how long a
 * downgrade through REST takes to reach the other peer's link (target: under 100 ms).
 */

import wrtc from '@roamhq/wrtc'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { TandemProvider } from '../client/provider.ts'
import { startPausableProxy } from '../test/support/pausable-proxy.ts'
import { quantile, round } from './support/stats.ts'
import { mintIdToken } from '../protocol/mint.ts'
import { BENCH_SECRET, createOpenRoom, removeDir, spawnTandem, tempDir } from './support/tandem.ts'
import { type BenchOptions, type Result, type Scenario, check, compared } from './types.ts'

const SCENARIO = '07-peers'

/** Resolves on the first update of `doc` after which `condition` holds (no polling delay). */
const onUpdate = (doc: Y.Doc, condition: () => boolean, ms = 5_000): Promise<void> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      doc.off('update', listener)
      reject(new Error('timed out waiting for the edit at the other peer'))
    }, ms)
    const listener = (): void => {
      if (!condition()) return
      clearTimeout(timer)
      doc.off('update', listener)
      resolve()
    }
    doc.on('update', listener)
  })

const waitFor = async (what: string, condition: () => boolean, ms = 20_000): Promise<void> => {
  const end = performance.now() + ms
  while (!condition()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

interface Pair {
  readonly a: TandemProvider
  readonly b: TandemProvider
  destroy(): void
}

export const scenario: Scenario = {
  id: '07',
  name: 'peers',
  async run({ quick }: BenchOptions): Promise<Result[]> {
    const edits = quick ? 40 : 300
    const joins = quick ? 5 : 30
    const dir = tempDir('peers')
    const server = await spawnTandem(dir, { cpu: 0 })
    const proxy = await startPausableProxy(server.port)
    try {
      const http = `http://127.0.0.1:${server.port}`
      const pair = async (room: string, peers: boolean, create = true): Promise<Pair> => {
        if (create) await createOpenRoom(http, room)
        const make = (): TandemProvider =>
          new TandemProvider({
            url: `ws://127.0.0.1:${proxy.port}`,
            room,
            doc: new Y.Doc(),
            auth: () => mintIdToken(BENCH_SECRET, { userId: 'bench' }).then((t) => t.token),
            WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
            crossTab: false,
            ...(peers && {
              peers: { RTCPeerConnection: wrtc.RTCPeerConnection as typeof RTCPeerConnection, signalUrl: `ws://127.0.0.1:${server.port}/v1/signal` },
            }),
          })
        const a = make()
        const b = make()
        await waitFor('synced', () => a.synced && b.synced)
        if (peers) await waitFor('linked', () => a.mesh?.peers.length === 1 && b.mesh?.peers.length === 1)
        return {
          a,
          b,
          destroy: () => {
            a.destroy()
            b.destroy()
          },
        }
      }

      /** Edits from a, one every 10 ms; the time each takes to show in b. Server CPU per edit too. */
      const measure = async (p: Pair): Promise<{ latencies: number[]; serverUsPerEdit: number }> => {
        const text = p.a.doc.getText('t')
        const seen = p.b.doc.getText('t')
        const latencies: number[] = []
        const cpu0 = server.cpuUs()
        for (let i = 0; i < edits; i++) {
          const arrived = onUpdate(p.b.doc, () => seen.length === i + 1)
          const t0 = performance.now()
          text.insert(text.length, 'x')
          await arrived
          latencies.push(performance.now() - t0)
          await new Promise((r) => setTimeout(r, 10))
        }
        await waitFor('every edit saved', () => p.a.unsavedChanges === 0, 20_000)
        check(seen.toString() === text.toString(), 'the other peer converged')
        return { latencies, serverUsPerEdit: (server.cpuUs() - cpu0) / edits }
      }

      const plain = await pair('bench-peers-server', false)
      const viaServer = await measure(plain)
      plain.destroy()

      const meshed = await pair('bench-peers-mesh', true)
      const withMesh = await measure(meshed)
      // The mesh alone: the server path stalled, edits only over WebRTC.
      proxy.pause()
      const meshOnly = await (async () => {
        const text = meshed.a.doc.getText('t')
        const seen = meshed.b.doc.getText('t')
        const latencies: number[] = []
        for (let i = 0; i < edits; i++) {
          const before = seen.length
          const arrived = onUpdate(meshed.b.doc, () => seen.length === before + 1)
          const t0 = performance.now()
          text.insert(text.length, 'y')
          await arrived
          latencies.push(performance.now() - t0)
          await new Promise((r) => setTimeout(r, 10))
        }
        return latencies
      })()
      proxy.resume()
      await waitFor('the mesh-only edits stored', () => meshed.a.unsavedChanges === 0, 20_000)
      // A downgrade through REST reaching the other peer's link (target: within 100 ms): the room's
      // default access lowered to read, repeatedly, timed from the REST answer to the link's change.
      const downgrades: number[] = []
      for (let i = 0; i < (quick ? 3 : 20); i++) {
        for (const access of [['room:read'], ['room:write']] as const) {
          const writes = access[0] === 'room:write'
          const changed = (): boolean => meshed.a.mesh?.peers[0]?.permissions.includes('room:write') === writes
          const res = await fetch(`${http}/v1/rooms/bench-peers-mesh`, {
            method: 'POST',
            headers: { authorization: `Bearer ${BENCH_SECRET}`, 'content-type': 'application/json' },
            body: JSON.stringify({ defaultAccesses: access }),
          })
          check(res.ok, 'the ACL change is accepted')
          const t0 = performance.now()
          await waitFor('the link to change', changed, 5_000)
          if (!writes) downgrades.push(performance.now() - t0)
        }
      }
      meshed.destroy()

      // Per join: pairs joining rooms made beforehand, with and without linking over the mesh; the
      // difference is what signalling costs the server.
      for (let i = 0; i < joins; i++) {
        await createOpenRoom(http, `bench-peers-join-${i}`)
        await createOpenRoom(http, `bench-peers-nomesh-${i}`)
      }
      const joinCost = async (prefix: string, peers: boolean): Promise<number> => {
        const cpu0 = server.cpuUs()
        for (let i = 0; i < joins; i++) (await pair(`${prefix}-${i}`, peers, false)).destroy()
        return (server.cpuUs() - cpu0) / (2 * joins)
      }
      const joinWithout = await joinCost('bench-peers-nomesh', false)
      const joinWith = await joinCost('bench-peers-join', true)

      const p = (xs: number[], q: number): number => round(quantile(xs, q))
      return [
        compared(
          {
            scenario: SCENARIO,
            metric: 'edit latency over the mesh, p50',
            value: p(meshOnly, 0.5),
            unit: 'ms',
            note: `${edits} edits, one every 10 ms, server path stalled`,
          },
          'through the server',
          p(viaServer.latencies, 0.5),
        ),
        compared(
          { scenario: SCENARIO, metric: 'edit latency over the mesh, p99', value: p(meshOnly, 0.99), unit: 'ms' },
          'through the server',
          p(viaServer.latencies, 0.99),
        ),
        compared(
          {
            scenario: SCENARIO,
            metric: 'server CPU per edit, with the mesh',
            value: round(withMesh.serverUsPerEdit),
            unit: 'µs',
            note: 'the writer still sends every edit to the server',
          },
          'without',
          round(viaServer.serverUsPerEdit),
        ),
        compared(
          {
            scenario: SCENARIO,
            metric: 'server CPU per peer joining, with the mesh',
            value: round(joinWith),
            unit: 'µs',
            note: `${joins} pairs; the difference is signalling`,
          },
          'joining without it',
          round(joinWithout),
        ),
        {
          scenario: SCENARIO,
          metric: 'a REST downgrade reaching the peer link, p99',
          value: p(downgrades, 0.99),
          unit: 'ms',
          ...(!quick && { target: 'value < 100', met: quantile(downgrades, 0.99) < 100 }),
          note: `${downgrades.length} downgrades, from the REST answer; polled every 5 ms`,
        },
      ]
    } finally {
      await proxy.close()
      await server.stop()
      removeDir(dir)
    }
  },
}
