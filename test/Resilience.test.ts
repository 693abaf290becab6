import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { Data, Duration, Effect, Exit, Fiber, Layer, Option, Schema, Scope, TestClock } from "effect"
import { Redis as IORedis } from "ioredis"
import { inject } from "vitest"
import { Cache, CacheError, CacheKey, Keyspace, RedisLock, RedisStore } from "../src/index.js"
import { assertSame, redisOn } from "./utils.js"

class SourceDown extends Data.TaggedError("SourceDown")<{}> {}
class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { id: Schema.String }) {}

/** Until the cache's runs have stored their values (a write lands after the callers have the value). */
const pause = Effect.promise(() => new Promise((r) => setTimeout(r, 2)))
const settled = Effect.flatMap(Cache.Cache, (cache) =>
  Effect.gen(function*() {
    // Background runs start in fibers of their own: let them start, then wait for them to end.
    yield* pause
    for (let i = 0; i < 200 && (yield* cache.inFlight) > 0; i++) yield* pause
  }))

describe("hardTimeout: types", () => {
  it("a keyspace with a hard timeout has ProducerTimeoutError in getOrSet and memoize; one without has not", () => {
    const Bounded = Keyspace.make({ name: "bounded", key: CacheKey.string, value: Schema.Number, hardTimeout: "1 second" })
    const Unbounded = Keyspace.make({ name: "unbounded", key: CacheKey.string, value: Schema.Number })
    const produce = Effect.fail(new SourceDown()) as Effect.Effect<number, SourceDown>
    expectTypeOf(Bounded.getOrSet("a", produce)).toEqualTypeOf<
      Effect.Effect<number, SourceDown | CacheError.ProducerTimeoutError, Cache.Cache>
    >()
    expectTypeOf(Unbounded.getOrSet("a", produce)).toEqualTypeOf<Effect.Effect<number, SourceDown, Cache.Cache>>()
    expectTypeOf(Bounded.memoize((_: string) => produce)).toEqualTypeOf<
      (key: string) => Effect.Effect<number, SourceDown | CacheError.ProducerTimeoutError, Cache.Cache>
    >()
    expectTypeOf(Cache.getOrSet(Bounded, "a", produce)).toEqualTypeOf<
      Effect.Effect<number, SourceDown | CacheError.ProducerTimeoutError, Cache.Cache>
    >()
    // A call's own hard timeout adds it; the lock mode's error composes with it.
    expectTypeOf(Unbounded.getOrSet("a", produce, { hardTimeout: "1 second" })).toEqualTypeOf<
      Effect.Effect<number, SourceDown | CacheError.ProducerTimeoutError, Cache.Cache>
    >()
    expectTypeOf(Unbounded.getOrSet("a", produce, { lockMode: "at-most-once", softTimeout: "1 second" })).toEqualTypeOf<
      Effect.Effect<number, SourceDown | CacheError.LockError, Cache.Cache>
    >()
    expectTypeOf(produce.pipe(Cache.memoize({ key: "one", value: Schema.Number, hardTimeout: "1 second" }))).toEqualTypeOf<
      Effect.Effect<number, SourceDown | CacheError.ProducerTimeoutError, Cache.Cache>
    >()
    expectTypeOf(produce.pipe(Cache.memoize({ key: "one", value: Schema.Number }))).toEqualTypeOf<
      Effect.Effect<number, SourceDown, Cache.Cache>
    >()
  })

  it("a keyspace that caches failures has their type in getOrSet's error channel", () => {
    const Lookups = Keyspace.make({
      name: "lookups",
      key: CacheKey.string,
      value: Schema.Number,
      cacheFailure: { schema: NotFound, ttl: "30 seconds" },
      hardTimeout: "5 seconds"
    })
    const produce = Effect.succeed(1) as Effect.Effect<number, NotFound | SourceDown>
    expectTypeOf(Lookups.getOrSet("a", produce)).toEqualTypeOf<
      Effect.Effect<number, NotFound | SourceDown | CacheError.ProducerTimeoutError, Cache.Cache>
    >()
  })
})

