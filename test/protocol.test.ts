/**
 * protocol/: every message round-trips through its write/read pair, and anything else is
 * malformed_message, except a server message type a client does not know (decoded as unknown).
 */

import * as encoding from 'lib0/encoding'
import { describe, expect, it } from 'vitest'
import { readAwarenessUpdate, writeAwarenessUpdate } from '../protocol/awareness.ts'
import { CloseCode, ERROR_CODES, ERROR_TABLE, TandemError, isFinalCloseCode } from '../protocol/errors.ts'
import {
  type ClientMessage,
  type ServerMessage,
  decodeClientMessage,
  decodeServerMessage,
  encodeFrame,
  writeAccessChanged,
  writeAuth,
  writeAuthenticated,
  writeAwareness,
  writeError,
  writePermissionDenied,
  writeQueryAwareness,
  writeSaved,
  writeSyncStep1,
  writeSyncStep2,
  writeUpdate,
} from '../protocol/messages.ts'
import { PermissionBit, fromPermissionBits, toPermissionBits } from '../protocol/permissions.ts'

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b)
const codeOf = (run: () => unknown): string | undefined => {
  try {
    run()
  } catch (err) {
    return err instanceof TandemError ? err.code : `not a TandemError: ${String(err)}`
  }
  return undefined
}

describe('client messages', () => {
  const cases: [string, Uint8Array, ClientMessage][] = [
    ['sync step 1', encodeFrame(writeSyncStep1, bytes(1, 2)), { kind: 'sync-step-1', stateVector: bytes(1, 2) }],
    ['sync step 2', encodeFrame(writeSyncStep2, bytes(0, 0)), { kind: 'sync-step-2', update: bytes(0, 0) }],
    ['update', encodeFrame(writeUpdate, bytes(9)), { kind: 'update', update: bytes(9) }],
    ['awareness', encodeFrame(writeAwareness, bytes(0)), { kind: 'awareness', update: bytes(0) }],
    ['query awareness', encodeFrame(writeQueryAwareness), { kind: 'query-awareness' }],
    ['auth with token', encodeFrame(writeAuth, 'tok.en'), { kind: 'auth', version: 1, token: 'tok.en' }],
    ['auth without token', encodeFrame(writeAuth, null), { kind: 'auth', version: 1, token: null }],
  ]
  it.each(cases)('%s round-trips', (_name, frame, message) => {
    expect(decodeClientMessage(frame)).toEqual(message)
  })

  it('keeps the y-websocket byte layout', () => {
    expect(Array.from(encodeFrame(writeSyncStep1, bytes(7)))).toEqual([0, 0, 1, 7])
    expect(Array.from(encodeFrame(writeUpdate, bytes(7, 8)))).toEqual([0, 2, 2, 7, 8])
    expect(Array.from(encodeFrame(writeQueryAwareness))).toEqual([3])
  })

  it.each([
    ['empty frame', bytes()],
    ['truncated varUint', bytes(0x80)],
    ['truncated sync type', bytes(0, 0x80)],
    ['payload longer than the frame', bytes(0, 2, 5, 1)],
    ['trailing bytes', bytes(0, 2, 1, 7, 7)],
    ['unknown message type', bytes(99)],
    ['unknown sync type', bytes(0, 3, 0)],
    ['server-only type from a client', encodeFrame(writeSaved, 1)],
    ['y-protocols auth from a client', encodeFrame(writePermissionDenied, 'x')],
  ])('%s is malformed_message', (_name, frame) => {
    expect(codeOf(() => decodeClientMessage(frame))).toBe('malformed_message')
  })
})

