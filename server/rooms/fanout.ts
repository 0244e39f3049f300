/**
 * Fan-out: who in a room receives a frame. A room hands every frame it relays (document updates,
 * awareness changes) to its channel, encoded once; the channel delivers it to the room's members.
 *
 * `LocalFanout` delivers within this process. A fan-out across several server processes (cluster/,
 * on Redis) implements the same two interfaces: its channel shares the room's presence with the
 * other processes and passes what they did to `RemoteFrames`, which the room applies like local
 * frames (their updates come from the room's durable log, which the store keeps).
 */

import type { AwarenessEntry } from '../../protocol/awareness.ts'

/**
 * One broadcast's frame, shared by all its receivers: the transport of the first one to need it
 * framed for the wire (a WebSocket frame, a document-name prefix) keeps that framing here, under
 * the transport's kind, and the other receivers of that kind write the same bytes. So a frame is
 * framed once per broadcast, not once per receiver, without the room knowing about WebSockets.
 */
export class SharedFrame {
  readonly frame: Uint8Array
  #kind: string | null = null
  #wire: Buffer | null = null
  #others: Map<string, Buffer> | null = null

  constructor(frame: Uint8Array) {
    this.frame = frame
  }

  /** The frame framed by `kind`'s `build`, built by the first receiver of that kind. */
  wire(kind: string, build: (frame: Uint8Array) => Buffer): Buffer {
    if (this.#kind === kind) return this.#wire!
    if (this.#kind === null) {
      this.#kind = kind
      this.#wire = build(this.frame)
      return this.#wire
    }
    this.#others ??= new Map()
    let wire = this.#others.get(kind)
    if (wire === undefined) {
      wire = build(this.frame)
      this.#others.set(kind, wire)
    }
    return wire
  }
}

export interface Member {
  /**
   * Sends one frame (a Tandem/y-websocket message) to this member; `shared`, when given, is the same
   * frame as part of a broadcast to several members (framed once for all of them).
   */
  send(frame: Uint8Array, shared?: SharedFrame): void
}

/**
 * What the same room in other processes did, as a fan-out across processes delivers it to the
 * room here (LocalFanout never has any): updates they accepted and stored, presence of their
 * clients (by the process it comes from), a process gone (its clients' presence goes too), and a
 * process asking what presence this one holds (it just loaded the room).
 */
export interface RemoteFrames {
  update(update: Uint8Array): void
  awareness(awarenessUpdate: Uint8Array, source: string): void
  sourceGone(source: string): void
  /** The presence states of this process's own members, to answer another process's query. */
  localPresence(): Uint8Array | null
}

export interface RoomChannel<M extends Member = Member> {
  join(member: M): void
  leave(member: M): void
  /** Delivers `frame` to every member here but `except`. */
  broadcast(frame: Uint8Array, except?: object | null): void
  /** Shares presence decided here (members' states, their removals) with the room in other processes. */
  shareAwareness(entries: readonly AwarenessEntry[]): void
  readonly size: number
  members(): IterableIterator<M>
  close(): void
}

export interface Fanout {
  open<M extends Member>(roomId: string, remote: RemoteFrames): RoomChannel<M>
}

class LocalChannel<M extends Member> implements RoomChannel<M> {
  readonly #members = new Set<M>()

  join(member: M): void {
    this.#members.add(member)
  }

  leave(member: M): void {
    this.#members.delete(member)
  }

  broadcast(frame: Uint8Array, except?: object | null): void {
    // Framed once for every receiver: the same bytes go to each socket.
    const shared = this.#members.size > 1 ? new SharedFrame(frame) : undefined
    for (const member of this.#members) {
      if (member !== except) member.send(frame, shared)
    }
  }

  shareAwareness(): void {}

  get size(): number {
    return this.#members.size
  }

  members(): IterableIterator<M> {
    return this.#members.values()
  }

  close(): void {
    this.#members.clear()
  }
}

export class LocalFanout implements Fanout {
  open<M extends Member>(_roomId: string, _remote: RemoteFrames): RoomChannel<M> {
    return new LocalChannel<M>()
  }
}
