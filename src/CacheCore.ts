/**
 * The Cache service without the ready-made remote layers: its tag, `make`, `layer` over any store,
 * `layerMemory`, the accessors and `memoize`. Everything here and everything it imports is
 * runtime-neutral (no `node:` module, no Node global), so an Effect program on Bun, Deno or a Worker
 * gets the memory cache through `effect-cachekit/portable` without loading a Redis client.
 * `effect-cachekit`'s `Cache` module is this one plus `layerRedis`, `layerTiered`, `layerConfig` and
 * `layerFromEnv`.
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Queue from "effect/Queue"
import type * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { InvalidKeyError, StoreError } from "./CacheError.js"
import type * as CacheEvent from "./CacheEvent.js"
import * as CacheKey from "./CacheKey.js"
import * as CacheLock from "./CacheLock.js"
import type * as CacheSerializer from "./CacheSerializer.js"
import * as CacheStore from "./CacheStore.js"
import * as MemoryStore from "./CacheStore/Memory.js"
import * as Engine from "./internal/engine.js"
import * as Compile from "./internal/keyspace.js"
import * as Metrics from "./internal/metrics.js"
import type * as Model from "./internal/model.js"
import * as Operations from "./internal/operations.js"
import * as SingleFlight from "./internal/singleFlight.js"


/**
 * Options of a cache.
 *
 * @example
 * ```ts
 * import { Cache } from "effect-cachekit"
 *
 * const options: Cache.Options = { namespace: "app", defaultTtl: "5 minutes", timeout: "250 millis", maxKeyLength: 512 }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The first segment of every key (`"<namespace>:<keyspace>:<key>"`). Default `"cache"`; no `:`. */
  readonly namespace?: string | undefined
  /** The time to live of entries whose keyspace sets none. Default: no expiry. */
  readonly defaultTtl?: Duration.DurationInput | undefined
  /**
   * The bound on each store operation, in real time; past it the operation fails with a `"Timeout"`
   * StoreError. Default 1 second.
   */
  readonly timeout?: Duration.DurationInput | undefined
  /** The longest store key accepted, in characters. Default 1,024. */
  readonly maxKeyLength?: number | undefined
  /** How `getOrSet` uses the {@link CacheLock.CacheLock} in context, when there is one. */
  readonly lock?: LockOptions | undefined
  /**
   * Show keys as `<namespace>:<keyspace>:#<digest>` in errors and logs, for keys that carry user data
   * (emails, tokens). The digest (SHA-256, 16 characters) tells two keys apart without revealing them.
   * Default `false`.
   */
  readonly redactKeys?: boolean | undefined
  /**
   * Run every public operation in a span of its own (`cache.get`, `cache.getOrSet`, ...; a
   * `getOrSet`'s producer in a child span, `cache.produce`), with the cache, keyspace and store as
   * attributes and, on reads, whether they hit. Off by default: Effect's spans are not free (an L1 hit
   * runs at 0.04× its speed with them in the benchmark).
   */
  readonly spans?: boolean | undefined
  /**
   * Record how long each public operation takes (real time, in milliseconds) in the histogram
   * `Cache.metrics.latency`, labelled by cache, keyspace, store and operation. Off by default: an L1
   * hit runs at 0.35× its speed with it in the benchmark (a remote store's round trip dwarfs it).
   */
  readonly latencyMetrics?: boolean | undefined
  /**
   * The circuit breakers in front of a store and a lock that do I/O (not in front of the memory
   * store): after `failures` consecutive timeouts or connection failures the backend is skipped (calls
   * fail at once with reason `"Unavailable"`; `getOrSet` runs its producer) and tried again with one
   * call every `openFor`. `false` turns them off. Default `{ failures: 5, openFor: "1 second" }`.
   */
  readonly circuitBreaker?: false | {
    readonly failures?: number | undefined
    readonly openFor?: Duration.DurationInput | undefined
  } | undefined
  /**
   * How long this instance trusts the tag versions it read from a store outside the process (on the
   * Clock): an `invalidateTags` made by another instance reaches its reads of tagged entries within
   * this window (at once on a two-layer cache, whose bus carries it; at once for the instance that
   * made it; always at once on the memory store). Default 1 second.
   */
  readonly tagWindow?: Duration.DurationInput | undefined
}

