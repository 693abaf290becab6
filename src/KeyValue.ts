/**
 * `@effect/platform`'s `KeyValueStore`, both ways.
 *
 * - A cache as a `KeyValueStore` ({@link layer}, {@link make}): code written against the platform's
 *   port (sessions, small settings, anything that took `KeyValueStore.layerMemory` or a file
 *   system) runs on whatever cache layer the program provides (memory, Redis, two layers), each key
 *   an entry of a keyspace of its own, with the keyspace's time to live.
 * - A typed view of one keyspace as a platform `SchemaStore` ({@link schemaStore}): values kept with
 *   the keyspace's own codec (the memory store keeps them decoded), not as JSON strings.
 * - Any `KeyValueStore` as the cache's store ({@link layerStore}, over
 *   {@link CacheStore.fromKeyValueStore}).
 *
 * What a cache cannot do as a `KeyValueStore`: it cannot count a keyspace's entries, so `size` (and
 * `isEmpty`, which the platform derives from it) fails with a `BadArgument` rather than give a wrong
 * number; `clear` removes the keyspace's entries where the store can clear by prefix (memory,
 * Redis, two layers) and fails with a `SystemError` elsewhere; `modify` is a read then a write, not
 * atomic; and an entry may be evicted or expire, as any cache entry.
 *
 * @since 0.3.0
 */
import type * as ParseResult from "effect/ParseResult"
import * as PlatformError from "@effect/platform/Error"
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Cache from "./CacheCore.js"
import type { CodecError, InvalidKeyError, StoreError } from "./CacheError.js"
import * as CacheKey from "./CacheKey.js"
import * as CacheStore from "./CacheStore.js"
import * as Keyspace from "./Keyspace.js"

/**
 * Options of a cache-backed `KeyValueStore`.
 *
 * @example
 * ```ts
 * import type { KeyValue } from "effect-cachekit"
 *
 * const options: KeyValue.Options = { keyspace: "sessions", ttl: "30 minutes" }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface Options {
  /** The keyspace the store's keys live in (`"<namespace>:<keyspace>:<key>"`). Default `"kv"`. */
  readonly keyspace?: string | undefined
  /** The time to live of each entry; without one, the cache's `defaultTtl` (or none). */
  readonly ttl?: Duration.DurationInput | undefined
}

/**
 * Options of {@link schemaStore}: {@link Options} plus the value schema.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import type { KeyValue } from "effect-cachekit"
 *
 * const options: KeyValue.SchemaOptions<number, number> = { keyspace: "counters", value: Schema.Number }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface SchemaOptions<A, I> extends Options {
  readonly value: Schema.Schema<A, I>
}

type CacheFailure = InvalidKeyError | StoreError | CodecError

const systemReason = (error: StoreError): PlatformError.SystemErrorReason => {
  switch (error.reason) {
    case "Timeout":
      return "TimedOut"
    case "Auth":
      return "PermissionDenied"
    case "Unavailable":
      return "Busy"
    case "TooLarge":
      return "InvalidData"
    default:
      return "Unknown"
  }
}

/** A cache failure as the platform's: a bad key is a `BadArgument`, the rest `SystemError`s, each with the cache's error as `cause`. */
const toPlatformError = (method: string, key: string | undefined) => (error: CacheFailure): PlatformError.PlatformError => {
  switch (error._tag) {
    case "InvalidKeyError":
      return new PlatformError.BadArgument({ module: "KeyValueStore", method, description: error.message, cause: error })
    case "CodecError":
      return new PlatformError.SystemError({
        reason: "InvalidData",
        module: "KeyValueStore",
        method,
        pathOrDescriptor: key,
        description: error.message,
        cause: error
      })
    case "StoreError":
      return new PlatformError.SystemError({
        reason: systemReason(error),
        module: "KeyValueStore",
        method,
        pathOrDescriptor: key,
        description: error.message,
        cause: error
      })
  }
}

const sizeUnsupported = new PlatformError.BadArgument({
  module: "KeyValueStore",
  method: "size",
  description: "a cache-backed KeyValueStore cannot count its entries (a cache lists no keys, and entries expire or are evicted)"
})

const Value = Schema.Union(Schema.String, Schema.Uint8ArrayFromSelf)

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Runs a keyspace operation on `cache` and speaks the platform's errors. */
const on = (cache: Cache.Service, method: string, key: string | undefined) =>
<A>(effect: Effect.Effect<A, CacheFailure, Cache.Cache>): Effect.Effect<A, PlatformError.PlatformError> =>
  effect.pipe(Effect.provideService(Cache.Cache, cache), Effect.mapError(toPlatformError(method, key)))

