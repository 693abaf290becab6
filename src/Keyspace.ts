/**
 * A keyspace is a typed region of a cache: a name, a key codec, a value schema and a policy (time to
 * live, what not to cache, the serializer). Its operations read the cache from context, so the same
 * keyspace runs on memory, Redis or a test layer.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import * as Cache from "./Cache.js"
import type { CodecError, InvalidKeyError, StoreError } from "./CacheError.js"
import * as Internal from "./internal/definition.js"

/**
 * The options of {@link make}.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { CacheKey, type Keyspace, type Cache } from "effect-cachekit"
 *
 * const options: Keyspace.Options<string, string, string, Cache.Cache> = { name: "greetings", key: CacheKey.string, value: Schema.String, ttl: "1 hour" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Options<K, A, I, Id> = Internal.Options<K, A, I, Id>

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
export type Definition<K, A, Id> = Internal.Definition<K, A, Id>

/**
 * A typed region of a cache, keys `K`, values `A`, served by the cache tagged `Id`.
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
export interface Keyspace<K, A, Id = Cache.Cache> extends Internal.Definition<K, A, Id> {
  /** `Some` on a hit; `None` on a miss or on a stored value that cannot be decoded (dropped and counted). */
  readonly get: (key: K) => Effect.Effect<Option.Option<A>, InvalidKeyError | StoreError, Id>
  /** One result per key, in order, from one batch read. */
  readonly getMany: (keys: Iterable<K>) => Effect.Effect<Array<Option.Option<A>>, InvalidKeyError | StoreError, Id>
  readonly set: (
    key: K,
    value: A,
    options?: Cache.WriteOptions<A>
  ) => Effect.Effect<void, InvalidKeyError | StoreError | CodecError, Id>
  /** One batch write. */
  readonly setMany: (
    entries: Iterable<readonly [K, A]>,
    options?: Cache.WriteOptions<A>
  ) => Effect.Effect<void, InvalidKeyError | StoreError | CodecError, Id>
  /** Stores the value only if the key has no live entry; `true` when it stored. */
  readonly add: (
    key: K,
    value: A,
    options?: Cache.WriteOptions<A>
  ) => Effect.Effect<boolean, InvalidKeyError | StoreError | CodecError, Id>
  readonly has: (key: K) => Effect.Effect<boolean, InvalidKeyError | StoreError, Id>
  readonly invalidate: (key: K) => Effect.Effect<void, InvalidKeyError | StoreError, Id>
  readonly invalidateMany: (keys: Iterable<K>) => Effect.Effect<void, InvalidKeyError | StoreError, Id>
  /** Removes every entry of this keyspace; returns how many. */
  readonly clear: Effect.Effect<number, StoreError, Id>
  /**
   * The cached value, or the producer's, stored on the way. At most one producer per key runs at a
   * time in the process, and across processes when a lock is in context; concurrent callers share its
   * outcome. Store failures fall back to the
   * producer, so the error channel is the producer's (plus `LockError` when the call asks for
   * `lockMode: "at-most-once"`).
   */
  readonly getOrSet: <E, R, const O extends Cache.GetOrSetOptions<A> = {}>(
    key: K,
    produce: Effect.Effect<A, E, R>,
    options?: O
  ) => Effect.Effect<A, E | Cache.LockErrorOf<O>, R | Id>
  /** An effectful function whose results are cached by argument, with `getOrSet`'s guarantees. */
  readonly memoize: <E, R, const O extends Cache.GetOrSetOptions<A> = {}>(
    f: (key: K) => Effect.Effect<A, E, R>,
    options?: O
  ) => (key: K) => Effect.Effect<A, E | Cache.LockErrorOf<O>, R | Id>
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
export const make = <K, A, I, Id = Cache.Cache>(options: Options<K, A, I, Id>): Keyspace<K, A, Id> => {
  const definition = Internal.make(options, Cache.Cache as unknown as Options<K, A, I, Id>["cache"] & {})
  const keyspace: Keyspace<K, A, Id> = {
    ...definition,
    get: (key) => Cache.get(definition, key),
    getMany: (keys) => Cache.getMany(definition, keys),
    set: (key, value, writeOptions) => Cache.set(definition, key, value, writeOptions),
    setMany: (entries, writeOptions) => Cache.setMany(definition, entries, writeOptions),
    add: (key, value, writeOptions) => Cache.add(definition, key, value, writeOptions),
    has: (key) => Cache.has(definition, key),
    invalidate: (key) => Cache.invalidate(definition, key),
    invalidateMany: (keys) => Cache.invalidateMany(definition, keys),
    clear: Cache.clearKeyspace(definition),
    getOrSet: (key, produce, getOrSetOptions) => Cache.getOrSet(definition, key, produce, getOrSetOptions),
    memoize: (f, getOrSetOptions) => (key) => Cache.getOrSet(definition, key, f(key), getOrSetOptions)
  }
  return keyspace
}
