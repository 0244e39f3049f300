/**
 * The playground (server/playground.ts, playground/) in a real browser (Chromium through
 * playwright-core): one page opens a room as Ada (write), Bob (read + presence) and Cyd (read).
 * Ada's typing reaches the readers, whose editors refuse input; Ada's cursor and name show in Bob's
 * editor; the admin panel downgrades Ada (her editor turns read-only at once) and revokes Cyd; the
 * history lists Ada as the actor. Screenshots go to test/artifacts/ (git-ignored); the README's
 * docs/playground.png is a copy of playground-2-admin.png, made by hand, so a test run changes no
 * committed file.
 *
 * Chromium is the system's when there is one, else the one inside `@sparticuz/chromium` (support/browser.ts).
 */

import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { launchChromium } from './support/browser.ts'
import { TEST_SECRET, type TestServer, startServer } from './support/server.ts'

const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url))
const WAIT = { timeout: 10_000 }

let server: TestServer
let browser: Browser | null = null
const pageErrors: string[] = []

beforeAll(async () => {
  server = await startServer({ authenticate: undefined, playground: true })
  mkdirSync(ARTIFACTS, { recursive: true })
  browser = await launchChromium()
})

afterAll(async () => {
  await browser?.close()
  await server?.destroy()
})

const pane = (user: string): string => `section.pane[data-user="${user}"]`
const textOf = (page: Page, user: string): Promise<string> => page.evaluate((u) => window.playground.panes[u]!.view!.state.doc.toString(), user)
const textIs = (page: Page, user: string, expected: string): Promise<unknown> =>
  page.waitForFunction(([u, value]) => window.playground.panes[u!]!.view!.state.doc.toString() === value, [user, expected], WAIT)
const shot = (page: Page, name: string): Promise<Buffer> => page.screenshot({ path: `${ARTIFACTS}${name}.png` })

