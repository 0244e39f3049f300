/**
 * How a process hears the room logs it has loaded: over each room's feed channel (pub/sub), where
 * the append script announces every entry it adds, with its updates (log-entry.ts). A process
 * subscribes when it loads a room and reads nothing else, so an entry costs Redis one message per
 * process that has the room, whatever number of other rooms those processes have loaded (one
 * blocking `XREAD` naming every loaded room's stream cost Redis time in proportion to the rooms,
 * at every wake).
 *
 * Pub/sub holds no backlog, so the stream fills every gap: once a subscription is confirmed, the
 * room catches up with `XRANGE` from the last id it has, and what the channel brings meanwhile waits
 * in a buffer; ids at or below the room's position are skipped, so nothing is applied twice or out
 * of order. When the subscriber connection drops, every room buffers again; when it comes back
 * (node-redis subscribes again before it is ready), every room catches up: what was announced
 * while it was away is in the stream. A
 * failed catch-up is retried with backoff from the same id, however long Redis is away.
 */

import type { FastifyBaseLogger } from 'fastify'
import type { ClusterKeys } from './keys.ts'
import { type LogEntry, compareIds, decodeFeedMessage, fromStream } from './log-entry.ts'
import type { BinaryClient, RedisClient } from './redis.ts'

type Handler = (entries: readonly LogEntry[]) => void

const RETRY_MIN_MS = 50
const RETRY_MAX_MS = 1_000

interface Follower {
  readonly roomId: string
  readonly handler: Handler
  readonly listener: (message: Buffer) => void
  /** The last id handed on: every entry up to it was. */
  id: string
  /** Entries the channel brought while a catch-up runs (null: none runs, entries go straight on). */
  buffer: LogEntry[] | null
  catchingUp: boolean
  /** The connection came back during a catch-up: read the stream once more after it. */
  again: boolean
}

export interface LogFeedDeps {
  readonly keys: ClusterKeys
  readonly subscriber: RedisClient
  readonly command: BinaryClient
  readonly log: FastifyBaseLogger
}

export class LogFeed {
  readonly #deps: LogFeedDeps
  readonly #rooms = new Map<string, Follower>()
  #closed = false
  /**
   * The connection is gone: from now on what the channels bring waits. Messages can arrive after
   * node-redis has subscribed again and before it says 'ready'; handed on at once, they would move
   * a room's position past the entries published while it was away, which the catch-up then skips.
   */
  readonly #onReconnecting = (): void => {
    for (const follower of this.#rooms.values()) follower.buffer ??= []
  }
  readonly #onReady = (): void => {
    for (const follower of this.#rooms.values()) {
      follower.buffer ??= []
      this.#subscribe(follower)
    }
  }

  constructor(deps: LogFeedDeps) {
    this.#deps = deps
    deps.subscriber.on('reconnecting', this.#onReconnecting)
    deps.subscriber.on('ready', this.#onReady)
  }

  /**
   * Hands `roomId`'s entries after `fromId` to `handler`, in order, each once; returns what stops
   * it (which does nothing once another follow of the room took its place).
   */
  follow(roomId: string, fromId: string, handler: Handler): () => void {
    const follower: Follower = {
      roomId,
      handler,
      listener: (message) => this.#message(follower, message),
      id: fromId,
      buffer: [],
      catchingUp: false,
      again: false,
    }
    const previous = this.#rooms.get(roomId)
    if (previous !== undefined) this.#unfollow(previous)
    this.#rooms.set(roomId, follower)
    this.#subscribe(follower)
    return () => {
      if (this.#rooms.get(roomId) === follower) this.#unfollow(follower)
    }
  }

  #unfollow(follower: Follower): void {
    this.#rooms.delete(follower.roomId)
    void this.#deps.subscriber.unsubscribe(this.#deps.keys.feed(follower.roomId), follower.listener, true).catch(() => undefined)
  }

  /** The last id of `roomId`'s log handed on (its entries up to it were). */
  position(roomId: string): string | undefined {
    return this.#rooms.get(roomId)?.id
  }

  close(): void {
    this.#closed = true
    this.#deps.subscriber.off('reconnecting', this.#onReconnecting)
    this.#deps.subscriber.off('ready', this.#onReady)
    for (const follower of [...this.#rooms.values()]) this.#unfollow(follower)
  }

  #current(follower: Follower): boolean {
    return !this.#closed && this.#rooms.get(follower.roomId) === follower
  }

  /** Subscribes (a no-op when node-redis already has it), then catches up; a failure waits for the connection's next 'ready'. */
  #subscribe(follower: Follower): void {
    this.#deps.subscriber.subscribe(this.#deps.keys.feed(follower.roomId), follower.listener, true).then(
      () => void this.#catchUp(follower),
      () => undefined,
    )
  }

  #message(follower: Follower, message: Buffer): void {
    if (!this.#current(follower)) return
    const entry = decodeFeedMessage(message)
    if (entry === null) {
      this.#deps.log.error({ room: follower.roomId }, 'unreadable log feed message skipped (the stream still has the entry)')
      return
    }
    if (follower.buffer !== null) follower.buffer.push(entry)
    else this.#deliver(follower, [entry])
  }

  async #catchUp(follower: Follower): Promise<void> {
    if (follower.catchingUp) {
      follower.again = true
      return
    }
    follower.catchingUp = true
    try {
      do {
        follower.again = false
        const entries = await this.#read(follower)
        if (entries === null) return
        this.#deliver(follower, entries)
      } while (follower.again)
      const buffered = follower.buffer ?? []
      follower.buffer = null
      this.#deliver(follower, buffered)
    } finally {
      follower.catchingUp = false
    }
  }

  /** The stream after the follower's position, retried until it answers (null: no longer followed). */
  async #read(follower: Follower): Promise<LogEntry[] | null> {
    for (let delay = RETRY_MIN_MS; ; delay = Math.min(delay * 2, RETRY_MAX_MS)) {
      if (!this.#current(follower)) return null
      try {
        const entries = await this.#deps.command.xRange(this.#deps.keys.log(follower.roomId), `(${follower.id}`, '+')
        return entries.map((m) => fromStream({ id: m.id.toString(), fields: m.message as Record<string, Buffer> }))
      } catch (err) {
        this.#deps.log.debug({ err: (err as Error).message, room: follower.roomId }, 'log catch-up failed; retrying')
        await new Promise((resolve) => setTimeout(resolve, delay))
      }
    }
  }

  /** Hands on the entries past the follower's position. */
  #deliver(follower: Follower, entries: readonly LogEntry[]): void {
    if (!this.#current(follower)) return
    const fresh = entries.filter((e) => compareIds(e.id, follower.id) > 0)
    if (fresh.length === 0) return
    follower.id = fresh[fresh.length - 1]!.id
    try {
      follower.handler(fresh)
    } catch (err) {
      this.#deps.log.error({ err, room: follower.roomId }, 'applying log entries failed')
    }
  }
}
