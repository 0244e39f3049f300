/**
 * Access control at run time: computes a session's permissions in a room (ACL precedence, then the
 * app's `authorize` rule), and re-evaluates live sessions when a room's ACL changes, a user is
 * revoked or a room is deleted. This is the only place that turns ACL changes into what connected
 * clients see: `access_changed`, write lost at once, or a close with 4403 / 4404.
 */

import type { FastifyBaseLogger } from 'fastify'
import { CloseCode, TandemError } from '../../protocol/errors.ts'
import { type PermissionBits, canRead, closePermissionBits } from '../../protocol/permissions.ts'
import { matchingPattern } from '../../protocol/tokens.ts'
import { type Identity, resolvePermissions } from './acl.ts'
import type { AccessEvent, AccessPublisher } from './access-events.ts'
import type { PendingAccess } from './pending-access.ts'
import type { KeyedSerial } from '../keyed-serial.ts'
import type { Authorize, LiveSession, Session } from './session.ts'
import type { RoomRecord, RoomStore } from '../store/types.ts'

export interface AccessControlDeps {
  readonly store: RoomStore
  /** Changes in effect that the store has not taken yet (shared with the authenticator and REST). */
  readonly pending: PendingAccess
  readonly authorize: Authorize | undefined
  readonly connections: Iterable<LiveSession>
  readonly log: FastifyBaseLogger
  /** Serialises changes to one room's record (shared with the REST routes). */
  readonly serial: KeyedSerial
  /** Tells other processes of access changes (the distributed mode); absent on one process. */
  readonly publisher?: AccessPublisher
  readonly accessTokenRoomsPerPattern: number
}

export class AccessControl {
  readonly #serial: KeyedSerial
  readonly #roomsPerPattern: number
  readonly #store: RoomStore
  readonly #pending: PendingAccess
  readonly #publisher: AccessPublisher | undefined
  readonly #authorize: Authorize | undefined
  readonly #connections: Iterable<LiveSession>
  readonly #log: FastifyBaseLogger
  #epoch = 0

  constructor(deps: AccessControlDeps) {
    this.#store = deps.store
    this.#pending = deps.pending
    this.#publisher = deps.publisher
    this.#authorize = deps.authorize
    this.#connections = deps.connections
    this.#log = deps.log
    this.#serial = deps.serial
    this.#roomsPerPattern = deps.accessTokenRoomsPerPattern
  }

  /**
   * Grows with every access change (ACL update, revocation, deletion). A connection whose
   * permissions were decided before a change it did not see yet (it was still joining) decides again.
   */
  get epoch(): number {
    return this.#epoch
  }

  /**
   * The session's permissions in `roomId`; throws `forbidden` when `authorize` denies. With `join`,
   * a room with no record that the session may read through its own grants (an access token, or a
   * custom `authenticate`'s fixed permissions) gets its record now, as Liveblocks creates a room on
   * first access: every room that holds a document is listed, readable and deletable over REST.
   */
  async evaluate(roomId: string, session: Omit<Session, 'permissions'>, options: { join?: boolean } = {}): Promise<PermissionBits> {
    if (this.unavailable !== null) throw new TandemError('unavailable', this.unavailable)
    const record = await this.#pending.getRoom(roomId)
    const permissions = await this.#decide(roomId, record, session)
    if (options.join === true && record === null && canRead(permissions) && session.identity.kind !== 'user' && session.identity.kind !== 'anonymous') {
      await this.#createOnFirstJoin(roomId, session.identity)
    }
    return permissions
  }

  async #decide(roomId: string, record: RoomRecord | null, session: Omit<Session, 'permissions'>): Promise<PermissionBits> {
    const permissions = closePermissionBits(resolvePermissions(roomId, record, session.identity))
    if (this.#authorize === undefined) return permissions
    const decided = await this.#authorize({ ...session, permissions }, { id: roomId, record })
    // The app's bits are closed under implication too: what the client is told is what is enforced.
    if (typeof decided === 'number') return closePermissionBits(decided)
    throw new TandemError('forbidden', decided.reason)
  }

  /**
   * Creates the record of a room first joined through grants that need none: no ACL entries, so
   * only such grants let anyone in until the backend sets some. Serialised with the REST routes of
   * that room. An access token's prefix pattern may create at most `accessTokenRoomsPerPattern`
   * rooms under its prefix (counting every room there).
   */
  async #createOnFirstJoin(roomId: string, identity: Extract<Identity, { kind: 'access' | 'fixed' }>): Promise<void> {
    const pattern = identity.kind === 'access' ? matchingPattern(identity.perms, roomId) : null
    await this.#serial.run(roomId, async () => {
      if ((await this.#pending.getRoom(roomId)) !== null) return
      if (pattern?.endsWith('*')) {
        const prefix = pattern.slice(0, -1)
        const quota = this.#roomsPerPattern
        if ((await this.#store.countRooms(prefix, quota)) >= quota) {
          throw new TandemError('forbidden', `the pattern "${pattern}" has its quota of ${quota} rooms; ask the backend to create this one`)
        }
      }
      const now = new Date().toISOString()
      await this.#store.putRoom({ id: roomId, defaultAccesses: [], usersAccesses: {}, groupsAccesses: {}, metadata: {}, createdAt: now, updatedAt: now })
    })
  }

