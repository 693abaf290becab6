/**
 * What a cache tells whoever listens: one event per read that hit or missed, per value written, per
 * invalidation, per failure the cache absorbed, per change of a circuit breaker and, with the cache's
 * `latencyMetrics` option, per finished operation with its duration. `Cache.events` is the stream of
 * them; plugins such as a hit ratio or a timing table are a `Stream.runForEach` away.
 *
 * Events are made only while somebody listens: a cache with no subscriber checks one field and moves
 * on. Each subscriber has a bounded buffer of its own; a subscriber that falls behind loses the
 * events that do not fit (counted by `effect_cachekit_events_dropped_total`), and never slows the
 * cache down.
 *
 * Keys are store keys (`namespace:keyspace:key`), as errors and logs show them: with the cache's
 * `redactKeys`, the user part is a digest.
 *
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Cache, CacheEvent } from "effect-cachekit"
 *
 * // Logs every miss of the cache in context, with its key.
 * const logMisses = Cache.events.pipe(
 *   Stream.filter(CacheEvent.$is("Miss")),
 *   Stream.runForEach((miss) => Effect.logDebug(`miss: ${miss.key}`))
 * )
 * ```
 *
 * @since 0.3.0
 */
import type * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import type { CacheError } from "./CacheError.js"

/**
 * Where an event happened: the cache's namespace and its store's name.
 *
 * @example
 * ```ts
 * import type { CacheEvent } from "effect-cachekit"
 *
 * const where = (event: CacheEvent.Origin) => `${event.cache} on ${event.store}`
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface Origin {
  /** The cache's namespace. */
  readonly cache: string
  /** The store's name (`"memory"`, `"redis"`, `"tiered"`, ...). */
  readonly store: string
}

/**
 * An operation that writes values, as `Write` events name it.
 *
 * @example
 * ```ts
 * import type { CacheEvent } from "effect-cachekit"
 *
 * const produced = (operation: CacheEvent.WriteOperation) => operation === "getOrSet" || operation === "getOrSetMany"
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export type WriteOperation = "set" | "setMany" | "add" | "getOrSet" | "getOrSetMany"

/**
 * An event of a cache. The read events count as the hit and miss counters do: `get`, `getMany`,
 * `getStale` and the first look of `getOrSet` and `getOrSetMany` (a batch read tells one event per
 * key; `has`, `remainingTtl` and `expire` read headers and tell no read event). A `getOrSet` that
 * joins a run already under way for its key in this process reads nothing: it tells nothing.
 *
 * - `Hit`: a read found a value it may serve (fresh, or due for an eager refresh).
 * - `Miss`: a read found nothing usable (absent, expired, invalidated by a tag, undecodable, stale).
 * - `StaleServed`: `getOrSet` or `getOrSetMany` served a stale value (within its grace) because the
 *   producer failed, timed out softly or hard, or failed less than `graceBackoff` ago.
 * - `DecodeFailure`: a stored value could not be decoded (corrupt, or written under another schema)
 *   and was dropped.
 * - `Write`: the cache stored a value for `key` (`set`, `setMany`, `add` when it added, and the
 *   producer runs of `getOrSet` and `getOrSetMany`, written at once or with the lock's release; a
 *   cached failure or an absent marker is a write too). A
 *   producer's write is conditional on the key not changing while it ran: one the store skipped for
 *   that is told all the same (the store does not say). A write that failed is not told (its failure
 *   is the caller's, or a `Failure` when absorbed).
 * - `Invalidate`: `invalidate`, `invalidateMany` or `deleteMany` removed `key` (told whether or not the
 *   key was there).
 * - `Clear`: `clear` (the whole namespace: `keyspace` is `undefined`) or a keyspace's `clear`.
 * - `InvalidateTags`: `invalidateTags` invalidated every entry carrying one of `tags`.
 * - `InvalidateWhere`: a keyspace's `invalidateWhere` invalidated its entries whose key fields are
 *   `where`.
 * - `Failure`: a store or lock failure the cache absorbed (`getOrSet` carried on without the cache, or
 *   a two-layer store served its memory's copy). A failure that reaches the caller is the caller's.
 * - `RefreshFailure`: an eager refresh's or a `refreshEvery` run's producer failed; the old value stays.
 * - `Circuit`: the circuit breaker in front of the store or the lock opened or closed.
 * - `Operation`: a public operation finished, with its duration in milliseconds of real time and
 *   whether it succeeded. Told only with the cache's `latencyMetrics` option, which times operations.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Cache, CacheEvent } from "effect-cachekit"
 *
 * const describe = CacheEvent.$match({
 *   Hit: (event) => `hit ${event.key}`,
 *   Miss: (event) => `miss ${event.key}`,
 *   StaleServed: (event) => `stale ${event.key}`,
 *   DecodeFailure: (event) => `undecodable ${event.key}`,
 *   Write: (event) => `${event.operation} ${event.key}`,
 *   Invalidate: (event) => `invalidated ${event.key}`,
 *   Clear: (event) => `cleared ${event.keyspace ?? event.cache}`,
 *   InvalidateTags: (event) => `tags ${event.tags.join(", ")}`,
 *   InvalidateWhere: (event) => `${event.keyspace} where ${JSON.stringify(event.where)}`,
 *   Failure: (event) => `absorbed ${event.error.message}`,
 *   RefreshFailure: (event) => `refresh of ${event.key} failed`,
 *   Circuit: (event) => `${event.backend} circuit ${event.state}`,
 *   Operation: (event) => `${event.operation} took ${event.durationMillis} ms`
 * })
 * const log = Cache.events.pipe(Stream.runForEach((event) => Effect.logDebug(describe(event))))
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export type CacheEvent = Data.TaggedEnum<{
  Hit: Origin & { readonly keyspace: string; readonly key: string }
  Miss: Origin & { readonly keyspace: string; readonly key: string }
  StaleServed: Origin & { readonly keyspace: string; readonly key: string }
  DecodeFailure: Origin & { readonly keyspace: string; readonly key: string }
  Write: Origin & { readonly keyspace: string; readonly key: string; readonly operation: WriteOperation }
  Invalidate: Origin & { readonly keyspace: string; readonly key: string }
  Clear: Origin & { readonly keyspace: string | undefined }
  InvalidateTags: Origin & { readonly tags: ReadonlyArray<string> }
  InvalidateWhere: Origin & { readonly keyspace: string; readonly where: Readonly<Record<string, unknown>> }
  Failure: Origin & { readonly keyspace: string; readonly error: CacheError }
  RefreshFailure: Origin & { readonly keyspace: string; readonly key: string; readonly cause: Cause.Cause<unknown> }
  Circuit: Origin & {
    readonly backend: "store" | "lock"
    readonly state: "open" | "closed"
    /** Why it changed, as the log line says it. */
    readonly detail: string
  }
  Operation: Origin & {
    /** `undefined` for the cache-wide operations (`clear`, `invalidateTags`). */
    readonly keyspace: string | undefined
    /** `get`, `set`, `getOrSet`, ..., `counter.increment`, and `produce` for a producer's run. */
    readonly operation: string
    readonly durationMillis: number
    readonly success: boolean
  }
}>