/**
 * How `getOrSet` coordinates with other cache instances through a lock.
 *
 * @example
 * ```ts
 * import { Cache } from "effect-cachekit"
 *
 * const CacheLive = Cache.layerRedis({ url: "redis://127.0.0.1:6379", lock: { lease: "30 seconds", timeout: "1 minute" } })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface LockOptions {
  /**
   * How long a lock is held before it lapses unless renewed; a watchdog renews it every third of it
   * while the producer runs, so a holder that dies or freezes loses it within one lease. Default 3 seconds.
   */
  readonly lease?: Duration.DurationInput | undefined
  /** How long a caller waits for another instance's producer before its `lockMode` applies. Default 10 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
  /** The longest wait between two looks while another instance produces (wake-ups usually come sooner). Default 200 ms. */
  readonly pollInterval?: Duration.DurationInput | undefined
}

/**
 * Per-write options.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Tokens = Keyspace.make({ name: "tokens", key: CacheKey.string, value: Schema.String, ttl: "1 hour" })
 * const write = Tokens.set("t1", "secret", { ttl: (token) => token.length > 10 ? "5 minutes" : "1 minute" })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface WriteOptions<A> extends Model.WriteOptions<A> {}

/**
 * What `getStale` reads: the value, whether it is stale (past its ttl, within grace), and its age.
 *
 * @example
 * ```ts
 * import { Duration } from "effect"
 * import type { Cache } from "effect-cachekit"
 *
 * const found: Cache.Found<number> = { value: 1.08, isStale: true, age: Duration.minutes(3) }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Found<A> extends Model.Found<A> {}

/**
 * Per-call options of `getOrSet` and `memoize`. `M` is the lock mode the call may ask for: it decides
 * whether `LockError` is in the call's error type.
 *
 * @example
 * ```ts
 * import { Effect, Option, Schema } from "effect"
 * import { CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Lookups = Keyspace.make({ name: "lookups", key: CacheKey.string, value: Schema.Option(Schema.String) })
 * declare const lookup: (q: string) => Effect.Effect<Option.Option<string>>
 * const found = Lookups.getOrSet("q", lookup("q"), { skip: Option.isNone, ttl: (found) => Option.isSome(found) ? "1 hour" : "30 seconds" })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface GetOrSetOptions<
  A,
  M extends CacheLock.Mode = CacheLock.Mode,
  T extends Duration.DurationInput | undefined = Duration.DurationInput | undefined,
  F = never,
  FI = never
> extends Model.GetOrSetOptions<A, M, T, F, FI> {}

/**
 * Per-call options of `getOrSetMany` and `memoizeMany`: the write options (`ttl`, `grace`, `tags`),
 * `cacheWrite`, `skip`, `lockTimeout`, `hardTimeout` (`T`, as for `getOrSet`), `softTimeout` (once
 * every key still waited for has a stale value: the stale values, the producer finishing in the
 * background; no error added), `eagerRefresh` (keys past that point are answered and refreshed in the
 * background by one producer call) and `cacheAbsent`. `getOrSet`'s `cacheRead`, `lockMode`,
 * `cacheFailure` and `onProduced` do not apply to a batch, and the type leaves them out.
 *
 * @example
 * ```ts
 * import type { Cache } from "effect-cachekit"
 *
 * const options: Cache.GetOrSetManyOptions<string> = { ttl: "1 hour", cacheAbsent: { ttl: "30 seconds" }, lockTimeout: "2 seconds" }
 * const lenient: Cache.GetOrSetManyOptions<string> = { softTimeout: "100 millis", eagerRefresh: 0.8 }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface GetOrSetManyOptions<
  A,
  T extends Duration.DurationInput | undefined = Duration.DurationInput | undefined
> extends Model.GetOrSetManyOptions<A, T> {}

/**
 * `getOrSetMany`'s negative caching: a key the producer did not return is stored as an "absent"
 * marker for `ttl` (an entry flagged as a cached failure, under a fingerprint of the keyspace's own,
 * with an empty body); a later batch with this option answers `None` for it without asking the
 * producer. `get` and `getOrSet` read the marker as a miss, and their writes replace it.
 *
 * @example
 * ```ts
 * import type { Cache } from "effect-cachekit"
 *
 * const negative: Cache.CacheAbsent = { ttl: "30 seconds" }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface CacheAbsent extends Model.CacheAbsent {}

/**
 * The lock error a `getOrSet` call may fail with, from the lock mode it may ask for: `LockError` when
 * that may be `"at-most-once"`, none otherwise.
 *
 * @example
 * ```ts
 * import type { Cache, CacheError } from "effect-cachekit"
 *
 * type Strict = Cache.LockErrorOf<"at-most-once">  // CacheError.LockError
 * type Lenient = Cache.LockErrorOf<"at-least-once"> // never
 * const check: [Strict] extends [CacheError.LockError] ? true : false = true
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type LockErrorOf<M extends CacheLock.Mode> = Model.LockErrorOf<M>

/**
 * The error a `hardTimeout` adds to `getOrSet` and `memoize`, from the option's type `T`:
 * `ProducerTimeoutError` when a hard timeout may be set, none when it is `undefined`.
 *
 * @example
 * ```ts
 * import type { Cache, CacheError } from "effect-cachekit"
 *
 * type Bounded = Cache.TimeoutErrorOf<"5 seconds"> // CacheError.ProducerTimeoutError
 * type Unbounded = Cache.TimeoutErrorOf<undefined> // never
 * const check: [Bounded] extends [CacheError.ProducerTimeoutError] ? true : false = true
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export type TimeoutErrorOf<T> = Model.TimeoutErrorOf<T>

/**
 * The cache service. Every operation takes the keyspace it works in.
 *
 * Direct operations (`get`, `set`, ...) fail with typed errors. `getOrSet` never fails because of the
 * store: when the store fails it logs, counts and falls back to the producer, so its error channel is
 * the producer's, plus `LockError` only when the call asks for `lockMode: "at-most-once"`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-cachekit"
 *
 * const busy = Effect.flatMap(Cache.Cache, (cache) => cache.inFlight) // keys whose producer runs now
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Service = Model.Service

/**
 * The default cache's tag. A program with several caches declares a tag of its own per extra cache
 * (`class SessionCache extends Context.Tag("app/SessionCache")<SessionCache, Cache.Service>() {}`),
 * provides it with `Layer.scoped(SessionCache, Cache.make(...))` and names it in keyspaces
 * (`Keyspace.make({ ..., cache: SessionCache })`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-cachekit"
 *
 * const namespace = Effect.map(Cache.Cache, (cache) => cache.namespace)
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export class Cache extends Context.Tag("effect-cachekit/Cache")<Cache, Service>() {}

/**
 * The counters every cache updates, labelled by `cache` (the namespace), `keyspace` and `store`; and
 * `circuitOpen`, a gauge labelled by `cache`, `store` and `backend` (`"store"` or `"lock"`): 1 while
 * the circuit breaker in front of that backend is open, 0 while it is closed.
 *
 * @example
 * ```ts
 * import { Effect, Metric } from "effect"
 * import { Cache } from "effect-cachekit"
 *
 * const hits = Metric.value(
 *   Cache.metrics.hits.pipe(Metric.tagged("cache", "app"), Metric.tagged("keyspace", "users"), Metric.tagged("store", "memory"))
 * ) // every label a cache sets, or the counter read is another one
 * ```
 *
 * @since 0.1.0
 * @category metrics
 */
