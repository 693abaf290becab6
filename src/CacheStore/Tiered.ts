/**
 * The two-layer store: a bounded memory tier (L1: live values, no deserialization on a hit) in front
 * of a shared store (L2: Redis), kept coherent across instances by a {@link CacheBus.CacheBus}.
 *
 * - Reads: memory, when it may be served unchecked; otherwise the shared tier, and what the cache
 *   decodes from it is kept in memory with the shared entry's header (version, expiry: never longer
 *   than the shared entry's).
 * - Writes, deletes and clears go to the shared tier first (whose scripts publish them on the bus),
 *   then to memory with the version the shared tier gave them.
 * - Every other instance's write, delete or clear heard on the bus drops the older copies from memory,
 *   and a short record of its version keeps a read that was under way from bringing an older copy back.
 * - **When the bus may be missing messages** (its connection dropped, or its heartbeat went
 *   unanswered), memory is not served unchecked: each copy is checked against the shared tier (one
 *   `GET`, compared by version, no decoding when it matches) until the subscription is back; then every
 *   copy held from before is checked once more on its next read. So no instance serves a value another
 *   instance replaced more than one heartbeat after the bus went silent (messages themselves arrive in
 *   a few milliseconds).
 * - When the shared tier fails, memory keeps serving its fresh copies (the cache counts and logs it);
 *   a write still goes to memory, is counted in `effect_cachekit_unshared_writes_total`, and fails with
 *   the shared tier's error, so the caller knows other instances do not see it.
 *
 * `Cache.layerTiered` builds it over Redis, with the Redis bus and lock. Built by hand, the shared store
 * (and the lock) must have the same bus in their context, so that their scripts publish every write,
 * and the store's `namespace` must be the cache's (the cache warns at start when it is not).
 *
 * @since 0.3.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { LRUCache } from "lru-cache"
import * as CacheBus from "../CacheBus.js"
import * as CacheEntry from "../CacheEntry.js"
import { StoreError } from "../CacheError.js"
import * as CacheStore from "../CacheStore.js"
import * as Metrics from "../internal/metrics.js"

/**
 * Options of the two-layer store's memory tier.
 *
 * @example
 * ```ts
 * import { TieredStore } from "effect-cachekit"
 *
 * const options: TieredStore.Options = { namespace: "app", capacity: 5_000, maxBytes: 32 * 1024 * 1024 }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface Options {
  /** The namespace whose bus channel the store listens to: the cache's. Default `"cache"`. */
  readonly namespace?: string | undefined
  /** The most entries kept in memory; the least recently used are dropped past it. Default 1,000. */
  readonly capacity?: number | undefined
  /** A budget for the sum of entry sizes in memory (key length plus serialized length). Unbounded by default. */
  readonly maxBytes?: number | undefined
}

/** How long a write or delete heard on the bus is remembered, to refuse an older copy read before it. */
const heardMillis = 30_000

