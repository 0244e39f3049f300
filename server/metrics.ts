/**
 * Prometheus metrics for one server instance (its own registry: two servers in one process do not
 * share counters). Hot-path counts are plain number fields (`metrics.messagesIn++`); prom-client
 * reads them when /metrics is scraped, so counting a message costs one add.
 */

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export type RejectReason = 'read_only' | 'malformed' | 'too_large' | 'too_costly' | 'apply_failed'

/** A counter whose value is read from `read()` at scrape time. */
const countedBy = (registry: Registry, name: string, help: string, read: () => number): void => {
  let reported = 0
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const now = read()
      if (now > reported) this.inc(now - reported)
      reported = now
    },
  })
}

export class Metrics {
  readonly registry = new Registry()

  messagesIn = 0
  messagesOut = 0
  bytesIn = 0
  bytesOut = 0
  updatesApplied = 0
  compactions = 0
  storeErrors = 0
  readonly rejected: Record<RejectReason, number> = { read_only: 0, malformed: 0, too_large: 0, too_costly: 0, apply_failed: 0 }

  readonly roomsLoaded = new Gauge({ name: 'tandem_rooms_loaded', help: 'Rooms loaded in memory', registers: [this.registry] })
  readonly connections = new Gauge({ name: 'tandem_connections', help: 'Open WebSocket connections', registers: [this.registry] })
  readonly #storeLatency = new Histogram({
    name: 'tandem_store_latency_seconds',
    help: 'Document store operation latency',
    labelNames: ['op'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  })

  /** Distributed mode: how long after another process appended an update it was applied here. */
  readonly #clusterLag = new Histogram({
    name: 'tandem_cluster_lag_seconds',
    help: 'Time from another process appending an update to this process applying it',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [this.registry],
  })

  /** Distributed mode: engine round trips (Redis commands, PostgreSQL queries), by engine. */
  readonly #engineLatency = new Histogram({
    name: 'tandem_engine_latency_seconds',
    help: 'Round trips to Redis and PostgreSQL in the distributed mode',
    labelNames: ['engine'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  })

  observeClusterLag(seconds: number): void {
    this.#clusterLag.observe(seconds)
  }

  observeEngine(engine: 'redis' | 'postgres', seconds: number): void {
    this.#engineLatency.observe({ engine }, seconds)
  }

  constructor() {
    const r = this.registry
    countedBy(r, 'tandem_messages_in_total', 'WebSocket messages received', () => this.messagesIn)
    countedBy(r, 'tandem_messages_out_total', 'WebSocket messages sent', () => this.messagesOut)
    countedBy(r, 'tandem_bytes_in_total', 'WebSocket payload bytes received', () => this.bytesIn)
    countedBy(r, 'tandem_bytes_out_total', 'WebSocket payload bytes sent', () => this.bytesOut)
    countedBy(r, 'tandem_updates_applied_total', 'Document updates applied', () => this.updatesApplied)
    countedBy(r, 'tandem_compactions_total', 'Document log compactions', () => this.compactions)
    countedBy(r, 'tandem_store_errors_total', 'Failed document store operations', () => this.storeErrors)
    const rejected = new Counter({
      name: 'tandem_updates_rejected_total',
      help: 'Document updates refused, by reason',
      labelNames: ['reason'] as const,
      registers: [r],
      collect: () => {
        rejected.reset()
        for (const [reason, n] of Object.entries(this.rejected)) rejected.labels(reason).inc(n)
      },
    })
    collectDefaultMetrics({ register: r, prefix: 'tandem_process_' })
  }

  /** Times a store operation into the latency histogram. */
  async timeStore<T>(op: 'load' | 'append' | 'compact', run: () => Promise<T>): Promise<T> {
    const end = this.#storeLatency.startTimer({ op })
    try {
      return await run()
    } finally {
      end()
    }
  }
}