/**
 * A `KeyValueStore` backed by the cache in context: each key is an entry of the keyspace
 * `options.keyspace` (default `"kv"`), strings and bytes kept as given (a string read with
 * `getUint8Array` is its UTF-8 bytes, bytes read with `get` their UTF-8 text, as in the platform's
 * memory store). `size` and `isEmpty` fail with a `BadArgument` (see the module's notes).
 *
 * @example
 * ```ts
 * import { KeyValueStore } from "@effect/platform"
 * import { Effect } from "effect"
 * import { Cache, KeyValue } from "effect-cachekit"
 *
 * const program = Effect.gen(function* () {
 *   const kv = yield* KeyValue.make({ keyspace: "settings" })
 *   yield* kv.set("theme", "dark")
 *   return yield* kv.get("theme") // Option.some("dark")
 * }).pipe(Effect.provide(Cache.layerMemory()))
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<KeyValueStore.KeyValueStore, never, Cache.Cache> =>
  Effect.map(Cache.Cache, (cache) => {
    const entries = Keyspace.make({ name: options.keyspace ?? "kv", key: CacheKey.string, value: Value, ttl: options.ttl })
    const get = (method: string, key: string) => on(cache, method, key)(entries.get(key))
    return KeyValueStore.make({
      get: (key) => Effect.map(get("get", key), Option.map((value) => typeof value === "string" ? value : decoder.decode(value))),
      getUint8Array: (key) =>
        Effect.map(get("getUint8Array", key), Option.map((value) => typeof value === "string" ? encoder.encode(value) : value)),
      set: (key, value) => on(cache, "set", key)(entries.set(key, value)),
      remove: (key) => on(cache, "remove", key)(entries.invalidate(key)),
      has: (key) => on(cache, "has", key)(entries.has(key)),
      clear: Effect.asVoid(on(cache, "clear", undefined)(entries.clear)),
      size: Effect.fail(sizeUnsupported),
      isEmpty: Effect.fail(sizeUnsupported)
    })
  })

/**
 * {@link make} as a layer: the platform's `KeyValueStore` on the cache in context.
 *
 * @example
 * ```ts
 * import { KeyValueStore } from "@effect/platform"
 * import { Effect, Layer } from "effect"
 * import { Cache, KeyValue } from "effect-cachekit"
 *
 * const KeyValueLive = KeyValue.layer({ keyspace: "sessions", ttl: "30 minutes" }).pipe(Layer.provide(Cache.layerMemory()))
 * const program = Effect.flatMap(KeyValueStore.KeyValueStore, (kv) => kv.set("s1", "{}")).pipe(Effect.provide(KeyValueLive))
 * ```
 *
 * @since 0.3.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<KeyValueStore.KeyValueStore, never, Cache.Cache> =>
  Layer.effect(KeyValueStore.KeyValueStore, make(options))

/**
 * A platform `SchemaStore` of typed values backed by one keyspace of the cache in context: values
 * are kept with the keyspace's codec (the memory store keeps them decoded; remote stores keep their
 * serialized form), not as JSON text in a string store. A stored value that no longer decodes reads
 * as absent (and is replaced by the next write), as in any keyspace; a value that cannot be encoded
 * fails `set` with a `SystemError` of reason `"InvalidData"`. `size` and `isEmpty` fail with a
 * `BadArgument`.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Cache, KeyValue } from "effect-cachekit"
 *
 * class Session extends Schema.Class<Session>("Session")({ user: Schema.Number, expires: Schema.Date }) {}
 *
 * const program = Effect.gen(function* () {
 *   const sessions = yield* KeyValue.schemaStore({ keyspace: "sessions", value: Session, ttl: "30 minutes" })
 *   yield* sessions.set("s1", new Session({ user: 1, expires: new Date(0) }))
 *   return yield* sessions.get("s1") // Option.some(Session)
 * }).pipe(Effect.provide(Cache.layerMemory()))
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const schemaStore = <A, I>(options: SchemaOptions<A, I>): Effect.Effect<KeyValueStore.SchemaStore<A, never>, never, Cache.Cache> =>
  Effect.map(Cache.Cache, (cache) => {
    const entries = Keyspace.make({ name: options.keyspace ?? "kv", key: CacheKey.string, value: options.value, ttl: options.ttl })
    const get = (key: string): Effect.Effect<Option.Option<A>, PlatformError.PlatformError | ParseResult.ParseError> =>
      on(cache, "get", key)(entries.get(key))
    const set = (key: string, value: A): Effect.Effect<void, PlatformError.PlatformError | ParseResult.ParseError> =>
      on(cache, "set", key)(entries.set(key, value))
    return {
      [KeyValueStore.SchemaStoreTypeId]: KeyValueStore.SchemaStoreTypeId,
      get,
      set,
      remove: (key) => on(cache, "remove", key)(entries.invalidate(key)),
      clear: Effect.asVoid(on(cache, "clear", undefined)(entries.clear)),
      size: Effect.fail(sizeUnsupported),
      isEmpty: Effect.fail(sizeUnsupported),
      has: (key) => on(cache, "has", key)(entries.has(key)),
      modify: (key, f) =>
        Effect.flatMap(get(key), (found) => {
          if (Option.isNone(found)) return Effect.succeedNone
          const next = f(found.value)
          return Effect.as(set(key, next), Option.some(next))
        })
    }
  })

/**
 * Any `KeyValueStore` in context as the cache's store ({@link CacheStore.fromKeyValueStore}: entries
 * carry their expiry, `clear` is `"Unsupported"`).
 *
 * @example
 * ```ts
 * import { KeyValueStore } from "@effect/platform"
 * import { Layer } from "effect"
 * import { Cache, KeyValue } from "effect-cachekit"
 *
 * const CacheLive = Cache.layer({ namespace: "app" }).pipe(
 *   Layer.provide(KeyValue.layerStore()),
 *   Layer.provide(KeyValueStore.layerMemory)
 * )
 * ```
 *
 * @since 0.3.0
 * @category layers
 */
export const layerStore = (
  options: CacheStore.KeyValueStoreOptions = {}
): Layer.Layer<CacheStore.CacheStore, never, KeyValueStore.KeyValueStore> =>
  Layer.effect(CacheStore.CacheStore, Effect.map(KeyValueStore.KeyValueStore, (kvs) => CacheStore.fromKeyValueStore(kvs, options)))
