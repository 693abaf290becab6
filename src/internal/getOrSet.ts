/**
 * `getOrSet`, in the order it runs:
 *
 * 1. `getOrSet`: validate the key, then read (the shared hit path). A fresh value is the answer; a
 *    stale one (past its ttl, within the keyspace's grace) is kept for the producer's failure, served
 *    at once while a failed producer's `graceBackoff` lasts, and after `softTimeout` (`softly`).
 * 2. `guard`: on a miss, one run per key in this process; every other caller of the key joins it.
 *    A run answers its callers first and then finishes its `then` (the write, the lock's release).
 * 3. `coordinate`: with a lock in context, `locked`; without (or, at least once, when the store has
 *    just failed), `reread` then `produce`.
 * 4. `locked`: take the key's lock (or wait for its holder and read again), `reread` under it,
 *    `produce` while a watchdog extends the lease, then `release` it with the value.
 * 5. `planWrite`: what is stored for a produced value (nothing for `skip`, `cacheWrite: false` or a
 *    value that cannot be encoded), conditional on the store's version noted before the producer ran
 *    (`produceSince`): a key written or deleted meanwhile keeps its newer state.
 * 6. `release` (locked) or `writeUnlocked`: store it, once the callers have their value. Closing the
 *    cache gives both a moment (50 ms) to land, so a value produced just before a shutdown is stored
 *    and its lock freed, without waiting on a dead server.
 * 7. `produced`: then the `onProduced` hooks (the keyspace's, the call's), failures logged.
 *
 * Store and lock failures never reach the caller: they are absorbed (logged, counted) and the
 * producer's value is returned; only `lockMode: "at-most-once"` turns a lock failure into a `LockError`.
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import { LockError, ProducerTimeoutError } from "../CacheError.js"
import type * as CacheLock from "../CacheLock.js"
import * as CacheEntry from "../CacheEntry.js"
import * as CacheStore from "../CacheStore.js"
import { absorb, type Engine } from "./engine.js"
import { firstLine } from "./report.js"
import { isInvalidKey, storeKey } from "./keys.js"
import { withCallPolicy } from "./keyspace.js"
import type { CallOptions, Definition } from "./model.js"
import { lookup, Outcome, reread as rereadEntry, staleValue } from "./read.js"
import { encode, encodeFailure, remember } from "./write.js"

/** One call's miss path: everything the steps below consult. */
interface Run<K, A, Id, E, R> {
  readonly engine: Engine
  readonly keyspace: Definition<K, A, Id, unknown>
  /** The caller's key, for `onProduced`. */
  readonly userKey: K
  /** The store key. */
  readonly key: string
  readonly produce: Effect.Effect<A, E, R>
  readonly options: CallOptions<A> | undefined
  /** Whether to read again under the guard (not after a forced refresh, nor right after the store failed). */
  readonly readFirst: boolean
  /** The store has just failed this call: at least once, it produces without waiting on the store again. */
  readonly storeFailed: boolean
  /** What the store held past its ttl, within its grace (the latest read's): served if the producer fails. */
  stale: Outcome | undefined
  /** An eager refresh: a fresh entry past its refresh point is produced again, not answered. */
  readonly refreshing: boolean
}

/**
 * A producer failure the keyspace caches (`cacheFailure`), or one read back from the cache: every
 * caller of the run fails with it. The class is private, so no value of a user can be one.
 */
export class Failed {
  constructor(readonly error: unknown) {}
}

/**
 * What a batch run (`getOrSetMany`) answers for a key its producer did not return: a caller of
 * `getOrSet` that joined it runs its own producer, a batch that joined it has `None` for the key.
 */
export class NotProduced {}

/** The one `NotProduced`. */
export const notProduced = new NotProduced()

/**
 * A stale value a run gives its callers because its producer failed: each caller that answers with
 * it counts it (`staleServed`) as it answers, so a run nobody waits for any more counts nothing.
 */
export class Stale<A> {
  constructor(readonly value: A) {}
}

/**
 * What a run gives its callers, and what it does once they have it: store the value, release the lock.
 * Only a batch run answers `NotProduced`.
 */
export interface Produced<A> {
  readonly value: A | Failed | NotProduced | Stale<A>
  readonly then: Effect.Effect<void>
}

const found = <A>(value: A | Failed | NotProduced | Stale<A>): Produced<A> => ({ value, then: Effect.void })

