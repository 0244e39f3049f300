/**
 * Each process keeps a heartbeat key in Redis (expiring in `ttlMs`, renewed every `everyMs`). The
 * others check the keys of the processes whose presence they hold: when one expired (the process
 * was killed, or lost Redis), its clients' presence is removed from every room, within a few
 * seconds. A process that stops cleanly deletes its key at once.
 */

import type { FastifyBaseLogger } from 'fastify'
import type { ClusterKeys } from './keys.ts'
import type { RedisClient } from './redis.ts'

export interface HeartbeatDeps {
  readonly keys: ClusterKeys
  readonly command: RedisClient
  readonly processId: string
  readonly log: FastifyBaseLogger
  /** The processes whose presence this one holds. */
  readonly sources: () => ReadonlySet<string>
  /** A process's key expired. */
  readonly gone: (source: string) => void
  readonly everyMs: number
  readonly ttlMs: number
}

export class ProcessHeartbeat {
  readonly #deps: HeartbeatDeps
  #timer: NodeJS.Timeout | null = null

  constructor(deps: HeartbeatDeps) {
    this.#deps = deps
  }

  async start(): Promise<void> {
    await this.#beat()
    this.#timer = setInterval(() => void this.#beat().then(() => this.#check()), this.#deps.everyMs)
    this.#timer.unref()
  }

  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    await this.#deps.command.del(this.#deps.keys.process(this.#deps.processId)).catch(() => undefined)
  }

  async #beat(): Promise<void> {
    await this.#deps.command.set(this.#deps.keys.process(this.#deps.processId), String(Date.now()), { PX: this.#deps.ttlMs }).catch(() => undefined)
  }

  async #check(): Promise<void> {
    const sources = [...this.#deps.sources()]
    if (sources.length === 0) return
    try {
      const alive = await Promise.all(sources.map((s) => this.#deps.command.exists(this.#deps.keys.process(s))))
      sources.forEach((source, i) => {
        if (alive[i] === 0) {
          this.#deps.log.info({ process: source }, "a process is gone: removing its clients' presence")
          this.#deps.gone(source)
        }
      })
    } catch {
      // Redis away: nothing can be told now; the next beat checks again.
    }
  }
}
