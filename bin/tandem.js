#!/usr/bin/env node
// The `tandem` bin. In a checkout the TypeScript sources are here: register tsx and run them, so a
// stale dist/ never shadows an edit. The published package ships only dist/ (package.json `files`),
// so there it runs the compiled CLI.
import { existsSync } from 'node:fs'

const source = new URL('../server/cli/main.ts', import.meta.url)
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api')
  register()
  await import(source.href)
} else {
  await import(new URL('../dist/server/cli/main.js', import.meta.url).href)
}