  /**
   * Puts a room's record in effect: live sessions are re-evaluated against it, then it is stored.
   * When the store fails, the change stays in effect (held in memory, retried) and this throws
   * `unavailable` saying so: a downgrade acts on live sessions whatever the disk does.
   */
  async applyRecord(record: RoomRecord): Promise<void> {
    const stored = this.#pending.putRoom(record)
    const published = this.#publish({ kind: 'room', record })
    await this.roomChanged(record.id)
    if (!(await stored)) {
      throw new TandemError(
        'unavailable',
        'the change is in effect for live sessions and new joins, but the store did not take it (a restart would forget it); retry',
      )
    }
    await this.#told(published)
  }

  /** Re-evaluates every live session in a room after its ACL changed. */
  async roomChanged(roomId: string): Promise<void> {
    this.#epoch++
    await Promise.all(
      [...this.#connections]
        .filter((c) => c.roomId === roomId && c.isOpen)
        .map(async (connection) => {
          const session = connection.session!
          try {
            connection.setPermissions(await this.evaluate(roomId, session))
          } catch (err) {
            this.#log.debug({ err, connectionId: connection.id }, 'access re-evaluation refused the session')
            connection.end(err instanceof TandemError ? err : new TandemError('server_error', 'access re-evaluation failed'))
          }
        }),
    )
  }

  /**
   * Closes a user's sessions (in one room, or everywhere) and refuses their older tokens. In effect
   * before it is stored: when the store fails, the sessions are closed and the user kept out all the
   * same, and this throws `unavailable` saying the revocation is not stored.
   */
  async revoke(userId: string, roomId: string | null): Promise<number> {
    const at = Date.now()
    const stored = this.#pending.revoke(userId, roomId, at)
    const published = this.#publish({ kind: 'revoked', userId, roomId, at })
    const closed = this.#closeSessionsOf(userId, roomId)
    if (!(await stored)) {
      throw new TandemError(
        'unavailable',
        `${closed} sessions were closed and the user is kept out, but the store did not take the revocation (a restart would forget it); retry`,
      )
    }
    await this.#told(published)
    return closed
  }

  #closeSessionsOf(userId: string, roomId: string | null): number {
    this.#epoch++
    let closed = 0
    for (const connection of [...this.#connections]) {
      const actor = connection.session?.actor
      if (actor?.kind === 'user' && actor.userId === userId && (roomId === null || connection.roomId === roomId)) {
        connection.end(new TandemError('revoked', 'access revoked'))
        closed++
      }
    }
    return closed
  }

  /** Lifts a revocation; says whether there was one. Sessions are not told: they are already closed. */
  async reinstate(userId: string, roomId: string | null): Promise<boolean> {
    const reinstated = await this.#pending.reinstate(userId, roomId)
    await this.#told(this.#publish({ kind: 'reinstated', userId, roomId }))
    return reinstated
  }

  /** The room's records are gone from the store: the other processes close its sessions and drop it. */
  async deleted(roomId: string): Promise<void> {
    await this.#told(this.#publish({ kind: 'deleted', roomId }))
  }

  /**
   * Applies a change another process made (and stored): held here ahead of the store's copy, and
   * acted on at once, as that process did. A deletion is the cluster's to finish (it drops the room).
   */
  async applyRemote(event: AccessEvent): Promise<void> {
    switch (event.kind) {
      case 'room':
        this.#pending.hold(event.record)
        await this.roomChanged(event.record.id)
        return
      case 'revoked':
        this.#pending.holdRevocation(event.userId, event.roomId, event.at)
        this.#closeSessionsOf(event.userId, event.roomId)
        return
      case 'reinstated':
        this.#pending.forgetRevocation(event.userId, event.roomId)
        return
      case 'deleted':
        this.#pending.forgetRoom(event.roomId)
        this.roomDeleted(event.roomId)
        return
      default: {
        const unreachable: never = event
        return unreachable
      }
    }
  }

  /**
   * While set, no session is admitted (`unavailable`, try later): this process cannot hear the
   * other processes' access changes (fail closed), the cluster decides.
   */
  unavailable: string | null = null

  #publish(event: AccessEvent): Promise<boolean> {
    if (this.#publisher === undefined) return Promise.resolve(true)
    return this.#publisher.publish(event).then(
      () => true,
      (err: unknown) => {
        this.#log.error({ err, event: event.kind }, 'access change not told to the other processes')
        return false
      },
    )
  }

  async #told(published: Promise<boolean>): Promise<void> {
    if (!(await published)) {
      throw new TandemError('unavailable', 'the change is stored and in effect on this process, but the other processes could not be told; retry')
    }
  }

  /** Closes every session of a room being deleted with 4404; joins being decided decide again. */
  roomDeleted(roomId: string): void {
    this.#epoch++
    for (const connection of [...this.#connections]) {
      if (connection.roomId === roomId) connection.end(new TandemError('room_not_found', 'the room was deleted'), CloseCode.roomDeleted)
    }
  }

  /**
   * Says that access changed without naming a session to re-evaluate (a room's records are gone):
   * joins whose permissions were decided before decide again.
   */
  changed(): void {
    this.#epoch++
  }
}
