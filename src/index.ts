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
 * The backend port and the no-op store.
 *
 * @since 0.1.0
 */
export * as CacheStore from "./CacheStore.js"

/**
 * Typed regions of a cache.
 *
 * @since 0.1.0
 */
export * as Keyspace from "./Keyspace.js"

/**
 * The bounded in-process store.
 *
 * @since 0.1.0
 */
export * as MemoryStore from "./MemoryStore.js"

/**
 * The ioredis client as a scoped service.
 *
 * @since 0.1.0
 */
export * as Redis from "./Redis.js"

/**
 * The Redis store.
 *
 * @since 0.1.0
 */
export * as RedisStore from "./RedisStore.js"

/**
 * The lock port and its in-process layer.
 *
 * @since 0.1.0
 */
export * as CacheLock from "./CacheLock.js"

/**
 * The distributed lock over Redis.
 *
 * @since 0.1.0
 */
export * as RedisLock from "./RedisLock.js"