export const metrics = {
  ...Metrics.counters,
  unsharedWrites: Metrics.unsharedWrites,
  refreshFailures: Metrics.refreshFailures,
  circuitOpen: Metrics.circuit,
  latency: Metrics.latency,
  eventsDropped: Metrics.eventsDropped
} as const

/**
 * Builds a cache over the store in context (and the lock, when one is in context). Producers started
 * by `getOrSet` run in the scope, so closing it stops them.
 *
 * @example
 * ```ts
 * import { Context, Layer } from "effect"
 * import { Cache, MemoryStore } from "effect-cachekit"
 *
 * class SessionCache extends Context.Tag("app/SessionCache")<SessionCache, Cache.Service>() {}
 *
 * const SessionCacheLive = Layer.scoped(SessionCache, Cache.make({ namespace: "sessions" })).pipe(
 *   Layer.provide(MemoryStore.layer({ capacity: 1_000 }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Service, never, CacheStore.CacheStore | Scope.Scope> =>
  Effect.gen(function*() {
    const store = yield* CacheStore.CacheStore
    // Runs live in a scope of their own, closed after they had 50 ms to settle (this finalizer, added
    // later, runs first): a write or a lock release in flight lands, a dead server is not waited on.
    const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const flights = SingleFlight.make(scope)
    yield* Effect.addFinalizer(() => flights.settle(50))
    const lock = Option.getOrUndefined(yield* Effect.serviceOption(CacheLock.CacheLock))
    const settings = {
      namespace: Compile.validateName("namespace", options.namespace ?? "cache"),
      timeout: Duration.decode(options.timeout ?? "1 second"),
      defaultTtl: options.defaultTtl === undefined ? undefined : Duration.decode(options.defaultTtl),
      maxKeyLength: options.maxKeyLength ?? 1024,
      tagWindow: Duration.decode(options.tagWindow ?? "1 second"),
      redactKeys: options.redactKeys ?? false,
      spans: options.spans ?? false,
      latencyMetrics: options.latencyMetrics ?? false,
      breaker: options.circuitBreaker === false ? undefined : {
        failures: Math.max(1, options.circuitBreaker?.failures ?? 5),
        openForMillis: Duration.toMillis(Duration.decode(options.circuitBreaker?.openFor ?? "1 second"))
      },
      flights,
      lock,
      lockSettings: {
        lease: Duration.decode(options.lock?.lease ?? "3 seconds"),
        timeout: Duration.decode(options.lock?.timeout ?? "10 seconds"),
        pollInterval: Duration.decode(options.lock?.pollInterval ?? "200 millis")
      }
    }
    const engine = Engine.make({ ...settings, store })
    const heard = store.local?.namespace
    if (heard !== undefined && heard !== settings.namespace) {
      yield* Effect.logWarning(
        `effect-cachekit: the two-layer store hears the bus of namespace "${heard}", not this cache's ("${settings.namespace}"): ` +
          "other instances' writes will not reach its memory; give TieredStore.layer the cache's namespace"
      )
    }
    // A two-layer store: keyspaces kept in one tier run on that tier's store (memory only: no lock).
    const tiers = store.local?.tiers
    return Operations.makeService(
      engine,
      tiers === undefined ? undefined : {
        local: Engine.make({ ...settings, store: tiers.local, lock: undefined, tags: engine.tags, events: engine.events }),
        shared: Engine.make({ ...settings, store: tiers.shared, tags: engine.tags, events: engine.events })
      }
    )
  })

/**
 * A cache over the store in context.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Cache, MemoryStore } from "effect-cachekit"
 *
 * const CacheLive = Cache.layer({ namespace: "app", defaultTtl: "5 minutes" }).pipe(
 *   Layer.provide(MemoryStore.layer({ capacity: 10_000 }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Cache, never, CacheStore.CacheStore> =>
  Layer.scoped(Cache, make(options))

/**
 * A cache over a fresh bounded memory store: the embedded default.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-cachekit"
 *
 * declare const program: Effect.Effect<void, never, Cache.Cache>
 * program.pipe(Effect.provide(Cache.layerMemory({ capacity: 10_000 })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = (options: Options & MemoryStore.Options = {}): Layer.Layer<Cache> =>
  layer(options).pipe(Layer.provide(MemoryStore.layer(options)))

/**
 * Reads a key of a keyspace: `Some` on a hit; `None` on a miss, including a stored value that
 * cannot be decoded (it is dropped and counted).
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String })
 * const name = Cache.get(Names, 1)
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const get: Model.AccessorOf<"get"> = Operations.accessors.get

/**
 * Reads a key of a keyspace, stale entries included (past their ttl, within the keyspace's grace):
 * `Some` with the value, whether it is stale, and its age; `None` when nothing is stored, the entry
 * expired, was invalidated by a tag, or caches a failure.
 *
 * @example
 * ```ts
 * import { Effect, Option, Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Rates = Keyspace.make({ name: "rates", key: CacheKey.string, value: Schema.Number, ttl: "1 minute", grace: "1 hour" })
 * const rate = Cache.getStale(Rates, "EUR").pipe(
 *   Effect.map(Option.map((found) => (found.isStale ? `${found.value} (old)` : `${found.value}`)))
 * )
 * ```
 *
 * @since 0.2.0
 * @category accessors
 */
