/**
 * The browser test's page script (bundled by test/browser.test.ts with esbuild for the browser):
 * a Y.Doc bound to a Tandem room through TandemProvider, and a <textarea> bound to its Y.Text
 * naively (every input replaces the whole text; every remote change rewrites the textarea).
 * Reads `room`, `url` and `token` from the query string (and `signal`, a signalling URL, to join
 * the room's WebRTC mesh with `peers`); exposes `window.tandem`.
 */

import * as Y from 'yjs'
import { TandemProvider } from '../../client/provider.ts'
import { optional, required } from './query.ts'

declare global {
  interface Window {
    tandem: { doc: Y.Doc; provider: TandemProvider; text: Y.Text }
  }
}

const doc = new Y.Doc()
const text = doc.getText('text')
const signal = optional('signal')
const provider = new TandemProvider({
  url: required('url'),
  room: required('room'),
  doc,
  auth: required('token'),
  ...(signal !== null && { peers: { signalUrl: signal }, crossTab: false }),
})

const area = document.querySelector('textarea')!
const status = document.querySelector('#status')!
const LOCAL = 'textarea'

area.addEventListener('input', () => {
  doc.transact(() => {
    text.delete(0, text.length)
    text.insert(0, area.value)
  }, LOCAL)
})
text.observe((event) => {
  if (event.transaction.origin !== LOCAL) area.value = text.toString()
})

const render = (): void => {
  area.readOnly = provider.readOnly
  status.textContent = `${provider.status}${provider.synced ? ', synced' : ''}; ${provider.readOnly ? 'read-only' : 'writer'}; user ${provider.self?.userId ?? '?'}; unsaved ${provider.unsavedChanges}`
}
for (const event of ['status', 'synced', 'authenticated', 'access-changed', 'saved'] as const) provider.on(event, render)
doc.on('update', render) // after the provider's own listener: unsavedChanges is current
render()

window.tandem = { doc, provider, text }
