/**
 * A headless Chromium for the browser tests, found where it is: `TANDEM_CHROMIUM` when set, else the
 * system's (Debian's `chromium` package, which `.ci/run` installs), else the one shipped inside the
 * `@sparticuz/chromium` npm package (unpacked from the package on first use, nothing downloaded), so
 * `npm test` on a fresh clone needs no system package.
 */

import { existsSync, readFileSync } from 'node:fs'
import { createServer as createHttpServer } from 'node:http'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { type Browser, type BrowserContext, type LaunchOptions, type Page, chromium } from 'playwright-core'
import { afterAll, beforeAll } from 'vitest'

const SYSTEM_CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser']

/**
 * Flags every launch takes: root in a container needs no sandbox; the machine's network is closed;
 * WebRTC host candidates as they are (not hidden behind mDNS names, which nothing resolves here).
 */
const COMMON_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-gpu',
  '--no-first-run',
  '--disable-component-update',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
]

export interface ChromiumBinary {
  readonly executablePath: string
  readonly args: readonly string[]
  /** Where it came from, for the test log. */
  readonly source: 'env' | 'system' | '@sparticuz/chromium'
}

export async function findChromium(): Promise<ChromiumBinary> {
  const fromEnv = process.env.TANDEM_CHROMIUM
  if (fromEnv !== undefined && fromEnv !== '') return { executablePath: fromEnv, args: [], source: 'env' }
  const system = SYSTEM_CHROMIUM.find((path) => existsSync(path))
  if (system !== undefined) return { executablePath: system, args: [], source: 'system' }
  const { default: packaged } = await import('@sparticuz/chromium')
  // Its own flags (headless shell, swiftshader), but not one process: there, closing one browser
  // context ends the whole browser.
  const args = packaged.args.filter((arg) => arg !== '--single-process')
  return { executablePath: await packaged.executablePath(), args, source: '@sparticuz/chromium' }
}

export async function launchChromium(options: Omit<LaunchOptions, 'executablePath'> = {}): Promise<Browser> {
  const binary = await findChromium()
  return chromium.launch({ ...options, executablePath: binary.executablePath, args: [...binary.args, ...COMMON_ARGS, ...(options.args ?? [])] })
}

export interface PageServer {
  /** http://127.0.0.1:PORT/ — the page; its script is /page.js. */
  readonly url: string
  close(): Promise<void>
}

/**
 * Serves one test page on 127.0.0.1: `html` at `/`, and `entry` bundled for the browser with
 * esbuild at `/page.js`.
 */
export async function servePage(entry: URL, html: URL): Promise<PageServer> {
  const bundle = await build({
    entryPoints: [fileURLToPath(entry)],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    write: false,
    logLevel: 'silent',
  })
  const script = bundle.outputFiles[0]!.contents
  const page = readFileSync(html)
  const server = createHttpServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      res.end(page)
    } else if (path === '/page.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' })
      res.end(script)
    } else {
      res.writeHead(404).end()
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return { url: `http://127.0.0.1:${port}/`, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

export interface PageHarness {
  /** Page errors of every page opened, each prefixed by its label. */
  readonly errors: string[]
  /** Opens the page at `?query` in a browser context of its own (its own storage and BroadcastChannel). */
  open(label: string, query: Record<string, string>, viewport?: { width: number; height: number }): Promise<Page>
}

/**
 * One test page and a Chromium for a whole test file (its hooks registered here): the page served
 * by `servePage`, each `open` in a context of its own, everything closed after the file.
 */
export function pageHarness(entry: URL, html: URL): PageHarness {
  let pages: PageServer | undefined
  let browser: Browser | undefined
  const contexts: BrowserContext[] = []
  const errors: string[] = []
  beforeAll(async () => {
    pages = await servePage(entry, html)
    browser = await launchChromium()
  })
  afterAll(async () => {
    for (const context of contexts) await context.close()
    await browser?.close()
    await pages?.close()
  })
  return {
    errors,
    async open(label, query, viewport) {
      const context = await browser!.newContext(viewport === undefined ? {} : { viewport })
      contexts.push(context)
      const page = await context.newPage()
      page.on('pageerror', (err) => errors.push(`${label}: ${err.message}`))
      await page.goto(`${pages!.url}?${new URLSearchParams(query)}`)
      return page
    },
  }
}
