/**
 * `getOrSetMany`, in the order it runs: `getOrSet`'s guarantees, per key, for a set of keys whose
 * missing ones come from one producer call.
 *
 * 1. `getOrSetMany`: store keys (a key that cannot be one is produced apart, uncached, as `getOrSet`
 *    does), duplicates folded, one read (`getMany`, in chunks of {@link readChunk}). Fresh values are
 *    answers; an "absent" marker (`cacheAbsent`) is `None`; a cached failure (`cacheFailure`) fails the
 *    batch as it fails `getOrSet`; a stale value within its `graceBackoff` is served; the rest is missing.
 *    A fresh value past its eager refresh point is an answer too, and `refreshDue` refreshes those keys
 *    in the background with one producer call (the run of steps 3 to 6, in the cache's runs scope).
 * 2. `guard`: the missing keys go to the single flight as one batch run: keys another run (a `getOrSet`
 *    or another batch) has under way are joined, the others are this run's, and a `getOrSet` of one of
 *    them joins it. The caller waits for every key, up to the hard timeout; with a soft timeout, once
 *    every key still under way has a stale value, it answers them with it and leaves the runs to finish
 *    in the background (`softly`).
 * 3. `coordinate`: with a lock in context, `locked`; without (or when the store has just failed),
 *    `reread` then `produce`.
 * 4. `locked`: take the locks of the run's keys in one round trip (`CacheLock.tryAcquireMany`); for the
 *    keys taken, `reread` and `produce` while a watchdog extends their leases; the keys another instance
 *    holds are waited for (a release wakes the wait, else a poll interval), read again, and taken in a
 *    new round when their holder left them unwritten; past `lockTimeout` they are produced unlocked.
 * 5. `produce`: one producer call for the keys still missing, after noting the store's version; what it
 *    returns for other keys is ignored. A failure serves stale values when every key of the call has one.
 * 6. `plan` and `then`: each value (or absent marker) stored once the callers have it, conditional on
 *    that version, through the lock's release or a conditional `set`; tags rechecked; `onProduced`.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import { LockError, ProducerTimeoutError } from "../CacheError.js"
import * as CacheEntry from "../CacheEntry.js"
import * as CacheLock from "../CacheLock.js"
import * as CacheStore from "../CacheStore.js"
import { absorb, type Engine } from "./engine.js"
import {
  backgroundLimit,
  backOffAfter,
  eagerFlightKey,
  Failed,
  isBackingOff,
  NotProduced,
  notProduced,
  onProducedHooks,
  type Produced,
  recheckTags,
  refreshBlocked,
  releaseLease,
  Stale,
  producerTimeout,
  timeoutOf,
  withinLimit
} from "./getOrSet.js"
import { sha256Hex } from "./hash.js"
import { isInvalidKey, storeKey } from "./keys.js"
import { withCallPolicy } from "./keyspace.js"
import type { Definition, FailurePolicy, GetOrSetManyOptions, ProduceMissing } from "./model.js"
import { lookupOutcomes, Outcome, staleValue } from "./read.js"
import { firstLine } from "./report.js"
import type * as SingleFlight from "./singleFlight.js"
import { encode, encodeFailure } from "./write.js"

/** How many keys one read of the store asks for at most (one `MGET` each on Redis, per hash slot). */
const readChunk = 512

/** What an "absent" marker decodes to: private, so no value or failure of a user can be one. */
class Absent {}
const absent = new Absent()

/** The keyspaces a batch reads with: its own (with the call's `eagerRefresh`), and the absent markers'. */
interface Variants {
  /** The keyspace as the batch sees it (its eager refresh point included). */
  readonly base: Definition<any, any, any, unknown>
  /** The same, whose cached failures are the absent markers (for `cacheAbsent`). */
  readonly absent: Definition<any, any, any, unknown>
}

const variantsByKeyspace = new WeakMap<Definition<any, any, any, unknown>, Variants>()

/**
 * The absent markers' policy: an entry flagged as a failure under a fingerprint of the keyspace's own,
 * with an empty body; never a producer failure (`matches` is false).
 */
const absentPolicy = (keyspace: Definition<any, any, any, unknown>): FailurePolicy => {
  const empty = keyspace.format === "text" ? "" : new Uint8Array(0)
  return {
    fingerprint: sha256Hex(`${keyspace.fingerprint}\u0000absent`).slice(0, 12),
    ttl: Duration.zero,
    matches: () => false,
    encode: () => Effect.succeed(empty),
    decodeNow: () => Either.right(absent)
  }
}

const variantsOf = <K, A, Id>(keyspace: Definition<K, A, Id, unknown>): Variants => {
  let found = variantsByKeyspace.get(keyspace)
  if (found === undefined) {
    found = { base: keyspace, absent: { ...keyspace, failure: absentPolicy(keyspace), variant: `${keyspace.variant}\u0000absent` } }
    variantsByKeyspace.set(keyspace, found)
  }
  return found
}

/** Whether a stored entry is an absent marker of the keyspace (its header says so). */
const isAbsentMarker = (variants: Variants, stored: CacheEntry.Stored): boolean => {
  const header = CacheStore.isLive(stored) ? stored : CacheEntry.decode(stored)
  return header !== undefined && header.isFailure && header.fingerprint === variants.absent.failure!.fingerprint
}

/** One batch call: everything its steps consult. */
interface Call<K, A, E, R> {
  readonly engine: Engine
  /** The keyspace as the batch reads and writes it. */
  readonly keyspace: Definition<K, A, any, unknown>
  readonly variants: Variants
  readonly produce: ProduceMissing<K, A, E, R>
  readonly options: GetOrSetManyOptions<A> | undefined
  /** The caller's key of each store key (its first occurrence). */
  readonly userKeys: Map<string, K>
  /** What the store held past its ttl, within its grace, per key (the latest read's). */
  readonly stale: Map<string, Outcome>
  /** The store has just failed this call: it produces without waiting on the store or the lock again. */
  readonly storeFailed: boolean
  /**
   * An eager refresh of keys due for one: an entry still due is produced again, not answered; a
   * failure serves nothing and caches nothing (the callers had the old values).
   */
  readonly refreshing: boolean
}

