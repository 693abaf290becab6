/**
 * The engine's data model: the compiled keyspace, the options of calls, the one table of operations
 * (as types), and the cache service interface derived from it. The public modules (`Cache.ts`,
 * `Keyspace.ts`) re-export these; nothing here imports them, so there is no import cycle.
 */
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import type * as Layer from "effect/Layer"
import type * as Schedule from "effect/Schedule"
import type * as Schema from "effect/Schema"
import type * as Option from "effect/Option"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type * as Request from "effect/Request"
import type * as RequestResolver from "effect/RequestResolver"
import type * as ParseResult from "effect/ParseResult"
import type { CodecError, InvalidKeyError, LockError, ProducerTimeoutError, StoreError } from "../CacheError.js"
import type * as CacheEvent from "../CacheEvent.js"
import type * as CacheLock from "../CacheLock.js"
import type * as CacheStore from "../CacheStore.js"

/** Which producer failures are cached, and for how long (see `Keyspace.Options.cacheFailure`). */
export interface CacheFailure<F, FI> {
  readonly schema: Schema.Schema<F, FI>
  readonly ttl: Duration.DurationInput
}

/**
 * A keyspace's cached failures, compiled: which producer failures are stored, for how long, and their
 * codec (through the keyspace's serializer).
 */
export interface FailurePolicy {
  /** The fingerprint failure entries carry (the failure schema's, distinct from the value's). */
  readonly fingerprint: string
  readonly ttl: Duration.Duration
  /** Whether a producer's typed failure is one to cache. */
  readonly matches: (failure: unknown) => boolean
  readonly encode: (failure: unknown) => Effect.Effect<string | Uint8Array, ParseResult.ParseError>
  /** Decodes a stored failure synchronously (one that needs async decoding is not served). */
  readonly decodeNow: (body: string | Uint8Array) => Either.Either<unknown, ParseResult.ParseError>
}

/**
 * A compiled keyspace: its name, key and value codecs ready to run, its fingerprint and its policy.
 * `X` is what its producers may fail with beyond their own errors: `ProducerTimeoutError` with a
 * `hardTimeout`, the cached failure's type with `cacheFailure`.
 */
export interface Definition<K, A, Id, X = never> {
  /** The keyspace name: entries live under `"<namespace>:<name>:"`. */
  readonly name: string
  /**
   * `"keyspace"`: one entry per key, under `"<namespace>:<name>:<segment>"`. `"single"`: one entry
   * (`Cache.memoize`), under `"<namespace>:<name>"`, which no keyspace key can equal.
   */
  readonly kind: "keyspace" | "single"
  /** The tag of the cache this keyspace uses. */
  readonly cache: Context.Tag<Id, Service>
  /** The structural fingerprint stored with every value (see `CacheSerializer.fingerprint`). */
  readonly fingerprint: string
  /** Whether stored bodies are text or bytes. */
  readonly format: "text" | "binary"
  /** Encodes a key into its segment. */
  readonly encodeKey: (key: K) => Either.Either<string, ParseResult.ParseError>
  /** Encodes and serializes a value into the body of an entry (without the header). */
  readonly encodeValue: (value: A) => Effect.Effect<string | Uint8Array, ParseResult.ParseError>
  /** Deserializes and decodes a body through the Effect decoder (for schemas that need async work). */
  readonly decodeValue: (body: string | Uint8Array) => Effect.Effect<A, ParseResult.ParseError>
  /**
   * Deserializes and decodes a body synchronously; a schema that needs async work fails with an
   * issue for which `needsAsync` holds, and is decoded with `decodeValue` instead.
   */
  readonly decodeValueNow: (body: string | Uint8Array) => Either.Either<A, ParseResult.ParseError>
  /** The time to live of a value; `undefined` defers to the cache's default. */
  readonly ttl: ((value: A) => Duration.DurationInput) | undefined
  /** Values for which this returns `true` are returned to the caller but not cached. */
  readonly skip: ((value: A) => boolean) | undefined
  /** How long an entry is kept stale past its ttl, for `getOrSet` to serve when its producer fails (0: none). */
  readonly graceMillis: number
  /** How long a stale value is served after a failed producer before the producer runs again. */
  readonly graceBackoffMillis: number
  /** With a stale value, how long a caller waits for the producer before it gets the stale value. */
  readonly softTimeout: Duration.Duration | undefined
  /** Where a two-layer cache keeps the entries: memory and shared store, memory only, shared store only. */
  readonly tier: "local" | "shared" | "both"
  /** Runs after a producer of this keyspace ran (its value stored), with the cache in context. */
  readonly onProduced: ((key: K, value: A) => Effect.Effect<void, unknown, Id>) | undefined
  /** How long a caller waits for the producer (on the Clock) before it fails with `ProducerTimeoutError`. */
  readonly hardTimeout: Duration.Duration | undefined
  /** The fraction of the ttl (0–1) after which a hit also refreshes the entry in the background. */
  readonly eagerRefresh: number | undefined
  /** Which producer failures are cached, if any. */
  readonly failure: FailurePolicy | undefined
  /** The tags of an entry, from its key and value. */
  readonly tags: ((key: K, value: A) => Iterable<string>) | undefined
  /** The key fields each entry is tagged by, for `invalidateWhere` (sorted; at most 4). */
  readonly keyTags: ReadonlyArray<string> | undefined
  /** Compiles a `cacheFailure` policy through the keyspace's serializer (for a call's own). */
  readonly compileFailure: (policy: CacheFailure<unknown, unknown>) => FailurePolicy
  /** `""` for the keyspace itself; a call's own policy (`eagerRefresh`, `cacheFailure`) reads apart from it. */
  readonly variant: string
  /** Type-level only: the errors `X` its `getOrSet` adds to the producer's. */
  readonly "~producerErrors"?: X
}

