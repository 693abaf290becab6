/**
 * A bounded in-process store: lru-cache evicts the least recently used entries past a count or a byte
 * budget, and expiry is read from Effect's `Clock`, so `TestClock.adjust` expires entries in tests.
 *
 * Entries are kept as the cache hands them over: a {@link CacheEntry.Live} entry (the decoded value
 * beside its header) is the whole record, so a hit returns the decoded value without deserializing
 * anything and an entry costs one object; envelope bytes are kept with their expiry. The store assigns
 * each write's version from the Clock; a delete leaves a tombstone (its version, for
 * {@link CacheStore.tombstoneTtl}) so a conditional write made before it is skipped.
 *
 * @since 0.2.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { LRUCache } from "lru-cache"
import * as CacheEntry from "../CacheEntry.js"
import { StoreError } from "../CacheError.js"
import * as CacheStore from "../CacheStore.js"

/**
 * Options of a memory store.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "effect-cachekit"
 *
 * const options: MemoryStore.Options = { capacity: 50_000, maxBytes: 64 * 1024 * 1024, maxEntryBytes: 1024 * 1024 }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The most entries kept; the least recently used are evicted past it. Default 10,000. */
  readonly capacity?: number | undefined
  /**
   * A budget for the sum of entry sizes (key length plus the serialized value's length); the least
   * recently used entries are evicted past it. Unbounded by default.
   */
  readonly maxBytes?: number | undefined
  /** The largest single entry accepted; a larger write fails with reason `"TooLarge"`. Defaults to `maxBytes`. */
  readonly maxEntryBytes?: number | undefined
}

/**
 * What a memory store reports about itself.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MemoryStore } from "effect-cachekit"
 *
 * const evictions = Effect.map(Effect.flatMap(MemoryStore.MemoryStore, (store) => store.stats), (stats: MemoryStore.Stats) => stats.evictions)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  /** Entries held, including expired ones not yet touched or evicted. */
  readonly entries: number
  /** The sum of entry sizes, when the store has a byte budget; 0 otherwise. */
  readonly bytes: number
  /** Entries pushed out by the count or byte bound since the store was made. */
  readonly evictions: number
}

/**
 * A memory store: the {@link CacheStore.CacheStore} port plus its own statistics.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MemoryStore } from "effect-cachekit"
 *
 * const program = Effect.gen(function* () {
 *   const store = yield* MemoryStore.make({ capacity: 2 })
 *   yield* store.set("a", new Uint8Array([1]), undefined)
 *   return yield* store.stats
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface MemoryStore extends CacheStore.CacheStore {
  readonly stats: Effect.Effect<Stats>
}

/**
 * The memory store's own tag, for inspecting its statistics; {@link layer} provides it next to
 * {@link CacheStore.CacheStore}.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MemoryStore } from "effect-cachekit"
 *
 * const evictions = Effect.flatMap(MemoryStore.MemoryStore, (store) => store.stats)
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const MemoryStore: Context.Tag<MemoryStore, MemoryStore> = Context.GenericTag<MemoryStore>(
  "effect-cachekit/MemoryStore"
)

/** Envelope bytes with their physical expiry (a live entry carries its own: `staleUntil`). */
class Bytes {
  constructor(readonly bytes: Uint8Array, readonly expiresAt: number) {}
}

type Slot = CacheEntry.Live | Bytes

const expiryOf = (slot: Slot): number => slot instanceof Bytes ? slot.expiresAt : slot.staleUntil

const versionOfSlot = (slot: Slot): number => slot instanceof Bytes ? CacheEntry.versionOf(slot.bytes) : slot.version

/** What a delete leaves behind for a while: its version, so an older conditional write is skipped. */
interface Tombstone {
  readonly version: number
  readonly until: number
}

const tombstoneMillis = Duration.toMillis(CacheStore.tombstoneTtl)

const flatten = (key: string): number => key.length === 0 ? 0 : key.charCodeAt(0)

const sizeOf = (value: CacheEntry.Stored): number => CacheStore.isLive(value) ? value.size : value.length

