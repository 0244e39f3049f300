/**
 * The peer path of `TandemProvider` (`peers: true`): a WebRTC mesh with the room's other Tandem
 * peers, set up through Tandem's signalling endpoint (`/v1/signal`, token inside the socket), and
 * gated by what the server says each peer may do.
 *
 * Every signal the server relays carries its sender's identity and permissions as the server knows
 * them (`tandem` in protocol/signal.ts); a link is made only from those signals, so each data
 * channel is bound to an identity the server vouched for, and the server's later word about it
 * (`tandem:peer`: a downgrade, a revocation, a departure) updates or drops the link at once.
 * Over a link, document updates are applied only from a peer whose permissions include
 * `room:write`, presence only from one with `room:presence:write` and only for the awareness
 * clients it owns; anything else is refused, counted and reported (`error` with a code), never
 * applied. This mesh only relays: every writer still sends its own updates to the server, which
 * stores and acknowledges them.
 *
 * Frames over a data channel are the y-websocket messages of protocol/messages.ts (sync, awareness).
 */

import * as decoding from 'lib0/decoding'
import { type Awareness, applyAwarenessUpdate, encodeAwarenessUpdate, removeAwarenessStates } from 'y-protocols/awareness'
import * as Y from 'yjs'
import { readAwarenessUpdate } from '../protocol/awareness.ts'
import { type ErrorCode, TandemError, isErrorCode } from '../protocol/errors.ts'
import { MessageType, SyncType, encodeFrame, writeAwareness, writeSyncStep1, writeSyncStep2 } from '../protocol/messages.ts'
import { type Permission, type PermissionBits, canRead, canWrite, canWritePresence, fromPermissionBits, toPermissionBits } from '../protocol/permissions.ts'
import { type SignalServerMessage, decodeSignalServerMessage } from '../protocol/signal.ts'

/** A peer as the server vouched for it. */
export interface MeshPeer {
  readonly connectionId: string
  readonly userId: string | null
  readonly permissions: readonly Permission[]
}

export interface PeerMeshOptions {
  /** The signalling endpoint, e.g. `ws://localhost:1234/v1/signal`. */
  readonly signalUrl: string
  readonly room: string
  readonly doc: Y.Doc
  readonly awareness: Awareness | null
  /** A current token (the provider's token source). */
  readonly token: () => Promise<string>
  readonly WebSocket: typeof WebSocket
  /** The browser's, or one from npm in Node (`@roamhq/wrtc`). */
  readonly RTCPeerConnection: typeof RTCPeerConnection
  readonly iceServers: readonly RTCIceServer[]
  /** The origin of what is applied from peers (the provider does not send it on). */
  readonly origin: object
  readonly onError: (error: TandemError) => void
  readonly onPeers: (peers: MeshPeer[]) => void
}

/** Awareness clients one peer may own over its link (as the server's default limit). */
const MAX_OWNED_CLIENTS = 4
/** A refusal of the same kind from peers is reported at most this often. */
const REPORT_INTERVAL_MS = 1_000
const PING_MS = 15_000

interface Link {
  readonly peer: { connectionId: string; userId: string | null }
  permissions: PermissionBits
  readonly pc: RTCPeerConnection
  channel: RTCDataChannel | null
  /** Candidates that arrived before the remote description. */
  readonly pending: RTCIceCandidateInit[]
  readonly owned: Set<number>
}

export class PeerMesh {
  readonly #options: PeerMeshOptions
  readonly #links = new Map<string, Link>()
  readonly #reportedAt = new Map<ErrorCode, number>()
  #socket: WebSocket | null = null
  #self: string | null = null
  #permissions: PermissionBits = 0
  #closed = false
  #ping: ReturnType<typeof setInterval> | null = null
  /** Refused messages from peers, by code (for apps and tests). */
  readonly refused: Partial<Record<ErrorCode, number>> = {}

  constructor(options: PeerMeshOptions) {
    this.#options = options
  }

