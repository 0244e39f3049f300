/**
 * Permission names (SPEC section 3) and their compact form: a bit set where each level includes the
 * ones below it. The server computes a session's bits once (on auth, on access change) and the
 * per-message check is one AND.
 */

export const PERMISSIONS = ['room:read', 'room:presence:write', 'room:write'] as const
export type Permission = (typeof PERMISSIONS)[number]

export const PermissionBit = {
  read: 1,
  presence: 2,
  write: 4,
} as const

/** A set of PermissionBit flags, always closed under implication (write ⊃ presence ⊃ read). */
export type PermissionBits = number

const IMPLIED: Readonly<Record<Permission, PermissionBits>> = {
  'room:read': PermissionBit.read,
  'room:presence:write': PermissionBit.read | PermissionBit.presence,
  'room:write': PermissionBit.read | PermissionBit.presence | PermissionBit.write,
}

const permissionSet: ReadonlySet<string> = new Set(PERMISSIONS)

export const isPermission = (value: unknown): value is Permission => typeof value === 'string' && permissionSet.has(value)

/** The bits a list of permissions grants, implications included. An empty list grants nothing. */
export const toPermissionBits = (permissions: readonly Permission[]): PermissionBits => {
  let bits = 0
  for (const p of permissions) bits |= IMPLIED[p]
  return bits
}

/** The permission names a bit set grants, strongest first, implications spelled out. */
export const fromPermissionBits = (bits: PermissionBits): Permission[] => {
  const out: Permission[] = []
  if (bits & PermissionBit.write) out.push('room:write')
  if (bits & PermissionBit.presence) out.push('room:presence:write')
  if (bits & PermissionBit.read) out.push('room:read')
  return out
}

/** Normalises raw bits read off the wire so they are closed under implication. */
export const closePermissionBits = (bits: PermissionBits): PermissionBits => {
  let out = bits & 7
  if (out & PermissionBit.write) out |= PermissionBit.presence
  if (out & PermissionBit.presence) out |= PermissionBit.read
  return out
}

export const canRead = (bits: PermissionBits): boolean => (bits & PermissionBit.read) !== 0
export const canWritePresence = (bits: PermissionBits): boolean => (bits & PermissionBit.presence) !== 0
export const canWrite = (bits: PermissionBits): boolean => (bits & PermissionBit.write) !== 0
