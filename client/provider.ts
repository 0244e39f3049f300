/**
 * TandemProvider: binds a Y.Doc (and its Awareness) to a Tandem room, in browsers and in Node
 * (SPEC section 8). It authenticates inside the socket, syncs, relays local edits and presence,
 * reconnects with capped exponential backoff and jitter, fetches fresh tokens when the old one
 * expired, stops for good on a final (44xx) close and says why, and turns every server decision
 * into state (`status`, `synced`, `self`, `readOnly`, `unsavedChanges`) and events.
 */

import { ObservableV2 } from 'lib0/observable'
import { Awareness, applyAwarenessUpdate, encodeAwarenessUpdate, removeAwarenessStates } from 'y-protocols/awareness'
import * as Y from 'yjs'
import { CloseCode, type ErrorCode, TandemError, isFinalCloseCode } from '../protocol/errors.ts'
import {
  type SessionInfo,
  type ServerMessage,
  decodeServerMessage,
  encodeFrame,
  writeAuth,
  writeAwareness,
  writeSyncStep1,
  writeSyncStep2,
  writeUpdate,
} from '../protocol/messages.ts'
import { type Permission, canWrite, canWritePresence, fromPermissionBits } from '../protocol/permissions.ts'
import { CrossTab } from './cross-tab.ts'
import { type MeshPeer, PeerMesh } from './peer-mesh.ts'
import { type AuthOption, type Clock, TokenSource } from './token-source.ts'
import { UnsavedChanges } from './unsaved.ts'

export type Status = 'connecting' | 'connected' | 'disconnected'

export interface Self {
  readonly connectionId: string
  readonly userId: string | null
  readonly actor: unknown
  readonly info: unknown
  readonly permissions: Permission[]
}

/**
 * The clock, timers and randomness the provider runs on. Handles are opaque: what `setTimeout` and
 * `setInterval` return (anything but `null`, which the provider takes for "no timer") is only ever
 * passed back to the matching clear.
 */
export interface Scheduler extends Clock {
  setTimeout(callback: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
  setInterval(callback: () => void, ms: number): unknown
  clearInterval(handle: unknown): void
  /** Uniform in [0, 1), as `Math.random()`. */
  random(): number
}

/**
 * The real ones, looked up on each call (not bound once): a runtime's or a test framework's
 * replacement of the globals still applies, and browsers' timers are not called detached.
 */
const realScheduler: Scheduler = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
  setInterval: (callback, ms) => globalThis.setInterval(callback, ms),
  clearInterval: (handle) => globalThis.clearInterval(handle as ReturnType<typeof setInterval>),
  random: () => Math.random(),
}

export interface TandemProviderOptions {
  /** The server's base URL, e.g. `ws://localhost:1234`. */
  readonly url: string
  readonly room: string
  readonly doc: Y.Doc
  readonly auth: AuthOption
  /** Created when absent; `null` disables presence. */
  readonly awareness?: Awareness | null
  /** A WebSocket class for runtimes without one (Node: `ws`). */
  readonly WebSocketPolyfill?: typeof WebSocket
  /** Connect at once (default true). */
  readonly connect?: boolean
  /** Longest wait between reconnection attempts (default 10 s). */
  readonly maxBackoffMs?: number
  /** Share edits with other tabs over BroadcastChannel while the session may write (default true). */
  readonly crossTab?: boolean
  readonly fetch?: typeof fetch
  /**
   * Time for everything the provider waits on (default: the real `Date.now`, `setTimeout`,
   * `setInterval` and `Math.random`): reconnection backoff and its jitter, the silence check that
   * drops a dead socket, the once-a-second read-only notice, and whether a cached token is still
   * fresh. Tests pass a clock they move by hand, so a backoff or a 30 s silence takes no real time.
   */
  readonly scheduler?: Scheduler
  /**
   * Also join a WebRTC mesh with the room's other Tandem peers (client/peer-mesh.ts): edits and
   * presence reach them directly, gated by the permissions the server vouches for; the server stays
   * the one that stores and acknowledges. `true`, or options (Node needs `RTCPeerConnection`, from
   * `@roamhq/wrtc`). Default off.
   */
  readonly peers?: boolean | PeerOptions
}

