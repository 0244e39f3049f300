/** Small helpers for timing and summarising samples. */

export const nowUs = (): number => performance.now() * 1_000

export const median = (xs: readonly number[]): number => quantile(xs, 0.5)

export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

/** Resolves after pending I/O callbacks ran (one event-loop turn). */
export const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

export const round = (x: number, digits = 3): number => Number(x.toPrecision(digits))