/** The error a hard timeout adds: none unless one may be set (`T` is the option's type). */
export type TimeoutErrorOf<T> = [T] extends [undefined] ? never : ProducerTimeoutError

/** A value read with what its entry says of it (`getStale`). */
export interface Found<A> {
  readonly value: A
  /** Past its ttl, within its grace: `get` would not return it. */
  readonly isStale: boolean
  /** How long ago it was written (from its version: on the store's clock). */
  readonly age: Duration.Duration
}

/** Per-write options. */
export interface WriteOptions<A> {
  /** Overrides the keyspace's time to live for this write. */
  readonly ttl?: Duration.DurationInput | ((value: A) => Duration.DurationInput) | undefined
  /**
   * Overrides the keyspace's grace for this write: how long the entry is kept stale past its ttl, or
   * a function of the value (an HTTP response's own `stale-while-revalidate` window, say).
   */
  readonly grace?: Duration.DurationInput | ((value: A) => Duration.DurationInput) | undefined
  /** Tags for this write, besides the keyspace's (see `Cache.invalidateTags`). */
  readonly tags?: Iterable<string> | undefined
}

/**
 * Per-call options of `getOrSet` and `memoize`; `M` is the lock mode the call may ask for, `T` the
 * type of its `hardTimeout` (`undefined`: none, so no `ProducerTimeoutError`).
 */
export interface GetOrSetOptions<
  A,
  M extends CacheLock.Mode = CacheLock.Mode,
  T extends Duration.DurationInput | undefined = Duration.DurationInput | undefined,
  F = never,
  FI = never
> extends WriteOptions<A> {
  /** `false` skips the cache read and always runs the producer (aiocache's `cache_read`). Default `true`. */
  readonly cacheRead?: boolean | undefined
  /** `false` returns the produced value without storing it (aiocache's `cache_write`). Default `true`. */
  readonly cacheWrite?: boolean | undefined
  /** Values for which this returns `true` are returned but not cached; overrides the keyspace's `skip`. */
  readonly skip?: ((value: A) => boolean) | undefined
  /**
   * Runs after this call's producer ran and its value was stored (after the keyspace's own
   * `onProduced`), once the callers have the value: for side effects such as warming a related key.
   * A failure is logged and changes nothing else. Not run when the value came from the cache.
   */
  readonly onProduced?: ((value: A) => Effect.Effect<void, unknown>) | undefined
  /**
   * What a caller does when another instance holds the key's lock past the wait limit:
   * `"at-least-once"` (default) runs the producer itself; `"at-most-once"` fails with a `LockError`.
   * Only matters when a `CacheLock` is in context.
   */
  readonly lockMode?: M | undefined
  /** Overrides the cache's `lock.timeout` for this call. */
  readonly lockTimeout?: Duration.DurationInput | undefined
  /** Overrides the keyspace's `softTimeout` for this call. */
  readonly softTimeout?: Duration.DurationInput | undefined
  /**
   * Overrides the keyspace's `hardTimeout` for this call: after this long (on the Clock) the caller
   * gets the stale value if there is one, else fails with `ProducerTimeoutError`.
   */
  readonly hardTimeout?: T
  /**
   * Overrides the keyspace's `eagerRefresh` for this call (a fraction of the ttl, strictly between 0
   * and 1): a hit past it answers and refreshes the entry in the background.
   */
  readonly eagerRefresh?: number | undefined
  /**
   * Caches this call's producer failures that `schema` accepts, for `ttl` (instead of the keyspace's
   * `cacheFailure`); a cached failure is served only to calls with the same policy (the same schema
   * and serializer), and its type `F` is in the call's error channel.
   */
  readonly cacheFailure?: CacheFailure<F, FI> | undefined
}

