/**
 * The lock port: what `getOrSet` uses to run a producer at most once at a time per key across every
 * cache instance that shares a store, and its in-process layer.
 *
 * A lock is leased: it lapses by itself if its holder dies. The holder writes its value through the
 * lock (`release` with a value), which refuses the write once the lease is lost, so a producer that
 * overran its lease never overwrites the value of the holder that took over. Waiters are woken when the
 * lock is released, and poll as a fallback.
 *
 * `MemoryLock.layer` (`CacheLock/Memory.ts`) serves caches that share one in-process store (several
 * caches in one program, or a test standing in for a fleet); `RedisLock.layer` (`CacheLock/Redis.ts`)
 * serves processes sharing a Redis; the memcached lock (`effect-cachekit/CacheLock/Memcached`, its own
 * subpath) serves processes sharing a memcached, with whole-second leases, a token check and a write
 * in two steps rather than one script, and waiters in other processes that poll.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as CacheEntry from "./CacheEntry.js"
import type { LockError, StoreError } from "./CacheError.js"

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
 * declare const envelope: Uint8Array
 * const write: CacheLock.Write = { value: envelope, ttl: Duration.minutes(5) }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Write {
  readonly value: CacheEntry.Stored
  readonly ttl: Duration.Duration | undefined
  /**
   * Makes the write conditional, as `CacheStore`'s `set` takes it: skipped when the key was written
   * or deleted after this version.
   */
  readonly since?: number | undefined
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
  /**
   * The lock lives in this process (no I/O, leases on the Effect Clock): the cache neither races its
   * operations against a timer nor waits for it on real time. A lock on a server (`false`) has its
   * leases on the server's clock, so the cache's watchdog and lock waits run on real time.
   */
  readonly inProcess: boolean
  /**
   * A bound every operation of the lock settles within (succeeding or failing with a `"Timeout"`), if
   * the lock enforces one itself (Redis: the client's `commandTimeout`). When it is no longer than the
   * cache's timeout, the cache does not race the lock's operations against a timer of its own: a race
   * runs the operation in a fiber of its own, which starts only after every fiber already scheduled
   * (a release would wait for all the callers its run has just answered).
   */
  readonly operationBound?: Duration.Duration | undefined
  /** Takes the lock on `key` for `lease` if nobody holds it. */
  readonly tryAcquire: (key: string, lease: Duration.DurationInput) => Effect.Effect<Option.Option<Lease>, LockError>
  /**
   * Takes the locks on `keys` (distinct) that nobody holds, each for `lease`, in one round trip where
   * the backend can (Redis: one script per hash slot): one answer per key, in order, `None` where
   * another holder has it. Optional: {@link tryAcquireMany} falls back to `tryAcquire` per key. A
   * failure may leave some of the keys taken: the lock cleans them up as it does after an acquire
   * whose reply never came.
   */
  readonly tryAcquireMany?: ((
    keys: ReadonlyArray<string>,
    lease: Duration.DurationInput
  ) => Effect.Effect<Array<Option.Option<Lease>>, LockError>) | undefined
  /** Extends a held lease; `false` when it has been lost. */
  readonly extend: (lease: Lease, duration: Duration.DurationInput) => Effect.Effect<boolean, LockError>
  /**
   * Stores `write` under the lease's key if the lease is still held, releases it, and wakes the key's
   * waiters. Succeeds with whether the lease was still held: the write, if any, was then stored, or
   * skipped because the key changed after `write.since`. `wait` is how long the caller waits: a lock
   * that can tell (Redis) does not store a value that reaches it after that (the lease is released
   * all the same), failing with a `StoreError` of reason `"Timeout"`.
   */
  readonly release: (
    lease: Lease,
    write: Option.Option<Write>,
    wait?: Duration.Duration | undefined
  ) => Effect.Effect<boolean, LockError | StoreError>
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
 * Takes the locks on `keys` (distinct) that nobody holds: with the lock's own `tryAcquireMany` (one
 * round trip), else with `tryAcquire` for every key at once. One answer per key, in order, `None` where
 * another holder has it.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheLock } from "effect-cachekit"
 *
 * const leases = Effect.flatMap(CacheLock.CacheLock, (lock) =>
 *   CacheLock.tryAcquireMany(lock, ["app:users:1", "app:users:2"], "5 seconds")) // Array<Option<Lease>>
 * ```
 *
 * @since 0.3.0
 * @category combinators
 */
export const tryAcquireMany = (
  lock: CacheLock,
  keys: ReadonlyArray<string>,
  lease: Duration.DurationInput
): Effect.Effect<Array<Option.Option<Lease>>, LockError> =>
  keys.length === 0
    ? Effect.succeed([])
    : lock.tryAcquireMany !== undefined
    ? lock.tryAcquireMany(keys, lease)
    : Effect.flatMap(
      Effect.forEach(keys, (key) => Effect.either(lock.tryAcquire(key, lease)), { concurrency: "unbounded" }),
      (answers) => {
        const failed = answers.find((answer): answer is Either.Left<LockError, Option.Option<Lease>> => answer._tag === "Left")
        if (failed === undefined) return Effect.succeed(answers.map((answer) => (answer as Either.Right<LockError, Option.Option<Lease>>).right))
        // All or nothing: the leases taken are given back before the failure is reported.
        const taken = answers.flatMap((answer) => answer._tag === "Right" && answer.right._tag === "Some" ? [answer.right.value] : [])
        return Effect.zipRight(
          Effect.forEach(taken, (held) => Effect.ignore(lock.release(held, Option.none())), { concurrency: "unbounded", discard: true }),
          Effect.fail(failed.left)
        )
      }
    )

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

/**
 * @internal
 * A random lease token.
 */
export const randomToken = (): string => {
  const bytes = new Uint8Array(16)
  globalThis.crypto.getRandomValues(bytes)
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")
}
