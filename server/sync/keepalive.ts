/** An awareness update with no entries: every client ignores it, and it keeps quiet sockets alive. */

import { writeAwarenessUpdate } from '../../protocol/awareness.ts'
import { encodeFrame, writeAwareness } from '../../protocol/messages.ts'

export const KEEPALIVE_FRAME = encodeFrame(writeAwareness, writeAwarenessUpdate([]))

/** The answer to query-awareness in a room with no presence: the same empty update. */
export const EMPTY_AWARENESS_FRAME = KEEPALIVE_FRAME
