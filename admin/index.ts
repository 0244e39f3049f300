/**
 * `tandem/admin`: the REST and token-minting client an app's backend imports. It lives in
 * `client/admin.ts` beside the provider; this entry names its public surface. Runtime-neutral, so
 * `npm run build` bundles it for the browser and fails on any Node builtin.
 */

export {
  TandemAdmin,
  type ActiveUser,
  type Actor,
  type AuthorizeInput,
  type CreateRoomInput,
  type HistoryEntry,
  type IdentifyUserInput,
  type ListRoomsOptions,
  type Metadata,
  type MintedToken,
  type Page,
  type Permission,
  type Room,
  type RoomPatch,
  type TandemAdminOptions,
} from '../client/admin.ts'
export { TandemError, type ErrorCode } from '../protocol/errors.ts'
