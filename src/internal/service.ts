/**
 * @internal
 * The cache engine behind `Cache.make`: key validation, encoding and decoding, healing, timeouts, the
 * in-process guard, read coalescing and the coordinated (locked) producer path.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import type { GetOrSetOptions, LockErrorOf, Service, WriteOptions } from "../Cache.js"
import { type CacheError, CodecError, InvalidKeyError, LockError, type Operation, StoreError } from "../CacheError.js"
import type * as CacheLock from "../CacheLock.js"
import * as CacheSerializer from "../CacheSerializer.js"
import * as CacheStore from "../CacheStore.js"
import * as Coalesce from "./coalesce.js"
import * as Definition from "./definition.js"
import * as Metrics from "./metrics.js"
import type * as SingleFlight from "./singleFlight.js"

const controlCharacter = /[\u0000-\u001f\u007f]/

const isInvalidKey = (u: unknown): u is InvalidKeyError => u instanceof InvalidKeyError

/** Whether an in-process store handed back a value this keyspace wrote: usable as it is. */
const isLiveOf = <K, A, Id>(
  keyspace: Definition.Definition<K, A, Id>,
  stored: CacheStore.StoredValue | undefined
): stored is CacheStore.LiveValue => stored instanceof CacheStore.LiveValue && stored.fingerprint === keyspace.fingerprint

/** What a stored value decodes to, synchronously. */
type Decoded<A> =
  | { readonly _tag: "Value"; readonly value: A }
  | { readonly _tag: "Invalid"; readonly cause: unknown }
  | { readonly _tag: "Async"; readonly body: CacheStore.Encoded }

/**
 * One counter per metric, bound to a keyspace's labels. Effect caches a metric's registry hook by the
 * identity of the labels array, so each update passes the same array: no registry lookup per hit.
 */
interface Counters {
  readonly hits: () => void
  readonly misses: () => void
  readonly decodeFailures: () => void
  readonly errors: () => void
}

const bind = (metric: Metric.Metric.Counter<number>, labels: ReadonlyArray<MetricLabel.MetricLabel>) => () =>
  metric.unsafeUpdate(1, labels)

