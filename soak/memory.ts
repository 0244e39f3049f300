/**
 * Heap measurement for the soak and the fuzz suite: a full garbage collection before each reading.
 * `global.gc` exists under `node --expose-gc` (the soak script); elsewhere (vitest workers) the flag
 * is set at run time and V8's `gc` taken from a fresh context, which is the same function.
 */

import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

type Gc = () => void

let collector: Gc | null = null

/** The full-collection function: `global.gc`, or one exposed now. */
export const gcFunction = (): Gc => {
  if (collector !== null) return collector
  const exposed = (globalThis as { gc?: Gc }).gc
  if (typeof exposed === 'function') {
    collector = exposed
  } else {
    setFlagsFromString('--expose-gc')
    collector = runInNewContext('gc') as Gc
  }
  return collector
}

/** Heap in use after a full collection (run twice: weak references and finalizers free more on the second). */
export const settledHeapBytes = async (): Promise<number> => {
  const gc = gcFunction()
  for (let i = 0; i < 2; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  return process.memoryUsage().heapUsed
}

export const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`
