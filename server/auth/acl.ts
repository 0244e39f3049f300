/**
 * Who may do what in a room: the SPEC section 3 precedence, as pure functions over a room's ACL and
 * a session's identity. Run once per session and on every change, never per message.
 *
 * The most specific level wins: a user entry decides alone (so `[]` shuts a user out of a public
 * room); otherwise the union of the session's groups' entries, when any exists; otherwise the
 * room's defaults. A room with no ACL record grants nothing.
 */

import { type Permission, type PermissionBits, toPermissionBits } from '../../protocol/permissions.ts'
import { permissionsForRoom } from '../../protocol/tokens.ts'

export interface RoomAccesses {
  readonly defaultAccesses: readonly Permission[]
  readonly usersAccesses: Readonly<Record<string, readonly Permission[]>>
  readonly groupsAccesses: Readonly<Record<string, readonly Permission[]>>
}

/** Whose permissions are being decided. */
export type Identity =
  | { readonly kind: 'user'; readonly userId: string; readonly groupIds: readonly string[] }
  | { readonly kind: 'anonymous' }
  | { readonly kind: 'access'; readonly perms: Readonly<Record<string, readonly Permission[]>> }
  /** Permissions decided by a custom `authenticate`, whatever the ACL says. */
  | { readonly kind: 'fixed'; readonly permissions: PermissionBits }

const own = (record: Readonly<Record<string, readonly Permission[]>>, key: string): readonly Permission[] | undefined =>
  Object.hasOwn(record, key) ? record[key] : undefined

export const resolvePermissions = (roomId: string, acl: RoomAccesses | null, identity: Identity): PermissionBits => {
  if (identity.kind === 'fixed') return identity.permissions
  if (identity.kind === 'access') {
    // An access token carries its grants; the most specific matching pattern decides alone.
    return toPermissionBits(permissionsForRoom(identity.perms, roomId))
  }
  // Security: a missing ACL record denies; it never reads as "no restriction".
  if (acl === null) return 0
  if (identity.kind === 'anonymous') return toPermissionBits(acl.defaultAccesses)

  const userEntry = own(acl.usersAccesses, identity.userId)
  if (userEntry !== undefined) return toPermissionBits(userEntry)

  let groupBits = 0
  let anyGroup = false
  for (const groupId of identity.groupIds) {
    const entry = own(acl.groupsAccesses, groupId)
    if (entry !== undefined) {
      anyGroup = true
      groupBits |= toPermissionBits(entry)
    }
  }
  return anyGroup ? groupBits : toPermissionBits(acl.defaultAccesses)
}
