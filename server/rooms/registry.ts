/**
 * The rooms loaded in this process: each loaded once (concurrent joins share the load), kept while
 * it has members, and unloaded after an idle delay once its writes are stored. A join that arrives
 * while its room is unloading waits for the unload, then loads the room afresh.
 *
 * At most `maxRooms` are loaded (or loading) at once: a room that must load past the cap unloads
 * an idle one first (the one idle longest), and is refused when none is idle.
 */

import { EventEmitter } from 'node:events'
import { TandemError } from '../../protocol/errors.ts'
import { Room, type RoomDeps } from './room.ts'

export interface RegistryEvents {
  /** A room was loaded from the store. */
  loaded: [roomId: string]
  /** A room's writes were stored and it left memory. */
  unloaded: [roomId: string]
}

export class RoomRegistry {
  readonly #rooms = new Map<string, Room>()
  readonly #loading = new Map<string, Promise<Room>>()
  readonly #unloading = new Map<string, Promise<void>>()
  /** Rooms being deleted: joins wait for the deletion, then load what is left (nothing). */
  readonly #deleting = new Map<string, Promise<void>>()
  readonly #idleTimers = new Map<Room, NodeJS.Timeout>()
  readonly #deps: RoomDeps
  readonly #idleUnloadMs: number
  readonly #maxRooms: number
  /** Rooms unloaded early to stay under `maxRooms`. */
  readonly #evicted = new WeakSet<Room>()
  readonly events = new EventEmitter<RegistryEvents>()

  constructor(deps: RoomDeps, idleUnloadMs: number, maxRooms = Infinity) {
    this.#deps = deps
    this.#idleUnloadMs = idleUnloadMs
    this.#maxRooms = maxRooms
    // Out of memory budget: idle rooms go first (never a room with members, whose writers would
    // simply start over once it reloads).
    deps.memory.onPressure = () => void this.unloadIdle()
  }

