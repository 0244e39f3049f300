/**
 * The playground page (served at /playground, bundled by server/playground.ts): one room, opened
 * as three users side by side, Ada (write), Bob (read with presence) and Cyd (read), each in its
 * own CodeMirror editor with its own provider, plus the admin panel. The room is `?room=`
 * (default `playground`; the bridge accepts only ids starting with "playground").
 * `window.playground` exposes the panes, for tests and for poking at in the console.
 */

import { AdminPanel } from './admin-panel.ts'
import { Pane, type PaneUser } from './pane.ts'

declare global {
  interface Window {
    playground: { room: string; panes: Record<string, Pane>; admin: AdminPanel }
  }
}

const USERS: readonly PaneUser[] = [
  { id: 'ada', access: 'write', role: 'writer' },
  { id: 'bob', access: 'presence', role: 'reader with presence' },
  { id: 'cyd', access: 'read', role: 'reader' },
]

const room = new URLSearchParams(location.search).get('room') || 'playground'
document.title = `Tandem playground: ${room}`

const parent = document.querySelector<HTMLElement>('#panes')!
const panes = Object.fromEntries(USERS.map((user) => [user.id, new Pane(user, parent)]))
const admin = new AdminPanel(room, USERS)
window.playground = { room, panes, admin }

for (const pane of Object.values(panes)) pane.join(room).catch((err: unknown) => pane.fail(`cannot join: ${(err as Error).message}`))
admin.start()
