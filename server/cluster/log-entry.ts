/**
 * A room log's entries, as pure encode/decode: the fields of a stream entry (what `XRANGE` returns
 * for loads, history and catch-up), and the feed message that announces the same entry to the
 * processes with the room loaded. Both are written by one Lua script, `APPEND_SCRIPT`, so that
 * appending to the log and announcing it are one atomic step: every entry is announced, in the
 * stream's order, and nothing is announced that the log does not hold.
 *
 * The feed message (built in Lua, read here): the entry id, the appending process, the append time
 * (ms), the number of updates, each on a line of its own, then each update as `<byte length>:<bytes>`.
 */

import type { WriteRecord } from '../store/types.ts'
import type { StreamEntry } from './stream-reader.ts'

/** The fields of a log entry: who appended it, when, its updates, and its history entries. */
export const ENTRY = { process: 'p', at: 't', count: 'n', update: 'u', history: 'h' } as const

/** A log entry as the rooms use it. */
export interface LogEntry {
  readonly id: string
  readonly process: string
  /** When it was appended (ms since the epoch, the appending process's clock). */
  readonly at: number
  readonly updates: readonly Uint8Array[]
}

/**
 * KEYS: the room's log, its feed channel. ARGV: process, at, update count, the updates, then the
 * history JSON (optional). Returns the entry's id.
 */
export const APPEND_SCRIPT = `
local n = tonumber(ARGV[3])
local fields = {'${ENTRY.process}', ARGV[1], '${ENTRY.at}', ARGV[2], '${ENTRY.count}', ARGV[3]}
for i = 1, n do
  fields[#fields + 1] = '${ENTRY.update}' .. (i - 1)
  fields[#fields + 1] = ARGV[3 + i]
end
if #ARGV > 3 + n then
  fields[#fields + 1] = '${ENTRY.history}'
  fields[#fields + 1] = ARGV[4 + n]
end
local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
local message = {id, '\\n', ARGV[1], '\\n', ARGV[2], '\\n', ARGV[3], '\\n'}
for i = 1, n do
  local u = ARGV[3 + i]
  message[#message + 1] = #u .. ':'
  message[#message + 1] = u
end
redis.call('PUBLISH', KEYS[2], table.concat(message))
return id
`

/** The script's arguments for one append. */
export const appendArguments = (processId: string, at: number, updates: readonly Uint8Array[], history: readonly WriteRecord[]): (string | Buffer)[] => {
  const args: (string | Buffer)[] = [processId, String(at), String(updates.length)]
  for (const u of updates) args.push(Buffer.from(u.buffer, u.byteOffset, u.byteLength))
  if (history.length > 0) args.push(JSON.stringify(history))
  return args
}

/** The updates a stream entry carries. */
export const entryUpdates = (entry: StreamEntry): Uint8Array[] => {
  const n = Number(entry.fields[ENTRY.count]?.toString() ?? '0')
  const updates: Uint8Array[] = []
  for (let i = 0; i < n; i++) {
    const u = entry.fields[`${ENTRY.update}${i}`]
    if (u !== undefined) updates.push(new Uint8Array(u))
  }
  return updates
}

/** The history a stream entry carries. */
export const entryHistory = (entry: StreamEntry): WriteRecord[] => {
  const h = entry.fields[ENTRY.history]
  return h === undefined ? [] : (JSON.parse(h.toString()) as WriteRecord[])
}

/** A stream entry as a log entry. */
export const fromStream = (entry: StreamEntry): LogEntry => ({
  id: entry.id,
  process: entry.fields[ENTRY.process]?.toString() ?? '',
  at: Number(entry.fields[ENTRY.at]?.toString() ?? '0'),
  updates: entryUpdates(entry),
})

const NEWLINE = 0x0a
const COLON = 0x3a

/** Reads a feed message; null when it is not one. */
export const decodeFeedMessage = (message: Buffer): LogEntry | null => {
  let at = 0
  const line = (): string | null => {
    const end = message.indexOf(NEWLINE, at)
    if (end < 0) return null
    const text = message.toString('latin1', at, end)
    at = end + 1
    return text
  }
  const id = line()
  const process = line()
  const time = line()
  const count = line()
  if (id === null || process === null || time === null || count === null || !/^\d+-\d+$/.test(id)) return null
  const n = Number(count)
  if (!Number.isSafeInteger(n) || n < 0) return null
  const updates: Uint8Array[] = []
  for (let i = 0; i < n; i++) {
    const colon = message.indexOf(COLON, at)
    if (colon < 0) return null
    const length = Number(message.toString('latin1', at, colon))
    const start = colon + 1
    if (!Number.isSafeInteger(length) || length < 0 || start + length > message.length) return null
    updates.push(new Uint8Array(message.buffer, message.byteOffset + start, length))
    at = start + length
  }
  return at === message.length ? { id, process, at: Number(time), updates } : null
}

/** A stream's ids compared ("ms-seq"; both parts stay far below 2^53). */
export const compareIds = (a: string, b: string): number => {
  const ad = a.indexOf('-')
  const bd = b.indexOf('-')
  const am = Number(a.slice(0, ad))
  const bm = Number(b.slice(0, bd))
  if (am !== bm) return am < bm ? -1 : 1
  const as = Number(a.slice(ad + 1))
  const bs = Number(b.slice(bd + 1))
  return as === bs ? 0 : as < bs ? -1 : 1
}
