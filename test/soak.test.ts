/**
 * The soak's short form (soak/run.ts, `npm run soak` for the long one): ~15 s, 60 connections in 6
 * rooms, real token auth, ACL changes, revocations and a restart with a reconnect storm; every room
 * converges, matches the disk, and nothing leaks.
 */

import { expect, it } from 'vitest'
import { runSoak } from '../soak/run.ts'

const seed = process.env.TANDEM_SEED === undefined || process.env.TANDEM_SEED === '' ? undefined : Number(process.env.TANDEM_SEED)

// Past the soak's own deadlines (15 s of load, then at most 30 s each to settle the reconnect storm,
// to converge and to unload): a stuck phase is reported with who is behind, never as a timeout.
it('a short soak passes every check', { timeout: 200_000 }, async () => {
  const report = await runSoak({ seconds: 15, connections: 60, ...(seed !== undefined && { seed }) })
  expect(report.failures).toEqual([])
  expect(report.passed).toBe(true)
  expect(report.counts.restarts).toBe(1)
  expect(report.counts.roomsChecked).toBeGreaterThan(0)
})
