/**
 * `npm run build`: type-checks and emits ESM with declarations to dist/ (tsconfig.build.json), then
 * bundles the browser entries with esbuild as a check that they pull in no Node builtin, and prints
 * each one's minified size. Exits non-zero if any step fails.
 */

import { execFileSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { BROWSER_ENTRIES, bundleForBrowser, describeSize } from './browser-bundle.ts'

process.chdir(fileURLToPath(new URL('..', import.meta.url)))

rmSync('dist', { recursive: true, force: true })

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
try {
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' })
} catch {
  process.stderr.write('build: tsc failed\n')
  process.exit(1)
}

for (const [subpath, entry] of Object.entries(BROWSER_ENTRIES)) {
  try {
    const own = await bundleForBrowser(entry, { externals: 'own', logLevel: 'error' })
    const withDeps = await bundleForBrowser(entry, { externals: 'deps', logLevel: 'error' })
    console.log(`${subpath}: ${describeSize(own.code)}, dependencies external`)
    console.log(`${subpath}: ${describeSize(withDeps.code)} with dependencies, yjs external`)
  } catch {
    // esbuild has already printed its errors (logLevel 'error').
    process.stderr.write(`build: ${subpath} (${entry}) does not bundle for the browser\n`)
    process.exit(1)
  }
}
