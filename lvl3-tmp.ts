import { openLevelStore } from './server/store/level-store.ts'
import { mkdtempSync } from 'node:fs'
const store = await openLevelStore(mkdtempSync('/tmp/lvl-'))
const val = new Uint8Array(30).fill(3)
const w = { actor: { kind: 'anonymous' as const, sessionId: '0d6d7a1e-4c55-4e58-9a2b-3c1a2b3c4d5e' }, at: Date.now(), writes: 1, bytes: 30, clientIDs: [123456789] }
const seq = new Map<number, number>()
const hist = process.env.NOHIST ? [] : [w]
for (let round = 0; round < 6; round++) {
  const c0 = process.cpuUsage(); const t0 = performance.now()
  for (let turn = 0; turn < 500; turn++) {
    const ps = []
    for (let r = 0; r < 20; r++) { const s = seq.get(r) ?? 0; seq.set(r, s + 1); ps.push(store.append(`room-${r}`, s, [val], hist)) }
    await Promise.all(ps)
  }
  const c = process.cpuUsage(c0)
  console.log('per edit', ((performance.now() - t0) * 1000 / 10000).toFixed(1), 'µs wall', ((c.user + c.system) / 10000).toFixed(1), 'µs cpu')
}