/** What a batch found or made for a key. */
type Found<A> = A | Failed | NotProduced | Stale<A>

/**
 * An internal option of a batch's producer (the resolver's): why it did not return a key (the inner
 * resolver failed its request), so that an eager refresh counts that key as a failed refresh.
 */
export const refusedBy: unique symbol = Symbol.for("effect-cachekit/getOrSetMany/refusedBy")

/** The options of a batch, with the internal ones. */
type WithRefusals<K> = { readonly [refusedBy]?: ((key: K) => Cause.Cause<unknown> | undefined) | undefined }

/** What part of a run found or made for its keys, and what it does once the callers have it. */
interface Part<A> {
  readonly found: Map<string, Found<A>>
  /** Keys whose entry this part stores in `then` or through its lease (they stay in flight until it is done). */
  readonly writing: Set<string>
  /** The entries to store through the leases of their keys, released by `coordinate`. */
  readonly writes: Map<string, CacheLock.Write>
  /** What it does once the callers have the values (without a lock: the writes; `onProduced`). */
  readonly then: Effect.Effect<void>
}

const emptyPart = <A>(): Part<A> => ({ found: new Map(), writing: new Set(), writes: new Map(), then: Effect.void })

const foundPart = <A>(found: Map<string, Found<A>>): Part<A> => ({ found, writing: new Set(), writes: new Map(), then: Effect.void })

const mergeParts = <A>(parts: ReadonlyArray<Part<A>>): Part<A> => {
  if (parts.length === 1) return parts[0]!
  const found = new Map<string, Found<A>>()
  const writing = new Set<string>()
  const writes = new Map<string, CacheLock.Write>()
  for (const part of parts) {
    for (const [key, value] of part.found) found.set(key, value)
    for (const key of part.writing) writing.add(key)
    for (const [key, write] of part.writes) writes.set(key, write)
  }
  return { found, writing, writes, then: Effect.all(parts.map((part) => part.then), { concurrency: "unbounded", discard: true }) }
}

/** The hard timeout of a call: its own, else its keyspace's. */
const hardTimeoutOf = <K, A, Id>(keyspace: Definition<K, A, Id, unknown>, options: GetOrSetManyOptions<A> | undefined) =>
  timeoutOf(options?.hardTimeout, keyspace.hardTimeout)

/** The soft timeout of a call: its own, else its keyspace's. */
const softTimeoutOf = <K, A, Id>(keyspace: Definition<K, A, Id, unknown>, options: GetOrSetManyOptions<A> | undefined) =>
  timeoutOf(options?.softTimeout, keyspace.softTimeout)

