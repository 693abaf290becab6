import { assert, describe, it } from "@effect/vitest"
import type { ChildProcess } from "node:child_process"
import { Context, Duration, Effect, Exit, Layer, Option, Schema, Scope } from "effect"
import { Redis as IORedis } from "ioredis"
import { afterAll, beforeAll } from "vitest"
import { Cache, CacheBus, CacheKey, CacheStore, Keyspace, Redis, RedisBus, RedisStore, TieredStore } from "../src/index.js"
import { busSuite, storeSuite } from "../src/testing.js"
import * as Proxy from "./faults/proxy.js"
import { runFleet } from "../examples/fleet.js"
import { commandDelta, commandStats, startRedis, stopRedis } from "./setup/servers.js"
import { assertSame } from "./utils.js"

// A server of this file's own: the tests kill its pub/sub connections, pause and restart it.
let server: { port: number; process: ChildProcess }
beforeAll(async () => {
  server = await startRedis()
})
afterAll(async () => {
  await stopRedis(server.process)
})
const urlOf = (db: number, port = server.port) => `redis://127.0.0.1:${port}/${db}`

/** Database `db` of this file's server, emptied, with a plain connection to it for the scope. */
const database = (db: number) =>
  Effect.gen(function*() {
    const url = urlOf(db)
    const admin = yield* Effect.acquireRelease(Effect.sync(() => new IORedis(url)), (admin) => Effect.sync(() => admin.disconnect()))
    yield* Effect.promise(() => admin.flushdb())
    return { url, admin }
  })

const sleep = (millis: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, millis)))

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
    capabilities: { synchronousRead: true, assignsVersions: true, conditionalWrites: true, tiered: true }
  }
)

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User, ttl: "10 minutes" })

const ada = new User({ id: 1, name: "Ada" })
const grace = new User({ id: 1, name: "Grace" })

type Instance = Context.Context<Cache.Cache | Redis.Redis>

/** One instance of a two-layer cache (a fresh layer: its own memory, client and bus). */
const instance = (url: string, namespace: string, options: Partial<Cache.TieredOptions> = {}) =>
  Effect.flatMap(Scope.Scope, (scope) =>
    Layer.buildWithScope(
      Cache.layerTiered({ namespace, l1: { capacity: 1_000 }, ...options, redis: { url, ...options.redis } }),
      scope
    ))

const on = <A, E>(instance: Instance, effect: Effect.Effect<A, E, Cache.Cache | Redis.Redis>) => Effect.provide(effect, instance)

/** What an instance's memory may serve unchecked under `key` now (at the TestClock's time 0). */
const unchecked = (instance: Instance, key: string) =>
  on(instance, Effect.map(Cache.Cache, (cache) => cache.store.getNow!(key, 0)))

/** Polls `read` every 2 ms until `done` holds of its result, for at most `millis` of real time; the time it took. */
const until = <A, E, R>(read: Effect.Effect<A, E, R>, done: (a: A) => boolean, millis = 2_000) =>
  Effect.gen(function*() {
    const start = performance.now()
    while (performance.now() - start < millis) {
      if (done(yield* read)) return performance.now() - start
      yield* sleep(2)
    }
    return yield* Effect.die(new Error(`not done within ${millis} ms`))
  })