/** 1. Validate the key and read; a miss (or a failed read) goes to the guard. */
export const getOrSet = <K, A, Id, E, R>(
  engine: Engine,
  ownKeyspace: Definition<K, A, Id, unknown>,
  key: K,
  produce: Effect.Effect<A, E, R>,
  options: CallOptions<A> | undefined
): Effect.Effect<A, E | LockError | ProducerTimeoutError, R> => {
  // A call's own eagerRefresh or cacheFailure: the keyspace with them.
  const keyspace = withCallPolicy(ownKeyspace, options)
  const full = storeKey(engine, "getOrSet", keyspace, key)
  const hard = hardTimeoutOf(keyspace, options)
  if (isInvalidKey(full)) return Effect.zipRight(absorb(engine, keyspace.name, full, undefined), bounded(produce, hard, keyspace.name))
  const run = (readFirst: boolean, storeFailed = false, stale?: Outcome, refreshing = false): Run<K, A, Id, E, R> => ({
    engine,
    keyspace,
    userKey: key,
    key: full,
    produce,
    options,
    readFirst,
    storeFailed,
    stale,
    refreshing
  })
  if (options?.cacheRead === false) {
    return options.cacheWrite === false ? bounded(produce, hard, full) : hardly(run(false), guard)
  }
  // A run is under way: join it (under the guard, read again first: it may have just stored its value).
  // `has` is only a shortcut: a stale answer costs a read or a join, never correctness. With a hard
  // timeout the read comes first, so a caller that stops waiting has the stale value to give.
  if (hard === undefined && engine.flights.has(full)) return guard(run(true))
  return lookup(engine, "getOrSet", keyspace, full, {
    onHit: Effect.succeed,
    // Past the keyspace's eagerRefresh point: the value now, a refresh in the background.
    onDue: (value) => Effect.as(refreshEagerly(run(true, false, undefined, true)), value),
    onMiss: (outcome) =>
      outcome === undefined || outcome._tag !== "Stale"
        ? outcome?._tag === "Failure"
          // A cached failure (`cacheFailure`), still fresh: the callers fail with it, no producer runs.
          ? Effect.fail(outcome.value as E)
          : hardly(run(true), guard)
        // A stale entry (past its ttl, within its grace) is kept for the producer's failure.
        : backingOff(engine, keyspace, full, outcome, () => hardly(run(true, false, outcome), softly)),
    // The store has just failed: don't wait on it a second time before producing.
    onFailure: (error) => Effect.zipRight(absorb(engine, keyspace.name, error, undefined), hardly(run(false, true), guard))
  })
}

/**
 * Starts an eager refresh of a key in the background, unless a run or a refresh of the key is under
 * way in the process (`refreshBlocked`, and the key's one refresh guard, `eagerFlightKey`, whatever
 * the lock mode; checked and registered in one step) or its last refresh failed less than
 * `graceBackoff` ago. The refresh is an ordinary run (under the lock across processes) whose second
 * look produces again unless another run has already replaced the entry, bounded by
 * `backgroundLimit`. A failure (the bound passing included) keeps the old value; it is logged and
 * counted (`effect_cachekit_refresh_failures_total`), and backs the key off.
 */
const refreshEagerly = <K, A, Id, E, R>(run: Run<K, A, Id, E, R>): Effect.Effect<void, never, R> =>
  Effect.clockWith((clock) => {
    const { engine, key, keyspace } = run
    const limit = backgroundLimit(engine, keyspace, run.options)
    const failed = (cause: Cause.Cause<unknown>) =>
      // Interrupted (the cache closing) is no failure of the refresh.
      Cause.isInterruptedOnly(cause) ? Effect.void : backOffAfter(engine, keyspace, key, "eager", () => {
        engine.bindingOf(keyspace).counters.refreshFailure(key, cause)
        return `the eager refresh of "${engine.report.key(key)}" failed (${firstLine(cause)}); the old value stays, next try in ${keyspace.graceBackoffMillis} ms at the earliest`
      })
    // In the runs' scope: closing the cache stops it, as it stops a batch's refresh.
    return Effect.asVoid(engine.flights.startMany<Produced<A>, E | LockError | ProducerTimeoutError, R>(
      [eagerFlightKey(key)],
      () => refreshBlocked(engine, key) || isBackingOff(engine, key, clock.unsafeCurrentTimeMillis()),
      () =>
        Effect.map(withinLimit(coordinate(run), limit, key), (produced) => ({
          outcomes: [{ exit: Exit.succeed(produced), stays: true }],
          then: produced.then
        })),
      (_, exit) => Exit.isFailure(exit) ? failed(exit.cause) : Effect.void
    ))
  })

/**
 * Whether a run of `key` that a refresh must not overlap is under way in the process: a cold run (in
 * either lock mode) or a forced refresh (`cacheRead: false`, `refreshEvery`). Eager refreshes (a
 * `getOrSet`'s and a batch's) share one guard key, `eagerFlightKey`, so they exclude each other.
 */