export interface PeerOptions {
  /** STUN/TURN servers (default none: host candidates only, peers on one network). */
  readonly iceServers?: readonly RTCIceServer[]
  /** Default `globalThis.RTCPeerConnection` (browsers). */
  readonly RTCPeerConnection?: typeof RTCPeerConnection
  /** Default the server's `/v1/signal`. */
  readonly signalUrl?: string
}

export interface ProviderEvents {
  status: (event: { status: Status }) => void
  synced: (event: { synced: boolean }) => void
  authenticated: (self: Self) => void
  'access-changed': (event: { permissions: Permission[]; readOnly: boolean }) => void
  revoked: (event: { code: ErrorCode; reason: string }) => void
  saved: (event: { unsavedChanges: number }) => void
  error: (error: TandemError) => void
  /** The mesh's open links changed (with `peers`). */
  peers: (event: { peers: MeshPeer[] }) => void
}

/** A socket that received nothing for this long is dead (the server sends at least every 15 s). */
const SILENCE_MS = 30_000
const BACKOFF_BASE_MS = 100
/** A reader's local edits raise `read_only` at most this often, as the server's notices. */
const READ_ONLY_NOTICE_MS = 1_000
/** Origin of updates applied from another tab. */
const CROSS_TAB = { crossTab: true }
/** Origin of updates and presence applied from a mesh peer (never sent on: the peer sent its own). */
const MESH = { mesh: true }

export class TandemProvider extends ObservableV2<ProviderEvents> {
  readonly doc: Y.Doc
  readonly awareness: Awareness | null
  readonly room: string

  status: Status = 'disconnected'
  synced = false
  self: Self | null = null

  readonly #url: string
  readonly #tokens: TokenSource
  readonly #WebSocket: typeof WebSocket
  readonly #maxBackoffMs: number
  readonly #crossTabEnabled: boolean
  readonly #scheduler: Scheduler
  readonly #unsaved = new UnsavedChanges()

  #socket: WebSocket | null = null
  #shouldConnect = false
  #attempt = 0
  #reconnectTimer: unknown = null
  #silenceTimer: unknown = null
  #lastMessageAt = 0
  #permissions = 0
  #lastError: TandemError | null = null
  #freshToken = false
  #crossTab: CrossTab | null = null
  #refreshWaiters: { resolve: () => void; reject: (err: TandemError) => void }[] = []
  /** Whether the current socket's session is established (a refresh can go through it). */
  #socketAuthenticated = false
  /** When the app was last told that a local edit was not sent (read-only). */
  #readOnlyNoticeAt = -Infinity
  readonly #peerOptions: PeerOptions | null
  #mesh: PeerMesh | null = null

