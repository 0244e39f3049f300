/**
 * Room records and revocations in effect before the store has them. Access changes must act on
 * live sessions and on new joins even when persisting them fails (a full disk): a revocation that
 * could not be written must still keep the user out. So a change is held here first, used by every
 * access decision, written through to the store, and retried until the store takes it; what the
 * store could not take yet is lost on a restart, which the REST answer says.
 */

import type { FastifyBaseLogger } from 'fastify'
import type { RoomRecord, RoomStore } from '../store/types.ts'

const RETRY_MS = 2_000
/** Changes from other processes held at most (the oldest go: by then the store has them). */
const MAX_HELD = 10_000

const revocationKey = (userId: string, roomId: string | null): string => `${userId}\u0000${roomId ?? ''}`

export class PendingAccess {
  readonly #store: RoomStore
  readonly #log: FastifyBaseLogger
  readonly #records = new Map<string, RoomRecord>()
  readonly #revocations = new Map<string, { userId: string; roomId: string | null; at: number }>()
  /** What other processes changed (they store it): the newest known, ahead of the store's copy. */
  readonly #held = new Map<string, RoomRecord>()
  readonly #heldRevocations = new Map<string, number>()
  #retry: NodeJS.Timeout | null = null

  constructor(store: RoomStore, log: FastifyBaseLogger) {
    this.#store = store
    this.#log = log
  }

  /** The room's record as in effect: a change not stored yet wins. */
  async getRoom(roomId: string): Promise<RoomRecord | null> {
    return this.#records.get(roomId) ?? this.#held.get(roomId) ?? (await this.#store.getRoom(roomId))
  }

  /** In effect at once; says whether the store has it too. */
  async putRoom(record: RoomRecord): Promise<boolean> {
    this.#records.set(record.id, record)
    return this.#persistRecord(record)
  }

  /** The latest revocation of the user that applies to the room, stored or not (a failing read throws: fail closed). */
  async revokedAt(userId: string, roomId: string): Promise<number> {
    const held = Math.max(
      this.#revocations.get(revocationKey(userId, null))?.at ?? 0,
      this.#revocations.get(revocationKey(userId, roomId))?.at ?? 0,
      this.#heldRevocations.get(revocationKey(userId, null)) ?? 0,
      this.#heldRevocations.get(revocationKey(userId, roomId)) ?? 0,
    )
    return Math.max(held, await this.#store.revokedAt(userId, roomId))
  }

  /** In effect at once; says whether the store has it too. */
  async revoke(userId: string, roomId: string | null, at: number): Promise<boolean> {
    const revocation = { userId, roomId, at }
    this.#revocations.set(revocationKey(userId, roomId), revocation)
    return this.#persistRevocation(revocation)
  }

  async reinstate(userId: string, roomId: string | null): Promise<boolean> {
    const held = this.#revocations.delete(revocationKey(userId, roomId))
    this.#heldRevocations.delete(revocationKey(userId, roomId))
    return (await this.#store.reinstate(userId, roomId)) || held
  }

  /** Another process changed the record (it stores it): in effect here at once, not written again. */
  hold(record: RoomRecord): void {
    this.#held.set(record.id, record)
    if (this.#held.size > MAX_HELD) this.#held.delete(this.#held.keys().next().value!)
  }

  /** Another process revoked the user (it stores the revocation): in effect here at once. */
  holdRevocation(userId: string, roomId: string | null, at: number): void {
    const key = revocationKey(userId, roomId)
    this.#heldRevocations.set(key, Math.max(at, this.#heldRevocations.get(key) ?? 0))
    if (this.#heldRevocations.size > MAX_HELD) this.#heldRevocations.delete(this.#heldRevocations.keys().next().value!)
  }

  /** Another process reinstated the user. */
  forgetRevocation(userId: string, roomId: string | null): void {
    this.#heldRevocations.delete(revocationKey(userId, roomId))
    this.#revocations.delete(revocationKey(userId, roomId))
  }

  /** The room was deleted: a record held for it is gone too. */
  forgetRoom(roomId: string): void {
    this.#records.delete(roomId)
    this.#held.delete(roomId)
  }

  /** The store can write again: what it could not take goes now. */
  retryNow(): void {
    if (this.#retry === null) return
    clearTimeout(this.#retry)
    this.#retry = null
    this.#persistAll()
  }

  close(): void {
    if (this.#retry !== null) clearTimeout(this.#retry)
    this.#retry = null
  }

  async #persistRecord(record: RoomRecord): Promise<boolean> {
    try {
      await this.#store.putRoom(record)
      if (this.#records.get(record.id) === record) this.#records.delete(record.id)
      return true
    } catch (err) {
      this.#log.error({ err, roomId: record.id }, 'room record not stored; in effect, retried')
      this.#scheduleRetry()
      return false
    }
  }

  async #persistRevocation(revocation: { userId: string; roomId: string | null; at: number }): Promise<boolean> {
    const key = revocationKey(revocation.userId, revocation.roomId)
    try {
      await this.#store.revoke(revocation.userId, revocation.roomId, revocation.at)
      if (this.#revocations.get(key) === revocation) this.#revocations.delete(key)
      return true
    } catch (err) {
      this.#log.error({ err, userId: revocation.userId }, 'revocation not stored; in effect, retried')
      this.#scheduleRetry()
      return false
    }
  }

  #persistAll(): void {
    for (const record of [...this.#records.values()]) void this.#persistRecord(record)
    for (const revocation of [...this.#revocations.values()]) void this.#persistRevocation(revocation)
  }

  #scheduleRetry(): void {
    if (this.#retry !== null) return
    this.#retry = setTimeout(() => {
      this.#retry = null
      this.#persistAll()
    }, RETRY_MS)
    this.#retry.unref()
  }
}
