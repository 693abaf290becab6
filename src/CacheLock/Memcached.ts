/**
 * The distributed lock over memcached: `getOrSet` runs a key's producer at most once at a time across
 * every process sharing the memcached, while memcached keeps the lock key. Reached as
 * `effect-cachekit/CacheLock/Memcached`, never from the package's main module (`memcache-client` is an
 * optional peer dependency); it is used with the memcached store (`effect-cachekit/CacheStore/Memcached`).
 *
 * - Acquire: `add <lock> <token>` with the lease as the key's expiration. Memcached counts expirations
 *   in whole seconds of a clock that ticks once a second, so a key given N seconds may go up to a
 *   second early: the lease is sent as its seconds rounded up, plus one. A lease is held for at least
 *   its length and less than two seconds more; a lease under a second is held for one to two seconds.
 * - Extend: `gets` the lock key, and if it still holds this lease's token, `cas` it with the new
 *   expiration: a lost lease is never extended.
 * - Release: `gets` the lock key; if it holds this lease's token, the value is written through the
 *   store (conditional on `write.since`: a write or delete of the key after that version wins), then
 *   the lock key is removed with `cas` to an expiration in the past, which memcached applies only if the
 *   key is unchanged since the `gets`: a lock another holder took meanwhile is never removed. (The
 *   classic protocol has no conditional delete, and `memcache-client` cannot send the meta protocol's
 *   `md <key> C<cas>`.) The three steps together settle within `timeout`.
 * - An acquire whose caller was not told it holds the lock (timed out, interrupted, failed: a lost
 *   reply fails, yet its `add` may land later) is undone, token-checked, on every outcome but a
 *   definite `NOT_STORED`, tried until memcached answers while the lease lasts.
 * - Waiters: memcached has no pub/sub. A release wakes the waiters of this process at once; waiters
 *   in other processes look at the lock key every few tens of milliseconds (a quarter of their wait,
 *   at least 20 ms, at most 250 ms) until it is gone or their wait ends.
 * - A lock key is an internal key of the entry's namespace (`<namespace>::lock:<entry key>`, hashed as
 *   the store hashes keys memcached cannot take): no keyspace operation or `clear` touches it.
 *
 * What it does not guarantee: memcached may evict a lock key under memory pressure (an LRU cache
 * evicts any key, however long its ttl), and a restarted memcached has forgotten every lock: a second
 * producer may then run (`lockMode: "at-most-once"` holds only while memcached keeps the key). A
 * value is never written through a lease its holder knows it lost, but the check and the write are
 * two steps, not one as in Redis's release script: a holder whose lease lapses between them writes
 * anyway, and only the write's condition (`since`) keeps it from replacing a newer value.
 *
 * @since 0.4.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { MemcacheClient, type CasRetrievalCommandResponse } from "memcache-client"
import { LockError, StoreError } from "../CacheError.js"
import * as CacheLock from "../CacheLock.js"
import * as CacheStore from "../CacheStore.js"
import * as MemcachedStore from "../CacheStore/Memcached.js"
import { sleepReal, timeoutRealTo } from "../internal/realTime.js"
import * as Waiters from "../internal/waiters.js"

/**
 * Options of the memcached lock: the server and bounds, as the memcached store takes them (its own
 * client, when it makes one).
 *
 * @example
 * ```ts
 * import type * as MemcachedLock from "effect-cachekit/CacheLock/Memcached"
 *
 * const options: MemcachedLock.Options = { server: "127.0.0.1:11211", timeout: "250 millis" }
 * ```
 *
 * @since 0.4.0
 * @category models
 */
export interface Options {
  /** The server, as `"host:port"`. Default `"127.0.0.1:11211"`. */
  readonly server?: string | undefined
  /**
   * The bound on each lock operation, all its round trips included (a release's check, write and
   * removal together, under one timer); past it the operation fails with reason `"Timeout"`: a
   * `StoreError` when a release's write was under way, else a `LockError`. Default 500 ms.
   */
  readonly timeout?: Duration.DurationInput | undefined
  /** The bound on establishing a connection. Default 1 second. */
  readonly connectTimeout?: Duration.DurationInput | undefined
}

