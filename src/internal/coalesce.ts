/**
 * @internal
 * Shares one in-flight read per key among concurrent readers, without forking: the first reader runs
 * the read in its own fiber and publishes the outcome; readers arriving meanwhile await it. If the
 * first reader is interrupted, the others run the read again themselves.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"

/** @internal */
export interface Coalesce {
  readonly share: <A, E>(key: string, read: Effect.Effect<A, E>) => Effect.Effect<A, E>
  readonly size: () => number
}

/** @internal */
export const make = (): Coalesce => {
  const pending = new Map<string, Deferred.Deferred<unknown, unknown>>()

  const share = <A, E>(key: string, read: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.suspend(() => {
      const existing = pending.get(key) as Deferred.Deferred<A, E> | undefined
      if (existing !== undefined) {
        return Effect.catchAllCause(Deferred.await(existing), (cause) =>
          Cause.isInterruptedOnly(cause) ? share(key, read) : Effect.failCause(cause))
      }
      const deferred = Deferred.unsafeMake<A, E>(FiberId.none)
      pending.set(key, deferred as Deferred.Deferred<unknown, unknown>)
      return Effect.onExit(read, (exit) =>
        Effect.suspend(() => {
          if (pending.get(key) === deferred) pending.delete(key)
          return Deferred.done(deferred, exit)
        }))
    })

  return { share, size: () => pending.size }
}
