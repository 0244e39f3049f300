/**
 * The playground page (served at /playground, bundled by server/playground.ts): one room, opened
 * as three users side by side, Ada (write), Bob (read with presence) and Cyd (read), each in its
 * own CodeMirror editor with its own provider, plus the admin panel. The room is `?room=`
 * (default `playground`; the bridge accepts only ids starting with "playground"). `?peers=1` also
 * puts the panes on the room's WebRTC mesh, each with a switch that cuts its server path.
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

const params = new URLSearchParams(location.search)
const room = params.get('room') || 'playground'
const peers = params.get('peers') === '1'
document.title = `Tandem playground: ${room}`

const parent = document.querySelector<HTMLElement>('#panes')!
const panes = Object.fromEntries(USERS.map((user) => [user.id, new Pane(user, parent, { peers })]))
const admin = new AdminPanel(room, USERS)
window.playground = { room, panes, admin }

for (const pane of Object.values(panes)) pane.join(room).catch((err: unknown) => pane.fail(`cannot join: ${(err as Error).message}`))
admin.start()
