import { assert, describe, it } from "@effect/vitest"
import type { ChildProcess } from "node:child_process"
import { Clock, Duration, Effect, Layer, Option, Ref, Schedule, Schema } from "effect"
import { Redis as IORedis } from "ioredis"
import { afterAll, beforeAll, inject } from "vitest"
import { Cache, type CacheError, CacheEntry, CacheKey, CacheStore, Keyspace, Redis, RedisLock, RedisStore } from "../src/index.js"
import { commandDelta, commandStats, startRedis, startSentinel, stopRedis, stopSentinel } from "./setup/servers.js"
import { storeSuite } from "../src/testing.js"
import { assertSame, redisOn } from "./utils.js"

const bytes = (text: string) => new TextEncoder().encode(text)

const sleep = (duration: Duration.Duration) =>
  Effect.promise(() => new Promise((resolve) => setTimeout(resolve, Duration.toMillis(duration))))

/** A Redis client on database `db` of the shared test server, emptied when the layer is built. */
const storeOn = (db: number, options: RedisStore.Options = {}) => RedisStore.layer(options).pipe(Layer.provide(redisOn(db)))

// Redis expires keys on its own clock: the suite waits for real, in units of 100 ms.
storeSuite("RedisStore", storeOn(1), { unit: "100 millis", advance: sleep, capabilities: { assignsVersions: true, conditionalWrites: true, expire: true, increment: true, raw: "redis" } })

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User, ttl: "10 minutes" })

describe("RedisStore", () => {
  it.effect("refuses values over maxValueBytes on write (dropping the old value) and on read", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      yield* store.set("big", bytes("small"), undefined)
      const write = yield* Effect.flip(store.set("big", bytes("x".repeat(101)), undefined))
      assert.strictEqual(write.reason, "TooLarge")
      assert.isFalse(yield* store.has("big"))
      const redis = yield* Redis.Redis
      yield* Effect.promise(() => redis.client.set("raw-big", "y".repeat(500)))
      const read = yield* Effect.flip(store.get("raw-big"))
      assert.strictEqual(read.reason, "TooLarge")
      const batch = yield* Effect.flip(store.getMany(["missing", "raw-big"]))
      assert.strictEqual(batch.reason, "TooLarge")
      assert.strictEqual(batch.key, "raw-big")
    }).pipe(Effect.provide(RedisStore.layer({ maxValueBytes: 100 }).pipe(Layer.provideMerge(redisOn(2))))))

  it.effect("a key of another type is a WrongType error for get, and getOrSet falls back", () =>
    Effect.gen(function*() {
      const redis = yield* Redis.Redis
      yield* Effect.promise(() => redis.client.rpush("wt:users:1", "a", "b"))
      const error = yield* Effect.flip(Users.get(1))
      assert.isTrue(error._tag === "StoreError" && error.reason === "WrongType")
      const user = yield* Users.getOrSet(1, Effect.succeed(new User({ id: 1, name: "fallback" })))
      assert.strictEqual(user.name, "fallback")
    }).pipe(Effect.provide(
      Cache.layer({ namespace: "wt" }).pipe(Layer.provide(RedisStore.layer()), Layer.provideMerge(redisOn(3)))
    )))

  it.live("a read never overtakes a command issued before it: getOrSet's write (sent after its callers have the value), then gets and getMany", () =>
    Effect.gen(function*() {
      // Reads are not auto-pipelined, writes are: a get right after a getOrSet (whose write is still
      // queued in the auto-pipeline) must not reach Redis before that write.
      const ids = Array.from({ length: 40 }, (_, i) => i)
      for (let round = 0; round < 5; round++) {
        const seen = yield* Effect.forEach(ids, (id) =>
          Effect.gen(function*() {
            const name = `round ${round}`
            yield* Users.getOrSet(id, Effect.succeed(new User({ id, name })), { ttl: "1 minute" })
            const alone = yield* Users.get(id)
            const many = yield* Users.getMany([id, id + 1_000])
            return [Option.map(alone, (u) => u.name), Option.map(many[0]!, (u) => u.name)] as const
          }), { concurrency: "unbounded" })
        for (const [alone, many] of seen) {
          assertSame(alone, Option.some(`round ${round}`))
          assertSame(many, Option.some(`round ${round}`))
        }
        yield* Users.invalidateMany(ids)
      }
    }).pipe(Effect.provide(
      Cache.layer({ namespace: "order" }).pipe(Layer.provide(RedisStore.layer()), Layer.provideMerge(redisOn(15)))
    )))

  it.effect("a cache over Redis: values round-trip, corrupt bytes are a miss and are dropped", () =>
    Effect.gen(function*() {
      yield* Users.set(1, new User({ id: 1, name: "Ada" }))
      assertSame(yield* Users.get(1), Option.some(new User({ id: 1, name: "Ada" })))
      const redis = yield* Redis.Redis
      const stored = yield* Effect.promise(() => redis.client.getBuffer("rt:users:1"))
      const entry = CacheEntry.decode(stored!)!
      assert.strictEqual(entry.fingerprint, Users.fingerprint)
      assert.strictEqual(new TextDecoder().decode(entry.body), `{"id":1,"name":"Ada"}`)
      // Logical expiry reads the Effect Clock (here the TestClock); physical expiry is Redis's own.
      const now = yield* Clock.currentTimeMillis
      assert.strictEqual(entry.freshUntil, now + 10 * 60_000, "logical expiry: the ttl")
      assert.strictEqual(entry.staleUntil, entry.freshUntil, "no grace: the entry is gone when it goes stale")
      // The version comes from Redis (TIME, in microseconds), not from this process.
      const [seconds] = yield* Effect.promise(() => redis.client.time())
      assert.isTrue(Math.abs(entry.version / 1e6 - Number(seconds)) < 5, `version ${entry.version}`)
      // A wave-1 entry ("ck1:<fingerprint>:<body>") is a miss, not a crash, and the next write heals it.
      yield* Effect.promise(() => redis.client.set("rt:users:3", `ck1:${Users.fingerprint}:{"id":3,"name":"old"}`))
      assert.isTrue(Option.isNone(yield* Users.get(3)))
      assert.strictEqual((yield* Users.getOrSet(3, Effect.succeed(new User({ id: 3, name: "new" })))).name, "new")
      assertSame(yield* Users.get(3), Option.some(new User({ id: 3, name: "new" })))
      yield* Effect.promise(() => redis.client.set("rt:users:2", Buffer.from([0xff, 0x00, 0xfe])))
      assert.isTrue(Option.isNone(yield* Users.get(2)))
      assert.strictEqual(yield* Effect.promise(() => redis.client.exists("rt:users:2")), 0)
      const ttl = yield* Effect.promise(() => redis.client.pttl("rt:users:1"))
      assert.isTrue(ttl > 9 * 60_000 && ttl <= 10 * 60_000)
    }).pipe(Effect.provide(
      Cache.layer({ namespace: "rt" }).pipe(Layer.provide(RedisStore.layer()), Layer.provideMerge(redisOn(4)))
    )))
})