export const refreshBlocked = (engine: Engine, key: string): boolean =>
  engine.flights.has(key) || engine.flights.has(`${key}\u0000at-most-once`) ||
  engine.flights.has(`${key}\u0000refresh`) || engine.flights.has(`${key}\u0000refresh\u0000at-most-once`)

/**
 * How long a run that nobody waits for in the foreground (an eager refresh, a run left after a soft
 * timeout) may go on: the call's `hardTimeout`, else the keyspace's, else three times the call's or
 * cache's `lockTimeout` (30 s by default): past `lockTimeout` the other instances have stopped waiting
 * for its locks. When it passes the run is interrupted: its locks released, nothing stored.
 */
export const backgroundLimit = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id, unknown>,
  options: { readonly hardTimeout?: Duration.DurationInput | undefined; readonly lockTimeout?: Duration.DurationInput | undefined } | undefined
): Duration.Duration =>
  timeoutOf(options?.hardTimeout, keyspace.hardTimeout) ??
    Duration.times(Duration.decode(options?.lockTimeout ?? engine.lockSettings.timeout), 3)

/** A background run within its limit: past it, it is interrupted and fails with `ProducerTimeoutError`. */
export const withinLimit = <A, E, R>(work: Effect.Effect<A, E, R>, limit: Duration.Duration, key: string | undefined) =>
  Effect.timeoutFail(work, {
    duration: limit,
    onTimeout: () => producerTimeout(key, limit)
  })

/** The failure of a caller that waited `timeout` for a producer (of `key`, or of a batch: `undefined`). */
export const producerTimeout = (key: string | undefined, timeout: Duration.Duration) =>
  new ProducerTimeoutError({ reason: "Timeout", operation: "getOrSet", key, timeout })

/** A call's own timeout, else its keyspace's. */
export const timeoutOf = (own: Duration.DurationInput | undefined, keyspace: Duration.Duration | undefined) =>
  own === undefined ? keyspace : Duration.decode(own)

/** The hard timeout of a call: its own, else its keyspace's. */
const hardTimeoutOf = <K, A, Id>(keyspace: Definition<K, A, Id, unknown>, options: CallOptions<A> | undefined) =>
  timeoutOf(options?.hardTimeout, keyspace.hardTimeout)

/** A producer run without the cache (an invalid key, neither read nor write), still within the hard timeout. */
const bounded = <A, E, R>(produce: Effect.Effect<A, E, R>, hard: Duration.Duration | undefined, key: string) =>
  hard === undefined
    ? produce
    : Effect.timeoutFail(produce, {
      duration: hard,
      onTimeout: () => producerTimeout(key, hard)
    })

/**
 * With a hard timeout (the call's, else the keyspace's): a caller that has waited that long for the
 * run (on the Clock) gets the stale value if there is one, else fails with `ProducerTimeoutError`. It
 * leaves the run, which is interrupted (its lock released) unless another caller still waits for it.
 */
const hardly = <K, A, Id, E, R>(
  run: Run<K, A, Id, E, R>,
  wait: (run: Run<K, A, Id, E, R>) => Effect.Effect<A, E | LockError, R>
): Effect.Effect<A, E | LockError | ProducerTimeoutError, R> => {
  const hard = hardTimeoutOf(run.keyspace, run.options)
  if (hard === undefined) return wait(run)
  // Interruptible even where the caller is not, so the timeout can leave the run (as a waiter may).
  return Effect.flatten(Effect.timeoutTo(Effect.interruptible(wait(run)), {
    duration: hard,
    onSuccess: Effect.succeed,
    onTimeout: (): Effect.Effect<A, ProducerTimeoutError> => {
      const stale = staleValue(run.keyspace, run.stale)
      if (stale !== undefined) {
        run.engine.bindingOf(run.keyspace).counters.staleServed(run.key)
        return Effect.succeed(stale)
      }
      return Effect.fail(producerTimeout(run.key, hard))
    }
  }))
}

/**
 * 2. One run per key in this process. A forced refresh never joins a run that may answer from the
 * cache, and a caller never joins a run whose lock mode may fail it with an error its type does not
 * have. Control characters never occur in store keys, so these flight keys cannot collide.
 */
const guard = <K, A, Id, E, R>(run: Run<K, A, Id, E, R>): Effect.Effect<A, E | LockError, R> =>
  Effect.flatMap(joinOrRun(run), (value) => answer(run, value)) as Effect.Effect<A, E | LockError, R>

