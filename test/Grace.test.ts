import { assert, describe, it } from "@effect/vitest"
import { Data, Effect, Layer, Metric, Option, Schema, TestClock } from "effect"
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

graceSuite("memory store", Cache.layerMemory({ namespace: "grace" }), "memory")
graceSuite(
  "Redis store (the physical ttl is ttl + grace)",
  Cache.layer({ namespace: "grace" }).pipe(
    Layer.provide(Layer.merge(RedisStore.layer(), RedisLock.layer()).pipe(Layer.provideMerge(redisOn(24))))
  ),
  "redis"
)
