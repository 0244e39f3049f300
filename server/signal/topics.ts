/**
 * Who is subscribed to each signalling topic (a room id), and relaying to them: a publish is
 * stamped with its sender's identity as the server knows it and encoded once for every subscriber
 * (the sender too, as y-webrtc's server does); a change of a subscriber's access is told to the
 * topic's Tandem clients, so their peers downgrade or drop the link.
 */

import { fromPermissionBits } from '../../protocol/permissions.ts'
import { type SignalSender, encodeRelayedPublish, encodeSignalMessage } from '../../protocol/signal.ts'
import type { Session } from '../auth/session.ts'

/** A subscriber as the topics see it (topic-session.ts). */
export interface TopicMember {
  /** Its socket's id: the peer's identity in relayed signals. */
  readonly id: string
  readonly roomId: string
  readonly session: Session
  readonly socket: { readonly speaksTandem: boolean; sendText(text: string): void }
}

export class Topics {
  readonly #members = new Map<string, Set<TopicMember>>()

  add(session: TopicMember): void {
    let members = this.#members.get(session.roomId)
    if (members === undefined) {
      members = new Set()
      this.#members.set(session.roomId, members)
    }
    members.add(session)
  }

  remove(session: TopicMember): void {
    const members = this.#members.get(session.roomId)
    if (members === undefined) return
    members.delete(session)
    if (members.size === 0) this.#members.delete(session.roomId)
  }

  /** Relays `body` from `sender` to the topic's subscribers, stamped with who sent it. */
  publish(sender: TopicMember, body: Readonly<Record<string, unknown>>): void {
    const members = this.#members.get(sender.roomId)
    if (members === undefined) return
    const text = encodeRelayedPublish(sender.roomId, body, members.size, stampOf(sender))
    for (const member of members) member.socket.sendText(text)
  }

  /** Tells the topic's Tandem clients (but `about`) that `about`'s permissions are now these. */
  peerChanged(about: TopicMember, permissions: number): void {
    const members = this.#members.get(about.roomId)
    if (members === undefined) return
    const text = encodeSignalMessage({ type: 'tandem:peer', topic: about.roomId, connectionId: about.id, permissions: fromPermissionBits(permissions) })
    for (const member of members) if (member !== about && member.socket.speaksTandem) member.socket.sendText(text)
  }

  get size(): number {
    return this.#members.size
  }
}

const stampOf = (session: TopicMember): SignalSender => {
  const { actor, permissions } = session.session
  return { connectionId: session.id, userId: actor.kind === 'user' ? actor.userId : null, permissions: fromPermissionBits(permissions) }
}
