/**
 * The room logs' feed (server/cluster/log-feed.ts) on a Redis server of this file's own: entries
 * appended by the real append script reach a follower once each and in the stream's order, whether
 * they were appended before it followed, while it was catching up, or while its subscriber
 * connection was away (killed by Redis, as a full output buffer or a network cut does). A message
 * on the channel that is not an entry is skipped; the stream still has the entries around it.
 */

import { EventEmitter } from 'node:events'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ClusterKeys } from '../server/cluster/keys.ts'
import { APPEND_SCRIPT, type LogEntry, appendArguments, decodeFeedMessage } from '../server/cluster/log-entry.ts'
import { LogFeed } from '../server/cluster/log-feed.ts'
import { type RedisClient, binary, connectRedis } from '../server/cluster/redis.ts'
import { type EngineServer, startRedis } from './support/engines.ts'
import { until } from './support/wait.ts'

const silentLog = { warn() {}, error() {}, info() {}, debug() {}, child: () => silentLog } as unknown as Parameters<typeof connectRedis>[2]

let redis: EngineServer
let command: RedisClient
const keys = new ClusterKeys('feed-test:')

beforeAll(async () => {
  redis = await startRedis()
  command = await connectRedis(redis.url, 'test-command', silentLog)
})

afterAll(async () => {
  await command?.quit()
  await redis?.destroy()
})

/** Appends one entry to `room`'s log with the server's script; its update is `marker`'s bytes. */
const append = (room: string, marker: string, process = 'writer'): Promise<unknown> =>
  command.eval(APPEND_SCRIPT, {
    keys: [keys.log(room), keys.feed(room)],
    arguments: appendArguments(process, Date.now(), [new TextEncoder().encode(marker)], []),
  })

/** A follower of `room` from `fromId` that records the markers it is handed. */
const follow = async (room: string, fromId = '0-0') => {
  const subscriber = await connectRedis(redis.url, 'test-subscriber', silentLog)
  const feed = new LogFeed({ keys, subscriber, command: binary(command), log: silentLog })
  const markers: string[] = []
  const ids: string[] = []
  /** 'entries' on each hand-over. */
  const events = new EventEmitter()
  const unfollow = feed.follow(room, fromId, (entries: readonly LogEntry[]) => {
    for (const entry of entries) {
      ids.push(entry.id)
      for (const update of entry.updates) markers.push(new TextDecoder().decode(update))
    }
    events.emit('entries')
  })
  return {
    feed,
    unfollow,
    events,
    subscriber,
    markers,
    ids,
    async close() {
      feed.close()
      await subscriber.quit()
    },
  }
}

const sequence = (prefix: string, from: number, to: number): string[] => Array.from({ length: to - from }, (_, i) => `${prefix}${from + i}`)