/** @internal The lock key of an entry key: internal to its namespace, as memcached takes it. */
export const lockKeyOf = (key: string): string =>
  MemcachedStore.physicalKey(CacheStore.internalKey(CacheStore.namespaceOf(key), "lock", key))

/**
 * @internal
 * The expiration a lease is sent with: its seconds rounded up, plus one (memcached's clock ticks once
 * a second, so a key may go up to a second early); over 30 days, an absolute time.
 */
export const leaseExpiration = (lease: Duration.DurationInput, nowMillis: number): number => {
  const millis = Math.max(1, Math.ceil(Duration.toMillis(Duration.decode(lease))))
  const expiration = MemcachedStore.expirationOf(Duration.seconds(Math.ceil(millis / 1000) + 1), nowMillis)
  return expiration === "remove" ? 1 : expiration
}

/** A reply of memcached's that is an outcome, not a failure. */
const isReply = (cause: unknown, ...replies: ReadonlyArray<string>): boolean =>
  cause instanceof Error && replies.includes(cause.message)

const textOf = (value: unknown): string => Buffer.isBuffer(value) ? value.toString("latin1") : String(value)

const millisOf = (input: Duration.DurationInput | undefined, fallback: Duration.DurationInput): number =>
  Duration.toMillis(Duration.decode(input ?? fallback))

/** The longest pause between two tries to undo an acquire of unknown outcome. */
const maxUndoPause = 1_000

/**
 * Builds the lock over a client, writing values through `store`. The scope ends the clean-ups still
 * waiting to undo acquires of unknown outcome.
 */
const build = (client: MemcacheClient, store: CacheStore.CacheStore, options: Options): Effect.Effect<CacheLock.CacheLock, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(Effect.sync(() => ({ closed: false, timers: new Set<ReturnType<typeof setTimeout>>() })), (undoing) =>
      Effect.sync(() => {
        undoing.closed = true
        for (const timer of undoing.timers) clearTimeout(timer)
        undoing.timers.clear()
      })),
    (undoing) => buildWith(client, store, options, undoing)
  )