const nameOf = (found: Option.Option<User>) => Option.isSome(found) ? found.value.name : "none"

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

  it.scoped("the bus's connection killed: B checks its copies against Redis and never serves the value A replaced", () =>
    Effect.gen(function*() {
      const { admin, url } = yield* database(1)
      const a = yield* instance(url, "tiered4")
      const b = yield* instance(url, "tiered4")
      yield* on(a, Users.set(1, ada))
      assertSame(yield* on(b, Users.get(1)), Option.some(ada))
      yield* Effect.promise(() => admin.client("KILL", "TYPE", "pubsub"))
      // B hears its connection close (a reset on loopback): from then on its copies are checked.
      yield* until(unchecked(b, "tiered4:users:1"), (copy) => copy === undefined)
      yield* on(a, Users.set(1, grace))
      assertSame(yield* on(b, Users.get(1)), Option.some(grace), "B checked its copy against Redis")
      // Subscribed again: once a read has checked its copy, B serves it from memory without asking
      // Redis, and hears A again.
      yield* until(Effect.zipRight(on(b, Users.get(1)), unchecked(b, "tiered4:users:1")), (copy) => copy !== undefined)
      yield* on(a, Users.set(1, ada))
      yield* until(on(b, Users.get(1)), (found) => Option.isSome(found) && found.value.name === "Ada")
    }))

  it.scoped("Redis down: memory keeps serving what it holds, writes stay local and fail with the store's error", () =>
    Effect.gen(function*() {
      const { url } = yield* database(1)
      const a = yield* instance(url, "tiered5", { circuitBreaker: false, redis: { url, commandTimeout: "100 millis" } })
      yield* on(a, Users.set(1, ada))
      const redis = yield* on(a, Redis.Redis)
      // Cut this instance off: its connections close and cannot come back for a moment.
      const client = redis.client as IORedis
      client.disconnect(false)
      assertSame(yield* on(a, Users.get(1)), Option.some(ada))
      const write = yield* on(a, Effect.exit(Users.set(2, grace)))
      assert.isTrue(Exit.isFailure(write))
      assertSame(yield* on(a, Users.get(2)), Option.some(grace), "the write is kept in memory")
      const produced = yield* on(a, Users.getOrSet(3, Effect.succeed(grace)))
      assert.strictEqual(produced.name, "Grace")
      const store = yield* on(a, Effect.map(Cache.Cache, (cache) => cache.store))
      assert.strictEqual(store.name, "tiered")
      assert.isTrue(store.capabilities.tiered)
      // The bus stayed up, yet the unshared copy is not served unchecked: once Redis answers, it is
      // checked, and Redis never had it.
      assert.isUndefined(yield* unchecked(a, "tiered5:users:2"))
      yield* Effect.sync(() => client.connect().catch(() => {}))
      yield* until(Effect.map(on(a, Effect.either(Users.get(2))), (found) => found._tag === "Right" && Option.isNone(found.right)), (done) => done)
      assert.isTrue(CacheStore.isInternalKey(`${"tiered5"}::bus`))
    }))

  it.scoped("an open circuit breaker does not keep a two-layer cache's writes and deletes from its memory", () =>
    Effect.gen(function*() {
      const { url } = yield* database(9)
      const a = yield* instance(url, "tiered11", { timeout: "200 millis", redis: { url, commandTimeout: "100 millis" } })
      yield* on(a, Users.set(1, ada))
      yield* on(a, Users.set(2, ada))
      const client = (yield* on(a, Redis.Redis)).client as IORedis
      client.disconnect(false)
      // Enough failed reads of a key memory does not hold to open the breaker.
      for (let i = 0; i < 6; i++) yield* on(a, Effect.either(Users.get(99)))
      const refused = yield* on(a, Effect.flip(Users.get(98)))
      assert.include(String(refused.cause), "circuit is open", "the breaker is open")
      assertSame(yield* on(a, Users.get(1)), Option.some(ada), "reads are served from memory")
      assert.isTrue(Exit.isFailure(yield* on(a, Effect.exit(Users.set(1, grace)))))
      assertSame(yield* on(a, Users.get(1)), Option.some(grace), "the refused write is kept in memory all the same")
      yield* on(a, Effect.exit(Users.invalidate(2)))
      assert.isTrue(Option.isNone(yield* on(a, Effect.orElseSucceed(Users.get(2), () => Option.none()))), "the delete dropped the copy")
      yield* Effect.sync(() => client.connect().catch(() => {}))
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

  it.scoped("a silent drop of the bus (a blackholed link, no reset): B serves its old copy for at most one heartbeat, then checks Redis", () =>
    Effect.gen(function*() {
      const { url } = yield* database(2)
      const proxy = yield* Effect.acquireRelease(Effect.promise(() => Proxy.start(server.port)), (proxy) => Effect.promise(() => proxy.close()))
      const heartbeat = 300
      const a = yield* instance(url, "tiered6")
      const b = yield* instance(urlOf(2, proxy.port), "tiered6", { bus: { heartbeat: `${heartbeat} millis` } })
      yield* on(a, Users.set(1, ada))
      assertSame(yield* on(b, Users.get(1)), Option.some(ada))
      assert.isDefined(yield* unchecked(b, "tiered6:users:1"))

      // B's subscriber connection goes silent; its data connection still works.
      proxy.blackholeWhere("subscribe")
      yield* on(a, Users.set(1, grace))
      const written = performance.now()
      const reads: Array<readonly [number, string]> = []
      yield* until(
        Effect.map(on(b, Users.get(1)), (found) => {
          reads.push([performance.now() - written, nameOf(found)])
          return nameOf(found) === "Grace"
        }),
        (done) => done,
        heartbeat * 3
      )
      for (let i = 0; i < 50; i++) {
        reads.push([performance.now() - written, nameOf(yield* on(b, Users.get(1)))])
        yield* sleep(2)
      }
      const lastOld = Math.max(...reads.filter(([, name]) => name === "Ada").map(([at]) => at), 0)
      const firstNew = reads.find(([, name]) => name === "Grace")![0]
      yield* Effect.sync(() => console.log(`silent drop: B served the replaced value until ${lastOld.toFixed(0)} ms after the write, the new one from ${firstNew.toFixed(0)} ms (heartbeat ${heartbeat} ms)`))
      assert.isBelow(lastOld, heartbeat + 100, "the old copy is served for at most one heartbeat (plus scheduling)")
      assert.isTrue(reads.every(([at, name]) => at < firstNew || name === "Grace"), "once B has the new value it never goes back")

      // The heartbeat made the connection again: B trusts its memory again and hears A.
      yield* until(Effect.zipRight(on(b, Users.get(1)), unchecked(b, "tiered6:users:1")), (copy) => copy !== undefined, 5_000)
      yield* on(a, Users.set(1, ada))
      yield* until(Effect.map(on(b, Users.get(1)), nameOf), (name) => name === "Ada")
    }))

  it.scoped("Redis paused for 2 s under both instances: memory still answers, every read within its bound", () =>
    Effect.gen(function*() {
      const { url } = yield* database(3)
      const options = { timeout: "300 millis", redis: { url, commandTimeout: "200 millis" } } as const
      const a = yield* instance(url, "tiered7", options)
      const b = yield* instance(url, "tiered7", options)
      yield* on(a, Users.set(1, ada))
      assertSame(yield* on(b, Users.get(1)), Option.some(ada))
      server.process.kill("SIGSTOP")
      const paused = performance.now()
      const slowest = [0, 0]
      yield* Effect.ensuring(
        Effect.gen(function*() {
          while (performance.now() - paused < 2_000) {
            for (const [i, on_] of [a, b].entries()) {
              const start = performance.now()
              assertSame(yield* on(on_, Users.get(1)), Option.some(ada))
              slowest[i] = Math.max(slowest[i]!, performance.now() - start)
            }
            yield* sleep(20)
          }
        }),
        Effect.sync(() => server.process.kill("SIGCONT"))
      )
      yield* Effect.sync(() => console.log(`Redis paused 2 s: slowest read on A ${slowest[0]!.toFixed(0)} ms, on B ${slowest[1]!.toFixed(0)} ms`))
      for (const millis of slowest) assert.isBelow(millis, 300 + 150, "each read within the cache's timeout")
      // Back: a write on A reaches B again.
      yield* until(Effect.exit(on(a, Users.set(1, grace))), Exit.isSuccess, 5_000)
      yield* until(Effect.map(on(b, Users.get(1)), nameOf), (name) => name === "Grace", 5_000)
    }))

  it.scoped("Redis restarted (its data gone) under both instances: B does not keep serving what Redis lost, and follows A again", () =>
    Effect.gen(function*() {
      const own = yield* Effect.acquireRelease(Effect.promise(() => startRedis()), (s) => Effect.promise(() => stopRedis(s.process)))
      let current = own.process
      yield* Effect.addFinalizer(() => Effect.promise(() => stopRedis(current)))
      const url = `redis://127.0.0.1:${own.port}/0`
      const a = yield* instance(url, "tiered8")
      const b = yield* instance(url, "tiered8")
      yield* on(a, Users.set(1, ada))
      assertSame(yield* on(b, Users.get(1)), Option.some(ada))
      yield* Effect.promise(() => stopRedis(own.process))
      current = (yield* Effect.promise(() => startRedis([], own.port))).process
      // Once B is subscribed again, its copy is checked: Redis has nothing, so B has nothing.
      yield* until(Effect.map(on(b, Users.get(1)), Option.isNone), (gone) => gone, 10_000)
      yield* until(Effect.exit(on(a, Users.set(1, grace))), Exit.isSuccess, 5_000)
      yield* until(Effect.map(on(b, Users.get(1)), nameOf), (name) => name === "Grace", 5_000)
      yield* on(a, Users.set(1, ada))
      yield* until(Effect.map(on(b, Users.get(1)), nameOf), (name) => name === "Ada")
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
