/**
 * One blocking reader of Redis streams for the whole process, each from the last id this process
 * has of it: the control stream (control-bus.ts). Room logs are not read here: their entries come
 * over their feed channels (log-feed.ts), as a read naming every loaded room's stream would cost
 * Redis time in proportion to the rooms at every wake. One `XREAD BLOCK` returns as soon as any
 * stream grows; a stream subscribed meanwhile wakes it (`CLIENT UNBLOCK`) so its first entries
 * wait for no timeout. A failed read (Redis away) is retried with backoff from the
 * same ids: nothing in a stream is missed, however long the outage. `lastReadAt` says when a read
 * last succeeded, for the fail-closed rule of the control stream.
 */

import type { FastifyBaseLogger } from 'fastify'
import { type BinaryClient, type RedisClient, binary } from './redis.ts'

export interface StreamEntry {
  readonly id: string
  readonly fields: Readonly<Record<string, Buffer>>
}

type Handler = (entries: readonly StreamEntry[]) => void

const BLOCK_MS = 1_000
const COUNT = 1_000
const RETRY_MIN_MS = 50
const RETRY_MAX_MS = 1_000

export class StreamReader {
  readonly #reader: BinaryClient
  readonly #rawReader: RedisClient
  readonly #command: RedisClient
  readonly #log: FastifyBaseLogger
  readonly #streams = new Map<string, { id: string; handler: Handler }>()
  #readerId: string | null = null
  #running = false
  #blocked = false
  #loop: Promise<void> | null = null
  /** When a read last succeeded (ms): a read that timed out empty counts. */
  lastReadAt = Date.now()

  constructor(reader: RedisClient, command: RedisClient, log: FastifyBaseLogger) {
    this.#rawReader = reader
    this.#reader = binary(reader)
    this.#command = command
    this.#log = log
  }

  /** Reads `key` from after `fromId`, handing each batch of entries to `handler`. */
  subscribe(key: string, fromId: string, handler: Handler): void {
    this.#streams.set(key, { id: fromId, handler })
    this.#wake()
  }

  unsubscribe(key: string): void {
    this.#streams.delete(key)
  }

  start(): void {
    this.#running = true
    this.#loop = this.#run(this.#reader)
  }

  async stop(): Promise<void> {
    this.#running = false
    this.#wake()
    await this.#loop
  }

  async #run(reader: BinaryClient): Promise<void> {
    let delay = RETRY_MIN_MS
    while (this.#running) {
      try {
        if (this.#readerId === null) this.#readerId = String(await this.#rawReader.clientId())
        const streams = [...this.#streams].map(([key, s]) => ({ key, id: s.id }))
        if (streams.length === 0) {
          await new Promise((resolve) => setTimeout(resolve, BLOCK_MS))
          this.lastReadAt = Date.now()
          continue
        }
        this.#blocked = true
        const result = (await reader.xRead(streams, { BLOCK: BLOCK_MS, COUNT })) as
          | { name: Buffer; messages: { id: Buffer; message: Record<string, Buffer> }[] }[]
          | null
        this.#blocked = false
        this.lastReadAt = Date.now()
        delay = RETRY_MIN_MS
        for (const stream of result ?? []) {
          const key = stream.name.toString()
          const sub = this.#streams.get(key)
          if (sub === undefined || stream.messages.length === 0) continue
          const entries = stream.messages.map((m) => ({ id: m.id.toString(), fields: m.message }))
          sub.id = entries[entries.length - 1]!.id
          try {
            sub.handler(entries)
          } catch (err) {
            this.#log.error({ err, stream: key }, 'applying stream entries failed')
          }
        }
      } catch (err) {
        this.#blocked = false
        this.#readerId = null // a reconnection gives the connection another id
        if (!this.#running) break
        this.#log.debug({ err: (err as Error).message }, 'stream read failed; retrying')
        await new Promise((resolve) => setTimeout(resolve, delay))
        delay = Math.min(delay * 2, RETRY_MAX_MS)
      }
    }
  }

  /** Ends the current blocking read at once, so it starts again with the streams as they are now. */
  #wake(): void {
    if (!this.#blocked || this.#readerId === null) return
    this.#command.sendCommand(['CLIENT', 'UNBLOCK', this.#readerId]).catch(() => undefined)
  }
}