const constructors = Data.taggedEnum<CacheEvent>()

/**
 * Narrows an event to one tag: `Stream.filter(CacheEvent.$is("Miss"))`.
 *
 * @example
 * ```ts
 * import { Stream } from "effect"
 * import { Cache, CacheEvent } from "effect-cachekit"
 *
 * const misses = Cache.events.pipe(Stream.filter(CacheEvent.$is("Miss")))
 * ```
 *
 * @since 0.3.0
 * @category guards
 */
export const $is = constructors.$is

/**
 * Folds an event by its tag, one function per tag.
 *
 * @example
 * ```ts
 * import { CacheEvent } from "effect-cachekit"
 *
 * const isRead = CacheEvent.$match({
 *   Hit: () => true,
 *   Miss: () => true,
 *   StaleServed: () => true,
 *   DecodeFailure: () => true,
 *   Write: () => false,
 *   Invalidate: () => false,
 *   Clear: () => false,
 *   InvalidateTags: () => false,
 *   InvalidateWhere: () => false,
 *   Failure: () => false,
 *   RefreshFailure: () => false,
 *   Circuit: () => false,
 *   Operation: () => false
 * })
 * ```
 *
 * @since 0.3.0
 * @category folding
 */
export const $match = constructors.$match

/**
 * Builds events: the cache's own, or a test's.
 *
 * @example
 * ```ts
 * import { CacheEvent } from "effect-cachekit"
 *
 * const hit = CacheEvent.make.Hit({ cache: "app", store: "memory", keyspace: "users", key: "app:users:1" })
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const make: {
  readonly [Tag in CacheEvent["_tag"]]: (args: Omit<Extract<CacheEvent, { readonly _tag: Tag }>, "_tag">) => Extract<CacheEvent, { readonly _tag: Tag }>
} = {
  Hit: constructors.Hit,
  Miss: constructors.Miss,
  StaleServed: constructors.StaleServed,
  DecodeFailure: constructors.DecodeFailure,
  Write: constructors.Write,
  Invalidate: constructors.Invalidate,
  Clear: constructors.Clear,
  InvalidateTags: constructors.InvalidateTags,
  InvalidateWhere: constructors.InvalidateWhere,
  Failure: constructors.Failure,
  RefreshFailure: constructors.RefreshFailure,
  Circuit: constructors.Circuit,
  Operation: constructors.Operation
}

/**
 * One keyspace's counts in one cache, since the cache was made: what its events told (the same
 * counts as the `effect_cachekit_*` counters, which sum every cache of the process), whether or not
 * anybody listened.
 *
 * @example
 * ```ts
 * import type { CacheEvent } from "effect-cachekit"
 *
 * const report = (stats: CacheEvent.KeyspaceStats) =>
 *   `${stats.keyspace}: ${(stats.hitRatio * 100).toFixed(1)}% of ${stats.hits + stats.misses} reads`
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface KeyspaceStats {
  readonly keyspace: string
  readonly hits: number
  readonly misses: number
  /** `hits / (hits + misses)`; 0 before the first read. */
  readonly hitRatio: number
  readonly staleServed: number
  readonly decodeFailures: number
  readonly writes: number
  /** Store and lock failures the cache absorbed. */
  readonly failures: number
  readonly refreshFailures: number
}
