/**
 * A keyspace is a typed region of a cache: a name, a key codec, a value schema and a policy (time to
 * live, what not to cache, the serializer). Its operations read the cache from context, so the same
 * keyspace runs on memory, Redis or a test layer.
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"
import type * as CacheEvent from "./CacheEvent.js"
import type * as CacheKey from "./CacheKey.js"
import * as Cache from "./CacheCore.js"
import type * as CacheLock from "./CacheLock.js"
import type * as Compile from "./internal/keyspace.js"
import * as Keyspaces from "./internal/keyspace.js"
import type * as Model from "./internal/model.js"
import * as Memoized from "./internal/memoizeFunction.js"
import * as Operations from "./internal/operations.js"
import * as Resolvers from "./internal/resolver.js"

/**
 * The options of {@link make}.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { CacheKey, type Keyspace, type Cache } from "effect-cachekit"
 *
 * const options: Keyspace.Options<string, string, string, Cache.Cache> = {
 *   name: "greetings",
 *   key: CacheKey.string,
 *   value: Schema.String,
 *   ttl: "1 hour"
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<
  K,
  A,
  I,
  Id = Cache.Cache,
  F = never,
  FI = never,
  T extends Duration.DurationInput | undefined = Duration.DurationInput | undefined
> extends Compile.Options<K, A, I, Id, F, FI, T> {}

/**
 * A keyspace's `cacheFailure` option: the schema of the producer failures it caches, and their ttl.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import type { Keyspace } from "effect-cachekit"
 *
 * class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { id: Schema.Number }) {}
 * const policy: Keyspace.CacheFailure<NotFound, { readonly _tag: "NotFound"; readonly id: number }> = { schema: NotFound, ttl: "30 seconds" }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface CacheFailure<F, FI> extends Compile.CacheFailure<F, FI> {}

/**
 * The options of a keyspace's `resolver`: `key`, the key of a request in the keyspace (requests with
 * the same key share one entry), the write options and switches of `getOrSetMany` that apply to
 * every value stored (`ttl`, `grace`, `tags`, `skip`, `cacheWrite`, `lockTimeout`), and its
 * `softTimeout` and `eagerRefresh` (the keyspace's apply without them).
 *
 * @example
 * ```ts
 * import { Request, Schema } from "effect"
 * import type { Keyspace } from "effect-cachekit"
 *
 * class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
 * class GetUser extends Request.TaggedClass("GetUser")<User, never, { readonly id: number }> {}
 * const options: Keyspace.ResolverOptions<number, User, GetUser> = { key: (request) => request.id, ttl: "1 minute" }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface ResolverOptions<K, A, Req> extends Model.ResolverOptions<K, A, Req> {}

/**
 * The options of a keyspace's `memoizeFunction`: `getOrSet`'s per-call options, the function's `name`
 * (its entries' tag is `"memoize:<keyspace>:<name>"`) and `key`, the key of a call from its arguments.
 *
 * @example
 * ```ts
 * import type { Keyspace } from "effect-cachekit"
 *
 * interface Logger { readonly log: (line: string) => void }
 * const options: Keyspace.MemoizeFunctionOptions<readonly [org: string, id: number, logger: Logger], { readonly org: string; readonly id: number }, string> = {
 *   name: "member",
 *   key: (org, id) => ({ org, id }),
 *   ttl: "1 minute"
 * }
 * ```
 *
 * @since 0.4.0
 * @category models
 */
export interface MemoizeFunctionOptions<
  Args extends ReadonlyArray<unknown>,
  K,
  A,
  M extends CacheLock.Mode = CacheLock.Mode,
  T extends Duration.DurationInput | undefined = Duration.DurationInput | undefined,
  F = never,
  FI = never
> extends Model.MemoizeFunctionOptions<Args, K, A, M, T, F, FI> {}

/**
 * The options of a keyspace's `memoizeMethod`: as {@link MemoizeFunctionOptions}, with `key` given the
 * receiver first.
 *
 * @example
 * ```ts
 * import type { Keyspace } from "effect-cachekit"
 *
 * class Account { constructor(readonly id: string) {} }
 * const options: Keyspace.MemoizeMethodOptions<Account, readonly [currency: string], string, number> = {
 *   name: "balance",
 *   key: (self, currency) => `${self.id}/${currency}`
 * }
 * ```
 *
 * @since 0.4.0
 * @category models
 */
export interface MemoizeMethodOptions<
  Self,
  Args extends ReadonlyArray<unknown>,
  K,
  A,
  M extends CacheLock.Mode = CacheLock.Mode,
  T extends Duration.DurationInput | undefined = Duration.DurationInput | undefined,
  F = never,
  FI = never
