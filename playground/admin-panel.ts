/**
 * The playground's admin panel: per user an access select and a Revoke button (through the bridge,
 * which calls the REST API with the secret), and, refreshed every second, the playground rooms, the
 * room's active users and its write history with actors.
 */

import { type Access, api } from './api.ts'
import type { PaneUser } from './pane.ts'

interface Actor {
  readonly kind: string
  readonly userId?: string
  readonly sessionId?: string
  readonly name?: string
}
interface RoomRecord {
  readonly id: string
  readonly usersAccesses: Record<string, string[]>
}
interface ActiveUser {
  readonly connectionId: string
  readonly userId: string | null
  readonly info?: { name?: string }
  readonly permissions: string[]
}
interface HistoryEntry {
  readonly actor: Actor
  readonly at: string
  readonly writes: number
  readonly bytes: number
}

const ACCESS: readonly Access[] = ['write', 'presence', 'read', 'none']
const PERMISSION_ACCESS: Readonly<Record<string, Access>> = { 'room:write': 'write', 'room:presence:write': 'presence', 'room:read': 'read' }

const actorLabel = (actor: Actor): string =>
  actor.kind === 'user' ? (actor.userId ?? '?') : actor.kind === 'service' ? `service: ${actor.name ?? '?'}` : `anonymous ${actor.sessionId?.slice(0, 8) ?? ''}`

const row = (cells: (string | Node)[]): HTMLTableRowElement => {
  const tr = document.createElement('tr')
  for (const cell of cells) {
    const td = document.createElement('td')
    td.append(cell)
    if (typeof cell === 'string') td.title = cell
    tr.append(td)
  }
  return tr
}

export class AdminPanel {
  readonly #room: string
  readonly #selects = new Map<string, HTMLSelectElement>()
  readonly #error: HTMLElement
  /** Bumped around every change made here: a refresh that overlapped one does not overwrite the selects. */
  #generation = 0
  #refreshing = false

  constructor(room: string, users: readonly PaneUser[]) {
    this.#room = room
    this.#error = document.querySelector('#admin-error')!
    const body = document.querySelector('#access tbody')!
    for (const user of users) {
      const select = document.createElement('select')
      select.name = `access-${user.id}`
      select.setAttribute('aria-label', `access of ${user.id}`)
      for (const access of ACCESS) select.append(new Option(access, access, access === user.access, access === user.access))
      select.addEventListener('change', () => void this.#act('access', { room, user: user.id, access: select.value }))
      const revoke = document.createElement('button')
      revoke.textContent = 'Revoke'
      revoke.name = `revoke-${user.id}`
      revoke.addEventListener('click', () => void this.#act('revoke', { room, user: user.id }))
      this.#selects.set(user.id, select)
      body.append(row([user.id, select, revoke]))
    }
  }

  start(): void {
    void this.refresh()
    setInterval(() => void this.refresh(), 1000)
  }

  async refresh(): Promise<void> {
    if (this.#refreshing) return
    this.#refreshing = true
    const generation = this.#generation
    const room = encodeURIComponent(this.#room)
    try {
      const [rooms, record, active, history] = await Promise.all([
        api<{ data: RoomRecord[] }>('rooms'),
        api<RoomRecord>(`rooms/${room}`),
        api<{ data: ActiveUser[] }>(`rooms/${room}/active-users`),
        api<{ data: HistoryEntry[] }>(`rooms/${room}/history`),
      ])
      this.#renderRooms(rooms.data)
      if (generation === this.#generation) this.#renderAccess(record)
      document
        .querySelector('#active tbody')!
        .replaceChildren(
          ...active.data.map((u) => row([u.info?.name ?? u.userId ?? 'anonymous', u.connectionId.slice(0, 8), u.permissions.join(', ') || '(none)'])),
        )
      document
        .querySelector('#history tbody')!
        .replaceChildren(
          ...history.data.slice(0, 10).map((h) => row([new Date(h.at).toLocaleTimeString(), actorLabel(h.actor), String(h.writes), String(h.bytes)])),
        )
      this.#error.textContent = ''
    } catch (err) {
      this.#error.textContent = `admin: ${(err as Error).message}`
    } finally {
      this.#refreshing = false
    }
  }

  async #act(path: 'access' | 'revoke', body: object): Promise<void> {
    this.#generation++
    try {
      await api(path, body)
      this.#error.textContent = ''
    } catch (err) {
      this.#error.textContent = `${path}: ${(err as Error).message}`
    }
    this.#generation++ // refreshes that began while the call was in flight read the old ACL
    await this.refresh()
  }

  #renderAccess(record: RoomRecord): void {
    for (const [user, select] of this.#selects) {
      const permissions = record.usersAccesses[user]
      if (permissions === undefined || document.activeElement === select) continue
      select.value = permissions.length === 0 ? 'none' : (PERMISSION_ACCESS[permissions[0]!] ?? select.value)
    }
  }

  #renderRooms(rooms: readonly RoomRecord[]): void {
    document.querySelector('#rooms')!.replaceChildren(
      ...rooms.map((r) => {
        const li = document.createElement('li')
        const a = document.createElement('a')
        a.href = `?room=${encodeURIComponent(r.id)}`
        a.textContent = r.id
        if (r.id === this.#room) a.className = 'current'
        li.append(a)
        return li
      }),
    )
  }
}
