/**
 * The room routes of the REST API (SPEC section 4): ACL records, the document as JSON or binary, a
 * service write, live sessions and the write history. Every change to a room's ACL is serialised and
 * re-evaluates the room's live sessions before the response goes out.
 */

import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts'
import type { FastifyInstance } from 'fastify'
import * as Y from 'yjs'
import { TandemError } from '../../protocol/errors.ts'
import { fromPermissionBits } from '../../protocol/permissions.ts'
import * as schema from '../../protocol/rest.ts'
import type { AccessControl } from '../auth/access-control.ts'
import { docToJson } from '../rooms/doc-json.ts'
import type { Writer } from '../rooms/room.ts'
import type { RoomRegistry } from '../rooms/registry.ts'
import type { PendingAccess } from '../auth/pending-access.ts'
import type { LiveSession } from '../auth/session.ts'
import type { KeyedSerial } from '../keyed-serial.ts'
import type { RoomRecord, Store } from '../store/types.ts'
import { validateStateVector, validateUpdate } from '../rooms/update-validator.ts'
import { binaryBody } from './validation.ts'

export interface RoomRoutesDeps {
  readonly store: Store
  readonly registry: RoomRegistry
  readonly access: AccessControl
  readonly connections: ReadonlySet<LiveSession>
  /** One queue per room for changes to its record (shared with access control). */
  readonly serial: KeyedSerial
  /** Records in effect that the store has not taken yet. */
  readonly pending: PendingAccess
}

/** A patch where `null` removes an entry. */
const patch = <V>(current: Record<string, V>, changes: Record<string, V | null> | undefined): Record<string, V> => {
  if (changes === undefined) return current
  const next = { ...current }
  for (const [key, value] of Object.entries(changes)) {
    if (value === null) delete next[key]
    else next[key] = value
  }
  return next
}

const notFound = (roomId: string): TandemError => new TandemError('room_not_found', `room "${roomId}" does not exist`)

/** REST writes: the service actor of SPEC section 2. Acknowledgement is awaited through `flush`. */
const restWriter: Writer = { actor: { kind: 'service', name: 'rest' }, acknowledge() {}, writeDelayed() {} }

const params = { params: schema.roomParams }
const errors = { 400: schema.errorBody, 401: schema.errorBody, 404: schema.errorBody, 429: schema.errorBody }

