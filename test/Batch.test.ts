/**
 * Batch loading: `getOrSetMany`, `memoizeMany` and `resolver`, on the memory store (TestClock), across
 * cache instances sharing a store and a lock, and on real Redis (standalone: databases 29, 30, 41 and
 * 42; a 3-master Cluster of this file's own).
 */
import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { Array as Arr, Context, Deferred, Duration, Effect, Either, Exit, Fiber, Layer, Option, Request, RequestResolver, Schema, Scope, TestClock } from "effect"
import { Cache, CacheError, CacheKey, CacheLock, CacheStore, Keyspace, MemoryLock, MemoryStore } from "../src/index.js"
import { afterAll, beforeAll } from "vitest"
import { commandDelta, commandStats, startCluster, stopCluster, type TestCluster } from "./setup/servers.js"
import { assertSame, emptiedDatabase, layerSerializing } from "./utils.js"

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
class FetchError extends Schema.TaggedError<FetchError>()("FetchError", {}) {}

const user = (id: number) => new User({ id, name: `u${id}` })
const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User, ttl: "10 minutes" })

/** A source of users that records every call; ids in `unknown` are not found (left out of the answer). */
const source = (unknown: ReadonlyArray<number> = []) => {
  const calls: Array<ReadonlyArray<number>> = []
  const fetchUsers = (ids: ReadonlyArray<number>): Effect.Effect<Array<readonly [number, User]>, FetchError> =>
    Effect.sync(() => {
      calls.push([...ids])
      return ids.filter((id) => !unknown.includes(id)).map((id) => [id, user(id)] as const)
    })
  return { calls, fetchUsers }
}

/** A producer that waits for `proceed` after telling `started`, then answers from `answer`. */
const gated = <A>(answer: (ids: ReadonlyArray<number>) => A) =>
  Effect.gen(function*() {
    const started = yield* Deferred.make<ReadonlyArray<number>>()
    const proceed = yield* Deferred.make<void>()
    const calls: Array<ReadonlyArray<number>> = []
    const produce = (ids: ReadonlyArray<number>) =>
      Effect.sync(() => calls.push([...ids])).pipe(
        Effect.zipRight(Deferred.succeed(started, ids)),
        Effect.zipRight(Deferred.await(proceed)),
        Effect.as(answer(ids))
      )
    return { started, proceed, calls, produce }
  })

const pairs = (ids: ReadonlyArray<number>) => ids.map((id) => [id, user(id)] as const)
const some = (...ids: Array<number>) => ids.map((id) => Option.some(user(id)))

/** Until the cache's runs have stored their values (a write lands after the callers have the value). */
const settled = Effect.flatMap(Cache.Cache, (cache) =>
  Effect.gen(function*() {
    yield* Effect.yieldNow()
    for (let i = 0; i < 200 && (yield* cache.inFlight) > 0; i++) yield* Effect.promise(() => new Promise((r) => setTimeout(r, 2)))
  }))

describe("getOrSetMany: types", () => {
  it("the error channel is the producer's, plus the keyspace's and the call's timeout; the requirement is the producer's plus the cache", () => {
    const Bounded = Keyspace.make({ name: "bounded", key: CacheKey.number, value: User, hardTimeout: "5 seconds" })
    class Db extends Context.Tag("Db")<Db, { readonly users: ReadonlyArray<User> }>() {}
    const fromDb = (_: ReadonlyArray<number>) => Effect.map(Db, (db) => db.users.map((u) => [u.id, u] as const))
    const fetchUsers = source().fetchUsers
    expectTypeOf(Users.getOrSetMany([1, 2], fetchUsers)).toEqualTypeOf<Effect.Effect<Array<Option.Option<User>>, FetchError, Cache.Cache>>()
    expectTypeOf(Users.getOrSetMany([1, 2], fromDb)).toEqualTypeOf<Effect.Effect<Array<Option.Option<User>>, never, Db | Cache.Cache>>()
    expectTypeOf(Bounded.getOrSetMany([1, 2], fetchUsers)).toEqualTypeOf<
      Effect.Effect<Array<Option.Option<User>>, FetchError | CacheError.ProducerTimeoutError, Cache.Cache>
    >()
    expectTypeOf(Users.getOrSetMany([1, 2], fetchUsers, { hardTimeout: "1 second" })).toEqualTypeOf<
      Effect.Effect<Array<Option.Option<User>>, FetchError | CacheError.ProducerTimeoutError, Cache.Cache>
    >()
    expectTypeOf(Cache.getOrSetMany(Bounded, [1], fetchUsers)).toEqualTypeOf<
      Effect.Effect<Array<Option.Option<User>>, FetchError | CacheError.ProducerTimeoutError, Cache.Cache>
    >()
    expectTypeOf(Users.memoizeMany(fetchUsers)).toEqualTypeOf<
      (keys: Iterable<number>) => Effect.Effect<Array<readonly [number, User]>, FetchError, Cache.Cache>
    >()
    // A keyspace that caches failures: a key holding one fails the batch with it, so its type is there.
    const Lookups = Keyspace.make({ name: "lookups", key: CacheKey.number, value: User, cacheFailure: { schema: FetchError, ttl: "1 minute" } })
    expectTypeOf(Lookups.getOrSetMany([1], (_: ReadonlyArray<number>) => Effect.succeed([]))).toEqualTypeOf<
      Effect.Effect<Array<Option.Option<User>>, FetchError, Cache.Cache>
    >()
    // softTimeout and eagerRefresh apply per call and add no error (a soft timeout serves stale values).
    expectTypeOf(Users.getOrSetMany([1, 2], fetchUsers, { softTimeout: "1 second", eagerRefresh: 0.5 })).toEqualTypeOf<
      Effect.Effect<Array<Option.Option<User>>, FetchError, Cache.Cache>
    >()
    expectTypeOf(Cache.getOrSetMany(Users, [1], fetchUsers, { softTimeout: "1 second" })).toEqualTypeOf<
      Effect.Effect<Array<Option.Option<User>>, FetchError, Cache.Cache>
    >()
    expectTypeOf(Users.memoizeMany(fetchUsers, { softTimeout: "1 second", eagerRefresh: 0.8 })).toEqualTypeOf<
      (keys: Iterable<number>) => Effect.Effect<Array<readonly [number, User]>, FetchError, Cache.Cache>
    >()
    expectTypeOf(Bounded.getOrSetMany([1, 2], fetchUsers, { softTimeout: "1 second" })).toEqualTypeOf<
      Effect.Effect<Array<Option.Option<User>>, FetchError | CacheError.ProducerTimeoutError, Cache.Cache>
    >()
    // getOrSet's options that do not apply to a batch are refused, not ignored.
    // @ts-expect-error a batch's cache read is its point
    Users.getOrSetMany([1], fetchUsers, { cacheRead: false })
    // @ts-expect-error a batch is at least once
    Users.getOrSetMany([1], fetchUsers, { lockMode: "at-most-once" })
    // @ts-expect-error a batch's failure is not any one key's
    Users.getOrSetMany([1], fetchUsers, { cacheFailure: { schema: FetchError, ttl: "1 minute" } })
    // @ts-expect-error the producer answers pairs of the keyspace's keys and values
    Users.getOrSetMany([1], (_: ReadonlyArray<number>) => Effect.succeed([["1", user(1)] as const]))
  })
})

