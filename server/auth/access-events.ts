/**
 * Access changes as events, for more than one process (issue 14): a process that changes a room's
 * record, revokes or reinstates a user, or deletes a room publishes the change, and every other
 * process applies it to its own live sessions (cluster/control-bus.ts carries them). A single
 * process has no publisher and nothing to apply.
 */

import type { RoomRecord } from '../store/types.ts'

export type AccessEvent =
  | { readonly kind: 'room'; readonly record: RoomRecord }
  | { readonly kind: 'deleted'; readonly roomId: string }
  | { readonly kind: 'revoked'; readonly userId: string; readonly roomId: string | null; readonly at: number }
  | { readonly kind: 'reinstated'; readonly userId: string; readonly roomId: string | null }

export interface AccessPublisher {
  /** Tells the other processes; rejects when it could not (the change is in effect here only). */
  publish(event: AccessEvent): Promise<void>
}
