/**
 * TandemProvider's WebRTC mesh in a real browser (Chromium through playwright-core, the page of
 * test/browser/page.ts with `peers`): two writer pages in separate browser contexts link over
 * WebRTC (host candidates on this machine) through Tandem's signalling, and with their path to the
 * server stalled (a pausable TCP proxy in front of it) each page's typing still reaches the other;
 * once the path flows again, the server has stored it.
 */

import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createRoom, idToken, rest } from './support/access.ts'
import { type PageServer, launchChromium, servePage } from './support/browser.ts'
import { type PausableProxy, startPausableProxy } from './support/pausable-proxy.ts'
import { type TestServer, startServer } from './support/server.ts'

const ROOM = 'browser-mesh'

let server: TestServer
let proxy: PausableProxy
let pages: PageServer | undefined
let browser: Browser | null = null
const contexts: BrowserContext[] = []
const pageErrors: string[] = []

beforeAll(async () => {
  pages = await servePage(new URL('./browser/page.ts', import.meta.url), new URL('./browser/index.html', import.meta.url))
  server = await startServer({ authenticate: undefined })
  proxy = await startPausableProxy(server.port)
  await createRoom(server, { id: ROOM, defaultAccesses: [], usersAccesses: { ann: ['room:write'], bob: ['room:write'] } })
  browser = await launchChromium()
})

afterAll(async () => {
  for (const context of contexts) await context.close()
  await browser?.close()
  await proxy?.close()
  await server?.destroy()
  await pages?.close()
})

const openPage = async (userId: string): Promise<Page> => {
  const context = await browser!.newContext()
  contexts.push(context)
  const page = await context.newPage()
  page.on('pageerror', (err) => pageErrors.push(`${userId}: ${err.message}`))
  const query = new URLSearchParams({
    room: ROOM,
    url: `ws://127.0.0.1:${proxy.port}`,
    signal: `ws://127.0.0.1:${server.port}/v1/signal`,
    token: await idToken({ userId }),
  })
  await page.goto(`${pages!.url}?${query}`)
  await page.waitForFunction(() => window.tandem?.provider.synced, null, { timeout: 10_000 })
  return page
}

it('two browser pages edit over their WebRTC link while the server path is stalled', async () => {
  const [ann, bob] = await Promise.all([openPage('ann'), openPage('bob')])
  await Promise.all([ann, bob].map((page) => page.waitForFunction(() => (window.tandem.provider.mesh?.peers.length ?? 0) === 1, null, { timeout: 20_000 })))
  proxy.pause()
  await ann.fill('textarea', 'straight from ann')
  await bob.waitForFunction(() => document.querySelector('textarea')!.value === 'straight from ann', null, { timeout: 10_000 })
  expect(await ann.evaluate(() => window.tandem.provider.unsavedChanges)).toBeGreaterThan(0)
  proxy.resume()
  await ann.waitForFunction(() => window.tandem.provider.unsavedChanges === 0, null, { timeout: 10_000 })
  expect(JSON.stringify((await rest(server, 'GET', `/v1/rooms/${ROOM}/ydoc`)).body)).toContain('straight from ann')
  expect(pageErrors).toEqual([])
}, 60_000)
