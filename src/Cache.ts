/**
 * The Cache service: a namespace over a store, with a default time to live, a timeout on every
 * store operation and an in-process guard that runs at most one producer per key at a time (and one
 * per fleet when a lock is in context).
 *
 * Programs reach it through keyspaces (`Keyspace.make`) or the accessors here; they pick the backend
 * by providing a layer: `Cache.layerMemory`, `Cache.layerRedis`, `Cache.layer` over any store,
 * `Cache.layerConfig` (options as Effect `Config`s) or `Cache.layerFromEnv` (documented environment
 * variables).
 *
 * The service itself (its tag, `make`, `layer`, `layerMemory`, the accessors and `memoize`) lives in
 * `CacheCore`, re-exported here; this module adds the layers that name the Redis backend. A program
 * that must not load Node modules imports `effect-cachekit/portable`, whose `Cache` is `CacheCore`.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { type Cache, layer, layerMemory, type Options } from "./CacheCore.js"
import * as CacheStore from "./CacheStore.js"
import * as RedisLock from "./CacheLock/Redis.js"
import * as RedisBus from "./CacheBus/Redis.js"
import * as MemoryStore from "./CacheStore/Memory.js"
import * as RedisStore from "./CacheStore/Redis.js"
import * as TieredStore from "./CacheStore/Tiered.js"
import * as Redis from "./Redis.js"

export * from "./CacheCore.js"

/**
 * Options of {@link layerRedis}: the cache's, the client's (`url`, `sentinels`, `cluster`, timeouts) and
 * the store's (`maxValueBytes`).
 *
 * @example
 * ```ts
 * import { Cache } from "effect-cachekit"
 *
 * const options: Cache.RedisOptions = { url: "redis://127.0.0.1:6379", namespace: "app", commandTimeout: "200 millis", maxValueBytes: 1_000_000 }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisOptions extends Options, Redis.Options, RedisStore.Options {
  /** Coordinate `getOrSet` across processes with the Redis lock. Default `true`. */
  readonly distributedLock?: boolean | undefined
}

const redisBackend = (options: RedisOptions) =>
  (options.distributedLock === false
    ? RedisStore.layer(options)
    : Layer.merge(RedisStore.layer(options), RedisLock.layer(options))).pipe(Layer.provideMerge(Redis.layer(options)))

/**
 * A cache over Redis: the client, the Redis store and (unless `distributedLock: false`) the Redis lock,
 * so a key's producer runs at most once at a time across every process sharing the Redis. The layer
 * also provides the {@link Redis.Redis} client, for commands the cache does not wrap.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-cachekit"
 *
 * declare const program: Effect.Effect<void, never, Cache.Cache>
 * program.pipe(Effect.provide(Cache.layerRedis({ url: "redis://127.0.0.1:6379", namespace: "app" })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerRedis = (options: RedisOptions = {}): Layer.Layer<Cache | Redis.Redis> =>
  layer(options).pipe(Layer.provideMerge(redisBackend(options)))

/**
 * Options of {@link layerTiered}: the cache's, the memory tier's (`l1`), Redis's (`redis`: client,
 * store and the distributed lock) and the bus's (`bus`).
 *
 * @example
 * ```ts
 * import { Cache } from "effect-cachekit"
 *
 * const options: Cache.TieredOptions = {
 *   namespace: "app",
 *   l1: { capacity: 5_000, maxBytes: 32 * 1024 * 1024 },
 *   redis: { url: "redis://127.0.0.1:6379", commandTimeout: "200 millis" },
 *   bus: { heartbeat: "1 second" }
 * }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface TieredOptions extends Options {
  /** The memory tier of each instance. Default `{ capacity: 1_000 }`. */
  readonly l1?: { readonly capacity?: number | undefined; readonly maxBytes?: number | undefined } | undefined
  /** Redis: the client's options, the store's, and whether `getOrSet` takes the distributed lock (default `true`). */
  readonly redis?: (Redis.Options & RedisStore.Options & { readonly distributedLock?: boolean | undefined }) | undefined
  /** The bus's options (its heartbeat). */
  readonly bus?: RedisBus.Options | undefined
}