for (const [backend, store] of [["memory", MemoryStore.layer()], ["serializing", layerSerializing()]] as const) {
  const layer = () => Cache.layer({ namespace: "batch" }).pipe(Layer.provideMerge(Layer.fresh(store)))

  describe(`getOrSetMany (${backend} store)`, () => {
    it.effect("only the missing keys reach the producer, in one call; results in key order", () =>
      Effect.gen(function*() {
        const { calls, fetchUsers } = source()
        yield* Users.set(2, user(2))
        assertSame(yield* Users.getOrSetMany([3, 1, 2, 4], fetchUsers), some(3, 1, 2, 4))
        assert.deepStrictEqual(calls, [[3, 1, 4]])
        yield* settled
        assertSame(yield* Users.getOrSetMany([4, 3, 2, 1], fetchUsers), some(4, 3, 2, 1))
        assert.deepStrictEqual(calls, [[3, 1, 4]], "all cached now: no call")
        assertSame(yield* Users.getMany([1, 3, 4]), some(1, 3, 4))
        assertSame(yield* Users.getOrSetMany([], fetchUsers), [])
        assert.strictEqual(yield* Effect.flatMap(Cache.Cache, (cache) => cache.inFlight), 0)
      }).pipe(Effect.provide(layer())))

    it.effect("duplicates: each distinct key asked once, every position answered", () =>
      Effect.gen(function*() {
        const { calls, fetchUsers } = source()
        assertSame(yield* Users.getOrSetMany([7, 7, 8, 7], fetchUsers), some(7, 7, 8, 7))
        assert.deepStrictEqual(calls, [[7, 8]])
      }).pipe(Effect.provide(layer())))

    it.effect("a key the producer does not return is None, stored as nothing, asked again next time", () =>
      Effect.gen(function*() {
        const { calls, fetchUsers } = source([5])
        assertSame(yield* Users.getOrSetMany([4, 5, 6], fetchUsers), [Option.some(user(4)), Option.none(), Option.some(user(6))])
        yield* settled
        assertSame(yield* Users.getOrSetMany([4, 5, 6], fetchUsers), [Option.some(user(4)), Option.none(), Option.some(user(6))])
        assert.deepStrictEqual(calls, [[4, 5, 6], [5]])
      }).pipe(Effect.provide(layer())))

    it.effect("cacheAbsent: a key not returned is remembered as absent for its ttl; get and getOrSet see a miss", () =>
      Effect.gen(function*() {
        const { calls, fetchUsers } = source([5])
        const negative = { cacheAbsent: { ttl: "30 seconds" } } as const
        assertSame(yield* Users.getOrSetMany([4, 5], fetchUsers, negative), [Option.some(user(4)), Option.none()])
        yield* settled
        assertSame(yield* Users.getOrSetMany([5, 4], fetchUsers, negative), [Option.none(), Option.some(user(4))])
        assert.deepStrictEqual(calls, [[4, 5]], "absent for 30 s: not asked again")
        assertSame(yield* Users.get(5), Option.none())
        assert.isFalse(yield* Users.has(5))
        // A batch without the option does not trust the marker.
        assertSame(yield* Users.getOrSetMany([5], fetchUsers), [Option.none()])
        assert.deepStrictEqual(calls, [[4, 5], [5]])
        yield* settled
        yield* TestClock.adjust("31 seconds")
        assertSame(yield* Users.getOrSetMany([5], fetchUsers, negative), [Option.none()])
        assert.deepStrictEqual(calls, [[4, 5], [5], [5]], "the marker expired")
        // getOrSet reads the marker as a miss and replaces it.
        yield* settled
        assert.strictEqual((yield* Users.getOrSet(5, Effect.succeed(user(5)))).name, "u5")
        yield* settled
        assertSame(yield* Users.getOrSetMany([5], fetchUsers, negative), some(5))
        assert.strictEqual(calls.length, 3)
      }).pipe(Effect.provide(layer())))

    it.effect("pairs for keys that were not asked for are ignored: neither stored nor returned", () =>
      Effect.gen(function*() {
        const answer = (_: ReadonlyArray<number>) => Effect.succeed([[1, user(1)], [99, user(99)], [1, new User({ id: 1, name: "last" })]] as const)
        assertSame(yield* Users.getOrSetMany([1], answer), [Option.some(new User({ id: 1, name: "last" }))])
        yield* settled
        assertSame(yield* Users.get(99), Option.none())
        assertSame(yield* Users.get(1), Option.some(new User({ id: 1, name: "last" })), "a key returned twice: the last pair")
      }).pipe(Effect.provide(layer())))

    it.effect("a producer failure is typed, nothing is stored, and the next call asks again", () =>
      Effect.gen(function*() {
        const failing = (_: ReadonlyArray<number>) => Effect.fail(new FetchError())
        yield* Users.set(1, user(1))
        const error = yield* Effect.flip(Users.getOrSetMany([1, 2, 3], failing))
        assert.strictEqual(error._tag, "FetchError")
        assert.strictEqual(yield* Effect.flatMap(Cache.Cache, (cache) => cache.inFlight), 0)
        assertSame(yield* Users.getMany([2, 3]), [Option.none(), Option.none()])
        const { calls, fetchUsers } = source()
        assertSame(yield* Users.getOrSetMany([1, 2, 3], fetchUsers), some(1, 2, 3))
        assert.deepStrictEqual(calls, [[2, 3]])
      }).pipe(Effect.provide(layer())))

    it.effect("skip, cacheWrite: false, and a ttl per value apply to each value", () =>
      Effect.gen(function*() {
        const { calls, fetchUsers } = source()
        yield* Users.getOrSetMany([1, 2], fetchUsers, { skip: (u) => u.id === 2, ttl: "1 minute" })
        yield* Users.getOrSetMany([3], fetchUsers, { cacheWrite: false })
        yield* settled
        assertSame(yield* Users.getMany([1, 2, 3]), [Option.some(user(1)), Option.none(), Option.none()])
        yield* TestClock.adjust("61 seconds")
        assertSame(yield* Users.get(1), Option.none(), "the call's ttl")
        assert.strictEqual(calls.length, 2)
      }).pipe(Effect.provide(layer())))

    it.effect("a getOrSet of a key the batch is producing joins it: no second producer", () =>
      Effect.gen(function*() {
        const { started, proceed, calls, produce } = yield* gated(pairs)
        const batch = yield* Effect.fork(Users.getOrSetMany([1, 2, 3], produce))
        yield* Deferred.await(started)
        let single = 0
        const joined = yield* Effect.fork(Users.getOrSet(2, Effect.sync(() => single++).pipe(Effect.as(user(-2)))))
        yield* Effect.yieldNow()
        yield* Deferred.succeed(proceed, undefined)
        assertSame(yield* Fiber.join(batch), some(1, 2, 3))
        assert.strictEqual((yield* Fiber.join(joined)).name, "u2")
        assert.strictEqual(single, 0)
        assert.deepStrictEqual(calls, [[1, 2, 3]])
      }).pipe(Effect.provide(layer())))

    it.effect("a batch joins the getOrSet of a key under way: that key does not reach its producer", () =>
      Effect.gen(function*() {
        const started = yield* Deferred.make<void>()
        const proceed = yield* Deferred.make<void>()
        const single = yield* Effect.fork(
          Users.getOrSet(2, Deferred.succeed(started, undefined).pipe(Effect.zipRight(Deferred.await(proceed)), Effect.as(new User({ id: 2, name: "single" }))))
        )
        yield* Deferred.await(started)
        const { calls, fetchUsers } = source()
        const batch = yield* Effect.fork(Users.getOrSetMany([1, 2, 3], fetchUsers))
        yield* Effect.yieldNow()
        yield* Deferred.succeed(proceed, undefined)
        assertSame(yield* Fiber.join(batch), [Option.some(user(1)), Option.some(new User({ id: 2, name: "single" })), Option.some(user(3))])
        assert.deepStrictEqual(calls, [[1, 3]])
        yield* Fiber.join(single)
      }).pipe(Effect.provide(layer())))

    it.effect("a getOrSet that joined a batch whose producer did not return its key runs its own producer", () =>
      Effect.gen(function*() {
        const { started, proceed, produce } = yield* gated((ids) => pairs(ids.filter((id) => id !== 2)))
        const batch = yield* Effect.fork(Users.getOrSetMany([1, 2], produce))
        yield* Deferred.await(started)
        const joined = yield* Effect.fork(Users.getOrSet(2, Effect.succeed(new User({ id: 2, name: "own" }))))
        yield* Effect.yieldNow()
        yield* Deferred.succeed(proceed, undefined)
        assertSame(yield* Fiber.join(batch), [Option.some(user(1)), Option.none()])
        assert.strictEqual((yield* Fiber.join(joined)).name, "own")
      }).pipe(Effect.provide(layer())))

    it.effect("two overlapping batches: each key produced once", () =>
      Effect.gen(function*() {
        const { started, proceed, calls, produce } = yield* gated(pairs)
        const first = yield* Effect.fork(Users.getOrSetMany([1, 2, 3], produce))
        yield* Deferred.await(started)
        const second = yield* Effect.fork(Users.getOrSetMany([3, 4, 2, 5], produce))
        yield* Effect.yieldNow()
        yield* Deferred.succeed(proceed, undefined)
        assertSame(yield* Fiber.join(first), some(1, 2, 3))
        assertSame(yield* Fiber.join(second), some(3, 4, 2, 5))
        assert.deepStrictEqual(calls, [[1, 2, 3], [4, 5]])
      }).pipe(Effect.provide(layer())))

    it.effect("a key invalidated while the producer ran keeps its newer state", () =>
      Effect.gen(function*() {
        const { started, proceed, produce } = yield* gated(pairs)
        const batch = yield* Effect.fork(Users.getOrSetMany([1, 2], produce))
        yield* Deferred.await(started)
        yield* Users.invalidate(1)
        yield* Users.set(2, new User({ id: 2, name: "newer" }))
        yield* Deferred.succeed(proceed, undefined)
        assertSame(yield* Fiber.join(batch), some(1, 2), "the callers get the produced values")
        yield* settled
        assertSame(yield* Users.getMany([1, 2]), [Option.none(), Option.some(new User({ id: 2, name: "newer" }))])
      }).pipe(Effect.provide(layer())))

    it.effect("tags: each value carries its keyspace's tags; a tag invalidated while the producer ran drops the value", () =>
      Effect.gen(function*() {
        const Tagged = Keyspace.make({ name: "tagged", key: CacheKey.number, value: User, tags: (id) => [`id:${id}`, "all"] })
        const { started, proceed, produce } = yield* gated(pairs)
        const batch = yield* Effect.fork(Tagged.getOrSetMany([1, 2], produce))
        yield* Deferred.await(started)
        // The producer takes a while (the memory store's versions are the Clock's milliseconds).
        yield* TestClock.adjust("5 millis")
        yield* Cache.invalidateTags(["id:1"])
        yield* Deferred.succeed(proceed, undefined)
        yield* Fiber.join(batch)
        yield* settled
        assertSame(yield* Tagged.getMany([1, 2]), [Option.none(), Option.some(user(2))])
        yield* TestClock.adjust("1 millis")
        yield* Cache.invalidateTags(["all"])
        assertSame(yield* Tagged.get(2), Option.none())
      }).pipe(Effect.provide(layer())))

    it.effect("hardTimeout: the batch stops waiting; a key with a stale value gets it, one without fails the batch", () =>
      Effect.gen(function*() {
        const Slow = Keyspace.make({ name: "slow", key: CacheKey.number, value: User, ttl: "1 minute", grace: "1 hour", hardTimeout: "1 second" })
        yield* Slow.setMany([[1, user(1)], [2, user(2)]])
        yield* TestClock.adjust("2 minutes")
        const hanging = (_: ReadonlyArray<number>) => Effect.never
        const stale = yield* Effect.fork(Slow.getOrSetMany([1, 2], hanging))
        yield* TestClock.adjust("1 second")
        assertSame(yield* Fiber.join(stale), some(1, 2), "both stale: served")
        const timedOut = yield* Effect.fork(Effect.flip(Slow.getOrSetMany([1, 3], hanging)))
        yield* TestClock.adjust("1 second")
        const error = yield* Fiber.join(timedOut)
        assert.strictEqual(error._tag, "ProducerTimeoutError")
        assert.strictEqual(yield* Effect.flatMap(Cache.Cache, (cache) => cache.inFlight), 0, "nobody waits: the run was interrupted")
        const own = yield* Effect.fork(Effect.flip(Users.getOrSetMany([9], hanging, { hardTimeout: "2 seconds" })))
        yield* TestClock.adjust("2 seconds")
        assert.strictEqual((yield* Fiber.join(own))._tag, "ProducerTimeoutError")
      }).pipe(Effect.provide(layer())))

    it.effect("grace: a failing producer serves the stale values when every key has one, then backs off", () =>
      Effect.gen(function*() {
        const Graceful = Keyspace.make({ name: "graceful", key: CacheKey.number, value: User, ttl: "1 minute", grace: "1 hour" })
        yield* Graceful.setMany([[1, user(1)], [2, user(2)]])
        yield* TestClock.adjust("2 minutes")
        let failures = 0
        const failing = (_: ReadonlyArray<number>) => Effect.sync(() => failures++).pipe(Effect.zipRight(Effect.fail(new FetchError())))
        assertSame(yield* Graceful.getOrSetMany([1, 2], failing), some(1, 2))
        assertSame(yield* Graceful.getOrSetMany([2, 1], failing), some(2, 1))
        assert.strictEqual(failures, 1, "backed off: the second call served stale without asking")
        const error = yield* Effect.flip(Graceful.getOrSetMany([1, 3], failing))
        assert.strictEqual(error._tag, "FetchError", "key 3 has no stale value: the failure reaches the caller")
        yield* TestClock.adjust("11 seconds")
        const { fetchUsers } = source()
        assertSame(yield* Graceful.getOrSetMany([1, 2], fetchUsers), some(1, 2))
        yield* settled
        assertSame(yield* Graceful.getMany([1, 2]), some(1, 2), "fresh again")
      }).pipe(Effect.provide(layer())))

    it.effect("a key holding a cached failure fails the batch with it, as it fails getOrSet", () =>
      Effect.gen(function*() {
        const Lookups = Keyspace.make({ name: "lookups", key: CacheKey.number, value: User, cacheFailure: { schema: FetchError, ttl: "1 minute" } })
        yield* Effect.flip(Lookups.getOrSet(3, Effect.fail(new FetchError())))
        yield* settled
        const { calls, fetchUsers } = source()
        assert.strictEqual((yield* Effect.flip(Lookups.getOrSetMany([1, 3], fetchUsers)))._tag, "FetchError")
        assert.deepStrictEqual(calls, [])
        yield* TestClock.adjust("61 seconds")
        assertSame(yield* Lookups.getOrSetMany([1, 3], fetchUsers, { cacheAbsent: { ttl: "1 minute" } }), some(1, 3))
      }).pipe(Effect.provide(layer())))

    it.effect("keys that cannot be store keys are produced apart, uncached; the others as usual", () =>
      Effect.gen(function*() {
        const Names = Keyspace.make({ name: "names", key: CacheKey.string, value: Schema.String })
        const calls: Array<ReadonlyArray<string>> = []
        const produce = (keys: ReadonlyArray<string>) =>
          Effect.sync(() => {
            calls.push([...keys])
            return keys.map((key) => [key, key.toUpperCase()] as const)
          })
        const long = "x".repeat(2_000)
        assertSame(yield* Names.getOrSetMany(["a", long, "b"], produce), [Option.some("A"), Option.some(long.toUpperCase()), Option.some("B")])
        assert.deepStrictEqual(calls.map((keys) => keys.length).sort(), [1, 2])
      }).pipe(Effect.provide(layer())))

    it.effect("memoizeMany: f's shape, cached per key, only missing keys reach f", () =>
      Effect.gen(function*() {
        const { calls, fetchUsers } = source([5])
        const getUsers = Users.memoizeMany(fetchUsers)
        assert.deepStrictEqual(yield* getUsers([1, 5, 2, 1]), [[1, user(1)], [2, user(2)]])
        yield* settled
        assert.deepStrictEqual(yield* getUsers([2, 3]), [[2, user(2)], [3, user(3)]])
        assert.deepStrictEqual(calls, [[1, 5, 2], [3]])
      }).pipe(Effect.provide(layer())))
  })
}

