/**
 * Redis key names of the distributed mode. Every key of one room shares a hash tag (`{...}`) made
 * from its id, so Redis Cluster keeps a room's keys on one shard and spreads rooms over shards
 * (room ids may hold braces themselves: the tag is a digest of the id, never the id). Everything
 * starts with the deployment's prefix (`--redis-prefix`, default `tandem:`), so several deployments,
 * or several test runs, share one Redis.
 */

import { createHash } from 'node:crypto'

export class ClusterKeys {
  readonly prefix: string

  constructor(prefix: string) {
    this.prefix = prefix
  }

  /** The hash tag of a room: 16 hex digits of its SHA-1. */
  tag(roomId: string): string {
    return `{${createHash('sha1').update(roomId).digest('hex').slice(0, 16)}}`
  }

  /** The room's durable log: a stream of the updates every process accepted. */
  log(roomId: string): string {
    return `${this.prefix}${this.tag(roomId)}:log`
  }

  /** The room's feed channel (pub/sub): each entry appended to its log, announced (log-feed.ts). */
  feed(roomId: string): string {
    return `${this.prefix}${this.tag(roomId)}:feed`
  }

  /** The room's presence channel (pub/sub: ephemeral, never in the log). */
  presence(roomId: string): string {
    return `${this.prefix}${this.tag(roomId)}:presence`
  }

  /** Access changes (ACLs, revocations, deletions) every process reads. */
  get control(): string {
    return `${this.prefix}control`
  }

  /** A process's heartbeat: gone when the process is (its clients' presence goes too). */
  process(id: string): string {
    return `${this.prefix}process:${id}`
  }
}
