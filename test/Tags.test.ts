import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option, Schema, TestClock } from "effect"
import { Cache, CacheError, CacheKey, CacheStore, Keyspace, MemoryStore, Redis, RedisStore } from "../src/index.js"
import { commandDelta, commandStats } from "./setup/servers.js"
import { instance, on, ownServer, until } from "./tiered-helpers.js"
import { assertSame } from "./utils.js"

class Member extends Schema.Class<Member>("Member")({ org: Schema.String, name: Schema.String }) {}

const Members = Keyspace.make({
  name: "members",
  key: CacheKey.number,
  value: Member,
  ttl: "10 minutes",
  tags: (_id, member) => [`org:${member.org}`]
})

const Seats = Keyspace.make({
  name: "seats",
  key: CacheKey.struct({ org: CacheKey.string, team: CacheKey.string, id: CacheKey.number }),
  value: Schema.String,
  ttl: "10 minutes",
  keyTags: ["org", "team"]
})

const ada = new Member({ org: "acme", name: "Ada" })
const bob = new Member({ org: "acme", name: "Bob" })
const eve = new Member({ org: "other", name: "Eve" })

const tagSuite = (name: string, layer: Layer.Layer<Cache.Cache>) =>
  describe(`tags: ${name}`, () => {
    it.effect("invalidateTags drops every entry carrying the tag, and only those; a write after it is fresh", () =>
      Effect.gen(function*() {
        yield* Members.set(1, ada)
        yield* Members.setMany([[2, bob], [3, eve]])
        yield* Members.set(4, eve, { tags: ["vip"] })
        yield* Cache.invalidateTags(["org:acme"])
        assertSame(yield* Members.get(1), Option.none())
        assertSame(yield* Members.getMany([1, 2, 3]), [Option.none(), Option.none(), Option.some(eve)])
        assertSame(yield* Members.get(4), Option.some(eve), "another tag: untouched")
        yield* Members.set(1, ada)
        assertSame(yield* Members.get(1), Option.some(ada), "written after the invalidation: fresh")
        let runs = 0
        const fetchBob = Effect.sync(() => {
          runs++
          return bob
        })
        assert.strictEqual((yield* Members.getOrSet(2, fetchBob)).name, "Bob")
        assert.strictEqual(runs, 1, "getOrSet misses an invalidated entry and produces")
        assert.strictEqual((yield* Members.getOrSet(2, fetchBob)).name, "Bob")
        assert.strictEqual(runs, 1)
        // A per-write tag.
        yield* Cache.invalidateTags(["vip"])
        assertSame(yield* Members.get(4), Option.none())
        assertSame(yield* Members.get(3), Option.some(eve))
      }).pipe(Effect.provide(Layer.fresh(layer))))

    it.effect("invalidateWhere on key fields: one field, or both, never more than asked", () =>
      Effect.gen(function*() {
        yield* Seats.setMany([
          [{ org: "acme", team: "red", id: 1 }, "a"],
          [{ org: "acme", team: "blue", id: 2 }, "b"],
          [{ org: "other", team: "red", id: 3 }, "c"]
        ])
        yield* Seats.invalidateWhere({ org: "acme", team: "red" })
        assertSame(yield* Seats.get({ org: "acme", team: "red", id: 1 }), Option.none())
        assertSame(yield* Seats.get({ org: "acme", team: "blue", id: 2 }), Option.some("b"))
        assertSame(yield* Seats.get({ org: "other", team: "red", id: 3 }), Option.some("c"))
        yield* Seats.invalidateWhere({ team: "red" })
        assertSame(yield* Seats.get({ org: "other", team: "red", id: 3 }), Option.none())
        yield* Seats.invalidateWhere({ org: "acme" })
        assertSame(yield* Seats.get({ org: "acme", team: "blue", id: 2 }), Option.none())
        const error = yield* Effect.flip(Seats.invalidateWhere({ id: 1 }))
        assert.isTrue(CacheError.isInvalidKeyError(error))
        assert.match(error.message, /org, team/)
      }).pipe(Effect.provide(Layer.fresh(layer))))

    it.effect("bad tags are refused with a typed error", () =>
      Effect.gen(function*() {
        const refused = yield* Effect.flip(Cache.invalidateTags(["ok", "line\nbreak"]))
        assert.strictEqual(refused.reason, "ControlCharacter")
        const empty = yield* Effect.flip(Members.set(9, ada, { tags: [""] }))
        assert.isTrue(CacheError.isInvalidKeyError(empty))
        const long = yield* Effect.flip(Cache.invalidateTags(["x".repeat(2000)]))
        assert.isTrue(CacheError.isInvalidKeyError(long) && long.reason === "TooLong")
        // getOrSet absorbs it: the value is returned, not stored.
        assert.strictEqual((yield* Members.getOrSet(9, Effect.succeed(ada), { tags: ["\u0007"] })).name, "Ada")
        assertSame(yield* Members.get(9), Option.none())
      }).pipe(Effect.provide(Layer.fresh(layer))))
  })

