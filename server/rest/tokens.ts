/**
 * Token routes for backends in any language (SPEC sections 2 and 4): mint ID and access tokens with
 * the server secret, and revoke a user's sessions.
 */

import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts'
import type { FastifyInstance } from 'fastify'
import { type MintedToken, mintAccessToken, mintIdToken } from '../../protocol/mint.ts'
import type { AccessControl } from '../auth/access-control.ts'
import * as schema from '../../protocol/rest.ts'

interface Common {
  userId: string
  userInfo?: Record<string, unknown>
  sessionId?: string
  tenantId?: string
  ttlSeconds?: number
}

const errors = { 400: schema.errorBody, 401: schema.errorBody, 429: schema.errorBody }

const answer = (minted: MintedToken, body: Common) => ({
  token: minted.token,
  expiresAt: new Date(minted.expiresAt).toISOString(),
  actor: {
    kind: 'user' as const,
    userId: body.userId,
    ...(body.sessionId !== undefined && { sessionId: body.sessionId }),
    ...(body.tenantId !== undefined && { tenantId: body.tenantId }),
  },
})

export async function tokenRoutes(fastify: FastifyInstance, deps: { secret: string; access: AccessControl }): Promise<void> {
  const app = fastify.withTypeProvider<JsonSchemaToTsProvider>()
  const ttl = (body: Common) => (body.ttlSeconds === undefined ? {} : { ttlSeconds: body.ttlSeconds })

  app.post(
    '/v1/identify-user',
    {
      schema: {
        summary: "Mint an ID token: permissions come from each room's ACL",
        body: schema.identifyUserBody,
        response: { 200: schema.tokenResponse, ...errors },
      },
    },
    async (request) => {
      const { userId, groupIds, userInfo, sessionId, tenantId } = request.body
      const minted = await mintIdToken(deps.secret, { userId, groupIds, userInfo, sessionId, tenantId }, ttl(request.body))
      return answer(minted, request.body)
    },
  )

  app.post(
    '/v1/authorize',
    {
      schema: {
        summary: 'Mint an access token: permissions per room id or prefix*, no ACL lookup',
        body: schema.authorizeBody,
        response: { 200: schema.tokenResponse, ...errors },
      },
    },
    async (request) => {
      const { userId, userInfo, rooms, sessionId, tenantId } = request.body
      const minted = await mintAccessToken(deps.secret, { userId, userInfo, rooms, sessionId, tenantId }, ttl(request.body))
      return answer(minted, request.body)
    },
  )

  app.post(
    '/v1/revoke',
    {
      schema: {
        summary: "Close a user's sessions at once (in one room, or everywhere) and refuse its older tokens",
        body: schema.revokeBody,
        response: { 200: schema.revokeResponse, ...errors },
      },
    },
    async (request) => ({ closed: await deps.access.revoke(request.body.userId, request.body.roomId ?? null) }),
  )

  app.post(
    '/v1/reinstate',
    {
      schema: {
        summary: "Lift a revocation (the one for a room, or the one for every room): the user's tokens, and its gateway identity, are accepted again",
        body: schema.revokeBody,
        response: { 200: schema.reinstateResponse, ...errors },
      },
    },
    async (request) => ({ reinstated: await deps.access.reinstate(request.body.userId, request.body.roomId ?? null) }),
  )
}