/**
 * Negative caching for `getOrSetMany`: a key its producer did not return is stored as an "absent"
 * marker for `ttl`, so later batches with this option answer `None` for it without asking the producer.
 */
export interface CacheAbsent {
  readonly ttl: Duration.DurationInput
}

/**
 * Per-call options of `getOrSetMany` and `memoizeMany`: the write options (`ttl`, `grace`, `tags`,
 * for every value it stores) and the ones of `getOrSet` that apply to a batch; `T` is the type of its
 * `hardTimeout`. `cacheRead`, `lockMode`, `cacheFailure` and `onProduced` are `getOrSet`'s only.
 */
export interface GetOrSetManyOptions<
  A,
  T extends Duration.DurationInput | undefined = Duration.DurationInput | undefined
> extends WriteOptions<A> {
  /** `false` returns the produced values without storing them. Default `true`. */
  readonly cacheWrite?: boolean | undefined
  /** Values for which this returns `true` are returned but not cached; overrides the keyspace's `skip`. */
  readonly skip?: ((value: A) => boolean) | undefined
  /** Overrides the cache's `lock.timeout`: how long the batch waits for keys another instance produces. */
  readonly lockTimeout?: Duration.DurationInput | undefined
  /**
   * Overrides the keyspace's `hardTimeout`: after this long (on the Clock) the batch stops waiting for
   * its producer; keys with a stale value get it, and if one has none the batch fails with
   * `ProducerTimeoutError`.
   */
  readonly hardTimeout?: T
  /**
   * Overrides the keyspace's `softTimeout`: once the batch has waited this long (on the Clock) and
   * every key it still waits for has a stale value within grace, it answers them with their stale
   * values; the producer goes on in the background and stores its values. Adds no error.
   */
  readonly softTimeout?: Duration.DurationInput | undefined
  /**
   * Overrides the keyspace's `eagerRefresh` (a fraction of the ttl, strictly between 0 and 1): keys
   * found fresh but past that point are answered at once, and refreshed in the background by one
   * producer call for all of them.
   */
  readonly eagerRefresh?: number | undefined
  /** Stores an "absent" marker for the keys the producer did not return, for `ttl` (see {@link CacheAbsent}). */
  readonly cacheAbsent?: CacheAbsent | undefined
}

/** What `getOrSetMany` asks for the missing keys: `[key, value]` pairs, for some or all of them. */
export type ProduceMissing<K, A, E, R> = (missing: ReadonlyArray<K>) => Effect.Effect<Iterable<readonly [K, A]>, E, R>

/** A call's options as the engine takes them, whatever its type parameters. */
export type CallOptions<A> = GetOrSetOptions<A, CacheLock.Mode, Duration.DurationInput | undefined, any, any>

/** Options of `warmUp`. */
export interface WarmUpOptions {
  /**
   * The longest the layer holds up the program's start (on the Clock); what is left then completes in
   * the background. Default: until every key is done.
   */
  readonly timeout?: Duration.DurationInput | undefined
  /** How many keys are produced at once. Default 16. */
  readonly concurrency?: number | undefined
}

/** Options of `refreshEvery`: `getOrSet`'s, but it always runs the producer, at least once. */
export interface RefreshOptions<A>
  extends Omit<GetOrSetOptions<A, "at-least-once">, "cacheRead" | "lockMode" | "eagerRefresh" | "cacheFailure">
{}

/** `warmUp` on a keyspace `K`, `A` whose cache is `Id`. */
export type WarmUp<K, A, Id> = <E, R>(
  keys: Iterable<K>,
  produce: (key: K) => Effect.Effect<A, E, R>,
  options?: WarmUpOptions
) => Layer.Layer<never, never, Id | R>

/** `refreshEvery` on a keyspace `K`, `A` whose cache is `Id`. */
export type RefreshEvery<K, A, Id> = <E, R>(
  key: K,
  produce: Effect.Effect<A, E, R>,
  every: Duration.DurationInput | Schedule.Schedule<unknown>,
  options?: RefreshOptions<A>
) => Layer.Layer<never, never, Id | R>