/** Splits a list into lists of at most `size` items. */
const chunks = <X>(items: ReadonlyArray<X>, size: number): Array<ReadonlyArray<X>> => {
  const out: Array<ReadonlyArray<X>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/**
 * Reads keys for a batch, in chunks (at most two at a time): a value or the outcome that says why not,
 * per key; absent markers are read with their own policy.
 */
const readOutcomes = <K, A, E, R>(
  call: Call<K, A, E, R>,
  keys: ReadonlyArray<string>,
  count: boolean,
  guarded = true
) => {
  const { engine, variants } = call
  const withAbsent = call.options?.cacheAbsent !== undefined
  // A keyspace that caches failures keeps both kinds of failure entries: each is read with its own policy.
  const both = withAbsent && call.keyspace.failure !== undefined
  const readWith = withAbsent && !both ? variants.absent : call.keyspace
  return Effect.map(
    Effect.forEach(chunks(keys, readChunk), (chunk) => lookupOutcomes(engine, readWith, chunk, count, guarded), { concurrency: 2 }),
    (parts) => parts.flat() as Array<A | Outcome>
  ).pipe(
    Effect.flatMap((found) => {
      if (!both) return Effect.succeed(found)
      // Misses for the keyspace's own policy may be absent markers: those are read again under theirs
      // (one more read of the misses, only for a keyspace with cacheFailure and a call with cacheAbsent).
      const markers = found.flatMap((value, i) => value instanceof Outcome && value._tag === "Miss" ? [i] : [])
      if (markers.length === 0) return Effect.succeed(found)
      return Effect.map(
        Effect.forEach(chunks(markers, readChunk), (chunk) =>
          engine.bound("getMany", undefined, engine.store.getMany(chunk.map((i) => keys[i]!))).pipe(
            Effect.map((stored) =>
              chunk.flatMap((i, j) => {
                const entry = stored[j]!
                return Option.isSome(entry) && isAbsentMarker(variants, entry.value) ? [i] : []
              })
            ),
            Effect.flatMap((absentOnes) =>
              absentOnes.length === 0 ? Effect.succeed([]) : Effect.map(
                lookupOutcomes(engine, variants.absent, absentOnes.map((i) => keys[i]!), false, guarded),
                (outcomes) => absentOnes.map((i, j) => [i, outcomes[j]!] as const)
              )
            )
          )),
        (pairs) => {
          for (const [i, outcome] of pairs.flat()) found[i] = outcome as A | Outcome
          return found
        }
      )
    })
  )
}

/**
 * What a read says of a key for the batch: a value, `None` (an absent marker), a cached failure, or
 * nothing (`undefined`: missing; a stale value is noted for the producer's failure and the soft
 * timeout). A value due for an eager refresh is a value, except to the refresh itself.
 */
const verdict = <K, A, E, R>(call: Call<K, A, E, R>, key: string, found: A | Outcome): Found<A> | undefined => {
  if (!(found instanceof Outcome)) return found
  if (found._tag === "Due") return call.refreshing ? undefined : found.value as A
  if (found._tag === "Failure") return found.value === absent ? notProduced : new Failed(found.value)
  if (found._tag === "Stale") call.stale.set(key, found)
  return undefined
}

/** 1. Validate and fold the keys, read them, answer what the cache has, and send the rest to the guard. */
export const getOrSetMany = <K, A, Id, E, R>(
  engine: Engine,
  ownKeyspace: Definition<K, A, Id, unknown>,
  keys: Iterable<K>,
  produce: ProduceMissing<K, A, E, R>,
  options: GetOrSetManyOptions<A> | undefined
): Effect.Effect<Array<Option.Option<A>>, E | LockError | ProducerTimeoutError, R> =>
  Effect.suspend(() => {
    // A call's own eagerRefresh: the keyspace with it (as getOrSet reads it).
    const variants = variantsOf(withCallPolicy(ownKeyspace, options?.eagerRefresh === undefined ? undefined : { eagerRefresh: options.eagerRefresh }))
    const keyspace = variants.base as Definition<K, A, Id, unknown>
    const list = Array.from(keys)
    const full = list.map((key) => storeKey(engine, "getOrSet", keyspace, key))
    const userKeys = new Map<string, K>()
    const uncached: Array<K> = []
    let invalid: Effect.Effect<void> = Effect.void
    for (let i = 0; i < list.length; i++) {
      const key = full[i]!
      if (isInvalidKey(key)) {
        if (uncached.length === 0) invalid = absorb(engine, keyspace.name, key, undefined)
        uncached.push(list[i]!)
      } else if (!userKeys.has(key)) {
        userKeys.set(key, list[i]!)
      }
    }
    const unique = Array.from(userKeys.keys())
    const answers = new Map<string, Found<A>>()
    // Keys answered with a stale value: counted once the batch answers (a batch that fails serves none).
    const servedStale: Array<string> = []
    const hard = hardTimeoutOf(keyspace, options)

    const results = (uncachedValues: ReadonlyArray<Option.Option<A>>) =>
      Effect.suspend((): Effect.Effect<Array<Option.Option<A>>, E> => {
        const out = new Array<Option.Option<A>>(list.length)
        let next = 0
        for (let i = 0; i < list.length; i++) {
          const key = full[i]!
          if (isInvalidKey(key)) {
            out[i] = uncachedValues[next++]!
            continue
          }
          const found = answers.get(key)
          if (found instanceof Failed) return Effect.fail(found.error as E)
          out[i] = found === undefined || found instanceof NotProduced ? Option.none() : Option.some(found instanceof Stale ? found.value : found)
        }
        for (const key of servedStale) engine.bindingOf(keyspace).counters.staleServed(key)
        return Effect.succeed(out)
      })

    // A key that cannot be a store key is produced apart, without the cache, within the hard timeout.
    const produceUncached: Effect.Effect<ReadonlyArray<Option.Option<A>>, E | ProducerTimeoutError, R> = uncached.length === 0
      ? Effect.succeed([])
      : Effect.zipRight(invalid, bounded(produce(uncached), hard)).pipe(Effect.map((pairs) => {
        const byKey = new Map<unknown, A>()
        for (const [key, value] of pairs) byKey.set(key, value)
        return uncached.map((key) => byKey.has(key) ? Option.some(byKey.get(key)!) : Option.none())
      }))

    const call = (storeFailed: boolean): Call<K, A, E, R> => ({
      engine,
      keyspace,
      variants,
      produce,
      options,
      userKeys,
      stale: new Map(),
      storeFailed,
      refreshing: false
    })

    const cached: Effect.Effect<void, E | LockError | ProducerTimeoutError, R> = unique.length === 0
      ? Effect.void
      : Effect.matchEffect(readOutcomes(call(false), unique, true), {
        // The store has just failed: don't wait on it (nor on the lock) a second time before producing.
        onFailure: (error) => Effect.zipRight(absorb(engine, keyspace.name, error, undefined), guard(call(true), unique, answers, servedStale, hard)),
        onSuccess: (found) =>
          Effect.clockWith((clock) => {
            const batch = call(false)
            const now = clock.unsafeCurrentTimeMillis()
            const missing: Array<string> = []
            const due: Array<string> = []
            for (let i = 0; i < unique.length; i++) {
              const key = unique[i]!
              const read = found[i]!
              if (read instanceof Outcome && read._tag === "Due") due.push(key)
              const value = verdict(batch, key, read)
              if (value instanceof Failed) return Effect.fail(value.error as E)
              if (value !== undefined) {
                answers.set(key, value)
                continue
              }
              // A stale value whose producer failed less than `graceBackoff` ago is served without asking again.
              const stale = isBackingOff(engine, key, now) ? staleValue(keyspace, batch.stale.get(key)) : undefined
              if (stale !== undefined) {
                servedStale.push(key)
                answers.set(key, stale)
                continue
              }
              missing.push(key)
            }
            // Past their eager refresh point: answered now, refreshed in the background (one producer call).
            const refresh = due.length === 0 ? Effect.void : refreshDue(batch, due)
            return Effect.zipRight(refresh, missing.length === 0 ? Effect.void : guard(batch, missing, answers, servedStale, hard))
          })
      })

    return Effect.flatMap(Effect.zip(cached, produceUncached, { concurrent: true }), ([, values]) => results(values))
  })

/**
 * 1b. Keys whose fresh entry is past its eager refresh point, answered from the cache: refreshed in
 * the background, with one producer call for all of them, as one run in the guard under each key's
 * refresh guard (`eagerFlightKey`, a `getOrSet`'s refresh of a key excludes the batch's, and the other
 * way round). Keys being produced or refreshed in the process (`refreshBlocked`, checked with the
 * guard and taken in one step, so concurrent batches never both refresh a key), or whose last refresh
 * failed or left them out less than `graceBackoff` ago, are left out. The run is the cold path's (the
 * locks across processes, a second look that skips a key another run has already refreshed, writes
 * conditional on the version noted before the producer ran), started in the cache's runs scope and
 * bounded by `backgroundLimit`: it never delays nor fails the caller, and stops when the cache
 * closes. A failure (the bound passing included) keeps the old values: each key the run owns is
 * counted (`effect_cachekit_refresh_failures_total`) and backed off, the failure logged at a bounded
 * rate. A key the producer did not return keeps its value and is backed off too, so the next batches
 * do not ask for it again before `graceBackoff`; the resolver's requests that its inner resolver
 * failed (`refusedBy`) count as failed refreshes.
 */
const refreshDue = <K, A, E, R>(call: Call<K, A, E, R>, due: ReadonlyArray<string>): Effect.Effect<void, never, R> =>
  Effect.clockWith((clock) => {
    const { engine, keyspace, options } = call
    // A refresh that could store nothing would only run the producer.
    if (options?.cacheWrite === false) return Effect.void
    const byFlight = new Map<string, string>()
    for (const key of due) byFlight.set(eagerFlightKey(key), key)
    const refresh: Call<K, A, E, R> = { ...call, stale: new Map(), storeFailed: false, refreshing: true }
    const limit = backgroundLimit(engine, keyspace, options)
    const refusedOf = (options as WithRefusals<K> | undefined)?.[refusedBy]
    type Outcome = SingleFlight.Batch<Produced<A>, E | LockError | ProducerTimeoutError>
    const work = (owned: ReadonlyArray<string>): Effect.Effect<Outcome, E | LockError | ProducerTimeoutError, R> =>
      Effect.map(withinLimit(coordinate(refresh, owned.map((flight) => byFlight.get(flight)!)), limit, undefined), (part) => ({
        outcomes: owned.map((flight) => {
          const key = byFlight.get(flight)!
          return { exit: Exit.succeed<Produced<A>>({ value: part.found.get(key) ?? notProduced, then: Effect.void }), stays: part.writing.has(key) }
        }),
        then: part.then
      }))
    const done = (owned: ReadonlyArray<string>, exit: Exit.Exit<Outcome, E | LockError | ProducerTimeoutError>): Effect.Effect<void> => {
      const keys = owned.map((flight) => byFlight.get(flight)!)
      // An interruption (the cache closing) is no failure.
      if (Exit.isFailure(exit)) {
        if (Cause.isInterruptedOnly(exit.cause)) return Effect.void
        const cause = exit.cause
        return Effect.forEach(keys, (key) =>
          backOffAfter(engine, keyspace, key, "eager", () => {
            engine.bindingOf(keyspace).counters.refreshFailure(key, cause)
            return `the eager refresh of ${keys.length} key(s) of "${keyspace.name}" (e.g. "${engine.report.key(key)}") failed (${firstLine(cause)}); the old values stay, next try in ${keyspace.graceBackoffMillis} ms at the earliest`
          }), { discard: true })
      }
      // Keys the producer did not return: the old values stay, not asked again before `graceBackoff`.
      const left = keys.filter((_, i) => {
        const outcome = exit.value.outcomes[i]!
        return Exit.isSuccess(outcome.exit) && outcome.exit.value.value instanceof NotProduced
      })
      return Effect.forEach(left, (key) => {
        const refused = refusedOf?.(call.userKeys.get(key)!)
        return backOffAfter(engine, keyspace, key, refused === undefined ? "eager-left-out" : "eager", () => {
          if (refused === undefined) {
            return `the eager refresh's producer did not return ${left.length} key(s) of "${keyspace.name}" (e.g. "${engine.report.key(key)}"); their values stay until their ttl, next try in ${keyspace.graceBackoffMillis} ms at the earliest`
          }
          engine.bindingOf(keyspace).counters.refreshFailure(key, refused)
          return `the eager refresh of "${engine.report.key(key)}" of "${keyspace.name}" failed (${firstLine(refused)}); the old value stays, next try in ${keyspace.graceBackoffMillis} ms at the earliest`
        })
      }, { discard: true })
    }
    // The keys' guards are checked and taken in one step, in the caller's fiber; the run is forked.
    return Effect.asVoid(engine.flights.startMany(
      Array.from(byFlight.keys()),
      (flight) => {
        const key = byFlight.get(flight)!
        return refreshBlocked(engine, key) || isBackingOff(engine, key, clock.unsafeCurrentTimeMillis())
      },
      work,
      done
    ))
  })

/** A producer run without the cache, still within the hard timeout. */
const bounded = <X, E, R>(produce: Effect.Effect<X, E, R>, hard: Duration.Duration | undefined) =>
  hard === undefined
    ? produce
    : Effect.timeoutFail(produce, { duration: hard, onTimeout: () => producerTimeout(undefined, hard) })

/**
 * 2. The missing keys as one batch run of the single flight: the keys another run has under way are
 * joined; the others are this run's. The caller waits for all of them, on the Clock:
 *
 * - with a soft timeout (the call's, else the keyspace's) and some key with a stale value, at the soft
 *   timeout the keys still waited for that have a stale value get it, once no key without one is still
 *   waited for: the keys without one are waited for first (up to the hard timeout), then the batch
 *   answers. The runs go on in the background (a waiter in the cache's runs scope keeps them, for at
 *   most `backgroundLimit`) and store their values;
 * - up to the hard timeout: then keys with a stale value get it, and if one has none the batch fails
 *   with `ProducerTimeoutError`. The run goes on while a caller of one of its keys still waits.
 *
 * Every answer is decided before any is kept, and stale values are counted only when the batch answers.
 */
const guard = <K, A, E, R>(
  call: Call<K, A, E, R>,
  missing: ReadonlyArray<string>,
  answers: Map<string, Found<A>>,
  servedStale: Array<string>,
  hard: Duration.Duration | undefined
): Effect.Effect<void, E | LockError | ProducerTimeoutError, R> => {
  const { engine, keyspace } = call
  const soft = softTimeoutOf(keyspace, call.options)
  const work = (owned: ReadonlyArray<string>): Effect.Effect<SingleFlight.Batch<Produced<A>, E | LockError>, E | LockError, R> =>
    Effect.map(coordinate(call, owned), (part) => ({
      outcomes: owned.map((key) => ({
        exit: Exit.succeed<Produced<A>>({ value: part.found.get(key) ?? notProduced, then: Effect.void }),
        stays: part.writing.has(key)
      })),
      then: part.then
    }))
  const limit = backgroundLimit(engine, keyspace, call.options)
  // Each key's stale value, decoded once (`undefined`: none).
  const staleValues = new Map<string, A | undefined>()
  const staleOf = (key: string): A | undefined => {
    if (!staleValues.has(key)) staleValues.set(key, staleValue(keyspace, call.stale.get(key)))
    return staleValues.get(key)
  }
  /** Whether the caller left keys still under way with their stale values (their runs go on). */
  let left = false
  // Every answer is decided before any is kept: a batch that fails serves (and counts) nothing.
  const settle = (exits: ReadonlyArray<Exit.Exit<Produced<A>, E | LockError> | undefined>) =>
    Effect.suspend((): Effect.Effect<void, E | LockError | ProducerTimeoutError> => {
      const decided: Array<Found<A>> = []
      let stillUnderWay = false
      for (let i = 0; i < missing.length; i++) {
        const key = missing[i]!
        const exit = exits[i]
        if (exit === undefined) {
          // Still under way at the soft or hard timeout: the stale value if there is one, else the batch fails.
          const stale = staleOf(key)
          if (stale === undefined) return Effect.fail(producerTimeout(key, hard!))
          decided.push(new Stale(stale))
          stillUnderWay = true
          continue
        }
        if (Exit.isFailure(exit)) return Effect.failCause(exit.cause)
        decided.push(exit.value.value)
      }
      missing.forEach((key, i) => {
        const value = decided[i]!
        if (value instanceof Stale) servedStale.push(key)
        answers.set(key, value)
      })
      left = stillUnderWay
      return Effect.void
    })
  type Deferreds = ReadonlyArray<Deferred.Deferred<Produced<A>, E | LockError>>
  type Exits = ReadonlyArray<Exit.Exit<Produced<A>, E | LockError> | undefined>
  // Interruptible even where the caller is not (an HTTP handler runs uninterruptibly), so the
  // timeouts can stop waiting.
  const awaitAll = (deferreds: Deferreds) =>
    Effect.interruptible(Effect.forEach(deferreds, (deferred) => Effect.exit(Deferred.await(deferred)), { concurrency: "unbounded" }))
  // What is done now; `undefined` for what is still under way.
  const poll = (deferreds: Deferreds): Effect.Effect<Exits> =>
    Effect.forEach(deferreds, (deferred) =>
      Effect.flatMap(Deferred.poll(deferred), (polled) => Option.isNone(polled) ? Effect.succeed(undefined) : Effect.exit(polled.value)))
  // Past the soft timeout: the keys without a stale value are waited for, then the rest is left to its runs.
  const pastSoft = (deferreds: Deferreds): Effect.Effect<Exits> =>
    Effect.flatMap(poll(deferreds), (polled) => {
      const blocking = deferreds.filter((_, i) => polled[i] === undefined && staleOf(missing[i]!) === undefined)
      return blocking.length === 0 ? Effect.succeed(polled) : Effect.zipRight(awaitAll(blocking), poll(deferreds))
    })
  const wait = (deferreds: Deferreds) => {
    const waiting: Effect.Effect<Exits> = soft === undefined
      ? awaitAll(deferreds)
      : Effect.timeoutTo(awaitAll(deferreds), { duration: soft, onSuccess: Effect.succeed, onTimeout: () => pastSoft(deferreds) }).pipe(Effect.flatten)
    if (hard === undefined) return Effect.flatMap(waiting, settle)
    // What is done by the hard timeout counts; the rest is served stale or times out.
    return Effect.timeoutTo(Effect.interruptible(waiting), { duration: hard, onSuccess: Effect.succeed, onTimeout: () => poll(deferreds) }).pipe(
      Effect.flatten,
      Effect.flatMap(settle)
    )
  }
  if (soft === undefined || !missing.some((key) => call.stale.has(key))) return engine.flights.runMany(missing, work, wait)
  return softly(engine, missing, work, wait, () => left, limit)
}

/**
 * A batch that may leave its runs to the background (a soft timeout with stale values): the runs are
 * started and waited for by a holder in the cache's runs scope, which hands their outcomes to the caller
 * and keeps waiting, so the runs go on after the caller has its stale values; it lets them go (a run
 * nobody else waits for is then interrupted, its locks released) when the caller fails, is interrupted
 * or has every value.
 */
const softly = <A, E, R, X, E2>(
  engine: Engine,
  keys: ReadonlyArray<string>,
  work: (owned: ReadonlyArray<string>) => Effect.Effect<SingleFlight.Batch<A, E>, E, R>,
  wait: (deferreds: ReadonlyArray<Deferred.Deferred<A, E>>) => Effect.Effect<X, E2>,
  left: () => boolean,
  limit: Duration.Duration
): Effect.Effect<X, E2, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      const handoff = yield* Deferred.make<ReadonlyArray<Deferred.Deferred<A, E>>>()
      const release = yield* Deferred.make<void>()
      // The holder waits at most `limit` (`backgroundLimit`): then it lets the runs go, and a run
      // nobody else waits for is interrupted (its locks released, nothing stored).
      const holder = engine.flights.runMany(keys, work, (deferreds) =>
        Effect.zipRight(
          Deferred.succeed(handoff, deferreds),
          Effect.raceFirst(
            Effect.forEach(deferreds, (deferred) => Effect.exit(Deferred.await(deferred)), { concurrency: "unbounded", discard: true }),
            Deferred.await(release)
          ).pipe(Effect.timeoutTo({ duration: limit, onSuccess: () => undefined, onTimeout: () => undefined }))
        ))
      // A holder stopped before it handed the outcomes over (the cache closing): the caller is interrupted too.
      yield* engine.flights.background(Effect.ensuring(holder, Deferred.interrupt(handoff)))
      return yield* restore(Effect.flatMap(Deferred.await(handoff), wait)).pipe(
        Effect.ensuring(Effect.suspend(() => left() ? Effect.void : Deferred.succeed(release, undefined)))
      )
    })
  )

