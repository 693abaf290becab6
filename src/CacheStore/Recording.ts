/**
 * A store for tests: it keeps entries like the memory store (expiry on the Effect Clock, so a
 * `TestClock` drives it), stores them as the envelope bytes a remote store would hold, and records
 * every operation the cache sends, so a test can assert what was read, written and removed.
 *
 * @since 0.2.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as CacheEntry from "../CacheEntry.js"
import type { Operation } from "../CacheError.js"
import * as CacheStore from "../CacheStore.js"
import * as MemoryStore from "./Memory.js"

/**
 * One operation the store received: its name, the keys it named (the prefix for `clear`), and the
 * Clock's time when it ran, in epoch milliseconds.
 *
 * @example
 * ```ts
 * import type { RecordingStore } from "effect-cachekit"
 *
 * const writes = (log: ReadonlyArray<RecordingStore.Recorded>) => log.filter((op) => op.operation === "set")
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Recorded {
  readonly operation: Operation
  readonly keys: ReadonlyArray<string>
  readonly at: number
  /** The physical time to live a write asked for (`undefined`: none, or not a write). */
  readonly ttl?: Duration.Duration | undefined
}

/**
 * An entry as the store holds it now: its decoded envelope header and body.
 *
 * @example
 * ```ts
 * import type { RecordingStore } from "effect-cachekit"
 *
 * const isStale = (entry: RecordingStore.StoredEntry, now: number) => entry.freshUntil <= now
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface StoredEntry extends CacheEntry.Decoded {
  readonly key: string
  /** The body as text, when it was written as text. */
  readonly text: string | undefined
}

/**
 * The recording store: a {@link CacheStore.CacheStore} plus what it recorded.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RecordingStore } from "effect-cachekit"
 *
 * const reads = Effect.map(RecordingStore.RecordingStore, (store) => store.operations)
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface RecordingStore extends CacheStore.CacheStore {
  /** Every operation since the store was made (or since {@link RecordingStore.reset}), oldest first. */
  readonly operations: Effect.Effect<ReadonlyArray<Recorded>>
  /** The entries alive now (at the Clock's time), by key, in the order they were first written. */
  readonly entries: Effect.Effect<ReadonlyArray<StoredEntry>>
  /** The entry alive now under `key`. */
  readonly entry: (key: string) => Effect.Effect<Option.Option<StoredEntry>>
  /** Forgets the recorded operations (the entries stay). */
  readonly reset: Effect.Effect<void>
}

/**
 * The recording store's tag; {@link layer} provides it next to {@link CacheStore.CacheStore}.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RecordingStore } from "effect-cachekit"
 *
 * const keysWritten = Effect.flatMap(RecordingStore.RecordingStore, (store) => store.entries).pipe(
 *   Effect.map((entries) => entries.map((entry) => entry.key))
 * )
 * ```
 *
 * @since 0.2.0
 * @category tags
 */
export const RecordingStore: Context.Tag<RecordingStore, RecordingStore> = Context.GenericTag<RecordingStore>(
  "effect-cachekit/RecordingStore"
)

const decoder = new TextDecoder()

const storedEntry = (key: string, stored: CacheEntry.Stored): StoredEntry | undefined => {
  // Entries are always bytes here (the store does not take live values), but a direct caller may write anything.
  const decoded = CacheStore.isLive(stored) ? undefined : CacheEntry.decode(stored)
  if (decoded === undefined) return undefined
  return { ...decoded, key, text: decoded.isText ? decoder.decode(decoded.body) : undefined }
}

