/**
 * Checkpoints and compaction leases in PostgreSQL. A room's checkpoint is a snapshot of its
 * document and the stream id it covers (every log entry up to that id is in it); checkpoints only
 * move forward. One process at a time compacts a room: it takes the room's lease (30 s, renewable);
 * a process taking over an expired lease raises the lease's epoch, and a checkpoint is committed
 * only by the holder of the current epoch with a live lease (fencing): a stale holder (paused,
 * partitioned, its lease taken over) is refused with `FencedError` and trims nothing.
 */

import type pg from 'pg'
import { inTransaction } from '../store/pg-transaction.ts'

const LEASE_SECONDS = 30

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tandem_checkpoints (room_id text COLLATE "C" PRIMARY KEY, stream_ms bigint NOT NULL, stream_seq bigint NOT NULL, snapshot bytea NOT NULL, epoch bigint NOT NULL);
CREATE TABLE IF NOT EXISTS tandem_leases (room_id text COLLATE "C" PRIMARY KEY, holder text NOT NULL, epoch bigint NOT NULL, expires_at timestamptz NOT NULL);
`

export interface Lease {
  readonly roomId: string
  readonly epoch: number
}

export interface Checkpoint {
  readonly snapshot: Uint8Array
  readonly streamId: string
}

/** A checkpoint from a compaction lease that another process has taken over since. */
export class FencedError extends Error {
  override readonly name = 'FencedError'
  readonly code = 'FENCED'
}

const split = (id: string): [string, string] => id.split('-') as [string, string]

export class Leases {
  readonly #pool: pg.Pool
  readonly #holder: string

  constructor(pool: pg.Pool, holder: string) {
    this.#pool = pool
    this.#holder = holder
  }

  static async migrate(pool: pg.Pool): Promise<void> {
    await inTransaction(pool, async (client) => {
      await client.query("SELECT pg_advisory_xact_lock(hashtext('tandem-schema'))")
      await client.query(SCHEMA)
    })
  }

  /** The room's lease for this process (renewed if it holds it), or null when another holds it. */
  async acquire(roomId: string, seconds = LEASE_SECONDS): Promise<Lease | null> {
    const { rows } = await this.#pool.query<{ epoch: string }>(
      `INSERT INTO tandem_leases (room_id, holder, epoch, expires_at) VALUES ($1, $2, 1, now() + make_interval(secs => $3))
       ON CONFLICT (room_id) DO UPDATE SET
         epoch = CASE WHEN tandem_leases.holder = EXCLUDED.holder AND tandem_leases.expires_at > now() THEN tandem_leases.epoch ELSE tandem_leases.epoch + 1 END,
         holder = EXCLUDED.holder,
         expires_at = EXCLUDED.expires_at
       WHERE tandem_leases.holder = EXCLUDED.holder OR tandem_leases.expires_at <= now()
       RETURNING epoch`,
      [roomId, this.#holder, seconds],
    )
    return rows.length === 0 ? null : { roomId, epoch: Number(rows[0]!.epoch) }
  }

  async checkpoint(roomId: string): Promise<Checkpoint | null> {
    const { rows } = await this.#pool.query<{ snapshot: Buffer; stream_ms: string; stream_seq: string }>(
      'SELECT snapshot, stream_ms, stream_seq FROM tandem_checkpoints WHERE room_id = $1',
      [roomId],
    )
    const row = rows[0]
    return row === undefined ? null : { snapshot: new Uint8Array(row.snapshot), streamId: `${row.stream_ms}-${row.stream_seq}` }
  }

  /**
   * In one transaction: checks the lease is this process's, at its epoch and live (else
   * FencedError), moves the covered entries' history to the history table, and stores the
   * checkpoint if it covers more than the stored one.
   */
  async commitCheckpoint(
    lease: Lease,
    roomId: string,
    covered: string,
    snapshot: Uint8Array,
    history: readonly { entry: string; index: number; write: unknown }[],
  ): Promise<void> {
    await inTransaction(this.#pool, async (client) => {
      const { rows } = await client.query<{ holder: string; epoch: string; live: boolean }>(
        'SELECT holder, epoch, expires_at > now() AS live FROM tandem_leases WHERE room_id = $1 FOR UPDATE',
        [roomId],
      )
      const row = rows[0]
      if (row === undefined || row.holder !== this.#holder || Number(row.epoch) !== lease.epoch || !row.live) {
        throw new FencedError(`the compaction lease of room "${roomId}" (epoch ${lease.epoch}) was taken over`)
      }
      if (history.length > 0) {
        const seqs = history.map((h) => split(h.entry)[0])
        const idx = history.map((h) => Number(split(h.entry)[1]) * 65_536 + h.index)
        await client.query(
          `INSERT INTO tandem_history (room_id, seq, idx, entry) SELECT $1, * FROM unnest($2::bigint[], $3::int[], $4::jsonb[]) ON CONFLICT DO NOTHING`,
          [roomId, seqs, idx, history.map((h) => JSON.stringify(h.write))],
        )
      }
      const [ms, seq] = split(covered)
      await client.query(
        `INSERT INTO tandem_checkpoints (room_id, stream_ms, stream_seq, snapshot, epoch) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (room_id) DO UPDATE SET stream_ms = EXCLUDED.stream_ms, stream_seq = EXCLUDED.stream_seq, snapshot = EXCLUDED.snapshot, epoch = EXCLUDED.epoch
         WHERE (tandem_checkpoints.stream_ms, tandem_checkpoints.stream_seq) < (EXCLUDED.stream_ms, EXCLUDED.stream_seq)`,
        [roomId, ms, seq, Buffer.from(snapshot.buffer, snapshot.byteOffset, snapshot.byteLength), lease.epoch],
      )
    })
  }

  /** The room is deleted: its checkpoint and lease go. */
  async forget(roomId: string): Promise<void> {
    await this.#pool.query('DELETE FROM tandem_checkpoints WHERE room_id = $1', [roomId])
    await this.#pool.query('DELETE FROM tandem_leases WHERE room_id = $1', [roomId])
  }
}