const buildWith = (
  client: MemcacheClient,
  store: CacheStore.CacheStore,
  options: Options,
  undoing: { closed: boolean; readonly timers: Set<ReturnType<typeof setTimeout>> }
): CacheLock.CacheLock => {
  const timeoutMillis = millisOf(options.timeout, "500 millis")
  const waiters = Waiters.make()

  const lockError = (operation: LockError["operation"], key: string, cause: unknown): LockError => {
    if (cause instanceof LockError) return cause
    return new LockError({ reason: MemcachedStore.classify(cause) === "Timeout" ? "Timeout" : "Unavailable", operation, key, cause })
  }

  /**
   * Runs one operation: its failures typed, the whole of it bounded by one timer of real time. An
   * operation cut short goes on in the background, its commands bounded by the client's own timeout.
   */
  const run = <A>(operation: LockError["operation"], key: string, body: () => Promise<A>): Effect.Effect<A, LockError> =>
    Effect.async<A, LockError>((resume) => {
      let settled = false
      const settle = (outcome: Effect.Effect<A, LockError>) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        resume(outcome)
      }
      const timer = setTimeout(
        () => settle(Effect.fail(new LockError({ reason: "Timeout", operation, key, cause: `no answer within ${timeoutMillis} ms` }))),
        timeoutMillis
      )
      let running: Promise<A>
      try {
        running = body()
      } catch (cause) {
        running = Promise.reject(cause)
      }
      running.then((value) => settle(Effect.succeed(value)), (cause: unknown) => settle(Effect.fail(lockError(operation, key, cause))))
      return Effect.sync(() => {
        settled = true
        clearTimeout(timer)
      })
    })

  /** The lock key's reply to `gets` when it holds `token`, else `undefined`. */
  const heldBy = async (lockKey: string, token: string): Promise<CasRetrievalCommandResponse<unknown> | undefined> => {
    const found = await client.gets<CasRetrievalCommandResponse<unknown> | undefined>(lockKey)
    return found !== undefined && found.casUniq !== undefined && textOf(found.value) === token ? found : undefined
  }

  /** Removes the lock key if it is unchanged since `found` was read: a `cas` to an expiration in the past. */
  const removeIfUnchanged = (lockKey: string, found: CasRetrievalCommandResponse<unknown>): Promise<boolean> =>
    client.cas(lockKey, "", { casUniq: found.casUniq, lifetime: -1 }).then(() => true, (cause: unknown) => {
      // EXISTS: another holder took it (our lease lapsed); NOT_FOUND: it lapsed. Nothing of ours to remove.
      if (isReply(cause, "EXISTS", "NOT_FOUND")) return false
      throw cause
    })

  /**
   * Undoes an acquire whose caller was not told it holds the lock (cut short, interrupted, or failed:
   * a lost reply fails, yet the `add` may have landed or may still land, e.g. from a frozen
   * memcached's socket buffer once it wakes): the lock key is removed if it holds `token` (token-checked
   * with `gets` and `cas`, so always safe). Tried until memcached answers, with pauses growing to 1 s,
   * while the lease lasts (past it the key lapses by itself) and the lock's scope is open. `known`: the
   * acquire's outcome is known (its reply came); when it is not, a look that finds no key looks once more
   * a second later, for an `add` still on its way.
   */
  const undo = (lockKey: string, token: string, leaseMillis: number, known: boolean): void => {
    const until = performance.now() + (Math.ceil(leaseMillis / 1000) + 1) * 1000
    let pause = 50
    let lookedAgain = known
    const later = (millis: number) => {
      if (undoing.closed || performance.now() + millis > until) return
      const timer = setTimeout(() => {
        undoing.timers.delete(timer)
        attempt()
      }, millis)
      timer.unref?.()
      undoing.timers.add(timer)
    }
    const attempt = (): void => {
      if (undoing.closed) return
      heldBy(lockKey, token).then(async (found) => {
        if (found !== undefined) {
          await removeIfUnchanged(lockKey, found)
        } else if (!lookedAgain) {
          lookedAgain = true
          later(maxUndoPause)
        }
      }).catch(() => {
        pause = Math.min(maxUndoPause, pause * 2)
        later(pause)
      })
    }
    attempt()
  }

  /** Whether memcached still holds a lock on `key` (any holder's). */
  const isHeld = (key: string): Promise<boolean> =>
    client.get<{ value: unknown } | undefined>(lockKeyOf(key)).then((found) => found !== undefined)

  const lock: CacheLock.CacheLock = {
    name: "memcached",
    inProcess: false,
    operationBound: Duration.millis(timeoutMillis),
    tryAcquire: (key, lease) =>
      Effect.suspend(() => {
        const token = CacheLock.randomToken()
        const lockKey = lockKeyOf(key)
        const leaseMillis = Duration.toMillis(Duration.decode(lease))
        let adding: Promise<boolean> | undefined
        return run("lock", key, () =>
          adding = client.add(lockKey, token, { lifetime: leaseExpiration(lease, Date.now()) }).then(() => true, (cause: unknown) => {
            if (isReply(cause, "NOT_STORED")) return false
            throw cause
          })).pipe(
            // Cut short, interrupted or failed, the add may have landed or may still land: once it has
            // answered, the lock is undone if it holds this token, on every outcome but a definite
            // NOT_STORED. A failure is no answer (a lost reply fails, and its add may run later).
            Effect.onExit((exit) =>
              Exit.isSuccess(exit) ? Effect.void : Effect.sync(() => {
                void adding?.then(
                  (taken) => taken ? undo(lockKey, token, leaseMillis, true) : undefined,
                  () => undo(lockKey, token, leaseMillis, false)
                )
              })
            ),
            Effect.map((taken) => taken ? Option.some({ key, token }) : Option.none())
          )
      }),
    extend: (lease, duration) =>
      run("lock", lease.key, async () => {
        const lockKey = lockKeyOf(lease.key)
        const found = await heldBy(lockKey, lease.token)
        if (found === undefined) return false
        try {
          await client.cas(lockKey, lease.token, { casUniq: found.casUniq, lifetime: leaseExpiration(duration, Date.now()) })
          return true
        } catch (cause) {
          // Changed since the gets: it lapsed, or another holder took it.
          if (isReply(cause, "EXISTS", "NOT_FOUND")) return false
          throw cause
        }
      }),
    // Three steps (the check, the write, the removal) under one timer of `timeout`, so the whole
    // release settles within the bound the lock advertises. Past it the caller fails with a `StoreError`
    // "Timeout" when the write was under way (its fate unknown), else a `LockError` "Timeout"; the release
    // goes on without the caller: it sends no write the caller was not waiting for any more, and removes
    // the lock key if it still can (else the key lapses with its lease).
    //
    // Its answer: whether the lease was held at the check, and so the write, if any, stored (or skipped
    // by its condition). Memcached cannot check and write in one step as the Redis script does: a lease
    // that lapses after the check is found at the removal (the key changed or went). The write was then
    // made through a lease held when it was checked, conditional on its version, so the answer stays
    // `true` (the value is in the store, which is what the cache counts); the lapse is logged, since a
    // second producer may have run meanwhile. A lease lapsed before the check answers `false`, as on Redis.
    release: (lease, write, wait) =>
      Effect.suspend(() => {
        const lockKey = lockKeyOf(lease.key)
        let phase: "check" | "write" | "remove" = "check"
        let abandoned = false
        const step = <A>(body: () => Promise<A>) => Effect.tryPromise({ try: body, catch: (cause) => lockError("unlock", lease.key, cause) })
        const released = Effect.gen(function*() {
          const found = yield* step(() => heldBy(lockKey, lease.token))
          if (found === undefined) return false
          // Held: the value first (so a waiter woken by the release finds it), then the lock key, only
          // if it is unchanged since it was read. A failed write still releases the lock.
          let written: Exit.Exit<void, StoreError> = Exit.void
          if (Option.isSome(write) && !abandoned) {
            phase = "write"
            written = yield* Effect.exit(store.set(lease.key, write.value.value, write.value.ttl, wait, write.value.since))
          }
          phase = "remove"
          const removed = yield* step(() => removeIfUnchanged(lockKey, found))
          if (!removed) {
            yield* Effect.logWarning(
              "effect-cachekit: a memcached lock lapsed while it was released (after its holder's check): " +
                "its value was written through it, conditional on its version; another producer may have run meanwhile"
            )
          }
          return yield* Effect.as(written, true)
        }).pipe(Effect.ensuring(Effect.sync(() => waiters.wake(lease.key))))
        return Effect.flatMap(Effect.forkDaemon(released), (fiber) =>
          timeoutRealTo(
            // A caller that stops waiting otherwise (interrupted: the cache's own bound, or the cache
            // closing) abandons the write as the timer does; the lock key is still removed.
            Effect.onInterrupt(Fiber.join(fiber), () =>
              Effect.sync(() => {
                abandoned = true
              })),
            timeoutMillis,
            Effect.suspend(() => {
              abandoned = true
              return Effect.fail<LockError | StoreError>(
                phase === "write"
                  ? new StoreError({
                    reason: "Timeout",
                    operation: "set",
                    key: lease.key,
                    store: store.name,
                    cause: `the release's write had no answer within the lock's ${timeoutMillis} ms`
                  })
                  : new LockError({ reason: "Timeout", operation: "unlock", key: lease.key, cause: `no answer within ${timeoutMillis} ms` })
              )
            })
          ))
      }),
    // No wake-up messages between processes: this process's releases wake its waiters at once, and the
    // lock key is looked at every quarter of the wait (20 to 250 ms) until it is gone or the wait ends.
    awaitRelease: (key, timeout) =>
      Effect.suspend(() => {
        const millis = Duration.toMillis(Duration.decode(timeout))
        if (!(millis > 0)) return Effect.void
        const deadline = performance.now() + millis
        const step = Math.min(250, Math.max(20, millis / 4))
        const poll: Effect.Effect<void> = Effect.suspend(() => {
          const left = deadline - performance.now()
          if (left <= 0) return Effect.void
          return Effect.zipRight(
            sleepReal(Math.min(step, left)),
            Effect.flatMap(
              Effect.either(run("lock", key, () => isHeld(key))),
              // A failed look is no release: wait on until the deadline.
              (held) => held._tag === "Right" && !held.right ? Effect.void : poll
            )
          )
        })
        return Effect.raceFirst(waiters.wait(key, timeout), poll)
      })
  }
  return lock
}

