/**
 * The token bucket on explicit times (no clock is read): it starts full at `burst`, refills at
 * `rate` tokens a second, never holds more than `burst`, and a refused take takes nothing.
 */

import { describe, expect, it } from 'vitest'
import { TokenBucket } from '../server/token-bucket.ts'

/** How many takes of `amount` succeed at `now`, taken one after another. */
const drain = (bucket: TokenBucket, amount: number, now: number): number => {
  let n = 0
  while (bucket.take(amount, now)) n++
  return n
}

describe('TokenBucket', () => {
  it('starts full: a burst is taken at once, then nothing more', () => {
    const bucket = new TokenBucket(10, 5, 1_000)
    expect(drain(bucket, 1, 1_000)).toBe(5)
    expect(bucket.take(1, 1_000)).toBe(false)
  })

  it('takes the whole burst in one take, not more', () => {
    expect(new TokenBucket(10, 5, 0).take(5, 0)).toBe(true)
    expect(new TokenBucket(10, 5, 0).take(5.0001, 0)).toBe(false)
    // More than a burst can never be taken, however long the wait.
    expect(new TokenBucket(10, 5, 0).take(6, 1e9)).toBe(false)
  })

  it('refills at the rate per second', () => {
    const bucket = new TokenBucket(10, 5, 0)
    drain(bucket, 1, 0)
    expect(bucket.take(1, 99)).toBe(false) // 0.99 tokens
    expect(bucket.take(1, 100)).toBe(true) // 1 token
    expect(bucket.take(1, 100)).toBe(false)
    expect(drain(bucket, 1, 400)).toBe(3) // 300 ms: 3 tokens
  })

  it('refills fractions: a byte bucket takes what the time earned', () => {
    const bytes = new TokenBucket(1_000, 1_000, 0) // 1,000 bytes a second
    expect(bytes.take(1_000, 0)).toBe(true)
    expect(bytes.take(250, 250)).toBe(true)
    expect(bytes.take(251, 500)).toBe(false)
    expect(bytes.take(250, 500)).toBe(true)
  })

  it('never saves more than the burst, however long it was idle', () => {
    const bucket = new TokenBucket(10, 5, 0)
    drain(bucket, 1, 0)
    expect(drain(bucket, 1, 3_600_000)).toBe(5)
    // Idle again after a partial drain: still capped at the burst.
    bucket.take(1, 3_700_000)
    expect(drain(bucket, 1, 3_800_000)).toBe(5)
  })

  it('a refused take takes nothing', () => {
    const bucket = new TokenBucket(10, 5, 0)
    expect(bucket.take(6, 0)).toBe(false)
    expect(bucket.take(5, 0)).toBe(true)
    expect(bucket.take(0.5, 50)).toBe(true) // 0.5 earned
    expect(bucket.take(1, 100)).toBe(false) // 0.5 earned, nothing taken
    expect(bucket.take(1, 150)).toBe(true) // 1.0: the refused take kept its half
  })

  it('refused takes in a row keep earning', () => {
    const bucket = new TokenBucket(10, 5, 0)
    drain(bucket, 1, 0)
    for (let t = 10; t < 300; t += 10) expect(bucket.take(3, t)).toBe(false)
    expect(bucket.take(3, 300)).toBe(true)
  })

  it('taking nothing always succeeds and costs nothing', () => {
    const bucket = new TokenBucket(1, 2, 0)
    drain(bucket, 1, 0)
    expect(bucket.take(0, 0)).toBe(true)
    expect(bucket.take(1, 999)).toBe(false)
    expect(bucket.take(1, 1_000)).toBe(true)
  })

  it('a rate of zero never refills', () => {
    const bucket = new TokenBucket(0, 3, 0)
    expect(drain(bucket, 1, 0)).toBe(3)
    expect(bucket.take(1, 1e12)).toBe(false)
  })
})