/** The run's outcome for this caller, not yet answered (a stale value is counted by `answer`). */
const joinOrRun = <K, A, Id, E, R>(run: Run<K, A, Id, E, R>): Effect.Effect<A | Failed | Stale<A>, E | LockError, R> =>
  // Callers get the value first; the key stays in flight until the run's `then` (the write, the
  // release) is done, so a caller arriving meanwhile joins instead of producing again.
  // A batch run that got nothing for the key has let it go: this caller then runs its own producer.
  Effect.flatMap(run.engine.flights.run(flightKeyOf(run), coordinate(run), thenOf), (produced) =>
    produced.value instanceof NotProduced ? joinOrRun(run) : Effect.succeed(produced.value)) as Effect.Effect<A | Failed | Stale<A>, E | LockError, R>

/**
 * A run's key in the guard. An eager refresh has its own (`eagerFlightKey`, taken by
 * `refreshEagerly`), so callers served from the cache meanwhile never wait for it nor share its failure.
 */
const flightKeyOf = <K, A, Id, E, R>(run: Run<K, A, Id, E, R>): string =>
  `${run.options?.cacheRead === false ? `${run.key}\u0000refresh` : run.key}${
    run.options?.lockMode === "at-most-once" ? "\u0000at-most-once" : ""
  }`

/** The guard's key of an eager refresh of `key` (a `getOrSet`'s or a batch's: they exclude each other). */
export const eagerFlightKey = (key: string): string => `${key}\u0000eager`

const thenOf = <A>(produced: Produced<A>) => produced.then
/**
 * A caller's answer: the run's value, or the cached failure (one of the keyspace's failures, as its
 * type says), or the stale value its failed producer left (counted here, as this caller serves it).
 */
const answer = <K, A, Id, E, R>(run: Run<K, A, Id, E, R>, value: A | Failed | Stale<A>): Effect.Effect<A, unknown> => {
  if (value instanceof Failed) return Effect.fail(value.error)
  if (value instanceof Stale) {
    run.engine.bindingOf(run.keyspace).counters.staleServed(run.key)
    return Effect.succeed(value.value)
  }
  return Effect.succeed(value)
}

/**
 * 3. With a lock in context, produce under it; without one, read again and produce. When the store
 * has just failed, a call that may produce more than once does not wait on the lock (the same server,
 * most often) either: one store timeout, then the producer.
 */
const coordinate = <K, A, Id, E, R>(run: Run<K, A, Id, E, R>): Effect.Effect<Produced<A>, E | LockError, R> => {
  const lock = run.engine.lock
  const skipLock = run.storeFailed && run.options?.lockMode !== "at-most-once"
  if (lock !== undefined && !skipLock) return locked(run, lock)
  return Effect.flatMap(reread(run), (hit) => Option.isSome(hit) ? Effect.succeed(found<A>(hit.value)) : produceUnlocked(run))
}

/** Produces without a lock; the value is stored once the callers have it. */
const produceUnlocked = <K, A, Id, E, R>(run: Run<K, A, Id, E, R>): Effect.Effect<Produced<A>, E, R> =>
  produceSince(
    run,
    (value, since) => Effect.succeed({ value, then: Effect.zipRight(writeUnlocked(run, value, since), produced(run, value)) }),
    (stale) => found<A>(new Stale(stale))
  )

/**
 * A stale value whose producer failed less than `graceBackoff` ago is served without running the
 * producer again; otherwise `otherwise` runs (the producer, under the guard).
 */
const backingOff = <K, A, Id, X, E, R>(
  engine: Engine,
  keyspace: Definition<K, A, Id, unknown>,
  key: string,
  stale: Outcome,
  otherwise: () => Effect.Effect<A | X, E, R>
): Effect.Effect<A | X, E, R> =>
  Effect.clockWith((clock) => {
    if (!isBackingOff(engine, key, clock.unsafeCurrentTimeMillis())) return otherwise()
    const value = staleValue(keyspace, stale)
    if (value === undefined) return otherwise()
    engine.bindingOf(keyspace).counters.staleServed(key)
    return Effect.succeed(value)
  })

/**
 * With a stale value and a soft timeout: the run goes on in a fiber of its own, and a caller that has
 * waited the soft timeout (on the Clock) gets the stale value; the run completes in the background
 * (one run, under the lock, its value stored) whether or not anyone still waits for it.
 */
