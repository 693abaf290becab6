/**
 * The command set beyond get/set: `deleteMany`, `remainingTtl`, `expire` and `raw`, through the cache
 * on every store: memory (live values), the serializing store (envelope bytes), the recording store,
 * Redis, the two-layer cache and memcached (the Cluster's cases are in RedisCluster.test.ts).
 */
import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Schema, TestClock } from "effect"
import { inject } from "vitest"
import * as MemcachedStore from "../src/CacheStore/Memcached.js"
import type { MemcacheClient } from "memcache-client"
import { Cache, type CacheError, CacheKey, Keyspace, MemoryStore, RecordingStore, type Redis, RedisStore } from "../src/index.js"
import { instance, on, unchecked, until } from "./tiered-helpers.js"
import { layerSerializing, redisOn } from "./utils.js"

const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String, ttl: "10 minutes", grace: "5 minutes" })
const Forever = Keyspace.make({ name: "forever", key: CacheKey.number, value: Schema.String })
const Tagged = Keyspace.make({ name: "tagged", key: CacheKey.number, value: Schema.String, ttl: "10 minutes", tags: () => ["group"] })

const Hits = Keyspace.counter({ name: "hits", key: CacheKey.string, ttl: "1 hour" })
/** A keyspace of envelopes under the counters' name: what a counter must refuse to add to. */
const NotCounters = Keyspace.make({ name: "hits", key: CacheKey.string, value: Schema.String })

const minutes = (found: Option.Option<Duration.Duration>) => Option.map(found, Duration.toMinutes)

describe("the commands' types", () => {
  it("say what they return and how they fail", () => {
    type Fails = CacheError.InvalidKeyError | CacheError.StoreError
    expectTypeOf(Names.deleteMany([1, 2])).toEqualTypeOf<Effect.Effect<number, Fails, Cache.Cache>>()
    expectTypeOf(Names.remainingTtl(1)).toEqualTypeOf<Effect.Effect<Option.Option<Duration.Duration>, Fails, Cache.Cache>>()
    expectTypeOf(Names.expire(1, "1 minute")).toEqualTypeOf<Effect.Effect<boolean, Fails, Cache.Cache>>()
    expectTypeOf(Cache.expire(Names, 1, Duration.infinity)).toEqualTypeOf<Effect.Effect<boolean, Fails, Cache.Cache>>()
    expectTypeOf(Cache.deleteMany(Names, [1])).toEqualTypeOf<Effect.Effect<number, Fails, Cache.Cache>>()
    expectTypeOf(Cache.remainingTtl(Names, 1)).toEqualTypeOf<Effect.Effect<Option.Option<Duration.Duration>, Fails, Cache.Cache>>()
    expectTypeOf(Cache.raw("redis")).toEqualTypeOf<Effect.Effect<Redis.Client, CacheError.StoreError, Cache.Cache>>()
    expectTypeOf(Cache.raw("memcached")).toEqualTypeOf<Effect.Effect<MemcacheClient, CacheError.StoreError, Cache.Cache>>()
    // @ts-expect-error: no store hands out a client of this kind
    Cache.raw("postgres")
    type Counts = CacheError.InvalidKeyError | CacheError.StoreError | CacheError.CodecError
    expectTypeOf(Hits.increment("a")).toEqualTypeOf<Effect.Effect<number, Counts, Cache.Cache>>()
    expectTypeOf(Cache.increment(Hits, "a", 5)).toEqualTypeOf<Effect.Effect<number, Counts, Cache.Cache>>()
    expectTypeOf(Hits.get("a")).toEqualTypeOf<Effect.Effect<Option.Option<number>, Fails, Cache.Cache>>()
    expectTypeOf(Hits.invalidate("a")).toEqualTypeOf<Effect.Effect<void, Fails, Cache.Cache>>()
    // @ts-expect-error: a counter is no keyspace of envelopes: getOrSet does not apply
    Cache.getOrSet(Hits, "a", Effect.succeed(1))
    // @ts-expect-error: keys are the counter's key type
    Hits.increment(1)
  })
})

