/**
 * Cross-tab sync over BroadcastChannel: tabs of one browser holding the same room exchange updates
 * directly (y-websocket's framing over the channel). The provider opens it only while its session may
 * write: a channel bypasses the server, so a reader must never share through one.
 */

import * as decoding from 'lib0/decoding'
import * as Y from 'yjs'
import { SyncType, encodeFrame, writeSyncStep1, writeSyncStep2, writeUpdate } from '../protocol/messages.ts'

export class CrossTab {
  readonly #doc: Y.Doc
  readonly #channel: BroadcastChannel
  readonly #origin: object

  /** `origin` marks updates that came from another tab. */
  constructor(name: string, doc: Y.Doc, origin: object) {
    this.#doc = doc
    this.#origin = origin
    this.#channel = new BroadcastChannel(name)
    this.#channel.onmessage = (event: MessageEvent) => this.#receive(event.data)
    this.#post(encodeFrame(writeSyncStep1, Y.encodeStateVector(doc)))
  }

  static supported(): boolean {
    return typeof BroadcastChannel !== 'undefined'
  }

  publish(update: Uint8Array): void {
    this.#post(encodeFrame(writeUpdate, update))
  }

  close(): void {
    this.#channel.close()
  }

  #post(frame: Uint8Array): void {
    this.#channel.postMessage(frame)
  }

  #receive(data: unknown): void {
    if (!(data instanceof Uint8Array)) return
    try {
      const decoder = decoding.createDecoder(data)
      if (decoding.readVarUint(decoder) !== 0) return
      const syncType = decoding.readVarUint(decoder)
      const payload = decoding.readVarUint8Array(decoder)
      if (syncType === SyncType.step1) this.#post(encodeFrame(writeSyncStep2, Y.encodeStateAsUpdate(this.#doc, payload)))
      else Y.applyUpdate(this.#doc, payload, this.#origin)
    } catch {
      // Another tab's message that does not decode is ignored: tabs of one app trust each other.
    }
  }
}
