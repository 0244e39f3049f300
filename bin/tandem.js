#!/usr/bin/env node
// The `tandem` bin: registers tsx so Node can load the TypeScript sources, then runs the CLI.
import { register } from 'tsx/esm/api'

register()
await import('../server/cli.ts')