const softly = <K, A, Id, E, R>(run: Run<K, A, Id, E, R>): Effect.Effect<A, E | LockError, R> => {
  const soft = timeoutOf(run.options?.softTimeout, run.keyspace.softTimeout)
  if (soft === undefined) return guard(run)
  const stale = staleValue(run.keyspace, run.stale)
  if (stale === undefined) return guard(run)
  // The join is interruptible even where the caller is not (an HTTP handler runs uninterruptibly):
  // the timeout must be able to stop waiting for it.
  // The run's waiter in the background, for at most `backgroundLimit`: then it leaves the run (which is
  // interrupted, its lock released, unless another caller still waits for it).
  const limit = backgroundLimit(run.engine, run.keyspace, run.options)
  return Effect.flatMap(Effect.forkDaemon(Effect.exit(withinLimit(joinOrRun(run), limit, run.key))), (fiber) =>
    Effect.interruptible(Fiber.join(fiber)).pipe(
      Effect.timeoutTo({
        duration: soft,
        onSuccess: (exit): Effect.Effect<A, E | LockError> =>
          Exit.isSuccess(exit)
            ? answer(run, exit.value) as Effect.Effect<A, E>
            // Only this caller's own hard timeout (shorter than the soft one) can end it first.
            : Effect.failCause(exit.cause as Cause.Cause<E | LockError>),
        onTimeout: () => {
          run.engine.bindingOf(run.keyspace).counters.staleServed(run.key)
          return Effect.succeed(stale)
        }
      }),
      Effect.flatten
    ))
}

/** How many keys' backoffs are remembered at most (oldest out: that key's producer may run sooner). */
const maxBackoffs = 10_000

/** Whether a key's producer is backed off at `now` (the Clock's time); an ended backoff is forgotten. */
export const isBackingOff = (engine: Engine, key: string, now: number): boolean => {
  const until = engine.backoff.get(key)
  if (until === undefined) return false
  if (now < until) return true
  engine.backoff.delete(key)
  return false
}

/**
 * After a failed run of a key's producer: the key is backed off for `graceBackoff` (on the Clock), and
 * the failure logged at a bounded rate (`message` also counts it).
 */
export const backOffAfter = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id, unknown>,
  key: string,
  kind: string,
  message: () => string
): Effect.Effect<void> => {
  return Effect.clockWith((clock) => {
    engine.backoff.delete(key)
    engine.backoff.set(key, clock.unsafeCurrentTimeMillis() + keyspace.graceBackoffMillis)
    if (engine.backoff.size > maxBackoffs) engine.backoff.delete(engine.backoff.keys().next().value!)
    const line = message()
    return engine.report.warn(`${keyspace.name}\u0000${kind}`, { keyspace: keyspace.name, operation: "getOrSet" }, () => line)
  })
}

/**
 * The producer failed and a stale value exists: it is served (each caller that answers with it
 * counts it), logged at a bounded rate, and the key's producer is not run again for `graceBackoff`.
 */
const servedStale = <K, A, Id, E, R>(run: Run<K, A, Id, E, R>, cause: Cause.Cause<unknown>): Effect.Effect<void> => {
  const { engine, key, keyspace } = run
  return backOffAfter(engine, keyspace, key, "stale", () => {
    return `the producer of "${engine.report.key(key)}" failed (${firstLine(cause)}); serving its stale value for ${keyspace.graceBackoffMillis} ms before trying again`
  })
}

/**
 * 7. After a producer ran and its value was stored: the keyspace's `onProduced`, then the call's,
 * with the keyspace's cache in context; a failure or defect is logged, nothing else.
 */
const produced = <K, A, Id, E, R>(run: Run<K, A, Id, E, R>, value: A | Failed | Stale<A>): Effect.Effect<void> =>
  value instanceof Failed || value instanceof Stale ? Effect.void : onProducedHooks(run.engine, run.keyspace, run.userKey, value, run.options?.onProduced)

/** The `onProduced` hooks of a produced value: the keyspace's, then the call's; a failure is logged. */
export const onProducedHooks = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id, unknown>,
  userKey: K,
  value: A,
  call: ((value: A) => Effect.Effect<void, unknown>) | undefined
): Effect.Effect<void> => {
  const own = keyspace.onProduced
  if (own === undefined && call === undefined) return Effect.void
  const service = engine.service.current
  const hooks = Effect.suspend(() => {
    const first = own === undefined || service === undefined
      ? Effect.void
      : Effect.provideService(own(userKey, value), keyspace.cache, service)
    return call === undefined ? first : Effect.zipRight(first, call(value))
  })
  return Effect.catchAllCause(hooks, (cause) =>
    engine.report.warn(
      `${keyspace.name}\u0000onProduced`,
      { keyspace: keyspace.name, operation: "getOrSet" },
      () => `an onProduced hook failed (${firstLine(cause)}); the value was stored all the same`
    ))
}

/**
 * Runs the producer, noting first the store's version (where the store can make a write conditional
 * on it): the value is then stored only if the key was neither written nor deleted after that, so a
 * value produced while the key was invalidated or replaced does not overwrite the newer state.
 * A failure with a stale value in grace gives the stale value (`onStale`); else a typed failure the
 * keyspace caches goes on to `f` as a `Failed`, to be stored and failed with.
 */
