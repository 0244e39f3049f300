/**
 * `tandem/client`: what an editor imports. Browser-safe: `npm run build` bundles this entry for the
 * browser and fails on any Node builtin (test/package.test.ts checks the same).
 */

export { TandemProvider, type PeerOptions, type ProviderEvents, type Scheduler, type Self, type Status, type TandemProviderOptions } from './provider.ts'
export { PeerMesh, type MeshPeer } from './peer-mesh.ts'
export type { AuthOption } from './token-source.ts'
export { TandemError, type ErrorCode } from '../protocol/errors.ts'
export type { Permission } from '../protocol/permissions.ts'
