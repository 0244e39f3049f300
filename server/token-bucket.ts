/**
 * A token bucket: `rate` tokens a second, up to `burst` saved. One per connection for messages and
 * one for bytes; taking costs two float operations and no timer.
 */

export class TokenBucket {
  readonly #rate: number
  readonly #burst: number
  #tokens: number
  #at: number

  constructor(ratePerSecond: number, burst: number, now: number) {
    this.#rate = ratePerSecond / 1000
    this.#burst = burst
    this.#tokens = burst
    this.#at = now
  }

  /** Takes `amount` tokens; false (and nothing taken) when the bucket has too few. */
  take(amount: number, now: number): boolean {
    this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#at) * this.#rate)
    this.#at = now
    if (this.#tokens < amount) return false
    this.#tokens -= amount
    return true
  }
}
