/**
 * Preloaded (`--import`) into every server a bench spawns: when the bench process dies without
 * running its exit handlers (a segfault in a native module, a SIGKILL), the pipe on this process's
 * stdin closes, and the server shuts down as on SIGTERM instead of staying on, pinned to the core
 * the next run measures on. Plain JS: it loads before tsx.
 */

process.stdin.on('end', () => process.kill(process.pid, 'SIGTERM'))
process.stdin.on('error', () => process.kill(process.pid, 'SIGTERM'))
process.stdin.resume()
// Reading stdin must not keep a server alive that is done.
process.stdin.unref()