/** 3. With a lock in context (and a store that answers), produce under it; else read again and produce. */
const coordinate = <K, A, E, R>(call: Call<K, A, E, R>, keys: ReadonlyArray<string>): Effect.Effect<Part<A>, E | LockError, R> => {
  const lock = call.engine.lock
  if (lock === undefined || call.storeFailed) return unlocked(call, keys, !call.storeFailed)
  // Every lease the run takes, in any round, is kept here and released exactly once: all of them
  // without a value when the run fails or is interrupted (a round's part is dropped then), else each
  // with its key's planned entry, in the run's `then`, once the callers have their values.
  return Effect.uninterruptibleMask((restore) => {
    const held = new Map<string, CacheLock.Lease>()
    return restore(Effect.flatMap(call.engine.lockNow, (now) => locked(call, lock, keys, now + lockWaitOf(call), held))).pipe(
      Effect.onError(() =>
        Effect.forEach(held.values(), (lease) =>
          Effect.ignore(call.engine.boundLock("unlock", lease.key, lock.release(lease, Option.none()))), { concurrency: "unbounded", discard: true })),
      Effect.map((part): Part<A> => ({
        ...part,
        then: held.size === 0 ? part.then : Effect.zipRight(releaseLeases(call, lock, held, part.writes), part.then)
      }))
    )
  })
}