describe('the log feed', () => {
  it('hands on entries from before it followed, during its catch-up and after, once each, in order', async () => {
    const room = 'catch-up'
    for (const marker of sequence('m', 0, 20)) await append(room, marker)
    // Appends keep coming while it subscribes and reads the stream.
    const appending = (async () => {
      for (const marker of sequence('m', 20, 220)) await append(room, marker)
    })()
    const follower = await follow(room)
    await appending
    await until('every entry handed on', follower.events, ['entries'], () => follower.markers.length >= 220, 10_000)
    expect(follower.markers).toEqual(sequence('m', 0, 220))
    expect(follower.feed.position(room)).toBe(follower.ids.at(-1))
    await follower.close()
  })

  it('starts after the id it is given', async () => {
    const room = 'from-id'
    const first = String(await append(room, 'old'))
    const follower = await follow(room, first)
    await append(room, 'new')
    await until('the new entry', follower.events, ['entries'], () => follower.markers.length >= 1, 10_000)
    expect(follower.markers).toEqual(['new'])
    await follower.close()
  })

  it('hands on what was appended while its subscriber connection was away, once each, in order', async () => {
    const room = 'reconnect'
    const follower = await follow(room)
    await append(room, 'before')
    await until('the first entry', follower.events, ['entries'], () => follower.markers.length === 1, 10_000)
    // Redis drops every pub/sub connection; appends go on meanwhile and after.
    const appending = (async () => {
      for (const marker of sequence('m', 0, 300)) await append(room, marker)
    })()
    await command.sendCommand(['CLIENT', 'KILL', 'TYPE', 'pubsub'])
    await appending
    await until('every entry handed on', follower.events, ['entries'], () => follower.markers.length >= 301, 15_000)
    expect(follower.markers).toEqual(['before', ...sequence('m', 0, 300)])
    await follower.close()
  })

  it('skips a message that is not an entry and goes on with the next', async () => {
    const room = 'garbage'
    const follower = await follow(room)
    await append(room, 'one')
    await until('the first entry', follower.events, ['entries'], () => follower.markers.length === 1, 10_000)
    await command.publish(keys.feed(room), 'not an entry')
    await command.publish(keys.feed(room), '1-1\nx\n0\n2\n3:abc')
    await append(room, 'two')
    await until('the next entry', follower.events, ['entries'], () => follower.markers.length === 2, 10_000)
    expect(follower.markers).toEqual(['one', 'two'])
    await follower.close()
  })

  it('stops handing on entries once the room is unfollowed', async () => {
    const room = 'unfollow'
    const follower = await follow(room)
    await append(room, 'kept')
    await until('the first entry', follower.events, ['entries'], () => follower.markers.length === 1, 10_000)
    follower.unfollow()
    await append(room, 'dropped')
    // A second room's entry, appended after, arrives: the feed is still running, the first room is not followed.
    follower.feed.follow('unfollow-other', '0-0', () => {
      follower.markers.push('other')
      follower.events.emit('entries')
    })
    await append('unfollow-other', 'x')
    await until("the other room's entry", follower.events, ['entries'], () => follower.markers.includes('other'), 10_000)
    expect(follower.markers).toEqual(['kept', 'other'])
    expect(follower.feed.position(room)).toBeUndefined()
    await follower.close()
  })
  it("a room followed again keeps its new follow when the old one's stop comes late", async () => {
    const room = 'refollow'
    const follower = await follow(room)
    await append(room, 'first')
    await until('the first entry', follower.events, ['entries'], () => follower.markers.length === 1, 10_000)
    const again: string[] = []
    const events = new EventEmitter()
    follower.feed.follow(room, follower.feed.position(room)!, (entries) => {
      for (const entry of entries) for (const u of entry.updates) again.push(new TextDecoder().decode(u))
      events.emit('entries')
    })
    follower.unfollow() // the first follow's stop, after the second took its place
    await append(room, 'second')
    await until('the entry after', events, ['entries'], () => again.length === 1, 10_000)
    expect(again).toEqual(['second'])
    expect(follower.markers).toEqual(['first'])
    await follower.close()
  })
})

describe('feed messages', () => {
  it('carry any bytes, newlines and colons included, and several updates per entry', async () => {
    const room = 'bytes'
    const updates = [new Uint8Array([0x0a, 0x3a, 0x00, 0xff]), new Uint8Array([]), new Uint8Array([0x31, 0x3a, 0x0a])]
    const subscriber = await connectRedis(redis.url, 'test-raw', silentLog)
    const received: Buffer[] = []
    const events = new EventEmitter()
    await subscriber.subscribe(
      keys.feed(room),
      (m: Buffer) => {
        received.push(m)
        events.emit('message')
      },
      true,
    )
    const id = String(await command.eval(APPEND_SCRIPT, { keys: [keys.log(room), keys.feed(room)], arguments: appendArguments('p1', 1234, updates, []) }))
    await until('the message', events, ['message'], () => received.length === 1, 10_000)
    const entry = decodeFeedMessage(received[0]!)
    expect(entry).toEqual({ id, process: 'p1', at: 1234, updates })
    // A message cut short, or with bytes past its last update, is not an entry.
    expect(decodeFeedMessage(received[0]!.subarray(0, received[0]!.length - 1))).toBeNull()
    expect(decodeFeedMessage(Buffer.concat([received[0]!, Buffer.from('x')]))).toBeNull()
    await subscriber.quit()
  })
})