/** Lets other fibers run (background work) until `done`, without moving the Clock; a bounded number of turns. */
const until = (done: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200 && !done(); i++) yield* Effect.yieldNow()
  })

/** A source of users whose every call answers a new generation of names (`v1`, `v2`, ...) after `delay`. */
const generations = (delay: Duration.DurationInput = Duration.zero) => {
  const calls: Array<ReadonlyArray<number>> = []
  const state = { failing: false }
  const named = (id: number, generation: number) => new User({ id, name: `v${generation}` })
  const fetchUsers = (ids: ReadonlyArray<number>): Effect.Effect<Array<readonly [number, User]>, FetchError> =>
    Effect.suspend(() => {
      calls.push([...ids])
      const generation = calls.length
      const failing = state.failing
      return Effect.zipRight(
        Effect.sleep(delay),
        failing ? Effect.fail(new FetchError()) : Effect.succeed(ids.map((id) => [id, named(id, generation)] as const))
      )
    })
  return { calls, state, fetchUsers, named }
}

for (const [backend, store] of [["memory", MemoryStore.layer()], ["serializing", layerSerializing()]] as const) {
  const layer = () => Cache.layer({ namespace: "batch-soft" }).pipe(Layer.provideMerge(Layer.fresh(store)))
  const Eager = Keyspace.make({ name: "eager", key: CacheKey.number, value: User, ttl: "100 seconds", eagerRefresh: 0.5 })
  const Soft = Keyspace.make({ name: "soft", key: CacheKey.number, value: User, ttl: "1 minute", grace: "1 hour", softTimeout: "100 millis" })
  const old = (...ids: Array<number>) => ids.map((id) => Option.some(new User({ id, name: "old" })))
  const setOld = <K extends Keyspace.Keyspace<number, User, Cache.Cache, any>>(keyspace: K, ...ids: Array<number>) =>
    keyspace.setMany(ids.map((id) => [id, new User({ id, name: "old" })] as const))

  describe(`getOrSetMany: eager refresh (${backend} store)`, () => {
    it.effect("due keys are answered at once with their values and refreshed by one background producer call; keys not due are left alone", () =>
      Effect.gen(function*() {
        const { calls, fetchUsers, named } = generations("10 seconds")
        yield* setOld(Eager, 1, 2)
        yield* TestClock.adjust("30 seconds")
        yield* setOld(Eager, 3)
        yield* TestClock.adjust("19 seconds")
        assertSame(yield* Eager.getOrSetMany([1, 2, 3], fetchUsers), old(1, 2, 3))
        yield* Effect.yieldNow()
        assert.deepStrictEqual(calls, [], "before the refresh point (50 s): plain hits")
        yield* TestClock.adjust("2 seconds")
        // 1 and 2 are due (written at 0 s), 3 is not (its point is at 80 s); 4 is missing.
        const fiber = yield* Effect.fork(Eager.getOrSetMany([1, 2, 3], fetchUsers))
        // Without moving the Clock: the producer (10 s on it) cannot have finished.
        let polled = yield* Fiber.poll(fiber)
        for (let i = 0; i < 100 && Option.isNone(polled); i++) polled = yield* Effect.zipRight(Effect.yieldNow(), Fiber.poll(fiber))
        assert.isTrue(Option.isSome(polled) && Exit.isSuccess(polled.value), "answered at once, not after the producer's 10 s")
        assertSame(yield* Fiber.join(fiber), old(1, 2, 3))
        yield* until(() => calls.length > 0)
        assert.deepStrictEqual(calls, [[1, 2]], "one producer call for the due keys")
        // While the refresh runs, more batches (and a getOrSet) of the due keys start nothing more.
        const during = yield* Effect.all(Array.from({ length: 20 }, () => Eager.getOrSetMany([2, 1], fetchUsers)), { concurrency: "unbounded" })
        during.forEach((found) => assertSame(found, old(2, 1)))
        assert.strictEqual((yield* Eager.getOrSet(1, Effect.succeed(user(-1)))).name, "old")
        yield* Effect.yieldNow()
        assert.deepStrictEqual(calls, [[1, 2]])
        yield* TestClock.adjust("10 seconds")
        yield* settled
        assertSame(yield* Eager.getMany([1, 2, 3]), [Option.some(named(1, 1)), Option.some(named(2, 1)), old(3)[0]!])
        // The refreshed entries start a new period; a missing key is produced by the caller as usual.
        const fourth = yield* Effect.fork(Eager.getOrSetMany([1, 2, 4], fetchUsers))
        yield* TestClock.adjust("10 seconds")
        assertSame(yield* Fiber.join(fourth), [Option.some(named(1, 1)), Option.some(named(2, 1)), Option.some(named(4, 2))])
        assert.deepStrictEqual(calls, [[1, 2], [4]])
      }).pipe(Effect.provide(layer())))

    it.effect("a failing refresh keeps the old values, is counted per key, and is not retried before graceBackoff", () =>
      Effect.gen(function*() {
        const { calls, state, fetchUsers, named } = generations()
        yield* setOld(Eager, 1, 2)
        yield* TestClock.adjust("60 seconds")
        state.failing = true
        for (let i = 0; i < 5; i++) {
          assertSame(yield* Eager.getOrSetMany([1, 2], fetchUsers), old(1, 2), "the failure never reaches the caller")
          yield* settled
          yield* TestClock.adjust("1 second")
        }
        assert.strictEqual(calls.length, 1, "backed off for 10 s after the failure")
        const stats = yield* Eager.stats
        assert.strictEqual(stats.refreshFailures, 2, "one per key")
        assert.strictEqual(stats.staleServed, 0, "the values were fresh: nothing stale was served")
        assertSame(yield* Eager.getMany([1, 2]), old(1, 2), "the old values stay")
        state.failing = false
        yield* TestClock.adjust("6 seconds")
        assertSame(yield* Eager.getOrSetMany([1, 2], fetchUsers), old(1, 2))
        yield* settled
        assertSame(yield* Eager.getMany([1, 2]), [Option.some(named(1, 2)), Option.some(named(2, 2))])
        assert.strictEqual(calls.length, 2)
      }).pipe(Effect.provide(layer())))

    it.effect("a call's own eagerRefresh; memoizeMany and cacheWrite: false", () =>
      Effect.gen(function*() {
        const { calls, fetchUsers, named } = generations()
        yield* setOld(Users, 1, 2)
        yield* TestClock.adjust("6 minutes")
        assertSame(yield* Users.getOrSetMany([1, 2], fetchUsers), old(1, 2))
        yield* settled
        assert.deepStrictEqual(calls, [], "the keyspace has no eager refresh")
        assertSame(yield* Users.getOrSetMany([1, 2], fetchUsers, { eagerRefresh: 0.5, cacheWrite: false }), old(1, 2))
        yield* settled
        assert.deepStrictEqual(calls, [], "a refresh that could store nothing is not run")
        const getUsers = Users.memoizeMany(fetchUsers, { eagerRefresh: 0.5 })
        assert.deepStrictEqual(yield* getUsers([2, 1]), [[2, new User({ id: 2, name: "old" })], [1, new User({ id: 1, name: "old" })]])
        yield* settled
        assert.deepStrictEqual(calls, [[2, 1]])
        assertSame(yield* Users.getMany([1, 2]), [Option.some(named(1, 1)), Option.some(named(2, 1))])
      }).pipe(Effect.provide(layer())))

    it.effect("a key being produced or refreshed by getOrSet is left out of the batch's refresh", () =>
      Effect.gen(function*() {
        const { calls, fetchUsers } = generations()
        yield* setOld(Eager, 1, 2, 3)
        yield* TestClock.adjust("60 seconds")
        const gate = yield* Deferred.make<void>()
        // getOrSet's own eager refresh of 1 is under way.
        assert.strictEqual((yield* Eager.getOrSet(1, Effect.as(Deferred.await(gate), new User({ id: 1, name: "single" })))).name, "old")
        yield* Effect.yieldNow()
        assertSame(yield* Eager.getOrSetMany([1, 2, 3], fetchUsers), old(1, 2, 3))
        yield* settled
        assert.deepStrictEqual(calls, [[2, 3]])
        yield* Deferred.succeed(gate, undefined)
        yield* settled
        assertSame(yield* Eager.get(1), Option.some(new User({ id: 1, name: "single" })))
      }).pipe(Effect.provide(layer())))
  })

  describe(`getOrSetMany: soft timeout (${backend} store)`, () => {
    it.effect("every key stale: the stale values at the soft timeout; the producer completes in the background, once, and stores its values", () =>
      Effect.gen(function*() {
        const { calls, fetchUsers, named } = generations("1 second")
        yield* setOld(Soft, 1, 2)
        yield* TestClock.adjust("2 minutes")
        const before = (yield* Soft.stats).staleServed
        const batches = yield* Effect.fork(Effect.all(Array.from({ length: 10 }, () => Soft.getOrSetMany([1, 2], fetchUsers)), { concurrency: "unbounded" }))
        yield* TestClock.adjust("100 millis")
        const answers = yield* Fiber.join(batches)
        answers.forEach((found) => assertSame(found, old(1, 2)))
        assert.strictEqual((yield* Soft.stats).staleServed - before, 20, "counted per key served stale")
        assert.deepStrictEqual(calls, [[1, 2]], "one producer call")
        assertSame(yield* Soft.getMany([1, 2]), [Option.none(), Option.none()], "still stale: the producer runs on")
        assert.isAbove(yield* Effect.flatMap(Cache.Cache, (cache) => cache.inFlight), 0)
        yield* TestClock.adjust("1 second")
        yield* settled
        assertSame(yield* Soft.getMany([1, 2]), [Option.some(named(1, 1)), Option.some(named(2, 1))], "the background run stored its values")
        assertSame(yield* Soft.getOrSetMany([2, 1], fetchUsers), [Option.some(named(2, 1)), Option.some(named(1, 1))])
        assert.strictEqual(calls.length, 1)
      }).pipe(Effect.provide(layer())))

    it.effect("a key without a stale value: the batch waits for the producer; a call may set its own soft timeout", () =>
      Effect.gen(function*() {
        const { calls, fetchUsers, named } = generations("1 second")
        yield* setOld(Soft, 1)
        yield* TestClock.adjust("2 minutes")
        const waiting = yield* Effect.fork(Soft.getOrSetMany([1, 5], fetchUsers))
        yield* TestClock.adjust("100 millis")
        assert.isTrue(Option.isNone(yield* Fiber.poll(waiting)), "5 has nothing stale to give: still waiting")
        yield* TestClock.adjust("900 millis")
        assertSame(yield* Fiber.join(waiting), [Option.some(named(1, 1)), Option.some(named(5, 1))])
        assert.strictEqual((yield* Soft.stats).staleServed, 0)
        // A keyspace without a soft timeout, the call's own.
        const Graceful = Keyspace.make({ name: "graceful", key: CacheKey.number, value: User, ttl: "1 minute", grace: "1 hour" })
        yield* setOld(Graceful, 1, 2)
        yield* TestClock.adjust("2 minutes")
        const own = yield* Effect.fork(Graceful.getOrSetMany([1, 2], fetchUsers, { softTimeout: "200 millis" }))
        yield* TestClock.adjust("200 millis")
        assertSame(yield* Fiber.join(own), old(1, 2))
        yield* TestClock.adjust("1 second")
        yield* settled
        assertSame(yield* Graceful.getMany([1, 2]), [Option.some(named(1, 2)), Option.some(named(2, 2))])
        // A call's longer soft timeout: the producer wins.
        yield* TestClock.adjust("2 minutes")
        const patient = yield* Effect.fork(Soft.getOrSetMany([1], fetchUsers, { softTimeout: "5 seconds" }))
        yield* TestClock.adjust("1 second")
        assertSame(yield* Fiber.join(patient), [Option.some(named(1, 3))])
        assert.deepStrictEqual(calls, [[1, 5], [1, 2], [1]])
      }).pipe(Effect.provide(layer())))

    it.effect("keys another run produces follow the rule: a getOrSet's key with a stale value is served stale too, its run goes on", () =>
      Effect.gen(function*() {
        const { calls, fetchUsers, named } = generations("1 second")
        yield* setOld(Soft, 1, 2)
        yield* TestClock.adjust("2 minutes")
        const gate = yield* Deferred.make<void>()
        const single = yield* Effect.fork(Soft.getOrSet(1, Effect.as(Deferred.await(gate), new User({ id: 1, name: "single" }))))
        yield* Effect.yieldNow()
        const batch = yield* Effect.fork(Soft.getOrSetMany([1, 2], fetchUsers))
        yield* TestClock.adjust("100 millis")
        assertSame(yield* Fiber.join(batch), old(1, 2))
        assert.strictEqual((yield* Fiber.join(single)).name, "old", "the getOrSet's own soft timeout")
        assert.deepStrictEqual(calls, [[2]], "1 was joined, not produced again")
        yield* Deferred.succeed(gate, undefined)
        yield* TestClock.adjust("1 second")
        yield* settled
        assertSame(yield* Soft.getMany([1, 2]), [Option.some(new User({ id: 1, name: "single" })), Option.some(named(2, 1))])
      }).pipe(Effect.provide(layer())))

    it.effect("a caller that cannot be interrupted still gets the stale values at the soft timeout; with a hard timeout and a key without one, the batch fails at the hard timeout", () =>
      Effect.gen(function*() {
        const { fetchUsers, named } = generations("10 seconds")
        yield* setOld(Soft, 1, 2)
        yield* TestClock.adjust("2 minutes")
        const caller = yield* Effect.fork(Effect.uninterruptible(Soft.getOrSetMany([1, 2], fetchUsers)))
        yield* TestClock.adjust("100 millis")
        assertSame(yield* Fiber.join(caller), old(1, 2))
        const bounded = yield* Effect.fork(Effect.flip(Soft.getOrSetMany([1, 3], fetchUsers, { hardTimeout: "1 second" })))
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* Fiber.join(bounded))._tag, "ProducerTimeoutError")
        yield* TestClock.adjust("10 seconds")
        yield* settled
        assertSame(yield* Soft.getMany([1, 2]), [Option.some(named(1, 1)), Option.some(named(2, 1))], "the first run completed in the background")
        assertSame(yield* Soft.get(3), Option.none(), "the timed-out run was interrupted: nobody waited for it")
        // Without a soft timeout too, the hard timeout stops an uninterruptible caller's wait.
        const hanging = yield* Effect.fork(Effect.uninterruptible(Effect.flip(Users.getOrSetMany([9], (_) => Effect.never, { hardTimeout: "1 second" }))))
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* Fiber.join(hanging))._tag, "ProducerTimeoutError")
      }).pipe(Effect.provide(layer())))
  })
}