const lockWaitOf = <K, A, E, R>(call: Call<K, A, E, R>) =>
  Duration.toMillis(Duration.decode(call.options?.lockTimeout ?? call.engine.lockSettings.timeout))

/**
 * The second look, under the guard or the lock: another run may have stored some of the keys
 * meanwhile. A failure of the store is absorbed: every key is then missing.
 */
const reread = <K, A, E, R>(
  call: Call<K, A, E, R>,
  keys: ReadonlyArray<string>,
  afterLock: boolean
): Effect.Effect<{ readonly found: Map<string, Found<A>>; readonly missing: Array<string> }> =>
  readOutcomes(call, keys, false, !afterLock || call.engine.lock?.inProcess !== false).pipe(
    Effect.map((outcomes) => {
      const found = new Map<string, Found<A>>()
      const missing: Array<string> = []
      keys.forEach((key, i) => {
        const value = verdict(call, key, outcomes[i]!)
        if (value === undefined) missing.push(key)
        else found.set(key, value)
      })
      return { found, missing }
    }),
    Effect.catchAll((error) => absorb(call.engine, call.keyspace.name, error, { found: new Map<string, Found<A>>(), missing: Array.from(keys) }))
  )

/** Without a lock: read again (unless the store has just failed), produce what is missing, store it unlocked. */
const unlocked = <K, A, E, R>(call: Call<K, A, E, R>, keys: ReadonlyArray<string>, readFirst: boolean): Effect.Effect<Part<A>, E, R> =>
  Effect.flatMap(readFirst ? reread(call, keys, false) : Effect.succeed({ found: new Map<string, Found<A>>(), missing: Array.from(keys) }), ({ found, missing }) =>
    missing.length === 0
      ? Effect.succeed(foundPart(found))
      : Effect.map(produceMissing(call, missing), (made): Part<A> => {
        for (const [key, value] of made.found) found.set(key, value)
        return {
          found,
          writing: new Set(made.writes.keys()),
          writes: new Map(),
          then: Effect.zipRight(writeUnlocked(call, made.writes), producedHooks(call, made))
        }
      }))

