/**
 * The session seam: `authenticate` decides once per connection; its refusals reach the client with
 * their code; the token reaches it from Tandem's auth message, and from `?token=` only in
 * compatibility mode. Also the `saved` acknowledgement a writer gets.
 */

import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import { PermissionBit } from '../protocol/permissions.ts'
import type { Authenticate, Credentials } from '../server/auth/session.ts'
import { type RawClient, rawClient, textUpdate } from './support/raw-client.ts'
import { serversPerTest } from './support/server.ts'
import { stockPeer, synced } from './support/stock-client.ts'
import { once, until } from './support/wait.ts'

const { start } = serversPerTest()

const ALL = PermissionBit.read | PermissionBit.presence | PermissionBit.write

/** An authenticate that lets in the token "good" and records every call. */
const recording = (): { calls: Credentials[]; authenticate: Authenticate } => {
  const calls: Credentials[] = []
  return {
    calls,
    authenticate: (credentials) => {
      calls.push(credentials)
      return credentials.token === 'good'
        ? { actor: { kind: 'user', userId: 'ada' }, info: { name: 'Ada' }, permissions: ALL }
        : { refused: 'unauthorized', reason: 'bad token' }
    },
  }
}

describe('authenticate seam', () => {
  it('passes the token from the auth message and tells the client who it is', async () => {
    const auth = recording()
    const server = await start({ authenticate: auth.authenticate, allowAnonymous: false })
    const client = await rawClient(server.syncUrl, 'room', { token: 'good' })
    const hello = await client.next('authenticated')
    expect(hello.identity).toMatchObject({ actor: { kind: 'user', userId: 'ada' }, info: { name: 'Ada' }, permissions: ALL, expiresAt: null })
    expect(auth.calls).toEqual([{ roomId: 'room', token: 'good', via: 'tandem' }])
    await client.next('sync-step-2')
  })

  it('a refusal reaches a Tandem client as an error with its code, then close 4401, and nothing of the room', async () => {
    const auth = recording()
    const server = await start({ authenticate: auth.authenticate })
    const seed = await rawClient(server.syncUrl, 'room', { token: 'good' })
    seed.sendUpdate(textUpdate('secret text'))
    await seed.saved(1)

    const client = await rawClient(server.syncUrl, 'room', { token: 'wrong' })
    const closed = await client.closed
    expect(closed.code).toBe(4401)
    expect(client.messages).toEqual([{ kind: 'error', code: 'unauthorized', message: 'bad token' }])
  })

  it('a session without read access is refused as forbidden (4403)', async () => {
    const server = await start({ authenticate: () => ({ actor: { kind: 'user', userId: 'x' }, permissions: 0 }) })
    const client = await rawClient(server.syncUrl, 'room', { token: 't' })
    expect((await client.closed).code).toBe(4403)
    expect(client.messages.map((m) => m.kind)).toEqual(['error'])
  })

  it('the stock client gets permission-denied and stops reconnecting (final 44xx close)', async () => {
    const server = await start({ allowAnonymous: false, authenticate: undefined })
    const peer = stockPeer(server.syncUrl, 'room')
    try {
      const [terminal] = await once<[{ code: number; reason: string }]>('the provider to stop for good', peer.provider, 'closed')
      expect(terminal.code).toBe(4401)
      expect(peer.provider.shouldConnect).toBe(false)
      expect(peer.doc.getText('t').toString()).toBe('')
    } finally {
      peer.destroy()
    }
  })

  it('the ?token= parameter reaches authenticate only in compatibility mode', async () => {
    const off = recording()
    const serverOff = await start({ authenticate: off.authenticate })
    const refused = stockPeer(serverOff.syncUrl, 'room', { params: { token: 'good' } })
    try {
      await once('close', refused.provider, 'connection-close')
      expect(off.calls[0]).toEqual({ roomId: 'room', token: null, via: 'compat' })
    } finally {
      refused.destroy()
    }

    const on = recording()
    const serverOn = await start({ authenticate: on.authenticate, yWebsocketCompat: true })
    const admitted = stockPeer(serverOn.syncUrl, 'room', { params: { token: 'good' } })
    try {
      await synced(admitted)
      expect(on.calls[0]).toEqual({ roomId: 'room', token: 'good', via: 'compat' })
    } finally {
      admitted.destroy()
    }
  })

  it('a thrown error in authenticate closes with 1011 and the server keeps serving', async () => {
    let fail = true
    const server = await start({
      authenticate: () => {
        if (fail) throw new Error('identity provider down')
        return { actor: { kind: 'anonymous', sessionId: 's' }, permissions: ALL }
      },
    })
    const client = await rawClient(server.syncUrl, 'room')
    expect((await client.closed).code).toBe(1011)
    expect(client.messages).toEqual([{ kind: 'error', code: 'server_error', message: 'identity provider down' }])
    fail = false
    const next = await rawClient(server.syncUrl, 'room')
    await next.next('sync-step-2')
  })
})

/** A writer and a reader in `room`, both synced, and the six updates of typing "abcdef" one letter at a time. */
async function typist(server: Awaited<ReturnType<typeof start>>, room: string) {
  const writer = await rawClient(server.syncUrl, room)
  const reader = await rawClient(server.syncUrl, room)
  await Promise.all([writer.next('sync-step-2'), reader.next('sync-step-2')])
  const doc = new Y.Doc()
  const updates: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => updates.push(u))
  for (let i = 0; i < 6; i++) doc.getText('t').insert(i, 'abcdef'[i]!)
  return { writer, reader, updates }
}