  /** The peers with an open data channel. */
  get peers(): MeshPeer[] {
    return [...this.#links.values()]
      .filter((link) => link.channel?.readyState === 'open')
      .map((link) => ({ ...link.peer, permissions: fromPermissionBits(link.permissions) }))
  }

  async start(): Promise<void> {
    const token = await this.#options.token()
    if (this.#closed) return
    const socket = new this.#options.WebSocket(this.#options.signalUrl)
    this.#socket = socket
    socket.onopen = () => {
      this.#signal({ type: 'auth', token })
      this.#ping = setInterval(() => this.#signal({ type: 'ping' }), PING_MS)
    }
    socket.onmessage = (event: MessageEvent) => {
      let message: SignalServerMessage | null
      try {
        message = decodeSignalServerMessage(String(event.data))
      } catch {
        this.#options.onError(new TandemError('malformed_message', 'the signalling server sent what is not JSON'))
        return
      }
      if (message !== null) {
        this.#receive(message).catch((err: unknown) => {
          // A link's setup failed (a description or candidate its connection refused, or it closed
          // meanwhile): that link goes; a link already gone needs no word.
          const from = message.type === 'publish' ? message.tandem.connectionId : null
          if (from !== null && this.#links.has(from)) {
            this.#drop(from)
            this.#refuse('malformed_message', `the link to peer ${from} failed: ${(err as Error).message}`)
          }
        })
      }
    }
    socket.onclose = () => {
      if (this.#ping !== null) clearInterval(this.#ping)
      this.#ping = null
      for (const id of [...this.#links.keys()]) this.#drop(id)
    }
  }

  /** Sends a frame to every linked peer (the provider decides what this session may send). */
  send(frame: Uint8Array): void {
    for (const link of this.#links.values()) sendOn(link.channel, frame)
  }

  /** Whether the server lets this session write, as it last said for the mesh. */
  get canWrite(): boolean {
    return canWrite(this.#permissions)
  }

  get canWritePresence(): boolean {
    return canWritePresence(this.#permissions)
  }

  close(): void {
    this.#closed = true
    for (const id of [...this.#links.keys()]) this.#drop(id)
    this.#socket?.close()
    this.#socket = null
  }

  #signal(message: Record<string, unknown>): void {
    if (this.#socket?.readyState === this.#options.WebSocket.OPEN) this.#socket.send(JSON.stringify(message))
  }

  #publish(data: Record<string, unknown>): void {
    this.#signal({ type: 'publish', topic: this.#options.room, data })
  }

  async #receive(message: SignalServerMessage): Promise<void> {
    switch (message.type) {
      case 'tandem:authenticated':
        this.#self = message.connectionId
        this.#signal({ type: 'subscribe', topics: [this.#options.room] })
        return
      case 'tandem:subscribed': {
        const first = this.#permissions === 0
        this.#permissions = toPermissionBits(message.permissions)
        if (first) this.#publish({ type: 'tandem:announce' })
        return
      }
      case 'tandem:peer': {
        const link = this.#links.get(message.connectionId)
        if (link === undefined) return
        const permissions = toPermissionBits(message.permissions)
        if (!canRead(permissions)) this.#drop(message.connectionId)
        else {
          link.permissions = permissions
          this.#options.onPeers(this.peers)
        }
        return
      }
      case 'tandem:error':
        if (message.topic === this.#options.room) {
          // The server took this session out of the room's topic: no peer may be trusted through it.
          this.#permissions = 0
          for (const id of [...this.#links.keys()]) this.#drop(id)
        }
        this.#options.onError(new TandemError(asCode(message.code), `signalling: ${message.message}`))
        return
      case 'publish':
        await this.#onPublish(message)
        return
      default:
        return
    }
  }

  async #onPublish(message: Extract<SignalServerMessage, { type: 'publish' }>): Promise<void> {
    const sender = message.tandem
    const data = message.data as { type?: string; to?: string; description?: RTCSessionDescriptionInit; candidate?: RTCIceCandidateInit } | undefined
    if (this.#self === null || sender.connectionId === this.#self || data === undefined) return
    if (data.to !== undefined && data.to !== this.#self) return
    const permissions = toPermissionBits(sender.permissions)
    if (!canRead(permissions)) return
    const existing = this.#links.get(sender.connectionId)
    if (existing !== undefined) existing.permissions = permissions
    switch (data.type) {
      case 'tandem:announce':
        if (existing !== undefined) return
        // The smaller connection id offers; the other answers an announce with its own, to it.
        if (this.#self < sender.connectionId) await this.#offer(sender, permissions)
        else if (data.to === undefined) this.#publish({ type: 'tandem:announce', to: sender.connectionId })
        return
      case 'tandem:description': {
        if (data.description === undefined) return
        const link = existing ?? (data.description.type === 'offer' ? this.#link(sender, permissions) : undefined)
        if (link === undefined) return
        await link.pc.setRemoteDescription(data.description)
        for (const candidate of link.pending.splice(0)) await link.pc.addIceCandidate(candidate)
        if (data.description.type === 'offer') {
          await link.pc.setLocalDescription(await link.pc.createAnswer())
          this.#describe(sender.connectionId, link.pc)
        }
        return
      }
      case 'tandem:candidate':
        if (existing === undefined || data.candidate === undefined) return
        if (existing.pc.remoteDescription === null) existing.pending.push(data.candidate)
        else await existing.pc.addIceCandidate(data.candidate)
        return
      default:
        return
    }
  }

  #link(peer: { connectionId: string; userId: string | null }, permissions: PermissionBits): Link {
    const pc = new this.#options.RTCPeerConnection({ iceServers: [...this.#options.iceServers] })
    const link: Link = { peer: { connectionId: peer.connectionId, userId: peer.userId }, permissions, pc, channel: null, pending: [], owned: new Set() }
    this.#links.set(peer.connectionId, link)
    pc.onicecandidate = (event) => {
      const c = event.candidate
      if (c !== null)
        this.#publish({
          type: 'tandem:candidate',
          to: peer.connectionId,
          candidate: { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex },
        })
    }
    pc.ondatachannel = (event) => this.#attach(link, event.channel)
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed') this.#drop(peer.connectionId)
    }
    return link
  }

  async #offer(peer: { connectionId: string; userId: string | null }, permissions: PermissionBits): Promise<void> {
    const link = this.#link(peer, permissions)
    this.#attach(link, link.pc.createDataChannel('tandem', { ordered: true }))
    await link.pc.setLocalDescription(await link.pc.createOffer())
    this.#describe(peer.connectionId, link.pc)
  }

  #describe(to: string, pc: RTCPeerConnection): void {
    const d = pc.localDescription
    if (d !== null) this.#publish({ type: 'tandem:description', to, description: { type: d.type, sdp: d.sdp } })
  }

  #attach(link: Link, channel: RTCDataChannel): void {
    link.channel = channel
    channel.binaryType = 'arraybuffer'
    channel.onopen = () => {
      sendOn(channel, encodeFrame(writeSyncStep1, Y.encodeStateVector(this.#options.doc)))
      const awareness = this.#options.awareness
      if (awareness !== null && this.canWritePresence && awareness.getLocalState() !== null) {
        sendOn(channel, encodeFrame(writeAwareness, encodeAwarenessUpdate(awareness, [this.#options.doc.clientID])))
      }
      this.#options.onPeers(this.peers)
    }
    channel.onmessage = (event: MessageEvent) => this.#onFrame(link, new Uint8Array(event.data as ArrayBuffer))
    channel.onclose = () => this.#drop(link.peer.connectionId)
  }

  #onFrame(link: Link, frame: Uint8Array): void {
    try {
      const decoder = decoding.createDecoder(frame)
      const type = decoding.readVarUint(decoder)
      if (type === MessageType.sync) {
        const syncType = decoding.readVarUint(decoder)
        const payload = decoding.readVarUint8Array(decoder)
        if (syncType === SyncType.step1) {
          // Readers receive over the mesh, never send.
          if (this.canWrite) sendOn(link.channel, encodeFrame(writeSyncStep2, Y.encodeStateAsUpdate(this.#options.doc, payload)))
          return
        }
        if (!canWrite(link.permissions)) {
          this.#refuse('read_only', `${describe(link)} may not write: its update was not applied`)
          return
        }
        Y.applyUpdate(this.#options.doc, payload, this.#options.origin)
        return
      }
      if (type === MessageType.awareness) {
        const awareness = this.#options.awareness
        if (awareness === null) return
        if (!canWritePresence(link.permissions)) {
          this.#refuse('presence_forbidden', `${describe(link)} may not show presence`)
          return
        }
        const update = decoding.readVarUint8Array(decoder)
        // A peer speaks only for the awareness clients it owns (the first it used, up to a few).
        const entries = readAwarenessUpdate(update)
        for (const { clientID } of entries) {
          const ownedElsewhere = clientID === this.#options.doc.clientID || [...this.#links.values()].some((l) => l !== link && l.owned.has(clientID))
          if (ownedElsewhere || (!link.owned.has(clientID) && link.owned.size >= MAX_OWNED_CLIENTS)) {
            this.#refuse('presence_forbidden', `${describe(link)} sent presence for a client it does not own`)
            return
          }
          link.owned.add(clientID)
        }
        applyAwarenessUpdate(awareness, update, this.#options.origin)
        return
      }
      this.#refuse('malformed_message', `${describe(link)} sent an unknown message`)
    } catch (err) {
      this.#refuse('malformed_message', `${describe(link)} sent what does not decode: ${(err as Error).message}`)
    }
  }

  #refuse(code: ErrorCode, message: string): void {
    this.refused[code] = (this.refused[code] ?? 0) + 1
    const now = Date.now()
    if (now - (this.#reportedAt.get(code) ?? 0) < REPORT_INTERVAL_MS) return
    this.#reportedAt.set(code, now)
    this.#options.onError(new TandemError(code, message))
  }

  #drop(connectionId: string): void {
    const link = this.#links.get(connectionId)
    if (link === undefined) return
    this.#links.delete(connectionId)
    link.channel?.close()
    link.pc.close()
    const awareness = this.#options.awareness
    if (awareness !== null && link.owned.size > 0) {
      // Its presence goes with its link (the server path, if it still has one, brings it back).
      const gone = [...link.owned].filter((id) => awareness.getStates().has(id))
      if (gone.length > 0) removeAwarenessStates(awareness, gone, this.#options.origin)
    }
    this.#options.onPeers(this.peers)
  }
}

/** Sends on a channel that is open; one closing meanwhile (its peer left) takes nothing. */
const sendOn = (channel: RTCDataChannel | null, frame: Uint8Array): void => {
  if (channel?.readyState !== 'open') return
  try {
    channel.send(frame as Uint8Array<ArrayBuffer>)
  } catch {
    // Closed between the check and the send: the link is being dropped.
  }
}

const describe = (link: Link): string => `peer ${link.peer.userId ?? 'anonymous'} (${link.peer.connectionId})`

const asCode = (code: string): ErrorCode => (isErrorCode(code) ? code : 'server_error')
