import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer, Option, Schema, TestClock } from "effect"
import { inject } from "vitest"
import { Cache, CacheEntry, CacheError, CacheKey, Keyspace, Redis, RecordingStore } from "../src/index.js"
import { assertSame } from "./utils.js"

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User, ttl: "10 minutes" })

describe("types (checked by tsc)", () => {
  it("a per-call ttl or skip is typed by the keyspace's value, and neither adds LockError", () => {
    const fetch = Effect.succeed(new User({ id: 1, name: "Ada" }))
    const typed: Effect.Effect<User, never, Cache.Cache> = Users.getOrSet(1, fetch, {
      ttl: (user) => {
        expectTypeOf(user).toEqualTypeOf<User>()
        return user.name === "" ? "1 second" : "1 minute"
      },
      skip: (user) => {
        expectTypeOf(user).toEqualTypeOf<User>()
        return user.id < 0
      }
    })
    const fixed: Effect.Effect<User, never, Cache.Cache> = Users.getOrSet(1, fetch, { ttl: "1 minute" })
    const setTtl: Effect.Effect<void, CacheError.CacheError, Cache.Cache> = Users.set(1, new User({ id: 1, name: "Ada" }), {
      ttl: (user) => user.name.length > 0 ? "1 minute" : "1 second"
    })
    const memo = Effect.succeed(42).pipe(Cache.memoize({ key: "answer", value: Schema.Number, ttl: (n) => n > 0 ? "1 minute" : "1 second" }))
    expectTypeOf(memo).toEqualTypeOf<Effect.Effect<number, never, Cache.Cache>>()
    assert.isDefined([typed, fixed, setTtl])
  })

  it("errors carry the TypeId, and each has a guard", () => {
    const errors = [
      new CacheError.StoreError({ reason: "Timeout", operation: "get" }),
      new CacheError.CodecError({ reason: "Encode", operation: "set", key: "k" }),
      new CacheError.InvalidKeyError({ reason: "TooLong", operation: "get" }),
      new CacheError.LockError({ reason: "Timeout", operation: "lock", key: "k" })
    ] as const
    const guards = [CacheError.isStoreError, CacheError.isCodecError, CacheError.isInvalidKeyError, CacheError.isLockError]
    errors.forEach((error, i) => {
      assert.strictEqual(error[CacheError.TypeId], CacheError.TypeId)
      assert.isTrue(CacheError.isCacheError(error))
      guards.forEach((guard, j) => assert.strictEqual(guard(error), i === j, `${error._tag} / guard ${j}`))
    })
    for (const other of [new Error("x"), { _tag: "StoreError" }, null, "StoreError"]) {
      assert.isFalse(CacheError.isCacheError(other))
      assert.isFalse(CacheError.isStoreError(other))
    }
    const u: unknown = errors[0]
    if (CacheError.isStoreError(u)) expectTypeOf(u.reason).toEqualTypeOf<CacheError.StoreError["reason"]>()
  })
})

describe("RecordingStore in a user's test", () => {
  it.effect("records every operation, the ttl a write asked for, and the envelope it stored", () =>
    Effect.gen(function*() {
      const recording = yield* RecordingStore.RecordingStore
      yield* Users.set(1, new User({ id: 1, name: "Ada" }))
      assertSame(yield* Users.get(1), Option.some(new User({ id: 1, name: "Ada" })))
      yield* Users.getOrSet(2, Effect.succeed(new User({ id: 2, name: "Bob" })))
      const operations = yield* recording.operations
      assert.deepStrictEqual(operations.map((op) => `${op.operation} ${op.keys.join(",")}`), [
        "set app:users:1",
        "get app:users:1",
        "get app:users:2",
        // Under the guard the miss is read once more: a run that just ended may have stored the value.
        "get app:users:2",
        "set app:users:2"
      ])
      assert.strictEqual(Duration.toMillis(operations[0].ttl!), Duration.toMillis("10 minutes"))
      const entry = Option.getOrThrow(yield* recording.entry("app:users:1"))
      assert.strictEqual(entry.text, `{"id":1,"name":"Ada"}`)
      assert.strictEqual(entry.fingerprint, Users.fingerprint)
      assert.strictEqual(entry.freshUntil, Duration.toMillis("10 minutes"))
      yield* recording.reset
      assert.deepStrictEqual(yield* recording.operations, [])
      // The TestClock drives expiry: past the ttl the entry is gone from the store and from the cache.
      yield* TestClock.adjust("11 minutes")
      assert.isTrue(Option.isNone(yield* Users.get(1)))
      assert.deepStrictEqual(yield* recording.entries, [])
    }).pipe(Effect.provide(Cache.layer({ namespace: "app" }).pipe(Layer.provideMerge(RecordingStore.layer())))))
})

