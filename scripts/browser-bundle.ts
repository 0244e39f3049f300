/**
 * Bundles a package entry for the browser with esbuild, as a check that it pulls in no Node builtin.
 * Used by `npm run build` (which prints the sizes) and by test/package.test.ts.
 *
 * esbuild on `platform: 'browser'` already fails to resolve `node:fs` or `fs`, but a dependency's
 * `browser` field may map a builtin to an empty module, which would pass silently. The plugin below
 * refuses every builtin before that mapping happens, so the check errors rather than shims.
 */

import { isBuiltin } from 'node:module'
import { gzipSync } from 'node:zlib'
import * as esbuild from 'esbuild'

/** The entries that must bundle for the browser, by the subpath users import. */
export const BROWSER_ENTRIES = {
  'tandem/client': 'client/index.ts',
  'tandem/admin': 'admin/index.ts',
} as const

/**
 * What stays out of the bundle. `own`: every package, so the size is Tandem's code alone. `deps`:
 * only `yjs`, which an app using the client already has (lib0 modules that yjs also uses are counted,
 * although an app's bundler would share them). `none`: nothing, so the check covers the whole graph.
 */
export type Externals = 'own' | 'deps' | 'none'

export interface BrowserBundleOptions {
  readonly externals: Externals
  /** Defaults to the working directory; entry paths are relative to it. */
  readonly cwd?: string
  readonly logLevel?: esbuild.LogLevel
}

export interface BrowserBundle {
  readonly code: Uint8Array
  readonly metafile: esbuild.Metafile
}

const refuseNodeBuiltins: esbuild.Plugin = {
  name: 'refuse-node-builtins',
  setup(build) {
    build.onResolve({ filter: /.*/ }, (args) => {
      if (!isBuiltin(args.path)) return undefined
      const by = args.importer === '' ? 'the entry' : args.importer
      return { errors: [{ text: `"${args.path}" is a Node builtin (imported by ${by}); a browser entry must not import it` }] }
    })
  },
}

const externalOptions = (externals: Externals): Pick<esbuild.BuildOptions, 'packages' | 'external'> => {
  switch (externals) {
    case 'own':
      return { packages: 'external' }
    case 'deps':
      return { external: ['yjs'] }
    case 'none':
      return {}
    default: {
      const unknown: never = externals
      throw new Error(`unknown externals: ${String(unknown)}`)
    }
  }
}

/** Bundles and minifies `entry` for the browser; rejects (with esbuild's errors) on a Node builtin. */
export async function bundleForBrowser(entry: string, options: BrowserBundleOptions): Promise<BrowserBundle> {
  const result = await esbuild.build({
    entryPoints: [entry],
    absWorkingDir: options.cwd ?? process.cwd(),
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    bundle: true,
    minify: true,
    write: false,
    metafile: true,
    logLevel: options.logLevel ?? 'silent',
    plugins: [refuseNodeBuiltins],
    ...externalOptions(options.externals),
  })
  const output = result.outputFiles[0]
  if (output === undefined) throw new Error(`esbuild wrote no output for ${entry}`)
  return { code: output.contents, metafile: result.metafile }
}

/** Every import in the bundle's graph, bundled or external, that names a Node builtin. */
export function nodeBuiltinImports(metafile: esbuild.Metafile): string[] {
  const found = new Set<string>()
  for (const [path, input] of Object.entries(metafile.inputs)) {
    if (isBuiltin(path)) found.add(path)
    for (const record of input.imports) if (isBuiltin(record.path)) found.add(record.path)
  }
  return [...found]
}

const kib = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`

/** `14.2 KiB minified (5.1 KiB gzip)` */
export function describeSize(code: Uint8Array): string {
  return `${kib(code.byteLength)} minified (${kib(gzipSync(code, { level: 9 }).byteLength)} gzip)`
}
