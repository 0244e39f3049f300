/**
 * The package as users get it: the browser entries bundle with no Node builtin (and the check can
 * fail), and the build emits ESM plus declarations that load and type-check through the `exports`
 * subpaths, as a consumer's Node and TypeScript resolve them.
 */

import { execFile } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import * as esbuild from 'esbuild'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BROWSER_ENTRIES, bundleForBrowser, nodeBuiltinImports } from '../scripts/browser-bundle.ts'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
const SUBPATHS = ['client', 'admin', 'protocol', 'server'] as const

const scratch = mkdtempSync(join(tmpdir(), 'tandem-package-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

/** Writes `files` (path relative to `dir` -> contents) and returns `dir`. */
const writeTree = (dir: string, files: Record<string, string>): string => {
  for (const [path, contents] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true })
    writeFileSync(join(dir, path), contents)
  }
  return dir
}

/** The esbuild errors a rejected build carries. */
const errorsOf = async (build: Promise<unknown>): Promise<string[]> => {
  const failure: unknown = await build.then(
    () => null,
    (err: unknown) => err,
  )
  expect(failure).not.toBeNull()
  return ((failure as esbuild.BuildFailure).errors ?? []).map((message) => message.text)
}

describe('browser entries', () => {
  it.each(Object.entries(BROWSER_ENTRIES))('%s (%s) bundles for the browser with no Node builtin', async (_subpath, entry) => {
    const bundle = await bundleForBrowser(entry, { externals: 'none', cwd: root })
    expect(Object.keys(bundle.metafile.inputs)).toContain(entry)
    expect(nodeBuiltinImports(bundle.metafile)).toEqual([])
    expect(bundle.code.byteLength).toBeGreaterThan(0)
  })

  it('fails on an entry that imports a Node builtin, with or without the node: prefix', async () => {
    const dir = writeTree(join(scratch, 'node-import'), {
      'prefixed.ts': "import { readFileSync } from 'node:fs'\nexport const read = readFileSync\n",
      'bare.ts': "export { createHash } from 'crypto'\n",
    })
    for (const entry of ['prefixed.ts', 'bare.ts']) {
      const errors = await errorsOf(bundleForBrowser(entry, { externals: 'none', cwd: dir }))
      expect(errors.join('\n')).toMatch(/is a Node builtin/)
    }
  })

  it("fails on a builtin that a dependency's browser field would have shimmed away", async () => {
    const dir = writeTree(join(scratch, 'shimmed'), {
      'entry.ts': "export { read } from 'uses-fs'\n",
      'node_modules/uses-fs/package.json': JSON.stringify({ name: 'uses-fs', main: 'index.js', browser: { fs: false } }),
      'node_modules/uses-fs/index.js': "import * as fs from 'fs'\nexport const read = fs.readFileSync\n",
    })
    // esbuild alone accepts it, replacing `fs` with an empty module ...
    await esbuild.build({ entryPoints: ['entry.ts'], absWorkingDir: dir, platform: 'browser', bundle: true, write: false, logLevel: 'silent' })
    // ... the check refuses it.
    const errors = await errorsOf(bundleForBrowser('entry.ts', { externals: 'none', cwd: dir }))
    expect(errors.join('\n')).toMatch(/"fs" is a Node builtin/)
  })
})

describe('emitted package', () => {
  // A copy of the package as installed: package.json, dist/ from tsconfig.build.json, and the
  // project's node_modules for its dependencies. A consumer inside it reaches `tandem/...` by
  // self-reference, so Node and TypeScript resolve the real `exports` map.
  const pkg = join(scratch, 'tandem')

  beforeAll(async () => {
    mkdirSync(pkg, { recursive: true })
    copyFileSync(join(root, 'package.json'), join(pkg, 'package.json'))
    symlinkSync(join(root, 'node_modules'), join(pkg, 'node_modules'), 'dir')
    await run(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', join(pkg, 'dist')])
  })

  it('has JavaScript and declarations for every subpath', () => {
    for (const subpath of SUBPATHS) {
      expect(existsSync(join(pkg, 'dist', subpath, 'index.js')), `${subpath}/index.js`).toBe(true)
      expect(existsSync(join(pkg, 'dist', subpath, 'index.d.ts')), `${subpath}/index.d.ts`).toBe(true)
    }
  })

  it('loads every subpath in plain Node and round-trips a frame through tandem/protocol', async () => {
    writeTree(pkg, {
      'consumer.mjs': `
        import { TandemProvider } from 'tandem/client'
        import { TandemAdmin } from 'tandem/admin'
        import { decodeClientMessage, encodeFrame, writeAuth } from 'tandem/protocol'
        import { createServer } from 'tandem/server'
        const decoded = decodeClientMessage(encodeFrame(writeAuth, 'tok.en'))
        const kinds = [TandemProvider, TandemAdmin, createServer].map((value) => typeof value)
        console.log(JSON.stringify({ decoded, kinds }))
      `,
    })
    const { stdout } = await run(process.execPath, [join(pkg, 'consumer.mjs')], { cwd: pkg })
    expect(JSON.parse(stdout)).toEqual({
      decoded: { kind: 'auth', version: 1, token: 'tok.en' },
      kinds: ['function', 'function', 'function'],
    })
  })

  it('type-checks a consumer against the emitted declarations', async () => {
    // Each @ts-expect-error holds only if the type resolved through the emitted .d.ts files: an
    // unresolved import would be `any`, and the unused directive would fail the check.
    writeTree(pkg, {
      'consumer.ts': `
        import { TandemProvider, type ErrorCode } from 'tandem/client'
        import { TandemAdmin } from 'tandem/admin'
        import { decodeClientMessage } from 'tandem/protocol'
        import { createServer } from 'tandem/server'
        // @ts-expect-error not an error code
        export const code: ErrorCode = 'no_such_code'
        // @ts-expect-error a provider needs options
        export const provider = new TandemProvider()
        // @ts-expect-error an admin needs options
        export const admin = new TandemAdmin()
        // @ts-expect-error a frame is bytes
        decodeClientMessage('frame')
        // @ts-expect-error options are an object
        void createServer(1)
      `,
      'tsconfig.json': JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          lib: ['ES2022', 'DOM'],
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
        },
        files: ['consumer.ts'],
      }),
    })
    const result = await run(process.execPath, [tsc, '-p', pkg]).then(
      () => '',
      (err: { stdout: string }) => err.stdout,
    )
    expect(result).toBe('')
  })
})
