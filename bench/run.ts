/**
 * `npm run bench [-- --quick] [--filter <substring>] [--seed <n>]`: loads every `bench/<id>-<name>.ts`,
 * runs the ones whose `<id>-<name>` contains the filter, prints a table, and writes
 * `bench/results/<timestamp>.json`, `latest.json` and `latest.svg`. Exits 1 if a scenario failed
 * (a scenario throws when its own correctness check fails).
 */

import { readdirSync } from 'node:fs'
import { cpus } from 'node:os'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { table, writeReport } from './support/report.ts'
import type { Result, Scenario } from './types.ts'

const here = fileURLToPath(new URL('.', import.meta.url))

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    filter: { type: 'string', multiple: true },
    seed: { type: 'string', default: '1' },
    'no-write': { type: 'boolean', default: false },
  },
})
const quick = values.quick!
const seed = Number(values.seed)
const filters = values.filter ?? []

const files = readdirSync(here)
  .filter((f) => /^\d\d-[a-z0-9-]+\.ts$/.test(f))
  .sort()
const scenarios: Scenario[] = []
for (const file of files) {
  const mod = (await import(pathToFileURL(`${here}${file}`).href)) as { scenario: Scenario }
  const key = `${mod.scenario.id}-${mod.scenario.name}`
  if (filters.length === 0 || filters.some((f) => key.includes(f))) scenarios.push(mod.scenario)
}
if (scenarios.length === 0) {
  console.error(`no scenario matches ${filters.join(', ')}; have: ${files.join(', ')}`)
  process.exit(1)
}

const startedAt = new Date().toISOString()
const t0 = performance.now()
const results: Result[] = []
const failures: { scenario: string; error: string }[] = []
for (const s of scenarios) {
  const key = `${s.id}-${s.name}`
  const t = performance.now()
  process.stderr.write(`[bench] ${key}${quick ? ' (quick)' : ''}...\n`)
  try {
    const got = await s.run({ quick, seed })
    results.push(...got)
    process.stderr.write(`[bench] ${key} done in ${((performance.now() - t) / 1_000).toFixed(1)} s\n`)
    console.log(`${table(got)}\n`)
  } catch (err) {
    const error = err instanceof Error ? (err.stack ?? err.message) : String(err)
    failures.push({ scenario: key, error })
    process.stderr.write(`[bench] ${key} FAILED: ${error}\n`)
  }
}
const durationMs = performance.now() - t0

console.log(`All results (${quick ? 'quick' : 'full'}, seed ${seed}, ${(durationMs / 1_000).toFixed(1)} s):\n`)
console.log(table(results))
if (!values['no-write']) {
  const file = writeReport(`${here}results`, { startedAt, quick, seed, node: process.version, cpus: cpus().length, durationMs, results, failures })
  console.log(`\nwrote ${file}, latest.json, latest.svg`)
}
if (failures.length > 0) {
  console.error(`\n${failures.length} scenario(s) failed: ${failures.map((f) => f.scenario).join(', ')}`)
  process.exit(1)
}
// Sockets and LevelDB handles of a failed scenario must not keep the process alive.
process.exit(0)