/**
 * Builds the memcached lock with a client of its own (closed with the scope), writing the holders'
 * values through the store in context (the memcached store).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as MemcachedLock from "effect-cachekit/CacheLock/Memcached"
 * import * as MemcachedStore from "effect-cachekit/CacheStore/Memcached"
 *
 * const lock = MemcachedLock.make({ server: "127.0.0.1:11211" }).pipe(
 *   Effect.provide(MemcachedStore.layer({ server: "127.0.0.1:11211" })),
 *   Effect.scoped
 * )
 * ```
 *
 * @since 0.4.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<CacheLock.CacheLock, never, CacheStore.CacheStore | Scope.Scope> =>
  Effect.flatMap(
    Effect.acquireRelease(
      Effect.sync(() => new MemcacheClient(MemcachedStore.clientSettings(options))),
      (client) => Effect.sync(() => client.shutdown())
    ),
    (client) => Effect.flatMap(CacheStore.CacheStore, (store) => build(client, store, options))
  )

/**
 * The memcached lock as a layer, with a client of its own; provide it with the memcached store (or use
 * {@link layerWithStore}, which shares one client between the two).
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Cache } from "effect-cachekit"
 * import * as MemcachedLock from "effect-cachekit/CacheLock/Memcached"
 * import * as MemcachedStore from "effect-cachekit/CacheStore/Memcached"
 *
 * const CacheLive = Cache.layer({ namespace: "app" }).pipe(
 *   Layer.provide(MemcachedLock.layer({ server: "127.0.0.1:11211" })),
 *   Layer.provideMerge(MemcachedStore.layer({ server: "127.0.0.1:11211" }))
 * )
 * ```
 *
 * @since 0.4.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<CacheLock.CacheLock, never, CacheStore.CacheStore> =>
  Layer.scoped(CacheLock.CacheLock, make(options))

/**
 * The memcached lock over a `memcache-client` client the program already owns (the layer does not
 * shut it down); build the client with `MemcachedStore.clientSettings` so its commands carry the
 * lock's timeout.
 *
 * @example
 * ```ts
 * import { MemcacheClient } from "memcache-client"
 * import * as MemcachedLock from "effect-cachekit/CacheLock/Memcached"
 * import * as MemcachedStore from "effect-cachekit/CacheStore/Memcached"
 *
 * const client = new MemcacheClient(MemcachedStore.clientSettings({ server: "127.0.0.1:11211" }))
 * const LockLive = MemcachedLock.layerFromClient(client)
 * ```
 *
 * @since 0.4.0
 * @category layers
 */
