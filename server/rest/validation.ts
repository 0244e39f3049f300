/**
 * How REST input is validated. Fastify's default Ajv coerces types and strips unknown properties,
 * which turns a typo (`room` for `roomId` in a revoke) or a wrong type into a different request that
 * succeeds. Bodies and params are therefore validated strictly: no coercion, unknown properties
 * refused. Query strings arrive as text, so they keep coercion (`?limit=5` is the number 5).
 * A binary body (`format: binary`) is validated by the route itself (a Yjs update).
 */

import { Ajv } from 'ajv'
import type { FastifySchemaCompiler } from 'fastify'

const strict = new Ajv({ coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false, strict: false })
const coercing = new Ajv({ coerceTypes: 'array', removeAdditional: false, useDefaults: true, allErrors: false, strict: false })

/** The body schema of routes that take raw bytes; Ajv never sees the Buffer. */
export const binaryBody = { type: 'string', format: 'binary' } as const

export const validatorCompiler: FastifySchemaCompiler<Record<string, unknown>> = ({ schema, httpPart }) => {
  if (schema === binaryBody || (schema.type === 'string' && schema.format === 'binary')) return () => true
  return (httpPart === 'querystring' ? coercing : strict).compile(schema)
}
