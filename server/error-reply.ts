/**
 * The one boundary where anything thrown from a route, or refused by Fastify itself (a body that is
 * not JSON, a path parameter over its length, an unknown route), becomes `{ error: code, message }`
 * with the code's HTTP status from the one error table (protocol/errors.ts). Used by the REST API,
 * the upgrade routes and the app's own hooks.
 */

import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { ERROR_TABLE, type ErrorCode, TandemError } from '../protocol/errors.ts'

/** Longest `message` an error body carries: messages may quote input, which never comes back unbounded. */
const MAX_MESSAGE_LENGTH = 200

const bounded = (message: string): string => (message.length > MAX_MESSAGE_LENGTH ? `${message.slice(0, MAX_MESSAGE_LENGTH)}...` : message)

/** Answers `{ error, message }` with the code's status from the one error table. */
export const sendError = (reply: FastifyReply, code: ErrorCode, message: string) =>
  reply.code(ERROR_TABLE[code].status).send({ error: code, message: bounded(message) })

/** The Tandem code for an error the framework, a plugin or Node raised with an HTTP status. */
const codeForStatus = (status: number): ErrorCode => {
  switch (status) {
    case 401:
      return 'unauthorized'
    case 404:
      return 'not_found'
    case 413:
      return 'message_too_large'
    case 429:
      return 'rate_limited'
    case 503:
      return 'unavailable'
    default:
      return status < 500 ? 'invalid_request' : 'server_error'
  }
}

/**
 * The one boundary where anything thrown from a route, or by Fastify itself (a body that is not
 * JSON, a path parameter over its length, an unknown route), becomes a coded error body.
 */
export const errorHandler = (err: FastifyError | TandemError, request: FastifyRequest, reply: FastifyReply) => {
  if (err instanceof TandemError) return sendError(reply, err.code, err.message)
  if (err.validation !== undefined) return sendError(reply, 'invalid_request', err.message)
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') return sendError(reply, 'invalid_request', 'a path parameter is too long (room ids are at most 256 characters)')
  if (err.code === 'FST_ERR_BAD_URL') return sendError(reply, 'invalid_request', 'the URL does not decode')
  const code = codeForStatus(err.statusCode ?? 500)
  if (code !== 'server_error') return sendError(reply, code, err.message)
  request.log.error({ err }, 'request failed')
  return sendError(reply, 'server_error', 'internal error')
}

/** An unknown route: `not_found`, naming the route without echoing a long URL. */
export const notFoundHandler = (request: FastifyRequest, reply: FastifyReply) =>
  sendError(reply, 'not_found', `no route ${request.method} ${request.url.split('?')[0]}`)
