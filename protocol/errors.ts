/**
 * Error codes shared by the server, the provider and the admin client, and the one table that maps
 * each code to its HTTP status and WebSocket close code (SPEC section 5).
 *
 * Close code bands follow the stock y-websocket client (3.1+) and y/hub: 44xx is final (the client
 * stops reconnecting); 45xx, 1011, 1012 and 1013 are transient (it reconnects).
 */

export const ERROR_CODES = [
  'unauthorized',
  'token_expired',
  'forbidden',
  'read_only',
  'presence_forbidden',
  'revoked',
  'rate_limited',
  'message_too_large',
  'update_too_costly',
  'malformed_message',
  'room_not_found',
  'server_error',
  // REST only (unavailable: REST, and a socket closed with 1013 that may come back later):
  'invalid_request',
  'room_exists',
  'not_found',
  'unavailable',
] as const

export type ErrorCode = (typeof ERROR_CODES)[number]

/** WebSocket close codes Tandem uses. */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  serverError: 1011,
  serverRestarting: 1012,
  tryAgainLater: 1013,
  malformed: 4400,
  unauthorized: 4401,
  forbidden: 4403,
  roomDeleted: 4404,
  authTimeout: 4408,
  tooLarge: 4413,
  rateLimited: 4529,
} as const

export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode]

interface CodeInfo {
  /** HTTP status for REST responses. */
  readonly status: number
  /** Close code when the error ends a WebSocket, or null when it is reported and the socket stays. */
  readonly close: CloseCodeValue | null
}

/** The one place that says what each error code means on each transport. */
export const ERROR_TABLE: Readonly<Record<ErrorCode, CodeInfo>> = {
  unauthorized: { status: 401, close: CloseCode.unauthorized },
  token_expired: { status: 401, close: CloseCode.unauthorized },
  forbidden: { status: 403, close: CloseCode.forbidden },
  read_only: { status: 403, close: null },
  presence_forbidden: { status: 403, close: null },
  revoked: { status: 403, close: CloseCode.forbidden },
  rate_limited: { status: 429, close: CloseCode.rateLimited },
  message_too_large: { status: 413, close: CloseCode.tooLarge },
  update_too_costly: { status: 413, close: CloseCode.tooLarge },
  malformed_message: { status: 400, close: CloseCode.malformed },
  room_not_found: { status: 404, close: CloseCode.roomDeleted },
  server_error: { status: 500, close: CloseCode.serverError },
  invalid_request: { status: 400, close: CloseCode.malformed },
  room_exists: { status: 409, close: null },
  not_found: { status: 404, close: null },
  unavailable: { status: 503, close: CloseCode.tryAgainLater },
}

const codeSet: ReadonlySet<string> = new Set(ERROR_CODES)

export const isErrorCode = (value: unknown): value is ErrorCode => typeof value === 'string' && codeSet.has(value)

/** True for close codes after which a client must not reconnect. */
export const isFinalCloseCode = (code: number): boolean => code >= 4400 && code < 4500

/** The error type of every Tandem package: callers switch on `code`, never on the message. */
export class TandemError extends Error {
  readonly code: ErrorCode

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'TandemError'
    this.code = code
  }

  get status(): number {
    return ERROR_TABLE[this.code].status
  }

  get closeCode(): CloseCodeValue | null {
    return ERROR_TABLE[this.code].close
  }
}

/** Turns anything thrown into a TandemError, at the one boundary where that is decided. */
export const toTandemError = (err: unknown, fallback: ErrorCode = 'server_error'): TandemError =>
  err instanceof TandemError ? err : new TandemError(fallback, err instanceof Error ? err.message : String(err), { cause: err })
