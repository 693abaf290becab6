import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Metric, Option, Schedule, Schema, TestClock } from "effect"
import { Cache, CacheKey, Keyspace } from "../src/index.js"
import { assertSame, emptiedDatabase } from "./utils.js"

const Rates = Keyspace.make({ name: "rates", key: CacheKey.string, value: Schema.Number, ttl: "10 minutes" })

const sleep = (millis: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, millis)))

describe("onProduced", () => {
  it.effect("runs after a producer ran, with the cache in context; not on a hit; a failing hook changes nothing else", () =>
    Effect.gen(function*() {
      const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String })
      const seen: Array<string> = []
      const Users = Keyspace.make({
        name: "users",
        key: CacheKey.number,
        value: Schema.Struct({ id: Schema.Number, name: Schema.String }),
        // Warm a related key: the hook's effect needs the cache, which the keyspace's cache provides.
        onProduced: (id, user) => Effect.zipRight(Effect.sync(() => seen.push(`users:${id}`)), Names.set(id, user.name))
      })
      const user = yield* Users.getOrSet(1, Effect.succeed({ id: 1, name: "Ada" }))
      assert.strictEqual(user.name, "Ada")
      assertSame(yield* Names.get(1), Option.some("Ada"))
      yield* Users.getOrSet(1, Effect.succeed({ id: 1, name: "not produced" }))
      assert.deepStrictEqual(seen, ["users:1"], "a hit runs no hook")

      // The call's own hook runs after the keyspace's; a failing one is logged, the value stored.
      const order: Array<string> = []
      const value = yield* Users.getOrSet(2, Effect.succeed({ id: 2, name: "Bob" }), {
        onProduced: (produced) => Effect.zipRight(Effect.sync(() => order.push(produced.name)), Effect.fail("hook failed"))
      })
      assert.strictEqual(value.name, "Bob")
      assert.deepStrictEqual(seen, ["users:1", "users:2"])
      assert.deepStrictEqual(order, ["Bob"])
      assertSame(yield* Users.get(2), Option.some({ id: 2, name: "Bob" }))
      // Through memoize too, and through Cache.memoize.
      const memoized = Users.memoize((id: number) => Effect.succeed({ id, name: `user ${id}` }), {
        onProduced: (produced) => Effect.sync(() => order.push(produced.name))
      })
      yield* memoized(3)
      yield* memoized(3)
      let loads = 0
      const config = Effect.sync(() => ++loads).pipe(
        Cache.memoize({ key: "config", value: Schema.Number, onProduced: (n) => Effect.sync(() => order.push(`config ${n}`)) })
      )
      yield* config
      yield* config
      assert.deepStrictEqual(order, ["Bob", "user 3", "config 1"])
    }).pipe(Effect.provide(Cache.layerMemory())))
})

describe("onProduced under the Redis lock", () => {
  it.live("runs after the producer ran under the lock, once per run, not for a value another instance produced", () =>
    Effect.gen(function*() {
      const { url } = yield* emptiedDatabase(16)
      const seen: Array<string> = []
      const Users = Keyspace.make({
        name: "users",
        key: CacheKey.number,
        value: Schema.String,
        onProduced: (id, name) => Effect.sync(() => seen.push(`keyspace ${id} ${name}`))
      })
      const call = (id: number) =>
        Users.getOrSet(id, Effect.succeed(`user ${id}`), { onProduced: (name) => Effect.sync(() => seen.push(`call ${name}`)) })
      const a = yield* Layer.build(Cache.layerRedis({ url, namespace: "hooks" }))
      const b = yield* Layer.build(Cache.layerRedis({ url, namespace: "hooks" }))
      assert.strictEqual(yield* Effect.provide(call(1), a), "user 1")
      // Another instance finds the value the first one stored: no producer ran there, no hook.
      assert.strictEqual(yield* Effect.provide(call(1), b), "user 1")
      // The hooks run once the run's release is done, after its callers have the value.
      const deadline = Date.now() + 2_000
      while (seen.length < 2 && Date.now() < deadline) yield* sleep(5)
      assert.deepStrictEqual(seen, ["keyspace 1 user 1", "call user 1"])
    }).pipe(Effect.scoped))
})