const produceSince = <K, A, Id, E, R, B, E2, R2>(
  run: Run<K, A, Id, E, R>,
  f: (value: A | Failed, since: number | undefined) => Effect.Effect<B, E2, R2>,
  onStale: (stale: A) => B
): Effect.Effect<B, E | E2, R | R2> =>
  Effect.flatMap(run.engine.versionMark, (since) =>
    Effect.matchCauseEffect(run.produce, {
      onSuccess: (value) => f(value, since),
      // A failure (typed or a defect, not an interruption) with a stale value in grace: the stale value.
      onFailure: (cause): Effect.Effect<B, E | E2, R2> => {
        const stale = Cause.isInterruptedOnly(cause) ? undefined : staleValue(run.keyspace, run.stale)
        if (stale !== undefined) return Effect.as(servedStale(run, cause), onStale(stale))
        // A refresh (eager, or forced with `cacheRead: false`) never replaces a value with a failure.
        const refresh = run.refreshing || run.options?.cacheRead === false
        const failure = run.keyspace.failure === undefined || refresh ? Option.none() : Cause.failureOption(cause)
        return Option.isSome(failure) && run.keyspace.failure!.matches(failure.value)
          ? f(new Failed(failure.value), since)
          : Effect.failCause(cause)
      }
    }))

/**
 * The second look: under the guard or the lock, another run may have stored the value meanwhile.
 * `afterLock`: a lock on the store's server has just answered for the key (its key is in the entry's
 * hash slot), so that server is up: an open breaker (other keys' failures) does not turn this read
 * into a miss and a second producer run.
 */
const reread = <K, A, Id, E, R>(run: Run<K, A, Id, E, R>, afterLock = false): Effect.Effect<Option.Option<A | Failed>> =>
  run.readFirst
    ? rereadEntry(run.engine, run.keyspace, run.key, !afterLock || run.engine.lock?.inProcess !== false).pipe(
      Effect.map((found): Option.Option<A | Failed> => {
        if (!(found instanceof Outcome)) return Option.some(found)
        if (found._tag === "Failure") return Option.some(new Failed(found.value))
        // Fresh, but due for an eager refresh: the refresh produces it again, anyone else takes it.
        if (found._tag === "Due") return run.refreshing ? Option.none() : Option.some(found.value as A)
        if (found._tag === "Stale") run.stale = found
        return Option.none()
      }),
      Effect.catchAll((error) => absorb(run.engine, run.keyspace.name, error, Option.none<A | Failed>()))
    )
    : Effect.succeedNone

/**
 * 4. Produce while holding the key's lock, so that one instance in the fleet produces at a time: take
 * the lock; if another instance holds it, wait for its release (or a poll interval) and read again,
 * until `lockTimeout`, then `lockMode` decides. A failing lock backend is absorbed like a failing store
 * (or, at most once, fails the call with a `LockError`).
 */
const locked = <K, A, Id, E, R>(
  run: Run<K, A, Id, E, R>,
  lock: CacheLock.CacheLock
): Effect.Effect<Produced<A>, E | LockError, R> => {
  const { engine, key, options } = run
  const waitLimit = Duration.toMillis(Duration.decode(options?.lockTimeout ?? engine.lockSettings.timeout))
  const pollMillis = Duration.toMillis(engine.lockSettings.pollInterval)

  const attempt = (deadline: number): Effect.Effect<Produced<A>, E | LockError, R> =>
    acquire(run, lock, Effect.flatMap(engine.lockNow, (now) => {
      const remaining = deadline - now
      if (remaining <= 0) {
        return withoutLock(run, new LockError({ reason: "Timeout", operation: "lock", key, cause: `another instance held the lock for over ${waitLimit} ms` }))
      }
      return lock.awaitRelease(key, Duration.millis(Math.min(remaining, pollMillis))).pipe(
        Effect.zipRight(reread(run, true)),
        Effect.flatMap((hit) => Option.isSome(hit) ? Effect.succeed(found<A>(hit.value)) : attempt(deadline))
      )
    }))

  return Effect.flatMap(engine.lockNow, (now) => attempt(now + waitLimit))
}

/** Without the lock (it failed, or its holder kept it too long): at most once fails, at least once produces. */
const withoutLock = <K, A, Id, E, R>(run: Run<K, A, Id, E, R>, error: LockError): Effect.Effect<Produced<A>, E | LockError, R> =>
  run.options?.lockMode === "at-most-once"
    ? Effect.fail(error)
    : Effect.zipRight(absorb(run.engine, run.keyspace.name, error, undefined), produceUnlocked(run))

