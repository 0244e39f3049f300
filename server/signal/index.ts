/**
 * server/signal: signalling for WebRTC peers (`/v1/signal`, y-webrtc's JSON protocol): the socket
 * and its in-order message handling (signal-route.ts), one socket's subscription to one room as a
 * live session (topic-session.ts) and the topics' subscribers with the stamped relay (topics.ts).
 * Imports auth/, sync/ (the socket with its budgets), protocol; nothing imports it but the
 * composition root.
 */

export { signalRoute, type SignalContext } from './signal-route.ts'
export { TopicSession, type SignalPeer } from './topic-session.ts'
export { Topics } from './topics.ts'