describe("RedisStore compression", () => {
  const Docs = Keyspace.make({ name: "docs", key: CacheKey.string, value: Schema.String })
  const layerWith = (options: RedisStore.Options) =>
    Cache.layer({ namespace: "zip" }).pipe(Layer.provide(RedisStore.layer(options)), Layer.provideMerge(redisOn(14)))

  it.effect("a body above compressAbove is stored deflated, flagged, and read back as it was; below it, or with false, as it is", () =>
    Effect.gen(function*() {
      const redis = yield* Redis.Redis
      const big = "lorem ipsum dolor sit amet ".repeat(4_000)
      yield* Docs.set("big", big)
      yield* Docs.set("small", "short")
      const raw = yield* Effect.promise(() => redis.client.getBuffer("zip:docs:big"))
      assert.isTrue(CacheEntry.isCompressed(raw!), "flagged in the header")
      assert.isBelow(raw!.length, big.length / 10, `${raw!.length} bytes on the wire for ${big.length}`)
      assertSame(yield* Docs.get("big"), Option.some(big))
      assertSame(yield* Docs.getMany(["big", "small"]), [Option.some(big), Option.some("short")])
      assert.isFalse(CacheEntry.isCompressed((yield* Effect.promise(() => redis.client.getBuffer("zip:docs:small")))!))
      // Through the lock's release too.
      assert.strictEqual(yield* Docs.getOrSet("produced", Effect.succeed(big)), big)
      // The release lands once the caller has its value.
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 50)))
      assert.isTrue(CacheEntry.isCompressed((yield* Effect.promise(() => redis.client.getBuffer("zip:docs:produced")))!))
      assertSame(yield* Docs.get("produced"), Option.some(big))
    }).pipe(Effect.provide(layerWith({ compressAbove: 1024 })), Effect.provide(RedisLock.layer({ compressAbove: 1024 }).pipe(Layer.provide(redisOn(14))))))

  it.effect("compressAbove: false stores every body as it is, and still reads compressed ones", () =>
    Effect.gen(function*() {
      const redis = yield* Redis.Redis
      const big = "x".repeat(100_000)
      yield* Docs.set("plain", big)
      assert.isFalse(CacheEntry.isCompressed((yield* Effect.promise(() => redis.client.getBuffer("zip:docs:plain")))!))
      assertSame(yield* Docs.get("plain"), Option.some(big))
    }).pipe(Effect.provide(layerWith({ compressAbove: false }))))

  it.effect("a compressed body that inflates past maxValueBytes is TooLarge; one that does not inflate is a miss that heals", () =>
    Effect.gen(function*() {
      const redis = yield* Redis.Redis
      // 10 MB of zeros deflate to ~10 KB: refused on read at a 1 MB limit, never inflated past it.
      yield* Docs.set("bomb", "0".repeat(10_000_000)).pipe(Effect.provide(layerWith({ compressAbove: 1024, maxValueBytes: 20_000_000 })))
      const error = yield* Effect.flip(Docs.get("bomb"))
      assert.strictEqual(error._tag, "StoreError")
      assert.strictEqual((error as CacheError.StoreError).reason, "TooLarge")
      // A flagged envelope whose body is not DEFLATE: a miss, and the key is dropped.
      yield* Docs.set("good", "y".repeat(5_000))
      const raw = (yield* Effect.promise(() => redis.client.getBuffer("zip:docs:good")))!
      const corrupt = Buffer.from(raw)
      corrupt.fill(0xff, corrupt.length - 20)
      yield* Effect.promise(() => redis.client.set("zip:docs:good", corrupt))
      assertSame(yield* Docs.get("good"), Option.none())
      assert.strictEqual(yield* Effect.promise(() => redis.client.exists("zip:docs:good")), 0)
      // One bit flipped inside the compressed stream: the checksum catches what inflating alone would not.
      yield* Docs.set("flipped", "z".repeat(3_000) + "abcdefghij".repeat(500))
      const packed = Buffer.from((yield* Effect.promise(() => redis.client.getBuffer("zip:docs:flipped")))!)
      packed[packed.length - 12]! ^= 0x10
      yield* Effect.promise(() => redis.client.set("zip:docs:flipped", packed))
      assertSame(yield* Docs.get("flipped"), Option.none())
    }).pipe(Effect.provide(layerWith({ compressAbove: 1024, maxValueBytes: 1_000_000 }))))
})

