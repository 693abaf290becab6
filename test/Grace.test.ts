import { assert, describe, it } from "@effect/vitest"
import { Data, Deferred, Duration, Effect, Fiber, Layer, Metric, Option, Schema, TestClock } from "effect"
import { Cache, CacheKey, Keyspace, RedisLock, RedisStore } from "../src/index.js"
import { assertSame, redisOn } from "./utils.js"

class SourceDown extends Data.TaggedError("SourceDown")<{}> {}

const Rates = Keyspace.make({
  name: "rates",
  key: CacheKey.string,
  value: Schema.Number,
  ttl: "1 minute",
  grace: "1 hour",
  graceBackoff: "10 seconds"
})

/** A source that counts its calls and fails while `down`. */
const source = () => {
  const state = { calls: 0, down: false, next: 1 }
  const fetch = Effect.suspend(() => {
    state.calls++
    return state.down ? Effect.fail(new SourceDown()) : Effect.succeed(state.next++)
  })
  return { state, fetch }
}

/** Until the cache's runs have stored their values (a write lands after the callers have the value). */
const stored = Effect.flatMap(Cache.Cache, (cache) =>
  Effect.promise(async () => {
    for (let i = 0; i < 200 && (await Effect.runPromise(cache.inFlight)) > 0; i++) await new Promise((r) => setTimeout(r, 5))
  }))

const staleServed = (store: string) =>
  Metric.value(Cache.metrics.staleServed.pipe(Metric.tagged("cache", "grace"), Metric.tagged("keyspace", "rates"), Metric.tagged("store", store)))

const graceSuite = (name: string, layer: Layer.Layer<Cache.Cache>, store: string) =>
  describe(`grace: ${name}`, () => {
    it.effect("past its ttl an entry is stale: get misses, getOrSet serves it when the producer fails, and refreshes it when it works", () =>
      Effect.gen(function*() {
        const { state, fetch } = source()
        assert.strictEqual(yield* Rates.getOrSet("EUR", fetch), 1)
        yield* stored
        yield* TestClock.adjust("2 minutes")
        assertSame(yield* Rates.get("EUR"), Option.none(), "get never returns a stale value")
        state.down = true
        const before = (yield* staleServed(store)).count
        assert.strictEqual(yield* Rates.getOrSet("EUR", fetch), 1, "the stale value, the producer having failed")
        assert.strictEqual((yield* staleServed(store)).count - before, 1)
        // A defect is a failure too.
        yield* TestClock.adjust("11 seconds")
        assert.strictEqual(yield* Rates.getOrSet("EUR", Effect.die("boom")), 1)
        yield* TestClock.adjust("11 seconds")
        state.down = false
        assert.strictEqual(yield* Rates.getOrSet("EUR", fetch), 2, "the producer works again: a fresh value")
        yield* stored
        assertSame(yield* Rates.get("EUR"), Option.some(2))
      }).pipe(Effect.provide(Layer.fresh(layer))))

    it.effect("getStale gives a fresh value, then the stale one with its age, then nothing past the grace", () =>
      Effect.gen(function*() {
        yield* Rates.set("JPY", 150)
        const fresh = yield* Rates.getStale("JPY")
        assert.isTrue(Option.isSome(fresh) && fresh.value.value === 150 && !fresh.value.isStale)
        yield* TestClock.adjust("5 minutes")
        assertSame(yield* Rates.get("JPY"), Option.none())
        const stale = yield* Rates.getStale("JPY")
        assert.isTrue(Option.isSome(stale))
        if (Option.isSome(stale)) {
          assert.strictEqual(stale.value.value, 150)
          assert.isTrue(stale.value.isStale)
          // On the memory store the version comes from the Clock: the age is exact. Redis versions its
          // writes on its own clock, which the TestClock does not move.
          if (store === "memory") assert.closeTo(Duration.toMillis(stale.value.age), 300_000, 1)
        }
        yield* TestClock.adjust("2 hours")
        assertSame(yield* Rates.getStale("JPY"), Option.none())
        assertSame(yield* Rates.getStale("none"), Option.none())
      }).pipe(Effect.provide(Layer.fresh(layer))))

    it.effect("past its grace the producer's failure reaches the caller", () =>
      Effect.gen(function*() {
        const { state, fetch } = source()
        yield* Rates.getOrSet("USD", fetch)
        yield* stored
        yield* TestClock.adjust("2 hours")
        state.down = true
        const failure = yield* Effect.flip(Rates.getOrSet("USD", fetch))
        assert.strictEqual(failure._tag, "SourceDown")
      }).pipe(Effect.provide(Layer.fresh(layer))))

    it.effect("during an outage the producer runs once per graceBackoff, not once per call", () =>
      Effect.gen(function*() {
        const { state, fetch } = source()
        yield* Rates.getOrSet("GBP", fetch)
        yield* stored
        yield* TestClock.adjust("2 minutes")
        state.down = true
        state.calls = 0
        // 30 calls over 29 s: the backoff (10 s) lets the producer run at 0 s, 10 s and 20 s.
        for (let i = 0; i < 30; i++) {
          assert.strictEqual(yield* Rates.getOrSet("GBP", fetch), 1)
          yield* TestClock.adjust("1 second")
        }
        assert.strictEqual(state.calls, 3)
        // 100 concurrent callers share one run as always.
        yield* TestClock.adjust("10 seconds")
        state.calls = 0
        const all = yield* Effect.all(Array.from({ length: 100 }, () => Rates.getOrSet("GBP", fetch)), { concurrency: "unbounded" })
        assert.isTrue(all.every((v) => v === 1))
        assert.strictEqual(state.calls, 1)
      }).pipe(Effect.provide(Layer.fresh(layer))))

    it.effect("an interrupted producer is not a failure: nothing stale is served for it, nothing is backed off", () =>
      Effect.gen(function*() {
        const { fetch } = source()
        yield* Rates.getOrSet("CHF", fetch)
        yield* stored
        yield* TestClock.adjust("2 minutes")
        const exit = yield* Effect.exit(Rates.getOrSet("CHF", Effect.interrupt))
        assert.isTrue(exit._tag === "Failure")
        assert.strictEqual(yield* Rates.getOrSet("CHF", fetch), 2, "the next call runs the producer")
      }).pipe(Effect.provide(Layer.fresh(layer))))
  })