/**
 * Takes the lock and, in the same uninterruptible step, makes sure it is released exactly once:
 * without the value on failure, defect or interruption (before the caller hears of it); with the value
 * on success, as the run's `then` (after the callers have it). `onBusy` runs when
 * another instance holds it.
 */
const acquire = <K, A, Id, E, R>(
  run: Run<K, A, Id, E, R>,
  lock: CacheLock.CacheLock,
  onBusy: Effect.Effect<Produced<A>, E | LockError, R>
): Effect.Effect<Produced<A>, E | LockError, R> => {
  const { engine, key } = run
  return Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(
      // Interruptible, so the bound can cut a hung acquire short (the lock cleans up after an acquire
      // whose reply it never had); the rest of the step cannot be interrupted.
      Effect.either(restore(engine.boundLock("lock", key, lock.tryAcquire(key, engine.lockSettings.lease)))),
      (acquired): Effect.Effect<Produced<A>, E | LockError, R> => {
        if (acquired._tag === "Left") return restore(withoutLock(run, acquired.left))
        if (Option.isNone(acquired.right)) return restore(onBusy)
        const lease = acquired.right.value
        return restore(holding(run, lock, lease)).pipe(
          Effect.onError(() => Effect.ignore(engine.boundLock("unlock", key, lock.release(lease, Option.none())))),
          // As without a lock: the hooks run once the run's write is done (stored or not).
          Effect.map(({ value, write, ran }) => ({
            value,
            then: ran ? Effect.zipRight(release(run, lock, lease, write), produced(run, value)) : release(run, lock, lease, write)
          }))
        )
      }
    )
  )
}

/** What a run holding the lease answers, what its release stores, and whether its producer ran. */
interface Holding<A> {
  readonly value: A | Failed | Stale<A>
  readonly write: Option.Option<CacheLock.Write>
  readonly ran: boolean
}

/** Holding the lease: read again, produce (the watchdog extends the lease meanwhile), plan the write. */
const holding = <K, A, Id, E, R>(
  run: Run<K, A, Id, E, R>,
  lock: CacheLock.CacheLock,
  lease: CacheLock.Lease
): Effect.Effect<Holding<A>, E, R> =>
  Effect.flatMap(reread(run, true), (found) => {
    if (Option.isSome(found)) return Effect.succeed({ value: found.value, write: Option.none(), ran: false })
    return Effect.flatMap(Effect.fork(watchdog(run, lock, lease)), (fiber) =>
      produceSince(
        run,
        (value, since) => Effect.map(planWrite(run, value, since), (write): Holding<A> => ({ value, write, ran: true })),
        // The stale value was served: nothing to store; the lock is released.
        (stale): Holding<A> => ({ value: new Stale(stale), write: Option.none(), ran: false })
      ).pipe(
        Effect.ensuring(Fiber.interrupt(fiber))
      ))
  })

/** Extends the lease every third of it while the producer runs; a failed extend is tried again soon. */
const watchdog = <K, A, Id, E, R>(
  run: Run<K, A, Id, E, R>,
  lock: CacheLock.CacheLock,
  lease: CacheLock.Lease
): Effect.Effect<void> => {
  const { engine, key } = run
  const leaseDuration = engine.lockSettings.lease
  const extendEvery = Duration.divide(leaseDuration, 3).pipe(Option.getOrElse(() => leaseDuration))
  const retryEvery = Duration.divide(extendEvery, 4).pipe(Option.getOrElse(() => extendEvery))
  const tick = (wait: Duration.Duration): Effect.Effect<void> =>
    engine.lockSleep(wait).pipe(
      Effect.zipRight(Effect.either(engine.boundLock("lock", key, lock.extend(lease, leaseDuration)))),
      Effect.flatMap((extended) =>
        extended._tag === "Left" ? tick(retryEvery) : extended.right ? tick(extendEvery) : Effect.void
      )
    )
  return tick(extendEvery)
}

/**
 * 5. What is stored for a produced value: its entry with its ttl, or nothing when writes are off,
 * `skip` says so, the value cannot be encoded (logged and counted), or a user `skip` or `ttl` function
 * throws (logged). The caller gets the value in every case.
 */
