/**
 * Run by the memory benchmark in a process of its own (`node --expose-gc --import tsx
 * bench/support/bare-doc-heap.ts <update file> <count>`): builds `count` bare Y.Docs holding the
 * update and prints the heap they take per doc, compiled code left out. What a room's document costs
 * by itself, measured where nothing else lives: in the bench's own process, what the scenarios
 * before it left behind was still being freed and once made the figure negative.
 */

import { readFileSync } from 'node:fs'
import * as Y from 'yjs'
import { codeHeapUsed } from './heap.ts'

const [file, countArg] = process.argv.slice(2)
const update = new Uint8Array(readFileSync(file!))
const count = Number(countArg)
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with --expose-gc')

const settled = async (): Promise<number> => {
  await new Promise((resolve) => setTimeout(resolve, 50))
  gc()
  gc()
  return process.memoryUsage().heapUsed - codeHeapUsed()
}

// Warm Yjs's paths first, so the docs measured do not pay for compiling them.
for (let i = 0; i < 20; i++) Y.applyUpdate(new Y.Doc(), update)
const before = await settled()
const docs: Y.Doc[] = []
for (let i = 0; i < count; i++) {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, update)
  docs.push(doc)
}
const after = await settled()
if (!docs.every((d) => d.store.clients.size > 0)) throw new Error('a bare doc holds nothing of the update')
process.stdout.write(`${(after - before) / count}\n`)
