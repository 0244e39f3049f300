/**
 * The TipTap browser test's page script (bundled by test/tiptap.test.ts with esbuild): an
 * unmodified TipTap editor (StarterKit, Collaboration, CollaborationCaret) on an unmodified
 * HocuspocusProvider pointed at Tandem's `/v1/hocuspocus`, as a TipTap app writes it. The app's own
 * part: the editor is editable only while the provider's scope is `read-write`, and what the
 * provider reports (scope, refusals, Tandem's notices) is shown and exposed as `window.tiptap`.
 * Reads `room`, `url`, `token` and `name` from the query string.
 */

import { HocuspocusProvider } from '@hocuspocus/provider'
import { Editor } from '@tiptap/core'
import Collaboration from '@tiptap/extension-collaboration'
import CollaborationCaret from '@tiptap/extension-collaboration-caret'
import StarterKit from '@tiptap/starter-kit'
import * as Y from 'yjs'
import { required } from './query.ts'

declare global {
  interface Window {
    tiptap: { editor: Editor; provider: HocuspocusProvider; doc: Y.Doc; scope: string | null; refusals: string[]; notices: string[] }
  }
}

const doc = new Y.Doc()
const status = document.querySelector('#status')!
const state: Window['tiptap'] = { scope: null, refusals: [], notices: [] } as unknown as Window['tiptap']
const render = (): void => {
  status.textContent = `${state.scope ?? 'connecting'}${state.refusals.length > 0 ? `; refused: ${state.refusals.at(-1)}` : ''}`
}

const provider = new HocuspocusProvider({
  url: required('url'),
  name: required('room'),
  token: required('token'),
  document: doc,
  onAuthenticated: ({ scope }) => {
    state.scope = scope
    editor.setEditable(scope === 'read-write')
    render()
  },
  onAuthenticationFailed: ({ reason }) => {
    state.refusals.push(reason)
    editor.setEditable(false)
    render()
  },
  onStateless: ({ payload }) => {
    const notice = JSON.parse(payload) as { tandem?: string; code?: string }
    if (notice.tandem === 'error' && notice.code !== undefined) state.notices.push(notice.code)
  },
})

const editor = new Editor({
  element: document.querySelector<HTMLElement>('#editor')!,
  editable: false,
  extensions: [
    StarterKit.configure({ undoRedo: false }),
    Collaboration.configure({ document: doc }),
    CollaborationCaret.configure({ provider, user: { name: required('name'), color: '#f783ac' } }),
  ],
})

Object.assign(state, { editor, provider, doc })
window.tiptap = state
render()
