/**
 * Graceful shutdown (`app.close()`): every write the server applied is stored, even one not yet
 * acknowledged; every client hears 1012 and the stock client comes back by itself, bringing what
 * was typed meanwhile; and closing does not hang on the clients still connected: not on one that
 * never answers the close frame, nor on one that keeps writing.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import * as Y from 'yjs'
import { type RawClient, rawClient } from './support/raw-client.ts'
import { type TestServer, startServer } from './support/server.ts'
import { type StockPeer, stockPeer, synced } from './support/stock-client.ts'
import { vanishingClient } from './support/vanishing-client.ts'
import { until, withDeadline } from './support/wait.ts'

const servers: TestServer[] = []
const peers: StockPeer[] = []
const raws: RawClient[] = []

const start = async (...args: Parameters<typeof startServer>): Promise<TestServer> => {
  const server = await startServer(...args)
  servers.push(server)
  return server
}
const peer = (server: TestServer, room: string): StockPeer => {
  const p = stockPeer(server.syncUrl, room)
  peers.push(p)
  return p
}
const raw = async (server: TestServer, room: string, options?: Parameters<typeof rawClient>[2]): Promise<RawClient> => {
  const client = await rawClient(server.syncUrl, room, options)
  raws.push(client)
  return client
}

afterEach(async () => {
  for (const p of peers.splice(0)) p.destroy()
  for (const c of raws.splice(0)) c.close()
  // Several servers may share a data dir: stop them all before any removes it.
  const all = servers.splice(0)
  for (const s of all) await s.stop()
  for (const s of all) await s.destroy()
})

/** The highest `saved` count the client has received so far. */
const lastSaved = (client: RawClient): number => client.messages.reduce((max, m) => (m.kind === 'saved' ? Math.max(max, m.count) : max), 0)

/** `count` Yjs updates, each appending `m<i>;` to Y.Text 't', and the text they make. */
const appendUpdates = (count: number): { updates: Uint8Array[]; text: string } => {
  const doc = new Y.Doc()
  const updates: Uint8Array[] = []
  doc.on('update', (update: Uint8Array) => updates.push(update))
  const text = doc.getText('t')
  for (let i = 0; i < count; i++) text.insert(text.length, `m${i};`)
  return { updates, text: text.toString() }
}

