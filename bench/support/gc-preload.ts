/**
 * Loaded into a server child process (with `--expose-gc`) by the memory benchmark: on SIGUSR2 it
 * runs a full GC and prints `bench-mem <heapUsed> <rss> <gc|nogc> <code>` on stderr, so the parent
 * reads memory after collection instead of whatever garbage happens to be live. `code` is the part
 * of heapUsed that is compiled code (V8's code spaces): the JIT compiles and re-tiers functions as
 * the first connections and rooms use them, a cost paid once per process, not per connection.
 */

import { codeHeapUsed } from './heap.ts'

process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  gc?.()
  const { heapUsed, rss } = process.memoryUsage()
  process.stderr.write(`bench-mem ${heapUsed} ${rss} ${gc ? 'gc' : 'nogc'} ${codeHeapUsed()}\n`)
})