tagSuite("memory store", Cache.layerMemory({ namespace: "tags" }))

const { urlOf, database } = ownServer()

describe("tags over Redis", () => {
  const redisCache = (db: number, options: Cache.Options = {}) =>
    Cache.layer({ namespace: "tags", ...options }).pipe(
      Layer.provideMerge(RedisStore.layer()),
      Layer.provideMerge(Redis.layer({ url: urlOf(db) }))
    )

  it.scoped("the same suite on Redis", () =>
    Effect.gen(function*() {
      yield* database(5)
      const context = yield* Layer.build(redisCache(5))
      const Probe = Keyspace.make({ name: "probe", key: CacheKey.number, value: Schema.Number, tags: (n) => [`p:${n % 2}`] })
      yield* Effect.provide(Effect.gen(function*() {
        yield* Probe.setMany([[1, 1], [2, 2]])
        yield* Cache.invalidateTags(["p:1"])
        assertSame(yield* Probe.getMany([1, 2]), [Option.none(), Option.some(2)])
      }), context)
    }))

  it.live("10,000 entries under one tag: invalidated with one command sent (with its script's own calls, 5 in INFO commandstats); another instance sees it within its tagWindow", () =>
    Effect.gen(function*() {
      const { admin } = yield* database(6)
      const a = yield* Layer.build(redisCache(6))
      const b = yield* Layer.build(redisCache(6, { tagWindow: "300 millis" }))
      const entries = Array.from({ length: 10_000 }, (_, i) => [i, new Member({ org: i % 10 === 0 ? "small" : "big", name: `m${i}` })] as const)
      yield* on(a, Members.setMany(entries))
      assertSame(yield* on(b, Members.get(1)), Option.some(entries[1]![1]), "B has read the tag versions")
      const before = yield* Effect.promise(() => commandStats(admin))
      yield* on(a, Cache.invalidateTags(["org:big"]))
      const after = yield* Effect.promise(() => commandStats(admin))
      const commands = commandDelta(before, after, ["info"])
      const total = Object.values(commands).reduce((n, x) => n + x, 0)
      console.log(`invalidateTags over 9,000 entries: ${total} Redis command(s) ${JSON.stringify(commands)}`)
      // One command sent (the write script), whose own calls INFO counts too: TIME, the key's previous
      // version, the SET and the version stamp. None per entry.
      assert.strictEqual(commands["evalsha"], 1)
      assert.isAtMost(total, 5)
      assertSame(yield* on(a, Members.get(1)), Option.none(), "at once for the instance that invalidated")
      const seen = yield* until(on(b, Members.get(1)), Option.isNone, 2_000)
      console.log(`another instance (tagWindow 300 ms) saw it after ${seen.toFixed(0)} ms`)
      const untouched = yield* on(b, Members.getMany([0, 10, 20]))
      assert.isTrue(untouched.every(Option.isSome), "entries under another tag: untouched")
      yield* on(a, Members.set(1, entries[1]![1]))
      assertSame(yield* on(b, Members.get(1)), Option.some(entries[1]![1]), "a write after the invalidation is fresh")
    }).pipe(Effect.scoped))

  it.live("two-layer cache: the bus carries an invalidation at once, whatever the tagWindow", () =>
    Effect.gen(function*() {
      yield* database(7)
      const a = yield* instance(urlOf(7), "tiered-tags", { tagWindow: "1 hour" })
      const b = yield* instance(urlOf(7), "tiered-tags", { tagWindow: "1 hour" })
      yield* on(a, Members.set(1, ada))
      assertSame(yield* on(b, Members.get(1)), Option.some(ada))
      assertSame(yield* on(b, Members.get(1)), Option.some(ada), "served from B's memory, its tag version trusted")
      yield* on(a, Cache.invalidateTags(["org:acme"]))
      const seen = yield* until(on(b, Members.get(1)), Option.isNone, 1_000)
      console.log(`two-layer: B stopped serving the tagged entry ${seen.toFixed(1)} ms after the invalidation returned`)
      yield* on(a, Members.set(1, bob))
      const fresh = yield* until(on(b, Members.get(1)), (found) => Option.isSome(found) && found.value.name === "Bob", 1_000)
      assert.isBelow(fresh, 1_000)
    }).pipe(Effect.scoped))
})

