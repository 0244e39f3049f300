/** How a connection's frames reach its client: a socket of its own, or its document on a shared one. */

import type { SharedFrame } from '../rooms/fanout.ts'

export interface Transport {
  send(frame: Uint8Array, shared?: SharedFrame): void
  /** Ends this connection: its socket, or its document on a socket shared by several. */
  close(code: number, reason: string): void
  /** Counts bytes sent on request against the client's budget; false past it. */
  takeOutbound(bytes: number): boolean
  /** Counts an update's estimated integration work against the client's budget; false past it. */
  takeIntegration(steps: number): boolean
}