export const getStale: Model.AccessorOf<"getStale"> = Operations.accessors.getStale

/**
 * Reads many keys of a keyspace in one batch: one result per key, in order.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String })
 * const names = Cache.getMany(Names, [1, 2, 3])
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const getMany: Model.AccessorOf<"getMany"> = Operations.accessors.getMany

/**
 * Stores a value under a key of a keyspace, for the keyspace's time to live unless `options.ttl` says
 * otherwise.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String })
 * const write = Cache.set(Names, 1, "Ada", { ttl: "1 hour" })
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const set: Model.AccessorOf<"set"> = Operations.accessors.set

/**
 * Stores many entries of a keyspace in one batch.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String })
 * const write = Cache.setMany(Names, [[1, "Ada"], [2, "Grace"]])
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const setMany: Model.AccessorOf<"setMany"> = Operations.accessors.setMany

/**
 * Stores a value only if the key has no entry; succeeds with `true` when it stored. An entry still
 * stored but not servable (stale within grace, invalidated by a tag, a cached failure) counts as one
 * until it expires or is removed.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Claims = Keyspace.make({ name: "claims", key: CacheKey.string, value: Schema.String, ttl: "30 seconds" })
 * const claimed = Cache.add(Claims, "job-7", "worker-a")
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const add: Model.AccessorOf<"add"> = Operations.accessors.add

/**
 * Whether a key of a keyspace holds an entry `get` would return: fresh, not a cached failure, not
 * invalidated by a tag (judged from its header, without decoding the value).
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String })
 * const known = Cache.has(Names, 1)
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const has: Model.AccessorOf<"has"> = Operations.accessors.has

/**
 * Removes a key of a keyspace.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String })
 * const forget = Cache.invalidate(Names, 1)
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const invalidate: Model.AccessorOf<"invalidate"> = Operations.accessors.invalidate

/**
 * Removes many keys of a keyspace in one batch.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String })
 * const forget = Cache.invalidateMany(Names, [1, 2])
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const invalidateMany: Model.AccessorOf<"invalidateMany"> = Operations.accessors.invalidateMany

/**
 * Removes many keys of a keyspace in one batch, as {@link invalidateMany} does, and succeeds with how
 * many entries were there to remove (aiocache's `multi_delete`; memcached counts the live entries it
 * removed).
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String })
 * const removed = Cache.deleteMany(Names, [1, 2]) // Effect<number, InvalidKeyError | StoreError, Cache>
 * ```
 *
 * @since 0.4.0
 * @category accessors
 */
