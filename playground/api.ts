/**
 * The page's one way to the server's playground bridge (server/playground.ts): JSON in, JSON out,
 * a failed call rejects with the server's `{ error, message }` as an Error. The page never holds
 * the server secret; the bridge does.
 */

export type Access = 'write' | 'presence' | 'read' | 'none'

export interface UserInfo {
  readonly name: string
  readonly color: string
}

export async function api<T>(path: string, body?: object): Promise<T> {
  const init: RequestInit = body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
  const response = await fetch(`/playground/api/${path}`, init)
  const json = (await response.json().catch(() => null)) as { error?: string; message?: string } | null
  if (!response.ok) throw new Error(`${json?.error ?? response.status}: ${json?.message ?? path}`)
  return json as T
}