describe("getOrSetMany: background work ends with the cache", () => {
  it.effect("closing the cache interrupts an eager refresh and a run left after a soft timeout; neither counts as a failure", () =>
    Effect.gen(function*() {
      const Eager = Keyspace.make({ name: "eager", key: CacheKey.number, value: User, ttl: "100 seconds", grace: "1 hour", eagerRefresh: 0.5, softTimeout: "100 millis" })
      const interrupted: Array<ReadonlyArray<number>> = []
      const hanging = (ids: ReadonlyArray<number>) => Effect.onInterrupt(Effect.never, () => Effect.sync(() => interrupted.push([...ids])))
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Cache.layerMemory({ namespace: "closing" }), scope)
      yield* Effect.gen(function*() {
        yield* Eager.setMany([[1, user(1)], [2, user(2)]])
        yield* TestClock.adjust("60 seconds")
        // A lockTimeout of a minute: the background runs may go on for 3 minutes (`backgroundLimit`).
        assertSame(yield* Eager.getOrSetMany([1], hanging, { lockTimeout: "1 minute" }), some(1), "due: answered, refreshing")
        yield* TestClock.adjust("60 seconds")
        const stale = yield* Effect.fork(Eager.getOrSetMany([2], hanging, { lockTimeout: "1 minute" }))
        yield* TestClock.adjust("100 millis")
        assertSame(yield* Fiber.join(stale), some(2), "stale at the soft timeout")
        assert.strictEqual(yield* Effect.flatMap(Cache.Cache, (cache) => cache.inFlight), 2)
      }).pipe(Effect.provide(context))
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(interrupted.sort(), [[1], [2]])
      const stats = yield* Eager.stats.pipe(Effect.provide(context))
      assert.strictEqual(stats.refreshFailures, 0)
    }))
})