/** 6b. Stores the planned entries without a lock, each conditional on the version noted before the producer ran. */
const writeUnlocked = <K, A, E, R>(call: Call<K, A, E, R>, writes: Map<string, CacheLock.Write>): Effect.Effect<void> => {
  const { engine, keyspace, options } = call
  return Effect.forEach(writes, ([key, write]) =>
    engine.boundWrite("getOrSet", key, engine.store.set(key, write.value, write.ttl, engine.timeout, write.since)).pipe(
      Effect.tap(() => engine.bindingOf(keyspace).counters.written(key, "getOrSetMany")),
      Effect.zipRight(recheckTags(engine, keyspace, key, options, write)),
      Effect.catchAll((error) => absorb(engine, keyspace.name, error, undefined))
    ), { concurrency: "unbounded", discard: true })
}

/**
 * 4. Under the lock: take the locks of `keys` in one round trip; produce the keys taken (after a second
 * look), wait for the others. Each lease taken joins `held` in the step that takes it (`coordinate`
 * releases them).
 */
const locked = <K, A, E, R>(
  call: Call<K, A, E, R>,
  lock: CacheLock.CacheLock,
  keys: ReadonlyArray<string>,
  deadline: number,
  held: Map<string, CacheLock.Lease>
): Effect.Effect<Part<A>, E | LockError, R> => {
  const { engine } = call
  return Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(
      // Interruptible, so the bound can cut a hung acquire short (the lock cleans up after an acquire
      // whose reply it never had); the rest of the step cannot be interrupted.
      Effect.either(restore(engine.boundLock("lock", keys[0]!, CacheLock.tryAcquireMany(lock, keys, engine.lockSettings.lease)))),
      (acquired): Effect.Effect<Part<A>, E | LockError, R> => {
        // The lock failed: carry on without it (at least once), as `getOrSet` does.
        if (acquired._tag === "Left") return restore(withoutLock(call, keys, acquired.left))
        const leases = new Map<string, CacheLock.Lease>()
        const busy: Array<string> = []
        acquired.right.forEach((lease, i) => {
          if (Option.isNone(lease)) return busy.push(keys[i]!)
          leases.set(keys[i]!, lease.value)
          held.set(keys[i]!, lease.value)
        })
        return restore(
          Effect.all([
            leases.size === 0 ? Effect.succeed(emptyPart<A>()) : holding(call, lock, leases),
            busy.length === 0 ? Effect.succeed(emptyPart<A>()) : waitForHolders(call, lock, busy, deadline, held)
          ], { concurrency: "unbounded" })
        ).pipe(Effect.map(mergeParts))
      }
    )
  )
}

