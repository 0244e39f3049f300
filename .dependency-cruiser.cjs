/**
 * The layers of the code and which way their imports may point (issue 13). `npm test` runs
 * `npm run check:deps` (depcruise), which fails on an import cycle or a wrong-way import.
 *
 *   protocol/         imports nothing of ours: both sides of the wire, and the browser, share it
 *   client/, admin/   protocol only
 *   server/store/     protocol and the server's leaf modules
 *   server/rooms/     store, protocol, leaves (never sync, auth, rest, cli)
 *   server/auth/      store, protocol, leaves (never rooms, sync, rest, cli)
 *   server/sync/      rooms, auth, store, protocol, leaves (never rest, cli)
 *   server/rest/      rooms, auth, store, protocol, leaves (never sync, cli)
 *   server/cluster/   rooms, auth, store, protocol, leaves (the distributed mode; never sync, rest, cli)
 *   server/signal/    auth, sync (its socket), store, protocol, leaves (WebRTC signalling; never rooms, rest, cli)
 *   server/cli/       anything; nothing imports it
 * Leaves are the modules directly in server/ that no layer owns (limits, metrics, error-reply,
 * config-error, keyed-serial, token-bucket); the composition root (create-server.ts, engines.ts,
 * index.ts, options.ts, playground.ts) may import every layer.
 */
const LEAVES = '^server/(limits|metrics|config-error|error-reply|keyed-serial|token-bucket)\\.ts$'
const layer = (name, allowed) => ({
  name: `${name}-imports`,
  comment: `server/${name}/ may import only ${allowed.join(', ')}`,
  severity: 'error',
  from: { path: `^server/${name}/` },
  to: { path: '^(server|protocol|client|admin)/', pathNot: [`^server/${name}/`, LEAVES, ...allowed.map((a) => `^${a}/`)] },
})

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    { name: 'protocol-is-pure', severity: 'error', from: { path: '^protocol/' }, to: { path: '^(server|client|admin)/' } },
    { name: 'client-imports-protocol-only', severity: 'error', from: { path: '^(client|admin)/' }, to: { path: '^server/' } },
    { name: 'leaves-import-no-layer', severity: 'error', from: { path: LEAVES }, to: { path: '^server/(sync|rooms|auth|store|rest|cli|cluster|signal)/' } },
    { name: 'nothing-imports-cli', severity: 'error', from: { pathNot: '^server/cli/' }, to: { path: '^server/cli/' } },
    layer('store', ['protocol']),
    layer('rooms', ['protocol', 'server/store']),
    layer('auth', ['protocol', 'server/store']),
    layer('sync', ['protocol', 'server/store', 'server/rooms', 'server/auth']),
    layer('rest', ['protocol', 'server/store', 'server/rooms', 'server/auth']),
    layer('cluster', ['protocol', 'server/store', 'server/rooms', 'server/auth']),
    layer('signal', ['protocol', 'server/store', 'server/auth', 'server/sync']),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
}