describe("getOrSetMany: background runs are bounded and counted once", () => {
  const Eager = Keyspace.make({ name: "eager", key: CacheKey.number, value: User, ttl: "100 seconds", eagerRefresh: 0.5 })
  const Stale = Keyspace.make({ name: "stale", key: CacheKey.number, value: User, ttl: "10 minutes", grace: "1 hour" })
  const named = (id: number, name: string) => new User({ id, name })
  const layer = () => Cache.layerMemory({ namespace: "bounded" })
  const turns = Effect.gen(function*() {
    for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
  })

  it.effect("a key the refresh's producer leaves out keeps its value and is not asked again before graceBackoff; no failure counted", () =>
    Effect.gen(function*() {
      const calls: Array<ReadonlyArray<number>> = []
      const produce = (ids: ReadonlyArray<number>) =>
        Effect.sync(() => {
          calls.push([...ids])
          return ids.filter((id) => id !== 1).map((id) => [id, named(id, "new")] as const)
        })
      yield* Eager.setMany([[1, named(1, "old")], [2, named(2, "old")]])
      yield* TestClock.adjust("60 seconds")
      for (let i = 0; i < 5; i++) {
        assertSame((yield* Eager.getOrSetMany([1, 2], produce))[0], Option.some(named(1, "old")))
        yield* turns
      }
      assert.deepStrictEqual(calls, [[1, 2]], "key 1 backed off after the refresh left it out")
      assert.strictEqual((yield* Eager.stats).refreshFailures, 0)
      yield* TestClock.adjust("10 seconds")
      yield* Eager.getOrSetMany([1, 2], produce)
      yield* turns
      assert.deepStrictEqual(calls, [[1, 2], [1]], "asked again once graceBackoff is over")
    }).pipe(Effect.provide(layer())))

  it.effect("two batches due at once: each key refreshed by one of them, each failure counted once", () =>
    Effect.gen(function*() {
      const calls: Array<ReadonlyArray<number>> = []
      const produce = (ids: ReadonlyArray<number>) => Effect.zipRight(Effect.sync(() => calls.push([...ids])), Effect.fail(new FetchError()))
      yield* Eager.setMany([[1, named(1, "old")], [2, named(2, "old")], [3, named(3, "old")]])
      yield* TestClock.adjust("60 seconds")
      yield* Effect.all([Eager.getOrSetMany([1, 2], produce), Eager.getOrSetMany([2, 3], produce)], { concurrency: "unbounded" })
      yield* turns
      assert.deepStrictEqual(calls, [[1, 2], [3]])
      assert.strictEqual((yield* Eager.stats).refreshFailures, 3)
    }).pipe(Effect.provide(layer())))

  it.effect("a getOrSet's refresh and a batch's exclude each other whatever the lock mode", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      let single = 0
      const calls: Array<ReadonlyArray<number>> = []
      const produce = (ids: ReadonlyArray<number>) =>
        Effect.zipRight(Effect.sync(() => calls.push([...ids])), Effect.as(Deferred.await(gate), ids.map((id) => [id, named(id, "batch")] as const)))
      yield* Eager.setMany([[1, named(1, "old")], [2, named(2, "old")]])
      yield* TestClock.adjust("60 seconds")
      const hanging = Effect.zipRight(Effect.sync(() => single++), Effect.as(Deferred.await(gate), named(1, "single")))
      assert.strictEqual((yield* Eager.getOrSet(1, hanging, { lockMode: "at-most-once" })).name, "old")
      yield* turns
      yield* Eager.getOrSetMany([1, 2], produce)
      yield* turns
      assert.deepStrictEqual(calls, [[2]], "key 1 is being refreshed by the getOrSet")
      assert.strictEqual((yield* Eager.getOrSet(2, hanging, { lockMode: "at-most-once" })).name, "old")
      yield* turns
      assert.strictEqual(single, 1, "key 2 is being refreshed by the batch")
      yield* Deferred.succeed(gate, undefined)
      yield* settled
      assert.strictEqual((yield* Eager.stats).refreshFailures, 0)
    }).pipe(Effect.provide(layer())))

  it.effect("a hanging refresh is stopped at the hard timeout (else 3 lockTimeouts): counted as a failure, the key refreshed again later", () =>
    Effect.gen(function*() {
      let runs = 0
      const hanging = (_: ReadonlyArray<number>) => Effect.zipRight(Effect.sync(() => runs++), Effect.never)
      yield* Eager.setMany([[1, named(1, "old")]])
      yield* TestClock.adjust("51 seconds")
      yield* Eager.getOrSetMany([1], hanging, { lockTimeout: "2 seconds" })
      yield* turns
      const inFlight = Effect.flatMap(Cache.Cache, (cache) => cache.inFlight)
      assert.strictEqual(yield* inFlight, 1)
      yield* TestClock.adjust("6 seconds")
      yield* turns
      assert.strictEqual(yield* inFlight, 0, "stopped after 3 × lockTimeout")
      assert.strictEqual((yield* Eager.stats).refreshFailures, 1)
      yield* TestClock.adjust("10 seconds")
      yield* Eager.getOrSetMany([1], hanging, { hardTimeout: "1 second" })
      yield* turns
      assert.strictEqual(runs, 2, "refreshed again after graceBackoff")
      yield* TestClock.adjust("1 second")
      yield* turns
      assert.strictEqual(yield* inFlight, 0, "stopped at the hard timeout")
      assert.strictEqual((yield* Eager.stats).refreshFailures, 2)
    }).pipe(Effect.provide(layer())))

  it.effect("a run left after a soft timeout is stopped at the background limit, its locks released, nothing stored", () =>
    Effect.gen(function*() {
      let interrupted = 0
      const hanging = (_: ReadonlyArray<number>) => Effect.onInterrupt(Effect.never, () => Effect.sync(() => interrupted++))
      const lock = yield* CacheLock.CacheLock
      const one = yield* instances[0]!
      yield* one.setMany(Stale, [[1, named(1, "old")], [2, named(2, "old")]])
      yield* TestClock.adjust("11 minutes")
      const caller = yield* Effect.fork(one.getOrSetMany(Stale, [1, 2], hanging, { softTimeout: "100 millis", lockTimeout: "1 second" }))
      yield* TestClock.adjust("100 millis")
      assertSame(yield* Fiber.join(caller), [Option.some(named(1, "old")), Option.some(named(2, "old"))])
      assert.isTrue(Option.isNone(yield* lock.tryAcquire("fleet:stale:1", "1 second")), "the run goes on, holding its locks")
      for (let i = 0; i < 4; i++) yield* TestClock.adjust("1 second")
      yield* turns
      assert.strictEqual(interrupted, 1)
      assert.isTrue(Option.isSome(yield* lock.tryAcquire("fleet:stale:1", "1 second")), "lock 1 released")
      assert.isTrue(Option.isSome(yield* lock.tryAcquire("fleet:stale:2", "1 second")), "lock 2 released")
      assert.strictEqual((yield* one.stats).find((stats) => stats.keyspace === "stale")?.staleServed, 2)
    }).pipe(Effect.provide(fleet)))

  it.effect("a lease taken in a second lock round is released when the first round's producer fails", () =>
    Effect.gen(function*() {
      const lock = yield* CacheLock.CacheLock
      const one = yield* instances[0]!
      const lease = Option.getOrThrow(yield* lock.tryAcquire("fleet:users:2", "10 seconds"))
      const gate = yield* Deferred.make<void>()
      const calls: Array<ReadonlyArray<number>> = []
      const produce = (ids: ReadonlyArray<number>) =>
        Effect.suspend(() => {
          calls.push([...ids])
          return ids.includes(1)
            ? Effect.zipRight(Deferred.await(gate), Effect.fail(new FetchError()))
            : Effect.succeed(pairs(ids))
        })
      const batch = yield* Effect.fork(Effect.either(one.getOrSetMany(Users, [1, 2], produce)))
      yield* TestClock.adjust("100 millis")
      yield* lock.release(lease, Option.none())
      yield* TestClock.adjust("200 millis")
      yield* turns
      yield* Deferred.succeed(gate, undefined)
      assert.isTrue(Either.isLeft(yield* Fiber.join(batch)))
      yield* turns
      assert.deepStrictEqual(calls, [[1], [2]])
      assert.isTrue(Option.isSome(yield* lock.tryAcquire("fleet:users:1", "1 second")), "the first round's lease released")
      assert.isTrue(Option.isSome(yield* lock.tryAcquire("fleet:users:2", "1 second")), "the second round's lease released")
      assertSame(yield* one.get(Users, 2), Option.none(), "nothing stored")
    }).pipe(Effect.provide(fleet)))

  it.effect("staleServed counts only values a batch answers with: not a batch that fails at its hard timeout, not a background run that fails after the soft timeout", () =>
    Effect.gen(function*() {
      yield* Stale.setMany([[1, named(1, "old")], [2, named(2, "old")]])
      yield* TestClock.adjust("11 minutes")
      const failing = yield* Effect.fork(Effect.either(Stale.getOrSetMany([1, 3], (_) => Effect.never, { hardTimeout: "1 second" })))
      yield* TestClock.adjust("1 second")
      assert.isTrue(Either.isLeft(yield* Fiber.join(failing)))
      assert.strictEqual((yield* Stale.stats).staleServed, 0, "the batch failed: nothing served")
      const gate = yield* Deferred.make<void>()
      const soft = yield* Effect.fork(Stale.getOrSetMany([1, 2], (_) => Effect.zipRight(Deferred.await(gate), Effect.fail(new FetchError())), { softTimeout: "100 millis" }))
      yield* TestClock.adjust("100 millis")
      assertSame(yield* Fiber.join(soft), [Option.some(named(1, "old")), Option.some(named(2, "old"))])
      yield* Deferred.succeed(gate, undefined)
      yield* settled
      assert.strictEqual((yield* Stale.stats).staleServed, 2, "served once each, at the soft timeout")
      // Backed off now: served at once, and counted (the batch answers with them).
      assertSame(yield* Stale.getOrSetMany([1, 2], (_) => Effect.die("not asked")), [Option.some(named(1, "old")), Option.some(named(2, "old"))])
      assert.strictEqual((yield* Stale.stats).staleServed, 4)
      // Backed off, but a key without a value fails the batch: the stale one served from the backoff is not counted.
      const exit = yield* Effect.exit(Stale.getOrSetMany([1, 5], (_) => Effect.fail(new FetchError())))
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual((yield* Stale.stats).staleServed, 4)
    }).pipe(Effect.provide(layer())))
})