describe('server messages', () => {
  const identity = { connectionId: 'c1', actor: { kind: 'anonymous', sessionId: 's' }, info: { name: 'Ada' }, permissions: 7, expiresAt: 1_800_000_000_000 }
  const cases: [string, Uint8Array, ServerMessage][] = [
    ['authenticated', encodeFrame(writeAuthenticated, identity), { kind: 'authenticated', version: 1, identity }],
    [
      'authenticated without expiry',
      encodeFrame(writeAuthenticated, { ...identity, expiresAt: null }),
      { kind: 'authenticated', version: 1, identity: { ...identity, expiresAt: null } },
    ],
    ['access changed', encodeFrame(writeAccessChanged, 3), { kind: 'access-changed', permissions: 3 }],
    ['error', encodeFrame(writeError, 'read_only', 'no'), { kind: 'error', code: 'read_only', message: 'no' }],
    ['saved', encodeFrame(writeSaved, 300), { kind: 'saved', count: 300 }],
    ['permission denied', encodeFrame(writePermissionDenied, 'why'), { kind: 'permission-denied', reason: 'why' }],
  ]
  it.each(cases)('%s round-trips', (_name, frame, message) => {
    expect(decodeServerMessage(frame)).toEqual(message)
  })

  it('reports an error code from a newer server as server_error, keeping the original', () => {
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, 35)
    encoding.writeVarString(encoder, 'brand_new_code')
    encoding.writeVarString(encoder, 'details')
    expect(decodeServerMessage(encoding.toUint8Array(encoder))).toEqual({ kind: 'error', code: 'server_error', message: 'brand_new_code: details' })
  })

  it('closes permission bits under implication when reading them', () => {
    expect(decodeServerMessage(encodeFrame(writeAccessChanged, 4))).toEqual({ kind: 'access-changed', permissions: 7 })
  })

  // PROTOCOL.md, "Versioning": a newer server's type is skipped whole, whatever its payload.
  const typeOnly = (type: number, ...payload: number[]): Uint8Array => {
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, type)
    for (const b of payload) encoding.writeUint8(encoder, b)
    return encoding.toUint8Array(encoder)
  }
  it.each([
    ['an unknown type alone', typeOnly(99), 99],
    ['an unknown type with a payload', typeOnly(99, 3, 1, 2, 3), 99],
    ['an unknown type with a payload that would be truncated as any known one', typeOnly(37, 0x80), 37],
    ['an unknown multi-byte type number', typeOnly(300, 0), 300],
  ])('%s decodes as unknown', (_name, frame, type) => {
    expect(decodeServerMessage(frame)).toEqual({ kind: 'unknown', type })
  })

  // Only the type number may be new: the rest stays as strict as a client's messages.
  it.each([
    ['empty frame', bytes()],
    ['truncated type', bytes(0x80)],
    ['truncated known message', bytes(36, 0x80)],
    ['known message with a payload longer than the frame', bytes(0, 1, 5, 1)],
    ['trailing bytes after a known message', Uint8Array.from([...encodeFrame(writeSaved, 1), 0])],
    ['unknown sync type', bytes(0, 3, 0)],
    ['unknown y-protocols auth sub-type', bytes(2, 1, 0)],
    ['client-only type from a server: auth', encodeFrame(writeAuth, 'tok')],
    ['client-only type from a server: query awareness', encodeFrame(writeQueryAwareness)],
  ])('%s is malformed_message', (_name, frame) => {
    expect(codeOf(() => decodeServerMessage(frame))).toBe('malformed_message')
  })
})

describe('awareness payload', () => {
  it('round-trips entries, removals included', () => {
    const entries = [
      { clientID: 1, clock: 0, state: '{"user":{"name":"Ada"}}' },
      { clientID: 2 ** 31, clock: 12, state: 'null' },
    ]
    expect(readAwarenessUpdate(writeAwarenessUpdate(entries))).toEqual(entries)
  })

  it.each([
    ['truncated', writeAwarenessUpdate([{ clientID: 1, clock: 1, state: '{}' }]).subarray(0, 4)],
    ['count beyond the bytes', bytes(200, 1)],
    ['trailing bytes', Uint8Array.from([...writeAwarenessUpdate([]), 1])],
  ])('%s is malformed_message', (_name, update) => {
    expect(codeOf(() => readAwarenessUpdate(update))).toBe('malformed_message')
  })
})

describe('codes and permissions', () => {
  it('maps every error code to an HTTP status, and closing codes to SPEC close codes', () => {
    for (const code of ERROR_CODES) expect(ERROR_TABLE[code].status).toBeGreaterThanOrEqual(400)
    expect(ERROR_TABLE.malformed_message.close).toBe(4400)
    expect(ERROR_TABLE.unauthorized.close).toBe(4401)
    expect(ERROR_TABLE.revoked.close).toBe(4403)
    expect(ERROR_TABLE.room_not_found.close).toBe(4404)
    expect(ERROR_TABLE.message_too_large.close).toBe(4413)
    expect(ERROR_TABLE.rate_limited.close).toBe(4529)
    expect(ERROR_TABLE.read_only.close).toBeNull()
  })

  it('treats 44xx as final and the rest as transient', () => {
    expect(isFinalCloseCode(CloseCode.forbidden)).toBe(true)
    expect(isFinalCloseCode(CloseCode.authTimeout)).toBe(true)
    expect(isFinalCloseCode(CloseCode.rateLimited)).toBe(false)
    expect(isFinalCloseCode(CloseCode.serverRestarting)).toBe(false)
  })

  it('expands permissions by implication', () => {
    expect(toPermissionBits(['room:write'])).toBe(PermissionBit.read | PermissionBit.presence | PermissionBit.write)
    expect(toPermissionBits(['room:presence:write'])).toBe(PermissionBit.read | PermissionBit.presence)
    expect(toPermissionBits([])).toBe(0)
    expect(fromPermissionBits(toPermissionBits(['room:read']))).toEqual(['room:read'])
    expect(fromPermissionBits(7)).toEqual(['room:write', 'room:presence:write', 'room:read'])
  })
})
