/**
 * Access control at run time: computes a session's permissions in a room (ACL precedence, then the
 * app's `authorize` rule), and re-evaluates live sessions when a room's ACL changes, a user is
 * revoked or a room is deleted. This is the only place that turns ACL changes into what connected
 * clients see: `access_changed`, write lost at once, or a close with 4403 / 4404.
 */

import type { FastifyBaseLogger } from 'fastify'
import { CloseCode, TandemError } from '../protocol/errors.ts'
import { type PermissionBits, closePermissionBits } from '../protocol/permissions.ts'
import { resolvePermissions } from './access.ts'
import type { Connection } from './connection.ts'
import type { Authorize, Session } from './session.ts'
import type { RoomStore } from './store/types.ts'

export class AccessControl {
  readonly #store: RoomStore
  readonly #authorize: Authorize | undefined
  readonly #connections: ReadonlySet<Connection>
  readonly #log: FastifyBaseLogger
  #epoch = 0

  constructor(store: RoomStore, authorize: Authorize | undefined, connections: ReadonlySet<Connection>, log: FastifyBaseLogger) {
    this.#store = store
    this.#authorize = authorize
    this.#connections = connections
    this.#log = log
  }

  /**
   * Grows with every access change (ACL update, revocation, deletion). A connection whose
   * permissions were decided before a change it did not see yet (it was still joining) decides again.
   */
  get epoch(): number {
    return this.#epoch
  }

  /** The session's permissions in `roomId`; throws `forbidden` when `authorize` denies. */
  async evaluate(roomId: string, session: Omit<Session, 'permissions'>): Promise<PermissionBits> {
    const record = await this.#store.getRoom(roomId)
    const permissions = closePermissionBits(resolvePermissions(roomId, record, session.identity))
    if (this.#authorize === undefined) return permissions
    const decided = await this.#authorize({ ...session, permissions }, { id: roomId, record })
    // The app's bits are closed under implication too: what the client is told is what is enforced.
    if (typeof decided === 'number') return closePermissionBits(decided)
    throw new TandemError('forbidden', decided.reason)
  }

  /** Re-evaluates every live session in a room after its ACL changed. */
  async roomChanged(roomId: string): Promise<void> {
    this.#epoch++
    await Promise.all(
      [...this.#connections].filter((c) => c.roomId === roomId && c.isOpen).map(async (connection) => {
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

  /** Closes a user's sessions (in one room, or everywhere) and refuses their older tokens. */
  async revoke(userId: string, roomId: string | null): Promise<number> {
    const at = Date.now()
    this.#epoch++
    await this.#store.revoke(userId, roomId, at)
    let closed = 0
    for (const connection of [...this.#connections]) {
      const actor = connection.session?.actor
      if (actor?.kind === 'user' && actor.userId === userId && (roomId === null || connection.roomId === roomId)) {
        connection.end(new TandemError('revoked', 'access revoked'))
        closed++
      }
    }
    // Tokens minted from now on must be newer than the revocation: not in its very millisecond.
    while (Date.now() <= at) await new Promise((resolve) => setTimeout(resolve, 1))
    return closed
  }

  /** Closes every session of a deleted room with 4404. */
  roomDeleted(roomId: string): void {
    this.#epoch++
    for (const connection of [...this.#connections]) {
      if (connection.roomId === roomId) connection.end(new TandemError('room_not_found', 'the room was deleted'), CloseCode.roomDeleted)
    }
  }
}