class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { id: Schema.Number }) {}
class GetUser extends Request.TaggedClass("GetUser")<User, NotFound, { readonly id: number }> {}

/** A batched resolver of `GetUser` that records each batch it gets; id 13 is not found. */
const userResolver = () => {
  const batches: Array<ReadonlyArray<number>> = []
  const inner = RequestResolver.makeBatched((requests: Arr.NonEmptyArray<GetUser>) =>
    Effect.sync(() => batches.push(requests.map((request) => request.id))).pipe(
      Effect.zipRight(Effect.forEach(requests, (request) =>
        request.id === 13 ? Request.fail(request, new NotFound({ id: 13 })) : Request.succeed(request, user(request.id)), { discard: true }))
    )
  )
  return { batches, inner }
}

describe("Keyspace.resolver: types", () => {
  it("the request's error type must admit the keyspace's producer errors, its success type be the value type", () => {
    const { inner } = userResolver()
    expectTypeOf(Users.resolver(inner, { key: (request) => request.id })).toEqualTypeOf<RequestResolver.RequestResolver<GetUser, Cache.Cache>>()
    expectTypeOf(Users.resolver(inner, { key: (request) => request.id, softTimeout: "1 second", eagerRefresh: 0.5 })).toEqualTypeOf<
      RequestResolver.RequestResolver<GetUser, Cache.Cache>
    >()
    const Bounded = Keyspace.make({ name: "bounded", key: CacheKey.number, value: User, hardTimeout: "5 seconds" })
    // @ts-expect-error a GetUser cannot fail with ProducerTimeoutError
    Bounded.resolver(inner, { key: (request) => request.id })
    class GetUserBounded extends Request.TaggedClass("GetUserBounded")<User, NotFound | CacheError.ProducerTimeoutError, { readonly id: number }> {}
    const bounded = RequestResolver.fromEffect((request: GetUserBounded) => Effect.succeed(user(request.id)))
    expectTypeOf(Bounded.resolver(bounded, { key: (request) => request.id })).toEqualTypeOf<
      RequestResolver.RequestResolver<GetUserBounded, Cache.Cache>
    >()
    class GetName extends Request.TaggedClass("GetName")<string, never, { readonly id: number }> {}
    const names = RequestResolver.fromEffect((request: GetName) => Effect.succeed(String(request.id)))
    // @ts-expect-error a name is not a User
    Users.resolver(names, { key: (request: GetName) => request.id })
  })
})

for (const [backend, store] of [["memory", MemoryStore.layer()], ["serializing", layerSerializing()]] as const) {
  const layer = () => Cache.layer({ namespace: "resolver" }).pipe(Layer.provideMerge(Layer.fresh(store)))

  describe(`Keyspace.resolver (${backend} store)`, () => {
    it.effect("Effect.request batches read the cache first; only the misses reach the inner resolver, as one batch", () =>
      Effect.gen(function*() {
        const { batches, inner } = userResolver()
        const Cached = RequestResolver.contextFromEffect(Users.resolver(inner, { key: (request) => request.id }))
        yield* Users.set(2, user(2))
        const ask = (ids: ReadonlyArray<number>) =>
          Effect.forEach(ids, (id) => Effect.either(Effect.request(new GetUser({ id }), Cached)), { batching: true })
        const first = yield* ask([1, 2, 3, 13, 1])
        assert.deepStrictEqual(first.map((found) => Either.isRight(found) ? found.right.name : found.left._tag), ["u1", "u2", "u3", "NotFound", "u1"])
        assert.deepStrictEqual(batches, [[1, 3, 13]], "one inner batch, the misses only, a key once")
        yield* settled
        const second = yield* ask([3, 13, 1, 2])
        assert.deepStrictEqual(second.map((found) => Either.isRight(found) ? found.right.name : found.left._tag), ["u3", "NotFound", "u1", "u2"])
        assert.deepStrictEqual(batches, [[1, 3, 13], [13]], "what was found is cached; a failure is not")
        assertSame(yield* Users.getMany([1, 3, 13]), [Option.some(user(1)), Option.some(user(3)), Option.none()])
      }).pipe(Effect.provide(layer())))

    it.effect("the keyspace's eager refresh: due keys answered from the cache, refreshed through the inner resolver in one background batch", () =>
      Effect.gen(function*() {
        const Eager = Keyspace.make({ name: "eager", key: CacheKey.number, value: User, ttl: "100 seconds", eagerRefresh: 0.5 })
        const { batches, inner } = userResolver()
        const Cached = RequestResolver.contextFromEffect(Eager.resolver(inner, { key: (request) => request.id }))
        yield* Eager.setMany([[1, new User({ id: 1, name: "old" })], [2, new User({ id: 2, name: "old" })]])
        yield* TestClock.adjust("60 seconds")
        const found = yield* Effect.forEach([1, 2, 3], (id) => Effect.request(new GetUser({ id }), Cached), { batching: true })
        assert.deepStrictEqual(found.map((u) => u.name), ["old", "old", "u3"])
        yield* settled
        assert.deepStrictEqual(batches.map((ids) => [...ids].sort()).sort(), [[1, 2], [3]])
        assertSame(yield* Eager.getMany([1, 2, 3]), some(1, 2, 3))
      }).pipe(Effect.provide(layer())))

    it.effect("the eager refresh through the inner resolver: a request it fails counts as a failed refresh and is not asked again before graceBackoff", () =>
      Effect.gen(function*() {
        const Eager = Keyspace.make({ name: "eager", key: CacheKey.number, value: User, ttl: "100 seconds", eagerRefresh: 0.5 })
        const { batches, inner } = userResolver()
        const Cached = RequestResolver.contextFromEffect(Eager.resolver(inner, { key: (request) => request.id }))
        yield* Eager.setMany([[1, new User({ id: 1, name: "old" })], [13, new User({ id: 13, name: "old" })]])
        yield* TestClock.adjust("60 seconds")
        for (let i = 0; i < 3; i++) {
          const found = yield* Effect.forEach([1, 13], (id) => Effect.request(new GetUser({ id }), Cached), { batching: true })
          assert.deepStrictEqual(found.map((u) => u.name), i === 0 ? ["old", "old"] : ["u1", "old"])
          yield* settled
        }
        assert.deepStrictEqual(batches.map((ids) => [...ids].sort()), [[1, 13]], "13 is backed off")
        assert.strictEqual((yield* Eager.stats).refreshFailures, 1)
      }).pipe(Effect.provide(layer())))

    it.effect("with Effect's request caching on: a request answered once in a program never reaches the resolver again", () =>
      Effect.gen(function*() {
        const { batches, inner } = userResolver()
        const reads: Array<number> = []
        const Cached = RequestResolver.contextFromEffect(Users.resolver(inner, { key: (request) => { reads.push(request.id); return request.id } }))
        const ask = (ids: ReadonlyArray<number>) => Effect.forEach(ids, (id) => Effect.request(new GetUser({ id }), Cached), { batching: true })
        // Each program with a request cache of its own (Effect's default one is shared by every fiber).
        const program = Effect.flatMap(Request.makeCache({ capacity: 100, timeToLive: "1 minute" }), (requestCache) =>
          Effect.gen(function*() {
            assert.deepStrictEqual((yield* ask([4, 5, 4])).map((u) => u.name), ["u4", "u5", "u4"])
            assert.deepStrictEqual((yield* ask([5, 6])).map((u) => u.name), ["u5", "u6"])
          }).pipe(Effect.withRequestCaching(true), Effect.withRequestCache(requestCache)))
        yield* program
        assert.deepStrictEqual(batches, [[4, 5], [6]])
        assert.deepStrictEqual(reads, [4, 5, 6], "Effect's request cache answered the repeats itself")
        // Another program (a fresh request cache): the cache answers, the inner resolver is not asked.
        yield* settled
        yield* program
        assert.deepStrictEqual(batches, [[4, 5], [6]])
        assert.deepStrictEqual(reads, [4, 5, 6, 4, 5, 6])
      }).pipe(Effect.provide(layer())))

    it.effect("requests of one key share one inner request; a concurrent getOrSet of a key the batch produces joins it", () =>
      Effect.gen(function*() {
        const started = yield* Deferred.make<void>()
        const proceed = yield* Deferred.make<void>()
        const batches: Array<ReadonlyArray<number>> = []
        const inner = RequestResolver.makeBatched((requests: Arr.NonEmptyArray<GetUser>) =>
          Effect.sync(() => batches.push(requests.map((request) => request.id))).pipe(
            Effect.zipRight(Deferred.succeed(started, undefined)),
            Effect.zipRight(Deferred.await(proceed)),
            Effect.zipRight(Effect.forEach(requests, (request) => Request.succeed(request, user(request.id)), { discard: true }))
          ))
        // Two requests of the same id, made apart (Effect's request caching is off by default).
        const Cached = RequestResolver.contextFromEffect(Users.resolver(inner, { key: (request) => request.id }))
        const fiber = yield* Effect.fork(Effect.all([Effect.request(new GetUser({ id: 8 }), Cached), Effect.request(new GetUser({ id: 8 }), Cached)], { batching: true }))
        yield* Deferred.await(started)
        let single = 0
        const joined = yield* Effect.fork(Users.getOrSet(8, Effect.sync(() => single++).pipe(Effect.as(user(-8)))))
        yield* Effect.yieldNow()
        yield* Deferred.succeed(proceed, undefined)
        assert.deepStrictEqual((yield* Fiber.join(fiber)).map((u) => u.name), ["u8", "u8"])
        assert.strictEqual((yield* Fiber.join(joined)).name, "u8")
        assert.deepStrictEqual(batches, [[8]])
        assert.strictEqual(single, 0)
      }).pipe(Effect.provide(layer())))
  })
}