/** Without the lock (it failed, or the holders kept it past `lockTimeout`): produce, unlocked. */
const withoutLock = <K, A, E, R>(call: Call<K, A, E, R>, keys: ReadonlyArray<string>, error: LockError): Effect.Effect<Part<A>, E, R> =>
  Effect.zipRight(absorb(call.engine, call.keyspace.name, error, undefined), unlocked(call, keys, false))

/**
 * Holding the leases of `leases`' keys: read them again, produce the missing ones (the watchdog extends
 * their leases meanwhile), and plan their entries (stored through the leases' release).
 */
const holding = <K, A, E, R>(
  call: Call<K, A, E, R>,
  lock: CacheLock.CacheLock,
  leases: Map<string, CacheLock.Lease>
): Effect.Effect<Part<A>, E, R> =>
  Effect.flatMap(reread(call, Array.from(leases.keys()), true), ({ found, missing }) => {
    if (missing.length === 0) return Effect.succeed(foundPart(found))
    return Effect.flatMap(Effect.fork(watchdog(call, lock, missing.map((key) => leases.get(key)!))), (fiber) =>
      produceMissing(call, missing).pipe(
        Effect.ensuring(Fiber.interrupt(fiber)),
        Effect.map((made): Part<A> => {
          for (const [key, value] of made.found) found.set(key, value)
          return { found, writing: new Set(made.writes.keys()), writes: made.writes, then: producedHooks(call, made) }
        })
      ))
  })

/** Extends the leases every third of the lease while the producer runs; a lease found lost is left alone. */
const watchdog = <K, A, E, R>(call: Call<K, A, E, R>, lock: CacheLock.CacheLock, leases: ReadonlyArray<CacheLock.Lease>): Effect.Effect<void> => {
  const { engine } = call
  const leaseDuration = engine.lockSettings.lease
  const extendEvery = Duration.divide(leaseDuration, 3).pipe(Option.getOrElse(() => leaseDuration))
  const tick = (held: ReadonlyArray<CacheLock.Lease>): Effect.Effect<void> =>
    held.length === 0 ? Effect.void : engine.lockSleep(extendEvery).pipe(
      Effect.zipRight(Effect.forEach(held, (lease) =>
        Effect.map(Effect.either(engine.boundLock("lock", lease.key, lock.extend(lease, leaseDuration))), (extended) =>
          // A failed extend is tried again at the next tick; a lost lease is dropped.
          extended._tag === "Right" && !extended.right ? [] : [lease]), { concurrency: "unbounded" })),
      Effect.flatMap((kept) => tick(kept.flat()))
    )
  return tick(leases)
}

/** 6a. Releases every lease, with its key's planned entry if there is one; a two-layer store keeps what was written. */
const releaseLeases = <K, A, E, R>(
  call: Call<K, A, E, R>,
  lock: CacheLock.CacheLock,
  leases: Map<string, CacheLock.Lease>,
  writes: Map<string, CacheLock.Write>
): Effect.Effect<void> => {
  const { engine, keyspace, options } = call
  return Effect.forEach(leases, ([key, lease]) => releaseLease(engine, "getOrSetMany", keyspace, key, options, lock, lease, Option.fromNullable(writes.get(key))), {
    concurrency: "unbounded",
    discard: true
  })
}

/**
 * Keys whose lock another instance holds: wait for a release (or a poll interval), read them again;
 * what is still missing goes through a new round (its lock may be free now: its holder stored
 * nothing). Past the deadline, what is left is produced unlocked.
 */
const waitForHolders = <K, A, E, R>(
  call: Call<K, A, E, R>,
  lock: CacheLock.CacheLock,
  keys: ReadonlyArray<string>,
  deadline: number,
  held: Map<string, CacheLock.Lease>
): Effect.Effect<Part<A>, E | LockError, R> => {
  const { engine } = call
  const pollMillis = Duration.toMillis(engine.lockSettings.pollInterval)
  return Effect.flatMap(engine.lockNow, (now) => {
    const remaining = deadline - now
    if (remaining <= 0) {
      return withoutLock(call, keys, new LockError({
        reason: "Timeout",
        operation: "lock",
        key: keys[0],
        cause: `another instance held the lock of ${keys.length} key(s) for over ${lockWaitOf(call)} ms`
      }))
    }
    const wait = Duration.millis(Math.min(remaining, pollMillis))
    return Effect.raceAll(keys.map((key) => lock.awaitRelease(key, wait))).pipe(
      Effect.zipRight(reread(call, keys, true)),
      Effect.flatMap(({ found, missing }) =>
        missing.length === 0
          ? Effect.succeed(foundPart(found))
          : Effect.map(locked(call, lock, missing, deadline, held), (part) => mergeParts([foundPart(found), part]))
      )
    )
  })
}