const savedCounts = (client: RawClient): number[] => client.messages.flatMap((m) => (m.kind === 'saved' ? [m.count] : []))

describe('saved acknowledgements', () => {
  it('counts every write of the connection once it is stored, empty sync steps included, in order', async () => {
    const server = await start()
    const writer = await rawClient(server.syncUrl, 'acks')
    await writer.next('sync-step-2')
    const doc = new Y.Doc()
    const updates: Uint8Array[] = []
    doc.on('update', (u: Uint8Array) => updates.push(u))
    for (let i = 0; i < 50; i++) doc.getArray<number>('a').push([i])
    for (const u of updates) writer.sendUpdate(u)
    writer.sendUpdate(Uint8Array.of(0, 0)) // an empty update: nothing to store, still acknowledged
    await writer.saved(51)
    const counts = savedCounts(writer)
    expect(counts).toEqual([...counts].sort((a, b) => a - b))
    expect(counts.at(-1)).toBe(51)
    const stored = await server.app.tandem.store.load('acks')
    const fromDisk = new Y.Doc()
    for (const u of stored.updates) Y.applyUpdate(fromDisk, u)
    expect(fromDisk.getArray('a').toArray()).toEqual(Array.from({ length: 50 }, (_, i) => i))
  })

  it('relays a write to the other editors, not back to its writer', async () => {
    const server = await start()
    const writer = await rawClient(server.syncUrl, 'relay')
    const other = await rawClient(server.syncUrl, 'relay')
    await Promise.all([writer.next('sync-step-2'), other.next('sync-step-2')])
    writer.sendUpdate(textUpdate('hi'))
    await until('other has it', other.doc, ['update'], () => other.doc.getText('t').toString() === 'hi')
    await writer.saved(1)
    expect(writer.messages.some((m) => m.kind === 'update')).toBe(false)
  })

  it('a busy room relays at most once per broadcast window, the first write at once, the rest merged', async () => {
    // A window far longer than the test's own steps (a few ms), so what arrives when is not a race;
    // no store window, so that waiting for each acknowledgement takes a few ms too.
    const server = await start({ broadcastWindowMs: 2_000, storeWindowMs: 0 })
    const { writer, reader, updates } = await typist(server, 'window')
    const relayed = (): number => reader.messages.filter((m) => m.kind === 'update').length

    writer.sendUpdate(updates[0]!)
    await reader.next('update') // the first write after a quiet spell is not held back
    for (let i = 1; i <= 5; i++) {
      writer.sendUpdate(updates[i]!)
      await writer.saved(i + 1) // each write handled in its own turn, applied and stored
    }
    expect(relayed()).toBe(1) // held: the window is still open
    // A newcomer's sync has every applied write at once, window or not.
    const late = await rawClient(server.syncUrl, 'window')
    await late.next('sync-step-2')
    expect(late.doc.getText('t').toString()).toBe('abcdef')

    // When the window ends, the held writes go out by themselves.
    await until('reader has all', reader.doc, ['update'], () => reader.doc.getText('t').toString() === 'abcdef')
    expect(relayed()).toBe(2) // the five held writes in one frame
  })

  it('a busy room stores at most once per store window: the first write at once, the rest in one record and one acknowledgement', async () => {
    const server = await start({ storeWindowMs: 2_000 })
    const { writer, reader, updates } = await typist(server, 'store-window')

    writer.sendUpdate(updates[0]!)
    await writer.saved(1) // the first write after a quiet spell is stored and acknowledged at once
    for (const u of updates.slice(1)) writer.sendUpdate(u)
    // Relaying is not held back by the store window...
    await until('reader has all', reader.doc, ['update'], () => reader.doc.getText('t').toString() === 'abcdef')
    // ...but storing is: the five wait for the window, then go as one record with one acknowledgement.
    expect(savedCounts(writer)).toEqual([1])
    await writer.saved(6)
    expect(savedCounts(writer)).toEqual([1, 6])
    expect(server.app.tandem.registry.get('store-window')!.storedRecords).toBe(2)
  })

  it('a flush (shutdown, REST writes) does not wait for the store window', async () => {
    // A window longer than the test may take: if a flush waited for it, the test would time out.
    const server = await start({ storeWindowMs: 600_000 })
    const writer = await rawClient(server.syncUrl, 'flush-window')
    await writer.next('sync-step-2')
    writer.sendUpdate(textUpdate('a'))
    await writer.saved(1)
    const doc = new Y.Doc()
    doc.getText('t').insert(0, 'hello')
    writer.sendUpdate(Y.encodeStateAsUpdate(doc))
    const room = server.app.tandem.registry.get('flush-window')!
    await until('applied', room.doc, ['update'], () => room.doc.getText('t').length === 6)
    await room.flush()
    await writer.saved(2)
    const stored = await server.app.tandem.store.load('flush-window')
    const fromDisk = new Y.Doc()
    for (const u of stored.updates) Y.applyUpdate(fromDisk, u)
    expect(fromDisk.getText('t').length).toBe(6)
  })
})