/**
 * Builds a memory store.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MemoryStore } from "effect-cachekit"
 *
 * const store = MemoryStore.make({ capacity: 10_000, maxBytes: 64 * 1024 * 1024 })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<MemoryStore> => Effect.sync(() => unsafeMake(options))

const unsafeMake = (options: Options): MemoryStore => {
  const capacity = options.capacity ?? 10_000
  if (!Number.isSafeInteger(capacity) || capacity < 1) {
    throw new RangeError(`MemoryStore capacity must be a positive integer, got ${capacity}`)
  }
  const maxEntryBytes = options.maxEntryBytes ?? options.maxBytes
  const sized = options.maxBytes !== undefined
  let evictions = 0
  let lastVersion = 0
  const lru = new LRUCache<string, Slot>({
    max: capacity,
    ...(sized ? { maxSize: options.maxBytes! } : {}),
    dispose: (_value, _key, reason) => {
      if (reason === "evict") evictions++
    }
  })

  // At most as many tombstones as entries, oldest first out (a conditional write then lands as it
  // would without one). A Map in insertion order: it costs nothing until a delete, where an LRU
  // would allocate its slot arrays for `max` up front (16 B per entry of a 100k store).
  const tombstones = new Map<string, Tombstone>()
  const maxTombstones = Math.min(capacity, 100_000)

  /** Removes the entry under `key` (if any) and leaves a tombstone; whether an entry was there. */
  const remove = (key: string, now: number): boolean => {
    const removed = live(key, now, false) !== undefined && lru.delete(key)
    lastVersion = CacheEntry.nextVersion(now, lastVersion)
    tombstones.delete(key)
    tombstones.set(key, { version: lastVersion, until: now + tombstoneMillis })
    if (tombstones.size > maxTombstones) tombstones.delete(tombstones.keys().next().value!)
    return removed
  }

  /** Whether `key` was written or deleted after version `since` (so a write conditional on it is skipped). */
  const changedSince = (key: string, since: number, now: number): boolean => {
    const tombstone = tombstones.get(key)
    if (tombstone !== undefined) {
      if (tombstone.until <= now) tombstones.delete(key)
      else if (tombstone.version > since) return true
    }
    const slot = live(key, now, false)
    return slot !== undefined && versionOfSlot(slot) > since
  }

  const fail = (operation: StoreError["operation"], key: string, reason: StoreError["reason"], cause?: unknown) =>
    new StoreError({ reason, operation, key, store: "memory", cause })

  /** The slot under `key` while it is physically alive, dropping it when it is not. */
  const live = (key: string, now: number, touch: boolean): Slot | undefined => {
    const slot = touch ? lru.get(key) : lru.peek(key)
    if (slot === undefined) return undefined
    if (expiryOf(slot) <= now) {
      lru.delete(key)
      return undefined
    }
    return slot
  }

  const storedOf = (slot: Slot): CacheEntry.Stored => slot instanceof Bytes ? slot.bytes : slot

  /** Stores one entry, or returns the error that refused it. */
  const write = (
    operation: StoreError["operation"],
    key: string,
    value: CacheEntry.Stored,
    ttl: Duration.Duration | undefined,
    now: number
  ): StoreError | undefined => {
    const millis = CacheStore.ttlMillis(ttl)
    if (millis !== undefined && millis <= 0) {
      lru.delete(key)
      return undefined
    }
    // lru-cache refuses sizes below 1; an empty key with an empty value still takes a slot.
    const size = Math.max(1, key.length + sizeOf(value))
    if (maxEntryBytes !== undefined && size > maxEntryBytes) {
      // No stale value may outlive a refused write.
      lru.delete(key)
      return fail(operation, key, "TooLarge", `${size} exceeds the ${maxEntryBytes}-byte entry limit`)
    }
    lastVersion = CacheEntry.nextVersion(now, lastVersion)
    let slot: Slot
    if (CacheStore.isLive(value)) {
      value.version = lastVersion
      slot = value
    } else {
      CacheEntry.stampVersion(value, lastVersion)
      slot = new Bytes(value, millis === undefined ? Infinity : now + millis)
    }
    // A key built as `prefix + segment` is a V8 rope (a node pointing at both strings); reading one of its
    // characters flattens it, after which the collector keeps only the flat copy: 16 bytes less per entry.
    flatten(key)
    if (sized) lru.set(key, slot, { size })
    else lru.set(key, slot)
    return undefined
  }

  const withNow = <A, E>(f: (now: number) => Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.clockWith((clock) => f(clock.unsafeCurrentTimeMillis()))

  const getNow = (key: string, now: number): CacheEntry.Stored | undefined => {
    const slot = live(key, now, true)
    return slot === undefined ? undefined : storedOf(slot)
  }

  const store = CacheStore.make({
    name: "memory",
    capabilities: {
      inProcess: true,
      liveValues: true,
      atomicAdd: true,
      nativeTtl: false,
      clearByPrefix: true,
      assignsVersions: true
    },
    get: (key) => withNow((now) => Effect.succeed(Option.fromNullable(getNow(key, now)))),
    getNow,
    getMany: (keys) => withNow((now) => Effect.succeed(keys.map((key) => Option.fromNullable(getNow(key, now))))),
    set: (key, value, ttl, _wait, since) =>
      withNow((now) => {
        if (since !== undefined && changedSince(key, since, now)) return Effect.void
        const error = write("set", key, value, ttl, now)
        return error === undefined ? Effect.void : Effect.fail(error)
      }),
    setMany: (entries) =>
      withNow((now) => {
        let firstError: StoreError | undefined
        for (const entry of entries) {
          const error = write("setMany", entry.key, entry.value, entry.ttl, now)
          if (firstError === undefined) firstError = error
        }
        return firstError === undefined ? Effect.void : Effect.fail(firstError)
      }),
    add: (key, value, ttl) =>
      withNow((now) => {
        if (live(key, now, false) !== undefined) return Effect.succeed(false)
        const error = write("add", key, value, ttl, now)
        return error === undefined ? Effect.succeed(true) : Effect.fail(error)
      }),
    delete: (key) => withNow((now) => Effect.succeed(remove(key, now))),
    deleteMany: (keys) =>
      withNow((now) => {
        let removed = 0
        for (const key of keys) {
          if (remove(key, now)) removed++
        }
        return Effect.succeed(removed)
      }),
    has: (key) => withNow((now) => Effect.succeed(live(key, now, false) !== undefined)),
    clear: (prefix) =>
      Effect.sync(() => {
        let removed = 0
        for (const key of Array.from(lru.keys())) {
          if (key.startsWith(prefix) && !CacheStore.isInternalKey(key) && lru.delete(key)) removed++
        }
        return removed
      }),
    expire: (key, ttl, now, since) =>
      Effect.suspend(() => {
        const slot = live(key, now, false)
        if (slot === undefined || (since !== undefined && versionOfSlot(slot) > since)) return Effect.succeed(false)
        let stored: CacheEntry.Stored
        let millis: number | undefined
        if (slot instanceof Bytes) {
          const times = CacheEntry.timesOf(slot.bytes)
          const after = CacheStore.expiryAfter(times ?? { freshUntil: Infinity, staleUntil: Infinity }, ttl, now)
          millis = after.millis
          stored = times === undefined ? Uint8Array.from(slot.bytes) : CacheEntry.retimed(slot.bytes, after.freshUntil, after.staleUntil, 0)!
        } else {
          const after = CacheStore.expiryAfter(slot, ttl, now)
          millis = after.millis
          stored = CacheEntry.Live.make(slot.value, {
            fingerprint: slot.fingerprint,
            freshUntil: after.freshUntil,
            staleUntil: after.staleUntil,
            tags: slot.tags,
            isFailure: slot.isFailure,
            size: slot.size
          })
        }
        // A write like any other: a new version, the same size accounting.
        const error = write("expire", key, stored, millis === undefined ? undefined : Duration.millis(millis), now)
        return error === undefined ? Effect.succeed(true) : Effect.fail(error)
      }),
    increment: (key, by, ttl) =>
      withNow((now) => {
        const slot = live(key, now, false)
        if (slot === undefined) {
          const error = write("increment", key, CacheStore.counterBytes(by), ttl, now)
          return error === undefined ? Effect.succeed(by) : Effect.fail(error)
        }
        const current = slot instanceof Bytes ? CacheStore.counterOf(slot.bytes) : undefined
        if (current === undefined) return Effect.fail(CacheStore.notACounter("memory", key))
        const next = current + by
        if (!Number.isSafeInteger(next)) return Effect.fail(CacheStore.overflow("memory", key, current, by))
        // The counter keeps the expiry it was created with.
        const bytes = CacheStore.counterBytes(next)
        const updated = new Bytes(bytes, (slot as Bytes).expiresAt)
        if (sized) lru.set(key, updated, { size: Math.max(1, key.length + bytes.length) })
        else lru.set(key, updated)
        return Effect.succeed(next)
      }),
    counter: (key) =>
      withNow((now) => {
        const slot = live(key, now, true)
        if (slot === undefined) return Effect.succeedNone
        const value = slot instanceof Bytes ? CacheStore.counterOf(slot.bytes) : undefined
        return value === undefined ? Effect.fail(CacheStore.notACounter("memory", key, "get")) : Effect.succeed(Option.some(value))
      }),
    // Every later write or delete gets a version above this one (`nextVersion` exceeds both terms).
    currentVersion: withNow((now) => Effect.succeed(Math.max(lastVersion, Math.floor(now * 1000) - 1)))
  })
  return { ...store, stats: Effect.sync(() => ({ entries: lru.size, bytes: lru.calculatedSize, evictions })) }
}

/**
 * A memory store as a layer, providing both {@link CacheStore.CacheStore} and {@link MemoryStore}.
 *
 * @example
 * ```ts
 * import { Cache, MemoryStore } from "effect-cachekit"
 * import { Layer } from "effect"
 *
 * const CacheLive = Cache.layer({ namespace: "app" }).pipe(Layer.provide(MemoryStore.layer({ capacity: 10_000 })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<CacheStore.CacheStore | MemoryStore> =>
  Layer.effectContext(
    Effect.map(make(options), (store) => Context.make(MemoryStore, store).pipe(Context.add(CacheStore.CacheStore, store)))
  )