> extends Model.MemoizeMethodOptions<Self, Args, K, A, M, T, F, FI> {}

/**
 * What `memoizeFunction` returns: a function with `f`'s parameters answering `Effect<A, E, R>`, with
 * `tag`, `invalidate(...args)`, `invalidateAll` and, when the key is a record (`CacheKey.struct`),
 * `invalidateWhere(partialKey)`.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { CacheKey, Keyspace, type Cache } from "effect-cachekit"
 *
 * const Squares = Keyspace.make({ name: "squares", key: CacheKey.number, value: Schema.Number })
 * const square: Keyspace.MemoizedFunction<readonly [n: number, note: string], number, number, never, Cache.Cache, Cache.Cache> =
 *   Squares.memoizeFunction((n: number, _note: string) => Effect.succeed(n * n), { name: "square", key: (n) => n })
 * ```
 *
 * @since 0.4.0
 * @category models
 */
export type MemoizedFunction<Args extends ReadonlyArray<unknown>, K, A, E, R, Id = Cache.Cache> = Model.MemoizedFunction<Args, K, A, E, R, Id>

/**
 * What `memoizeMethod` returns: a function of `this: Self` with the method's parameters, with `tag`,
 * `invalidate(self, ...args)`, `invalidateAll` and, on record keys, `invalidateWhere(partialKey)`.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { CacheKey, Keyspace, type Cache } from "effect-cachekit"
 *
 * class Account { constructor(readonly id: string) {} }
 * const Balances = Keyspace.make({ name: "balances", key: CacheKey.string, value: Schema.Number })
 * const balance: Keyspace.MemoizedMethod<Account, readonly [currency: string], string, number, never, Cache.Cache, Cache.Cache> =
 *   Balances.memoizeMethod(function(this: Account, currency: string) {
 *     return Effect.succeed(this.id.length + currency.length)
 *   }, { name: "balance", key: (self, currency) => `${self.id}/${currency}` })
 * ```
 *
 * @since 0.4.0
 * @category models
 */
export type MemoizedMethod<Self, Args extends ReadonlyArray<unknown>, K, A, E, R, Id = Cache.Cache> = Model.MemoizedMethod<Self, Args, K, A, E, R, Id>