/** The lock error a `getOrSet` call may fail with: none unless its mode may be `"at-most-once"`. */
export type LockErrorOf<M extends CacheLock.Mode> = "at-most-once" extends M ? LockError : never

/**
 * The direct operations of a keyspace with keys `K` and values `A`: the one table every other form
 * (the service methods, the `Cache.*` accessors, the keyspace handle) is derived from.
 */
export interface Operations<K, A> {
  /** `Some` on a hit; `None` on a miss or on a stored value that cannot be decoded (dropped and counted). */
  readonly get: (key: K) => Effect.Effect<Option.Option<A>, InvalidKeyError | StoreError>
  /**
   * `get`, stale entries included (past their ttl, within their grace), each with whether it is stale
   * and its age: for a caller that prefers an old value to none.
   */
  readonly getStale: (key: K) => Effect.Effect<Option.Option<Found<A>>, InvalidKeyError | StoreError>
  /** One result per key, in order, from one batch read. */
  readonly getMany: (keys: Iterable<K>) => Effect.Effect<Array<Option.Option<A>>, InvalidKeyError | StoreError>
  /** Stores a value, for the keyspace's time to live unless `options.ttl` says otherwise. */
  readonly set: (key: K, value: A, options?: WriteOptions<A>) => Effect.Effect<void, InvalidKeyError | StoreError | CodecError>
  /** One batch write. */
  readonly setMany: (
    entries: Iterable<readonly [K, A]>,
    options?: WriteOptions<A>
  ) => Effect.Effect<void, InvalidKeyError | StoreError | CodecError>
  /**
   * Stores the value only if the key holds no entry; `true` when it stored. An entry still stored but
   * not servable (stale within grace, invalidated by a tag, a cached failure) counts as one until it
   * expires or is removed.
   */
  readonly add: (key: K, value: A, options?: WriteOptions<A>) => Effect.Effect<boolean, InvalidKeyError | StoreError | CodecError>
  /**
   * Whether the key holds an entry `get` would return: fresh, not a cached failure, not invalidated by
   * a tag (judged from its header, without decoding the value).
   */
  readonly has: (key: K) => Effect.Effect<boolean, InvalidKeyError | StoreError>
  /** Removes a key. */
  readonly invalidate: (key: K) => Effect.Effect<void, InvalidKeyError | StoreError>
  /** Removes many keys in one batch. */
  readonly invalidateMany: (keys: Iterable<K>) => Effect.Effect<void, InvalidKeyError | StoreError>
  /** Removes many keys in one batch, as `invalidateMany` does; returns how many entries were there to remove. */
  readonly deleteMany: (keys: Iterable<K>) => Effect.Effect<number, InvalidKeyError | StoreError>
  /**
   * How long the entry stays fresh: `Some` of the time left (`Duration.infinity` for an entry without
   * a ttl); `None` when the key holds no entry `get` would return (absent, past its ttl, a cached
   * failure, invalidated by a tag).
   */
  readonly remainingTtl: (key: K) => Effect.Effect<Option.Option<Duration.Duration>, InvalidKeyError | StoreError>
  /**
   * Gives the entry a new time to live from now (`Duration.infinity`: no expiry; zero or less: removes
   * it), keeping its grace; `true` when the key held an entry `get` would return, `false` (and nothing
   * changes) otherwise, or when the entry was written again meanwhile. A write: a two-layer cache's
   * other instances drop their copies.
   */
  readonly expire: (key: K, ttl: Duration.DurationInput) => Effect.Effect<boolean, InvalidKeyError | StoreError>
  /** Removes every entry of the keyspace; returns how many. */
  readonly clearKeyspace: () => Effect.Effect<number, StoreError>
  /**
   * Invalidates every entry whose key has these values in the given fields (fields the keyspace names
   * in `keyTags`): one tag invalidation, however many entries, never a scan.
   */
  readonly invalidateWhere: (where: Partial<K>) => Effect.Effect<void, InvalidKeyError | StoreError>
}

/** The name of a direct operation. */
export type Operation = keyof Operations<unknown, unknown>

/** A direct operation as the service offers it: the keyspace first. */
export type ServiceMethod<Op extends Operation> = <K, A, Id>(
  keyspace: Definition<K, A, Id, unknown>,
  ...args: Parameters<Operations<K, A>[Op]>
) => ReturnType<Operations<K, A>[Op]>