describe('graceful shutdown', () => {
  it('stores every applied write on close, acknowledged or not', async (context) => {
    // Synchronous LevelDB writes keep the store behind the socket, so writes are pending at close.
    const server = await start({ allowAnonymous: true, syncWrites: true })
    const writer = await raw(server, 'flush')
    const watcher = await raw(server, 'flush')
    await Promise.all([writer.next('sync-step-2'), watcher.next('sync-step-2')])

    const N = 400
    const { updates, text } = appendUpdates(N)
    for (const update of updates) writer.sendUpdate(update)
    // The watcher has them all: the server applied every one (it relays only what it applied).
    await until('the watcher has every update', watcher.doc, ['update'], () => watcher.doc.getText('t').toString() === text)
    const savedAtStop = lastSaved(writer)
    const stopping = server.stop()

    expect(await writer.closed).toEqual({ code: 1012, reason: 'server_restarting' })
    await withDeadline('app.close()', stopping, 10_000)
    await context.annotate(`${N - savedAtStop} of ${N} writes were not yet acknowledged when close began`)

    const restarted = await start({ allowAnonymous: true }, server.dataDir)
    const reader = await raw(restarted, 'flush')
    await reader.next('sync-step-2')
    expect(reader.doc.getText('t').toString()).toBe(text)
  })

  it('stores every write it relayed, with a client still writing when close begins', async () => {
    // Where close lands in the store's group commits varies: a few rounds cover more of them.
    let server = await start({ allowAnonymous: true, syncWrites: true })
    for (let round = 0; round < 4; round++) {
      const room = `busy-${round}`
      const writer = await raw(server, room)
      const watcher = await raw(server, room)
      await Promise.all([writer.next('sync-step-2'), watcher.next('sync-step-2')])

      // 1,000 writes in bursts of 10, one burst a turn (nonstop writing keeps close from finishing:
      // see the known bug below); close begins a fifth of the way in.
      const writing = appendInBursts(writer, 100)
      await until('the server relayed 200 writes', watcher.doc, ['update'], () => watcher.doc.getText('t').length >= 200 * 'm000;'.length)
      const stopping = server.stop()
      expect(await writer.closed).toEqual({ code: 1012, reason: 'server_restarting' })
      expect(await watcher.closed).toEqual({ code: 1012, reason: 'server_restarting' })
      await withDeadline('app.close()', stopping, 10_000)
      await writing.done
      const relayed = watcher.doc.getText('t').toString()

      server = await start({ allowAnonymous: true, syncWrites: true }, server.dataDir)
      const reader = await raw(server, room)
      await reader.next('sync-step-2')
      const stored = reader.doc.getText('t').toString()
      // Everything relayed was applied, so it is stored; what is stored is what was sent, in order, no gaps.
      expect(stored.startsWith(relayed), `round ${round}: stored ${stored.length} chars, relayed ${relayed.length}`).toBe(true)
      expect(writing.text.toString().startsWith(stored)).toBe(true)
      reader.close()
    }
  })

  it('closes every socket with 1012; the stock client reconnects by itself and uploads what was typed meanwhile', async () => {
    const server = await start({ allowAnonymous: true })
    const tandem = await raw(server, 'restart')
    await tandem.next('sync-step-2')
    const editor = peer(server, 'restart')
    const closes: Array<number | null> = []
    editor.provider.on('connection-close', (event) => closes.push(event?.code ?? null))
    await synced(editor)
    const text = editor.doc.getText('t')
    text.insert(0, 'before;')
    await until('the server relays the first edit', tandem.doc, ['update'], () => tandem.doc.getText('t').toString() === 'before;')

    // Typed as the server goes: the editor is disconnected, the server not yet gone.
    const disconnected = until('the editor is disconnected', editor.provider, ['status'], () => !editor.provider.wsconnected)
    const stopping = server.stop()
    await disconnected
    text.insert(text.length, 'closing;')
    expect(await tandem.closed).toEqual({ code: 1012, reason: 'server_restarting' })
    expect(closes).toEqual([1012])
    await stopping

    // Typed with no server at all; then one comes back on the same port and data dir (a restart).
    text.insert(text.length, 'down;')
    const restarted = await start({ allowAnonymous: true }, server.dataDir, server.port)
    await until('the editor reconnected and synced by itself', editor.provider, ['status', 'sync'], () => editor.provider.wsconnected && editor.provider.synced)

    const fresh = peer(restarted, 'restart')
    await synced(fresh)
    await until(
      'a fresh peer has the edits typed while the server was gone',
      fresh.doc,
      ['update'],
      () => fresh.doc.getText('t').toString() === 'before;closing;down;',
    )

    // And the server stored them: with every editor gone, a restart still has them.
    for (const p of peers.splice(0)) p.destroy()
    await restarted.stop()
    const again = await start({ allowAnonymous: true }, restarted.dataDir)
    const reader = await raw(again, 'restart')
    await reader.next('sync-step-2')
    expect(reader.doc.getText('t').toString()).toBe('before;closing;down;')
  })

  it('resolves promptly with clients in several rooms and in every connection state', async () => {
    const server = await start({ allowAnonymous: true })
    const rooms = ['alpha', 'beta', 'gamma']
    const editors = rooms.flatMap((room) => [peer(server, room), peer(server, room)])
    const tandems = await Promise.all(rooms.map((room) => raw(server, room)))
    await Promise.all([...editors.map(synced), ...tandems.map((c) => c.next('sync-step-2'))])
    editors.forEach((e, i) => {
      e.doc.getText('t').insert(0, `editor ${i};`)
    })
    // One socket that has not said anything yet (waiting for its first message)...
    const silent = await raw(server, 'delta', { auth: false, sync: false })
    // ...and one still sending when close begins.
    const busy = await raw(server, 'alpha')
    const { updates } = appendUpdates(200)
    for (const update of updates) busy.sendUpdate(update)
    expect(server.app.tandem.connections.size).toBe(editors.length + tandems.length + 2)

    await withDeadline('app.close()', server.stop(), 5_000)
    for (const client of [...tandems, silent, busy]) {
      expect(await client.closed).toEqual({ code: 1012, reason: 'server_restarting' })
    }
    expect(server.app.tandem.connections.size).toBe(0)
    expect(server.app.tandem.registry.size).toBe(0)
    await expect(rawClient(server.syncUrl, 'alpha')).rejects.toThrow()
  })

  // ws would give an unresponsive peer (a laptop that went to sleep, a dead network path) 30 s to
  // answer the 1012 close frame; the server allows it 1 s.
  it('does not wait on a client that never answers the close handshake', async () => {
    const server = await start({ allowAnonymous: true })
    const socket = await vanishingClient(server.port, '/v1/sync/sleepy')
    const stopping = server.stop()
    try {
      await withDeadline('app.close() with an unresponsive client', stopping, 2_000)
    } finally {
      // Lets the close finish before the data dir goes.
      socket.destroy()
      await stopping
    }
  })

  // The shutdown's flush waits for the writes applied when it began, not for a store queue that
  // a writer keeps refilling.
  it('finishes closing while a client writes nonstop', async () => {
    // No store window: appends follow each other back to back, one is in flight when the close begins
    // (and a writer this fast would pass the rate limit while a 500 ms window held its acknowledgements).
    const server = await start({ allowAnonymous: true, storeWindowMs: 0 })
    const writer = await raw(server, 'nonstop')
    await writer.next('sync-step-2')
    const writing = appendInBursts(writer, Number.POSITIVE_INFINITY)
    await writer.saved(100)
    const stopping = server.stop()
    try {
      await withDeadline('app.close() with a client writing nonstop', stopping, 2_000)
      expect(await writer.closed).toEqual({ code: 1012, reason: 'server_restarting' })
    } finally {
      // Lets the close finish before the data dir goes.
      writer.socket.terminate()
      await writing.done
      await stopping
    }
  })
})

/**
 * Appends `m<i>;` to Y.Text 't' of a local doc, 10 writes a turn for `bursts` turns or until the
 * writer's socket is no longer open, sending each update to the server as it is made.
 */
function appendInBursts(writer: RawClient, bursts: number): { text: Y.Text; done: Promise<void> } {
  const doc = new Y.Doc()
  const text = doc.getText('t')
  doc.on('update', (update: Uint8Array) => writer.sendUpdate(update))
  let sent = 0
  const done = new Promise<void>((resolve) => {
    const burst = (remaining: number): void => {
      if (remaining === 0 || writer.socket.readyState !== WebSocket.OPEN) {
        resolve()
        return
      }
      for (let i = 0; i < 10; i++) text.insert(text.length, `m${sent++};`)
      setImmediate(() => burst(remaining - 1))
    }
    burst(bursts)
  })
  return { text, done }
}