/** Four cache instances, as four processes would have, sharing one store and one lock. */
const instances = [0, 1, 2, 3].map((i) => Context.GenericTag<`batch-instance-${number}`, Cache.Service>(`test/batch-instance-${i}`))
const fleet = instances.map((tag) => Layer.scoped(tag, Cache.make({ namespace: "fleet" }))).reduce((a, b) => Layer.merge(a, b)).pipe(
  Layer.provideMerge(MemoryLock.layer),
  Layer.provideMerge(MemoryStore.layer())
)

describe("getOrSetMany across cache instances (memory store, in-process lock)", () => {
  it.effect("4 instances ask for overlapping sets at once: each key is produced once in all", () =>
    Effect.gen(function*() {
      const produced: Array<number> = []
      const produce = (ids: ReadonlyArray<number>) =>
        Effect.sync(() => produced.push(...ids)).pipe(Effect.zipRight(Effect.sleep("50 millis")), Effect.as(pairs(ids)))
      const sets = [[1, 2, 3, 4], [3, 4, 5, 6], [6, 7, 1], [8, 2, 5]]
      const fiber = yield* Effect.fork(Effect.all(
        instances.map((tag, i) => Effect.flatMap(tag, (cache) => cache.getOrSetMany(Users, sets[i]!, produce))),
        { concurrency: "unbounded" }
      ))
      for (let i = 0; i < 10; i++) yield* TestClock.adjust("50 millis")
      const results = yield* Fiber.join(fiber)
      results.forEach((found, i) => assertSame(found, some(...sets[i]!)))
      assert.deepStrictEqual([...produced].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8])
    }).pipe(Effect.provide(fleet)))

  it.effect("keys whose lock another instance holds are waited for and read, not produced", () =>
    Effect.gen(function*() {
      const lock = yield* CacheLock.CacheLock
      const store = yield* CacheStore.CacheStore
      const [one, two] = [yield* instances[0]!, yield* instances[1]!]
      // Another instance holds the lock of key 2 and is about to store its value.
      const lease = Option.getOrThrow(yield* lock.tryAcquire("fleet:users:2", "10 seconds"))
      const { calls, fetchUsers } = source()
      const batch = yield* Effect.fork(one.getOrSetMany(Users, [1, 2, 3], fetchUsers))
      yield* TestClock.adjust("100 millis")
      yield* two.set(Users, 2, new User({ id: 2, name: "holder's" }))
      yield* lock.release(lease, Option.none())
      yield* TestClock.adjust("200 millis")
      assertSame(yield* Fiber.join(batch), [Option.some(user(1)), Option.some(new User({ id: 2, name: "holder's" })), Option.some(user(3))])
      assert.deepStrictEqual(calls, [[1, 3]])
      void store
    }).pipe(Effect.provide(fleet)))

  it.effect("a key whose holder left it unwritten is taken in a new round and produced", () =>
    Effect.gen(function*() {
      const lock = yield* CacheLock.CacheLock
      const one = yield* instances[0]!
      const lease = Option.getOrThrow(yield* lock.tryAcquire("fleet:users:2", "10 seconds"))
      const { calls, fetchUsers } = source()
      const batch = yield* Effect.fork(one.getOrSetMany(Users, [1, 2], fetchUsers))
      yield* TestClock.adjust("100 millis")
      yield* lock.release(lease, Option.none())
      yield* TestClock.adjust("200 millis")
      assertSame(yield* Fiber.join(batch), some(1, 2))
      assert.deepStrictEqual(calls, [[1], [2]])
    }).pipe(Effect.provide(fleet)))

  it.effect("past lockTimeout the keys still held are produced without the lock (at least once)", () =>
    Effect.gen(function*() {
      const lock = yield* CacheLock.CacheLock
      const one = yield* instances[0]!
      yield* lock.tryAcquire("fleet:users:2", "1 hour")
      const { calls, fetchUsers } = source()
      const batch = yield* Effect.fork(one.getOrSetMany(Users, [1, 2], fetchUsers, { lockTimeout: "1 second" }))
      for (let i = 0; i < 8; i++) yield* TestClock.adjust("200 millis")
      assertSame(yield* Fiber.join(batch), some(1, 2))
      assert.deepStrictEqual(calls, [[1], [2]])
      const exit = yield* Effect.exit(Effect.void)
      assert.isTrue(Exit.isSuccess(exit))
    }).pipe(Effect.provide(fleet)))
})

