/**
 * The backend port: raw, fully namespaced entries with a time to live.
 *
 * A store knows nothing about keyspaces or schemas. It keeps opaque values under string keys that the
 * {@link Cache} has already namespaced and validated. A store that lives in the process may keep a
 * decoded value as it is ({@link LiveValue}), so a hit costs no deserialization; a remote store
 * keeps bytes or text.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { StoreError } from "./CacheError.js"

/**
 * A serialized value: text (JSON, plain strings) or bytes (MessagePack, raw bytes).
 *
 * @example
 * ```ts
 * import type { CacheStore } from "effect-cachekit"
 *
 * const text: CacheStore.Encoded = "ck1:0123456789ab:{}"
 * const bytes: CacheStore.Encoded = new Uint8Array([1, 2, 3])
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Encoded = string | Uint8Array

/**
 * A decoded value kept as it is by an in-process store, with the fingerprint of the schema that
 * validated it and the size of its serialized form (used by byte-bounded stores).
 *
 * Only stores with `acceptsLiveValues` receive these; every other store receives {@link Encoded}.
 *
 * @example
 * ```ts
 * import { CacheStore } from "effect-cachekit"
 *
 * const live = new CacheStore.LiveValue({ id: 1 }, "fp0123456789", 9)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export class LiveValue {
  constructor(
    /** The decoded value, shared with every reader: treat it as immutable. */
    readonly value: unknown,
    /** The fingerprint of the value schema and serializer that wrote it. */
    readonly fingerprint: string,
    /** The length of the value's serialized form, in bytes or UTF-16 code units. */
    readonly size: number
  ) {}
}

/**
 * What a store holds under one key.
 *
 * @example
 * ```ts
 * import { CacheStore } from "effect-cachekit"
 *
 * const stored: CacheStore.StoredValue = new CacheStore.LiveValue({ id: 1 }, "0123456789ab", 8)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type StoredValue = Encoded | LiveValue

/**
 * One entry of a batch write.
 *
 * @example
 * ```ts
 * import { Duration } from "effect"
 * import type { CacheStore } from "effect-cachekit"
 *
 * const entries: ReadonlyArray<CacheStore.Entry> = [{ key: "app:n:1", value: "1", ttl: Duration.seconds(30) }]
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry {
  readonly key: string
  readonly value: StoredValue
  /** Time to live; `undefined` keeps the entry until it is evicted or deleted. */
  readonly ttl: Duration.Duration | undefined
}

