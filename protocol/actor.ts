/**
 * Who wrote or holds a session (SPEC section 2), as the server records it and the REST API shows
 * it: defined once, as the JSON schema the REST responses use, and its type derived from it.
 */

import type { FromSchema } from 'json-schema-to-ts'

export const ACTOR_SCHEMA = {
  anyOf: [
    {
      type: 'object',
      properties: { kind: { const: 'user' }, userId: { type: 'string' }, sessionId: { type: 'string' }, tenantId: { type: 'string' } },
      required: ['kind', 'userId'],
      additionalProperties: false,
    },
    {
      type: 'object',
      properties: { kind: { const: 'anonymous' }, sessionId: { type: 'string' } },
      required: ['kind', 'sessionId'],
      additionalProperties: false,
    },
    { type: 'object', properties: { kind: { const: 'service' }, name: { type: 'string' } }, required: ['kind', 'name'], additionalProperties: false },
  ],
} as const

export type Actor = FromSchema<typeof ACTOR_SCHEMA>
