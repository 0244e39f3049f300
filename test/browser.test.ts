/**
 * The provider in a real browser (Chromium through playwright-core): the page script
 * (test/browser/page.ts, bundled here with esbuild for the browser) binds a <textarea> to a room.
 * Two writer pages in separate browser contexts (so no BroadcastChannel between them: only the
 * server carries edits) see each other's typing; a reader page sees the text and is read-only.
 * Screenshots go to test/artifacts/ (git-ignored).
 *
 * Chromium is the system's when there is one, else the one inside `@sparticuz/chromium` (support/browser.ts).
 */

import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { pageHarness } from './support/browser.ts'
import { createRoom, idToken } from './support/access.ts'
import { type TestServer, startServer } from './support/server.ts'

const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url))
const ROOM = 'browser-room'

let server: TestServer
const pages = pageHarness(new URL('./browser/page.ts', import.meta.url), new URL('./browser/index.html', import.meta.url))

beforeAll(async () => {
  server = await startServer({ authenticate: undefined })
  await createRoom(server, { id: ROOM, defaultAccesses: [], usersAccesses: { ann: ['room:write'], bob: ['room:write'], rita: ['room:read'] } })
  mkdirSync(ARTIFACTS, { recursive: true })
})

afterAll(async () => {
  await server?.destroy()
})

/** A page in its own browser context (its own BroadcastChannel scope), bound to the room as `userId`. */
const openPage = async (userId: string): Promise<Page> => {
  const query = { room: ROOM, url: `ws://127.0.0.1:${server.port}`, token: await idToken({ userId }) }
  const page = await pages.open(userId, query, { width: 560, height: 220 })
  await page.waitForFunction(() => window.tandem?.provider.status === 'connected' && window.tandem.provider.synced, null, { timeout: 10_000 })
  return page
}

const textareaIs = (page: Page, expected: string): Promise<unknown> =>
  page.waitForFunction((value) => document.querySelector('textarea')!.value === value, expected, { timeout: 10_000 })

const shot = (page: Page, name: string): Promise<Buffer> => page.screenshot({ path: `${ARTIFACTS}${name}.png` })

it('two writer pages see each other’s typing through the server; a reader page sees it, read-only', async () => {
  const [page1, page2] = await Promise.all([openPage('ann'), openPage('bob')])
  expect(await page1.evaluate(() => window.tandem.provider.readOnly)).toBe(false)
  expect(await page1.evaluate(() => window.tandem.provider.self?.userId)).toBe('ann')

  await page1.fill('textarea', 'hello from page 1')
  await textareaIs(page2, 'hello from page 1')

  await page2.focus('textarea')
  await page2.keyboard.press('End')
  await page2.keyboard.type(', and page 2')
  await textareaIs(page1, 'hello from page 1, and page 2')
  await Promise.all([page1, page2].map((page) => page.waitForFunction(() => window.tandem.provider.unsavedChanges === 0, null, { timeout: 10_000 })))

  const page3 = await openPage('rita')
  await textareaIs(page3, 'hello from page 1, and page 2')
  expect(await page3.evaluate(() => window.tandem.provider.readOnly)).toBe(true)
  expect(await page3.evaluate(() => window.tandem.provider.self?.permissions)).toEqual(['room:read'])
  expect(await page3.locator('textarea').evaluate((el) => (el as HTMLTextAreaElement).readOnly)).toBe(true)

  // A reader's own edit stays local: after a writer's later edit reached the reader, the writers
  // still do not have it (the server relays in order; the provider never sent it).
  await page3.evaluate(() => window.tandem.text.insert(0, 'R:'))
  expect(await page3.evaluate(() => window.tandem.provider.unsavedChanges)).toBe(1)
  await page1.focus('textarea')
  await page1.keyboard.press('End')
  await page1.keyboard.type('!')
  await page3.waitForFunction(() => window.tandem.text.toString().endsWith('page 2!'), null, { timeout: 10_000 })
  await textareaIs(page2, 'hello from page 1, and page 2!')
  expect(await page1.evaluate(() => window.tandem.text.toString())).toBe('hello from page 1, and page 2!')

  await Promise.all([shot(page1, 'browser-writer-ann'), shot(page2, 'browser-writer-bob'), shot(page3, 'browser-reader-rita')])
  expect(pages.errors).toEqual([])
}, 30_000)