/**
 * The backend port. Keys arrive fully namespaced (`"<namespace>:<keyspace>:<segment>"`) and already
 * validated. A `ttl` of zero or less stores nothing and removes what was there.
 *
 * @example
 * ```ts
 * import { Effect, Option } from "effect"
 * import { CacheStore, MemoryStore } from "effect-cachekit"
 *
 * const program = Effect.gen(function* () {
 *   const store = yield* CacheStore.CacheStore
 *   yield* store.set("app:counters:a", "1", undefined)
 *   const value = yield* store.get("app:counters:a")   // Option.some("1")
 * }).pipe(Effect.provide(MemoryStore.layer({ capacity: 100 })))
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface CacheStore {
  /** A short name for errors, logs and metrics, e.g. `"memory"` or `"redis"`. */
  readonly name: string
  /**
   * Whether every operation completes in the process without waiting on I/O. The cache does not race
   * such operations against its timeout.
   */
  readonly isInProcess: boolean
  /** Whether the store may be handed {@link LiveValue}s (and returns them as given). */
  readonly acceptsLiveValues: boolean
  /**
   * A bound every command the store sends settles within (succeeding or failing with a `"Timeout"`),
   * if the store enforces one itself (the Redis store: the client's `commandTimeout`). When it is no
   * longer than the cache's timeout, the cache does not race its single-command operations against a
   * timer of its own (`clear` and `expire` are always raced).
   */
  readonly operationBound?: Duration.Duration | undefined
  readonly get: (key: string) => Effect.Effect<Option.Option<StoredValue>, StoreError>
  /**
   * For in-process stores: the live value under `key` at `now` (epoch milliseconds from the Clock), read
   * synchronously, or `undefined`. The cache's hit path uses it to read without extra effects.
   */
  readonly readNow?: ((key: string, now: number) => StoredValue | undefined) | undefined
  /** One result per key, in the order of `keys`. */
  readonly getMany: (keys: ReadonlyArray<string>) => Effect.Effect<Array<Option.Option<StoredValue>>, StoreError>
  readonly set: (key: string, value: StoredValue, ttl: Duration.Duration | undefined) => Effect.Effect<void, StoreError>
  readonly setMany: (entries: ReadonlyArray<Entry>) => Effect.Effect<void, StoreError>
  /** Writes only if no live entry exists under `key`; `true` when it wrote. */
  readonly add: (key: string, value: StoredValue, ttl: Duration.Duration | undefined) => Effect.Effect<boolean, StoreError>
  /** `true` when a live entry was removed. */
  readonly delete: (key: string) => Effect.Effect<boolean, StoreError>
  /** The number of live entries removed. */
  readonly deleteMany: (keys: ReadonlyArray<string>) => Effect.Effect<number, StoreError>
  readonly has: (key: string) => Effect.Effect<boolean, StoreError>
  /**
   * Adds `by` to the integer stored as text under `key` (a missing entry counts as 0) and returns the
   * new value; the entry keeps its time to live. A value that is not an integer fails with reason
   * `"WrongType"`.
   */
  readonly increment: (key: string, by: number) => Effect.Effect<number, StoreError>
  /** Sets a new time to live on a live entry; `false` when there is none. */
  readonly expire: (key: string, ttl: Duration.Duration) => Effect.Effect<boolean, StoreError>
  /** Removes every entry whose key starts with `prefix`; returns how many were removed. */
  readonly clear: (prefix: string) => Effect.Effect<number, StoreError>
}

/**
 * The store service tag.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheStore } from "effect-cachekit"
 *
 * const entries = Effect.flatMap(CacheStore.CacheStore, (store) => store.has("app:users:1"))
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const CacheStore: Context.Tag<CacheStore, CacheStore> = Context.GenericTag<CacheStore>(
  "effect-cachekit/CacheStore"
)

/**
 * A store that keeps nothing: every read misses and every write is dropped. This is the backend of a
 * disabled cache (`CACHE_ENABLED=false`): `getOrSet` always runs the producer.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheStore } from "effect-cachekit"
 *
 * const program = Effect.flatMap(CacheStore.CacheStore, (store) => store.get("app:users:1")) // always None
 * program.pipe(Effect.provideService(CacheStore.CacheStore, CacheStore.noop))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const noop: CacheStore = {
  name: "noop",
  isInProcess: true,
  acceptsLiveValues: true,
  get: () => Effect.succeedNone,
  readNow: () => undefined,
  getMany: (keys) => Effect.succeed(keys.map(() => Option.none())),
  set: () => Effect.void,
  setMany: () => Effect.void,
  // Nothing is ever present, so an add always finds the key absent; the write is dropped like any other.
  add: () => Effect.succeed(true),
  delete: () => Effect.succeed(false),
  deleteMany: () => Effect.succeed(0),
  has: () => Effect.succeed(false),
  // Every counter starts from zero again, as after an eviction.
  increment: (_key, by) => Effect.succeed(by),
  expire: () => Effect.succeed(false),
  clear: () => Effect.succeed(0)
}

/**
 * The no-op store as a layer: caching disabled.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Cache, CacheStore } from "effect-cachekit"
 *
 * const disabled = Cache.layer({ namespace: "app" }).pipe(Layer.provide(CacheStore.layerNoop))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNoop: Layer.Layer<CacheStore> = Layer.succeed(CacheStore, noop)
