/**
 * A circuit breaker in front of a backend that does I/O (a store, a lock). After `failures`
 * consecutive failures of the kind that say the backend is unhealthy (a timeout, a refused or lost
 * connection, refused credentials) it opens: calls fail at once, without touching the backend. After
 * `openFor` (real time) it lets one call through as a probe (half-open): a success closes it, a
 * failure opens it again. Any answer from the backend (a success, or a failure that is about the
 * request, such as a value too large) counts as health.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"

export type State = "closed" | "open" | "half-open"

export interface Settings {
  readonly failures: number
  readonly openForMillis: number
}

export interface Breaker {
  /** Whether a call may go to the backend now; in half-open, only one probe at a time may. */
  readonly admit: () => boolean
  /** Records a call's outcome; the effect logs a change of state (and is `Effect.void` otherwise). */
  readonly record: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void>
  readonly state: () => State
  /** Closed with no failure counted: a success would change nothing, only a failure needs recording. */
  readonly healthy: () => boolean
  /** Records a failure (the cause of a failed call). */
  readonly recordFailure: (cause: Cause.Cause<unknown>) => Effect.Effect<void>
  /** Why a call was refused, for its error. */
  readonly refusal: () => string
}

export interface Events {
  /** The state changed: log it, update a gauge. `detail` says why. */
  readonly onChange: (state: State, detail: string) => Effect.Effect<void>
  /** Whether a failure says the backend is unhealthy (rather than something about the request). */
  readonly isOutage: (error: unknown) => boolean
  /** A failure as `detail` quotes it (its key redacted where keys are). Default: its message. */
  readonly describe?: ((error: unknown) => string) | undefined
}

/** An error's message, else its text. */
export const describe = (error: unknown): string =>
  typeof error === "object" && error !== null && "message" in error && typeof error.message === "string"
    ? error.message
    : String(error)

export const make = (settings: Settings, events: Events): Breaker => {
  const describeFailure = events.describe ?? describe
  let state: State = "closed"
  let consecutive = 0
  let openedAt = 0
  let probing = false

  const admit = (): boolean => {
    if (state === "closed") return true
    if (state === "open") {
      if (performance.now() - openedAt < settings.openForMillis) return false
      state = "half-open"
    }
    if (probing) return false
    probing = true
    return true
  }

  const open = (detail: string): Effect.Effect<void> => {
    const was = state
    state = "open"
    openedAt = performance.now()
    probing = false
    // A failed probe re-opens quietly: one line when the outage starts, one when it ends.
    return was === "closed" ? events.onChange("open", detail) : Effect.void
  }

  const record = (exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> => {
    if (exit._tag === "Failure") {
      const failure = Cause.failureOption(exit.cause)
      if (Option.isNone(failure)) {
        // Interrupted (or a defect): it says nothing of the backend; a probe may be tried again.
        probing = false
        return Effect.void
      }
      if (events.isOutage(failure.value)) {
        consecutive++
        if (state === "half-open") return open(`the probe failed: ${describeFailure(failure.value)}`)
        if (state === "closed" && consecutive >= settings.failures) {
          return open(`${consecutive} consecutive failures, the last: ${describeFailure(failure.value)}`)
        }
        return Effect.void
      }
    }
    // The backend answered.
    consecutive = 0
    probing = false
    if (state === "closed") return Effect.void
    state = "closed"
    return events.onChange("closed", "the backend answered")
  }

  return {
    admit,
    record,
    state: () => state,
    healthy: () => state === "closed" && consecutive === 0,
    recordFailure: (cause) => record(Exit.failCause(cause)),
    refusal: () =>
      `the circuit is open after ${settings.failures} consecutive failures; the backend is tried again within ${settings.openForMillis} ms`
  }
}

/**
 * Runs `effect` behind `breaker` (as it is, without one): refused at once while the circuit is open.
 * Admission is decided when the effect runs (an effect may be built once and run many times). While
 * healthy only a failure needs recording (one frame on the success path); otherwise every outcome.
 */
export const guard = <A, E, E2>(
  breaker: Breaker | undefined,
  effect: Effect.Effect<A, E>,
  refused: (refusal: string) => E2
): Effect.Effect<A, E | E2> =>
  breaker === undefined ? effect : Effect.suspend((): Effect.Effect<A, E | E2> =>
    breaker.healthy()
      ? Effect.tapErrorCause(effect, breaker.recordFailure)
      : breaker.admit()
      ? Effect.onExit(effect, breaker.record)
      : Effect.fail(refused(breaker.refusal()))
  )