describe("RedisStore on a server of its own", () => {
  let server: { port: number; process: ChildProcess }
  let admin: IORedis
  beforeAll(async () => {
    server = await startRedis()
    admin = new IORedis(server.port, "127.0.0.1")
  })
  afterAll(async () => {
    admin.disconnect()
    await stopRedis(server.process)
  })

  const stats = Effect.promise(() => commandStats(admin))

  const layer = () =>
    Cache.layer({ namespace: "own", timeout: "500 millis" }).pipe(
      Layer.provideMerge(RedisStore.layer()),
      Layer.provideMerge(Redis.layer({ url: `redis://127.0.0.1:${server.port}`, commandTimeout: "300 millis" }))
    )

  it.live("batches are one MGET / one pipeline; a stampede reads once; clear uses SCAN, never KEYS", () =>
    Effect.gen(function*() {
      const keys = Array.from({ length: 100 }, (_, i) => i)
      yield* Users.setMany(keys.map((i) => [i, new User({ id: i, name: `u${i}` })] as const))
      const before = yield* stats
      const got = yield* Users.getMany(keys)
      assert.isTrue(got.every(Option.isSome))
      const afterBatch = yield* stats
      assert.deepStrictEqual(commandDelta(before, afterBatch), { mget: 1, info: 1 })
      // 100 gets of distinct keys, concurrent: coalesced into one MGET too.
      const single = yield* Effect.all(keys.map((i) => Users.get(i)), { concurrency: "unbounded" })
      assert.isTrue(single.every((found, i) => Option.isSome(found) && found.value.id === i))
      const afterGets = yield* stats
      assert.deepStrictEqual(commandDelta(afterBatch, afterGets), { mget: 1, info: 1 })

      const calls = yield* Ref.make(0)
      const produce = Effect.as(Effect.zipRight(Ref.update(calls, (n) => n + 1), Effect.sleep("50 millis")), new User({ id: 1_000, name: "cold" }))
      const users = yield* Effect.all(Array.from({ length: 1_000 }, () => Users.getOrSet(1_000, produce)), { concurrency: "unbounded" })
      assert.strictEqual(yield* Ref.get(calls), 1)
      assert.isTrue(users.every((u) => u.name === "cold"))
      // Callers are answered before the write lands; wait for the run to finish it.
      yield* Effect.flatMap(Cache.Cache, (cache) => cache.inFlight).pipe(
        Effect.repeat({ until: (n) => n === 0, schedule: Schedule.spaced("5 millis"), times: 400 })
      )
      const stampede = commandDelta(afterGets, yield* stats)
      // 1,000 concurrent readers share one GET; the run re-reads once under the guard and writes once.
      // The write is one script (Redis's TIME stamps the version inside it): one EVAL or EVALSHA. It is
      // conditional on the version before the producer ran: it reads the key's tombstone (one GET) and
      // the version under the key (one GETRANGE, also used to keep versions growing).
      const { eval: evals = 0, evalsha = 0, ...plain } = stampede
      assert.strictEqual(evals + evalsha, 1, JSON.stringify(stampede))
      assert.deepStrictEqual(plain, { get: 3, set: 1, time: 1, getrange: 1, setrange: 1, info: 1 })

      const removed = yield* Cache.clear
      assert.strictEqual(removed, 101)
      const all = yield* stats
      assert.isUndefined(all.keys, "KEYS is never used")
      assert.isAbove(all.scan ?? 0, 0)
    }).pipe(Effect.provide(layer())))

  it.live("a paused server: direct calls fail with a Timeout within the bound, getOrSet answers; then it recovers", () =>
    Effect.gen(function*() {
      yield* Users.set(1, new User({ id: 1, name: "before" }))
      server.process.kill("SIGSTOP")
      const started = Date.now()
      const error = yield* Effect.flip(Users.get(1))
      const elapsed = Date.now() - started
      assert.isTrue(error._tag === "StoreError" && error.reason === "Timeout", `got ${error._tag}`)
      assert.isBelow(elapsed, 5_000, "settled well within the bound, not hung")
      const user = yield* Users.getOrSet(2, Effect.succeed(new User({ id: 2, name: "fallback" })))
      assert.strictEqual(user.name, "fallback")
      server.process.kill("SIGCONT")
      // Recovery without rebuilding the layer: the same layer reads again once the server answers.
      const recovered = yield* Users.get(1).pipe(
        Effect.retry({ times: 50, schedule: Schedule.spaced("100 millis") }),
        Effect.either
      )
      assert.isTrue(recovered._tag === "Right")
    }).pipe(Effect.provide(layer())))
})