/**
 * Builds a two-layer store over a shared store and a bus; it listens to the bus for the life of the
 * scope.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheBus, CacheStore, TieredStore } from "effect-cachekit"
 *
 * const store = Effect.gen(function* () {
 *   const shared = yield* CacheStore.CacheStore
 *   const bus = yield* CacheBus.CacheBus
 *   return yield* TieredStore.make(shared, bus, { namespace: "app", capacity: 1_000 })
 * })
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (
  shared: CacheStore.CacheStore,
  bus: CacheBus.CacheBus,
  options: Options = {}
): Effect.Effect<CacheStore.CacheStore, never, Scope.Scope> =>
  Effect.gen(function*() {
    const namespace = options.namespace ?? "cache"
    const capacity = options.capacity ?? 1_000
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new RangeError(`TieredStore capacity must be a positive integer, got ${capacity}`)
    }
    const sized = options.maxBytes !== undefined
    const memory = new LRUCache<string, CacheEntry.Live>({ max: capacity, ...(sized ? { maxSize: options.maxBytes! } : {}) })
    /** Writes and deletes heard of (key → newest version, until when it is kept), oldest first. */
    const heard = new Map<string, { version: number; until: number }>()
    const maxHeard = Math.max(capacity, 10_000)
    /** Bumped by every gap, resumption and clear: a read under way across one is not kept. */
    let epoch = 0
    /** Subscribed and not in a gap. */
    let listening = false
    /** Copies held from before the last resumption: each is checked on its next read. */
    let suspects: Set<string> | undefined
    const unsharedLabels = [MetricLabel.make("cache", namespace), MetricLabel.make("store", "tiered")]
    const unshared = () => Metrics.unsharedWrites.unsafeUpdate(1, unsharedLabels)

    const trusted = () => listening && bus.trusted()

    /** The copy under `key` while physically alive at `now`. */
    const alive = (key: string, now: number): CacheEntry.Live | undefined => {
      const entry = memory.get(key)
      if (entry === undefined) return undefined
      if (entry.staleUntil <= now) {
        memory.delete(key)
        return undefined
      }
      return entry
    }

    const drop = (key: string) => {
      memory.delete(key)
      unsuspect(key)
    }

    const unsuspect = (key: string) => {
      if (suspects === undefined) return
      suspects.delete(key)
      if (suspects.size === 0) suspects = undefined
    }

    /** Remembers that `key` reached `version` elsewhere, and drops any older copy. */
    const hear = (key: string, version: number) => {
      const known = heard.get(key)
      if (known === undefined || known.version < version) {
        heard.delete(key)
        const at = performance.now()
        heard.set(key, { version, until: at + heardMillis })
        if (heard.size > maxHeard) {
          const [oldest, record] = heard.entries().next().value!
          heard.delete(oldest)
          // Forgotten before its time (a burst of messages): a read under way might have needed it.
          if (record.until > at) epoch++
        }
      }
      const entry = memory.peek(key)
      if (entry !== undefined && entry.version < version) drop(key)
    }

    /** Keeps `entry` unless the epoch moved since `mark`, or a newer version is known or held. */
    const keep = (key: string, entry: CacheEntry.Live, mark: number) => {
      if (mark !== epoch || entry.version <= 0) return drop(key)
      const known = heard.get(key)
      if (known !== undefined) {
        if (known.until <= performance.now()) heard.delete(key)
        else if (known.version > entry.version) return
      }
      const held = memory.peek(key)
      if (held !== undefined && held.version > entry.version) return
      put(key, entry)
      unsuspect(key)
    }

    const put = (key: string, entry: CacheEntry.Live) => {
      const size = Math.max(1, key.length + entry.size)
      if (!sized) memory.set(key, entry)
      else if (size > options.maxBytes!) drop(key)
      else memory.set(key, entry, { size })
    }

    const clearMemory = (prefix: string) => {
      epoch++
      for (const key of Array.from(memory.keys())) {
        if (key.startsWith(prefix)) drop(key)
      }
    }

    yield* bus.subscribe(namespace, {
      onMessage: (message) => {
        if (message._tag === "Clear") return clearMemory(message.prefix)
        for (const [key, version] of message.entries) hear(key, version)
      },
      onGap: () => {
        listening = false
        epoch++
      },
      onResume: () => {
        epoch++
        suspects = memory.size === 0 ? undefined : new Set(memory.keys())
        listening = true
      }
    })

    const withNow = <A, E>(f: (now: number) => Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.clockWith((clock) => f(clock.unsafeCurrentTimeMillis()))

    /** What memory may serve without asking the shared tier. */
    const getNow = (key: string, now: number): CacheEntry.Live | undefined => {
      if (!trusted() || (suspects !== undefined && suspects.has(key))) return undefined
      return alive(key, now)
    }

    /** A shared read checked against memory: the copy when its version matches (no decoding), else what the shared tier holds. */
    const reconcile = (key: string, found: Option.Option<CacheEntry.Stored>, now: number): Option.Option<CacheEntry.Stored> => {
      const copy = memory.peek(key)
      if (copy === undefined) return found
      if (Option.isSome(found) && !CacheStore.isLive(found.value) && CacheEntry.versionOf(found.value) === copy.version) {
        unsuspect(key)
        return copy.staleUntil > now ? Option.some(copy) : Option.none()
      }
      drop(key)
      return found
    }

    const envelope = (operation: StoreError["operation"], key: string, stored: CacheEntry.Stored): Uint8Array | StoreError => {
      if (!CacheStore.isLive(stored)) return stored
      return CacheEntry.envelopeOf(stored) ??
        new StoreError({ reason: "Backend", operation, key, store: "tiered", cause: "a live entry without its envelope cannot be shared" })
    }

    /**
     * After a shared write: memory keeps the live entry with the version it got; it drops its copy
     * when bytes were written, or the write was a removal or was skipped (a newer write or delete).
     */
    const afterWrite = (key: string, stored: CacheEntry.Stored, bytes: Uint8Array, mark: number) => {
      const version = CacheEntry.versionOf(bytes)
      if (!CacheStore.isLive(stored) || version <= 0) {
        // A removal (ttl of zero or less), a skipped write, or bytes: whatever is held may be older.
        epoch++
        return drop(key)
      }
      stored.version = version
      keep(key, stored, mark)
    }

    /** The shared tier refused or missed a write: memory keeps it anyway (counted), the caller hears the error. */
    const unsharedWrite = (key: string, stored: CacheEntry.Stored, error: StoreError, now: number) => {
      if (error.reason === "TooLarge" || !CacheStore.isLive(stored) || stored.staleUntil <= now) {
        drop(key)
        return Effect.fail(error)
      }
      unshared()
      stored.version = Math.max(Math.floor(now * 1000), (memory.peek(key)?.version ?? 0) + 1)
      put(key, stored)
      // Its version is this machine's guess: served only while Redis cannot be asked (fallback), and
      // checked against Redis on the first read that reaches it.
      ;(suspects ??= new Set()).add(key)
      return Effect.fail(error)
    }

    /** After a delete (done or not): memory drops its copies, and a read under way cannot bring them back. */
    // Its version is Redis's, which this instance does not learn: a read under way (of the removed
    // value) is refused by moving the epoch.
    const forget = (keys: ReadonlyArray<string>) =>
      Effect.sync(() => {
        epoch++
        for (const key of keys) drop(key)
      })

    const set: CacheStore.CacheStore["set"] = (key, stored, ttl, wait, since) =>
      withNow((now) => {
        const bytes = envelope("set", key, stored)
        if (bytes instanceof StoreError) return Effect.fail(bytes)
        const mark = epoch
        return shared.set(key, bytes, ttl, wait, since).pipe(
          Effect.matchEffect({
            onFailure: (error) => unsharedWrite(key, stored, error, now),
            onSuccess: () => Effect.sync(() => afterWrite(key, stored, bytes, mark))
          })
        )
      })

    /**
     * The memory tier alone, for keyspaces kept there (`tier: "local"`): live values in this instance,
     * versioned on the shared store's clock (a lower bound of it); served only while the bus is trusted
     * (nothing can be checked), and its deletes and clears are published so the other instances drop
     * their copies.
     */
    const localVersion = Effect.map(shared.currentVersion ?? Effect.succeed(undefined), (version) => version ?? Date.now() * 1000)
    const localWrite = (key: string, stored: CacheEntry.Stored, ttl: Duration.Duration | undefined, version: number, now: number) => {
      const millis = CacheStore.ttlMillis(ttl)
      if (millis !== undefined && millis <= 0) return drop(key)
      // Bytes (a claim's marker, an envelope) are kept as the value of a live entry that expires with them.
      const expiry = millis === undefined ? Infinity : now + millis
      const entry = CacheStore.isLive(stored)
        ? stored
        : CacheEntry.Live.make(stored, { fingerprint: "bytes0000000", freshUntil: expiry, staleUntil: expiry, size: stored.length })
      entry.version = Math.max(version, (memory.peek(key)?.version ?? 0) + 1)
      put(key, entry)
      unsuspect(key)
    }
    // A delete of a memory-only key goes through the shared store's delete, whose script publishes it
    // with Redis's own time: every copy elsewhere was written before that (its version is a lower bound
    // of Redis's time then), so every instance drops it.
    const forgetLocally = (keys: ReadonlyArray<string>) =>
      Effect.suspend(() => {
        let removed = 0
        for (const key of keys) {
          if (memory.has(key)) removed++
          drop(key)
        }
        return Effect.as(shared.deleteMany(keys), removed)
      })
    const local = CacheStore.make({
      name: "tiered-local",
      capabilities: { inProcess: true, liveValues: true, atomicAdd: true, nativeTtl: false, assignsVersions: true },
      get: (key) => withNow((now) => Effect.succeed(Option.fromNullable(getNow(key, now) as CacheEntry.Stored | undefined))),
      getNow,
      getMany: (keys) => withNow((now) => Effect.succeed(keys.map((key) => Option.fromNullable(getNow(key, now) as CacheEntry.Stored | undefined)))),
      set: (key, stored, ttl) => withNow((now) => Effect.map(localVersion, (version) => localWrite(key, stored, ttl, version, now))),
      setMany: (entries) =>
        withNow((now) =>
          Effect.map(localVersion, (version) => {
            for (const entry of entries) localWrite(entry.key, entry.value, entry.ttl, version, now)
          })
        ),
      add: (key, stored, ttl) =>
        withNow((now) => {
          if (alive(key, now) !== undefined) return Effect.succeed(false)
          return Effect.map(localVersion, (version) => {
            // Checked again after the version's read, so two adds cannot both win.
            if (alive(key, now) !== undefined) return false
            localWrite(key, stored, ttl, version, now)
            return true
          })
        }),
      delete: (key) => Effect.map(forgetLocally([key]), (removed) => removed > 0),
      deleteMany: (keys) => forgetLocally(keys),
      has: (key) => withNow((now) => Effect.succeed(getNow(key, now) !== undefined)),
      // This instance's copy only: another instance's memory holds a copy of its own, with its own ttl.
      expire: (key, ttl, now, since) =>
        Effect.suspend(() => {
          const entry = alive(key, now)
          if (entry === undefined || (since !== undefined && entry.version > since)) return Effect.succeed(false)
          const after = CacheStore.expiryAfter(entry, ttl, now)
          const renewed = CacheEntry.Live.make(entry.value, {
            fingerprint: entry.fingerprint,
            freshUntil: after.freshUntil,
            staleUntil: after.staleUntil,
            tags: entry.tags,
            isFailure: entry.isFailure,
            size: entry.size
          })
          return Effect.map(localVersion, (version) => {
            localWrite(key, renewed, after.millis === undefined ? undefined : Duration.millis(after.millis), version, now)
            return true
          })
        }),
      clear: (prefix) =>
        Effect.flatMap(localVersion, (version) => {
          const removed = Array.from(memory.keys()).filter((key) => key.startsWith(prefix)).length
          clearMemory(prefix)
          // A clear drops every copy under the prefix whatever its version.
          return Effect.as(bus.publish(namespace, { _tag: "Clear", origin: bus.origin, prefix, version }), removed)
        })
    })

    const store = CacheStore.make({
      name: "tiered",
      capabilities: {
        inProcess: false,
        liveValues: false,
        atomicAdd: shared.capabilities.atomicAdd,
        nativeTtl: shared.capabilities.nativeTtl,
        assignsVersions: shared.capabilities.assignsVersions,
        operationBound: shared.capabilities.operationBound
      },
      get: (key) =>
        withNow((now) => {
          const copy = getNow(key, now)
          if (copy !== undefined) return Effect.succeed(Option.some<CacheEntry.Stored>(copy))
          return Effect.map(shared.get(key), (found) => reconcile(key, found, now))
        }),
      getNow,
      getMany: (keys) =>
        withNow((now) => {
          const out = new Array<Option.Option<CacheEntry.Stored>>(keys.length)
          const rest: Array<number> = []
          for (let i = 0; i < keys.length; i++) {
            const copy = getNow(keys[i]!, now)
            if (copy === undefined) rest.push(i)
            else out[i] = Option.some(copy)
          }
          if (rest.length === 0) return Effect.succeed(out)
          return Effect.map(shared.getMany(rest.map((i) => keys[i]!)), (found) => {
            rest.forEach((index, j) => out[index] = reconcile(keys[index]!, found[j]!, now))
            return out
          })
        }),
      set,
      setMany: (entries, wait) =>
        withNow((now) => {
          const sent: Array<CacheStore.Entry> = []
          for (const entry of entries) {
            const bytes = envelope("setMany", entry.key, entry.value)
            if (bytes instanceof StoreError) return Effect.fail(bytes)
            sent.push({ key: entry.key, value: bytes, ttl: entry.ttl })
          }
          const mark = epoch
          return shared.setMany(sent, wait).pipe(
            Effect.matchEffect({
              onFailure: (error) =>
                Effect.forEach(entries, (entry) => Effect.ignore(unsharedWrite(entry.key, entry.value, error, now)), { discard: true }).pipe(
                  Effect.zipRight(Effect.fail(error))
                ),
              onSuccess: () =>
                Effect.sync(() => entries.forEach((entry, i) => afterWrite(entry.key, entry.value, sent[i]!.value as Uint8Array, mark)))
            })
          )
        }),
      add: (key, stored, ttl, wait) =>
        Effect.suspend(() => {
          const bytes = envelope("add", key, stored)
          if (bytes instanceof StoreError) return Effect.fail(bytes)
          const mark = epoch
          return Effect.tap(shared.add(key, bytes, ttl, wait), (added) => added ? afterWrite(key, stored, bytes, mark) : undefined)
        }),
      delete: (key) => Effect.ensuring(shared.delete(key), forget([key])),
      deleteMany: (keys) => Effect.ensuring(shared.deleteMany(keys), forget(keys)),
      has: (key) =>
        withNow((now) => getNow(key, now) !== undefined ? Effect.succeed(true) : shared.has(key)),
      clear: (prefix) => Effect.ensuring(shared.clear(prefix), Effect.sync(() => clearMemory(prefix))),
      // Counters live in the shared tier only: memory never keeps one, so there is no copy to drop.
      ...(shared.capabilities.increment ? { increment: shared.increment, counter: shared.counter } : {}),
      // The shared tier rewrites the entry (and its script announces it on the bus); memory drops its
      // copy either way, and a read under way cannot bring it back.
      ...(shared.capabilities.expire ? { expire: (key, ttl, now, since) => Effect.ensuring(shared.expire(key, ttl, now, since), forget([key])) } : {}),
      ...(shared.currentVersion === undefined ? {} : { currentVersion: shared.currentVersion }),
      local: {
        mark: () => epoch,
        remember: keep,
        heard: (key) => heard.get(key)?.version,
        fallback: alive,
        tiers: { local, shared },
        namespace
      }
    })
    // The shared tier's client, if it hands one out.
    return { ...store, capabilities: { ...store.capabilities, raw: shared.capabilities.raw }, raw: shared.raw }
  })

/**
 * The two-layer store as a layer: over the shared store and the bus in context, it provides the
 * {@link CacheStore.CacheStore} the cache uses.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Cache, Redis, RedisBus, RedisStore, TieredStore } from "effect-cachekit"
 *
 * // Cache.layerTiered builds this, plus the Redis lock.
 * const CacheLive = Cache.layer({ namespace: "app" }).pipe(
 *   Layer.provide(TieredStore.layer({ namespace: "app", capacity: 1_000 })),
 *   // The bus in the shared store's context: its write scripts publish on it.
 *   Layer.provide(RedisStore.layer().pipe(Layer.provideMerge(RedisBus.layer()))),
 *   Layer.provide(Redis.layer({ url: "redis://127.0.0.1:6379" }))
 * )
 * ```
 *
 * @since 0.3.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<CacheStore.CacheStore, never, CacheStore.CacheStore | CacheBus.CacheBus> =>
  Layer.scoped(
    CacheStore.CacheStore,
    Effect.flatMap(Effect.zip(CacheStore.CacheStore, CacheBus.CacheBus), ([shared, bus]) => make(shared, bus, options))
  )