/** What one producer call made: an answer per key asked, and the entries to store. */
interface Made<K, A> {
  readonly found: Map<string, Found<A>>
  readonly writes: Map<string, CacheLock.Write>
  /** The produced values, for `onProduced`, by store key. */
  readonly produced: Map<string, readonly [K, A]>
}

/**
 * 5. One producer call for `missing`, after noting the store's version (the writes are conditional on
 * it). Pairs for keys that were not asked for are ignored (logged). A failure (typed or a defect, not
 * an interruption) when every key asked has a stale value within grace: the stale values, and the
 * keys' producer backs off for `graceBackoff`.
 */
const produceMissing = <K, A, E, R>(call: Call<K, A, E, R>, missing: ReadonlyArray<string>): Effect.Effect<Made<K, A>, E, R> => {
  const { engine, keyspace } = call
  return Effect.flatMap(engine.versionMark, (since) =>
    Effect.matchCauseEffect(Effect.suspend(() => call.produce(missing.map((key) => call.userKeys.get(key)!))), {
      onSuccess: (pairs) => plan(call, missing, pairs, since),
      onFailure: (cause): Effect.Effect<Made<K, A>, E> => {
        // A refresh serves nobody: its failure is the run's (the callers had the old values).
        const stale = Cause.isInterruptedOnly(cause) || call.refreshing ? [] : missing.map((key) => staleValue(keyspace, call.stale.get(key)))
        if (stale.length === 0 || stale.some((value) => value === undefined)) return Effect.failCause(cause)
        // Each caller that answers with a stale value counts it then (a run whose callers left counts none).
        const found = new Map<string, Found<A>>(missing.map((key, i) => [key, new Stale(stale[i]!)] as const))
        return Effect.as(
          Effect.forEach(missing, (key) =>
            backOffAfter(engine, keyspace, key, "stale", () => {
              return `the batch producer of ${missing.length} key(s) of "${keyspace.name}" failed (${firstLine(cause)}); serving their stale values for ${keyspace.graceBackoffMillis} ms before trying again`
            }), { discard: true }),
          { found, writes: new Map(), produced: new Map() }
        )
      }
    }))
}

/**
 * 5b. What is stored for what the producer returned: each value (unless `skip` says so, writes are
 * off, or it cannot be encoded: logged and counted), and with `cacheAbsent` a marker for each key it
 * did not return; conditional on `since`.
 */
const plan = <K, A, E, R>(
  call: Call<K, A, E, R>,
  missing: ReadonlyArray<string>,
  pairs: Iterable<readonly [K, A]>,
  since: number | undefined
): Effect.Effect<Made<K, A>> =>
  Effect.suspend(() => {
    const { engine, keyspace, options } = call
    const asked = new Set(missing)
    const produced = new Map<string, readonly [K, A]>()
    let extra = 0
    for (const pair of pairs) {
      const key = storeKey(engine, "getOrSet", keyspace, pair[0])
      if (isInvalidKey(key) || !asked.has(key)) extra++
      else produced.set(key, [call.userKeys.get(key)!, pair[1]])
    }
    const found = new Map<string, Found<A>>(missing.map((key) => [key, produced.has(key) ? produced.get(key)![1] : notProduced] as const))
    const writes = new Map<string, CacheLock.Write>()
    const skip = options?.skip ?? keyspace.skip
    // A refresh never replaces a value with an absent marker (as `getOrSet`'s never caches a failure over one).
    const absentTtl = call.refreshing ? undefined : options?.cacheAbsent?.ttl
    const markers = absentTtl === undefined
      ? undefined
      : { ...call.variants.absent, failure: { ...call.variants.absent.failure!, ttl: Duration.decode(absentTtl) } }
    const conditional = (write: CacheLock.Write): CacheLock.Write => since === undefined ? write : { ...write, since }
    const entries = options?.cacheWrite === false ? Effect.void : Effect.forEach(missing, (key) => {
      const pair = produced.get(key)
      const entry = pair === undefined
        ? markers === undefined ? undefined : encodeFailure(engine, markers, key, call.userKeys.get(key)!, absent, options)
        : Effect.suspend(() => skip?.(pair[1]) === true ? Effect.succeed(undefined) : encode(engine, "getOrSet", keyspace, key, pair[0], pair[1], options))
      if (entry === undefined) return Effect.void
      return entry.pipe(
        Effect.map((write) => {
          if (write !== undefined) writes.set(key, conditional(write))
        }),
        Effect.catchAll((error) => absorb(engine, keyspace.name, error, undefined)),
        Effect.catchAllDefect((defect) =>
          engine.report.warn(
            `${keyspace.name}\u0000skip-or-ttl`,
            { keyspace: keyspace.name, operation: "getOrSet" },
            () => `a skip or ttl function threw (${defect instanceof Error ? defect.message : String(defect)}); the value was not stored`
          ))
      )
    }, { discard: true })
    const ignored = extra === 0 ? Effect.void : engine.report.warn(
      `${keyspace.name}\u0000batch-extra`,
      { keyspace: keyspace.name, operation: "getOrSet" },
      () => `a batch producer returned ${extra} pair(s) for keys it was not asked for; they were ignored (neither stored nor returned)`
    )
    return Effect.as(Effect.zipRight(ignored, entries), { found, writes, produced })
  })

/** 7. The keyspace's `onProduced` for each value stored; failures logged. */
const producedHooks = <K, A, E, R>(call: Call<K, A, E, R>, made: Made<K, A>): Effect.Effect<void> =>
  call.keyspace.onProduced === undefined
    ? Effect.void
    : Effect.forEach(made.writes.keys(), (key) => {
      const pair = made.produced.get(key)
      return pair === undefined ? Effect.void : onProducedHooks(call.engine, call.keyspace, pair[0], pair[1], undefined)
    }, { discard: true })