describe("Redis faults", () => {
  const unhandled: Array<unknown> = []
  const onUnhandled = (reason: unknown) => unhandled.push(reason)
  beforeAll(() => void process.on("unhandledRejection", onUnhandled))
  afterAll(() => void process.off("unhandledRejection", onUnhandled))

  it.live("Redis killed, then restarted on the same port: typed errors meanwhile, recovery without rebuilding the layer", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(() => startRedis())
      const port = server.port
      let current = server.process
      yield* Effect.addFinalizer(() => Effect.promise(() => stopRedis(current)))
      const run = Effect.gen(function*() {
        yield* Users.set(1, new User({ id: 1, name: "before" }))
        yield* Effect.promise(() => stopRedis(current))
        const started = Date.now()
        const error = yield* Effect.flip(Users.get(1))
        assert.isTrue(error._tag === "StoreError" && (error.reason === "Unavailable" || error.reason === "Timeout"))
        const calls = yield* Ref.make(0)
        const fallback = yield* Users.getOrSet(2, Effect.as(Ref.update(calls, (n) => n + 1), new User({ id: 2, name: "fallback" })))
        assert.strictEqual(fallback.name, "fallback")
        assert.isBelow(Date.now() - started, 3_000, "both calls settled within their bounds")
        // The server comes back (empty, as after a restart without persistence).
        current = (yield* Effect.promise(() => startRedis([], port))).process
        const recovered = yield* Users.set(3, new User({ id: 3, name: "after" })).pipe(
          Effect.retry({ times: 100, schedule: Schedule.spaced("100 millis") }),
          Effect.zipRight(Users.get(3)),
          Effect.either
        )
        assert.isTrue(recovered._tag === "Right" && Option.isSome(recovered.right), "the same layer works again")
      })
      yield* run.pipe(Effect.provide(
        Cache.layer({ namespace: "killed", timeout: "500 millis" }).pipe(
          Layer.provide(RedisStore.layer()),
          Layer.provide(Redis.layer({ url: `redis://127.0.0.1:${port}`, commandTimeout: "300 millis" }))
        )
      ))
      assert.deepStrictEqual(unhandled, [], "no unhandled rejection escaped")
    }).pipe(Effect.scoped))

  it.live("CLIENT PAUSE: calls time out with a typed error and getOrSet answers while the server holds its clients", () =>
    Effect.gen(function*() {
      // A server of its own: a pause holds every client of a server.
      const server = yield* Effect.acquireRelease(Effect.promise(() => startRedis()), (s) => Effect.promise(() => stopRedis(s.process)))
      const url = `redis://127.0.0.1:${server.port}`
      const admin = new IORedis(url)
      yield* Effect.addFinalizer(() => Effect.sync(() => admin.disconnect()))
      yield* Effect.gen(function*() {
        yield* Effect.promise(() => admin.client("PAUSE", 1_500, "ALL"))
        const started = Date.now()
        const error = yield* Effect.flip(Users.get(1))
        assert.isTrue(error._tag === "StoreError" && error.reason === "Timeout")
        const user = yield* Users.getOrSet(1, Effect.succeed(new User({ id: 1, name: "fallback" })))
        assert.strictEqual(user.name, "fallback")
        assert.isBelow(Date.now() - started, 1_400, "answered before the pause ended")
        yield* Effect.promise(() => admin.client("UNPAUSE"))
      }).pipe(Effect.provide(
        Cache.layer({ namespace: "paused", timeout: "400 millis" }).pipe(
          Layer.provide(RedisStore.layer()),
          Layer.provide(Redis.layer({ url, commandTimeout: "250 millis" }))
        )
      ))
      assert.deepStrictEqual(unhandled, [])
    }).pipe(Effect.scoped))
})

