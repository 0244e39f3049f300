/** The stock y-websocket client against Tandem: editors converge, see each other, and late joiners get everything. */

import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { type StockPeer, converged, stockPeer, synced } from './support/stock-client.ts'
import { type TestServer, startServer } from './support/server.ts'
import { until } from './support/wait.ts'

let server: TestServer
const peers: StockPeer[] = []
const peer = (room: string): StockPeer => {
  const p = stockPeer(server.syncUrl, room)
  peers.push(p)
  return p
}

beforeEach(async () => {
  server = await startServer({ allowAnonymous: true })
})

afterEach(async () => {
  for (const p of peers.splice(0)) p.destroy()
  await server.destroy()
})

describe('stock y-websocket client', () => {
  it('two editors converge on edits to every shared type', async () => {
    const a = peer('doc-1')
    const b = peer('doc-1')
    await Promise.all([synced(a), synced(b)])

    a.doc.getText('text').insert(0, 'hello')
    b.doc.getMap('map').set('answer', 42)
    a.doc.getArray<number>('list').push([1, 2, 3])
    const frag = b.doc.getXmlFragment('prose')
    const p = new Y.XmlElement('p')
    p.insert(0, [new Y.XmlText('para')])
    frag.insert(0, [p])
    b.doc.getText('text').insert(0, '> ')

    await converged([a.doc, b.doc])
    for (const d of [a.doc, b.doc]) {
      expect(d.getText('text').toString()).toMatch(/hello/)
      expect(d.getMap('map').get('answer')).toBe(42)
      expect(d.getArray('list').toArray()).toEqual([1, 2, 3])
      expect(d.getXmlFragment('prose').toString()).toBe('<p>para</p>')
    }
    expect(a.doc.getText('text').toString()).toBe(b.doc.getText('text').toString())
  })

  it("editors see each other's presence, and it goes when one leaves", async () => {
    const a = peer('doc-2')
    const b = peer('doc-2')
    await Promise.all([synced(a), synced(b)])
    a.provider.awareness.setLocalStateField('user', { name: 'Ada' })
    b.provider.awareness.setLocalStateField('user', { name: 'Bob' })
    const aw = (p: StockPeer) => p.provider.awareness
    await until(
      'b sees ada',
      aw(b),
      ['change'],
      () => (aw(b).getStates().get(a.doc.clientID) as { user?: { name?: string } } | undefined)?.user?.name === 'Ada',
    )
    await until(
      'a sees bob',
      aw(a),
      ['change'],
      () => (aw(a).getStates().get(b.doc.clientID) as { user?: { name?: string } } | undefined)?.user?.name === 'Bob',
    )

    a.provider.disconnect()
    await until('ada removed at b', aw(b), ['change'], () => !aw(b).getStates().has(a.doc.clientID))
  })

  it('an editor who joins later gets the whole document and the presence of others', async () => {
    const a = peer('doc-3')
    await synced(a)
    const text = a.doc.getText('t')
    for (let i = 0; i < 200; i++) text.insert(text.length, `line ${i}\n`)
    text.delete(0, 10)
    a.provider.awareness.setLocalStateField('user', { name: 'Ada' })
    const late = peer('doc-3')
    await synced(late)
    await converged([a.doc, late.doc])
    expect(late.doc.getText('t').toString()).toBe(text.toString())
    await until('late sees ada', late.provider.awareness, ['change'], () => late.provider.awareness.getStates().has(a.doc.clientID))
  })

  it('rooms are separate documents', async () => {
    const a = peer('room-a')
    const b = peer('room-b')
    await Promise.all([synced(a), synced(b)])
    a.doc.getText('t').insert(0, 'only in a')
    const a2 = peer('room-a')
    await synced(a2)
    await converged([a.doc, a2.doc])
    expect(b.doc.getText('t').toString()).toBe('')
  })
})