/** A direct operation as an accessor offers it: the keyspace first, its cache from context. */
export type AccessorOf<Op extends Operation> = <K, A, Id>(
  keyspace: Definition<K, A, Id, unknown>,
  ...args: Parameters<Operations<K, A>[Op]>
) => WithRequirement<ReturnType<Operations<K, A>[Op]>, Id>

/** An effect that also needs `Id`. */
export type WithRequirement<T, Id> = T extends Effect.Effect<infer X, infer E, infer R> ? Effect.Effect<X, E, R | Id> : never

/**
 * `getOrSet` on a keyspace `K`, `A` whose effects also need `Id` and whose producers may also fail with
 * `X`.
 */
export type GetOrSet<K, A, Id, X = never> = <
  E,
  R,
  M extends CacheLock.Mode = "at-least-once",
  T extends Duration.DurationInput | undefined = undefined,
  F = never,
  FI = never
>(
  key: K,
  produce: Effect.Effect<A, E, R>,
  options?: GetOrSetOptions<A, M, T, F, FI>
) => Effect.Effect<A, E | X | F | LockErrorOf<M> | TimeoutErrorOf<T>, R | Id>

/** `getOrSet` on any keyspace, its cache read from context (`Cache.getOrSet`). */
export type GetOrSetAccessor = <
  K,
  A,
  Id,
  X,
  E,
  R,
  M extends CacheLock.Mode = "at-least-once",
  T extends Duration.DurationInput | undefined = undefined,
  F = never,
  FI = never
>(
  keyspace: Definition<K, A, Id, X>,
  key: K,
  produce: Effect.Effect<A, E, R>,
  options?: GetOrSetOptions<A, M, T, F, FI>
) => Effect.Effect<A, E | X | F | LockErrorOf<M> | TimeoutErrorOf<T>, R | Id>

/** `memoize` on a keyspace `K`, `A` whose effects also need `Id` (and may also fail with `X`). */
export type Memoize<K, A, Id, X = never> = <
  E,
  R,
  M extends CacheLock.Mode = "at-least-once",
  T extends Duration.DurationInput | undefined = undefined,
  F = never,
  FI = never
>(
  f: (key: K) => Effect.Effect<A, E, R>,
  options?: GetOrSetOptions<A, M, T, F, FI>
) => (key: K) => Effect.Effect<A, E | X | F | LockErrorOf<M> | TimeoutErrorOf<T>, R | Id>

/**
 * `getOrSetMany` on a keyspace `K`, `A` whose effects also need `Id` (and whose producers may also fail
 * with `X`): one result per key, in order, `None` where the producer returned nothing for the key.
 */
export type GetOrSetMany<K, A, Id, X = never> = <E, R, T extends Duration.DurationInput | undefined = undefined>(
  keys: Iterable<K>,
  produceMissing: ProduceMissing<K, A, E, R>,
  options?: GetOrSetManyOptions<A, T>
) => Effect.Effect<Array<Option.Option<A>>, E | X | TimeoutErrorOf<T>, R | Id>

/** `getOrSetMany` on any keyspace, its cache read from context (`Cache.getOrSetMany`). */
export type GetOrSetManyAccessor = <K, A, Id, X, E, R, T extends Duration.DurationInput | undefined = undefined>(
  keyspace: Definition<K, A, Id, X>,
  keys: Iterable<K>,
  produceMissing: ProduceMissing<K, A, E, R>,
  options?: GetOrSetManyOptions<A, T>
) => Effect.Effect<Array<Option.Option<A>>, E | X | TimeoutErrorOf<T>, R | Id>

/**
 * `memoizeMany` on a keyspace: a batch function of keys whose results are cached per key. The memoized
 * function has `f`'s shape: it answers the `[key, value]` pairs of the keys it found (each distinct key
 * once, in the order asked).
 */
export type MemoizeMany<K, A, Id, X = never> = <E, R, T extends Duration.DurationInput | undefined = undefined>(
  f: ProduceMissing<K, A, E, R>,
  options?: GetOrSetManyOptions<A, T>
) => (keys: Iterable<K>) => Effect.Effect<Array<readonly [K, A]>, E | X | TimeoutErrorOf<T>, R | Id>

/**
 * Options of `resolver`: how a request's key is derived (`key`), and the write options and switches of
 * `getOrSetMany` that apply to every value stored.
 */
