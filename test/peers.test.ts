/**
 * TandemProvider's WebRTC mesh (`peers`), with real WebRTC in Node (`@roamhq/wrtc`): writers
 * converge over the mesh while their path to the server is stalled, and the server still stores
 * and acknowledges every write; a reader receives over the mesh but what it sends anyway is refused
 * by its peers (and by the server); a downgrade and a revocation through REST reach the peers' links
 * at once. The server path goes through a pausable TCP proxy; signalling goes to the server directly.
 */

import wrtc from '@roamhq/wrtc'
import WebSocket from 'ws'
import { afterEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { TandemProvider } from '../client/provider.ts'
import type { TandemError } from '../protocol/errors.ts'
import { encodeFrame, writeUpdate } from '../protocol/messages.ts'
import { createRoom, idToken, rest, updateRoom } from './support/access.ts'
import { type PausableProxy, startPausableProxy } from './support/pausable-proxy.ts'
import { type TestServer, serversPerTest } from './support/server.ts'
import { withDeadline } from './support/wait.ts'

const { start } = serversPerTest()
const cleanups: (() => void | Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

interface Peer {
  readonly provider: TandemProvider
  readonly doc: Y.Doc
  readonly text: Y.Text
  readonly errors: TandemError[]
}

const poll = (what: string, check: () => boolean, ms = 10_000): Promise<void> =>
  withDeadline(
    what,
    (async () => {
      while (!check()) await new Promise((r) => setTimeout(r, 10))
    })(),
    ms,
  )

interface Setup {
  readonly server: TestServer
  readonly proxy: PausableProxy
  peer(userId: string): Promise<Peer>
}

const setup = async (): Promise<Setup> => {
  const server = await start({ authenticate: undefined })
  await createRoom(server, { id: 'mesh', defaultAccesses: [], usersAccesses: { ann: ['room:write'], bob: ['room:write'], rita: ['room:read'] } })
  const proxy = await startPausableProxy(server.port)
  cleanups.push(() => proxy.close())
  const peer = async (userId: string): Promise<Peer> => {
    const doc = new Y.Doc()
    const token = await idToken({ userId })
    const provider = new TandemProvider({
      url: `ws://127.0.0.1:${proxy.port}`,
      room: 'mesh',
      doc,
      auth: token,
      WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
      crossTab: false,
      peers: { RTCPeerConnection: wrtc.RTCPeerConnection as typeof RTCPeerConnection, signalUrl: `ws://127.0.0.1:${server.port}/v1/signal` },
    })
    const errors: TandemError[] = []
    provider.on('error', (error) => errors.push(error))
    cleanups.push(() => provider.destroy())
    await poll(`${userId} synced`, () => provider.synced)
    return { provider, doc, text: doc.getText('text'), errors }
  }
  return { server, proxy, peer }
}

const linked = (a: Peer, b: Peer): boolean => a.provider.mesh?.peers.some((p) => p.connectionId !== undefined && p.userId === b.provider.self?.userId) === true

const serverText = async (server: TestServer): Promise<string> => JSON.stringify((await rest(server, 'GET', '/v1/rooms/mesh/ydoc')).body)

describe('the peer mesh', () => {
  it('writers converge over the mesh with the server path stalled; the server stores every write once it flows again', async () => {
    const { server, proxy, peer } = await setup()
    const ann = await peer('ann')
    const bob = await peer('bob')
    await poll('ann and bob linked', () => linked(ann, bob) && linked(bob, ann), 20_000)

    proxy.pause()
    ann.text.insert(0, 'peer to peer')
    await poll('bob has it over the mesh', () => bob.text.toString() === 'peer to peer')
    bob.text.insert(12, '!')
    await poll('ann has it over the mesh', () => ann.text.toString() === 'peer to peer!')
    expect(ann.provider.unsavedChanges).toBeGreaterThan(0)

    proxy.resume()
    await poll('ann saved', () => ann.provider.unsavedChanges === 0)
    await poll('bob saved', () => bob.provider.unsavedChanges === 0)
    expect(await serverText(server)).toContain('peer to peer!')
  }, 40_000)

  it('a reader receives over the mesh; what it sends anyway is refused by its peers and never stored', async () => {
    const { server, peer } = await setup()
    const ann = await peer('ann')
    const rita = await peer('rita')
    await poll('linked', () => linked(ann, rita) && linked(rita, ann), 20_000)
    ann.text.insert(0, 'by ann')
    await poll('rita has it', () => rita.text.toString() === 'by ann')

    // Rita's provider sends nothing (she may not write); a forged send straight into the mesh:
    const forged = new Y.Doc()
    forged.getText('text').insert(0, 'forged by rita ')
    rita.provider.mesh!.send(encodeFrame(writeUpdate, Y.encodeStateAsUpdate(forged)))
    await poll('ann refused it', () => ann.errors.some((e) => e.code === 'read_only'))
    expect(ann.provider.mesh!.refused.read_only).toBe(1)
    expect(ann.text.toString()).toBe('by ann')
    expect(await serverText(server)).not.toContain('forged')
  }, 40_000)

  it('a downgrade through REST stops a peer’s mesh writes from being applied; a revocation drops its link', async () => {
    const { server, peer } = await setup()
    const ann = await peer('ann')
    const bob = await peer('bob')
    await poll('linked', () => linked(ann, bob) && linked(bob, ann), 20_000)

    await updateRoom(server, 'mesh', { usersAccesses: { bob: ['room:read'] } })
    await poll('ann’s link to bob downgraded', () =>
      ann.provider.mesh!.peers.some((p) => p.userId === 'bob' && JSON.stringify(p.permissions) === '["room:read"]'),
    )
    const forged = new Y.Doc()
    forged.getText('text').insert(0, 'after the downgrade')
    bob.provider.mesh!.send(encodeFrame(writeUpdate, Y.encodeStateAsUpdate(forged)))
    await poll('ann refused it', () => ann.errors.some((e) => e.code === 'read_only'))
    expect(ann.text.toString()).toBe('')

    await updateRoom(server, 'mesh', { usersAccesses: { bob: null } })
    await poll('ann dropped bob', () => !ann.provider.mesh!.peers.some((p) => p.userId === 'bob'))
  }, 40_000)
})
