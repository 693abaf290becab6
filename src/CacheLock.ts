/**
 * The lock port: what `getOrSet` uses to run a producer at most once at a time per key across every
 * cache instance that shares a store, and its in-process layer.
 *
 * A lock is leased: it lapses by itself if its holder dies. The holder writes its value through the
 * lock (`release` with a value), which refuses the write once the lease is lost, so a producer that
 * overran its lease never overwrites the value of the holder that took over. Waiters are woken when the
 * lock is released, and poll as a fallback.
 *
 * `CacheLock.layerMemory` serves caches that share one in-process store (several caches in one
 * program, or a test standing in for a fleet); `RedisLock.layer` serves processes sharing a Redis.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { LockError, StoreError } from "./CacheError.js"
import * as CacheStore from "./CacheStore.js"
import * as Waiters from "./internal/waiters.js"

/**
 * A held lock on the entry `key`.
 *
 * @example
 * ```ts
 * import { Effect, Option } from "effect"
 * import { CacheLock } from "effect-cachekit"
 *
 * const held = Effect.flatMap(CacheLock.CacheLock, (lock) => lock.tryAcquire("app:jobs:1", "5 seconds")) // Option<Lease>
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Lease {
  readonly key: string
  readonly token: string
}

/**
 * A value to store when releasing a lease.
 *
 * @example
 * ```ts
 * import { Duration } from "effect"
 * import type { CacheLock } from "effect-cachekit"
 *
 * const write: CacheLock.Write = { value: "ck1:...", ttl: Duration.minutes(5) }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Write {
  readonly value: CacheStore.StoredValue
  readonly ttl: Duration.Duration | undefined
}

/**
 * The lock port. Keys are the entries' store keys.
 *
 * @example
 * ```ts
 * import { Effect, Option } from "effect"
 * import { CacheLock } from "effect-cachekit"
 *
 * const once = Effect.gen(function* () {
 *   const lock = yield* CacheLock.CacheLock
 *   const lease = yield* lock.tryAcquire("app:report:today", "10 seconds")
 *   if (Option.isSome(lease)) yield* lock.release(lease.value, Option.none())
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface CacheLock {
  readonly name: string
  /** Takes the lock on `key` for `lease` if nobody holds it. */
  readonly tryAcquire: (key: string, lease: Duration.DurationInput) => Effect.Effect<Option.Option<Lease>, LockError>
  /** Extends a held lease; `false` when it has been lost. */
  readonly extend: (lease: Lease, duration: Duration.DurationInput) => Effect.Effect<boolean, LockError>
  /**
   * Stores `write` under the lease's key if the lease is still held, releases it, and wakes the key's
   * waiters. Succeeds with whether the value was stored.
   */
  readonly release: (lease: Lease, write: Option.Option<Write>) => Effect.Effect<boolean, LockError | StoreError>
  /** Waits until the lock on `key` is released, or `timeout` passes; a hint to look again, never a failure. */
  readonly awaitRelease: (key: string, timeout: Duration.DurationInput) => Effect.Effect<void>
}

/**
 * The lock service tag. When a `CacheLock` is in context, `Cache.make` uses it in `getOrSet`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheLock } from "effect-cachekit"
 *
 * const name = Effect.map(CacheLock.CacheLock, (lock) => lock.name)
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const CacheLock: Context.Tag<CacheLock, CacheLock> = Context.GenericTag<CacheLock>("effect-cachekit/CacheLock")

/**
 * Whether a key's producer may run more than once when the lock cannot be had in time:
 * `"at-least-once"` (the default) runs the producer anyway; `"at-most-once"` fails with a `LockError`.
 *
 * @example
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { CacheKey, Keyspace, type CacheLock } from "effect-cachekit"
 *
 * const Reports = Keyspace.make({ name: "reports", key: CacheKey.string, value: Schema.String })
 * const mode: CacheLock.Mode = "at-most-once"
 * const report = Reports.getOrSet("today", Effect.succeed("..."), { lockMode: mode })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Mode = "at-least-once" | "at-most-once"

/** @internal */
export const randomToken = (): string => {
  const bytes = new Uint8Array(16)
  globalThis.crypto.getRandomValues(bytes)
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")
}

/**
 * An in-process lock over the store in context: leases expire by Effect's `Clock` (so `TestClock`
 * drives take-overs in tests), and a release checks the lease and writes to the store in one step. That
 * step is atomic only over an in-process store (the memory store): it is meant for caches sharing one
 * process, not for a remote store, which needs a lock of its own (`RedisLock`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheLock, MemoryStore } from "effect-cachekit"
 *
 * const lock = CacheLock.makeMemory.pipe(Effect.provide(MemoryStore.layer()))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<CacheLock, never, CacheStore.CacheStore> = Effect.map(
  CacheStore.CacheStore,
  (store) => {
    const held = new Map<string, { readonly token: string; expiresAt: number }>()
    const waiters = Waiters.make()

    const holder = (key: string, now: number) => {
      const lock = held.get(key)
      if (lock !== undefined && lock.expiresAt <= now) {
        held.delete(key)
        return undefined
      }
      return lock
    }

    const withNow = <A, E, R>(f: (now: number) => Effect.Effect<A, E, R>) =>
      Effect.clockWith((clock) => f(clock.unsafeCurrentTimeMillis()))

    return {
      name: "memory",
      tryAcquire: (key, lease) =>
        withNow((now) => {
          if (holder(key, now) !== undefined) return Effect.succeedNone
          const token = randomToken()
          held.set(key, { token, expiresAt: now + Duration.toMillis(Duration.decode(lease)) })
          return Effect.succeedSome({ key, token })
        }),
      extend: (lease, duration) =>
        withNow((now) => {
          const lock = holder(lease.key, now)
          if (lock === undefined || lock.token !== lease.token) return Effect.succeed(false)
          lock.expiresAt = now + Duration.toMillis(Duration.decode(duration))
          return Effect.succeed(true)
        }),
      release: (lease, write) =>
        withNow((now) => {
          const lock = holder(lease.key, now)
          const isHeld = lock !== undefined && lock.token === lease.token
          if (isHeld) held.delete(lease.key)
          const stored = isHeld && Option.isSome(write)
            ? Effect.as(store.set(lease.key, write.value.value, write.value.ttl), true)
            : Effect.succeed(false)
          return Effect.ensuring(stored, Effect.sync(() => waiters.wake(lease.key)))
        }),
      awaitRelease: waiters.wait
    } satisfies CacheLock
  }
)

/**
 * The in-process lock as a layer.
 *
 * @example
 * ```ts
 * import { Context, Layer } from "effect"
 * import { Cache, CacheLock, MemoryStore } from "effect-cachekit"
 *
 * // Two caches sharing one store and one lock: a key's producer runs once for both.
 * class Other extends Context.Tag("app/Other")<Other, Cache.Service>() {}
 * const Caches = Layer.mergeAll(Cache.layer({ namespace: "app" }), Layer.scoped(Other, Cache.make({ namespace: "app" }))).pipe(
 *   Layer.provide(CacheLock.layerMemory),
 *   Layer.provide(MemoryStore.layer())
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<CacheLock, never, CacheStore.CacheStore> = Layer.effect(CacheLock, makeMemory)
