/**
 * Callers waiting for a key's lock to be released: each waits at most its timeout; a wake-up releases
 * every waiter of the key at once. Nothing is kept for a key nobody waits on.
 */
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"

export interface Waiters {
  readonly wait: (key: string, timeout: Duration.DurationInput) => Effect.Effect<void>
  /** Wakes every waiter of `key`; safe to call from outside a fiber (e.g. a pub/sub callback). */
  readonly wake: (key: string) => void
  /** How many waits are registered now, over every key. */
  readonly pending: () => number
}

export const make = (): Waiters => {
  const byKey = new Map<string, Set<Deferred.Deferred<void>>>()
  return {
    wait: (key, timeout) =>
      // Registered and cleaned up in one uninterruptible step, so an interruption cannot leave a waiter behind.
      Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          const deferred = Deferred.unsafeMake<void>(FiberId.none)
          let set = byKey.get(key)
          if (set === undefined) byKey.set(key, set = new Set())
          set.add(deferred)
          return restore(
            Deferred.await(deferred).pipe(
              Effect.timeoutTo({ duration: timeout, onSuccess: () => undefined, onTimeout: () => undefined })
            )
          ).pipe(
            Effect.ensuring(Effect.sync(() => {
              const current = byKey.get(key)
              current?.delete(deferred)
              if (current?.size === 0) byKey.delete(key)
            }))
          )
        })
      ),
    wake: (key) => {
      const set = byKey.get(key)
      if (set === undefined) return
      byKey.delete(key)
      for (const deferred of set) Deferred.unsafeDone(deferred, Effect.void)
    },
    pending: () => {
      let n = 0
      for (const set of byKey.values()) n += set.size
      return n
    }
  }
}