export const layerFromClient = (
  client: MemcacheClient,
  options: Omit<Options, "server" | "connectTimeout"> = {}
): Layer.Layer<CacheLock.CacheLock, never, CacheStore.CacheStore> =>
  Layer.scoped(CacheLock.CacheLock, Effect.flatMap(CacheStore.CacheStore, (store) => build(client, store, options)))

/**
 * The memcached store and, unless `lock: false`, the memcached lock over one client (one connection,
 * closed with the layer): what a cache over memcached needs for `getOrSet` to run a key's producer at
 * most once at a time across processes.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Cache } from "effect-cachekit"
 * import * as MemcachedLock from "effect-cachekit/CacheLock/Memcached"
 *
 * const CacheLive = Cache.layer({ namespace: "app" }).pipe(
 *   Layer.provide(MemcachedLock.layerWithStore({ server: "127.0.0.1:11211", timeout: "250 millis" }))
 * )
 * ```
 *
 * @since 0.4.0
 * @category layers
 */
export const layerWithStore = (
  options: MemcachedStore.Options & { readonly lock?: boolean | undefined } = {}
): Layer.Layer<CacheStore.CacheStore | CacheLock.CacheLock> =>
  Layer.unwrapScoped(Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => new MemcacheClient(MemcachedStore.clientSettings(options))),
      (client) => Effect.sync(() => client.shutdown())
    ),
    (client) => {
      const store = MemcachedStore.layerFromClient(client, options)
      return options.lock === false
        ? store as Layer.Layer<CacheStore.CacheStore | CacheLock.CacheLock>
        : Layer.provideMerge(layerFromClient(client, options), store)
    }
  ))
