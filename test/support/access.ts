/**
 * Helpers for access-control tests: rooms and ACL changes over REST (real requests with the
 * secret), tokens signed with the test secret, arrival times of a client's messages, a raw client
 * that presents request headers (a trusted gateway's identity headers), the ordering barrier a
 * connection can put behind its own earlier messages, and a LevelDB store whose answers can be held
 * back to place a change inside a connection's set-up.
 */

import { performance } from 'node:perf_hooks'
import * as Y from 'yjs'
import { type AccessTokenInput, type IdTokenInput, type MintOptions, mintAccessToken, mintIdToken } from '../../protocol/mint.ts'
import type { RoomPatch } from '../../protocol/rest.ts'
import { encodeFrame, writeSyncStep1 } from '../../protocol/messages.ts'
import { openLevelStore } from '../../server/store/level-store.ts'
import type { Store } from '../../server/store/types.ts'
import { type RawClient, rawClient } from './raw-client.ts'
import { TEST_SECRET, type TestServer } from './server.ts'
import { withDeadline } from './wait.ts'

export type { CreateRoomInput as RoomBody, RoomPatch } from '../../protocol/rest.ts'
export { createRoom } from './rest.ts'

const secretHeaders = { authorization: `Bearer ${TEST_SECRET}` }

/**
 * Changes a room's ACL with a real HTTP request to `POST /v1/rooms/:id` and says when its response
 * arrived (performance.now()), so a test can time what its sessions were told against it.
 */
export const updateRoom = async (server: TestServer, roomId: string, patch: RoomPatch): Promise<{ sentAt: number; respondedAt: number }> => {
  const sentAt = performance.now()
  const res = await fetch(`${server.httpUrl}/v1/rooms/${encodeURIComponent(roomId)}`, {
    method: 'POST',
    headers: { ...secretHeaders, 'content-type': 'application/json' },
    body: JSON.stringify(patch),
  })
  const respondedAt = performance.now()
  if (res.status !== 200) throw new Error(`updating room ${roomId}: ${res.status} ${await res.text()}`)
  return { sentAt, respondedAt }
}

/** Any other REST call with the secret, through `inject`. */
export const rest = async (
  server: TestServer,
  method: 'POST' | 'DELETE' | 'GET',
  url: string,
  payload?: object,
): Promise<{ status: number; body: unknown }> => {
  const res = await server.app.inject({ method, url, headers: secretHeaders, ...(payload !== undefined && { payload }) })
  return { status: res.statusCode, body: res.body === '' ? null : res.json() }
}

export const idToken = async (input: IdTokenInput, options?: MintOptions): Promise<string> => (await mintIdToken(TEST_SECRET, input, options)).token

export const accessToken = async (input: AccessTokenInput, options?: MintOptions): Promise<string> => (await mintAccessToken(TEST_SECRET, input, options)).token

/**
 * Records when each of a client's messages arrived: `times[i]` is the performance.now() at which
 * `client.messages[i]` was received. The raw client's own listener runs first, so the message is
 * already in `messages` when this one runs.
 */
export const arrivalTimes = (client: RawClient): number[] => {
  const times: number[] = []
  client.socket.on('message', () => {
    times[client.messages.length - 1] = performance.now()
  })
  return times
}

/**
 * An ordering barrier behind everything this client sent so far: the server handles one socket's
 * frames in order, so once it answered this sync step 1, it has handled every earlier frame.
 */
export const barrier = async (client: RawClient): Promise<void> => {
  const from = client.messages.length
  client.send(encodeFrame(writeSyncStep1, Y.encodeStateVector(client.doc)))
  await client.next('sync-step-2', (m) => client.messages.indexOf(m) >= from)
}

export const kinds = (client: RawClient): string[] => client.messages.map((m) => m.kind)

export const errorCodes = (client: RawClient): string[] => client.messages.flatMap((m) => (m.kind === 'error' ? [m.code] : []))

/** A raw client whose upgrade request carries `headers`, as a gateway in front of the server would send them. */
export const headerClient = (syncUrl: string, room: string, headers: Record<string, string>, options: { token?: string | null } = {}): Promise<RawClient> =>
  rawClient(syncUrl, room, { ...options, headers })

/** A store call held until the test releases it: `held` resolves once the call is waiting. */
export interface Hold {
  readonly held: Promise<void>
  release(): void
}

export interface GatedStore {
  readonly store: Store
  /**
   * Holds the answer of the next `method` call for `roomId` until `release()`; a `deleteRoom` is
   * held before it runs (the room is still there while it is held).
   */
  holdNext(method: 'load' | 'getRoom' | 'deleteRoom', roomId: string): Hold
}

/**
 * A real LevelDB store whose answer to one `load` or `getRoom` of a room can be held back, to put a
 * REST change deterministically inside a connection's authentication (getRoom: its permissions are
 * being decided) or its join (load: the room is being loaded), or a `deleteRoom` held before it
 * runs, to put a join inside a deletion. Once released, only promise
 * continuations stand between the answer and what the connection does with it, so any later socket
 * or I/O event comes after.
 */
export const gatedStore = async (dataDir: string): Promise<GatedStore> => {
  const inner = await openLevelStore(dataDir)
  const holds = new Map<string, { entered: () => void; released: Promise<void> }>()
  // The call runs at once; its answer is what is held (a read made before a change, answered after it).
  const pass = async <T>(method: string, roomId: string, call: () => Promise<T>, before = false): Promise<T> => {
    const hold = holds.get(`${method}:${roomId}`)
    if (hold === undefined) return call()
    holds.delete(`${method}:${roomId}`)
    if (before) {
      hold.entered()
      await hold.released
      return call()
    }
    const result = await call()
    hold.entered()
    await hold.released
    return result
  }
  const store = new Proxy(inner, {
    get(target, prop) {
      if (prop === 'load') return (roomId: string) => pass('load', roomId, () => target.load(roomId))
      if (prop === 'getRoom') return (roomId: string) => pass('getRoom', roomId, () => target.getRoom(roomId))
      if (prop === 'deleteRoom') return (roomId: string) => pass('deleteRoom', roomId, () => target.deleteRoom(roomId), true)
      const value = Reflect.get(target, prop, target) as unknown
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    },
  }) as Store
  return {
    store,
    holdNext(method, roomId) {
      let entered!: () => void
      let release!: () => void
      const held = new Promise<void>((resolve) => {
        entered = resolve
      })
      const released = new Promise<void>((resolve) => {
        release = resolve
      })
      holds.set(`${method}:${roomId}`, { entered, released })
      return { held: withDeadline(`a held ${method} of ${roomId}`, held), release }
    },
  }
}