describe("tags on the memory store, TestClock", () => {
  it.effect("a tag invalidation outlives the entries' ttl bookkeeping: an old entry never comes back", () =>
    Effect.gen(function*() {
      yield* Members.set(1, ada, { ttl: "1 day" })
      yield* TestClock.adjust("1 hour")
      yield* Cache.invalidateTags(["org:acme"])
      yield* TestClock.adjust("12 hours")
      assertSame(yield* Members.get(1), Option.none())
    }).pipe(Effect.provide(Cache.layerMemory())))
})

describe("tags: the edges", () => {
  it.effect("an invalidation while a producer runs: its value is returned to the callers but not kept", () =>
    Effect.gen(function*() {
      const slow = Effect.as(Effect.sleep("1 second"), ada)
      const caller = yield* Effect.fork(Members.getOrSet(1, slow))
      yield* TestClock.adjust("500 millis")
      yield* Cache.invalidateTags(["org:acme"])
      yield* TestClock.adjust("500 millis")
      assert.strictEqual((yield* Fiber.join(caller)).name, "Ada")
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      assertSame(yield* Members.get(1), Option.none())
      // A run that starts after the invalidation keeps its value.
      yield* Members.getOrSet(1, Effect.succeed(bob))
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      assertSame(yield* Members.get(1), Option.some(bob))
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("two caches over one memory store: a tag invalidated in one namespace leaves the other's entries", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make()
      const over = (namespace: string) =>
        Cache.layer({ namespace }).pipe(Layer.provide(Layer.succeed(CacheStore.CacheStore, store)))
      const a = yield* Layer.build(over("a"))
      const b = yield* Layer.build(over("b"))
      yield* Effect.provide(Members.set(1, ada), a)
      yield* Effect.provide(Members.set(1, ada), b)
      yield* Effect.provide(Cache.invalidateTags(["org:acme"]), b)
      assertSame(yield* Effect.provide(Members.get(1), a), Option.some(ada))
      assertSame(yield* Effect.provide(Members.get(1), b), Option.none())
    }).pipe(Effect.scoped))

  it.live("Redis: an invalidation while a producer runs, the value is not kept", () =>
    Effect.gen(function*() {
      yield* database(8)
      const context = yield* Layer.build(
        Cache.layerRedis({ namespace: "tags-race", url: urlOf(8) })
      )
      const slow = Effect.as(Effect.sleep("300 millis"), ada)
      const caller = yield* Effect.fork(Effect.provide(Members.getOrSet(1, slow), context))
      yield* Effect.sleep("100 millis")
      yield* Effect.provide(Cache.invalidateTags(["org:acme"]), context)
      assert.strictEqual((yield* Fiber.join(caller)).name, "Ada")
      yield* Effect.sleep("100 millis")
      assertSame(yield* Effect.provide(Members.get(1), context), Option.none())
    }).pipe(Effect.scoped))
})

describe("tags: the memory store's bound", () => {
  it.effect("past 100,000 invalidated tags the oldest fold into a floor: entries written before it count as invalidated, later ones do not", () =>
    Effect.gen(function*() {
      const Plain = Keyspace.make({ name: "plain", key: CacheKey.number, value: Schema.Number, tags: (id) => [`t${id}`] })
      yield* Plain.set(1, 1)
      // 100,001 tags: "t0" (never on an entry) is the oldest and folds into the floor.
      yield* Cache.invalidateTags(Array.from({ length: 100_001 }, (_, i) => i === 0 ? "t0" : `other${i}`))
      assertSame(yield* Plain.get(1), Option.none(), "written before the floor, its own tag forgotten: invalidated all the same")
      yield* Plain.set(2, 2)
      assertSame(yield* Plain.get(2), Option.some(2), "written after the floor: valid")
    }).pipe(Effect.provide(Cache.layerMemory())))
})