export const deleteMany: Model.AccessorOf<"deleteMany"> = Operations.accessors.deleteMany

/**
 * How long a key's entry stays fresh: `Some` of the time left (`Duration.infinity` for an entry
 * without a ttl), `None` when the key holds no entry `get` would return (absent, past its ttl, a cached
 * failure, invalidated by a tag). Read from the entry's header and the Clock, on every store. (Named
 * `remainingTtl`, not `ttl`: a keyspace's `ttl` is its policy.)
 *
 * @example
 * ```ts
 * import { Duration, Effect, Option, Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String, ttl: "1 hour" })
 * const secondsLeft = Cache.remainingTtl(Names, 1).pipe(Effect.map(Option.map(Duration.toSeconds)))
 * ```
 *
 * @since 0.4.0
 * @category accessors
 */
export const remainingTtl: Model.AccessorOf<"remainingTtl"> = Operations.accessors.remainingTtl

/**
 * Gives a key's entry a new time to live from now, keeping its grace (`Duration.infinity`: no
 * expiry; zero or less: removes it). Succeeds with `true` when the key held an entry `get` would
 * return, `false` (and nothing changes) otherwise or when the entry was written again meanwhile. It is
 * a write: on Redis one script rewrites the entry's header and its `PEXPIRE` together and announces it
 * on a two-layer cache's bus, so the other instances drop their copies. A store that cannot (see
 * `CacheStore.Capabilities.expire`) fails with a `StoreError` of reason `"Unsupported"`.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Sessions = Keyspace.make({ name: "sessions", key: CacheKey.string, value: Schema.String, ttl: "30 minutes" })
 * const touched = Cache.expire(Sessions, "s-1", "30 minutes") // sliding expiry
 * ```
 *
 * @since 0.4.0
 * @category accessors
 */