describe("a call's own grace", () => {
  const Prices = Keyspace.make({ name: "prices", key: CacheKey.string, value: Schema.Number, ttl: "1 minute" })

  it.effect("a function of the value: each entry is kept stale for its own window", () =>
    Effect.gen(function*() {
      const graceOf = (price: number) => price === 1 ? "10 minutes" : "1 minute"
      assert.strictEqual(yield* Prices.getOrSet("long", Effect.succeed(1), { grace: graceOf }), 1)
      assert.strictEqual(yield* Prices.getOrSet("short", Effect.succeed(2), { grace: graceOf }), 2)
      yield* Prices.set("set", 1, { grace: graceOf })
      yield* TestClock.adjust("5 minutes")
      const long = yield* Prices.getStale("long")
      assert.isTrue(Option.isSome(long) && long.value.isStale && long.value.value === 1, "within its 10-minute grace")
      assertSame(yield* Prices.getStale("short"), Option.none(), "past its 1-minute grace")
      assert.isTrue(Option.isSome(yield* Prices.getStale("set")), "set takes the function too")
      yield* TestClock.adjust("10 minutes")
      assertSame(yield* Prices.getStale("long"), Option.none())
    }).pipe(Effect.provide(Cache.layerMemory())))
})

describe("softTimeout", () => {
  const Quotes = Keyspace.make({
    name: "quotes",
    key: CacheKey.string,
    value: Schema.Number,
    ttl: "1 minute",
    grace: "1 hour",
    softTimeout: "100 millis"
  })

  it.effect("with a stale value, a slow producer: callers get the stale value at the soft timeout, the run completes in the background, once", () =>
    Effect.gen(function*() {
      let runs = 0
      const slow = Effect.zipRight(Effect.sync(() => runs++), Effect.as(Effect.sleep("1 second"), 2))
      yield* Quotes.set("ACME", 1)
      yield* TestClock.adjust("2 minutes")
      const callers = yield* Effect.fork(Effect.all(Array.from({ length: 100 }, () => Quotes.getOrSet("ACME", slow)), { concurrency: "unbounded" }))
      yield* TestClock.adjust("100 millis")
      const answers = yield* Fiber.join(callers)
      assert.isTrue(answers.every((value) => value === 1), "the stale value at the soft timeout")
      assert.strictEqual(runs, 1)
      assertSame(yield* Quotes.get("ACME"), Option.none(), "still stale: the producer runs on")
      yield* TestClock.adjust("1 second")
      yield* Effect.yieldNow()
      const cache = yield* Cache.Cache
      for (let i = 0; i < 100 && (yield* cache.inFlight) > 0; i++) yield* Effect.yieldNow()
      assertSame(yield* Quotes.get("ACME"), Option.some(2), "the background run stored its value")
      assert.strictEqual(runs, 1)
      assert.strictEqual(yield* Quotes.getOrSet("ACME", slow), 2)
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("a caller that cannot be interrupted (an HTTP handler) still gets the stale value at the soft timeout, and stops at the hard one", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      yield* Quotes.set("UNINT", 1)
      yield* TestClock.adjust("2 minutes")
      const caller = yield* Effect.fork(Effect.uninterruptible(Quotes.getOrSet("UNINT", Effect.as(Deferred.await(gate), 2))))
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(yield* Fiber.join(caller), 1, "the stale value, the producer still held")
      yield* Deferred.succeed(gate, undefined)
      // And its hard timeout: the caller stops waiting at the bound.
      const Bounded = Keyspace.make({ name: "bounded", key: CacheKey.string, value: Schema.Number, hardTimeout: "1 second" })
      const bounded = yield* Effect.fork(Effect.uninterruptible(Effect.flip(Bounded.getOrSet("k", Effect.never))))
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* Fiber.join(bounded))._tag, "ProducerTimeoutError")
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("without a stale value the caller waits for the producer; a call may set its own soft timeout", () =>
    Effect.gen(function*() {
      const slow = Effect.as(Effect.sleep("1 second"), 7)
      const cold = yield* Effect.fork(Quotes.getOrSet("NEW", slow))
      yield* TestClock.adjust("100 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(cold)), "nothing stale to give: still waiting")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(cold), 7)
      // Stale, with a call's own, longer soft timeout: the producer wins.
      yield* TestClock.adjust("2 minutes")
      const patient = yield* Effect.fork(Quotes.getOrSet("NEW", Effect.as(Effect.sleep("200 millis"), 8), { softTimeout: "1 second" }))
      yield* TestClock.adjust("200 millis")
      assert.strictEqual(yield* Fiber.join(patient), 8)
    }).pipe(Effect.provide(Cache.layerMemory())))
})

graceSuite("memory store", Cache.layerMemory({ namespace: "grace" }), "memory")
graceSuite(
  "Redis store (the physical ttl is ttl + grace)",
  Cache.layer({ namespace: "grace" }).pipe(
    Layer.provide(Layer.merge(RedisStore.layer(), RedisLock.layer()).pipe(Layer.provideMerge(redisOn(24))))
  ),
  "redis"
)
