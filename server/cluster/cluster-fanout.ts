/**
 * The fan-out of the distributed mode: a room's members in this process get what the room relays
 * (as LocalFanout's do), and the room hears what the same room in other processes did:
 * - their updates, from the room's log (its feed, log-feed.ts, from where this process's load of
 *   the room left it; this process's own entries are skipped, its doc has them);
 * - their clients' presence, over the room's pub/sub channel (ephemeral, never in the log); a
 *   process that loads the room asks the others for theirs, and asks again when its subscriber
 *   connection comes back;
 * - that a process is gone: processes keep a heartbeat key (process-heartbeat.ts); when one's key
 *   expires, its clients' presence is removed from every room here.
 */

import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { type AwarenessEntry, writeAwarenessUpdate } from '../../protocol/awareness.ts'
import type { Metrics } from '../metrics.ts'
import { type Fanout, type Member, type RemoteFrames, type RoomChannel, SharedFrame } from '../rooms/fanout.ts'
import type { ClusterKeys } from './keys.ts'
import type { LogEntry } from './log-entry.ts'
import type { LogFeed } from './log-feed.ts'
import type { RedisClient } from './redis.ts'

/** Kinds of the presence channel's messages. */
const PRESENCE = { awareness: 0, query: 1 } as const

const encodePresence = (source: string, kind: number, payload: Uint8Array): Buffer => {
  const encoder = encoding.createEncoder()
  encoding.writeVarString(encoder, source)
  encoding.writeVarUint(encoder, kind)
  encoding.writeVarUint8Array(encoder, payload)
  return Buffer.from(encoding.toUint8Array(encoder))
}

const decodePresence = (message: Buffer): { source: string; kind: number; payload: Uint8Array } | null => {
  try {
    const decoder = decoding.createDecoder(new Uint8Array(message))
    return { source: decoding.readVarString(decoder), kind: decoding.readVarUint(decoder), payload: decoding.readVarUint8Array(decoder) }
  } catch {
    return null
  }
}

export interface ClusterFanoutDeps {
  readonly keys: ClusterKeys
  readonly command: RedisClient
  readonly subscriber: RedisClient
  readonly feed: LogFeed
  readonly processId: string
  readonly metrics: Metrics
  /** Where the last load of a room left its log. */
  readonly loadedThrough: (roomId: string) => string
}

class ClusterChannel<M extends Member> implements RoomChannel<M> {
  readonly #members = new Set<M>()
  readonly #roomId: string
  readonly #remote: RemoteFrames
  readonly #deps: ClusterFanoutDeps
  readonly #fanout: ClusterFanout
  readonly #presenceKey: string
  readonly #unfollow: () => void
  readonly #onPresence = (message: Buffer): void => this.#presence(message)

  constructor(roomId: string, remote: RemoteFrames, deps: ClusterFanoutDeps, fanout: ClusterFanout) {
    this.#roomId = roomId
    this.#remote = remote
    this.#deps = deps
    this.#fanout = fanout
    this.#presenceKey = deps.keys.presence(roomId)
    this.#unfollow = deps.feed.follow(roomId, deps.loadedThrough(roomId), (entries) => this.#entries(entries))
    this.listen()
  }

  /**
   * Subscribes to the presence channel (a no-op when node-redis already has it), then asks the
   * other processes for their clients' presence. Also when the subscriber connection comes back:
   * what they published while it was away never arrived, and a subscription that failed meanwhile
   * was never made.
   */
  listen(): void {
    void this.#deps.subscriber
      .subscribe(this.#presenceKey, this.#onPresence, true)
      .then(() => this.#publish(PRESENCE.query, new Uint8Array(0)))
      .catch(() => undefined)
  }

  get roomId(): string {
    return this.#roomId
  }

  join(member: M): void {
    this.#members.add(member)
  }

  leave(member: M): void {
    this.#members.delete(member)
  }

  broadcast(frame: Uint8Array, except?: object | null): void {
    const shared = this.#members.size > 1 ? new SharedFrame(frame) : undefined
    for (const member of this.#members) {
      if (member !== except) member.send(frame, shared)
    }
  }

  shareAwareness(entries: readonly AwarenessEntry[]): void {
    this.#publish(PRESENCE.awareness, writeAwarenessUpdate(entries))
  }

  get size(): number {
    return this.#members.size
  }

  members(): IterableIterator<M> {
    return this.#members.values()
  }

  /** A process is gone: its clients' presence leaves this room. */
  sourceGone(source: string): void {
    this.#remote.sourceGone(source)
  }

  close(): void {
    this.#members.clear()
    this.#unfollow()
    void this.#deps.subscriber.unsubscribe(this.#presenceKey, this.#onPresence, true).catch(() => undefined)
    this.#fanout.closed(this)
  }

  /** Entries other processes appended: applied and relayed here (the room does both). */
  #entries(entries: readonly LogEntry[]): void {
    const now = Date.now()
    for (const entry of entries) {
      if (entry.process === this.#deps.processId) continue
      this.#deps.metrics.observeClusterLag(Math.max(0, now - entry.at) / 1000)
      for (const update of entry.updates) this.#remote.update(update)
    }
  }

  #presence(message: Buffer): void {
    const decoded = decodePresence(message)
    if (decoded === null || decoded.source === this.#deps.processId) return
    this.#fanout.seen(decoded.source)
    if (decoded.kind === PRESENCE.awareness) this.#remote.awareness(decoded.payload, decoded.source)
    else if (decoded.kind === PRESENCE.query) {
      const local = this.#remote.localPresence()
      if (local !== null) this.#publish(PRESENCE.awareness, local)
    }
  }

  #publish(kind: number, payload: Uint8Array): void {
    void this.#deps.command.publish(this.#presenceKey, encodePresence(this.#deps.processId, kind, payload)).catch(() => undefined)
  }
}

export class ClusterFanout implements Fanout {
  readonly #deps: ClusterFanoutDeps
  readonly #channels = new Set<ClusterChannel<Member>>()
  /** Processes whose presence reached this one, for the dead-process check. */
  readonly #sources = new Set<string>()

  constructor(deps: ClusterFanoutDeps) {
    this.#deps = deps
    deps.subscriber.on('ready', () => {
      for (const channel of this.#channels) channel.listen()
    })
  }

  open<M extends Member>(roomId: string, remote: RemoteFrames): RoomChannel<M> {
    const channel = new ClusterChannel<M>(roomId, remote, this.#deps, this)
    this.#channels.add(channel as unknown as ClusterChannel<Member>)
    return channel
  }

  /** The processes this one has heard presence from. */
  get sources(): ReadonlySet<string> {
    return this.#sources
  }

  seen(source: string): void {
    this.#sources.add(source)
  }

  /** A process is gone: its clients' presence leaves every room here. */
  sourceGone(source: string): void {
    this.#sources.delete(source)
    for (const channel of this.#channels) channel.sourceGone(source)
  }

  closed(channel: ClusterChannel<Member>): void {
    this.#channels.delete(channel)
  }
}
