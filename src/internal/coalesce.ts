/**
 * Shares one in-flight read per key among concurrent readers, without forking: the first reader runs
 * the read in its own fiber and publishes the outcome; readers arriving meanwhile await it. If the
 * first reader is interrupted, the others run the read again themselves.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"

export interface Coalesce {
  readonly share: <A, E>(key: string, read: Effect.Effect<A, E>) => Effect.Effect<A, E>
  readonly size: () => number
}

/** A read under way: its outcome, once known, is handed to the readers that joined it. */
interface Pending {
  /** Made when a second reader arrives: most reads are never shared and need none. */
  deferred: Deferred.Deferred<unknown, unknown> | undefined
}

export const make = (): Coalesce => {
  const pending = new Map<string, Pending>()

  const share = <A, E>(key: string, read: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.suspend(() => {
      const existing = pending.get(key)
      if (existing === undefined) return lead(key, read)
      existing.deferred ??= Deferred.unsafeMake(FiberId.none)
      // A reader whose leader was interrupted reads again itself. (A reader interrupted itself never
      // gets here: this runs in an interruptible region, so its interruption ends it first.)
      return Effect.catchAllCause(Deferred.await(existing.deferred as Deferred.Deferred<A, E>), (cause) =>
        Cause.isInterruptedOnly(cause) ? share(key, read) : Effect.failCause(cause))
    })

  // The entry is published and its completion installed in one uninterruptible step: an interruption in
  // between would leave the key's readers waiting on a Deferred nobody completes.
  const lead = <A, E>(key: string, read: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        if (pending.has(key)) return restore(share(key, read))
        const entry: Pending = { deferred: undefined }
        pending.set(key, entry)
        return Effect.onExit(restore(read), (exit) =>
          Effect.suspend(() => {
            if (pending.get(key) === entry) pending.delete(key)
            return entry.deferred === undefined ? Effect.void : Deferred.done(entry.deferred, exit)
          }))
      })
    )

  return { share, size: () => pending.size }
}
