/**
 * effect-cachekit for any JavaScript runtime: everything but the Redis and memcached backends. Every
 * module this entry reaches imports no `node:` module and uses no Node global (`npm run arch:check`
 * enforces it), so an Effect program on Bun, Deno, a browser or a Worker imports the memory cache,
 * keyspaces, key codecs, serializers, the KeyValueStore bridge and HTTP caching from
 * `"effect-cachekit/portable"` without loading a Redis client. The modules are the main entry's:
 * `Cache` here is the main `Cache` without `layerRedis`, `layerTiered`, `layerConfig` and
 * `layerFromEnv` (which name the Redis backend).
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Cache, CacheKey, Keyspace } from "effect-cachekit/portable"
 *
 * const Greetings = Keyspace.make({ name: "greetings", key: CacheKey.string, value: Schema.String, ttl: "1 hour" })
 * const program = Greetings.getOrSet("en", Effect.succeed("hello")).pipe(Effect.provide(Cache.layerMemory({ capacity: 1_000 })))
 * ```
 *
 * @since 0.3.0
 */

/**
 * The Cache service, its memory layer, accessors and memoize (the main `Cache` without the Redis layers).
 *
 * @since 0.3.0
 */
export * as Cache from "./CacheCore.js"

/**
 * The typed error taxonomy.
 *
 * @since 0.3.0
 */
export * as CacheError from "./CacheError.js"

/**
 * The events a cache tells its subscribers (`Cache.events`) and its per-keyspace stats.
 *
 * @since 0.3.0
 */
export * as CacheEvent from "./CacheEvent.js"

/**
 * Key codecs.
 *
 * @since 0.3.0
 */
export * as CacheKey from "./CacheKey.js"

/**
 * Value serializers and schema fingerprints.
 *
 * @since 0.3.0
 */
export * as CacheSerializer from "./CacheSerializer.js"

/**
 * The stored form of an entry: the envelope every store holds.
 *
 * @since 0.3.0
 */
export * as CacheEntry from "./CacheEntry.js"

/**
 * The store port, its capabilities, the no-op store and `fromKeyValueStore`.
 *
 * @since 0.3.0
 */
export * as CacheStore from "./CacheStore.js"

/**
 * The lock port.
 *
 * @since 0.3.0
 */
export * as CacheLock from "./CacheLock.js"

/**
 * The invalidation bus port.
 *
 * @since 0.3.0
 */
export * as CacheBus from "./CacheBus.js"

/**
 * Typed regions of a cache.
 *
 * @since 0.3.0
 */
export * as Keyspace from "./Keyspace.js"

/**
 * `@effect/platform`'s KeyValueStore both ways.
 *
 * @since 0.3.0
 */
export * as KeyValue from "./KeyValue.js"

/**
 * The bounded in-process store.
 *
 * @since 0.3.0
 */
export * as MemoryStore from "./CacheStore/Memory.js"

/**
 * A store that records every operation and entry, for assertions in tests.
 *
 * @since 0.3.0
 */
export * as RecordingStore from "./CacheStore/Recording.js"

/**
 * The in-process lock.
 *
 * @since 0.3.0
 */
export * as MemoryLock from "./CacheLock/Memory.js"

/**
 * The two-layer store over a shared store and a bus of your own.
 *
 * @since 0.3.0
 */
export * as TieredStore from "./CacheStore/Tiered.js"

/**
 * HTTP response caching for @effect/platform apps.
 *
 * @since 0.3.0
 */
export * as HttpCache from "./HttpCache.js"