/** What every store must do: the commands on the TestClock (logical expiry), whatever keeps the entries. */
const commonCases = (name: string, layer: () => Layer.Layer<Cache.Cache>) =>
  describe(`commands on ${name}`, () => {
    const run = <A, E>(effect: Effect.Effect<A, E, Cache.Cache>) => Effect.provide(effect, layer())

    it.effect("deleteMany removes a batch and counts what was there", () =>
      run(Effect.gen(function*() {
        yield* Names.setMany([[1, "a"], [2, "b"], [3, "c"]])
        assert.strictEqual(yield* Names.deleteMany([1, 2, 4]), 2)
        assert.deepStrictEqual((yield* Names.getMany([1, 2, 3])).map(Option.getOrUndefined), [undefined, undefined, "c"])
        assert.strictEqual(yield* Cache.deleteMany(Names, []), 0)
        assert.strictEqual(yield* Names.deleteMany([1]), 0, "nothing left")
      })))

    it.effect("remainingTtl: the fresh time left on the Clock; infinity without a ttl; None when get would miss", () =>
      run(Effect.gen(function*() {
        yield* Names.set(1, "a")
        yield* Forever.set(1, "f")
        assert.deepStrictEqual(minutes(yield* Names.remainingTtl(1)), Option.some(10))
        yield* TestClock.adjust("4 minutes")
        assert.deepStrictEqual(minutes(yield* Names.remainingTtl(1)), Option.some(6))
        assert.deepStrictEqual(yield* Forever.remainingTtl(1), Option.some(Duration.infinity))
        assert.isTrue(Option.isNone(yield* Names.remainingTtl(2)), "absent")
        yield* TestClock.adjust("7 minutes")
        assert.isTrue(Option.isSome(yield* Names.getStale(1)), "stale, within its grace")
        assert.isTrue(Option.isNone(yield* Names.remainingTtl(1)), "stale: no fresh time left")
        yield* Tagged.set(1, "t")
        yield* Cache.invalidateTags(["group"])
        assert.isTrue(Option.isNone(yield* Tagged.remainingTtl(1)), "invalidated by a tag")
      })))

    it.effect("expire: a new ttl from now, the grace kept; false for what get would not return", () =>
      run(Effect.gen(function*() {
        yield* Names.set(1, "a")
        yield* TestClock.adjust("8 minutes")
        assert.isTrue(yield* Names.expire(1, "1 hour"))
        assert.deepStrictEqual(minutes(yield* Names.remainingTtl(1)), Option.some(60))
        yield* TestClock.adjust("30 minutes")
        assert.deepStrictEqual(yield* Names.get(1), Option.some("a"), "past its old ttl, still fresh")
        yield* TestClock.adjust("32 minutes")
        const stale = yield* Names.getStale(1)
        assert.isTrue(Option.isSome(stale) && stale.value.isStale, "stale for its grace after the new ttl")
        assert.isFalse(yield* Names.expire(1, "1 hour"), "a stale entry is not revived")
        assert.isFalse(yield* Names.expire(2, "1 hour"), "absent")
        assert.isFalse(yield* Names.has(2), "expire creates nothing")

        yield* Names.set(3, "c")
        assert.isTrue(yield* Cache.expire(Names, 3, Duration.infinity))
        assert.deepStrictEqual(yield* Names.remainingTtl(3), Option.some(Duration.infinity))
        yield* TestClock.adjust("1000 days")
        assert.deepStrictEqual(yield* Names.get(3), Option.some("c"))

        assert.isTrue(yield* Names.expire(3, Duration.zero), "zero removes")
        assert.isTrue(Option.isNone(yield* Names.get(3)))

        yield* Tagged.set(1, "t")
        yield* Cache.invalidateTags(["group"])
        assert.isFalse(yield* Tagged.expire(1, "1 hour"), "an entry a tag invalidated is not revived")
        assert.isTrue(Option.isNone(yield* Tagged.get(1)))
      })))

    it.effect("counters: increment up and down, get the number, invalidate", () =>
      run(Effect.gen(function*() {
        assert.strictEqual(yield* Hits.increment("/home"), 1)
        assert.strictEqual(yield* Hits.increment("/home", 10), 11)
        assert.strictEqual(yield* Cache.increment(Hits, "/home", -20), -9)
        assert.deepStrictEqual(yield* Hits.get("/home"), Option.some(-9))
        assert.deepStrictEqual(yield* Hits.get("/about"), Option.none())
        const all = yield* Effect.forEach(Array.from({ length: 25 }, () => "/busy"), (key) => Hits.increment(key), { concurrency: "unbounded" })
        assert.strictEqual(Math.max(...all), 25)
        assert.deepStrictEqual(yield* Hits.get("/busy"), Option.some(25))
        assert.isTrue(yield* Hits.expire("/busy", "2 hours"))
        assert.deepStrictEqual(yield* Hits.get("/busy"), Option.some(25), "a new ttl, the same value")
        assert.isFalse(yield* Hits.expire("/none", "2 hours"))
        assert.isTrue(yield* Hits.expire("/busy", Duration.zero), "zero removes")
        assert.deepStrictEqual(yield* Hits.get("/busy"), Option.none())
        yield* Hits.invalidate("/home")
        assert.deepStrictEqual(yield* Hits.get("/home"), Option.none())
        assert.strictEqual(yield* Hits.increment("/home"), 1, "starts again")
      })))

    it.effect("counters: typed errors for a step that is no safe integer, a key holding something else, an overflow", () =>
      run(Effect.gen(function*() {
        const fractional = yield* Effect.flip(Hits.increment("/x", 1.5))
        assert.strictEqual(fractional._tag, "CodecError")
        assert.deepStrictEqual(yield* Hits.get("/x"), Option.none(), "nothing was written")
        assert.strictEqual((yield* Effect.flip(Hits.increment("/x", Number.MAX_SAFE_INTEGER + 2)))._tag, "CodecError")
        yield* NotCounters.set("/page", "text")
        const wrong = yield* Effect.flip(Hits.increment("/page"))
        assert.isTrue(wrong._tag === "StoreError" && wrong.reason === "WrongType", wrong.message)
        const read = yield* Effect.flip(Hits.get("/page"))
        assert.isTrue(read._tag === "StoreError" && read.reason === "WrongType")
        assert.deepStrictEqual(yield* NotCounters.get("/page"), Option.some("text"), "left alone")
        yield* Hits.increment("/max", Number.MAX_SAFE_INTEGER)
        const over = yield* Effect.flip(Hits.increment("/max"))
        assert.isTrue(over._tag === "StoreError" && over.reason === "Overflow", over.message)
        assert.deepStrictEqual(yield* Hits.get("/max"), Option.some(Number.MAX_SAFE_INTEGER))
      })))

    it.effect("an invalid key is a typed error, and reaches no store", () =>
      run(Effect.gen(function*() {
        const Long = Keyspace.make({ name: "long", key: CacheKey.string, value: Schema.String })
        const error = yield* Effect.flip(Long.expire("x".repeat(2_000), "1 minute"))
        assert.strictEqual(error._tag, "InvalidKeyError")
        assert.strictEqual(error.reason, "TooLong")
        assert.strictEqual((yield* Effect.flip(Long.remainingTtl("a\nb"))).reason, "ControlCharacter")
        assert.strictEqual((yield* Effect.flip(Long.deleteMany(["ok", "a\u0000b"]))).reason, "ControlCharacter")
        const LongCounts = Keyspace.counter({ name: "longcounts", key: CacheKey.string })
        assert.strictEqual((yield* Effect.flip(LongCounts.increment("x".repeat(2_000))))._tag, "InvalidKeyError")
      })))
  })

