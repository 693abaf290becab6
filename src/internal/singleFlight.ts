/**
 * One run at a time per key: the first caller of a key starts the work in a fiber of its own, every
 * caller of that key meanwhile awaits the same outcome. Callers get the outcome as soon as the work
 * has it; the key stays in flight while `after` (e.g. the cache write) finishes, so a caller arriving
 * then shares the outcome instead of starting the work again. The work survives the interruption of any
 * caller as long as one caller still waits; when the last one leaves, the work is interrupted. A key
 * leaves the map as soon as its work ends, so idle keys cost nothing.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import type * as Scope from "effect/Scope"

interface Flight {
  readonly deferred: Deferred.Deferred<unknown, unknown>
  waiters: number
  fiber: Fiber.RuntimeFiber<void> | undefined
}

export interface SingleFlight {
  /** Runs `work` for `key` unless a run is under way, in which case its outcome is shared. */
  readonly run: <A, E, R, R2 = never>(
    key: string,
    work: Effect.Effect<A, E, R>,
    after?: (value: A) => Effect.Effect<void, never, R2>
  ) => Effect.Effect<A, E, R | R2>
  /** Whether a run for `key` is under way. */
  readonly has: (key: string) => boolean
  /** Keys with a run under way. */
  readonly size: () => number
  /**
   * Waits until no run is under way, or `millis` of real time: before the scope closes, so writes and
   * lock releases in flight land instead of being interrupted, without waiting on a dead server.
   */
  readonly settle: (millis: number) => Effect.Effect<void>
}

export const make = (scope: Scope.Scope): SingleFlight => {
  const flights = new Map<string, Flight>()
  const onIdle = new Set<() => void>()

  const remove = (key: string, flight: Flight) => {
    if (flights.get(key) !== flight) return
    flights.delete(key)
    if (flights.size === 0) for (const notify of onIdle) notify()
  }

  const leave = (key: string, flight: Flight) => Effect.sync(() => remove(key, flight))

  const settle = (millis: number): Effect.Effect<void> =>
    Effect.async<void>((resume) => {
      if (flights.size === 0) return resume(Effect.void)
      const done = () => {
        clearTimeout(timer)
        onIdle.delete(done)
        resume(Effect.void)
      }
      const timer = setTimeout(done, millis)
      onIdle.add(done)
      return Effect.sync(() => {
        clearTimeout(timer)
        onIdle.delete(done)
      })
    })

  const join = <A, E>(key: string, flight: Flight, restore: <X, Y, Z>(self: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>) => {
    flight.waiters++
    return restore(Deferred.await(flight.deferred) as Effect.Effect<A, E>).pipe(
      Effect.onExit((exit) =>
        Effect.suspend(() => {
          flight.waiters--
          if (flight.waiters > 0 || !Exit.isInterrupted(exit) || flight.fiber === undefined) return Effect.void
          // Nobody waits for this run any more: stop it, and let the next caller start afresh.
          remove(key, flight)
          return Fiber.interruptFork(flight.fiber)
        })
      )
    )
  }

  const run = <A, E, R, R2 = never>(
    key: string,
    work: Effect.Effect<A, E, R>,
    after?: (value: A) => Effect.Effect<void, never, R2>
  ): Effect.Effect<A, E, R | R2> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        const existing = flights.get(key)
        if (existing !== undefined) return join<A, E>(key, existing, restore)
        const flight: Flight = { deferred: Deferred.unsafeMake(FiberId.none), waiters: 0, fiber: undefined }
        flights.set(key, flight)
        // Waiters are answered by a finalizer, so they hear even of an interruption; `after` runs
        // interruptibly, so that closing the scope (after `settle`) never waits on it.
        return Effect.interruptible(work).pipe(
          Effect.onExit((exit) => Deferred.done(flight.deferred, exit)),
          Effect.flatMap((value) => after === undefined ? Effect.void : Effect.interruptible(after(value))),
          Effect.ensuring(leave(key, flight)),
          Effect.exit,
          Effect.forkIn(scope),
          Effect.flatMap((fiber) => {
            flight.fiber = fiber as Fiber.RuntimeFiber<void>
            return join<A, E>(key, flight, restore)
          })
        )
      })
    )

  return { run, has: (key) => flights.has(key), size: () => flights.size, settle }
}