const planWrite = <K, A, Id, E, R>(
  run: Run<K, A, Id, E, R>,
  value: A | Failed,
  since: number | undefined
): Effect.Effect<Option.Option<CacheLock.Write>> => {
  const { engine, key, keyspace, options } = run
  return Effect.suspend(() =>
    options?.cacheWrite === false || (!(value instanceof Failed) && (options?.skip ?? keyspace.skip)?.(value) === true)
      ? Effect.succeedNone
      : (value instanceof Failed
        ? encodeFailure(engine, keyspace, key, run.userKey, value.error, options)
        : encode(engine, "getOrSet", keyspace, key, run.userKey, value, options)).pipe(
        Effect.map((write) => Option.some(since === undefined ? write : { ...write, since })),
        Effect.catchAll((error) => absorb(engine, keyspace.name, error, Option.none<CacheLock.Write>()))
      )
  ).pipe(
    Effect.catchAllDefect((defect) =>
      Effect.as(
        engine.report.warn(
          `${keyspace.name}\u0000skip-or-ttl`,
          { keyspace: keyspace.name, operation: "getOrSet" },
          () => `a skip or ttl function threw (${defect instanceof Error ? defect.message : String(defect)}); the value was not stored`
        ),
        Option.none()
      )
    )
  )
}

/** 6a. Releases the lease after a successful run, with the planned write. */
const release = <K, A, Id, E, R>(
  run: Run<K, A, Id, E, R>,
  lock: CacheLock.CacheLock,
  lease: CacheLock.Lease,
  write: Option.Option<CacheLock.Write>
): Effect.Effect<void> => releaseLease(run.engine, "getOrSet", run.keyspace, run.key, run.options, lock, lease, write)

/**
 * Releases one lease with its key's planned write, if any (`getOrSet`'s run, and each key of a
 * batch's): a two-layer store keeps what was written, tags are checked again; a failure is absorbed,
 * a lapsed lease logged.
 */
export const releaseLease = <K, A, Id>(
  engine: Engine,
  operation: "getOrSet" | "getOrSetMany",
  keyspace: Definition<K, A, Id, unknown>,
  key: string,
  options: { readonly tags?: Iterable<string> | undefined } | undefined,
  lock: CacheLock.CacheLock,
  lease: CacheLock.Lease,
  write: Option.Option<CacheLock.Write>
): Effect.Effect<void> => {
  const mark = engine.store.local?.mark() ?? 0
  return Effect.flatMap(Effect.either(engine.boundLock("unlock", key, lock.release(lease, write, engine.timeout))), (released) =>
    released._tag === "Left"
      ? absorb(engine, keyspace.name, released.left, undefined)
      : Option.isNone(write)
      ? Effect.void
      : released.right
      ? Effect.zipRight(
        Effect.sync(() => {
          remember(engine, key, write.value.value, mark)
          engine.bindingOf(keyspace).counters.written(key, operation)
        }),
        recheckTags(engine, keyspace, key, options, write.value)
      )
      : engine.report.warn(
        `${keyspace.name}\u0000lease-lost`,
        { keyspace: keyspace.name, operation },
        () => `the lock on "${engine.report.key(key)}" lapsed while its producer ran; its value was not stored`
      ))
}

/** 6b. Without a lock: stores the produced value once the callers have it. */
const writeUnlocked = <K, A, Id, E, R>(run: Run<K, A, Id, E, R>, value: A | Failed, since: number | undefined): Effect.Effect<void> => {
  const { engine, key, keyspace } = run
  return Effect.flatMap(planWrite(run, value, since), (write) =>
    Option.isNone(write)
      ? Effect.void
      : engine.boundWrite("getOrSet", key, engine.store.set(key, write.value.value, write.value.ttl, engine.timeout, since)).pipe(
        Effect.tap(() => engine.bindingOf(keyspace).counters.written(key, "getOrSet")),
        Effect.zipRight(recheckTags(engine, keyspace, key, run.options, write.value)),
        Effect.catchAll((error) => absorb(engine, keyspace.name, error, undefined))
      ))
}

/**
 * 6c. After a value with tags was stored: a tag invalidated while its producer ran (after `since`)
 * would not see it (the entry's version is above the marker's), so the markers are read again from
 * the store and the entry is dropped if one moved. Read after the write, so an invalidation that the
 * write raced is seen either here or by every later read.
 */
export const recheckTags = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id, unknown>,
  key: string,
  options: { readonly tags?: Iterable<string> | undefined } | undefined,
  write: CacheLock.Write
): Effect.Effect<void> => {
  const since = write.since
  if (since === undefined || (keyspace.tags === undefined && keyspace.keyTags === undefined && options?.tags === undefined)) {
    return Effect.void
  }
  const stored = write.value
  const tags = CacheStore.isLive(stored) ? stored.tags : CacheEntry.decode(stored)?.tags ?? []
  if (tags.length === 0) return Effect.void
  return Effect.flatMap(engine.tags.changedSince(tags, since), (changed) =>
    changed ? Effect.asVoid(engine.boundWrite("delete", key, engine.store.delete(key))) : Effect.void).pipe(
      Effect.catchAll((error) => absorb(engine, keyspace.name, error, undefined))
    )
}
