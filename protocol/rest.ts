/**
 * The REST API's shapes (SPEC section 4), defined once as JSON schemas: the server validates
 * requests and serialises responses with them (a response schema also keeps fields from leaking),
 * and their TypeScript types are derived from them (json-schema-to-ts), for the route handlers and
 * for `TandemAdmin` alike. Pure data: no I/O, nothing Node-only; types only reach the browser.
 */

import type { FromSchema } from 'json-schema-to-ts'
import { ACTOR_SCHEMA } from './actor.ts'
import { ERROR_CODES } from './errors.ts'
import { ID_SCHEMA } from './ids.ts'
import { PERMISSIONS } from './permissions.ts'

const id = ID_SCHEMA

export const permissionList = {
  type: 'array',
  items: { type: 'string', enum: [...PERMISSIONS] },
  uniqueItems: true,
  maxItems: PERMISSIONS.length,
} as const

const accessMap = {
  type: 'object',
  propertyNames: id,
  additionalProperties: permissionList,
  maxProperties: 10_000,
} as const

/** In an update, `null` removes an entry. */
const accessPatch = {
  type: 'object',
  propertyNames: id,
  // null first: Fastify's Ajv coerces types, and would turn null into the first type that takes it.
  additionalProperties: { anyOf: [{ type: 'null' }, permissionList] },
  maxProperties: 10_000,
} as const

const metadataValue = {
  anyOf: [
    { type: 'string', maxLength: 4096 },
    { type: 'array', items: { type: 'string', maxLength: 4096 }, maxItems: 100 },
  ],
} as const
const metadata = {
  type: 'object',
  propertyNames: { type: 'string', minLength: 1, maxLength: 128 },
  additionalProperties: metadataValue,
  maxProperties: 100,
} as const
const metadataPatch = {
  type: 'object',
  propertyNames: { type: 'string', minLength: 1, maxLength: 128 },
  additionalProperties: { anyOf: [{ type: 'null' }, ...metadataValue.anyOf] },
  maxProperties: 100,
} as const

export const errorBody = {
  type: 'object',
  properties: { error: { type: 'string', enum: [...ERROR_CODES] }, message: { type: 'string' } },
  required: ['error', 'message'],
} as const

export const roomRecord = {
  type: 'object',
  properties: {
    id,
    defaultAccesses: permissionList,
    usersAccesses: accessMap,
    groupsAccesses: accessMap,
    metadata,
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' },
  },
  required: ['id', 'defaultAccesses', 'usersAccesses', 'groupsAccesses', 'metadata', 'createdAt', 'updatedAt'],
  additionalProperties: false,
} as const

export const createRoomBody = {
  type: 'object',
  properties: { id, defaultAccesses: permissionList, usersAccesses: accessMap, groupsAccesses: accessMap, metadata },
  required: ['id', 'defaultAccesses'],
  additionalProperties: false,
} as const

export const updateRoomBody = {
  type: 'object',
  properties: { defaultAccesses: permissionList, usersAccesses: accessPatch, groupsAccesses: accessPatch, metadata: metadataPatch },
  additionalProperties: false,
} as const

export const roomParams = { type: 'object', properties: { roomId: id }, required: ['roomId'] } as const

export const roomList = {
  type: 'object',
  properties: { data: { type: 'array', items: roomRecord }, nextCursor: { type: ['string', 'null'] } },
  required: ['data', 'nextCursor'],
  additionalProperties: false,
} as const

export const listRoomsQuery = {
  type: 'object',
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 100, default: 20 },
    startingAfter: id,
    prefix: { type: 'string', maxLength: 256 },
  },
  additionalProperties: false,
} as const

const actor = ACTOR_SCHEMA

/** `{ data: [item, ...] }`, the shape of list responses. */
const listOf = <T extends object>(item: T) => ({ type: 'object', properties: { data: { type: 'array', items: item } }, required: ['data'] }) as const

export const historyResponse = listOf({
  type: 'object',
  properties: {
    actor,
    at: { type: 'string', format: 'date-time' },
    writes: { type: 'integer' },
    bytes: { type: 'integer' },
    clientIDs: { type: 'array', items: { type: 'integer' } },
  },
  required: ['actor', 'at', 'writes', 'bytes', 'clientIDs'],
} as const)

export const activeUsersResponse = listOf({
  type: 'object',
  properties: {
    connectionId: { type: 'string' },
    userId: { type: ['string', 'null'] },
    actor,
    info: {},
    permissions: permissionList,
  },
  required: ['connectionId', 'userId', 'actor', 'permissions'],
} as const)

const ttlSeconds = { type: 'integer', minimum: 1, maximum: 86_400 * 30 } as const
const userInfo = { type: 'object', maxProperties: 100 } as const

export const identifyUserBody = {
  type: 'object',
  properties: { userId: id, groupIds: { type: 'array', items: id, maxItems: 1000 }, userInfo, sessionId: id, tenantId: id, ttlSeconds },
  required: ['userId'],
  additionalProperties: false,
} as const

export const authorizeBody = {
  type: 'object',
  properties: {
    userId: id,
    userInfo,
    rooms: { type: 'object', propertyNames: id, additionalProperties: permissionList, minProperties: 1, maxProperties: 1000 },
    sessionId: id,
    tenantId: id,
    ttlSeconds,
  },
  required: ['userId', 'rooms'],
  additionalProperties: false,
} as const

export const tokenResponse = {
  type: 'object',
  properties: { token: { type: 'string' }, expiresAt: { type: 'string', format: 'date-time' }, actor },
  required: ['token', 'expiresAt', 'actor'],
} as const

export const revokeBody = {
  type: 'object',
  properties: { userId: id, roomId: id },
  required: ['userId'],
  additionalProperties: false,
} as const

export const revokeResponse = { type: 'object', properties: { closed: { type: 'integer' } }, required: ['closed'], additionalProperties: false } as const
export const reinstateResponse = {
  type: 'object',
  properties: { reinstated: { type: 'boolean' } },
  required: ['reinstated'],
  additionalProperties: false,
} as const
export const okResponse = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false } as const
export const historyQuery = {
  type: 'object',
  properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
  additionalProperties: false,
} as const
export const ydocBinaryQuery = { type: 'object', properties: { stateVector: { type: 'string', maxLength: 1_000_000 } }, additionalProperties: false } as const

// --- the types, derived -------------------------------------------------------------------------

/** A room's ACL and metadata, as the server stores it. */
export type Room = FromSchema<typeof roomRecord>
export type CreateRoomInput = FromSchema<typeof createRoomBody>
/** A change to a room: absent fields stay as they are; a `null` user, group or metadata entry removes it. */
export type RoomPatch = FromSchema<typeof updateRoomBody>
export type RoomList = FromSchema<typeof roomList>
export type ListRoomsQuery = FromSchema<typeof listRoomsQuery>
/** One live session in a room. */
export type ActiveUser = FromSchema<typeof activeUsersResponse>['data'][number]
/** One stored batch of a room's write log. */
export type HistoryEntry = FromSchema<typeof historyResponse>['data'][number]
export type IdentifyUserBody = FromSchema<typeof identifyUserBody>
export type AuthorizeBody = FromSchema<typeof authorizeBody>
export type TokenResponse = FromSchema<typeof tokenResponse>
export type RevokeBody = FromSchema<typeof revokeBody>
export type ErrorBody = FromSchema<typeof errorBody>
export type Metadata = Room['metadata']