/**
 * Builds a recording store over a fresh memory store (`options` bound it as {@link MemoryStore.make}'s do).
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Cache, CacheKey, CacheStore, Keyspace, RecordingStore } from "effect-cachekit"
 *
 * const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String, ttl: "1 minute" })
 *
 * const program = Effect.gen(function* () {
 *   const store = yield* RecordingStore.make()
 *   const cache = yield* Cache.make({ namespace: "test" }).pipe(Effect.provideService(CacheStore.CacheStore, store))
 *   yield* Names.set(1, "Ada").pipe(Effect.provideService(Cache.Cache, cache))
 *   return (yield* store.operations).map((op) => `${op.operation} ${op.keys.join(",")}`) // ["set test:names:1"]
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (options: MemoryStore.Options = {}): Effect.Effect<RecordingStore> =>
  Effect.map(MemoryStore.make(options), (inner) => {
    let log: Array<Recorded> = []
    // Keys ever written, in first-write order; `entries` reads each through the inner store, so expiry applies.
    const written = new Set<string>()
    const record = (operation: Operation, keys: ReadonlyArray<string>, ttl?: Duration.Duration | undefined) =>
      Effect.map(Clock.currentTimeMillis, (at) => {
        log.push(ttl === undefined ? { operation, keys, at } : { operation, keys, at, ttl })
      })
    const recorded = <X, E>(
      operation: Operation,
      keys: ReadonlyArray<string>,
      effect: Effect.Effect<X, E>,
      ttl?: Duration.Duration | undefined
    ): Effect.Effect<X, E> => Effect.zipRight(record(operation, keys, ttl), effect)

    const entry = (key: string): Effect.Effect<Option.Option<StoredEntry>> =>
      Effect.map(
        Effect.orDie(inner.get(key)),
        (found) => Option.flatMap(found, (stored) => Option.fromNullable(storedEntry(key, stored)))
      )

    const store = CacheStore.make({
      name: "recording",
      capabilities: { inProcess: true, atomicAdd: true, clearByPrefix: true, assignsVersions: true },
      get: (key) => recorded("get", [key], inner.get(key)),
      getMany: (keys) => recorded("getMany", keys, inner.getMany(keys)),
      set: (key, value, ttl, wait, since) =>
        recorded("set", [key], Effect.tap(inner.set(key, value, ttl, wait, since), () => written.add(key)), ttl),
      setMany: (entries, wait) =>
        recorded(
          "setMany",
          entries.map((entry) => entry.key),
          Effect.tap(inner.setMany(entries, wait), () => entries.forEach((entry) => written.add(entry.key)))
        ),
      add: (key, value, ttl, wait) =>
        recorded("add", [key], Effect.tap(inner.add(key, value, ttl, wait), (added) => added && written.add(key)), ttl),
      delete: (key) => recorded("delete", [key], Effect.tap(inner.delete(key), () => written.delete(key))),
      deleteMany: (keys) =>
        recorded("deleteMany", keys, Effect.tap(inner.deleteMany(keys), () => keys.forEach((key) => written.delete(key)))),
      has: (key) => recorded("has", [key], inner.has(key)),
      clear: (prefix) =>
        recorded(
          "clear",
          [prefix],
          Effect.tap(inner.clear(prefix), () => {
            for (const key of written) {
              if (key.startsWith(prefix) && !CacheStore.isInternalKey(key)) written.delete(key)
            }
          })
        ),
      expire: (key, ttl, now, since) => recorded("expire", [key], inner.expire(key, ttl, now, since), ttl),
      increment: (key, by, ttl) => recorded("increment", [key], Effect.tap(inner.increment(key, by, ttl), () => written.add(key)), ttl),
      counter: (key) => recorded("get", [key], inner.counter(key)),
      currentVersion: inner.currentVersion
    })

    return {
      ...store,
      operations: Effect.sync(() => log.slice()),
      entries: Effect.map(
        Effect.forEach(Array.from(written), entry),
        (found) => found.flatMap((option) => Option.isSome(option) ? [option.value] : [])
      ),
      entry,
      reset: Effect.sync(() => {
        log = []
      })
    }
  })

/**
 * A recording store as a layer, providing both {@link CacheStore.CacheStore} and {@link RecordingStore}.
 *
 * @example
 * ```ts
 * import { Effect, Layer, Schema } from "effect"
 * import { Cache, CacheKey, Keyspace, RecordingStore } from "effect-cachekit"
 *
 * const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String })
 * const TestCache = Cache.layer({ namespace: "test" }).pipe(Layer.provideMerge(RecordingStore.layer()))
 *
 * const program = Effect.gen(function* () {
 *   yield* Names.set(1, "Ada")
 *   const store = yield* RecordingStore.RecordingStore
 *   return (yield* store.entries).map((entry) => entry.text) // ['"Ada"']
 * }).pipe(Effect.provide(TestCache))
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: MemoryStore.Options = {}): Layer.Layer<CacheStore.CacheStore | RecordingStore> =>
  Layer.effectContext(
    Effect.map(make(options), (store) => Context.make(RecordingStore, store).pipe(Context.add(CacheStore.CacheStore, store)))
  )