describe("Cache.layerRedis under the TestClock", () => {
  const url = () => `${inject("redisUrl")}/30`

  it.effect("logical expiry follows the Effect Clock, while Redis still holds the key", () =>
    Effect.gen(function*() {
      const redis = yield* Redis.Redis
      yield* Effect.promise(() => redis.client.flushdb())
      yield* Users.set(1, new User({ id: 1, name: "Ada" }))
      assert.isTrue(Option.isSome(yield* Users.get(1)))
      yield* TestClock.adjust("11 minutes")
      assert.strictEqual(yield* Effect.promise(() => redis.client.exists("tc:users:1")), 1, "Redis expires on its own clock")
      assert.isTrue(Option.isNone(yield* Users.get(1)), "but the entry is expired by the Effect Clock")
    }).pipe(Effect.provide(Cache.layerRedis({ url: url(), namespace: "tc" }))))

  it.effect("an unreachable Redis does not hang: calls fail on real-time bounds, getOrSet answers", () =>
    Effect.gen(function*() {
      const started = Date.now()
      const error = yield* Effect.flip(Users.get(1))
      assert.isTrue(error._tag === "StoreError" && (error.reason === "Unavailable" || error.reason === "Timeout"))
      const user = yield* Users.getOrSet(1, Effect.succeed(new User({ id: 1, name: "fallback" })))
      assert.strictEqual(user.name, "fallback")
      assert.isBelow(Date.now() - started, 10_000)
    }).pipe(Effect.provide(Cache.layerRedis({ url: "redis://127.0.0.1:1", namespace: "down", connectTimeout: "200 millis" }))))
})

describe("internal keys on Redis", () => {
  const Locks = Keyspace.make({ name: "lock", key: CacheKey.string, value: Schema.String })

  it.live("a keyspace named \"lock\", Cache.clear and clearKeyspace never touch a held lock", () =>
    Effect.gen(function*() {
      const redis = yield* Redis.Redis
      const started = yield* Deferred.make<void>()
      const finish = yield* Deferred.make<void>()
      const producer = Deferred.succeed(started, undefined).pipe(
        Effect.zipRight(Deferred.await(finish)),
        Effect.as(new User({ id: 1, name: "Ada" }))
      )
      const fiber = yield* Effect.fork(Users.getOrSet(1, producer))
      yield* Deferred.await(started)
      const lockKeys = yield* Effect.promise(() => redis.client.keys("ns::lock:*"))
      assert.strictEqual(lockKeys.length, 1, "the producer holds the lock")
      // The keyspace "lock" writes under `ns:lock:`, never `ns::lock:`.
      yield* Locks.set(lockKeys[0].slice("ns::lock:".length), "mine")
      yield* Locks.clear
      yield* Users.clear
      yield* Effect.flatMap(Cache.Cache, (cache) => cache.clear)
      assert.strictEqual(yield* Effect.promise(() => redis.client.exists(lockKeys[0])), 1, "the lock survives every clear")
      yield* Deferred.succeed(finish, undefined)
      assert.strictEqual((yield* Fiber.join(fiber)).name, "Ada")
      assert.strictEqual(yield* Effect.promise(() => redis.client.exists(lockKeys[0])), 0, "released by its holder")
      const stored = yield* Effect.promise(() => redis.client.getBuffer("ns:users:1"))
      assert.strictEqual(CacheEntry.decode(stored!)?.fingerprint, Users.fingerprint)
    }).pipe(Effect.provide(Cache.layerRedis({ url: `${inject("redisUrl")}/31`, namespace: "ns" }))))
})