commonCases("the memory store", () => Cache.layer({ namespace: "cmd" }).pipe(Layer.provide(MemoryStore.layer())))
commonCases("the serializing store", () => Cache.layer({ namespace: "cmd" }).pipe(Layer.provide(layerSerializing())))
commonCases("the recording store", () => Cache.layer({ namespace: "cmd" }).pipe(Layer.provide(RecordingStore.layer())))
commonCases("Redis", () => Cache.layer({ namespace: "cmd" }).pipe(Layer.provide(RedisStore.layer()), Layer.provide(redisOn(17))))
commonCases("memcached", () => Cache.layer({ namespace: "cmd" }).pipe(Layer.provide(MemcachedStore.layer({ server: inject("memcachedServer") }))))

describe("raw", () => {
  it.effect("an in-process store has no client: Unsupported", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Cache.raw("redis"))
      assert.strictEqual(error.reason, "Unsupported")
      assert.strictEqual(error.store, "memory")
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.live("Redis: the ioredis client itself; expire moves the key's PTTL with the header", () =>
    Effect.gen(function*() {
      yield* Names.set(1, "a")
      const client = yield* Cache.raw("redis")
      const before = yield* Effect.promise(() => client.pttl("raw:names:1"))
      assert.isAbove(before, 14 * 60_000, "10 minutes plus 5 of grace")
      assert.isTrue(yield* Names.expire(1, "1 hour"))
      const after = yield* Effect.promise(() => client.pttl("raw:names:1"))
      assert.isAbove(after, 64 * 60_000, "1 hour plus the same 5 minutes of grace")
      assert.isAtMost(after, 65 * 60_000)
      assert.isTrue(yield* Names.expire(1, Duration.infinity))
      assert.strictEqual(yield* Effect.promise(() => client.pttl("raw:names:1")), -1, "no expiry")
      assert.strictEqual((yield* Effect.flip(Cache.raw("memcached"))).reason, "Unsupported")
    }).pipe(Effect.provide(Cache.layer({ namespace: "raw" }).pipe(Layer.provide(RedisStore.layer()), Layer.provideMerge(redisOn(17))))))

  it.live("memcached: the memcache-client client itself", () =>
    Effect.gen(function*() {
      yield* Names.set(1, "a")
      const client = yield* Cache.raw("memcached")
      const stats = yield* Effect.promise(() => client.cmd<{ STAT?: Array<Array<string>> }>("stats"))
      assert.isDefined(stats.STAT?.find(([name]) => name === "curr_items"))
      assert.strictEqual((yield* Effect.flip(Cache.raw("redis"))).reason, "Unsupported")
    }).pipe(Effect.provide(Cache.layer({ namespace: "raw" }).pipe(Layer.provide(MemcachedStore.layer({ server: inject("memcachedServer") }))))))
})

