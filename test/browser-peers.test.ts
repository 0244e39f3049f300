/**
 * TandemProvider's WebRTC mesh in a real browser (Chromium through playwright-core, the page of
 * test/browser/page.ts with `peers`): two writer pages in separate browser contexts link over
 * WebRTC (host candidates on this machine) through Tandem's signalling, and with their path to the
 * server stalled (a pausable TCP proxy in front of it) each page's typing still reaches the other;
 * once the path flows again, the server has stored it.
 */

import type { Page } from 'playwright-core'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createRoom, idToken, rest } from './support/access.ts'
import { pageHarness } from './support/browser.ts'
import { type PausableProxy, startPausableProxy } from './support/pausable-proxy.ts'
import { type TestServer, startServer } from './support/server.ts'

const ROOM = 'browser-mesh'

let server: TestServer
let proxy: PausableProxy
const pages = pageHarness(new URL('./browser/page.ts', import.meta.url), new URL('./browser/index.html', import.meta.url))

beforeAll(async () => {
  server = await startServer({ authenticate: undefined })
  proxy = await startPausableProxy(server.port)
  await createRoom(server, { id: ROOM, defaultAccesses: [], usersAccesses: { ann: ['room:write'], bob: ['room:write'] } })
})

afterAll(async () => {
  await proxy?.close()
  await server?.destroy()
})

const openPage = async (userId: string): Promise<Page> => {
  const page = await pages.open(userId, {
    room: ROOM,
    url: `ws://127.0.0.1:${proxy.port}`,
    signal: `ws://127.0.0.1:${server.port}/v1/signal`,
    token: await idToken({ userId }),
  })
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
  expect(pages.errors).toEqual([])
}, 60_000)