export const expire: Model.AccessorOf<"expire"> = Operations.accessors.expire

/**
 * The default cache's store client of kind `kind`, for commands the cache does not offer: `"redis"`
 * gives the ioredis client of a Redis or two-layer cache, `"memcached"` the `memcache-client` client of
 * a memcached store (once `effect-cachekit/CacheStore/Memcached` is imported). Any other store, or
 * another kind, fails with a `StoreError` of reason `"Unsupported"`. Commands sent this way bypass the
 * cache: their keys are not namespaced, their writes not versioned nor announced on a bus.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-cachekit"
 *
 * const memory = Cache.raw("redis").pipe(Effect.flatMap((client) => Effect.promise(() => client.info("memory"))))
 * ```
 *
 * @since 0.4.0
 * @category accessors
 */
export const raw = <K extends keyof CacheStore.RawClients>(kind: K): Effect.Effect<CacheStore.RawClients[K], StoreError, Cache> =>
  Effect.flatMap(Cache, (cache) => cache.store.raw(kind))

/**
 * Adds `by` (default 1; negative to decrease) to a counter of a counter keyspace
 * (`Keyspace.counter`), atomically for every client of the store, and succeeds with the new value. An
 * absent counter starts from 0 and is created with the keyspace's ttl, which later increments keep.
 * A `by` that is not a safe integer fails with a `CodecError`; a key holding anything but an integer
 * with a `StoreError` of reason `"WrongType"`; an increment past `Number.MAX_SAFE_INTEGER` either way
 * with reason `"Overflow"` (the counter is left as it was).
 *
 * @example
 * ```ts
 * import { CacheKey, Cache, Keyspace } from "effect-cachekit"
 *
 * const Logins = Keyspace.counter({ name: "logins", key: CacheKey.number, ttl: "1 hour" })
 * const attempts = Cache.increment(Logins, 42) // Effect<number, InvalidKeyError | StoreError | CodecError, Cache>
 * ```
 *
 * @since 0.4.0
 * @category accessors
 */
export const increment: Model.CounterAccessorOf<"increment"> = Operations.counterAccessors.increment

/**
 * Removes every entry of a keyspace; succeeds with how many were removed.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String })
 * const removed = Cache.clearKeyspace(Names)
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const clearKeyspace: Model.AccessorOf<"clearKeyspace"> = Operations.accessors.clearKeyspace

/**
 * Invalidates every entry of a keyspace whose key has the given values in the given fields (fields
 * the keyspace names in `keyTags`): one tag invalidation, however many entries, never a scan.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Members = Keyspace.make({
 *   name: "members",
 *   key: CacheKey.struct({ org: CacheKey.string, id: CacheKey.number }),
 *   value: Schema.String,
 *   keyTags: ["org"]
 * })
 * const dropped = Cache.invalidateWhere(Members, { org: "acme" })
 * ```
 *
 * @since 0.2.0
 * @category accessors
 */
export const invalidateWhere: Model.AccessorOf<"invalidateWhere"> = Operations.accessors.invalidateWhere

/**
 * Invalidates every entry that carries one of `tags` (written before the call), in every keyspace of
 * the default cache, with one write per tag however many entries carry it. Other instances see it on
 * their next read of such an entry: at once on the memory store and on a two-layer cache (its bus
 * carries it), within the cache's `tagWindow` (default 1 second) over Redis alone.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Users = Keyspace.make({
 *   name: "users",
 *   key: CacheKey.number,
 *   value: Schema.Struct({ org: Schema.String, name: Schema.String }),
 *   tags: (_id, user) => [`org:${user.org}`]
 * })
 *
 * const program = Effect.gen(function* () {
 *   yield* Users.set(1, { org: "acme", name: "Ada" })
 *   yield* Cache.invalidateTags(["org:acme"])
 *   return yield* Users.get(1) // Option.none()
 * }).pipe(Effect.provide(Cache.layerMemory()))
 * ```
 *
 * @since 0.2.0
 * @category accessors
 */