export interface ResolverOptions<K, A, Req> extends WriteOptions<A> {
  /** The key of a request in the keyspace: requests with the same key share one entry. */
  readonly key: (request: Req) => K
  /** `false` answers from the cache but stores nothing. Default `true`. */
  readonly cacheWrite?: boolean | undefined
  /** Values for which this returns `true` are answered but not cached; overrides the keyspace's `skip`. */
  readonly skip?: ((value: A) => boolean) | undefined
  /** Overrides the cache's `lock.timeout`: how long a batch waits for keys another instance produces. */
  readonly lockTimeout?: Duration.DurationInput | undefined
  /** Overrides the keyspace's `softTimeout` for every batch (see `GetOrSetManyOptions.softTimeout`). */
  readonly softTimeout?: Duration.DurationInput | undefined
  /** Overrides the keyspace's `eagerRefresh` for every batch (see `GetOrSetManyOptions.eagerRefresh`). */
  readonly eagerRefresh?: number | undefined
}

/**
 * What `resolver` asks of a request type: its success type is the keyspace's value type, and its error
 * type admits what the keyspace's producers may add (`X`: `ProducerTimeoutError` with a `hardTimeout`,
 * the cached failure's type with `cacheFailure`), since a request can only fail with its own errors.
 */
export type ResolverFit<A, X, Req extends Request.Request<any, any>> = [X] extends [Request.Request.Error<Req>]
  ? [A] extends [Request.Request.Success<Req>] ? unknown
  : { readonly "the request's success type must be the keyspace's value type": A }
  : { readonly "the request's error type must include the keyspace's producer errors": X }

/**
 * `resolver` on a keyspace `K`, `A` whose cache is `Id`: wraps a `RequestResolver` so that the requests
 * of a batch are answered from the cache first and only the misses reach it.
 */
export type Resolver<K, A, Id, X = never> = <Req extends Request.Request<A, any>, R>(
  inner: RequestResolver.RequestResolver<Req, R>,
  options: ResolverOptions<K, A, Req> & ResolverFit<A, X, Req>
) => RequestResolver.RequestResolver<Req, R | Id>

/**
 * A counter keyspace, compiled: integer counters kept as plain decimal text (no envelope), under
 * `"<namespace>:<name>:<segment>"`. `keys` is the keyspace its keys are made and validated by.
 */
export interface CounterDefinition<K, Id> {
  readonly name: string
  readonly cache: Context.Tag<Id, Service>
  /** The time to live a counter is created with (later increments keep it); else the cache's `defaultTtl`. */
  readonly ttl: Duration.Duration | undefined
  readonly keys: Definition<K, number, Id, never>
}

/** The operations of a counter keyspace with keys `K`: one table, as for keyspaces. */
export interface CounterOperations<K> {
  /** The counter's value; `None` when there is none. A key holding anything but a counter: `"WrongType"`. */
  readonly get: (key: K) => Effect.Effect<Option.Option<number>, InvalidKeyError | StoreError>
  /**
   * Adds `by` (default 1; negative to decrease) atomically and answers the new value; an absent counter
   * starts from 0 and is created with the keyspace's ttl.
   */
  readonly increment: (key: K, by?: number) => Effect.Effect<number, InvalidKeyError | StoreError | CodecError>
  /** Removes the counter. */
  readonly invalidate: (key: K) => Effect.Effect<void, InvalidKeyError | StoreError>
  /**
   * Gives the counter a new time to live from now (`Duration.infinity`: none; zero or less: removes
   * it); its value is kept. `false` when there is no counter under the key.
   */
  readonly expire: (key: K, ttl: Duration.DurationInput) => Effect.Effect<boolean, InvalidKeyError | StoreError>
}

/** The name of a counter operation. */
export type CounterOperation = keyof CounterOperations<unknown>

/** A counter operation as the service offers it: the counter keyspace first. */
export type CounterMethod<Op extends CounterOperation> = <K, Id>(
  counter: CounterDefinition<K, Id>,
  ...args: Parameters<CounterOperations<K>[Op]>
) => ReturnType<CounterOperations<K>[Op]>

/** A counter operation as an accessor offers it: the counter keyspace first, its cache from context. */
export type CounterAccessorOf<Op extends CounterOperation> = <K, Id>(
  counter: CounterDefinition<K, Id>,
  ...args: Parameters<CounterOperations<K>[Op]>
) => WithRequirement<ReturnType<CounterOperations<K>[Op]>, Id>

/** A counter keyspace's handle methods: the counter table's, with the cache from context. */
export type CounterHandleMethods<K, Id> = {
  readonly [Op in CounterOperation]: (...args: Parameters<CounterOperations<K>[Op]>) => WithRequirement<ReturnType<CounterOperations<K>[Op]>, Id>
}