const tieredBackend = (options: TieredOptions) => {
  const redis = options.redis ?? {}
  const client = Redis.layer(redis)
  // One bus for the store and the lock (a layer is built once per reference): their scripts publish
  // every write on it, and the memory tier listens to it.
  const bus = RedisBus.layer(options.bus)
  const store = TieredStore.layer({ namespace: options.namespace, ...options.l1 }).pipe(
    Layer.provide(RedisStore.layer(redis).pipe(Layer.provideMerge(bus)))
  )
  const backend = redis.distributedLock === false
    ? store
    : Layer.merge(store, RedisLock.layer(redis).pipe(Layer.provide(bus)))
  return backend.pipe(Layer.provideMerge(client))
}

/**
 * A two-layer cache: each instance keeps hot entries in memory (live values, no deserialization on a
 * hit) in front of Redis, and every write, delete and clear is published on a Redis bus so that every
 * other instance drops its copy; `getOrSet` takes the distributed lock, so a key's producer runs once
 * across the fleet and every instance ends with the value in memory. While the bus may be missing
 * messages (a dropped connection, an unanswered heartbeat), an instance checks each copy against Redis
 * before serving it: see the README's "Two layers" for the exact guarantee.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-cachekit"
 *
 * declare const program: Effect.Effect<void, never, Cache.Cache>
 * program.pipe(Effect.provide(Cache.layerTiered({ l1: { capacity: 1_000 }, redis: { url: "redis://127.0.0.1:6379" } })))
 * ```
 *
 * @since 0.3.0
 * @category layers
 */
export const layerTiered = (options: TieredOptions = {}): Layer.Layer<Cache | Redis.Redis> =>
  layer(options).pipe(Layer.provideMerge(tieredBackend(options)))

/**
 * What {@link layerConfig} and {@link layerFromEnv} choose from: the cache's options, the memory
 * store's, and Redis's; with `redis` (and a `url`, `sentinels` or `cluster`) the cache runs on Redis,
 * otherwise on a memory store; `enabled: false` gives the no-op store.
 *
 * @example
 * ```ts
 * import { Cache } from "effect-cachekit"
 *
 * const onRedis: Cache.ConfigOptions = { namespace: "app", redis: { url: "redis://127.0.0.1:6379" } }
 * const inMemory: Cache.ConfigOptions = { namespace: "app", capacity: 50_000 }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface ConfigOptions extends Options, MemoryStore.Options {
  /** `false` gives the no-op store: every read misses and every `getOrSet` runs its producer. Default `true`. */
  readonly enabled?: boolean | undefined
  /** Run on Redis with these client and store options (and the distributed lock). */
  readonly redis?: (Redis.Options & RedisStore.Options & { readonly distributedLock?: boolean | undefined }) | undefined
  /**
   * With `redis`: `"redis"` (default) keeps entries in Redis only; `"tiered"` adds a memory tier in
   * each instance, kept coherent by a bus ({@link layerTiered}; its memory tier takes `capacity` and
   * `maxBytes`). Without `redis` the cache is in memory whatever this says.
   */
  readonly tier?: "redis" | "tiered" | undefined
}

const fromOptions = (options: ConfigOptions): Layer.Layer<Cache> => {
  if (options.enabled === false) return layer(options).pipe(Layer.provide(CacheStore.layerNoop))
  const redis = options.redis
  if (redis !== undefined && (redis.url !== undefined || redis.sentinels !== undefined || redis.cluster !== undefined)) {
    if (options.tier === "tiered") {
      return layer(options).pipe(
        Layer.provide(tieredBackend({ ...options, l1: { capacity: options.capacity, maxBytes: options.maxBytes }, redis }))
      )
    }
    return layer(options).pipe(Layer.provide(redisBackend({ ...options, ...redis })))
  }
  return layerMemory(options)
}