describe("commands on the two-layer cache", () => {
  const url = () => `${inject("redisUrl")}/18`

  it.scoped("expire is a write the bus announces: another instance drops its copy and reads the new ttl", () =>
    Effect.gen(function*() {
      yield* Effect.scoped(Layer.build(redisOn(18)))
      const a = yield* instance(url(), "cmdtier")
      const b = yield* instance(url(), "cmdtier")
      yield* on(a, Names.set(1, "a"))
      assert.deepStrictEqual(yield* on(b, Names.get(1)), Option.some("a"), "B holds a copy in memory")
      assert.deepStrictEqual(minutes(yield* on(b, Names.remainingTtl(1))), Option.some(10))
      assert.isTrue(yield* on(a, Names.expire(1, "1 hour")))
      assert.deepStrictEqual(minutes(yield* on(a, Names.remainingTtl(1))), Option.some(60), "A's own copy was dropped")
      yield* until(on(b, Names.remainingTtl(1)), (found) => Option.isSome(found) && Duration.toMinutes(found.value) === 60)
      assert.deepStrictEqual(yield* on(b, Names.get(1)), Option.some("a"))
      const client = yield* on(b, Cache.raw("redis"))
      assert.isAbove(yield* Effect.promise(() => client.pttl("cmdtier:names:1")), 64 * 60_000)
    }))

  it.scoped("counters live in the shared tier only: every instance counts on one value, no memory copy", () =>
    Effect.gen(function*() {
      yield* Effect.scoped(Layer.build(redisOn(18)))
      const a = yield* instance(url(), "cmdtier3")
      const b = yield* instance(url(), "cmdtier3")
      yield* Effect.all([on(a, Hits.increment("k")), on(b, Hits.increment("k", 2)), on(a, Hits.increment("k", 3))], { concurrency: "unbounded" })
      assert.deepStrictEqual(yield* on(b, Hits.get("k")), Option.some(6))
      assert.deepStrictEqual(yield* on(a, Hits.get("k")), Option.some(6))
      assert.isUndefined(yield* unchecked(a, "cmdtier3:hits:k"), "memory never keeps a counter")
      assert.strictEqual(yield* on(b, Hits.increment("k")), 7)
      assert.deepStrictEqual(yield* on(a, Hits.get("k")), Option.some(7))
      const client = yield* on(a, Cache.raw("redis"))
      assert.strictEqual(yield* Effect.promise(() => client.get("cmdtier3:hits:k")), "7", "a plain integer, no envelope")
      assert.isAbove(yield* Effect.promise(() => client.pttl("cmdtier3:hits:k")), 59 * 60_000, "created with the counter's ttl")
      assert.isTrue(yield* on(b, Hits.expire("k", "2 hours")))
      assert.isAbove(yield* Effect.promise(() => client.pttl("cmdtier3:hits:k")), 119 * 60_000, "the key's PTTL moved")
      assert.deepStrictEqual(yield* on(a, Hits.get("k")), Option.some(7))
    }))

  it.scoped("a keyspace kept in memory only (tier: local): expire and remainingTtl on this instance's copy", () =>
    Effect.gen(function*() {
      yield* Effect.scoped(Layer.build(redisOn(18)))
      const Local = Keyspace.make({ name: "local", key: CacheKey.number, value: Schema.String, ttl: "10 minutes", tier: "local" })
      const a = yield* instance(url(), "cmdtier4")
      yield* on(a, Local.set(1, "a"))
      assert.deepStrictEqual(minutes(yield* on(a, Local.remainingTtl(1))), Option.some(10))
      assert.isTrue(yield* on(a, Local.expire(1, "1 hour")))
      assert.deepStrictEqual(minutes(yield* on(a, Local.remainingTtl(1))), Option.some(60))
      assert.deepStrictEqual(yield* on(a, Local.get(1)), Option.some("a"))
      assert.isFalse(yield* on(a, Local.expire(2, "1 hour")))
      const client = yield* on(a, Cache.raw("redis"))
      assert.strictEqual(yield* Effect.promise(() => client.exists("cmdtier4:local:1")), 0, "nothing reached Redis")
    }))

  it.scoped("deleteMany counts, and every instance drops its copies", () =>
    Effect.gen(function*() {
      yield* Effect.scoped(Layer.build(redisOn(18)))
      const a = yield* instance(url(), "cmdtier2")
      const b = yield* instance(url(), "cmdtier2")
      yield* on(a, Names.setMany([[1, "a"], [2, "b"]]))
      assert.deepStrictEqual((yield* on(b, Names.getMany([1, 2]))).map(Option.getOrUndefined), ["a", "b"])
      assert.strictEqual(yield* on(a, Names.deleteMany([1, 2, 3])), 2)
      yield* until(on(b, Names.getMany([1, 2])), (found) => found.every(Option.isNone))
    }))
})

