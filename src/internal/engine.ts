/**
 * The state every operation of one cache shares: its store and lock, its settings, its counters, the
 * in-process guard and read coalescing, and the bounds that keep every wait finite.
 *
 * Bounds run on real time (a timer, see `realTime.ts`), never on the Effect Clock: a cache over Redis
 * must not hang under `TestClock`, while logical expiry keeps reading the Clock.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as CacheEntry from "../CacheEntry.js"
import { type CacheError, LockError, type Operation, StoreError } from "../CacheError.js"
import * as CacheEvent from "../CacheEvent.js"
import type * as CacheLock from "../CacheLock.js"
import type * as CacheStore from "../CacheStore.js"
import * as Coalesce from "./coalesce.js"
import * as Breaker from "./breaker.js"
import * as Events from "./events.js"
import * as Metrics from "./metrics.js"
import * as Report from "./report.js"
import * as Tags from "./tags.js"
import type { Definition, Service } from "./model.js"
import { sleepReal, timeoutReal } from "./realTime.js"
import type * as SingleFlight from "./singleFlight.js"

/** One keyspace's counts in one cache, since it was made (`Cache.stats`). */
export interface Tally {
  hits: number
  misses: number
  staleServed: number
  decodeFailures: number
  writes: number
  failures: number
  refreshFailures: number
}

/**
 * One counter per metric, bound to a keyspace's labels; each also adds to the keyspace's tally and,
 * while somebody listens, tells the event (keys as the cache shows them: redacted or not).
 */
export interface Counters {
  /** A read of `key` found a value it may serve. */
  readonly hit: (key: string) => void
  /** A read of `key` found nothing it may serve. */
  readonly miss: (key: string) => void
  /** A batch's hits and misses, counted at once: its events are told per key with `tellRead`. */
  readonly hits: (count: number) => void
  readonly misses: (count: number) => void
  /** Tells a batch's read of `key` without counting it (only while somebody listens). */
  readonly tellRead: (hit: boolean, key: string) => void
  readonly decodeFailure: (key: string) => void
  /** A store or lock failure the cache absorbed. */
  readonly failure: (error: CacheError) => void
  readonly staleServed: (key: string) => void
  readonly refreshFailure: (key: string, cause: Cause.Cause<unknown>) => void
  /** The cache stored a value for `key`. */
  readonly written: (key: string, operation: CacheEvent.WriteOperation) => void
  /** `key` was removed by an invalidation (told only: not counted). */
  readonly invalidated: (key: string) => void
  readonly tally: Tally
}

/** How `getOrSet` coordinates through a lock. */
export interface LockSettings {
  readonly lease: Duration.Duration
  readonly timeout: Duration.Duration
  readonly pollInterval: Duration.Duration
}

export interface Engine {
  readonly store: CacheStore.CacheStore
  readonly namespace: string
  readonly timeout: Duration.Duration
  readonly defaultTtl: Duration.Duration | undefined
  readonly maxKeyLength: number
  readonly flights: SingleFlight.SingleFlight
  readonly reads: Coalesce.Coalesce
  readonly lock: CacheLock.CacheLock | undefined
  readonly lockSettings: LockSettings
  /** The counters of a keyspace. */
  readonly counters: (keyspace: string) => Counters
  /** What the hot path needs of a keyspace in this cache, computed once: its key prefix and counters. */
  readonly bindingOf: (keyspace: Definition<any, any, any, unknown>) => Binding
  /** Bounds a store operation by the cache's timeout, where the store does not bound it itself. */
  readonly bound: <A>(operation: Operation, key: string | undefined, effect: Effect.Effect<A, StoreError>) => Effect.Effect<A, StoreError>
  /**
   * `bound`, for an operation that changes the store (a write, a delete, a clear): a two-layer store's
   * are never refused by the breaker, since its memory must drop or keep its copy whatever Redis does.
   */
  readonly boundWrite: <A>(operation: Operation, key: string | undefined, effect: Effect.Effect<A, StoreError>) => Effect.Effect<A, StoreError>
  /**
   * `bound` without the breaker: for a read right after the lock answered for the same key (its lock
   * key lives in the entry's hash slot), which says the key's server is up whatever other keys' failures
   * opened the breaker.
   */
  readonly boundUnguarded: <A>(operation: Operation, key: string | undefined, effect: Effect.Effect<A, StoreError>) => Effect.Effect<A, StoreError>
  /** Bounds a lock operation by the cache's timeout (on real time; an in-process lock is not raced). */
  readonly boundLock: <A, E>(operation: Operation, key: string, effect: Effect.Effect<A, E>) => Effect.Effect<A, E | LockError>
  /** The lock's time, in milliseconds: the Clock for an in-process lock, the monotonic clock for a server's. */
  readonly lockNow: Effect.Effect<number>
  /** Sleeps on the lock's time (see `lockNow`): the watchdog's and the lock waits' pace. */
  readonly lockSleep: (duration: Duration.Duration) => Effect.Effect<void>
  /** The version the cache gives a write at `now` when the store does not assign versions itself. */
  readonly nextVersion: (now: number) => number
  /** The store's version now, noted before a producer runs so its write is conditional on it (`undefined`: unconditional). */
  readonly versionMark: Effect.Effect<number | undefined>
  /** Throttled, annotated warnings, and keys and errors as the cache shows them (redacted or not). */
  readonly report: Report.Reporter
  /** The service over this engine, once made: what hooks (`onProduced`) get as their cache. */
  readonly service: { current: Service | undefined }
  /**
   * Keys whose producer failed while a stale value was served, with the Clock's time until which the
   * stale value is served without running the producer again (`graceBackoff`). Bounded, oldest out.
   */
  readonly backoff: Map<string, number>
  /** Whether every public operation runs in a span of its own (the cache's `spans` option). */
  readonly spans: boolean
  /** Whether every public operation's duration is recorded (the cache's `latencyMetrics` option). */
  readonly latencyMetrics: boolean
  /** The tags' versions: checked on reads of entries that carry tags, written by `invalidateTags`. */
  readonly tags: Tags.Tags
  /** The subscribers of `Cache.events` (shared by a two-layer store's single tiers). */
  readonly events: Events.Hub
  /** Every keyspace's tally in this engine, by keyspace name. */
  readonly tallies: () => ReadonlyMap<string, Tally>
}

