/**
 * Bounds on real time. I/O bounds and connection waits use a timer, never the Effect Clock, so a
 * layer over a remote store works under `TestClock` (which only moves when a test moves it); logical
 * expiry keeps reading the Clock.
 */
import * as Effect from "effect/Effect"

/**
 * Fails with `onTimeout()` when `effect` has not settled after `millis` of real time (a timer, not the
 * Clock); the effect is interrupted then.
 */
export const timeoutReal = <A, E, E2>(
  effect: Effect.Effect<A, E>,
  millis: number,
  onTimeout: () => E2
): Effect.Effect<A, E | E2> =>
  Effect.raceFirst(
    effect,
    // Interruptible even where the caller is not (a lock is taken in an uninterruptible step): the
    // race waits for its loser to stop, and a timer that cannot be interrupted would wait its full time.
    Effect.interruptible(Effect.async<never, E2>((resume) => {
      const timer = setTimeout(() => resume(Effect.fail(onTimeout())), millis)
      return Effect.sync(() => clearTimeout(timer))
    }))
  )

/** Sleeps for `millis` of real time (a timer, not the Clock). */
export const sleepReal = (millis: number): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), millis)
    return Effect.sync(() => clearTimeout(timer))
  })

/**
 * Waits at most `millis` of real time for `effect`; past it, `onTimeout` runs instead.
 */
export const timeoutRealTo = <A, E, B, E2>(
  effect: Effect.Effect<A, E>,
  millis: number,
  onTimeout: Effect.Effect<B, E2>
): Effect.Effect<A | B, E | E2> =>
  Effect.raceFirst(
    effect,
    Effect.flatten(Effect.interruptible(Effect.async<Effect.Effect<B, E2>>((resume) => {
      const timer = setTimeout(() => resume(Effect.succeed(onTimeout)), millis)
      return Effect.sync(() => clearTimeout(timer))
    })))
  )

