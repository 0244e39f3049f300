/**
 * Loaded into a server child process (with `--expose-gc`) by the memory benchmark: on SIGUSR2 it
 * runs a full GC and prints `bench-mem <heapUsed> <rss>` on stderr, so the parent reads memory after
 * collection instead of whatever garbage happens to be live.
 */

process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  gc?.()
  const { heapUsed, rss } = process.memoryUsage()
  process.stderr.write(`bench-mem ${heapUsed} ${rss} ${gc ? 'gc' : 'nogc'}\n`)
})