export async function roomRoutes(fastify: FastifyInstance, deps: RoomRoutesDeps): Promise<void> {
  // Handler types come from the route schemas (protocol/rest.ts): one source for each shape.
  const app = fastify.withTypeProvider<JsonSchemaToTsProvider>()
  const { store, registry, access, serial, pending } = deps

  const requireRoom = async (roomId: string): Promise<RoomRecord> => {
    const record = await pending.getRoom(roomId)
    if (record === null) throw notFound(roomId)
    return record
  }

  /** Runs `read` on the room's live document, loading it for the call when it is not loaded. */
  const withDoc = async <T>(roomId: string, read: (doc: Y.Doc) => T): Promise<T> => {
    await requireRoom(roomId)
    const room = await registry.acquire(roomId)
    try {
      // A deletion may have finished while the room was acquired (acquire waits for it).
      await requireRoom(roomId)
      return read(room.doc)
    } finally {
      registry.released(room)
    }
  }

  app.post(
    '/v1/rooms',
    { schema: { summary: 'Create a room with its ACL', body: schema.createRoomBody, response: { 200: schema.roomRecord, 409: schema.errorBody, ...errors } } },
    async (request) => {
      const body = request.body
      return serial.run(body.id, async () => {
        if ((await pending.getRoom(body.id)) !== null) throw new TandemError('room_exists', `room "${body.id}" already exists`)
        const now = new Date().toISOString()
        const record: RoomRecord = {
          id: body.id,
          defaultAccesses: body.defaultAccesses,
          usersAccesses: body.usersAccesses ?? {},
          groupsAccesses: body.groupsAccesses ?? {},
          metadata: body.metadata ?? {},
          createdAt: now,
          updatedAt: now,
        }
        // Sessions that joined through access tokens, or were refused before, see the new ACL.
        await access.applyRecord(record)
        return record
      })
    },
  )

  app.get(
    '/v1/rooms',
    {
      schema: {
        summary: 'List rooms, paginated by id',
        querystring: schema.listRoomsQuery,
        response: {
          200: schema.roomList,
          ...errors,
        },
      },
    },
    async (request) => {
      const { limit, startingAfter, prefix } = request.query
      const rooms = await store.listRooms({ limit: limit + 1, ...(startingAfter !== undefined && { startingAfter }), ...(prefix !== undefined && { prefix }) })
      const data = rooms.slice(0, limit)
      return { data, nextCursor: rooms.length > limit ? data.at(-1)!.id : null }
    },
  )

  app.get('/v1/rooms/:roomId', { schema: { summary: 'A room with its ACL', ...params, response: { 200: schema.roomRecord, ...errors } } }, async (request) =>
    requireRoom(request.params.roomId),
  )

  app.post(
    '/v1/rooms/:roomId',
    {
      schema: {
        summary: "Update a room's ACL or metadata; null removes an entry; live sessions are re-evaluated",
        ...params,
        body: schema.updateRoomBody,
        response: { 200: schema.roomRecord, ...errors },
      },
    },
    async (request) => {
      const { roomId } = request.params
      const body = request.body
      return serial.run(roomId, async () => {
        const current = await requireRoom(roomId)
        const record: RoomRecord = {
          ...current,
          defaultAccesses: body.defaultAccesses ?? current.defaultAccesses,
          usersAccesses: patch(current.usersAccesses, body.usersAccesses),
          groupsAccesses: patch(current.groupsAccesses, body.groupsAccesses),
          metadata: patch(current.metadata, body.metadata),
          updatedAt: new Date().toISOString(),
        }
        await access.applyRecord(record)
        return record
      })
    },
  )

  app.delete(
    '/v1/rooms/:roomId',
    { schema: { summary: 'Delete a room and its document; its sessions are closed with 4404', ...params, response: { 204: { type: 'null' }, ...errors } } },
    async (request, reply) => {
      const { roomId } = request.params
      await serial.run(roomId, async () => {
        await requireRoom(roomId)
        access.roomDeleted(roomId)
        // Joins that arrive meanwhile wait for the deletion (registry), then decide again: the
        // epoch moves before they resume, so none opens on the deleted room or brings it back.
        await registry.delete(roomId, async () => {
          await store.deleteRoom(roomId)
          pending.forgetRoom(roomId)
          access.changed()
        })
        // The other processes close their sessions of it and drop it too.
        await access.deleted(roomId)
      })
      return reply.code(204).send(null)
    },
  )

  app.get(
    '/v1/rooms/:roomId/ydoc',
    {
      schema: {
        summary: 'The document as JSON, one property per root shared type',
        ...params,
        response: { 200: { type: 'object', additionalProperties: true }, ...errors },
      },
    },
    async (request) => withDoc(request.params.roomId, docToJson),
  )

  app.get(
    '/v1/rooms/:roomId/ydoc-binary',
    {
      schema: {
        summary: 'The document as a Yjs V1 update; with ?stateVector= (base64) only what that state lacks',
        ...params,
        querystring: schema.ydocBinaryQuery,
        response: { 200: { type: 'string', format: 'binary' }, ...errors },
      },
    },
    async (request, reply) => {
      const encoded = request.query.stateVector
      const stateVector = encoded === undefined ? undefined : Buffer.from(encoded, 'base64')
      if (stateVector !== undefined) validateStateVector(stateVector)
      const update = await withDoc(request.params.roomId, (doc) => Y.encodeStateAsUpdate(doc, stateVector))
      // The schema says `string, format binary` (OpenAPI's bytes); what goes out is the bytes.
      return reply.type('application/octet-stream').send(Buffer.from(update) as unknown as string)
    },
  )

  app.put(
    '/v1/rooms/:roomId/ydoc',
    {
      schema: {
        summary: 'Apply a Yjs V1 update as the service actor; live editors receive it at once',
        consumes: ['application/octet-stream'],
        ...params,
        body: binaryBody,
        response: { 200: schema.okResponse, 413: schema.errorBody, ...errors },
      },
    },
    async (request) => {
      const { roomId } = request.params
      if (!Buffer.isBuffer(request.body)) throw new TandemError('invalid_request', 'send the update as application/octet-stream')
      const update = request.body
      const summary = validateUpdate(update)
      // Serialised with DELETE: a write racing a deletion must not bring the document back.
      await serial.run(roomId, async () => {
        await requireRoom(roomId)
        const room = await registry.acquire(roomId)
        try {
          room.integrationCost(summary)
          room.applyUpdate(update, restWriter, summary)
          await room.flush()
        } finally {
          registry.released(room)
        }
      })
      return { ok: true }
    },
  )

  app.get(
    '/v1/rooms/:roomId/active-users',
    { schema: { summary: 'Live sessions in the room', ...params, response: { 200: schema.activeUsersResponse, ...errors } } },
    async (request) => {
      const { roomId } = request.params
      await requireRoom(roomId)
      const data = [...deps.connections]
        .filter((c) => c.roomId === roomId && c.isOpen)
        .map((c) => {
          const session = c.session!
          return {
            connectionId: c.id,
            userId: session.actor.kind === 'user' ? session.actor.userId : null,
            actor: session.actor,
            info: session.info,
            permissions: fromPermissionBits(session.permissions),
          }
        })
      return { data }
    },
  )

  app.get(
    '/v1/rooms/:roomId/history',
    {
      schema: {
        summary: 'The write log, newest first: actor, time, size and clientIDs of each stored batch',
        ...params,
        querystring: schema.historyQuery,
        response: { 200: schema.historyResponse, ...errors },
      },
    },
    async (request) => {
      const { roomId } = request.params
      await requireRoom(roomId)
      // Read-your-writes: what the document already shows is stored before the history is read.
      await registry.get(roomId)?.flush()
      const entries = await store.history(roomId, request.query.limit)
      return { data: entries.map((e) => ({ ...e, clientIDs: [...e.clientIDs], at: new Date(e.at).toISOString() })) }
    },
  )
}