/** The service methods of the direct operations. */
export type ServiceMethods = { readonly [Op in Operation]: ServiceMethod<Op> }

/** The cache service. Every operation takes the keyspace it works in. */
export interface Service extends ServiceMethods {
  readonly namespace: string
  readonly store: CacheStore.CacheStore
  readonly defaultTtl: Duration.Duration | undefined
  readonly timeout: Duration.Duration
  readonly maxKeyLength: number
  /** The operations of counter keyspaces (`Keyspace.counter`). */
  readonly counters: { readonly [Op in CounterOperation]: CounterMethod<Op> }
  /** Keys whose producer is running in this process right now. */
  readonly inFlight: Effect.Effect<number>
  /**
   * The cache's events, from the moment the stream starts; each run of the stream is a subscriber of
   * its own, with a buffer of 4,096 events (events that do not fit are dropped and counted).
   */
  readonly events: Stream.Stream<CacheEvent.CacheEvent>
  /**
   * A subscriber's queue of the cache's events, registered when this returns (so no event after it
   * is missed), until the scope closes; `bufferSize` events at most wait in it (default 4,096, also
   * for a size that is not a finite number; at least 1).
   */
  readonly subscribe: (options?: { readonly bufferSize?: number | undefined }) => Effect.Effect<Queue.Dequeue<CacheEvent.CacheEvent>, never, Scope.Scope>
  /** Every keyspace's counts in this cache since it was made, by keyspace name. */
  readonly stats: Effect.Effect<ReadonlyArray<CacheEvent.KeyspaceStats>>
  /** Removes every entry of the namespace (internal keys excepted); returns how many. */
  readonly clear: Effect.Effect<number, StoreError>
  /**
   * Invalidates every entry carrying one of `tags` (written before this call), in every keyspace of
   * the cache: one write per tag, however many entries carry it.
   */
  readonly invalidateTags: (tags: Iterable<string>) => Effect.Effect<void, InvalidKeyError | StoreError>
  /**
   * Claims `occasion` for a key across every instance sharing the store: `true` for exactly one
   * caller per key and occasion within `ttl` (an atomic insert into an internal key), `false` for the
   * others. `refreshEvery` claims each period this way.
   */
  readonly claim: <K, A, Id>(
    keyspace: Definition<K, A, Id, unknown>,
    key: K,
    occasion: string,
    ttl: Duration.DurationInput
  ) => Effect.Effect<boolean, InvalidKeyError | StoreError>
  /** One result per key, in order: the cached values, and the missing keys' from one producer call. */
  readonly getOrSetMany: <K, A, Id, X, E, R, T extends Duration.DurationInput | undefined = undefined>(
    keyspace: Definition<K, A, Id, X>,
    keys: Iterable<K>,
    produceMissing: ProduceMissing<K, A, E, R>,
    options?: GetOrSetManyOptions<A, T>
  ) => Effect.Effect<Array<Option.Option<A>>, E | X | TimeoutErrorOf<T>, R>
  readonly getOrSet: <
    K,
    A,
    Id,
    X,
    E,
    R,
    M extends CacheLock.Mode = "at-least-once",
    T extends Duration.DurationInput | undefined = undefined,
    F = never,
    FI = never
  >(
    keyspace: Definition<K, A, Id, X>,
    key: K,
    produce: Effect.Effect<A, E, R>,
    options?: GetOrSetOptions<A, M, T, F, FI>
  ) => Effect.Effect<A, E | X | F | LockErrorOf<M> | TimeoutErrorOf<T>, R>
}

/** The keyspace handle's direct operations: the table's, with the cache from context. */
export type HandleMethods<K, A, Id> = {
  readonly [Op in keyof Operations<K, A> as Op extends "clearKeyspace" ? never : Op]: (
    ...args: Parameters<Operations<K, A>[Op]>
  ) => WithRequirement<ReturnType<Operations<K, A>[Op]>, Id>
}

/**
 * What a memoized function of several arguments (`memoizeFunction`) or method (`memoizeMethod`) adds to
 * `getOrSet`'s options: its `name` (the tag of every entry it writes, for `invalidateAll`) and how its
 * arguments make a key (`key`, given the arguments in `f`'s order; those it does not read are left out).
 */
export interface MemoizeFunctionOptions<
  Args extends ReadonlyArray<unknown>,
  K,
  A,
  M extends CacheLock.Mode = CacheLock.Mode,
  T extends Duration.DurationInput | undefined = Duration.DurationInput | undefined,
  F = never,
  FI = never