/**
 * The compiled part of a keyspace that the cache service runs on.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { CacheKey, Keyspace, type Cache } from "effect-cachekit"
 *
 * const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String })
 * const definition: Keyspace.Definition<number, string, Cache.Cache> = Names
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Definition<K, A, Id = Cache.Cache, X = never> extends Model.Definition<K, A, Id, X> {}

/**
 * A typed region of a cache, keys `K`, values `A`, served by the cache tagged `Id`; `X` is what its
 * producers may fail with beyond their own errors (`ProducerTimeoutError` with a `hardTimeout`, the
 * cached failure's type with `cacheFailure`). Its direct operations (`get`, `getStale`, `getMany`,
 * `set`, `setMany`, `add`, `has`, `invalidate`, `invalidateMany`, `deleteMany`, `remainingTtl`,
 * `expire`, `invalidateWhere`) are the `Cache.*`
 * accessors bound to this keyspace; `clear` removes every entry of the keyspace.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Greetings = Keyspace.make({ name: "greetings", key: CacheKey.string, value: Schema.String, ttl: "1 hour" })
 *
 * const program = Effect.gen(function* () {
 *   yield* Greetings.set("en", "hello")
 *   return yield* Greetings.get("en") // Option.some("hello")
 * }).pipe(Effect.provide(Cache.layerMemory()))
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Keyspace<K, A, Id = Cache.Cache, X = never> extends Definition<K, A, Id, X>, Model.HandleMethods<K, A, Id> {
  /** Removes every entry of this keyspace (never the cache's internal keys); returns how many. */
  readonly clear: Model.WithRequirement<ReturnType<Model.Operations<K, A>["clearKeyspace"]>, Id>
  /**
   * The cached value, or the producer's, stored on the way. At most one producer per key runs at a
   * time in the process, and across processes when a lock is in context; concurrent callers share its
   * outcome. Store failures fall back to the producer, so the error channel is the producer's (plus
   * `LockError` when the call may ask for `lockMode: "at-most-once"`).
   */
  readonly getOrSet: Model.GetOrSet<K, A, Id, X>
  /** An effectful function whose results are cached by argument, with `getOrSet`'s guarantees. */
  readonly memoize: Model.Memoize<K, A, Id, X>
  /**
   * An effectful function of several arguments whose results are cached by the key `options.key`
   * makes of its arguments (arguments it ignores, such as a logger, are not part of the key), with
   * `getOrSet`'s guarantees and `memoize`'s error type. Every entry it writes carries the tag
   * `"memoize:<keyspace>:<name>"`; the memoized function has `f`'s parameters and carries
   * `invalidate(...args)`, `invalidateAll` (its own entries only) and, on record keys, `invalidateWhere`.
   * A receiver-first function (`(self, ...args)`, Effect's data-first style) is keyed by its receiver
   * through `key: (self, ...args) => ...`.
   */
  readonly memoizeFunction: Model.MemoizeFunction<K, A, Id, X>
  /**
   * `memoizeFunction` for a method that reads `this`: the memoized function keeps `this: Self`, so it
   * sits on a class, and `key` gets the receiver first (`(self, ...args) => ...`); `invalidate` takes the
   * receiver first too.
   */
  readonly memoizeMethod: Model.MemoizeMethod<K, A, Id, X>
  /**
   * One result per key, in order: what the cache holds, and for the missing keys what one call of
   * `produceMissing` returns (`[key, value]` pairs; `None` for a key it did not return). One read
   * (chunked), one lock round trip for the missing set, and per key `getOrSet`'s guarantees: a key
   * another call is producing is waited for, not produced again; a key invalidated while the
   * producer ran is not stored over; grace, `hardTimeout` and tags apply. With a `softTimeout` (the
   * keyspace's or the call's), once every key still waited for has a stale value the batch answers
   * them with it and the producer finishes in the background, storing its values. With an
   * `eagerRefresh`, keys past that point are answered at once and refreshed in the background by one
   * more producer call for all of them (under the locks; a failure keeps the old values, counted). See
   * the README's "Batching" for which options apply.
   */
  readonly getOrSetMany: Model.GetOrSetMany<K, A, Id, X>
  /**
   * A batch function (keys in, `[key, value]` pairs out) cached per key, with `getOrSetMany`'s
   * guarantees: only the keys missing from the cache reach `f`. The memoized function has `f`'s
   * shape: the pairs of the keys found, each distinct key once, in the order asked. The keyspace's
   * `softTimeout` and `eagerRefresh` apply as for `getOrSetMany` (`f` refreshes the keys due).
   */
  readonly memoizeMany: Model.MemoizeMany<K, A, Id, X>
  /**
   * This keyspace's counts in the cache in context since it was made: hits, misses, the hit ratio,
   * stale values served, decode failures, writes, absorbed failures and failed refreshes (all zero
   * before its first operation). `Cache.stats` has every keyspace's.
   */
  readonly stats: Effect.Effect<CacheEvent.KeyspaceStats, never, Id>
  /**
   * Wraps a `RequestResolver` so that `Effect.request` batches read the cache first: each batch Effect
   * hands it goes through `getOrSetMany` keyed by `options.key(request)`, and only the requests of the
   * missing keys reach `inner`, as one batch. What `inner` completes with a value is stored; a request
   * it fails gets its error, and nothing is stored. Requests of one key share one entry (and one
   * request to `inner`). The request's error type must admit the keyspace's `X` (a hard timeout, a
   * cached failure): the type checks it. The keyspace's `softTimeout` and `eagerRefresh` apply as for
   * `getOrSetMany`: due keys are answered from the cache and refreshed through `inner` in one
   * background batch.
   */
  readonly resolver: Model.Resolver<K, A, Id, X>
  /**
   * A layer that fills the cache on start with `produce` for each key (through `getOrSet`: cached
   * keys are left alone, one producer per key runs across the fleet). With `timeout`, the program
   * starts after it at the latest (on the Clock) and the rest completes in the background, logged;
   * failures are logged with their count.
   */
  readonly warmUp: Model.WarmUp<K, A, Id>
  /**
   * A layer that refreshes `key` every `every`, for as long as its scope lives: periods are aligned
   * on the Clock, the first instance to claim a period (an atomic insert in the store) runs the
   * producer, the others skip it, so across a fleet sharing a store the producer runs once per
   * period. On start the entry is filled if it is missing. A failed refresh keeps the old value and
   * is logged and counted (`Cache.metrics.refreshFailures`). Keep the keyspace's ttl above `every`,
   * or the entry expires between refreshes. Given a `Schedule` instead of a duration, each instance
   * refreshes on that schedule on its own (no claim: a fleet refreshes once per instance).
   */
  readonly refreshEvery: Model.RefreshEvery<K, A, Id>
}