it('a page opens a room as a writer and two readers; the admin panel downgrades and revokes them live', async () => {
  // The page and its script never carry the secret: the bridge keeps it on the server.
  for (const path of ['/playground', '/playground/app.js']) {
    const response = await fetch(`${server.httpUrl}${path}`)
    expect(response.status).toBe(200)
    expect(await response.text()).not.toContain(TEST_SECRET)
  }

  const context = await browser!.newContext({ viewport: { width: 1280, height: 700 } })
  const page = await context.newPage()
  page.on('pageerror', (err) => pageErrors.push(err.message))
  await page.goto(`${server.httpUrl}/playground`)
  await page.waitForFunction(
    () => ['ada', 'bob', 'cyd'].every((u) => window.playground?.panes[u]?.provider?.status === 'connected' && window.playground.panes[u]!.provider!.synced),
    null,
    WAIT,
  )
  await expect.poll(() => page.locator(`${pane('ada')} .cm-content`).getAttribute('contenteditable')).toBe('true')
  expect(await page.evaluate(() => window.playground.panes.bob!.provider!.self?.permissions)).toEqual(['room:presence:write', 'room:read'])

  // Ada types; both readers see it.
  await page.click(`${pane('ada')} .cm-content`)
  await page.keyboard.type('Hello from Ada')
  await Promise.all([textIs(page, 'bob', 'Hello from Ada'), textIs(page, 'cyd', 'Hello from Ada')])
  // Ada's cursor, with her name, in Bob's editor.
  await page.locator(`${pane('bob')} .cm-ySelectionInfo`, { hasText: 'Ada' }).waitFor(WAIT)

  // The readers' editors refuse input: typing there changes nothing, here or at Ada's.
  for (const reader of ['bob', 'cyd']) {
    expect(await page.locator(`${pane(reader)} .cm-content`).getAttribute('contenteditable')).toBe('false')
    await page.click(`${pane(reader)} .cm-content`)
    await page.keyboard.type('XYZ')
  }
  await page.click(`${pane('ada')} .cm-content`)
  await page.keyboard.press('End')
  await page.keyboard.type('!')
  await Promise.all([textIs(page, 'bob', 'Hello from Ada!'), textIs(page, 'cyd', 'Hello from Ada!')])
  expect(await textOf(page, 'ada')).toBe('Hello from Ada!')
  await page.waitForFunction(() => window.playground.panes.ada!.provider!.unsavedChanges === 0, null, WAIT)
  await shot(page, 'playground-1-typing')

  // Downgrade Ada to read through the admin panel: her editor turns read-only at once.
  await page.selectOption('select[name="access-ada"]', 'read')
  await page.locator(`${pane('ada')}[data-readonly="true"]`).waitFor(WAIT)
  await page.locator(`${pane('ada')} .cm-content[contenteditable="false"]`).waitFor(WAIT)
  await page.locator(`${pane('ada')} .badge`, { hasText: 'read-only' }).waitFor(WAIT)
  expect(await page.evaluate(() => window.playground.panes.ada!.provider!.status)).toBe('connected')

  // Revoke Cyd: her session is closed for good and her pane says why.
  await page.click('button[name="revoke-cyd"]')
  await page.locator(`${pane('cyd')}[data-revoked="true"]`).waitFor(WAIT)
  await page.locator(`${pane('cyd')} .error`, { hasText: 'revoked' }).waitFor(WAIT)
  expect(await page.evaluate(() => window.playground.panes.cyd!.provider!.status)).toBe('disconnected')

  // The admin tables: Ada is the actor of the stored writes; Cyd is no longer an active user.
  await page.locator('#history tbody tr', { hasText: 'ada' }).first().waitFor(WAIT)
  await page.waitForFunction(
    () => {
      const text = document.querySelector('#active tbody')!.textContent ?? ''
      return text.includes('Ada') && text.includes('Bob') && !text.includes('Cyd')
    },
    null,
    WAIT,
  )
  expect(await page.locator('#history tbody tr', { hasText: 'bob' }).count()).toBe(0)
  expect(await page.locator('#history tbody tr', { hasText: 'cyd' }).count()).toBe(0)

  await shot(page, 'playground-2-admin')

  // Cyd rejoins: the panel reinstates her and mints a fresh token; her ACL entry still lets her read.
  await page.click(`${pane('cyd')} button[name="rejoin"]`)
  await page.locator(`${pane('cyd')}[data-status="connected"][data-revoked="false"]`).waitFor(WAIT)
  await textIs(page, 'cyd', 'Hello from Ada!')
  expect(pageErrors).toEqual([])
  await context.close()
}, 40_000)

it('with ?peers=1 the panes are on a WebRTC mesh: with Ada’s server path cut, her typing still reaches the readers', async () => {
  const context = await browser!.newContext({ viewport: { width: 1280, height: 700 } })
  const page = await context.newPage()
  page.on('pageerror', (err) => pageErrors.push(err.message))
  await page.goto(`${server.httpUrl}/playground?room=playground-mesh&peers=1`)
  await page.waitForFunction(
    () =>
      ['ada', 'bob', 'cyd'].every(
        (u) => window.playground?.panes[u]?.provider?.synced && (window.playground.panes[u]!.provider!.mesh?.peers.length ?? 0) === 2,
      ),
    null,
    { timeout: 20_000 },
  )
  await page.uncheck(`${pane('ada')} input[name="server-path"]`)
  await page.waitForFunction(() => window.playground.panes.ada!.provider!.status === 'disconnected', null, WAIT)
  await page.click(`${pane('ada')} .cm-content`)
  await page.keyboard.type('Peer to peer')
  await Promise.all([textIs(page, 'bob', 'Peer to peer'), textIs(page, 'cyd', 'Peer to peer')])
  expect(await page.evaluate(() => window.playground.panes.ada!.provider!.unsavedChanges)).toBeGreaterThan(0)
  await shot(page, 'playground-3-mesh')

  await page.check(`${pane('ada')} input[name="server-path"]`)
  await page.waitForFunction(() => window.playground.panes.ada!.provider!.unsavedChanges === 0, null, WAIT)
  expect(pageErrors).toEqual([])
  await context.close()
}, 40_000)