describe("Redis client service", () => {
  it.live("a server that is down: the layer still starts, calls fail fast with Unavailable, getOrSet answers", () =>
    Effect.gen(function*() {
      const started = Date.now()
      const error = yield* Effect.flip(Users.get(1))
      assert.isTrue(error._tag === "StoreError" && (error.reason === "Unavailable" || error.reason === "Timeout"))
      const user = yield* Users.getOrSet(1, Effect.succeed(new User({ id: 1, name: "fallback" })))
      assert.strictEqual(user.name, "fallback")
      assert.isBelow(Date.now() - started, 3_000)
    }).pipe(Effect.provide(
      Cache.layer({ namespace: "down" }).pipe(
        Layer.provide(RedisStore.layer()),
        Layer.provide(Redis.layer({ url: "redis://127.0.0.1:1", connectTimeout: "200 millis" }))
      )
    )))

  it.live("layerFromClient uses a client the program owns and leaves it open", () =>
    Effect.gen(function*() {
      const client = new IORedis(`${inject("redisUrl")}/5`, Redis.clientOptions({}))
      yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
      yield* Users.set(1, new User({ id: 1, name: "Ada" })).pipe(
        Effect.provide(Cache.layer({ namespace: "own-client" }).pipe(Layer.provide(RedisStore.layer()), Layer.provide(Redis.layerFromClient(client))))
      )
      assert.strictEqual(client.status, "ready")
      assert.strictEqual(yield* Effect.promise(() => client.exists("own-client:users:1")), 1)
    }).pipe(Effect.scoped))
})

describe("Redis through Sentinel", () => {
  it.live("the client finds the master through a Sentinel; the cache and its lock work on it", () =>
    Effect.gen(function*() {
      const setup = yield* Effect.acquireRelease(
        Effect.promise(() => startSentinel()),
        (s) => Effect.promise(() => stopSentinel(s))
      )
      const calls = yield* Ref.make(0)
      const produce = Effect.as(Ref.update(calls, (n) => n + 1), new User({ id: 1, name: "Ada" }))
      const layer = Cache.layerRedis({
        namespace: "sentinel",
        sentinels: [{ host: "127.0.0.1", port: setup.sentinelPort }],
        name: "mymaster"
      })
      yield* Effect.gen(function*() {
        const users = yield* Effect.all(Array.from({ length: 50 }, () => Users.getOrSet(1, produce)), { concurrency: "unbounded" })
        assert.isTrue(users.every((u) => u.name === "Ada"))
        assert.strictEqual(yield* Ref.get(calls), 1)
        const redis = yield* Redis.Redis
        assert.strictEqual(yield* Effect.promise(() => redis.client.exists("sentinel:users:1")), 1)
      }).pipe(Effect.provide(layer))
      const direct = new IORedis(setup.master.port, "127.0.0.1")
      yield* Effect.addFinalizer(() => Effect.sync(() => direct.disconnect()))
      assert.strictEqual(yield* Effect.promise(() => direct.exists("sentinel:users:1")), 1, "the value is on the master")
    }).pipe(Effect.scoped), { timeout: 30_000 })
})