describe("the README's commands example", () => {
  it.effect("compiles and behaves as written, on Redis", () =>
    Effect.gen(function*() {
      // ---- as in the README ----
      const Sessions = Keyspace.make({ name: "sessions", key: CacheKey.string, value: Schema.String, ttl: "30 minutes", grace: "5 minutes" })
      const Logins = Keyspace.counter({ name: "logins", key: CacheKey.number, ttl: "1 hour" })

      const program = Effect.gen(function* () {
        yield* Sessions.set("s-1", "ada")
        const left = yield* Sessions.remainingTtl("s-1")       // Option.some(30 minutes)
        yield* Sessions.expire("s-1", "30 minutes")            // true: sliding expiry, grace kept
        const removed = yield* Sessions.deleteMany(["s-1", "s-2"]) // 1

        const attempts = yield* Logins.increment(42)           // 1, created with its 1 hour ttl
        yield* Logins.increment(42, 5)                         // 6; negative steps decrease
        const now = yield* Logins.get(42)                      // Option.some(6): the number

        const client = yield* Cache.raw("redis")               // ioredis's Redis | Cluster, or Unsupported
        return { left, removed, attempts, now, client }
      })
      // ---- end ----
      const { attempts, client, left, now, removed } = yield* program
      assert.deepStrictEqual(minutes(left), Option.some(30))
      assert.strictEqual(removed, 1)
      assert.strictEqual(attempts, 1)
      assert.deepStrictEqual(now, Option.some(6))
      assert.strictEqual(yield* Effect.promise(() => client.get("readme:logins:42")), "6")
    }).pipe(Effect.provide(Cache.layer({ namespace: "readme" }).pipe(Layer.provide(RedisStore.layer()), Layer.provide(redisOn(17))))))
})
