/**
 * The control stream: access changes (ACL records, revocations, reinstatements, deletions) that
 * one process made, read by every process (the shared stream reader), which acts on its own live
 * sessions at once, as the origin did on its own: an ACL change made through any process reaches
 * the sessions on every process in the time of one Redis round trip.
 *
 * Fail closed: a process that cannot read the control stream for longer than `staleAfterMs` cannot
 * know what was revoked meanwhile, so it admits no session and closes the ones it has with 1013
 * (clients come back, to it or another process, once it reads again), rather than enforce stale
 * ACLs.
 */

import type { FastifyBaseLogger } from 'fastify'
import type { AccessEvent, AccessPublisher } from '../auth/access-events.ts'
import type { ClusterKeys } from './keys.ts'
import type { RedisClient } from './redis.ts'
import type { StreamEntry, StreamReader } from './stream-reader.ts'

/** Control entries kept (the stream is read as it grows; a process that was away reads from its position). */
const MAX_ENTRIES = 10_000

export interface ControlBusDeps {
  readonly keys: ClusterKeys
  readonly command: RedisClient
  readonly reader: StreamReader
  readonly processId: string
  readonly log: FastifyBaseLogger
  readonly staleAfterMs: number
}

export interface ControlHandlers {
  /** Acts on another process's change here. */
  readonly apply: (event: AccessEvent) => Promise<void>
  /** Called when this process can no longer hear the others (reason), and again once it can (null). */
  readonly stale: (reason: string | null) => void
}

export class ControlBus implements AccessPublisher {
  readonly #deps: ControlBusDeps
  #handlers: ControlHandlers | null = null
  #watchdog: NodeJS.Timeout | null = null
  #stale = false

  constructor(deps: ControlBusDeps) {
    this.#deps = deps
  }

  /** Starts reading after the stream's last entry now (what came before is in the store). */
  async start(handlers: ControlHandlers): Promise<void> {
    this.#handlers = handlers
    const last = await this.#deps.command.xRevRange(this.#deps.keys.control, '+', '-', { COUNT: 1 })
    this.#deps.reader.subscribe(this.#deps.keys.control, last[0]?.id ?? '0-0', (entries) => this.#entries(entries))
    this.#watchdog = setInterval(() => this.#check(), Math.max(100, this.#deps.staleAfterMs / 4))
    this.#watchdog.unref()
  }

  stop(): void {
    if (this.#watchdog !== null) clearInterval(this.#watchdog)
    this.#watchdog = null
  }

  async publish(event: AccessEvent): Promise<void> {
    await this.#deps.command.xAdd(
      this.#deps.keys.control,
      '*',
      { o: this.#deps.processId, e: JSON.stringify(event) },
      { TRIM: { strategy: 'MAXLEN', strategyModifier: '~', threshold: MAX_ENTRIES } },
    )
  }

  get isStale(): boolean {
    return this.#stale
  }

  #entries(entries: readonly StreamEntry[]): void {
    for (const entry of entries) {
      if (entry.fields.o?.toString() === this.#deps.processId) continue
      let event: AccessEvent
      try {
        event = JSON.parse(entry.fields.e?.toString() ?? 'null') as AccessEvent
      } catch {
        this.#deps.log.error({ entry: entry.id }, 'unreadable control entry skipped')
        continue
      }
      this.#handlers!.apply(event).catch((err: unknown) =>
        this.#deps.log.error({ err, event: event.kind }, 'applying an access change from another process failed'),
      )
    }
  }

  #check(): void {
    const silentFor = Date.now() - this.#deps.reader.lastReadAt
    if (!this.#stale && silentFor > this.#deps.staleAfterMs) {
      this.#stale = true
      const reason = `this process has not heard the other processes' access changes for ${silentFor} ms; try again later`
      this.#deps.log.error({ silentForMs: silentFor }, 'control stream unreadable: failing closed')
      this.#handlers!.stale(reason)
    } else if (this.#stale && silentFor <= this.#deps.staleAfterMs) {
      this.#stale = false
      this.#deps.log.warn('control stream readable again: admitting sessions')
      this.#handlers!.stale(null)
    }
  }
}