> extends GetOrSetOptions<A, M, T, F, FI> {
  /**
   * Names the function within its keyspace (letters, digits, `_`, `-` and `.`): every entry it writes
   * carries the tag `"memoize:<keyspace>:<name>"`, which `invalidateAll` invalidates. Stable across
   * processes and restarts, as a function's identity is not.
   */
  readonly name: string
  /** The key of a call, from its arguments: the arguments it ignores are not part of the key. */
  readonly key: (...args: Args) => K
}

/**
 * `MemoizeFunctionOptions` for a method: `key` gets the receiver first, as `self`, then the arguments;
 * `name` as for `memoizeFunction` (the tag `"memoize:<keyspace>:<name>"` of every entry it writes).
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
> extends MemoizeFunctionOptions<readonly [self: Self, ...args: Args], K, A, M, T, F, FI> {}

/** `invalidateWhere` on a memoized function, for keys that are records (`CacheKey.struct`): none otherwise. */
export type MemoizedWhere<K, Id> = [K] extends [ReadonlyArray<unknown>] ? unknown
  : [K] extends [object] ? {
      /**
       * The keyspace's `invalidateWhere`: invalidates every entry of the keyspace whose key has these
       * values in these fields (fields named in its `keyTags`), this function's and any other writer's.
       */
      readonly invalidateWhere: (where: Partial<K>) => Effect.Effect<void, InvalidKeyError | StoreError, Id>
    }
  : unknown

/** What a memoized function or method carries besides its call: its tag and its invalidations. */
export interface MemoizedControls<Args extends ReadonlyArray<unknown>, Id> {
  /** The tag every entry it writes carries (`"memoize:<keyspace>:<name>"`). */
  readonly tag: string
  /** Removes the entry of these arguments (the key `key` makes of them). */
  readonly invalidate: (...args: Args) => Effect.Effect<void, InvalidKeyError | StoreError, Id>
  /**
   * Invalidates every entry this function wrote (its tag), in one tag invalidation; the keyspace's
   * other entries are kept. Other instances see it as they see any `Cache.invalidateTags`.
   */
  readonly invalidateAll: Effect.Effect<void, StoreError, Id>
}

/** A memoized function of several arguments: `f`'s parameters, `getOrSet`'s error channel, and its controls. */
export type MemoizedFunction<Args extends ReadonlyArray<unknown>, K, A, E, R, Id> =
  & ((...args: Args) => Effect.Effect<A, E, R>)
  & MemoizedControls<Args, Id>
  & MemoizedWhere<K, Id>

/**
 * A memoized method: a function of `this: Self` to put on a class, keyed by its receiver; its
 * `invalidate` takes the receiver first.
 */
export type MemoizedMethod<Self, Args extends ReadonlyArray<unknown>, K, A, E, R, Id> =
  & ((this: Self, ...args: Args) => Effect.Effect<A, E, R>)
  & MemoizedControls<readonly [self: Self, ...args: Args], Id>
  & MemoizedWhere<K, Id>

/**
 * `memoizeFunction` on a keyspace `K`, `A` whose effects also need `Id` (and may also fail with `X`):
 * `memoize` for a function of several arguments, keyed by `options.key`.
 */
export type MemoizeFunction<K, A, Id, X = never> = <
  Args extends ReadonlyArray<unknown>,
  E,
  R,
  M extends CacheLock.Mode = "at-least-once",
  T extends Duration.DurationInput | undefined = undefined,
  F = never,
  FI = never
>(
  f: (...args: Args) => Effect.Effect<A, E, R>,
  options: MemoizeFunctionOptions<Args, K, A, M, T, F, FI>
) => MemoizedFunction<Args, K, A, E | X | F | LockErrorOf<M> | TimeoutErrorOf<T>, R | Id, Id>

/**
 * `memoizeMethod` on a keyspace `K`, `A` whose effects also need `Id` (and may also fail with `X`): a
 * method (a function of `this: Self`) memoized with its receiver in the key.
 */
export type MemoizeMethod<K, A, Id, X = never> = <
  Self,
  Args extends ReadonlyArray<unknown>,
  E,
  R,
  M extends CacheLock.Mode = "at-least-once",
  T extends Duration.DurationInput | undefined = undefined,
  F = never,
  FI = never
>(
  method: (this: Self, ...args: Args) => Effect.Effect<A, E, R>,
  options: MemoizeMethodOptions<Self, Args, K, A, M, T, F, FI>
) => MemoizedMethod<Self, Args, K, A, E | X | F | LockErrorOf<M> | TimeoutErrorOf<T>, R | Id, Id>