  constructor(options: TandemProviderOptions) {
    super()
    this.doc = options.doc
    this.room = options.room
    this.awareness = options.awareness === undefined ? new Awareness(options.doc) : options.awareness
    this.#url = options.url.replace(/\/+$/, '')
    this.#scheduler = options.scheduler ?? realScheduler
    this.#tokens = new TokenSource(options.auth, options.room, options.fetch ?? globalThis.fetch?.bind(globalThis), this.#scheduler)
    const WebSocketImpl = options.WebSocketPolyfill ?? globalThis.WebSocket
    if (WebSocketImpl === undefined) throw new TandemError('server_error', 'no WebSocket: pass WebSocketPolyfill (e.g. from "ws")')
    this.#WebSocket = WebSocketImpl
    this.#maxBackoffMs = options.maxBackoffMs ?? 10_000
    this.#crossTabEnabled = (options.crossTab ?? true) && CrossTab.supported()
    this.#peerOptions = options.peers === true ? {} : options.peers === false || options.peers === undefined ? null : options.peers
    this.doc.on('update', this.#onDocUpdate)
    this.awareness?.on('update', this.#onAwarenessUpdate)
    if (options.connect ?? true) this.connect()
  }

  /** True unless the session may write (also before it is known). */
  get readOnly(): boolean {
    return !canWrite(this.#permissions)
  }

  /** The WebRTC mesh while connected with `peers` (its `peers`, and what it refused, by code). */
  get mesh(): PeerMesh | null {
    return this.#mesh
  }

  /** Local changes not yet acknowledged as stored by the server. */
  get unsavedChanges(): number {
    return this.#unsaved.count
  }

  connect(): void {
    this.#shouldConnect = true
    if (this.#socket === null && this.#reconnectTimer === null) void this.#open()
    if (this.#peerOptions !== null && this.#mesh === null) this.#openMesh(this.#peerOptions)
  }

  /**
   * Closes the socket and stops reconnecting; `connect()` resumes. With `keepPeers`, the mesh
   * stays: edits go on flowing peer to peer, unsaved until the server path is back.
   */
  disconnect(options: { keepPeers?: boolean } = {}): void {
    this.#shouldConnect = false
    if (this.#reconnectTimer !== null) this.#scheduler.clearTimeout(this.#reconnectTimer)
    this.#reconnectTimer = null
    this.#socket?.close(CloseCode.normal)
    if (options.keepPeers === true) return
    this.#mesh?.close()
    this.#mesh = null
  }

  #openMesh(options: PeerOptions): void {
    const RTC = options.RTCPeerConnection ?? globalThis.RTCPeerConnection
    if (RTC === undefined) {
      this.#fail(new TandemError('server_error', 'no RTCPeerConnection: pass peers.RTCPeerConnection (Node: from "@roamhq/wrtc")'))
      return
    }
    const mesh = new PeerMesh({
      signalUrl: options.signalUrl ?? `${this.#url}/v1/signal`,
      room: this.room,
      doc: this.doc,
      awareness: this.awareness,
      token: () => this.#tokens.get(false),
      WebSocket: this.#WebSocket,
      RTCPeerConnection: RTC,
      iceServers: options.iceServers ?? [],
      origin: MESH,
      onError: (error) => this.emit('error', [error]),
      onPeers: (peers) => this.emit('peers', [{ peers }]),
    })
    this.#mesh = mesh
    mesh.start().catch((err: unknown) => this.#fail(err instanceof TandemError ? err : new TandemError('unauthorized', String(err))))
  }

  /** Re-runs authentication with a fresh token, without reconnecting. */
  async refreshAuth(): Promise<void> {
    const token = await this.#tokens.get(true)
    const socket = this.#socket
    if (socket === null || socket.readyState !== this.#WebSocket.OPEN || !this.#socketAuthenticated) {
      this.#freshToken = false // the next connection uses the token just fetched
      return
    }
    await new Promise<void>((resolve, reject) => {
      this.#refreshWaiters.push({ resolve, reject })
      this.#send(encodeFrame(writeAuth, token))
    })
  }

  override destroy(): void {
    if (this.awareness !== null && this.#socket !== null && canWritePresence(this.#permissions)) {
      removeAwarenessStates(this.awareness, [this.doc.clientID], 'destroy')
    }
    this.disconnect()
    this.#closeCrossTab()
    this.doc.off('update', this.#onDocUpdate)
    this.awareness?.off('update', this.#onAwarenessUpdate)
    super.destroy()
  }

  async #open(): Promise<void> {
    this.#setStatus('connecting')
    let token: string
    try {
      token = await this.#tokens.get(this.#freshToken)
    } catch (err) {
      const error = err instanceof TandemError ? err : new TandemError('unauthorized', String(err))
      this.#fail(error)
      // The app's auth endpoint said no (403): asking again will not change its mind.
      if (error.code === 'forbidden') this.#shouldConnect = false
      if (this.#shouldConnect && this.#tokens.canRefresh) this.#scheduleReconnect()
      else this.#setStatus('disconnected')
      return
    }
    if (!this.#shouldConnect) return this.#setStatus('disconnected')
    this.#freshToken = false
    const socket = new this.#WebSocket(`${this.#url}/v1/sync/${encodeURIComponent(this.room)}`)
    socket.binaryType = 'arraybuffer'
    this.#socket = socket
    this.#socketAuthenticated = false
    this.#lastError = null
    socket.onopen = () => {
      this.#lastMessageAt = this.#scheduler.now()
      this.#send(encodeFrame(writeAuth, token))
      this.#send(encodeFrame(writeSyncStep1, Y.encodeStateVector(this.doc)))
      this.#silenceTimer = this.#scheduler.setInterval(() => {
        if (this.#scheduler.now() - this.#lastMessageAt > SILENCE_MS) socket.close()
      }, SILENCE_MS / 3)
    }
    socket.onmessage = (event: MessageEvent) => {
      // Any frame, even one this client cannot read, shows the socket is alive.
      this.#lastMessageAt = this.#scheduler.now()
      try {
        this.#receive(decodeServerMessage(new Uint8Array(event.data as ArrayBuffer)))
      } catch (err) {
        this.#fail(err instanceof TandemError ? err : new TandemError('malformed_message', String(err)))
      }
    }
    socket.onclose = (event: CloseEvent) => this.#onClose(socket, event.code, event.reason)
    socket.onerror = () => {} // a close event follows with the code
  }

  #receive(message: ServerMessage): void {
    switch (message.kind) {
      case 'authenticated':
        this.#onAuthenticated(message.identity)
        return
      case 'sync-step-1':
        // The server asks a writer for what it lacks: everything not yet sent goes now.
        this.#unsaved.sentStep2()
        this.#send(encodeFrame(writeSyncStep2, Y.encodeStateAsUpdate(this.doc, message.stateVector)))
        return
      case 'sync-step-2':
        Y.applyUpdate(this.doc, message.update, this)
        if (!this.synced) {
          this.synced = true
          this.#attempt = 0
          this.emit('synced', [{ synced: true }])
        }
        return
      case 'update':
        Y.applyUpdate(this.doc, message.update, this)
        return
      case 'awareness':
        if (this.awareness !== null) applyAwarenessUpdate(this.awareness, message.update, this)
        return
      case 'access-changed':
        this.#setPermissions(message.permissions)
        return
      case 'saved':
        this.#unsaved.saved(message.count)
        this.emit('saved', [{ unsavedChanges: this.#unsaved.count }])
        return
      case 'error':
        this.#onServerError(new TandemError(message.code, message.message))
        return
      case 'permission-denied':
        this.#onServerError(new TandemError('forbidden', message.reason))
        return
      case 'unknown':
        // A newer server's message type (PROTOCOL.md, "Versioning"): ignored, so notices can be
        // added without older clients reporting errors.
        return
      default:
        message satisfies never
    }
  }

  #onAuthenticated(identity: SessionInfo): void {
    const actor = identity.actor as { kind?: string; userId?: string } | null
    this.self = {
      connectionId: identity.connectionId,
      userId: actor?.kind === 'user' && typeof actor.userId === 'string' ? actor.userId : null,
      actor: identity.actor,
      info: identity.info,
      permissions: fromPermissionBits(identity.permissions),
    }
    const first = !this.#socketAuthenticated
    this.#socketAuthenticated = true
    this.#setPermissions(identity.permissions, !first)
    this.#setStatus('connected')
    this.emit('authenticated', [this.self])
    for (const waiter of this.#refreshWaiters.splice(0)) waiter.resolve()
    // A new session shows our presence with a newer clock: peers (and the server's tombstone)
    // ignore a state at the clock they last saw removed (yjs/y-websocket#122).
    const local = this.awareness?.getLocalState() ?? null
    if (first && local !== null) this.awareness!.setLocalState(local)
  }

  #setPermissions(permissions: number, announce = true): void {
    const changed = permissions !== this.#permissions
    if (canWrite(this.#permissions) && !canWrite(permissions)) this.#unsaved.writeLost()
    this.#permissions = permissions
    if (this.self !== null) this.self = { ...this.self, permissions: fromPermissionBits(permissions) }
    if (canWrite(permissions)) this.#openCrossTab()
    else this.#closeCrossTab()
    if (changed && announce) this.emit('access-changed', [{ permissions: fromPermissionBits(permissions), readOnly: this.readOnly }])
  }

  #onServerError(error: TandemError): void {
    this.#lastError = error
    for (const waiter of this.#refreshWaiters.splice(0)) waiter.reject(error)
    // Asked for a fresh token while the socket stays: refresh without reconnecting.
    if (error.code === 'token_expired' && this.#tokens.canRefresh && this.#socketAuthenticated) {
      void this.refreshAuth().catch((err: unknown) => this.#fail(err instanceof TandemError ? err : new TandemError('unauthorized', String(err))))
    }
    this.emit('error', [error])
  }

  #onClose(socket: WebSocket, code: number, reason: string): void {
    if (this.#socket !== socket) return
    this.#socket = null
    // Not connected, so no one (as Liveblocks' getSelf()): the next session's `authenticated` sets it.
    this.self = null
    if (this.#silenceTimer !== null) this.#scheduler.clearInterval(this.#silenceTimer)
    this.#silenceTimer = null
    this.#unsaved.disconnected()
    if (this.synced) {
      this.synced = false
      this.emit('synced', [{ synced: false }])
    }
    if (this.awareness !== null) {
      const others = [...this.awareness.getStates().keys()].filter((id) => id !== this.doc.clientID)
      removeAwarenessStates(this.awareness, others, this)
    }
    const error = this.#lastError
    for (const waiter of this.#refreshWaiters.splice(0)) waiter.reject(error ?? new TandemError('server_error', 'connection closed'))
    if (code === CloseCode.unauthorized && error?.code === 'token_expired' && this.#tokens.canRefresh && this.#shouldConnect) {
      this.#freshToken = true
      this.#setStatus('disconnected')
      this.#scheduleReconnect()
      return
    }
    if (isFinalCloseCode(code)) {
      this.#shouldConnect = false
      this.#setPermissions(0, false)
      const final = error ?? new TandemError(code === CloseCode.roomDeleted ? 'room_not_found' : 'forbidden', reason || `closed with ${code}`)
      this.#setStatus('disconnected')
      if (final.code === 'revoked' || final.code === 'room_not_found') this.emit('revoked', [{ code: final.code, reason: final.message }])
      if (error === null) this.emit('error', [final])
      return
    }
    this.#setStatus('disconnected')
    if (this.#shouldConnect) this.#scheduleReconnect()
  }

  #scheduleReconnect(): void {
    const cap = Math.min(this.#maxBackoffMs, BACKOFF_BASE_MS * 2 ** this.#attempt)
    this.#attempt++
    const delay = cap / 2 + this.#scheduler.random() * (cap / 2)
    this.#reconnectTimer = this.#scheduler.setTimeout(() => {
      this.#reconnectTimer = null
      if (this.#shouldConnect) void this.#open()
    }, delay)
  }

  #onDocUpdate = (update: Uint8Array, origin: unknown): void => {
    if (origin === this || origin === MESH) return
    if (origin !== CROSS_TAB) this.#crossTab?.publish(update)
    // Straight to the mesh's peers too, when the server lets this session write there.
    if (this.#mesh?.canWrite === true) this.#mesh.send(encodeFrame(writeUpdate, update))
    this.#unsaved.local()
    if (this.self === null) return // not connected: sent once a session may write
    if (canWrite(this.#permissions)) {
      if (this.#isOpen()) {
        this.#unsaved.sentUpdate()
        this.#send(encodeFrame(writeUpdate, update))
      }
      return
    }
    // A reader's edit goes nowhere: the app hears it (at most once a second), and the edit stays
    // counted as unsaved, sent if the session may write later.
    const now = this.#scheduler.now()
    if (now - this.#readOnlyNoticeAt >= READ_ONLY_NOTICE_MS) {
      this.#readOnlyNoticeAt = now
      this.emit('error', [new TandemError('read_only', 'this session may not write to the room: the change is kept locally, unsaved')])
    }
  }

  #onAwarenessUpdate = (change: { added: number[]; updated: number[]; removed: number[] }, origin: unknown): void => {
    if (origin === this || origin === MESH || this.awareness === null) return
    // Only this client's own state: re-sending others' would be refused as spoofing.
    const own = [...change.added, ...change.updated, ...change.removed].includes(this.doc.clientID)
    if (own && origin !== MESH && this.#mesh?.canWritePresence === true) {
      this.#mesh.send(encodeFrame(writeAwareness, encodeAwarenessUpdate(this.awareness, [this.doc.clientID])))
    }
    if (own && this.self !== null && canWritePresence(this.#permissions) && this.#isOpen()) {
      this.#send(encodeFrame(writeAwareness, encodeAwarenessUpdate(this.awareness, [this.doc.clientID])))
    }
  }

  #openCrossTab(): void {
    if (this.#crossTabEnabled && this.#crossTab === null) this.#crossTab = new CrossTab(`tandem:${this.#url}:${this.room}`, this.doc, CROSS_TAB)
  }

  #closeCrossTab(): void {
    this.#crossTab?.close()
    this.#crossTab = null
  }

  #isOpen(): boolean {
    return this.#socket !== null && this.#socket.readyState === this.#WebSocket.OPEN
  }

  #send(frame: Uint8Array): void {
    if (this.#isOpen()) this.#socket!.send(frame)
  }

  #setStatus(status: Status): void {
    if (this.status === status) return
    this.status = status
    this.emit('status', [{ status }])
  }

  #fail(error: TandemError): void {
    this.emit('error', [error])
  }
}