export const invalidateTags = (tags: Iterable<string>): Effect.Effect<void, InvalidKeyError | StoreError, Cache> =>
  Effect.flatMap(Cache, (cache) => cache.invalidateTags(tags))

/**
 * Returns the cached value of a key, or runs `produce`, stores its value and returns it. Concurrent
 * callers of one key share one run of the producer (the first caller's), success or failure; a
 * failure is not cached. Store failures never reach the caller: they are logged and counted, and the
 * producer's value is returned.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String, ttl: "1 minute" })
 * const name = Cache.getOrSet(Names, 1, Effect.succeed("Ada"))
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const getOrSet: Model.GetOrSetAccessor = Operations.getOrSetAccessor

/**
 * `getOrSetMany` on any keyspace, its cache read from context: one result per key, in order, the
 * missing keys' from one call of `produceMissing` (`None` for a key it did not return). The keyspace's
 * (or the call's) `softTimeout` answers stale values once every key still waited for has one, the
 * producer finishing in the background; its `eagerRefresh` answers keys past that point at once and
 * refreshes them in the background with one more call of `produceMissing`.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String, ttl: "1 minute" })
 * declare const fetchNames: (ids: ReadonlyArray<number>) => Effect.Effect<Array<readonly [number, string]>>
 * const names = Cache.getOrSetMany(Names, [1, 2, 3], fetchNames) // Effect<Array<Option<string>>, never, Cache>
 * ```
 *
 * @since 0.3.0
 * @category accessors
 */
export const getOrSetMany: Model.GetOrSetManyAccessor = Operations.getOrSetManyAccessor

/**
 * Removes every entry of the default cache's namespace (a prefix scan, never a blocking command);
 * internal entries (locks) are kept.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-cachekit"
 *
 * const removed: Effect.Effect<number, unknown, Cache.Cache> = Cache.clear
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const clear: Effect.Effect<number, StoreError, Cache> = Effect.flatMap(Cache, (cache) => cache.clear)

/**
 * The events of the cache in context (see `CacheEvent`): hits and misses with their keys, writes,
 * invalidations, absorbed failures, circuit changes and, with `latencyMetrics`, every operation's
 * duration. Each run of the stream subscribes from the moment it starts, with a buffer of 4,096
 * events; a run that falls behind loses the events that do not fit (counted by
 * `Cache.metrics.eventsDropped`) and never slows the cache. Use {@link subscribe} to be registered
 * before the next step of a program.
 *
 * @example
 * ```ts
 * import { Chunk, Effect, Stream } from "effect"
 * import { Cache, CacheEvent } from "effect-cachekit"
 *
 * // aiocache's HitMissRatio over a sliding window: the ratio of every 100 reads, logged.
 * const hitRatio = Cache.events.pipe(
 *   Stream.filter((event) => CacheEvent.$is("Hit")(event) || CacheEvent.$is("Miss")(event)),
 *   Stream.grouped(100),
 *   Stream.runForEach((reads) => Effect.logInfo(`hit ratio of the last 100 reads: ${Chunk.filter(reads, CacheEvent.$is("Hit")).length}%`))
 * )
 * ```
 *
 * @since 0.3.0
 * @category observability
 */
export const events: Stream.Stream<CacheEvent.CacheEvent, never, Cache> = Stream.unwrap(Effect.map(Cache, (cache) => cache.events))

/**
 * Subscribes to the events of the cache in context: the queue is registered when this returns, so no
 * event of what the program does next is missed, and unregistered when the scope closes. At most
 * `bufferSize` events (default 4,096) wait in it; the ones that do not fit are dropped and counted.
 *
 * @example
 * ```ts
 * import { Effect, Queue, Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: Schema.String })
 *
 * const told = Effect.scoped(Effect.gen(function* () {
 *   const events = yield* Cache.subscribe()
 *   yield* Users.get(1)
 *   return yield* Queue.takeAll(events) // [Miss { key: "cache:users:1", ... }]
 * })).pipe(Effect.provide(Cache.layerMemory()))
 * ```
 *
 * @since 0.3.0
 * @category observability
 */
