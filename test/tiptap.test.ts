/**
 * TipTap in a real browser (Chromium through playwright-core) on Tandem through the unmodified
 * Hocuspocus provider (test/browser/tiptap-page.ts): two writers in separate browser contexts see
 * each other's typing and carets, a reader's editor cannot edit (and what it forces through is never
 * applied), and a revocation through REST turns a writer away live. Screenshots go to
 * test/artifacts/ (git-ignored).
 */

import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createRoom, idToken, rest, updateRoom } from './support/access.ts'
import { pageHarness } from './support/browser.ts'
import { hocuspocusUrl } from './support/hocuspocus.ts'
import { type TestServer, startServer } from './support/server.ts'

const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url))
const ROOM = 'tiptap-room'

let server: TestServer
const pages = pageHarness(new URL('./browser/tiptap-page.ts', import.meta.url), new URL('./browser/tiptap.html', import.meta.url))

beforeAll(async () => {
  server = await startServer({ authenticate: undefined })
  await createRoom(server, { id: ROOM, defaultAccesses: [], usersAccesses: { ann: ['room:write'], bob: ['room:write'], rita: ['room:read'] } })
  mkdirSync(ARTIFACTS, { recursive: true })
})

afterAll(async () => {
  await server?.destroy()
})

const openEditor = async (userId: string, name: string, scope: 'read-write' | 'readonly'): Promise<Page> => {
  const query = { room: ROOM, url: hocuspocusUrl(server), token: await idToken({ userId }), name }
  const page = await pages.open(userId, query, { width: 560, height: 240 })
  await page.waitForFunction((want) => window.tiptap?.scope === want && window.tiptap.provider.isSynced, scope, { timeout: 10_000 })
  return page
}

const textIs = (page: Page, expected: string): Promise<unknown> =>
  page.waitForFunction((value) => window.tiptap.editor.getText() === value, expected, { timeout: 10_000 })

const shot = (page: Page, name: string): Promise<Buffer> => page.screenshot({ path: `${ARTIFACTS}${name}.png` })

it('two TipTap editors type into each other; a reader cannot edit; a revocation turns a writer away', async () => {
  const [ann, bob] = await Promise.all([openEditor('ann', 'Ann', 'read-write'), openEditor('bob', 'Bob', 'read-write')])

  await ann.click('.ProseMirror')
  await ann.keyboard.type('Hello from Ann')
  await textIs(bob, 'Hello from Ann')
  await bob.click('.ProseMirror')
  await bob.keyboard.press('End')
  await bob.keyboard.type(', and Bob')
  await textIs(ann, 'Hello from Ann, and Bob')
  // Carets: each editor shows the other's, labelled with its name.
  await ann.waitForFunction(() => document.querySelector('.collaboration-carets__label')?.textContent === 'Bob', null, { timeout: 10_000 })
  await bob.waitForFunction(() => document.querySelector('.collaboration-carets__label')?.textContent === 'Ann', null, { timeout: 10_000 })
  await Promise.all([ann, bob].map((page) => page.waitForFunction(() => !window.tiptap.provider.hasUnsyncedChanges, null, { timeout: 10_000 })))

  const rita = await openEditor('rita', 'Rita', 'readonly')
  await textIs(rita, 'Hello from Ann, and Bob')
  expect(await rita.evaluate(() => window.tiptap.editor.isEditable)).toBe(false)
  await rita.click('.ProseMirror')
  await rita.keyboard.type('typed by rita')
  expect(await rita.evaluate(() => window.tiptap.editor.getText())).toBe('Hello from Ann, and Bob')
  // What an app forces through anyway is refused by the server and never reaches the others.
  await rita.evaluate(() => {
    window.tiptap.editor.setEditable(true)
    window.tiptap.editor.commands.insertContent(' forced by rita')
  })
  await rita.waitForFunction(() => window.tiptap.notices.includes('read_only'), null, { timeout: 10_000 })
  await ann.click('.ProseMirror')
  await ann.keyboard.press('End')
  await ann.keyboard.type('!')
  await textIs(bob, 'Hello from Ann, and Bob!')
  await rita.waitForFunction(() => window.tiptap.editor.getText().includes('!'), null, { timeout: 10_000 })
  expect(await ann.evaluate(() => window.tiptap.editor.getText())).toBe('Hello from Ann, and Bob!')

  // Bob loses access through REST: his editor is told at once and stops being editable.
  await updateRoom(server, ROOM, { usersAccesses: { bob: null } })
  await bob.waitForFunction(() => window.tiptap.refusals.some((r) => r.startsWith('revoked:')), null, { timeout: 5_000 })
  expect(await bob.evaluate(() => window.tiptap.editor.isEditable)).toBe(false)
  await ann.keyboard.type(' Bye.')
  await rita.waitForFunction(() => window.tiptap.editor.getText().includes(' Bye.'), null, { timeout: 10_000 })
  await textIs(bob, 'Hello from Ann, and Bob!')
  const doc = await rest(server, 'GET', `/v1/rooms/${ROOM}/ydoc`)
  expect(JSON.stringify(doc.body)).not.toContain('rita')

  await Promise.all([shot(ann, 'tiptap-writer-ann'), shot(bob, 'tiptap-revoked-bob'), shot(rita, 'tiptap-reader-rita')])
  expect(pages.errors).toEqual([])
}, 60_000)
