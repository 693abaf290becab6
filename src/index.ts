/**
 * effect-cachekit: a functional cache toolkit for Effect. One namespace per module.
 *
 * @since 0.1.0
 */

/**
 * The Cache service, its layers and accessors.
 *
 * @since 0.1.0
 */
export * as Cache from "./Cache.js"

/**
 * The typed error taxonomy.
 *
 * @since 0.1.0
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
 * @since 0.1.0
 */
export * as CacheKey from "./CacheKey.js"

/**
 * Value serializers and schema fingerprints.
 *
 * @since 0.1.0
 */
export * as CacheSerializer from "./CacheSerializer.js"

/**
 * The stored form of an entry: the envelope every store holds.
 *
 * @since 0.2.0
 */
export * as CacheEntry from "./CacheEntry.js"

/**
 * The store port, its capabilities and the no-op store.
 *
 * @since 0.1.0
 */
export * as CacheStore from "./CacheStore.js"

/**
 * The lock port.
 *
 * @since 0.1.0
 */
export * as CacheLock from "./CacheLock.js"

/**
 * Typed regions of a cache.
 *
 * @since 0.1.0
 */
export * as Keyspace from "./Keyspace.js"

/**
 * `@effect/platform`'s KeyValueStore both ways: a cache as a KeyValueStore (and typed SchemaStore
 * views), and any KeyValueStore as the cache's store.
 *
 * @since 0.3.0
 */
export * as KeyValue from "./KeyValue.js"

/**
 * The ioredis client as a scoped service.
 *
 * @since 0.1.0
 */
export * as Redis from "./Redis.js"

/**
 * The bounded in-process store (`effect-cachekit/CacheStore/Memory`).
 *
 * @since 0.1.0
 */
export * as MemoryStore from "./CacheStore/Memory.js"

/**
 * The Redis store, standalone or Cluster (`effect-cachekit/CacheStore/Redis`).
 *
 * @since 0.1.0
 */
export * as RedisStore from "./CacheStore/Redis.js"

/**
 * A store that records every operation and entry, for assertions in tests
 * (`effect-cachekit/CacheStore/Recording`).
 *
 * @since 0.2.0
 */
export * as RecordingStore from "./CacheStore/Recording.js"

/**
 * The in-process lock (`effect-cachekit/CacheLock/Memory`).
 *
 * @since 0.2.0
 */
export * as MemoryLock from "./CacheLock/Memory.js"

/**
 * The distributed lock over Redis (`effect-cachekit/CacheLock/Redis`).
 *
 * @since 0.1.0
 */
export * as RedisLock from "./CacheLock/Redis.js"

/**
 * The invalidation bus port of the two-layer cache.
 *
 * @since 0.3.0
 */
export * as CacheBus from "./CacheBus.js"

/**
 * The bus over Redis pub/sub (`effect-cachekit/CacheBus/Redis`).
 *
 * @since 0.3.0
 */
export * as RedisBus from "./CacheBus/Redis.js"

/**
 * The two-layer store: memory in front of a shared store, kept coherent by a bus (`effect-cachekit/CacheStore/Tiered`).
 *
 * @since 0.3.0
 */
export * as TieredStore from "./CacheStore/Tiered.js"

/**
 * HTTP response caching for @effect/platform apps (RFC 9111, ETag/304, Vary, Cache-Status,
 * stale-while-revalidate / stale-if-error) and a request-scoped cache.
 *
 * @since 0.3.0
 */
export * as HttpCache from "./HttpCache.js"