/**
 * The engine a service runs each keyspace on (recorded when the service is made): what work built on
 * the public service, such as `refreshEvery`, counts its outcomes with. A service made elsewhere (a
 * test's own) has none.
 */
export const enginesOf = new WeakMap<Service, (keyspace: Definition<any, any, any, unknown>) => Engine>()

/** A keyspace as one cache uses it. */
export interface Binding {
  /** The prefix of every store key of the keyspace (for a single entry, its key). */
  readonly prefix: string
  readonly counters: Counters
}

export const make = (
  config: Pick<Engine, "store" | "namespace" | "timeout" | "defaultTtl" | "maxKeyLength" | "flights" | "lock" | "lockSettings"> & {
    readonly redactKeys: boolean
    /** The circuit breakers' settings; `undefined`: no breaker. */
    readonly breaker: Breaker.Settings | undefined
    /** How long tag versions read from a store outside the process are trusted. */
    readonly tagWindow: Duration.Duration
    /** A span per public operation. */
    readonly spans?: boolean | undefined
    /** A duration per public operation, in the latency histogram. */
    readonly latencyMetrics?: boolean | undefined
    /** The tags of another engine, shared (a two-layer store's single tiers use the two-layer store's). */
    readonly tags?: Tags.Tags | undefined
    /** The event subscribers of another engine, shared (as `tags`). */
    readonly events?: Events.Hub | undefined
  }
): Engine => {
  const { namespace, store, timeout } = config
  const timeoutMillis = Duration.toMillis(timeout)
  const storeLabel = MetricLabel.make("store", store.name)
  const countersByKeyspace = new Map<string, Counters>()
  const tallies = new Map<string, Tally>()
  const events = config.events ?? Events.make(namespace)
  const report = Report.make({ cache: namespace, store: store.name, redactKeys: config.redactKeys })
  const origin = { cache: namespace, store: store.name }
  // Effect caches a metric's registry hook by the identity of the labels array, so each update passes
  // the same array: no registry lookup per hit.
  const counters = (keyspace: string): Counters => {
    let found = countersByKeyspace.get(keyspace)
    if (found === undefined) {
      const labels = [MetricLabel.make("cache", namespace), MetricLabel.make("keyspace", keyspace), storeLabel]
      const refreshLabels = [labels[0]!, labels[1]!]
      const tally: Tally = { hits: 0, misses: 0, staleServed: 0, decodeFailures: 0, writes: 0, failures: 0, refreshFailures: 0 }
      tallies.set(keyspace, tally)
      const about = (key: string) => ({ ...origin, keyspace, key: report.key(key) })
      /** A count of one key: the metric, the tally, and the event while somebody listens. */
      const ofKey = (metric: Metric.Metric.Counter<number>, field: keyof Tally, event: (key: string) => CacheEvent.CacheEvent) => (key: string) => {
        metric.unsafeUpdate(1, labels)
        tally[field]++
        if (events.listening) events.tell(event(key))
      }
      const hitEvent = (key: string) => CacheEvent.make.Hit(about(key))
      const missEvent = (key: string) => CacheEvent.make.Miss(about(key))
      found = {
        hit: ofKey(Metrics.counters.hits, "hits", hitEvent),
        miss: ofKey(Metrics.counters.misses, "misses", missEvent),
        hits: (count) => {
          Metrics.counters.hits.unsafeUpdate(count, labels)
          tally.hits += count
        },
        misses: (count) => {
          Metrics.counters.misses.unsafeUpdate(count, labels)
          tally.misses += count
        },
        tellRead: (hit, key) => {
          if (events.listening) events.tell(hit ? hitEvent(key) : missEvent(key))
        },
        decodeFailure: ofKey(Metrics.counters.decodeFailures, "decodeFailures", (key) => CacheEvent.make.DecodeFailure(about(key))),
        staleServed: ofKey(Metrics.counters.staleServed, "staleServed", (key) => CacheEvent.make.StaleServed(about(key))),
        failure: (error) => {
          Metrics.counters.errors.unsafeUpdate(1, labels)
          tally.failures++
          if (events.listening) events.tell(CacheEvent.make.Failure({ ...origin, keyspace, error: report.error(error) }))
        },
        refreshFailure: (key, cause) => {
          Metrics.refreshFailures.unsafeUpdate(1, refreshLabels)
          tally.refreshFailures++
          if (events.listening) events.tell(CacheEvent.make.RefreshFailure({ ...about(key), cause: Cause.map(cause, report.error) }))
        },
        written: (key, operation) => {
          tally.writes++
          if (events.listening) events.tell(CacheEvent.make.Write({ ...about(key), operation }))
        },
        invalidated: (key) => {
          if (events.listening) events.tell(CacheEvent.make.Invalidate(about(key)))
        },
        tally
      }
      countersByKeyspace.set(keyspace, found)
    }
    return found
  }

  // Most programs use one keyspace at a time: the last binding is checked before the map.
  const bindings = new WeakMap<Definition<any, any, any, unknown>, Binding>()
  let lastKeyspace: Definition<any, any, any, unknown> | undefined
  let lastBinding: Binding | undefined
  const bindingOf = (keyspace: Definition<any, any, any, unknown>): Binding => {
    if (keyspace === lastKeyspace) return lastBinding!
    let found = bindings.get(keyspace)
    if (found === undefined) {
      const prefix = keyspace.kind === "single" ? `${namespace}:${keyspace.name}` : `${namespace}:${keyspace.name}:`
      found = { prefix, counters: counters(keyspace.name) }
      bindings.set(keyspace, found)
    }
    lastKeyspace = keyspace
    return lastBinding = found
  }

  const { redactKeys: _, breaker: breakerSettings, tagWindow, tags: sharedTags, events: _events, spans, latencyMetrics, ...settings } = config

  /** A breaker in front of a backend that does I/O: logs its changes and shows them on a gauge. */
  const breakerFor = (backend: "store" | "lock"): Breaker.Breaker | undefined => {
    if (breakerSettings === undefined) return undefined
    const labels = [MetricLabel.make("cache", namespace), storeLabel, MetricLabel.make("backend", backend)]
    Metrics.circuit.unsafeUpdate(0, labels)
    return Breaker.make(breakerSettings, {
      isOutage: (error) =>
        (error instanceof StoreError || error instanceof LockError) &&
        (error.reason === "Timeout" || error.reason === "Unavailable" || error.reason === "Auth"),
      describe: (error) => Breaker.describe(report.error(error)),
      onChange: (state, detail) =>
        Effect.suspend(() => {
          Metrics.circuit.unsafeUpdate(state === "open" ? 1 : 0, labels)
          if (events.listening) events.tell(CacheEvent.make.Circuit({ ...origin, backend, state: state === "closed" ? "closed" : "open", detail }))
          return Effect.logWarning(
            state === "open"
              ? `effect-cachekit: the circuit in front of the ${backend} opened (${detail}); calls skip it and the cache works without it, trying again every ${breakerSettings.openForMillis} ms`
              : `effect-cachekit: the circuit in front of the ${backend} closed again (${detail})`
          ).pipe(Effect.annotateLogs({ cache: namespace, store: store.name, backend }))
        })
    })
  }

  const { inProcess, operationBound } = store.capabilities
  /** The store bounds each of its commands within the cache's timeout (Redis: its commandTimeout). */
  const selfBounded = operationBound !== undefined && Duration.lessThanOrEqualTo(operationBound, timeout)
  const noAnswer = `no answer within ${Duration.format(timeout)}`

  // A race costs two fibers and a timer, so it is left out where it cannot matter: stores that never
  // wait on I/O, and operations of a store that bounds its commands itself whose commands run at once
  // (batches send one command per hash slot, concurrently). `clear` walks the keyspace step by step:
  // it keeps the race.
  const storeBreaker = inProcess ? undefined : breakerFor("store")
  // A two-layer store's writes, deletes and clears always reach it (bounded, not refused by the
  // breaker): its memory must drop or keep its copy whether or not Redis takes the change.
  const tiered = store.capabilities.tiered
  const boundUnguarded = <A>(operation: Operation, key: string | undefined, effect: Effect.Effect<A, StoreError>): Effect.Effect<A, StoreError> =>
    inProcess || (selfBounded && operation !== "clear")
      ? effect
      : timeoutReal(effect, timeoutMillis, () => new StoreError({ reason: "Timeout", operation, key, store: store.name, cause: noAnswer }))
  const bound = <A>(operation: Operation, key: string | undefined, effect: Effect.Effect<A, StoreError>): Effect.Effect<A, StoreError> =>
    inProcess ? effect : Breaker.guard(storeBreaker, boundUnguarded(operation, key, effect), (refusal) =>
      new StoreError({ reason: "Unavailable", operation, key, store: store.name, cause: refusal }))
  const boundWrite = <A>(operation: Operation, key: string | undefined, effect: Effect.Effect<A, StoreError>): Effect.Effect<A, StoreError> =>
    tiered ? boundUnguarded(operation, key, effect) : bound(operation, key, effect)

  const lockInProcess = config.lock?.inProcess ?? true
  const lockBreaker = lockInProcess ? undefined : breakerFor("lock")
  const lockBound = config.lock?.operationBound
  /** The lock bounds each of its operations within the cache's timeout (Redis: its commandTimeout). */
  const lockSelfBounded = lockBound !== undefined && Duration.lessThanOrEqualTo(lockBound, timeout)
  const boundLock = <A, E>(operation: Operation, key: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E | LockError> => {
    if (lockInProcess) return effect
    const raced = lockSelfBounded
      ? effect
      : timeoutReal(effect, timeoutMillis, () => new LockError({ reason: "Timeout", operation, key, cause: noAnswer }))
    // A release is never skipped: the breaker opens on failures of any key (a dead master's), and a
    // release it refused would leave a healthy key's lock held to the end of its lease, its value unstored.
    if (operation === "unlock") return raced
    return Breaker.guard(lockBreaker, raced, (refusal) => new LockError({ reason: "Unavailable", operation, key, cause: refusal }))
  }
  // Real time for a remote lock is the monotonic clock: a jump of the wall clock neither cuts a wait
  // short nor stretches it.
  const lockNow = lockInProcess ? Clock.currentTimeMillis : Effect.sync(() => performance.now())
  const lockSleep = (duration: Duration.Duration) =>
    lockInProcess ? Effect.sleep(duration) : sleepReal(Duration.toMillis(duration))

  /** The store's version before a producer runs, for its conditional write (`undefined`: unconditional). */
  const versionMark: Effect.Effect<number | undefined> = store.currentVersion ?? Effect.succeed(undefined)

  let lastVersion = 0
  const nextVersion = (now: number) => lastVersion = CacheEntry.nextVersion(now, lastVersion)

  return {
    ...settings,
    tags: sharedTags ?? Tags.make({
      namespace,
      store,
      window: tagWindow,
      bound: (key, effect) => bound("getMany", key, effect),
      boundWrite: (key, effect) => boundWrite("setMany", key, effect),
      nextVersion: (now) => nextVersion(now)
    }),
    report,
    reads: Coalesce.make(),
    counters,
    bindingOf,
    bound,
    boundWrite,
    boundUnguarded,
    boundLock,
    lockNow,
    lockSleep,
    nextVersion,
    versionMark,
    service: { current: undefined },
    backoff: new Map(),
    spans: spans ?? false,
    latencyMetrics: latencyMetrics ?? false,
    events,
    tallies: () => tallies
  }
}

/**
 * What `getOrSet` does with a store or lock failure: count it, log it (a few lines per cause per
 * second), carry on without the cache.
 */
export const absorb = <X>(engine: Engine, keyspace: string, error: CacheError, fallback: X): Effect.Effect<X> => {
  engine.counters(keyspace).failure(error)
  return Effect.as(
    engine.report.warn(
      `${keyspace}\u0000${error._tag}\u0000${error.reason}\u0000${error.operation}`,
      { keyspace, operation: error.operation },
      () => `${engine.report.error(error).message}; carrying on without the cache`
    ),
    fallback
  )
}
