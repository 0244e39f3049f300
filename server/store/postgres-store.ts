/**
 * The PostgreSQL store (`TANDEM_DATABASE_URL`): the whole Store contract in one database, for teams
 * that back up one database instead of a data dir, and the long-lived half of the distributed mode
 * (rooms, ACLs, history, revocations; cluster/ adds checkpoints and leases beside them). It behaves
 * as the LevelDB store does, record for record, and passes the same contract suite. Room ids sort
 * by their UTF-8 bytes (COLLATE "C"), as LevelDB's keys do.
 *
 * Appends of one event-loop turn, from every room, go to PostgreSQL as one transaction (a group
 * commit, as LevelStore's one batch); an append resolves once that transaction committed.
 */

import pg from 'pg'
import { ConfigError } from '../config-error.ts'
import { inTransaction } from './pg-transaction.ts'
import type { ListRoomsOptions, RoomRecord, Store, StoredDocument, WriteRecord } from './types.ts'

/** The schema this code reads and writes; a database holding another is refused. */
export const POSTGRES_SCHEMA_VERSION = 1

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tandem_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS tandem_records (room_id text COLLATE "C" NOT NULL, seq bigint NOT NULL, data bytea NOT NULL, PRIMARY KEY (room_id, seq));
CREATE TABLE IF NOT EXISTS tandem_history (room_id text COLLATE "C" NOT NULL, seq bigint NOT NULL, idx int NOT NULL, entry jsonb NOT NULL, PRIMARY KEY (room_id, seq, idx));
CREATE TABLE IF NOT EXISTS tandem_rooms (room_id text COLLATE "C" PRIMARY KEY, record jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS tandem_revocations (user_id text NOT NULL, room_id text NOT NULL, at double precision NOT NULL, PRIMARY KEY (user_id, room_id));
`

export interface PostgresStoreOptions {
  /** Most connections the store keeps open. Default 10. */
  readonly maxConnections?: number
}

/** Connects, creates the tables if absent (one process at a time), and checks the schema version. */
export async function openPostgresStore(connectionString: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
  const pool = new pg.Pool({ connectionString, max: options.maxConnections ?? 10 })
  // An idle client's error (the server restarted) must not crash the process: the next query reconnects.
  pool.on('error', () => {})
  try {
    await migrate(pool)
  } catch (err) {
    await pool.end()
    if (err instanceof ConfigError) throw err
    throw new ConfigError('databaseUrl', `could not open the database: ${(err as Error).message}`, { cause: err })
  }
  return new PostgresStore(pool)
}

/** Creates the schema inside one transaction, serialised across processes by an advisory lock. */
export async function migrate(pool: pg.Pool): Promise<void> {
  await inTransaction(pool, async (client) => {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('tandem-schema'))")
    await client.query(SCHEMA)
    const { rows } = await client.query<{ value: string }>("SELECT value FROM tandem_meta WHERE key = 'schema_version'")
    if (rows.length === 0) await client.query("INSERT INTO tandem_meta (key, value) VALUES ('schema_version', $1)", [String(POSTGRES_SCHEMA_VERSION)])
    else if (rows[0]!.value !== String(POSTGRES_SCHEMA_VERSION)) {
      throw new ConfigError('databaseUrl', `the database holds Tandem schema version ${rows[0]!.value}, this server reads version ${POSTGRES_SCHEMA_VERSION}`)
    }
  })
}

interface PendingAppend {
  readonly roomId: string
  readonly firstSeq: number
  readonly updates: readonly Uint8Array[]
  readonly writes: readonly WriteRecord[]
  readonly resolve: () => void
  readonly reject: (err: unknown) => void
}

const bytes = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength)

export class PostgresStore implements Store {
  readonly #pool: pg.Pool
  #pending: PendingAppend[] = []
  #closed = false
  #health: 'ok' | 'read_only' = 'ok'

  constructor(pool: pg.Pool) {
    this.#pool = pool
  }

  /** The pool, for the distributed mode's own tables (cluster/). */
  get pool(): pg.Pool {
    return this.#pool
  }

  /** `read_only` while the last write failed (the database is away), `ok` once one succeeds. */
  health(): 'ok' | 'read_only' {
    return this.#health
  }

  async load(roomId: string): Promise<StoredDocument> {
    checkRoomId(roomId)
    const { rows } = await this.#query<{ seq: string; data: Buffer }>('SELECT seq, data FROM tandem_records WHERE room_id = $1 ORDER BY seq', [roomId])
    if (rows.length === 0) return { updates: [], firstSeq: -1, lastSeq: -1 }
    return { updates: rows.map((r) => new Uint8Array(r.data)), firstSeq: Number(rows[0]!.seq), lastSeq: Number(rows[rows.length - 1]!.seq) }
  }

  append(roomId: string, firstSeq: number, updates: readonly Uint8Array[], writes: readonly WriteRecord[] = []): Promise<void> {
    if (updates.length > 0 || writes.length > 0) {
      checkRoomId(roomId)
      checkSeq(firstSeq)
      if (updates.length > 0) checkSeq(firstSeq + (updates.length - 1))
    }
    // Copied now: the caller may change its bytes before the turn's transaction runs.
    const copies = updates.map((u) => Buffer.from(u))
    const entries = writes.map((w) => JSON.parse(JSON.stringify(w)) as WriteRecord)
    return new Promise((resolve, reject) => {
      if (this.#closed) return reject(new Error('the PostgreSQL store is closed'))
      this.#pending.push({ roomId, firstSeq, updates: copies, writes: entries, resolve, reject })
      if (this.#pending.length === 1) setImmediate(() => void this.#writePending())
    })
  }

  async #writePending(): Promise<void> {
    const appends = this.#pending
    this.#pending = []
    const rooms: string[] = []
    const seqs: string[] = []
    const data: Buffer[] = []
    const hRooms: string[] = []
    const hSeqs: string[] = []
    const hIdx: number[] = []
    const hEntries: string[] = []
    for (const a of appends) {
      a.updates.forEach((u, i) => {
        rooms.push(a.roomId)
        seqs.push(String(a.firstSeq + i))
        data.push(bytes(u))
      })
      a.writes.forEach((w, i) => {
        hRooms.push(a.roomId)
        hSeqs.push(String(a.firstSeq))
        hIdx.push(i)
        hEntries.push(JSON.stringify(w))
      })
    }
    try {
      await this.#transaction(async (client) => {
        if (rooms.length > 0) {
          await client.query(
            'INSERT INTO tandem_records (room_id, seq, data) SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[]) ON CONFLICT (room_id, seq) DO UPDATE SET data = EXCLUDED.data',
            [rooms, seqs, data],
          )
        }
        if (hRooms.length > 0) {
          await client.query(
            'INSERT INTO tandem_history (room_id, seq, idx, entry) SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::jsonb[]) ON CONFLICT (room_id, seq, idx) DO UPDATE SET entry = EXCLUDED.entry',
            [hRooms, hSeqs, hIdx, hEntries],
          )
        }
      })
      for (const a of appends) a.resolve()
    } catch (err) {
      for (const a of appends) a.reject(err)
    }
  }

  async compact(roomId: string, fromSeq: number, throughSeq: number, merged: Uint8Array): Promise<void> {
    if (!Number.isSafeInteger(fromSeq) || fromSeq < 0 || !Number.isSafeInteger(throughSeq) || throughSeq < fromSeq) {
      throw new RangeError(`invalid compaction range ${fromSeq}..${throughSeq}`)
    }
    checkRoomId(roomId)
    // One transaction: a crash leaves either the old records or the merged one, never neither.
    await this.#transaction(async (client) => {
      await client.query('DELETE FROM tandem_records WHERE room_id = $1 AND seq >= $2 AND seq < $3', [roomId, fromSeq, throughSeq])
      await client.query('INSERT INTO tandem_records (room_id, seq, data) VALUES ($1, $2, $3) ON CONFLICT (room_id, seq) DO UPDATE SET data = EXCLUDED.data', [
        roomId,
        throughSeq,
        bytes(merged),
      ])
    })
  }

  async deleteDocument(roomId: string): Promise<void> {
    checkRoomId(roomId)
    await this.#write('DELETE FROM tandem_records WHERE room_id = $1', [roomId])
  }

  async getRoom(roomId: string): Promise<RoomRecord | null> {
    const { rows } = await this.#query<{ record: RoomRecord }>('SELECT record FROM tandem_rooms WHERE room_id = $1', [roomId])
    return rows[0]?.record ?? null
  }

  async putRoom(record: RoomRecord): Promise<void> {
    await this.#write('INSERT INTO tandem_rooms (room_id, record) VALUES ($1, $2) ON CONFLICT (room_id) DO UPDATE SET record = EXCLUDED.record', [
      record.id,
      JSON.stringify(record),
    ])
  }

  async deleteRoom(roomId: string): Promise<void> {
    checkRoomId(roomId)
    await this.#transaction(async (client) => {
      await client.query('DELETE FROM tandem_rooms WHERE room_id = $1', [roomId])
      await client.query('DELETE FROM tandem_records WHERE room_id = $1', [roomId])
      await client.query('DELETE FROM tandem_history WHERE room_id = $1', [roomId])
    })
  }

  async listRooms({ prefix = '', startingAfter, limit }: ListRoomsOptions): Promise<RoomRecord[]> {
    // As LevelStore reads: from after the cursor when it is at or past the prefix, else from the
    // prefix; at least one room when any matches (its loop takes one before it checks the limit).
    const after = startingAfter !== undefined && startingAfter >= prefix ? startingAfter : null
    const { rows } = await this.#query<{ record: RoomRecord }>(
      `SELECT record FROM tandem_rooms
       WHERE starts_with(room_id, $1) AND ($2::text IS NULL OR room_id > $2::text COLLATE "C")
       ORDER BY room_id LIMIT $3`,
      [prefix, after, Math.max(1, limit)],
    )
    return rows.map((r) => r.record)
  }

  async countRooms(prefix: string, upTo: number): Promise<number> {
    if (upTo <= 0) return 0
    const { rows } = await this.#query<{ n: string }>('SELECT count(*) AS n FROM (SELECT 1 FROM tandem_rooms WHERE starts_with(room_id, $1) LIMIT $2) t', [
      prefix,
      upTo,
    ])
    return Number(rows[0]!.n)
  }

  async history(roomId: string, limit: number): Promise<WriteRecord[]> {
    checkRoomId(roomId)
    const max = Number.isInteger(limit) && limit >= 0 ? limit : null
    const { rows } = await this.#query<{ entry: WriteRecord }>('SELECT entry FROM tandem_history WHERE room_id = $1 ORDER BY seq DESC, idx DESC LIMIT $2', [
      roomId,
      max,
    ])
    return rows.map((r) => r.entry)
  }

  async revoke(userId: string, roomId: string | null, at: number): Promise<void> {
    await this.#write(
      'INSERT INTO tandem_revocations (user_id, room_id, at) VALUES ($1, $2, $3) ON CONFLICT (user_id, room_id) DO UPDATE SET at = EXCLUDED.at',
      [userId, roomId ?? '', at],
    )
  }

  async revokedAt(userId: string, roomId: string): Promise<number> {
    const { rows } = await this.#query<{ at: number | null }>("SELECT max(at) AS at FROM tandem_revocations WHERE user_id = $1 AND room_id IN ('', $2)", [
      userId,
      roomId,
    ])
    return rows[0]?.at ?? 0
  }

  async reinstate(userId: string, roomId: string | null): Promise<boolean> {
    const result = await this.#write('DELETE FROM tandem_revocations WHERE user_id = $1 AND room_id = $2', [userId, roomId ?? ''])
    return (result.rowCount ?? 0) > 0
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#pool.end()
  }

  async #query<R extends pg.QueryResultRow>(text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    if (this.#closed) throw new Error('the PostgreSQL store is closed')
    return this.#pool.query<R>(text, values)
  }

  async #write(text: string, values: unknown[]): Promise<pg.QueryResult> {
    try {
      const result = await this.#query(text, values)
      this.#health = 'ok'
      return result
    } catch (err) {
      this.#health = 'read_only'
      throw err
    }
  }

  async #transaction(run: (client: pg.PoolClient) => Promise<void>): Promise<void> {
    if (this.#closed) throw new Error('the PostgreSQL store is closed')
    try {
      await inTransaction(this.#pool, run)
      this.#health = 'ok'
    } catch (err) {
      this.#health = 'read_only'
      throw err
    }
  }
}

/** What LevelDB's keys refuse (keys.ts): a room id with U+0000 (PostgreSQL's text refuses it too). */
function checkRoomId(roomId: string): void {
  if (roomId.includes('\u0000')) throw new RangeError('room id must not contain U+0000')
}

function checkSeq(seq: number): void {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`invalid sequence number ${seq}`)
}
