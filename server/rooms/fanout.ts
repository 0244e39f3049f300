/**
 * Fan-out: who in a room receives a frame. A room hands every frame it relays (document updates,
 * awareness changes) to its channel, encoded once; the channel delivers it to the room's members.
 *
 * `LocalFanout` delivers within this process. A fan-out across several server processes (a Redis
 * bus, say) implements the same two interfaces: its channel also publishes each frame to the bus and
 * passes frames from other processes to `RemoteFrames`, which the room applies like local ones.
 */

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
    if (wire === undefined) this.#others.set(kind, (wire = build(this.frame)))
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

/** Frames published by the same room in other processes; LocalFanout never has any. */
export interface RemoteFrames {
  update(update: Uint8Array): void
  awareness(awarenessUpdate: Uint8Array): void
}

export interface RoomChannel<M extends Member = Member> {
  join(member: M): void
  leave(member: M): void
  /** Delivers `frame` to every member but `except`. */
  broadcast(frame: Uint8Array, except?: object | null): void
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
