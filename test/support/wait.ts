/** Waiting on events, never on sleeps: each helper resolves when its condition holds, or fails with a message after a deadline. */

import type { Observable } from 'lib0/observable'

export const withDeadline = <T>(what: string, promise: Promise<T>, ms = 10_000): Promise<T> => {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

interface Emitter {
  // biome-ignore lint/suspicious/noExplicitAny: any emitter's listener signature must be assignable here
  on(event: string, listener: (...args: any[]) => void): unknown
  // biome-ignore lint/suspicious/noExplicitAny: as above
  off(event: string, listener: (...args: any[]) => void): unknown
}

/** Resolves once `check()` is true, re-checking whenever one of `events` fires on `emitter`. */
export const until = (what: string, emitter: Emitter | Observable<string>, events: string[], check: () => boolean, ms?: number): Promise<void> => {
  const target = emitter as Emitter
  return withDeadline(
    what,
    new Promise<void>((resolve) => {
      if (check()) return resolve()
      const listener = (): void => {
        if (check()) {
          for (const e of events) target.off(e, listener)
          resolve()
        }
      }
      for (const e of events) target.on(e, listener)
    }),
    ms,
  )
}

/** Resolves with the first emission of `event`. */
export const once = <T extends unknown[]>(what: string, emitter: Emitter, event: string, ms?: number): Promise<T> =>
  withDeadline(
    what,
    new Promise<T>((resolve) => {
      const listener = (...args: unknown[]): void => {
        emitter.off(event, listener)
        resolve(args as T)
      }
      emitter.on(event, listener)
    }),
    ms,
  )

/** Resolves once `check(docs)` holds, re-checked on any of the docs' updates. */
export const untilDocs = (
  what: string,
  docs: readonly { on(e: 'update', f: () => void): void; off(e: 'update', f: () => void): void }[],
  check: () => boolean,
  ms = 15_000,
): Promise<void> =>
  withDeadline(
    what,
    new Promise<void>((resolve) => {
      const listener = (): void => {
        if (!check()) return
        for (const d of docs) d.off('update', listener)
        resolve()
      }
      for (const d of docs) d.on('update', listener)
      listener()
    }),
    ms,
  )