  /** Unloads every room with no members now, instead of after its idle delay. */
  async unloadIdle(): Promise<void> {
    await Promise.all([...this.#idleTimers.keys()].map((room) => this.#unload(room)))
  }

  get size(): number {
    return this.#rooms.size
  }

  /** The loaded room, if it is (for REST reads and tests; never loads). */
  get(roomId: string): Room | undefined {
    return this.#rooms.get(roomId)
  }

  rooms(): IterableIterator<Room> {
    return this.#rooms.values()
  }

  /**
   * The room, loaded if needed. The caller joins it at once or calls `released` (idle timer).
   * Throws `rate_limited` when the process is at `maxRooms` with no idle room to unload.
   */
  async acquire(roomId: string): Promise<Room> {
    for (;;) {
      const unloading = this.#deleting.get(roomId) ?? this.#unloading.get(roomId)
      if (unloading !== undefined) {
        await unloading.catch(() => undefined)
        continue
      }
      const loaded = this.#rooms.get(roomId)
      if (loaded !== undefined) {
        this.#cancelIdle(loaded)
        return loaded
      }
      if (this.#loading.has(roomId) || this.#rooms.size + this.#loading.size < this.#maxRooms) break
      // Idle timers are set in the order rooms went idle: the first is the one idle longest.
      const idle = this.#idleTimers.keys().next()
      // rate_limited is the code that means "not now, try later" (429 over REST); a socket is
      // closed with 1013 instead of its 4529, since this client sent nothing wrong (connection.ts).
      if (idle.done === true) throw new TandemError('rate_limited', `this server has ${this.#maxRooms} rooms open; try again later`)
      this.#evicted.add(idle.value)
      await this.#unload(idle.value)
    }
    let loading = this.#loading.get(roomId)
    if (loading === undefined) {
      loading = this.#load(roomId).then(
        (room) => {
          this.#loading.delete(roomId)
          this.#rooms.set(roomId, room)
          this.#deps.metrics.roomsLoaded.set(this.#rooms.size)
          this.events.emit('loaded', roomId)
          // Loaded for a join that may never come (the socket closed meanwhile): start idle.
          this.released(room)
          return room
        },
        (err: unknown) => {
          this.#loading.delete(roomId)
          throw err
        },
      )
      this.#loading.set(roomId, loading)
    }
    const room = await loading
    // Unloaded for another room (at the cap) before this join came back to it: load it again.
    if (this.#evicted.has(room)) return this.acquire(roomId)
    this.#cancelIdle(room)
    return room
  }

  /** Loads a room; past the memory budget, once more after the idle rooms were unloaded. */
  async #load(roomId: string): Promise<Room> {
    try {
      return await Room.load(roomId, this.#deps)
    } catch (err) {
      if (!(err instanceof TandemError && err.code === 'unavailable') || this.#idleTimers.size === 0) throw err
      await this.unloadIdle()
      return Room.load(roomId, this.#deps)
    }
  }

  /** Starts the idle countdown of a room that has no members. */
  released(room: Room): void {
    if (room.size > 0 || this.#idleTimers.has(room) || this.#rooms.get(room.id) !== room) return
    const timer = setTimeout(() => {
      this.#idleTimers.delete(room)
      if (room.size === 0) void this.#unload(room)
    }, this.#idleUnloadMs)
    timer.unref()
    this.#idleTimers.set(room, timer)
  }

  /** Marks every room as going: a failing store gets a few more tries, then is given up on. */
  shuttingDown(): void {
    for (const room of this.#rooms.values()) room.closing()
  }

  /** Stores every room's pending writes. */
  async flushAll(): Promise<void> {
    await Promise.all([...this.#rooms.values()].map((room) => room.flush()))
  }

  /** Flushes and unloads every room (shutdown). */
  async closeAll(): Promise<void> {
    await Promise.all([...this.#loading.values()].map((p) => p.catch(() => undefined)))
    await Promise.all([...this.#rooms.values()].map((room) => this.#unload(room)))
    await Promise.all(this.#unloading.values())
  }

  /**
   * Deletes a room: drops it from memory without storing anything more, then runs `erase` (the
   * store's deletion). Joins that arrive meanwhile wait until both are done, so nothing of the
   * deleted room is served or stored again.
   */
  delete(roomId: string, erase: () => Promise<void>): Promise<void> {
    const deleting = this.#discard(roomId)
      .then(erase)
      .finally(() => this.#deleting.delete(roomId))
    this.#deleting.set(roomId, deleting)
    return deleting
  }

  async #discard(roomId: string): Promise<void> {
    await this.#loading.get(roomId)?.catch(() => undefined)
    await this.#unloading.get(roomId)
    const room = this.#rooms.get(roomId)
    if (room === undefined) return
    // A join whose load just finished gets this room back from `acquire`: it must load again.
    this.#evicted.add(room)
    this.#cancelIdle(room)
    this.#rooms.delete(roomId)
    this.#deps.metrics.roomsLoaded.set(this.#rooms.size)
    await room.discard()
    this.events.emit('unloaded', roomId)
  }

  #cancelIdle(room: Room): void {
    const timer = this.#idleTimers.get(room)
    if (timer !== undefined) {
      clearTimeout(timer)
      this.#idleTimers.delete(room)
    }
  }

  #unload(room: Room): Promise<void> {
    const pending = this.#unloading.get(room.id)
    if (pending !== undefined) return pending
    this.#cancelIdle(room)
    this.#rooms.delete(room.id)
    this.#deps.metrics.roomsLoaded.set(this.#rooms.size)
    const unloading = room
      .close()
      .catch((err: unknown) => this.#deps.log.error({ err, roomId: room.id }, 'unloading room failed'))
      .finally(() => {
        this.#unloading.delete(room.id)
        this.events.emit('unloaded', room.id)
      })
    this.#unloading.set(room.id, unloading)
    return unloading
  }
}
