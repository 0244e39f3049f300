/**
 * The built-in `authenticate` until tokens are verified: anonymous writers when the server allows
 * anonymous access, and a refusal otherwise. An app plugs its own identity in through the
 * `authenticate` option of createServer.
 */

import { randomUUID } from 'node:crypto'
import { PermissionBit } from '../protocol/permissions.ts'
import type { Authenticate } from './session.ts'

const WRITE = PermissionBit.read | PermissionBit.presence | PermissionBit.write

export const anonymousAuthenticate = (allowAnonymous: boolean): Authenticate => () =>
  allowAnonymous
    ? { actor: { kind: 'anonymous', sessionId: randomUUID() }, permissions: WRITE }
    : { refused: 'unauthorized', reason: 'this server does not accept anonymous clients' }
