/**
 * Fan-out: who in a room receives a frame. A room hands every frame it relays (document updates,
 * awareness changes) to its channel, encoded once; the channel delivers it to the room's members.
 *
 * `LocalFanout` delivers within this process. A fan-out across several server processes (a Redis
 * bus, say) implements the same two interfaces: its channel also publishes each frame to the bus and
 * passes frames from other processes to `RemoteFrames`, which the room applies like local ones.
 */

import { frameBinary } from '../sync/socket.ts'

export interface Member {
  /**
   * Sends one frame (a Tandem/y-websocket message) to this member's socket; `wire`, when given, is
   * the same frame already framed as a WebSocket message (`frameBinary`), built once per broadcast.
   */
  send(frame: Uint8Array, wire?: Buffer): void
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
    const wire = this.#members.size > 1 ? frameBinary(frame) : undefined
    for (const member of this.#members) {
      if (member !== except) member.send(frame, wire)
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