describe("getOrSetMany on Redis", () => {
  it.live("one MGET per 512 keys (twice: before and under the lock), one producer call, every value stored", () =>
    Effect.gen(function*() {
      const { admin, url } = yield* emptiedDatabase(29)
      const ids = Array.from({ length: 1_200 }, (_, i) => i)
      const { calls, fetchUsers } = source()
      yield* Effect.gen(function*() {
        const before = yield* Effect.promise(() => commandStats(admin))
        const found = yield* Users.getOrSetMany(ids, fetchUsers)
        assert.strictEqual(found.filter(Option.isSome).length, ids.length)
        assert.deepStrictEqual(calls, [ids])
        yield* settled
        const after = yield* Effect.promise(() => commandStats(admin))
        const delta = commandDelta(before, after)
        assert.strictEqual(delta.mget, 6, `3 chunks read, then read again under the lock: ${JSON.stringify(delta)}`)
        // Redis counts the GETs its scripts make: each lock's release script reads the lock and the key's tombstone.
        assert.isAtMost(delta.get ?? 0, 2 * ids.length, `no single reads besides the release scripts': ${JSON.stringify(delta)}`)
        assertSame(yield* Users.getOrSetMany(ids, fetchUsers), ids.map((id) => Option.some(user(id))))
        assert.strictEqual(calls.length, 1, "all stored: no second call")
        assert.strictEqual((yield* Effect.promise(() => admin.keys("batch::lock:*"))).length, 0, "every lock released")
      }).pipe(Effect.provide(Cache.layerRedis({ url, namespace: "batch" })))
    }).pipe(Effect.scoped))

  it.live("two cache instances on one Redis, overlapping sets at once: the lock lets each key be produced once", () =>
    Effect.gen(function*() {
      const { admin, url } = yield* emptiedDatabase(30)
      const produced: Array<number> = []
      const fetchUsers = (ids: ReadonlyArray<number>) =>
        Effect.sync(() => produced.push(...ids)).pipe(Effect.zipRight(Effect.sleep("100 millis")), Effect.as(pairs(ids.filter((id) => id !== 13))))
      const instance = (ids: ReadonlyArray<number>) =>
        Users.getOrSetMany(ids, fetchUsers, { cacheAbsent: { ttl: "1 minute" } }).pipe(Effect.provide(Cache.layerRedis({ url, namespace: "fleet" })))
      const a = Array.from({ length: 60 }, (_, i) => i)
      const b = Array.from({ length: 60 }, (_, i) => i + 30)
      const [foundA, foundB] = yield* Effect.all([instance(a), instance(b)], { concurrency: "unbounded" })
      const expected = (ids: ReadonlyArray<number>) => ids.map((id) => id === 13 ? Option.none() : Option.some(user(id)))
      assertSame(foundA, expected(a))
      assertSame(foundB, expected(b))
      assert.deepStrictEqual([...produced].sort((x, y) => x - y), Array.from({ length: 90 }, (_, i) => i), "each key once across both")
      // Every value and the absent marker are stored; a third instance asks nothing.
      const again = yield* instance([...a, ...b])
      assertSame(again, expected([...a, ...b]))
      assert.strictEqual(produced.length, 90)
      assert.strictEqual((yield* Effect.promise(() => admin.keys("fleet::lock:*"))).length, 0, "every lock released")
    }).pipe(Effect.scoped))

  it.live("Keyspace.resolver on Redis: misses reach the inner resolver once, hits come from Redis", () =>
    Effect.gen(function*() {
      const { url } = yield* emptiedDatabase(29)
      const { batches, inner } = userResolver()
      const Cached = RequestResolver.contextFromEffect(Users.resolver(inner, { key: (request) => request.id }))
      const ask = (ids: ReadonlyArray<number>) =>
        Effect.forEach(ids, (id) => Effect.either(Effect.request(new GetUser({ id }), Cached)), { batching: true }).pipe(
          Effect.map((found) => found.map((one) => Either.isRight(one) ? one.right.name : one.left._tag)),
          Effect.provide(Cache.layerRedis({ url, namespace: "resolver" }))
        )
      assert.deepStrictEqual(yield* ask([1, 13, 2]), ["u1", "NotFound", "u2"])
      assert.deepStrictEqual(yield* ask([2, 3, 1, 13]), ["u2", "u3", "u1", "NotFound"], "another instance: Redis answers")
      assert.deepStrictEqual(batches, [[1, 13, 2], [3, 13]])
    }).pipe(Effect.scoped))

  it.live("on the two-layer cache: stored through the lock, kept in memory, seen by the other instance", () =>
    Effect.gen(function*() {
      const { url } = yield* emptiedDatabase(30)
      const { calls, fetchUsers } = source()
      const tiered = () => Cache.layerTiered({ namespace: "tiered", l1: { capacity: 100 }, redis: { url } })
      const one = yield* Layer.build(tiered())
      const two = yield* Layer.build(tiered())
      assertSame(yield* Users.getOrSetMany([1, 2, 3], fetchUsers).pipe(Effect.provide(one)), some(1, 2, 3))
      yield* settled.pipe(Effect.provide(one))
      assertSame(yield* Users.getOrSetMany([3, 2, 1], fetchUsers).pipe(Effect.provide(two)), some(3, 2, 1))
      assertSame(yield* Users.getMany([1, 2, 3]).pipe(Effect.provide(one)), some(1, 2, 3))
      assert.deepStrictEqual(calls, [[1, 2, 3]])
      // A write in one instance reaches the other's memory: the batch there reads the new value.
      yield* Users.set(2, new User({ id: 2, name: "renamed" })).pipe(Effect.provide(two))
      const renamed = Option.some(new User({ id: 2, name: "renamed" }))
      for (let i = 0; i < 500; i++) {
        const [found] = yield* Users.getOrSetMany([2], fetchUsers).pipe(Effect.provide(one))
        if (Option.isSome(found) && found.value.name === "renamed") break
        yield* Effect.sleep("10 millis")
      }
      assertSame((yield* Users.getOrSetMany([2], fetchUsers).pipe(Effect.provide(one)))[0], renamed)
      assert.strictEqual(calls.length, 1)
    }).pipe(Effect.scoped))

  it.live("a failing or hanging producer releases every lock it took, and stores nothing", () =>
    Effect.gen(function*() {
      const { admin, url } = yield* emptiedDatabase(30)
      yield* Effect.gen(function*() {
        const error = yield* Effect.flip(Users.getOrSetMany([1, 2, 3], (_) => Effect.fail(new FetchError())))
        assert.strictEqual(error._tag, "FetchError")
        const timeout = yield* Effect.flip(Users.getOrSetMany([4, 5], (_) => Effect.never, { hardTimeout: "300 millis" }))
        assert.strictEqual(timeout._tag, "ProducerTimeoutError")
        // The interrupted run releases its locks as it stops, in the background (a generous bound).
        const locks = () => Effect.promise(() => admin.keys("faults::lock:*"))
        for (let i = 0; i < 200 && (yield* locks()).length > 0; i++) yield* Effect.sleep("10 millis")
        assert.strictEqual((yield* locks()).length, 0, "no lock left")
        assert.strictEqual(yield* Effect.promise(() => admin.dbsize()), 0, "nothing stored")
        const { calls, fetchUsers } = source()
        assertSame(yield* Users.getOrSetMany([1, 4], fetchUsers), some(1, 4))
        assert.deepStrictEqual(calls, [[1, 4]], "the keys were free at once")
      }).pipe(Effect.provide(Cache.layerRedis({ url, namespace: "faults" })))
    }).pipe(Effect.scoped))

  it.live("eager refresh, two cache instances sharing Redis: batches on both past the refresh point refresh each key once in all", () =>
    Effect.gen(function*() {
      const { admin, url } = yield* emptiedDatabase(41)
      const Quick = Keyspace.make({ name: "quick", key: CacheKey.number, value: User, ttl: "4 seconds", eagerRefresh: 0.5 })
      const calls: Array<ReadonlyArray<number>> = []
      const fetchUsers = (ids: ReadonlyArray<number>) =>
        Effect.sync(() => calls.push([...ids])).pipe(
          Effect.zipRight(Effect.sleep("100 millis")),
          Effect.as(ids.map((id) => [id, new User({ id, name: "new" })] as const))
        )
      const one = yield* Layer.build(Cache.layerRedis({ url, namespace: "eager-fleet" }))
      const two = yield* Layer.build(Cache.layerRedis({ url, namespace: "eager-fleet" }))
      const ids = [1, 2, 3]
      const old = ids.map((id) => Option.some(new User({ id, name: "old" })))
      yield* Quick.setMany(ids.map((id) => [id, new User({ id, name: "old" })] as const)).pipe(Effect.provide(one))
      yield* Effect.sleep("2100 millis")
      const answers = yield* Effect.all(
        Array.from({ length: 20 }, (_, i) => Quick.getOrSetMany(ids, fetchUsers).pipe(Effect.provide(i % 2 === 0 ? one : two))),
        { concurrency: "unbounded" }
      )
      answers.forEach((found) => assertSame(found, old))
      // The refresh runs in the background (a generous bound).
      const fresh = ids.map((id) => Option.some(new User({ id, name: "new" })))
      for (let i = 0; i < 100; i++) {
        const found = yield* Quick.getMany(ids).pipe(Effect.provide(two))
        if (found.every((value) => Option.isSome(value) && value.value.name === "new")) break
        yield* Effect.sleep("20 millis")
      }
      assertSame(yield* Quick.getMany(ids).pipe(Effect.provide(two)), fresh)
      yield* Effect.sleep("200 millis")
      assert.deepStrictEqual(calls, [ids], "one producer call, on one instance")
      assert.strictEqual((yield* Effect.promise(() => admin.keys("eager-fleet::lock:*"))).length, 0, "every lock released")
    }).pipe(Effect.scoped))

  it.live("soft timeout on Redis: the stale values at the soft timeout, the producer's values stored in the background under the lock", () =>
    Effect.gen(function*() {
      const { admin, url } = yield* emptiedDatabase(42)
      const Slow = Keyspace.make({ name: "slow", key: CacheKey.number, value: User, ttl: "200 millis", grace: "1 hour", softTimeout: "100 millis" })
      const calls: Array<ReadonlyArray<number>> = []
      const gate = yield* Deferred.make<void>()
      const fetchUsers = (ids: ReadonlyArray<number>) =>
        Effect.sync(() => calls.push([...ids])).pipe(
          Effect.zipRight(Deferred.await(gate)),
          Effect.as(ids.map((id) => [id, new User({ id, name: "new" })] as const))
        )
      yield* Effect.gen(function*() {
        yield* Slow.setMany([[1, new User({ id: 1, name: "old" })], [2, new User({ id: 2, name: "old" })]])
        yield* Effect.sleep("300 millis")
        assertSame(yield* Slow.getOrSetMany([1, 2], fetchUsers, { ttl: "1 minute" }), [
          Option.some(new User({ id: 1, name: "old" })),
          Option.some(new User({ id: 2, name: "old" }))
        ], "the producer waits for the gate: these are the stale values")
        assert.strictEqual((yield* Slow.stats).staleServed, 2)
        assert.strictEqual((yield* Effect.promise(() => admin.keys("soft::lock:*"))).length, 2, "the run goes on, holding its locks")
        yield* Deferred.succeed(gate, undefined)
        for (let i = 0; i < 100 && (yield* Effect.flatMap(Cache.Cache, (cache) => cache.inFlight)) > 0; i++) yield* Effect.sleep("20 millis")
        assertSame(yield* Slow.getMany([1, 2]), [Option.some(new User({ id: 1, name: "new" })), Option.some(new User({ id: 2, name: "new" }))])
        assert.deepStrictEqual(calls, [[1, 2]])
        assert.strictEqual((yield* Effect.promise(() => admin.keys("soft::lock:*"))).length, 0, "released with the values")
      }).pipe(Effect.provide(Cache.layerRedis({ url, namespace: "soft" })))
    }).pipe(Effect.scoped))
})

let cluster: TestCluster | undefined
beforeAll(async () => {
  cluster = await startCluster()
}, 60_000)
afterAll(async () => {
  if (cluster !== undefined) await stopCluster(cluster)
})

describe("getOrSetMany on a Redis Cluster", () => {
  it.live("keys over every master, two instances at once: each key produced once, stored, no CROSSSLOT", () =>
    Effect.gen(function*() {
      const nodes = cluster!.ports.map((port) => ({ host: "127.0.0.1", port }))
      const produced: Array<number> = []
      const fetchUsers = (ids: ReadonlyArray<number>) =>
        Effect.sync(() => produced.push(...ids)).pipe(Effect.zipRight(Effect.sleep("100 millis")), Effect.as(pairs(ids)))
      const instance = <A, E>(program: Effect.Effect<A, E, Cache.Cache>) =>
        program.pipe(Effect.provide(Cache.layerRedis({ cluster: nodes, namespace: "cluster", connectTimeout: "5 seconds" })))
      const ids = Array.from({ length: 300 }, (_, i) => i)
      const [one, two] = yield* Effect.all([
        instance(Users.getOrSetMany(ids, fetchUsers)),
        instance(Users.getOrSetMany([...ids].reverse(), fetchUsers))
      ], { concurrency: "unbounded" })
      assertSame(one, ids.map((id) => Option.some(user(id))))
      assertSame(two, [...ids].reverse().map((id) => Option.some(user(id))))
      assert.deepStrictEqual([...produced].sort((x, y) => x - y), ids, "each key once")
      assertSame(yield* instance(Users.getMany(ids)), ids.map((id) => Option.some(user(id))))
    }))
})