/** @internal */
export const makeService = (config: {
  readonly store: CacheStore.CacheStore
  readonly namespace: string
  readonly timeout: Duration.Duration
  readonly defaultTtl: Duration.Duration | undefined
  readonly maxKeyLength: number
  readonly flights: SingleFlight.SingleFlight
  readonly lock: CacheLock.CacheLock | undefined
  readonly lockSettings: {
    readonly lease: Duration.Duration
    readonly timeout: Duration.Duration
    readonly pollInterval: Duration.Duration
  }
}): Service => {
  const { defaultTtl, flights, lock, lockSettings, maxKeyLength, namespace, store, timeout } = config
  const reads = Coalesce.make()
  const storeLabel = MetricLabel.make("store", store.name)

  const countersByKeyspace = new Map<string, Counters>()
  const counters = (keyspace: string): Counters => {
    let found = countersByKeyspace.get(keyspace)
    if (found === undefined) {
      const labels = [MetricLabel.make("cache", namespace), MetricLabel.make("keyspace", keyspace), storeLabel]
      found = {
        hits: bind(Metrics.counters.hits, labels),
        misses: bind(Metrics.counters.misses, labels),
        decodeFailures: bind(Metrics.counters.decodeFailures, labels),
        errors: bind(Metrics.counters.errors, labels)
      }
      countersByKeyspace.set(keyspace, found)
    }
    return found
  }

  /** The store bounds each of its commands within the cache's timeout (Redis: its commandTimeout). */
  const selfBounded = store.operationBound !== undefined && Duration.lessThanOrEqualTo(store.operationBound, timeout)

  /**
   * Bounds a store operation by the cache's timeout. A race costs two fibers and a timer, so it is left
   * out where it cannot matter: stores that never wait on I/O, and single-command operations of a store
   * that bounds its commands itself. (`clear` walks the keyspace and `expire` may take two commands:
   * those keep the race.)
   */
  const bound = <A>(
    operation: Operation,
    key: string | undefined,
    effect: Effect.Effect<A, StoreError>
  ): Effect.Effect<A, StoreError> =>
    store.isInProcess || (selfBounded && operation !== "clear" && operation !== "expire")
      ? effect
      : Effect.timeoutFail(effect, {
        duration: timeout,
        onTimeout: () =>
          new StoreError({
            reason: "Timeout",
            operation,
            key,
            store: store.name,
            cause: `no answer within ${Duration.format(timeout)}`
          })
      })

  /** Bounds a lock operation by the cache's timeout: a lock over a client without its own bound cannot hang a caller. */
  const boundLock = <A, E>(operation: Operation, key: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E | LockError> =>
    Effect.timeoutFail(effect, {
      duration: timeout,
      onTimeout: () => new LockError({ reason: "Timeout", operation, key, cause: `no answer within ${Duration.format(timeout)}` })
    })

  const prefixOf = <K, A, Id>(keyspace: Definition.Definition<K, A, Id>) => `${namespace}:${keyspace.name}:`

  /** The validated store key of `key`, or the reason it cannot be one. */
  const storeKey = <K, A, Id>(
    operation: Operation,
    keyspace: Definition.Definition<K, A, Id>,
    key: K
  ): string | InvalidKeyError => {
    const segment = keyspace.encodeKey(key)
    if (Either.isLeft(segment)) return new InvalidKeyError({ reason: "Encode", operation, cause: segment.left })
    const full = prefixOf(keyspace) + segment.right
    if (full.length > maxKeyLength) {
      return new InvalidKeyError({
        reason: "TooLong",
        operation,
        key: full,
        cause: `${full.length} characters, the limit is ${maxKeyLength}`
      })
    }
    if (controlCharacter.test(full)) return new InvalidKeyError({ reason: "ControlCharacter", operation, key: full })
    return full
  }

  const storeKeys = <K, A, Id>(
    operation: Operation,
    keyspace: Definition.Definition<K, A, Id>,
    keys: Iterable<K>
  ): Array<string> | InvalidKeyError => {
    const out: Array<string> = []
    for (const key of keys) {
      const full = storeKey(operation, keyspace, key)
      if (typeof full !== "string") return full
      out.push(full)
    }
    return out
  }

  const ttlOf = <A>(
    value: A,
    fixed: ((value: A) => Duration.DurationInput) | undefined,
    override: WriteOptions<A>["ttl"]
  ): Duration.Duration | undefined => {
    const input = override === undefined
      ? fixed?.(value)
      : typeof override === "function"
      ? override(value)
      : override
    const ttl = input === undefined ? defaultTtl : Duration.decode(input)
    return ttl === undefined || !Duration.isFinite(ttl) ? undefined : ttl
  }

  /** Encodes a value into what this store keeps: the value itself in process, framed bytes elsewhere. */
  const encode = <K, A, Id>(
    operation: Operation,
    keyspace: Definition.Definition<K, A, Id>,
    key: string,
    value: A
  ): Effect.Effect<CacheStore.StoredValue, CodecError> =>
    keyspace.encodeValue(value).pipe(
      Effect.mapError((cause) => new CodecError({ reason: "Encode", operation, key, cause })),
      Effect.map((body) =>
        store.acceptsLiveValues
          ? new CacheStore.LiveValue(value, keyspace.fingerprint, body.length)
          : CacheSerializer.frame(keyspace.fingerprint, body)
      )
    )

  /** Drops an entry that cannot be decoded; the read becomes a miss. */
  const heal = <K, A, Id>(
    operation: Operation,
    keyspace: Definition.Definition<K, A, Id>,
    key: string,
    cause: unknown
  ): Effect.Effect<Option.Option<A>> => {
    const error = new CodecError({ reason: "Decode", operation, key, cause })
    counters(keyspace.name).decodeFailures()
    return Effect.logWarning(`effect-cachekit: ${error.message}; dropping the entry`).pipe(
      Effect.zipRight(bound("delete", key, store.delete(key)).pipe(Effect.ignore)),
      Effect.as(Option.none())
    )
  }

  /**
   * Decodes what the store returned, synchronously when it can: a value, an entry that cannot be
   * decoded (with the reason), or a body whose schema needs async work.
   */
  const decodeNow = <K, A, Id>(
    keyspace: Definition.Definition<K, A, Id>,
    stored: CacheStore.StoredValue
  ): Decoded<A> => {
    if (isLiveOf(keyspace, stored)) return { _tag: "Value", value: stored.value as A }
    if (stored instanceof CacheStore.LiveValue) {
      return { _tag: "Invalid", cause: `the entry was written under fingerprint ${stored.fingerprint}` }
    }
    let body: CacheStore.Encoded | undefined
    try {
      body = CacheSerializer.unframe(keyspace.fingerprint, stored, keyspace.format)
    } catch (cause) {
      return { _tag: "Invalid", cause }
    }
    if (body === undefined) return { _tag: "Invalid", cause: "the entry has no header, or one naming another schema" }
    const decoded = keyspace.decodeValueNow(body)
    if (Either.isRight(decoded)) return { _tag: "Value", value: decoded.right }
    return Definition.needsAsync(decoded.left.issue) ? { _tag: "Async", body } : { _tag: "Invalid", cause: decoded.left }
  }

  /** Turns what the store returned into a value, healing what cannot be decoded. */
  const decode = <K, A, Id>(
    operation: Operation,
    keyspace: Definition.Definition<K, A, Id>,
    key: string,
    stored: CacheStore.StoredValue
  ): Effect.Effect<Option.Option<A>> => {
    const decoded = decodeNow(keyspace, stored)
    switch (decoded._tag) {
      case "Value":
        return Effect.succeed(Option.some(decoded.value))
      case "Invalid":
        return heal(operation, keyspace, key, decoded.cause)
      case "Async":
        return Effect.matchEffect(keyspace.decodeValue(decoded.body), {
          onFailure: (cause) => heal(operation, keyspace, key, cause),
          onSuccess: (value) => Effect.succeed(Option.some(value))
        })
    }
  }

  /** Decodes a batch in one pass; what cannot be decoded is dropped with one batch delete. */
  const decodeMany = <K, A, Id>(
    keyspace: Definition.Definition<K, A, Id>,
    keys: ReadonlyArray<string>,
    stored: ReadonlyArray<Option.Option<CacheStore.StoredValue>>
  ): Effect.Effect<Array<Option.Option<A>>> => {
    const c = counters(keyspace.name)
    const out = new Array<Option.Option<A>>(stored.length)
    const invalid: Array<string> = []
    const later: Array<number> = []
    for (let i = 0; i < stored.length; i++) {
      const entry = stored[i]!
      if (Option.isNone(entry)) {
        c.misses()
        out[i] = Option.none()
        continue
      }
      const decoded = decodeNow(keyspace, entry.value)
      if (decoded._tag === "Value") {
        c.hits()
        out[i] = Option.some(decoded.value)
      } else if (decoded._tag === "Invalid") {
        c.misses()
        c.decodeFailures()
        invalid.push(keys[i]!)
        out[i] = Option.none()
      } else {
        later.push(i)
      }
    }
    const healed = invalid.length === 0 ? Effect.void : Effect.logWarning(
      `effect-cachekit: getMany could not decode ${invalid.length} value(s) (e.g. key "${invalid[0]}"); dropping them`
    ).pipe(Effect.zipRight(bound("deleteMany", undefined, store.deleteMany(invalid)).pipe(Effect.ignore)))
    const slow = later.length === 0 ? Effect.void : Effect.forEach(later, (i) =>
      Effect.map(decode("getMany", keyspace, keys[i]!, Option.getOrThrow(stored[i]!)), (found) => {
        count(keyspace, found)
        out[i] = found
      }), { discard: true })
    return Effect.as(Effect.zipRight(healed, slow), out)
  }

  /** Reads and decodes one entry. */
  const read = <K, A, Id>(
    operation: Operation,
    keyspace: Definition.Definition<K, A, Id>,
    key: string
  ): Effect.Effect<Option.Option<A>, StoreError> =>
    Effect.flatMap(
      bound(operation, key, store.get(key)),
      (stored) => Option.isNone(stored) ? Effect.succeedNone : decode(operation, keyspace, key, stored.value)
    )

  const count = <K, A, Id>(keyspace: Definition.Definition<K, A, Id>, found: Option.Option<A>) => {
    const c = counters(keyspace.name)
    ;(Option.isSome(found) ? c.hits : c.misses)()
  }

  /**
   * A caller's read, counted as a hit or a miss. In process, a hit of a live value under the right
   * fingerprint is one step (no decoding, no extra effect); on a store that does I/O, concurrent readers
   * of one key share one request.
   */
  const lookup = <K, A, Id>(
    operation: Operation,
    keyspace: Definition.Definition<K, A, Id>,
    key: string
  ): Effect.Effect<Option.Option<A>, StoreError> => {
    if (!store.isInProcess) {
      return Effect.tap(reads.share(key, read(operation, keyspace, key)), (found) => count(keyspace, found))
    }
    const readNow = store.readNow
    if (readNow === undefined) {
      return Effect.flatMap(store.get(key), (stored) =>
        Option.isNone(stored) ? afterRead(operation, keyspace, key, undefined) : afterRead(operation, keyspace, key, stored.value))
    }
    return Effect.clockWith((clock) => afterRead(operation, keyspace, key, readNow(key, clock.unsafeCurrentTimeMillis())))
  }

  /** Counts and decodes what an in-process read found; a live value of this keyspace costs one step. */
  const afterRead = <K, A, Id>(
    operation: Operation,
    keyspace: Definition.Definition<K, A, Id>,
    key: string,
    stored: CacheStore.StoredValue | undefined
  ): Effect.Effect<Option.Option<A>> => {
    if (stored === undefined) {
      counters(keyspace.name).misses()
      return Effect.succeedNone
    }
    if (isLiveOf(keyspace, stored)) {
      counters(keyspace.name).hits()
      return Effect.succeed(Option.some(stored.value as A))
    }
    return Effect.tap(decode(operation, keyspace, key, stored), (found) => count(keyspace, found))
  }

  /** What getOrSet does with a store failure: log it, count it, carry on without the cache. */
  const absorb = <K, A, Id, X>(keyspace: Definition.Definition<K, A, Id>, fallback: X) => (error: CacheError) => {
    counters(keyspace.name).errors()
    return Effect.as(Effect.logWarning(`effect-cachekit: ${error.message}; carrying on without the cache`), fallback)
  }

  const write = <K, A, Id>(
    operation: Operation,
    keyspace: Definition.Definition<K, A, Id>,
    key: string,
    value: A,
    options: WriteOptions<A> | undefined
  ): Effect.Effect<void, StoreError | CodecError> =>
    Effect.flatMap(
      encode(operation, keyspace, key, value),
      (stored) => bound(operation, key, store.set(key, stored, ttlOf(value, keyspace.ttl, options?.ttl)))
    )

  /**
   * What getOrSet stores for a produced value: the encoded value with its ttl, or nothing when writes
   * are off, `skip` says so, the value cannot be encoded (logged and counted), or a user `skip` or `ttl`
   * function throws (logged). The caller gets the value in every case.
   */
  const planWrite = <K, A, Id>(
    keyspace: Definition.Definition<K, A, Id>,
    key: string,
    value: A,
    options: GetOrSetOptions<A> | undefined
  ): Effect.Effect<Option.Option<CacheLock.Write>> =>
    Effect.suspend(() =>
      options?.cacheWrite === false || (options?.skip ?? keyspace.skip)?.(value) === true
        ? Effect.succeedNone
        : encode("getOrSet", keyspace, key, value).pipe(
          Effect.map((stored) => Option.some({ value: stored, ttl: ttlOf(value, keyspace.ttl, options?.ttl) })),
          Effect.catchAll((error) => Effect.as(absorb(keyspace, undefined)(error), Option.none<CacheLock.Write>()))
        )
    ).pipe(
      Effect.catchAllDefect((defect) =>
        Effect.as(
          Effect.logWarning("effect-cachekit: a skip or ttl function threw; the value was not stored", defect),
          Option.none()
        )
      )
    )

  const withKey = <K, A, Id, X, E>(
    operation: Operation,
    keyspace: Definition.Definition<K, A, Id>,
    key: K,
    f: (key: string) => Effect.Effect<X, E>
  ): Effect.Effect<X, E | InvalidKeyError> => {
    // Pure, so computed when the operation is built: accessors build it inside their own flatMap.
    const full = storeKey(operation, keyspace, key)
    return isInvalidKey(full) ? Effect.fail(full) : f(full)
  }

  const withKeys = <K, A, Id, X, E>(
    operation: Operation,
    keyspace: Definition.Definition<K, A, Id>,
    keys: Iterable<K>,
    f: (keys: Array<string>) => Effect.Effect<X, E>
  ): Effect.Effect<X, E | InvalidKeyError> => {
    const full = storeKeys(operation, keyspace, keys)
    return isInvalidKey(full) ? Effect.fail(full) : f(full)
  }

  /**
   * Produces a value while holding the key's lock, so that one instance in the fleet produces at a
   * time: lock, read again, produce (a watchdog extends the lease meanwhile), store through the lock
   * (refused if the lease was lost), release. A caller that finds the lock taken waits for its release
   * and reads again, until `lockTimeout`; then `lockMode` decides. A failing lock backend is absorbed
   * like a failing store: the producer runs without it (or, at most once, fails with a `LockError`).
   */
  const coordinated = <K, A, Id, E, R>(
    lock: CacheLock.CacheLock,
    keyspace: Definition.Definition<K, A, Id>,
    key: string,
    reread: Effect.Effect<Option.Option<A>>,
    produce: Effect.Effect<A, E, R>,
    storeUnlocked: (value: A) => Effect.Effect<void>,
    options: GetOrSetOptions<A> | undefined
  ): Effect.Effect<A, E | LockError, R> => {
    const atMostOnce = options?.lockMode === "at-most-once"
    const waitLimit = Duration.toMillis(Duration.decode(options?.lockTimeout ?? lockSettings.timeout))
    const pollMillis = Duration.toMillis(lockSettings.pollInterval)
    const extendEvery = Duration.divide(lockSettings.lease, 3).pipe(Option.getOrElse(() => lockSettings.lease))

    const unlocked = (error: LockError): Effect.Effect<A, E | LockError, R> =>
      atMostOnce ? Effect.fail(error) : Effect.zipRight(absorb(keyspace, undefined)(error), Effect.tap(produce, storeUnlocked))

    /** Extends the lease every third of it while the producer runs; a failed extend is tried again soon. */
    const watchdog = (lease: CacheLock.Lease): Effect.Effect<void> => {
      const retryEvery = Duration.divide(extendEvery, 4).pipe(Option.getOrElse(() => extendEvery))
      const tick = (wait: Duration.Duration): Effect.Effect<void> =>
        Effect.sleep(wait).pipe(
          Effect.zipRight(Effect.either(boundLock("lock", key, lock.extend(lease, lockSettings.lease)))),
          Effect.flatMap((extended) =>
            extended._tag === "Left" ? tick(retryEvery) : extended.right ? tick(extendEvery) : Effect.void
          )
        )
      return tick(extendEvery)
    }

    /** Holding the lease: read again, produce, and release with the value (or without it). */
    const holding = (lease: CacheLock.Lease): Effect.Effect<{ readonly value: A; readonly write: Option.Option<CacheLock.Write> }, E, R> =>
      Effect.flatMap(reread, (found) => {
        if (Option.isSome(found)) return Effect.succeed({ value: found.value, write: Option.none() })
        return Effect.flatMap(Effect.fork(watchdog(lease)), (fiber) =>
          produce.pipe(
            Effect.ensuring(Fiber.interrupt(fiber)),
            Effect.flatMap((value) => Effect.map(planWrite(keyspace, key, value, options), (write) => ({ value, write })))
          ))
      })

    /**
     * Takes the lock and, in the same uninterruptible step, makes sure it is released exactly once:
     * with the value on success, without it on failure, defect or interruption.
     */
    const acquireAndHold = (onBusy: Effect.Effect<A, E | LockError, R>): Effect.Effect<A, E | LockError, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Effect.either(boundLock("lock", key, lock.tryAcquire(key, lockSettings.lease))), (acquired): Effect.Effect<A, E | LockError, R> => {
          if (acquired._tag === "Left") return restore(unlocked(acquired.left))
          if (Option.isNone(acquired.right)) return restore(onBusy)
          const lease = acquired.right.value
          return restore(holding(lease)).pipe(
            Effect.onExit((exit) =>
              Exit.isSuccess(exit)
                ? Effect.flatMap(
                  Effect.either(boundLock("unlock", key, lock.release(lease, exit.value.write))),
                  (released) =>
                    released._tag === "Left"
                      ? absorb(keyspace, undefined)(released.left)
                      : released.right || Option.isNone(exit.value.write)
                      ? Effect.void
                      : Effect.logWarning(
                        `effect-cachekit: the lock on "${key}" lapsed while its producer ran; its value was not stored`
                      )
                )
                : Effect.ignore(boundLock("unlock", key, lock.release(lease, Option.none())))
            ),
            Effect.map(({ value }) => value)
          )
        })
      )

    const attempt = (deadline: number): Effect.Effect<A, E | LockError, R> =>
      acquireAndHold(Effect.flatMap(Effect.clockWith((clock) => clock.currentTimeMillis), (now) => {
        const remaining = deadline - now
        if (remaining <= 0) {
          return unlocked(new LockError({
            reason: "Timeout",
            operation: "lock",
            key,
            cause: `another instance held the lock for over ${waitLimit} ms`
          }))
        }
        return lock.awaitRelease(key, Duration.millis(Math.min(remaining, pollMillis))).pipe(
          Effect.zipRight(reread),
          Effect.flatMap((found) => Option.isSome(found) ? Effect.succeed(found.value) : attempt(deadline))
        )
      }))

    return Effect.flatMap(Effect.clockWith((clock) => clock.currentTimeMillis), (now) => attempt(now + waitLimit))
  }

  /**
   * The miss path of getOrSet: run the producer under the in-process guard (and the lock, when there
   * is one). Built only on a miss, so a hit allocates none of it.
   */
  const produceUnderGuard = <K, A, Id, E, R>(
    keyspace: Definition.Definition<K, A, Id>,
    full: string,
    produce: Effect.Effect<A, E, R>,
    options: GetOrSetOptions<A> | undefined,
    readFirst: boolean
  ): Effect.Effect<A, E | LockError, R> => {
    const storeUnlocked = (value: A): Effect.Effect<void> =>
      Effect.flatMap(planWrite(keyspace, full, value, options), (write) =>
        Option.isNone(write)
          ? Effect.void
          : bound("getOrSet", full, store.set(full, write.value.value, write.value.ttl)).pipe(
            Effect.catchAll(absorb(keyspace, undefined))
          ))
    const reread = readFirst
      ? read("getOrSet", keyspace, full).pipe(Effect.catchAll(absorb(keyspace, Option.none<A>())))
      : Effect.succeedNone
    // With a lock, the value is stored through it before it is released; without one, callers get the
    // value first and the key stays in flight until the write lands.
    const run: Effect.Effect<A, E | LockError, R> = lock !== undefined
      ? coordinated(lock, keyspace, full, reread, produce, storeUnlocked, options)
      : readFirst
      ? Effect.flatMap(reread, (found) => Option.isSome(found) ? Effect.succeed(found.value) : produce)
      : produce
    const after = lock === undefined && options?.cacheWrite !== false ? storeUnlocked : undefined
    // A forced refresh must not join a run that may answer from the cache, and a caller must not join
    // a run whose lock mode may fail it with an error its type does not have. Control characters never
    // occur in store keys, so these flight keys cannot collide with another.
    const flightKey = `${full}${options?.cacheRead === false ? "\u0000refresh" : ""}${
      options?.lockMode === "at-most-once" ? "\u0000at-most-once" : ""
    }`
    return flights.run(flightKey, run, after)
  }

  const getOrSet = <K, A, Id, E, R, const O extends GetOrSetOptions<A> = {}>(
    keyspace: Definition.Definition<K, A, Id>,
    key: K,
    produce: Effect.Effect<A, E, R>,
    options?: O
  ): Effect.Effect<A, E | LockErrorOf<O>, R> =>
    // Built when called (accessors call it inside their own flatMap); `flights.has` is only a shortcut:
    // a stale answer costs a read or a join, never correctness.
    ((): Effect.Effect<A, E | LockError, R> => {
      const full = storeKey("getOrSet", keyspace, key)
      if (isInvalidKey(full)) return Effect.zipRight(absorb(keyspace, undefined)(full), produce)
      if (options?.cacheRead === false) {
        return options.cacheWrite === false ? produce : produceUnderGuard(keyspace, full, produce, options, false)
      }
      // Under the guard, read again: a run that finished meanwhile may have stored the value. When the
      // store has just failed, don't wait on it a second time.
      if (flights.has(full)) return produceUnderGuard(keyspace, full, produce, options, true)
      const readNow = store.readNow
      if (readNow !== undefined) {
        // In process: a live hit of this keyspace answers in one step, without an Option in between.
        return Effect.clockWith((clock) => {
          const stored = readNow(full, clock.unsafeCurrentTimeMillis())
          if (isLiveOf(keyspace, stored)) {
            counters(keyspace.name).hits()
            return Effect.succeed(stored.value as A)
          }
          return Effect.flatMap(
            afterRead("getOrSet", keyspace, full, stored),
            (found) => Option.isSome(found) ? Effect.succeed(found.value) : produceUnderGuard(keyspace, full, produce, options, true)
          )
        })
      }
      return Effect.matchEffect(lookup("getOrSet", keyspace, full), {
        onSuccess: (found) =>
          Option.isSome(found) ? Effect.succeed(found.value) : produceUnderGuard(keyspace, full, produce, options, true),
        onFailure: (error) =>
          Effect.zipRight(absorb(keyspace, undefined)(error), produceUnderGuard(keyspace, full, produce, options, false))
      })
    })() as Effect.Effect<A, E | LockErrorOf<O>, R>

  return {
    namespace,
    store,
    defaultTtl,
    timeout,
    maxKeyLength,
    inFlight: Effect.sync(() => flights.size()),
    get: (keyspace, key) => withKey("get", keyspace, key, (full) => lookup("get", keyspace, full)),
    getMany: (keyspace, keys) =>
      withKeys("getMany", keyspace, keys, (full) =>
        Effect.flatMap(bound("getMany", undefined, store.getMany(full)), (stored) => decodeMany(keyspace, full, stored))),
    set: (keyspace, key, value, options) =>
      withKey("set", keyspace, key, (full) => write("set", keyspace, full, value, options)),
    setMany: (keyspace, entries, options) =>
      Effect.suspend(() => {
        const list = Array.from(entries)
        return withKeys("setMany", keyspace, list.map(([key]) => key), (full) =>
          Effect.flatMap(
            Effect.forEach(list, ([, value], i) =>
              Effect.map(encode("setMany", keyspace, full[i]!, value), (stored): CacheStore.Entry => ({
                key: full[i]!,
                value: stored,
                ttl: ttlOf(value, keyspace.ttl, options?.ttl)
              }))),
            (encoded) => bound("setMany", undefined, store.setMany(encoded))
          ))
      }),
    add: (keyspace, key, value, options) =>
      withKey("add", keyspace, key, (full) =>
        Effect.flatMap(
          encode("add", keyspace, full, value),
          (stored) => bound("add", full, store.add(full, stored, ttlOf(value, keyspace.ttl, options?.ttl)))
        )),
    has: (keyspace, key) => withKey("has", keyspace, key, (full) => bound("has", full, store.has(full))),
    invalidate: (keyspace, key) =>
      withKey("delete", keyspace, key, (full) => Effect.asVoid(bound("delete", full, store.delete(full)))),
    invalidateMany: (keyspace, keys) =>
      withKeys("deleteMany", keyspace, keys, (full) =>
        Effect.asVoid(bound("deleteMany", undefined, store.deleteMany(full)))),
    clearKeyspace: (keyspace) => bound("clear", prefixOf(keyspace), store.clear(prefixOf(keyspace))),
    clear: bound("clear", `${namespace}:`, store.clear(`${namespace}:`)),
    getOrSet
  }
}