export const subscribe = (
  options?: { readonly bufferSize?: number | undefined }
): Effect.Effect<Queue.Dequeue<CacheEvent.CacheEvent>, never, Cache | Scope.Scope> => Effect.flatMap(Cache, (cache) => cache.subscribe(options))

/**
 * Every keyspace's counts in the cache in context since it was made, sorted by keyspace name: hits,
 * misses, the hit ratio, stale values served, decode failures, writes, absorbed failures and failed
 * refreshes. A keyspace handle's `stats` has one keyspace's.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: Schema.String })
 *
 * const ratio = Effect.gen(function* () {
 *   yield* Users.set(1, "Ada")
 *   yield* Users.get(1)
 *   yield* Users.get(2)
 *   const [users] = yield* Cache.stats
 *   return users.hitRatio // 0.5
 * }).pipe(Effect.provide(Cache.layerMemory()))
 * ```
 *
 * @since 0.3.0
 * @category observability
 */
export const stats: Effect.Effect<ReadonlyArray<CacheEvent.KeyspaceStats>, never, Cache> = Effect.flatMap(Cache, (cache) => cache.stats)

/**
 * Options of {@link memoize}.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Cache } from "effect-cachekit"
 *
 * const options: Cache.MemoizeOptions<number, number, Cache.Cache> = { key: "answer", value: Schema.Number, ttl: "1 hour" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface MemoizeOptions<
  A,
  I,
  Id,
  T extends Duration.DurationInput | undefined = Duration.DurationInput | undefined
> extends Omit<GetOrSetOptions<A, "at-least-once", T>, "lockMode" | "cacheFailure"> {
  /**
   * The entry's name: it is stored as `"<namespace>:<key>"`, apart from every keyspace (a keyspace
   * named like it keeps its own entries); same rules as a keyspace name.
   */
  readonly key: string
  readonly value: Schema.Schema<A, I>
  readonly ttl?: Duration.DurationInput | ((value: A) => Duration.DurationInput) | undefined
  readonly serializer?: CacheSerializer.CacheSerializer<NoInfer<I>> | undefined
  readonly version?: string | undefined
  /** The cache to use; defaults to {@link Cache}. */
  readonly cache?: Context.Tag<Id, Service> | undefined
}

/**
 * Caches the value of an effect under one key: the first run stores it, later runs read it until it
 * expires. Data-first or data-last. Across instances sharing a lock it is at-least-once; use
 * `getOrSet` with `lockMode: "at-most-once"` for the stricter mode.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Cache } from "effect-cachekit"
 *
 * const AppConfig = Schema.Struct({ featureX: Schema.Boolean })
 * declare const loadConfig: Effect.Effect<typeof AppConfig.Type, Error>
 *
 * const config = loadConfig.pipe(Cache.memoize({ key: "config", value: AppConfig, ttl: "1 minute" }))
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const memoize: {
  <A, I, Id = Cache, T extends Duration.DurationInput | undefined = undefined>(
    options: MemoizeOptions<A, I, Id, T>
  ): <E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | TimeoutErrorOf<T>, R | Id>
  <A, E, R, I, Id = Cache, T extends Duration.DurationInput | undefined = undefined>(
    self: Effect.Effect<A, E, R>,
    options: MemoizeOptions<A, I, Id, T>
  ): Effect.Effect<A, E | TimeoutErrorOf<T>, R | Id>
} = dual(
  (args) => Effect.isEffect(args[0]),
  <A, E, R, I, Id, T extends Duration.DurationInput | undefined>(
    self: Effect.Effect<A, E, R>,
    options: MemoizeOptions<A, I, Id, T>
  ): Effect.Effect<A, E | TimeoutErrorOf<T>, R | Id> => {
    // The call's own onProduced runs through getOrSet's options; the entry has none of its own.
    // Per-call tags go with each write through getOrSet's options, as onProduced does.
    // A grace that is a function of the value goes with each write too (the entry's own is fixed).
    const { grace, onProduced: _, tags: _tags, ...policy } = options
    const single = Compile.make(
      { ...policy, grace: typeof grace === "function" ? undefined : grace, name: options.key, key: CacheKey.string },
      Cache as unknown as Context.Tag<Id, Service>,
      "single"
    ) as Model.Definition<string, A, Id>
    return getOrSet(single, "", self, options)
  }
)