describe("warmUp", () => {
  it.effect("fills the cache on start; a slow producer holds the start for the timeout at most (on the Clock), and completes in the background", () =>
    Effect.gen(function*() {
      const produced: Array<string> = []
      const fetchRate = (currency: string) =>
        Effect.zipRight(currency === "SLOW" ? Effect.sleep("600 millis") : Effect.void, Effect.sync(() => {
          produced.push(currency)
          return currency.length
        }))
      const building = yield* Effect.fork(Layer.build(
        Rates.warmUp(["EUR", "USD", "SLOW"], fetchRate, { timeout: "150 millis" }).pipe(Layer.provideMerge(Cache.layerMemory()))
      ))
      yield* TestClock.adjust("149 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(building)), "the start waits for the warm-up")
      yield* TestClock.adjust("1 millis")
      const context = yield* Fiber.join(building)
      const read = (currency: string) => Effect.provide(Rates.get(currency), context)
      assertSame(yield* read("EUR"), Option.some(3))
      assertSame(yield* read("USD"), Option.some(3))
      assertSame(yield* read("SLOW"), Option.none(), "the slow key is still being produced")
      yield* TestClock.adjust("450 millis")
      assertSame(yield* read("SLOW"), Option.some(4), "and lands in the background")
      // Warming a cached key again leaves it alone.
      yield* Layer.build(Rates.warmUp(["EUR"], () => Effect.succeed(99)).pipe(Layer.provide(Layer.succeedContext(context))))
      assertSame(yield* read("EUR"), Option.some(3))
      assert.deepStrictEqual(produced.sort(), ["EUR", "SLOW", "USD"])
    }).pipe(Effect.scoped))

  it.effect("without a timeout the start waits for every key; failures are counted in a log line, not a failed start", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(
        Rates.warmUp(["A", "B", "C"], (c) => c === "B" ? Effect.fail("no rate for B") : Effect.succeed(1)).pipe(
          Layer.provideMerge(Cache.layerMemory())
        )
      )
      const found = yield* Effect.provide(Rates.getMany(["A", "B", "C"]), context)
      assertSame(found, [Option.some(1), Option.none(), Option.some(1)])
    }).pipe(Effect.scoped))
})

describe("refreshEvery", () => {
  it.effect("refreshes on every period of the Clock; a failed refresh keeps the old value and is counted", () =>
    Effect.gen(function*() {
      let n = 0
      let failing = false
      const produce = Effect.suspend(() => failing ? Effect.fail("source down") : Effect.succeed(++n))
      const context = yield* Layer.build(Rates.refreshEvery("EUR", produce, "1 minute").pipe(Layer.provideMerge(Cache.layerMemory())))
      const read = Effect.provide(Rates.get("EUR"), context)
      yield* TestClock.adjust("1 millis")
      assertSame(yield* read, Option.some(1), "filled on start")
      yield* TestClock.adjust("1 minute")
      assertSame(yield* read, Option.some(2))
      yield* TestClock.adjust("1 minute")
      assertSame(yield* read, Option.some(3))
      failing = true
      const failures = Cache.metrics.refreshFailures.pipe(Metric.tagged("cache", "cache"), Metric.tagged("keyspace", "rates"))
      const before = (yield* Metric.value(failures)).count
      yield* TestClock.adjust("1 minute")
      assertSame(yield* read, Option.some(3), "the old value stays")
      assert.strictEqual((yield* Metric.value(failures)).count - before, 1)
      failing = false
      yield* TestClock.adjust("1 minute")
      assertSame(yield* read, Option.some(4))
    }).pipe(Effect.scoped))

  it.effect("with a Schedule, each instance refreshes on its own schedule", () =>
    Effect.gen(function*() {
      let n = 0
      const produce = Effect.sync(() => ++n)
      const context = yield* Layer.build(
        Rates.refreshEvery("CHF", produce, Schedule.spaced("30 seconds")).pipe(Layer.provideMerge(Cache.layerMemory()))
      )
      const read = Effect.provide(Rates.get("CHF"), context)
      yield* TestClock.adjust("1 millis")
      assertSame(yield* read, Option.some(1), "filled on start")
      yield* TestClock.adjust("30 seconds")
      assertSame(yield* read, Option.some(2))
      yield* TestClock.adjust("30 seconds")
      assertSame(yield* read, Option.some(3))
    }).pipe(Effect.scoped))

  it.live("3 instances sharing Redis over 5 periods run the producer about 5 times, not 15", () =>
    Effect.gen(function*() {
      const { url } = yield* emptiedDatabase(22)
      let runs = 0
      const produce = Effect.sync(() => ++runs)
      const period = 200
      const instances = yield* Effect.forEach([1, 2, 3], () =>
        Layer.build(
          Rates.refreshEvery("EUR", produce, `${period} millis`).pipe(
            Layer.provideMerge(Cache.layerRedis({ url, namespace: "refresh-fleet" }))
          )
        ))
      const from = Date.now()
      yield* sleep(5 * period + period / 2)
      // The periods that began meanwhile (the clocks of the three instances are this process's).
      const periods = Math.floor(Date.now() / period) - Math.floor(from / period)
      console.log(`refreshEvery: 3 instances, ${period} ms period, ${periods} periods began: ${runs} producer runs, the fill on start included`)
      assert.isAtLeast(runs, periods, "every period refreshed")
      assert.isAtMost(runs, periods + 2, "once per period across the 3 instances (plus the fill on start)")
      const value = yield* Effect.provide(Rates.get("EUR"), instances[0]!)
      assert.isTrue(Option.isSome(value) && value.value >= runs - 1)
    }).pipe(Effect.scoped))
})