/**
 * Makes a keyspace. Its entries live under `"<namespace>:<name>:<key segment>"`.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { CacheKey, Keyspace } from "effect-cachekit"
 *
 * class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
 *
 * const Users = Keyspace.make({
 *   name: "users",
 *   key: CacheKey.number,
 *   value: User,
 *   ttl: "10 minutes"
 * })
 *
 * declare const fetchUser: (id: number) => Effect.Effect<User, Error>
 * const getUser = Users.memoize(fetchUser)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <
  K,
  A,
  I,
  Id = Cache.Cache,
  F = never,
  FI = never,
  T extends Duration.DurationInput | undefined = undefined
>(options: Options<K, A, I, Id, F, FI, T>): Keyspace<K, A, Id, F | Model.TimeoutErrorOf<T>> => {
  const definition = Keyspaces.make(options, Cache.Cache as unknown as Model.Definition<K, A, Id>["cache"]) as Model.Definition<
    K,
    A,
    Id,
    F | Model.TimeoutErrorOf<T>
  >
  return {
    ...definition,
    ...Operations.makeHandle(definition),
    memoizeFunction: Memoized.memoizeFunction(definition),
    memoizeMethod: Memoized.memoizeMethod(definition),
    resolver: Resolvers.resolver(definition) as Model.Resolver<K, A, Id, F | Model.TimeoutErrorOf<T>>
  }
}

/**
 * The options of {@link counter}: a name and a key codec as for {@link make}, the time to live a
 * counter is created with, and the cache it lives in.
 *
 * @example
 * ```ts
 * import { CacheKey, type Keyspace } from "effect-cachekit"
 *
 * const options: Keyspace.CounterOptions<string> = { name: "hits", key: CacheKey.string, ttl: "1 day" }
 * ```
 *
 * @since 0.4.0
 * @category models
 */
export interface CounterOptions<K, Id = Cache.Cache> {
  /** Letters, digits, `_`, `-` and `.`; no `:`. */
  readonly name: string
  readonly key: CacheKey.CacheKey<K>
  /**
   * The time to live a counter is created with (its first increment); later increments keep it, as
   * Redis's `INCRBY` does. Defaults to the cache's `defaultTtl`.
   */
  readonly ttl?: Duration.DurationInput | undefined
  /** The cache to use when a program has more than one; defaults to `Cache.Cache`. */
  readonly cache?: Context.Tag<Id, Cache.Service> | undefined
}

/**
 * A counter keyspace: integer counters under `"<namespace>:<name>:<key>"`, kept as plain decimal text
 * in the store (no envelope: Redis's own `INCRBY` on Redis), with `increment` (atomic for every client
 * of the store), `get` (the number), `expire` (a new ttl, the value kept) and `invalidate`. A value here is not a cached copy of anything:
 * no producer, grace, tags nor memory tier apply, and a two-layer cache keeps counters in its shared
 * tier only.
 *
 * @example
 * ```ts
 * import { CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Hits = Keyspace.counter({ name: "hits", key: CacheKey.string, ttl: "1 day" })
 * const counted: Keyspace.Counter<string> = Hits
 * ```
 *
 * @since 0.4.0
 * @category models
 */
export interface Counter<K, Id = Cache.Cache> extends Model.CounterDefinition<K, Id>, Model.CounterHandleMethods<K, Id> {}

/**
 * Makes a counter keyspace. Counters are a keyspace of their own kind rather than a flag on
 * {@link make}: their values are plain integers that the store adds to atomically (no envelope, no
 * value schema, no producer, grace or tags), so they get only the operations that make sense for them,
 * and `get` returns the number. Stores that keep counters say so (`CacheStore.Capabilities.increment`:
 * memory, Redis standalone and Cluster, the two-layer cache, memcached); others fail with a
 * `StoreError` of reason `"Unsupported"`. A key holding anything but an integer fails with reason
 * `"WrongType"`, and an increment past `Number.MAX_SAFE_INTEGER` either way with `"Overflow"`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Hits = Keyspace.counter({ name: "hits", key: CacheKey.string, ttl: "1 day" })
 *
 * const program = Effect.gen(function* () {
 *   yield* Hits.increment("/home")          // 1
 *   yield* Hits.increment("/home", 10)      // 11
 *   return yield* Hits.get("/home")         // Option.some(11)
 * }).pipe(Effect.provide(Cache.layerMemory()))
 * ```
 *
 * @since 0.4.0
 * @category constructors
 */
export const counter = <K, Id = Cache.Cache>(options: CounterOptions<K, Id>): Counter<K, Id> => {
  const cache = (options.cache ?? Cache.Cache) as unknown as Context.Tag<Id, Cache.Service>
  const keys = Keyspaces.make({ name: options.name, key: options.key, value: Schema.Number }, cache) as unknown as Model.Definition<K, number, Id, never>
  const definition: Model.CounterDefinition<K, Id> = {
    name: keys.name,
    cache,
    ttl: options.ttl === undefined ? undefined : Duration.decode(options.ttl),
    keys
  }
  return { ...definition, ...Operations.makeCounterHandle(definition) }
}
