/**
 * One user's editor pane: its own Y.Doc, Awareness and TandemProvider (no cross-tab channel: the
 * three panes share one page, and only the server may carry edits between them), a CodeMirror 6
 * editor bound with y-codemirror.next, and a header that shows what the server decided: status,
 * write access, unsaved changes, the last error or why the session was revoked. With `peers`, the
 * provider also joins the room's WebRTC mesh, and a switch cuts the pane's server path (the mesh
 * stays) so edits can be seen flowing peer to peer, unsaved until the path is back.
 */

import { Compartment, EditorState } from '@codemirror/state'
import { EditorView, placeholder } from '@codemirror/view'
import { basicSetup } from 'codemirror'
import { yCollab } from 'y-codemirror.next'
import { Awareness } from 'y-protocols/awareness'
import * as Y from 'yjs'
import { TandemProvider } from '../client/provider.ts'
import { type Access, type UserInfo, api } from './api.ts'

export interface PaneUser {
  readonly id: string
  readonly access: Exclude<Access, 'none'>
  readonly role: string
}

const el = <K extends keyof HTMLElementTagNameMap>(tag: K, className = '', text = ''): HTMLElementTagNameMap[K] => {
  const node = document.createElement(tag)
  node.className = className
  node.textContent = text
  return node
}

export class Pane {
  readonly element = el('section', 'pane')
  readonly doc = new Y.Doc()
  readonly text = this.doc.getText('text')
  readonly awareness = new Awareness(this.doc)
  readonly user: PaneUser
  provider: TandemProvider | null = null
  view: EditorView | null = null
  revoked: string | null = null
  lastError: string | null = null

  readonly #badges = el('div', 'badges')
  readonly #error = el('div', 'error')
  readonly #rejoin = el('button', '', 'Rejoin')
  readonly #editable = new Compartment()
  readonly #serverPath = el('input')
  readonly #peers: boolean
  #readOnly = true

  constructor(user: PaneUser, parent: HTMLElement, options: { peers?: boolean } = {}) {
    this.user = user
    this.#peers = options.peers ?? false
    this.element.dataset.user = user.id
    const header = el('header')
    header.append(el('b', '', user.id.charAt(0).toUpperCase() + user.id.slice(1)), el('span', 'role', user.role))
    if (this.#peers) {
      this.#serverPath.type = 'checkbox'
      this.#serverPath.name = 'server-path'
      this.#serverPath.checked = true
      this.#serverPath.addEventListener('change', () => {
        if (this.#serverPath.checked) this.provider?.connect()
        else this.provider?.disconnect({ keepPeers: true })
        this.render()
      })
      const label = el('label', 'server-path', ' server path')
      label.prepend(this.#serverPath)
      header.append(label)
    }
    const editor = el('div', 'editor')
    this.#rejoin.name = 'rejoin'
    this.#rejoin.hidden = true
    this.#rejoin.addEventListener('click', () => void this.#rejoinRoom())
    this.element.append(header, this.#badges, editor, this.#error, this.#rejoin)
    parent.append(this.element)
    this.view = new EditorView({
      parent: editor,
      state: EditorState.create({
        doc: '',
        extensions: [
          basicSetup,
          EditorView.lineWrapping,
          placeholder(user.access === 'write' ? 'Type here…' : 'Waiting for a writer…'),
          this.#editable.of(this.#editability(true)),
          yCollab(this.text, this.awareness),
        ],
      }),
    })
    this.render()
  }

  /** Sets the user's access through the bridge, then connects with the token it minted. */
  async join(room: string): Promise<void> {
    const session = await api<{ token: string; info: UserInfo }>('session', { room, user: this.user.id, access: this.user.access })
    this.element.style.setProperty('--color', session.info.color)
    this.awareness.setLocalStateField('user', { name: session.info.name, color: session.info.color, colorLight: `${session.info.color}33` })
    let first: string | null = session.token
    const provider = new TandemProvider({
      url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`,
      room,
      doc: this.doc,
      awareness: this.awareness,
      crossTab: false,
      peers: this.#peers,
      // The first token comes with the session; later ones (expiry, rejoin) are minted afresh.
      auth: async () => {
        const token = first ?? (await api<{ token: string }>('token', { user: this.user.id })).token
        first = null
        return token
      },
    })
    this.provider = provider
    for (const event of ['status', 'synced', 'access-changed', 'saved', 'peers'] as const) provider.on(event, () => this.render())
    provider.on('authenticated', () => {
      this.revoked = null
      this.lastError = null
      this.render()
    })
    provider.on('revoked', ({ code, reason }) => {
      this.revoked = `${code}: ${reason}`
      this.render()
    })
    provider.on('error', (err) => {
      this.lastError = `${err.code}: ${err.message}`
      this.render()
    })
    this.doc.on('update', () => this.render()) // after the provider's listener: unsavedChanges is current
    this.render()
  }

  fail(message: string): void {
    this.lastError = message
    this.render()
  }

  render(): void {
    const p = this.provider
    const readOnly = p?.readOnly ?? true
    const stopped =
      p !== null && p.status === 'disconnected' && (this.revoked !== null || this.lastError !== null) && (!this.#peers || this.#serverPath.checked)
    this.element.dataset.status = p?.status ?? 'joining'
    this.element.dataset.readonly = String(readOnly)
    this.element.dataset.revoked = String(this.revoked !== null)
    this.element.classList.toggle('readonly', readOnly)
    const badge = (text: string, kind: '' | 'ok' | 'warn' | 'bad'): HTMLElement => el('span', `badge ${kind}`, text)
    // The strongest permission the server granted (each implies the ones after it).
    const permissions = (['room:write', 'room:presence:write', 'room:read'] as const).find((x) => p?.self?.permissions.includes(x))?.replace('room:', '') ?? ''
    this.#badges.replaceChildren(
      badge(
        p === null ? 'joining' : `${p.status}${p.synced ? ', synced' : ''}`,
        p?.status === 'connected' ? 'ok' : p?.status === 'connecting' ? 'warn' : 'bad',
      ),
      badge(readOnly ? 'read-only' : 'can write', readOnly ? 'warn' : 'ok'),
      ...(permissions === '' ? [] : [badge(permissions, '')]),
      badge(`unsaved ${p?.unsavedChanges ?? 0}`, p !== null && p.unsavedChanges > 0 ? 'warn' : ''),
      ...(this.#peers ? [badge(`mesh ${p?.mesh?.peers.length ?? 0}`, (p?.mesh?.peers.length ?? 0) > 0 ? 'ok' : '')] : []),
      ...(this.revoked === null ? [] : [badge('revoked', 'bad')]),
    )
    this.#error.textContent = this.revoked ?? this.lastError ?? ''
    this.#rejoin.hidden = !stopped
    // Only on a change: a doc update can arrive while CodeMirror is mid-update (a local edit).
    if (readOnly !== this.#readOnly) {
      this.#readOnly = readOnly
      this.view?.dispatch({ effects: this.#editable.reconfigure(this.#editability(readOnly)) })
    }
  }

  #editability(readOnly: boolean) {
    return [EditorState.readOnly.of(readOnly), EditorView.editable.of(!readOnly)]
  }

  async #rejoinRoom(): Promise<void> {
    const p = this.provider
    if (p === null) return
    try {
      // Let the user in again (a revocation refuses even tokens minted just after it), then join
      // with a token minted now.
      if (this.revoked !== null) await api('reinstate', { room: p.room, user: this.user.id })
      await p.refreshAuth()
      p.connect()
    } catch (err) {
      this.fail(String(err))
    }
  }
}