/**
 * A cache configured with Effect's `Config`, following Effect's convention: every option may be
 * given as a `Config` (`Config.Wrap<ConfigOptions>`), read when the layer is built. With a Redis
 * `url` (or `sentinels`, `cluster`) the cache runs on Redis, otherwise in memory.
 *
 * @example
 * ```ts
 * import { Config } from "effect"
 * import { Cache } from "effect-cachekit"
 *
 * const CacheLive = Cache.layerConfig({
 *   namespace: Config.string("APP_CACHE_NAMESPACE"),
 *   redis: { url: Config.redacted("APP_REDIS_URL") }
 * })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (options: Config.Config.Wrap<ConfigOptions>): Layer.Layer<Cache, ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), fromOptions))

/**
 * The settings {@link layerFromEnv} reads, each with its default.
 *
 * - `CACHE_ENABLED` (default `true`): `false` gives the no-op store, so every `getOrSet` runs its producer.
 * - `CACHE_NAMESPACE` (default `"cache"`).
 * - `CACHE_DEFAULT_TTL` (e.g. `"10 minutes"`; default: no expiry).
 * - `CACHE_TIMEOUT` (default `"1 second"`).
 * - `CACHE_MAX_KEY_LENGTH` (default 1024).
 * - `CACHE_MEMORY_CAPACITY` (default 10000) and `CACHE_MEMORY_MAX_BYTES` (default: unbounded).
 * - `CACHE_REDIS_URL` (a secret; default none; empty counts as unset): when set, the cache runs on Redis
 *   with the distributed lock.
 * - `CACHE_REDIS_COMMAND_TIMEOUT` (default `"500 millis"`).
 * - `CACHE_TIER` (`redis` or `tiered`; default `redis`): with a Redis URL, `tiered` adds a memory tier
 *   in each instance kept coherent by a bus (its capacity and byte budget: `CACHE_MEMORY_CAPACITY`,
 *   `CACHE_MEMORY_MAX_BYTES`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-cachekit"
 *
 * const settings = Effect.runSync(Cache.config) // reads the environment
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<ConfigOptions> = Config.all({
  enabled: Config.boolean("CACHE_ENABLED").pipe(
    Config.withDefault(true),
    Config.withDescription("false disables caching: every read misses and every write is dropped")
  ),
  namespace: Config.string("CACHE_NAMESPACE").pipe(
    Config.withDefault("cache"),
    Config.validate({
      message: "a namespace holds only letters, digits, \"_\", \"-\" and \".\"",
      validation: (s) => /^[A-Za-z0-9_.-]+$/.test(s)
    }),
    Config.withDescription("the first segment of every key")
  ),
  defaultTtl: Config.duration("CACHE_DEFAULT_TTL").pipe(
    Config.option,
    Config.map(Option.getOrUndefined),
    Config.withDescription("the time to live of entries whose keyspace sets none")
  ),
  timeout: Config.duration("CACHE_TIMEOUT").pipe(
    Config.withDefault(Duration.seconds(1)),
    Config.withDescription("the bound on each store operation")
  ),
  maxKeyLength: Config.integer("CACHE_MAX_KEY_LENGTH").pipe(
    Config.withDefault(1024),
    Config.validate({ message: "must be positive", validation: (n) => n > 0 })
  ),
  capacity: Config.integer("CACHE_MEMORY_CAPACITY").pipe(
    Config.withDefault(10_000),
    Config.validate({ message: "must be positive", validation: (n) => n > 0 }),
    Config.withDescription("the most entries the memory store keeps")
  ),
  maxBytes: Config.integer("CACHE_MEMORY_MAX_BYTES").pipe(
    Config.option,
    Config.map(Option.getOrUndefined),
    Config.withDescription("a byte budget for the memory store")
  ),
  redis: Config.map(Redis.optionalConfig, Option.getOrUndefined),
  tier: Config.literal("redis", "tiered")("CACHE_TIER").pipe(
    Config.withDefault("redis" as const),
    Config.withDescription("with a Redis URL: redis (entries in Redis only) or tiered (a memory tier per instance, kept coherent by a bus)")
  )
})

/**
 * A cache configured from the environment (see {@link config}): Redis when `CACHE_REDIS_URL` is set
 * (and not empty), the memory store otherwise, or the no-op store when `CACHE_ENABLED=false`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Cache } from "effect-cachekit"
 *
 * declare const program: Effect.Effect<void, never, Cache.Cache>
 * program.pipe(Effect.provide(Cache.layerFromEnv))
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerFromEnv: Layer.Layer<Cache, ConfigError.ConfigError> = Layer.unwrapEffect(Effect.map(config, fromOptions))
