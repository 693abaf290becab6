import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Option, Schema } from "effect"
import { Redis as IORedis } from "ioredis"
import { Cache, CacheBus, CacheKey, Keyspace, Redis, RedisBus, RedisStore, TieredStore } from "../src/index.js"
import { busSuite, storeSuite } from "../src/testing.js"
import { runFleet } from "../examples/fleet.js"
import { commandDelta, commandStats } from "./setup/servers.js"
import { assertSame } from "./utils.js"
import { ada, grace, instance, on, ownServer, sleep, unchecked, until, Users } from "./tiered-helpers.js"

// A server of this file's own.
const { urlOf, database } = ownServer()

// The conformance suites, on this file's server.
busSuite(
  "RedisBus",
  Layer.suspend(() => RedisBus.layer({ heartbeat: "300 millis" }).pipe(Layer.provide(Redis.layer({ url: urlOf(5) })))),
  {
    sever: Effect.acquireUseRelease(
      Effect.sync(() => new IORedis(urlOf(5))),
      (admin) => Effect.promise(() => admin.client("KILL", "TYPE", "pubsub")),
      (admin) => Effect.sync(() => admin.disconnect())
    )
  }
)
storeSuite(
  "TieredStore over Redis",
  Layer.suspend(() =>
    TieredStore.layer({ namespace: "t", capacity: 100 }).pipe(
      Layer.provide(RedisStore.layer().pipe(Layer.provideMerge(RedisBus.layer()))),
      Layer.provide(Layer.tap(Redis.layer({ url: urlOf(6) }), (context) => Effect.promise(() => Context.get(context, Redis.Redis).client.flushdb())))
    )
  ),
  {
    unit: "100 millis",
    advance: (d) => sleep(Duration.toMillis(d)),
    live: true,
    capabilities: { synchronousRead: true, assignsVersions: true, conditionalWrites: true, tiered: true, expire: true, increment: true, raw: "redis" }
  }
)

describe("Cache.layerTiered", () => {
  it.scoped("A writes, B reads it; A updates and invalidates, and B follows through the bus; B's hot reads cost no Redis GET", () =>
    Effect.gen(function*() {
      const { admin, url } = yield* database(1)
      const a = yield* instance(url, "tiered1")
      const b = yield* instance(url, "tiered1")
      yield* on(a, Users.set(1, ada))
      assertSame(yield* on(b, Users.get(1)), Option.some(ada))

      const before = yield* Effect.promise(() => commandStats(admin))
      for (let i = 0; i < 1_000; i++) assertSame(yield* on(b, Users.get(1)), Option.some(ada))
      const delta = commandDelta(before, yield* Effect.promise(() => commandStats(admin)), ["info", "ping"])
      assert.deepStrictEqual(delta, {}, "1,000 hot reads on B send nothing to Redis")

      yield* on(a, Users.set(1, grace))
      const updated = yield* until(on(b, Users.get(1)), (found) => Option.isSome(found) && found.value.name === "Grace")
      yield* on(a, Users.invalidate(1))
      const invalidated = yield* until(on(b, Users.get(1)), Option.isNone)
      yield* Effect.sync(() => console.log(`B saw the update after ${updated.toFixed(1)} ms and the invalidation after ${invalidated.toFixed(1)} ms`))
    }))

  it.scoped("an instance never hears its own writes back, and an older message never evicts a newer copy", () =>
    Effect.gen(function*() {
      const { url } = yield* database(1)
      const a = yield* instance(url, "tiered2")
      const b = yield* instance(url, "tiered2")
      yield* on(a, Users.set(1, ada))
      assertSame(yield* on(b, Users.get(1)), Option.some(ada))
      yield* on(b, Users.set(1, grace))
      // An old message for key 1 (version 1) arrives at B late: its newer copy stays.
      const bus = yield* on(a, Effect.serviceOption(CacheBus.CacheBus))
      assert.isTrue(Option.isNone(bus), "the bus is internal to the layer")
      const redis = yield* on(a, Redis.Redis)
      yield* Effect.promise(() =>
        redis.client.publish(CacheBus.channelOf("tiered2"), CacheBus.encode({ _tag: "Keys", origin: "someone", entries: [["tiered2:users:1", 1]] }))
      )
      yield* sleep(50)
      assert.isDefined(yield* unchecked(b, "tiered2:users:1"), "B's copy outlives an older message")
      assertSame(yield* on(a, Users.get(1)), Option.some(grace))
    }))

  it.scoped("clear and clearKeyspace on one instance empty every instance's memory", () =>
    Effect.gen(function*() {
      const { url } = yield* database(1)
      const a = yield* instance(url, "tiered3")
      const b = yield* instance(url, "tiered3")
      yield* on(a, Users.setMany([[1, ada], [2, grace]]))
      assertSame(yield* on(b, Users.getMany([1, 2])), [Option.some(ada), Option.some(grace)])
      yield* on(a, Users.clear)
      yield* until(on(b, Users.getMany([1, 2])), (found) => found.every(Option.isNone))
    }))

  it.scoped("a delete is newer than what it removes, even an entry whose version is ahead of Redis's clock", () =>
    Effect.gen(function*() {
      const { admin, url } = yield* database(10)
      const a = yield* instance(url, "tiered12")
      const b = yield* instance(url, "tiered12")
      yield* on(a, Users.set(1, ada))
      // The entry's version 10 s ahead of Redis's clock (written before the server's clock was set back).
      const ahead = Buffer.alloc(8)
      ahead.writeDoubleBE((Date.now() + 10_000) * 1000)
      yield* Effect.promise(() => admin.setrange("tiered12:users:1", 16, ahead))
      assertSame(yield* on(b, Users.get(1)), Option.some(ada))
      assert.isDefined(yield* unchecked(b, "tiered12:users:1"))
      yield* on(a, Users.invalidate(1))
      yield* until(unchecked(b, "tiered12:users:1"), (copy) => copy === undefined)
      assertSame(yield* on(b, Users.get(1)), Option.none())
    }))

})

