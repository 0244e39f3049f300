/** Everything both sides of the wire share. No Node-only or browser-only imports. */

export * from './errors.ts'
export * from './permissions.ts'
export * from './messages.ts'
export * from './awareness.ts'
export * from './tokens.ts'
export * from './mint.ts'
export * from './ids.ts'
export * from './actor.ts'
