/**
 * An in-process lock over the store in context: for caches that share one in-process store (several
 * caches in one program, or a test standing in for a fleet).
 *
 * Leases expire by Effect's `Clock` (so `TestClock` drives take-overs in tests), and a release checks
 * the lease and writes to the store in one step. That step is atomic only over an in-process store
 * (the memory store): a remote store needs a lock of its own (`RedisLock`).
 *
 * @since 0.2.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as CacheLock from "../CacheLock.js"
import * as CacheStore from "../CacheStore.js"
import * as Waiters from "../internal/waiters.js"

/**
 * Builds the in-process lock over the store in context.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MemoryLock, MemoryStore } from "effect-cachekit"
 *
 * const lock = MemoryLock.make.pipe(Effect.provide(MemoryStore.layer()))
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make: Effect.Effect<CacheLock.CacheLock, never, CacheStore.CacheStore> = Effect.map(
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
      inProcess: true,
      tryAcquire: (key, lease) =>
        withNow((now) => {
          if (holder(key, now) !== undefined) return Effect.succeedNone
          const token = CacheLock.randomToken()
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
            ? Effect.as(store.set(lease.key, write.value.value, write.value.ttl, undefined, write.value.since), true)
            : Effect.succeed(false)
          return Effect.ensuring(stored, Effect.sync(() => waiters.wake(lease.key)))
        }),
      awaitRelease: waiters.wait
    } satisfies CacheLock.CacheLock
  }
)

/**
 * The in-process lock as a layer.
 *
 * @example
 * ```ts
 * import { Context, Layer } from "effect"
 * import { Cache, MemoryLock, MemoryStore } from "effect-cachekit"
 *
 * // Two caches sharing one store and one lock: a key's producer runs once for both.
 * class Other extends Context.Tag("app/Other")<Other, Cache.Service>() {}
 * const Caches = Layer.mergeAll(Cache.layer({ namespace: "app" }), Layer.scoped(Other, Cache.make({ namespace: "app" }))).pipe(
 *   Layer.provide(MemoryLock.layer),
 *   Layer.provide(MemoryStore.layer())
 * )
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer: Layer.Layer<CacheLock.CacheLock, never, CacheStore.CacheStore> = Layer.effect(CacheLock.CacheLock, make)