describe("Cache.layerTiered across 4 real processes", () => {
  it("4 processes × 250 callers on one cold key: one producer run, and every process ends with the value in memory", { timeout: 60_000 }, async () => {
    const admin = new IORedis(urlOf(4))
    await admin.flushdb()
    const fleet = await runFleet(4, { url: urlOf(4), namespace: "tiered-fleet", key: "cold", callers: 250, producerMillis: 50, leaseMillis: 10_000, tier: "tiered" })
    const runs = Number(await admin.get("runs:cold"))
    admin.disconnect()
    console.log(
      `tiered stampede: producer runs ${runs}; ${fleet.callers} callers got ${fleet.distinctValues} value(s); last caller ` +
        `${fleet.lastWaiterMillis} ms after the producer finished; in memory: ${fleet.outputs.map((o) => o.inMemory).join(", ")}`
    )
    assert.strictEqual(runs, 1)
    assert.strictEqual(fleet.callers, 1_000)
    assert.strictEqual(fleet.distinctValues, 1)
    assert.isTrue(fleet.outputs.every((o) => o.inMemory === true), "every process has the value in its memory tier")
  })
})

describe("Cache.layerTiered: a keyspace in one tier", () => {
  interface Handle {
    readonly id: bigint
    readonly run: () => number
  }
  const Handles = Keyspace.make({ name: "handles", key: CacheKey.string, value: Schema.Any as Schema.Schema<Handle>, tier: "local" })
  const Blobs = Keyspace.make({ name: "blobs", key: CacheKey.string, value: Schema.String, tier: "shared" })

  it.scoped("tier local: never serialized, kept in each instance's memory only; an invalidation on one instance reaches the others", () =>
    Effect.gen(function*() {
      const { admin, url } = yield* database(7)
      const a = yield* instance(url, "tiered9")
      const b = yield* instance(url, "tiered9")
      // A bigint and a function: JSON could not carry them, and nothing tries.
      const handle: Handle = { id: 1n, run: () => 42 }
      yield* on(a, Handles.set("h", handle))
      const got = yield* on(a, Handles.get("h"))
      assert.isTrue(Option.isSome(got) && got.value === handle, "the same object back")
      assertSame(yield* on(b, Handles.get("h")), Option.none(), "not shared")
      assert.deepStrictEqual(yield* Effect.promise(() => admin.keys("tiered9:*")), [], "nothing in Redis")
      const own = yield* on(b, Handles.getOrSet("h", Effect.succeed<Handle>({ id: 2n, run: () => 7 })))
      assert.strictEqual(own.run(), 7)
      yield* on(a, Handles.invalidate("h"))
      yield* until(on(b, Handles.get("h")), Option.isNone)
      assertSame(yield* on(a, Handles.get("h")), Option.none())
    }))

  it.scoped("tier shared: entries are read from Redis each time and never kept in memory", () =>
    Effect.gen(function*() {
      const { admin, url } = yield* database(8)
      const a = yield* instance(url, "tiered10")
      yield* on(a, Blobs.set("big", "x".repeat(1_000)))
      const before = yield* Effect.promise(() => commandStats(admin))
      for (let i = 0; i < 3; i++) assertSame(yield* on(a, Blobs.get("big")), Option.some("x".repeat(1_000)))
      const delta = commandDelta(before, yield* Effect.promise(() => commandStats(admin)), ["info", "ping"])
      assert.strictEqual(delta.get, 3)
      assert.isUndefined(yield* unchecked(a, "tiered10:blobs:big"))
      assert.strictEqual(yield* on(a, Effect.map(Cache.Cache, (cache) => cache.store.local!.fallback("tiered10:blobs:big", 0))), undefined)
    }))
})
