/** What a benchmark scenario is and what it reports; `run.ts` loads every `bench/<id>-<name>.ts`. */

export interface BenchOptions {
  /** Shrink every workload about 10x (CI runs this form so the harness never rots). */
  readonly quick: boolean
  /** Seeds every generated workload: a run replays from its seed. */
  readonly seed: number
}

/** One figure. A scenario returns it only after it checked its own result was correct. */
export interface Result {
  readonly scenario: string
  readonly metric: string
  readonly value: number
  readonly unit: string
  /** The floor or peer this figure is compared with (same workload, same run). */
  readonly baseline?: { readonly label: string; readonly value: number }
  /** value / baseline.value. */
  readonly ratio?: number
  /** A goal for the ratio or the value, as text (`ratio <= 1.5`). */
  readonly target?: string
  /** Whether the target was met (absent when there is none). */
  readonly met?: boolean
  readonly note?: string
}

export interface Scenario {
  readonly id: string
  readonly name: string
  run(opts: BenchOptions): Promise<Result[]>
}

/** Throws when a scenario's own correctness check fails: no figure is printed for a wrong result. */
export function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`check failed: ${what}`)
}

export const compared = (base: Omit<Result, 'ratio' | 'baseline'>, label: string, baselineValue: number): Result => ({
  ...base,
  baseline: { label, value: baselineValue },
  ratio: base.value / baselineValue,
})
