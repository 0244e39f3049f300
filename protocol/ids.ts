/**
 * The one rule for ids (room ids, user ids, group, session and tenant ids, room patterns): 1 to 256
 * characters, none of them a control character (C0 U+0000-U+001F, DEL, C1 U+0080-U+009F: they end
 * up in logs, headers and LevelDB keys). The JSON schemas of the REST API use `ID_SCHEMA`.
 */

/** Longest accepted id. */
export const MAX_ID_LENGTH = 256

// C0, DEL and C1 control characters: matching them is the point.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the id rule refuses exactly these characters
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

/** The same rule as a JSON-schema `pattern` (each character not a control character). */
export const ID_PATTERN = '^[^\\u0000-\\u001f\\u007f-\\u009f]+$'

/** The id rule as a JSON schema, for request bodies, params and responses. */
export const ID_SCHEMA = { type: 'string', minLength: 1, maxLength: MAX_ID_LENGTH, pattern: ID_PATTERN } as const

/** A non-empty string of at most MAX_ID_LENGTH characters with no control characters. */
export const isValidId = (value: unknown): value is string =>
  typeof value === 'string' && value.length > 0 && value.length <= MAX_ID_LENGTH && !CONTROL.test(value)

/** Same rule as `isValidId`; named for what a token's `sub` becomes. */
export const isValidUserId = isValidId

/** Same rule as `isValidId`, for room ids. */
export const isValidRoomId = isValidId