describe("hardTimeout (memory store, TestClock)", () => {
  const Slow = Keyspace.make({ name: "slow", key: CacheKey.string, value: Schema.Number, ttl: "1 minute", grace: "1 hour", hardTimeout: "1 second" })

  it.effect("the caller fails with ProducerTimeoutError at the hard timeout; the producer is interrupted; the next call runs it again", () =>
    Effect.gen(function*() {
      let runs = 0
      let interrupted = 0
      const slow = Effect.sync(() => runs++).pipe(
        Effect.zipRight(Effect.as(Effect.sleep("10 seconds"), 5)),
        Effect.onInterrupt(() => Effect.sync(() => interrupted++))
      )
      const caller = yield* Effect.fork(Slow.getOrSet("a", slow))
      yield* TestClock.adjust("999 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(caller)))
      yield* TestClock.adjust("1 millis")
      const exit = yield* Fiber.await(caller)
      assert.isTrue(Exit.isFailure(exit))
      const error = yield* Effect.flip(exit)
      assert.isTrue(CacheError.isProducerTimeoutError(error))
      if (CacheError.isProducerTimeoutError(error)) {
        assert.strictEqual(error.reason, "Timeout")
        assert.isTrue(Duration.equals(error.timeout, Duration.seconds(1)))
        assert.match(error.message, /stopped waiting for the producer after 1s/)
      }
      yield* Effect.yieldNow()
      assert.strictEqual(interrupted, 1, "nobody else waited: the producer was interrupted")
      assertSame(yield* Slow.get("a"), Option.none())
      const quick = yield* Slow.getOrSet("a", Effect.succeed(6))
      assert.strictEqual(quick, 6)
      assert.strictEqual(runs, 1)
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("two callers: the one with a short hard timeout leaves, the producer runs on for the other, once", () =>
    Effect.gen(function*() {
      const Plain = Keyspace.make({ name: "plain", key: CacheKey.string, value: Schema.Number, ttl: "1 minute" })
      let runs = 0
      let interrupted = 0
      const slow = Effect.sync(() => runs++).pipe(
        Effect.zipRight(Effect.as(Effect.sleep("3 seconds"), 9)),
        Effect.onInterrupt(() => Effect.sync(() => interrupted++))
      )
      const patient = yield* Effect.fork(Plain.getOrSet("k", slow))
      const hasty = yield* Effect.fork(Plain.getOrSet("k", slow, { hardTimeout: "1 second" }))
      yield* TestClock.adjust("1 second")
      const hastyExit = yield* Fiber.await(hasty)
      assert.isTrue(Exit.isFailure(hastyExit) && CacheError.isProducerTimeoutError(yield* Effect.flip(hastyExit)))
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(yield* Fiber.join(patient), 9)
      assert.strictEqual(runs, 1)
      assert.strictEqual(interrupted, 0, "another caller still waited: the producer ran to its end")
      yield* settled
      assertSame(yield* Plain.get("k"), Option.some(9))
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("with a stale value the caller gets it at the hard timeout instead of the error", () =>
    Effect.gen(function*() {
      yield* Slow.set("s", 1)
      yield* TestClock.adjust("2 minutes")
      const caller = yield* Effect.fork(Slow.getOrSet("s", Effect.as(Effect.sleep("10 seconds"), 2)))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(caller), 1)
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("a producer within the hard timeout answers as usual", () =>
    Effect.gen(function*() {
      const caller = yield* Effect.fork(Slow.getOrSet("q", Effect.as(Effect.sleep("500 millis"), 3)))
      yield* TestClock.adjust("500 millis")
      assert.strictEqual(yield* Fiber.join(caller), 3)
      yield* TestClock.adjust("1 second")
      yield* settled
      assertSame(yield* Slow.get("q"), Option.some(3))
    }).pipe(Effect.provide(Cache.layerMemory())))
})

describe("hardTimeout on Redis with the lock (real time)", () => {
  const Remote = Keyspace.make({ name: "remote", key: CacheKey.string, value: Schema.Number, ttl: "1 minute", hardTimeout: "200 millis" })
  const layer = Cache.layer({ namespace: "hard" }).pipe(
    Layer.provide(Layer.merge(RedisStore.layer(), RedisLock.layer()).pipe(Layer.provideMerge(redisOn(25))))
  )

  it.live("the caller fails at the hard timeout, the producer is interrupted and the lock released at once", () =>
    Effect.gen(function*() {
      let interrupted = 0
      const slow = Effect.as(Effect.sleep("5 seconds"), 1).pipe(Effect.onInterrupt(() => Effect.sync(() => interrupted++)))
      const started = performance.now()
      const error = yield* Effect.flip(Remote.getOrSet("x", slow))
      const waited = performance.now() - started
      assert.isTrue(CacheError.isProducerTimeoutError(error))
      assert.isBelow(waited, 2_000, `a bound that holds (${Math.round(waited)} ms)`)
      yield* Effect.sleep("50 millis")
      assert.strictEqual(interrupted, 1)
      const client = new IORedis({ port: inject("redisPort"), db: 25, lazyConnect: true })
      const locks = yield* Effect.promise(() => client.keys("hard::lock*").finally(() => client.disconnect()))
      assert.deepStrictEqual(locks, [], "no lock left behind")
      // The next caller is not held up by a lock: it produces at once.
      assert.strictEqual(yield* Remote.getOrSet("x", Effect.succeed(2)), 2)
    }).pipe(Effect.provide(layer)))
})

const cachedFailureSuite = (name: string, layer: Layer.Layer<Cache.Cache>) =>
  describe(`cacheFailure: ${name}`, () => {
    const Lookups = Keyspace.make({
      name: "lookups",
      key: CacheKey.string,
      value: Schema.Number,
      ttl: "10 minutes",
      cacheFailure: { schema: NotFound, ttl: "30 seconds" }
    })

    it.effect("a failure the schema accepts is cached: 50 callers over its ttl run the producer once, then it runs again", () =>
      Effect.gen(function*() {
        let runs = 0
        const missing = Effect.suspend(() => {
          runs++
          return Effect.fail(new NotFound({ id: "nobody" }))
        })
        const first = yield* Effect.all(Array.from({ length: 25 }, () => Effect.flip(Lookups.getOrSet("nobody", missing))), {
          concurrency: "unbounded"
        })
        assert.isTrue(first.every((error) => error instanceof NotFound && error.id === "nobody"))
        yield* settled
        yield* TestClock.adjust("10 seconds")
        const later = yield* Effect.all(Array.from({ length: 25 }, () => Effect.flip(Lookups.getOrSet("nobody", missing))), {
          concurrency: "unbounded"
        })
        assert.isTrue(later.every((error) => error instanceof NotFound && error.id === "nobody"), "the stored failure, decoded")
        assert.strictEqual(runs, 1)
        assertSame(yield* Lookups.get("nobody"), Option.none(), "get reads a cached failure as a miss")
        yield* TestClock.adjust("21 seconds")
        assert.strictEqual(yield* Lookups.getOrSet("nobody", Effect.succeed(4)), 4, "past the failure's ttl the producer runs")
        yield* settled
        assertSame(yield* Lookups.get("nobody"), Option.some(4))
      }).pipe(Effect.provide(Layer.fresh(layer))))

    it.effect("a failure the schema does not accept, and a defect, are not cached", () =>
      Effect.gen(function*() {
        let runs = 0
        const down = Effect.suspend(() => {
          runs++
          return Effect.fail(new SourceDown())
        })
        assert.strictEqual((yield* Effect.flip(Lookups.getOrSet("k", down)))._tag, "SourceDown")
        yield* settled
        assert.strictEqual((yield* Effect.flip(Lookups.getOrSet("k", down)))._tag, "SourceDown")
        assert.strictEqual(runs, 2)
        const exit = yield* Effect.exit(Lookups.getOrSet("k", Effect.die("boom")))
        assert.isTrue(Exit.isFailure(exit))
        assert.strictEqual(yield* Lookups.getOrSet("k", Effect.succeed(1)), 1)
      }).pipe(Effect.provide(Layer.fresh(layer))))

    it.effect("a set replaces a cached failure; cacheWrite: false stores none", () =>
      Effect.gen(function*() {
        yield* Effect.flip(Lookups.getOrSet("a", Effect.fail(new NotFound({ id: "a" }))))
        yield* settled
        yield* Lookups.set("a", 10)
        assert.strictEqual(yield* Lookups.getOrSet("a", Effect.succeed(11)), 10)
        let runs = 0
        const missing = Effect.suspend(() => {
          runs++
          return Effect.fail(new NotFound({ id: "b" }))
        })
        yield* Effect.flip(Lookups.getOrSet("b", missing, { cacheWrite: false }))
        yield* settled
        yield* Effect.flip(Lookups.getOrSet("b", missing))
        assert.strictEqual(runs, 2)
      }).pipe(Effect.provide(Layer.fresh(layer))))
  })

cachedFailureSuite("memory store", Cache.layerMemory({ namespace: "failures" }))
cachedFailureSuite(
  "Redis store with the lock (the failure crosses the wire)",
  Cache.layer({ namespace: "failures" }).pipe(
    Layer.provide(Layer.merge(RedisStore.layer(), RedisLock.layer()).pipe(Layer.provideMerge(redisOn(25))))
  )
)

describe("eagerRefresh", () => {
  const Prices = Keyspace.make({ name: "prices", key: CacheKey.string, value: Schema.Number, ttl: "1 minute", eagerRefresh: 0.8 })

  it.effect("a hit past 80% of the ttl returns the value at once and refreshes it in the background, once for 100 callers", () =>
    Effect.gen(function*() {
      let runs = 0
      let next = 1
      const fetch = Effect.suspend(() => {
        runs++
        return Effect.as(Effect.sleep("1 second"), next++)
      })
      const first = yield* Effect.fork(Prices.getOrSet("ACME", fetch))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(first), 1)
      yield* settled
      // The entry was written at 1 s; its refresh point is at 1 s + 48 s.
      yield* TestClock.adjust("47 seconds")
      assert.strictEqual(yield* Prices.getOrSet("ACME", fetch), 1)
      yield* Effect.yieldNow()
      assert.strictEqual(runs, 1, "before the refresh point: a plain hit")
      yield* TestClock.adjust("2 seconds")
      const answers = yield* Effect.all(Array.from({ length: 100 }, () => Prices.getOrSet("ACME", fetch)), { concurrency: "unbounded" })
      assert.isTrue(answers.every((value) => value === 1), "the old value, at once")
      yield* Effect.yieldNow()
      assert.strictEqual(runs, 2, "one background refresh")
      yield* TestClock.adjust("1 second")
      yield* settled
      assertSame(yield* Prices.get("ACME"), Option.some(2))
      assert.strictEqual(yield* Prices.getOrSet("ACME", fetch), 2)
      yield* Effect.yieldNow()
      assert.strictEqual(runs, 2, "the refreshed entry starts a new period")
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("closing the cache interrupts a refresh under way, and that counts as no failure", () =>
    Effect.gen(function*() {
      let interrupted = 0
      const hanging = Effect.onInterrupt(Effect.never, () => Effect.sync(() => interrupted++))
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Cache.layerMemory({ namespace: "closing" }), scope)
      yield* Effect.gen(function*() {
        yield* Prices.set("ACME", 1)
        yield* TestClock.adjust("50 seconds")
        assert.strictEqual(yield* Prices.getOrSet("ACME", hanging), 1, "due: answered, refreshing")
        yield* Effect.yieldNow()
        assert.strictEqual(yield* Effect.flatMap(Cache.Cache, (cache) => cache.inFlight), 1)
      }).pipe(Effect.provide(context))
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(interrupted, 1)
      assert.strictEqual((yield* Prices.stats.pipe(Effect.provide(context))).refreshFailures, 0)
    }))

  it.effect("a hanging refresh is stopped at the hard timeout, else at 3 lockTimeouts: a failed refresh, the key refreshed again after graceBackoff", () =>
    Effect.gen(function*() {
      let runs = 0
      const hanging = Effect.zipRight(Effect.sync(() => runs++), Effect.never)
      const inFlight = Effect.flatMap(Cache.Cache, (cache) => cache.inFlight)
      yield* Prices.set("ACME", 1)
      yield* TestClock.adjust("50 seconds")
      assert.strictEqual(yield* Prices.getOrSet("ACME", hanging, { lockTimeout: "2 seconds" }), 1)
      yield* Effect.yieldNow()
      assert.strictEqual(yield* inFlight, 1)
      yield* TestClock.adjust("6 seconds")
      assert.strictEqual(yield* inFlight, 0)
      assert.strictEqual((yield* Prices.stats).refreshFailures, 1)
      yield* TestClock.adjust("3 seconds")
      assert.strictEqual(yield* Prices.getOrSet("ACME", hanging, { lockTimeout: "2 seconds" }), 1)
      yield* Effect.yieldNow()
      assert.strictEqual(runs, 1, "backed off")
      yield* Prices.set("ACME", 2)
      yield* TestClock.adjust("50 seconds")
      assert.strictEqual(yield* Prices.getOrSet("ACME", hanging, { hardTimeout: "1 second" }), 2)
      for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
      assert.strictEqual(runs, 2)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* inFlight, 0, "stopped at the hard timeout")
      assert.strictEqual((yield* Prices.stats).refreshFailures, 2)
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("a soft timeout's stale value is counted once: not again when the run left in the background then fails", () =>
    Effect.gen(function*() {
      const Soft = Keyspace.make({ name: "soft", key: CacheKey.string, value: Schema.Number, ttl: "1 minute", grace: "1 hour", softTimeout: "100 millis" })
      yield* Soft.set("A", 1)
      yield* TestClock.adjust("2 minutes")
      const caller = yield* Effect.fork(Soft.getOrSet("A", Effect.zipRight(Effect.sleep("1 second"), Effect.fail(new SourceDown()))))
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(yield* Fiber.join(caller), 1)
      yield* TestClock.adjust("1 second")
      yield* settled
      assert.strictEqual((yield* Soft.stats).staleServed, 1)
      // Backed off: served at once, counted.
      assert.strictEqual(yield* Soft.getOrSet("A", Effect.die("not asked")), 1)
      assert.strictEqual((yield* Soft.stats).staleServed, 2)
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("a failed refresh keeps the old value and is not retried before graceBackoff", () =>
    Effect.gen(function*() {
      const Slowly = Keyspace.make({ name: "slowly", key: CacheKey.string, value: Schema.Number, ttl: "100 seconds", eagerRefresh: 0.5 })
      let runs = 0
      yield* Slowly.set("X", 1)
      yield* TestClock.adjust("50 seconds")
      const failing = Effect.suspend(() => {
        runs++
        return Effect.fail(new SourceDown())
      })
      for (let i = 0; i < 5; i++) {
        assert.strictEqual(yield* Slowly.getOrSet("X", failing), 1)
        yield* settled
        yield* TestClock.adjust("1 second")
      }
      assert.strictEqual(runs, 1, "backed off for 10 s after the failure")
      yield* TestClock.adjust("6 seconds")
      assert.strictEqual(yield* Slowly.getOrSet("X", Effect.succeed(3)), 1)
      yield* settled
      assertSame(yield* Slowly.get("X"), Option.some(3))
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.live("Redis, two caches sharing the lock: both hit past the refresh point, the producer runs once in all", () =>
    Effect.gen(function*() {
      const Quick = Keyspace.make({ name: "quick", key: CacheKey.string, value: Schema.Number, ttl: "2 seconds", eagerRefresh: 0.5 })
      const one = Cache.layer({ namespace: "eager" }).pipe(
        Layer.provide(Layer.merge(RedisStore.layer(), RedisLock.layer()).pipe(Layer.provideMerge(redisOn(26))))
      )
      const two = Cache.layer({ namespace: "eager" }).pipe(
        Layer.provide(Layer.merge(RedisStore.layer(), RedisLock.layer()).pipe(Layer.provideMerge(redisOn(26, {}))))
      )
      let runs = 0
      const fetch = Effect.suspend(() => {
        runs++
        return Effect.as(Effect.sleep("100 millis"), runs + 10)
      })
      const a = yield* Layer.build(one)
      const b = yield* Layer.build(two)
      const onA = <X, E>(effect: Effect.Effect<X, E, Cache.Cache>) => Effect.provide(effect, a)
      const onB = <X, E>(effect: Effect.Effect<X, E, Cache.Cache>) => Effect.provide(effect, b)
      yield* onA(Quick.set("k", 1))
      yield* Effect.sleep("1100 millis")
      const answers = yield* Effect.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? onA : onB)(Quick.getOrSet("k", fetch))),
        { concurrency: "unbounded" }
      )
      assert.isTrue(answers.every((value) => value === 1), "the old value at once")
      yield* Effect.sleep("400 millis")
      assert.strictEqual(runs, 1)
      assertSame(yield* onB(Quick.get("k")), Option.some(11))
    }).pipe(Effect.scoped))
})

describe("resilience: the edges", () => {
  it.effect("during an eager refresh, callers are answered from the cache at once; a failed refresh never reaches them nor replaces the value", () =>
    Effect.gen(function*() {
      const Lookups = Keyspace.make({
        name: "lookups",
        key: CacheKey.string,
        value: Schema.Number,
        ttl: "1 minute",
        eagerRefresh: 0.5,
        cacheFailure: { schema: NotFound, ttl: "1 minute" }
      })
      yield* Lookups.set("k", 1)
      yield* TestClock.adjust("40 seconds")
      const slowFailure = Effect.zipRight(Effect.sleep("10 seconds"), Effect.fail(new NotFound({ id: "k" })))
      assert.strictEqual(yield* Lookups.getOrSet("k", slowFailure), 1)
      yield* Effect.yieldNow()
      // The refresh is under way: another caller is not made to wait for it.
      const during = yield* Effect.fork(Lookups.getOrSet("k", slowFailure))
      yield* Effect.yieldNow()
      const polled = yield* Fiber.poll(during)
      assert.isTrue(Option.isSome(polled) && Exit.isSuccess(polled.value) && polled.value.value === 1, "answered at once")
      yield* TestClock.adjust("10 seconds")
      yield* settled
      assertSame(yield* Lookups.get("k"), Option.some(1), "the failed refresh kept the value: no cached failure over it")
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("a caller joining a run gets the stale value at its hard timeout too", () =>
    Effect.gen(function*() {
      const Slow = Keyspace.make({ name: "slow", key: CacheKey.string, value: Schema.Number, ttl: "1 minute", grace: "1 hour", hardTimeout: "1 second" })
      yield* Slow.set("s", 1)
      yield* TestClock.adjust("2 minutes")
      const slow = Effect.as(Effect.sleep("10 seconds"), 2)
      const first = yield* Effect.fork(Slow.getOrSet("s", slow))
      yield* Effect.yieldNow()
      const second = yield* Effect.fork(Slow.getOrSet("s", slow))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(first), 1)
      assert.strictEqual(yield* Fiber.join(second), 1)
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("has answers as get does: not for a stale entry, a cached failure, or an entry invalidated by a tag", () =>
    Effect.gen(function*() {
      const Things = Keyspace.make({
        name: "things",
        key: CacheKey.string,
        value: Schema.Number,
        ttl: "1 minute",
        grace: "1 hour",
        cacheFailure: { schema: NotFound, ttl: "1 minute" },
        tags: () => ["all-things"]
      })
      yield* Things.set("a", 1)
      assert.isTrue(yield* Things.has("a"))
      yield* Cache.invalidateTags(["all-things"])
      assert.isFalse(yield* Things.has("a"))
      yield* Things.set("b", 2)
      assert.isTrue(yield* Things.has("b"))
      yield* TestClock.adjust("2 minutes")
      assert.isFalse(yield* Things.has("b"), "stale")
      yield* Effect.flip(Things.getOrSet("c", Effect.fail(new NotFound({ id: "c" }))))
      yield* settled
      assert.isFalse(yield* Things.has("c"), "a cached failure")
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("a throwing tags function is a typed error for set, and getOrSet still answers", () =>
    Effect.gen(function*() {
      const Broken = Keyspace.make({
        name: "broken",
        key: CacheKey.string,
        value: Schema.Number,
        tags: (): Iterable<string> => {
          throw new Error("no tags today")
        }
      })
      const error = yield* Effect.flip(Broken.set("a", 1))
      assert.isTrue(CacheError.isInvalidKeyError(error))
      assert.match(String(error.cause), /no tags today/)
      assert.strictEqual(yield* Broken.getOrSet("a", Effect.succeed(2)), 2)
    }).pipe(Effect.provide(Cache.layerMemory())))
})

describe("a call's own eagerRefresh and cacheFailure", () => {
  const Plain = Keyspace.make({ name: "plain", key: CacheKey.string, value: Schema.Number, ttl: "1 minute" })
  const notFoundFor30s = { schema: NotFound, ttl: "30 seconds" } as const

  it("its failure type is in the call's error channel", () => {
    const produce = Effect.succeed(1) as Effect.Effect<number, SourceDown>
    expectTypeOf(Plain.getOrSet("a", produce, { cacheFailure: notFoundFor30s })).toEqualTypeOf<
      Effect.Effect<number, SourceDown | NotFound, Cache.Cache>
    >()
    expectTypeOf(Plain.getOrSet("a", produce, { eagerRefresh: 0.5 })).toEqualTypeOf<Effect.Effect<number, SourceDown, Cache.Cache>>()
  })

  it.effect("a cached failure is served to the calls with the same policy; a call without it runs the producer", () =>
    Effect.gen(function*() {
      let runs = 0
      const missing = Effect.suspend(() => {
        runs++
        return Effect.fail(new NotFound({ id: "x" }))
      })
      yield* Effect.flip(Plain.getOrSet("x", missing, { cacheFailure: notFoundFor30s }))
      yield* settled
      const again = yield* Effect.flip(Plain.getOrSet("x", missing, { cacheFailure: notFoundFor30s }))
      assert.isTrue(again instanceof NotFound)
      assert.strictEqual(runs, 1)
      assert.strictEqual(yield* Plain.getOrSet("x", Effect.succeed(5)), 5, "no policy: the failure entry is a miss")
      yield* settled
      assert.strictEqual(yield* Plain.getOrSet("x", missing, { cacheFailure: notFoundFor30s }), 5)
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("a call's eagerRefresh refreshes in the background past its point", () =>
    Effect.gen(function*() {
      let runs = 0
      const fetch = Effect.sync(() => ++runs + 10)
      yield* Plain.set("e", 1)
      yield* TestClock.adjust("40 seconds")
      assert.strictEqual(yield* Plain.getOrSet("e", fetch), 1)
      yield* settled
      assert.strictEqual(runs, 0, "the keyspace has no eager refresh")
      assert.strictEqual(yield* Plain.getOrSet("e", fetch, { eagerRefresh: 0.5 }), 1)
      yield* settled
      assert.strictEqual(runs, 1)
      assertSame(yield* Plain.get("e"), Option.some(11))
    }).pipe(Effect.provide(Cache.layerMemory())))
})
