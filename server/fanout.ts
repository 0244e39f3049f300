/**
 * Fan-out: who in a room receives a frame. A room hands every frame it relays (document updates,
 * awareness changes) to its channel, encoded once; the channel delivers it to the room's members.
 *
 * `LocalFanout` delivers within this process. A fan-out across several server processes (a Redis
 * bus, say) implements the same two interfaces: its channel also publishes each frame to the bus and
 * passes frames from other processes to `RemoteFrames`, which the room applies like local ones.
 */

export interface Member {
  /** Sends one frame to this member's socket. */
  send(frame: Uint8Array): void
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
    for (const member of this.#members) {
      if (member !== except) member.send(frame)
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
