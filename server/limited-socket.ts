/**
 * The ws WebSocket class the server uses: ws refuses a frame larger than `maxPayload` as soon as
 * its header arrives (nothing is buffered) and closes with 1009. Tandem's contract is 4413
 * (`message_too_large`, final), so the stock y-websocket client stops instead of resending the same
 * oversized message forever. This is the one place that translates it.
 */

import { WebSocket } from 'ws'
import { CloseCode } from '../protocol/errors.ts'

const MESSAGE_TOO_BIG = 1009

export class LimitedWebSocket extends WebSocket {
  override close(code?: number, data?: string | Buffer): void {
    if (code === MESSAGE_TOO_BIG) super.close(CloseCode.tooLarge, 'message_too_large')
    else super.close(code, data)
  }
}
