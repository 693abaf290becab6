import { assert, describe, it } from "@effect/vitest"
import { Context, Data, Effect, Fiber, Layer, Option, Ref, Schema, TestClock } from "effect"
import { Cache, CacheError, CacheKey, CacheLock, CacheStore, Keyspace, MemoryLock, MemoryStore } from "../src/index.js"
import { lockSuite } from "../src/testing.js"
import { assertSame, layerSerializing } from "./utils.js"

lockSuite("in-process lock over the memory store", MemoryLock.layer.pipe(Layer.provideMerge(MemoryStore.layer())))

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
class FetchError extends Data.TaggedError("FetchError")<{}> {}
const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User, ttl: "10 minutes" })

/** Four cache instances, as four processes would have, sharing one store and one lock. */
const instances = [0, 1, 2, 3].map((i) => Context.GenericTag<`instance-${number}`, Cache.Service>(`test/instance-${i}`))
const fleet = (store: Layer.Layer<CacheStore.CacheStore>, options: Cache.Options = {}) =>
  instances.map((tag) => Layer.scoped(tag, Cache.make({ namespace: "fleet", ...options }))).reduce((a, b) => Layer.merge(a, b)).pipe(
    Layer.provideMerge(MemoryLock.layer),
    Layer.provideMerge(store)
  )

const counting = Effect.gen(function*() {
  const calls = yield* Ref.make(0)
  const produce = (millis: number) =>
    Ref.update(calls, (n) => n + 1).pipe(Effect.zipRight(Effect.sleep(`${millis} millis`)), Effect.as(new User({ id: 7, name: "Ada" })))
  return { calls, produce }
})

for (const [backend, store] of [["memory", MemoryStore.layer()], ["serializing", layerSerializing()]] as const) {
  describe(`getOrSet across cache instances (${backend} store, in-process lock)`, () => {
    it.effect("4 instances × 250 callers on one cold key: the producer runs once, everyone gets its value", () =>
      Effect.gen(function*() {
        const { calls, produce } = yield* counting
        const callers = instances.flatMap((tag) =>
          Array.from({ length: 250 }, () => Effect.flatMap(tag, (cache) => cache.getOrSet(Users, 7, produce(50))))
        )
        const fiber = yield* Effect.fork(Effect.all(callers, { concurrency: "unbounded" }))
        yield* TestClock.adjust("50 millis")
        const users = yield* Fiber.join(fiber)
        assert.strictEqual(yield* Ref.get(calls), 1)
        assert.strictEqual(users.length, 1_000)
        assert.isTrue(users.every((u) => u.name === "Ada"))
      }).pipe(Effect.provide(fleet(store))))

    it.effect("a long producer keeps its lock (the watchdog extends the lease): still one run", () =>
      Effect.gen(function*() {
        const { calls, produce } = yield* counting
        const [a, b] = [instances[0]!, instances[1]!]
        const first = yield* Effect.fork(Effect.flatMap(a, (cache) => cache.getOrSet(Users, 7, produce(25_000))))
        yield* TestClock.adjust("1 second")
        const second = yield* Effect.fork(Effect.flatMap(b, (cache) => cache.getOrSet(Users, 7, produce(25_000), { lockTimeout: "1 minute" })))
        for (let i = 0; i < 30; i++) yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* Fiber.join(first)).name, "Ada")
        assert.strictEqual((yield* Fiber.join(second)).name, "Ada")
        assert.strictEqual(yield* Ref.get(calls), 1, "lease 10 s, producer 25 s: the lease was extended, nobody took over")
      }).pipe(Effect.provide(fleet(store))))

    it.effect("a holder that died: another instance takes over once the lease lapses", () =>
      Effect.gen(function*() {
        const lock = yield* CacheLock.CacheLock
        // A "process" took the lock and vanished without releasing it.
        yield* lock.tryAcquire("fleet:users:7", "2 seconds")
        const { calls, produce } = yield* counting
        const waiter = yield* Effect.fork(Effect.flatMap(instances[2]!, (cache) => cache.getOrSet(Users, 7, produce(10))))
        for (let i = 0; i < 5; i++) yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* Fiber.join(waiter)).name, "Ada")
        assert.strictEqual(yield* Ref.get(calls), 1)
      }).pipe(Effect.provide(fleet(store, { lock: { lease: "2 seconds" } }))))

    it.effect("past lockTimeout: at-least-once runs the producer, at-most-once fails with a LockError", () =>
      Effect.gen(function*() {
        const lock = yield* CacheLock.CacheLock
        yield* lock.tryAcquire("fleet:users:7", "1 hour")
        const { calls, produce } = yield* counting
        // Two instances: callers in one instance share one run, and so the first caller's mode.
        const [one, two] = [yield* instances[0]!, yield* instances[1]!]
        const atLeast = yield* Effect.fork(one.getOrSet(Users, 7, produce(0), { lockTimeout: "1 second" }))
        const atMost = yield* Effect.fork(
          Effect.flip(two.getOrSet(Users, 7, produce(0), { lockTimeout: "1 second", lockMode: "at-most-once" }))
        )
        for (let i = 0; i < 3; i++) yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* Fiber.join(atLeast)).name, "Ada")
        const error = yield* Fiber.join(atMost)
        assert.isTrue(error._tag === "LockError" && error.reason === "Timeout")
        assert.strictEqual(yield* Ref.get(calls), 1)
      }).pipe(Effect.provide(fleet(store))))

    it.effect("a failing producer releases the lock at once: the next caller does not wait out the lease", () =>
      Effect.gen(function*() {
        const cache = yield* instances[0]!
        const failure = yield* Effect.flip(cache.getOrSet(Users, 7, Effect.fail(new FetchError())))
        assert.strictEqual(failure._tag, "FetchError")
        const lock = yield* CacheLock.CacheLock
        assert.isTrue(Option.isSome(yield* lock.tryAcquire("fleet:users:7", "1 second")))
      }).pipe(Effect.provide(fleet(store))))
  })
}

describe("the lock path under failure", () => {
  const NonEmpty = Keyspace.make({ name: "nonempty", key: CacheKey.string, value: Schema.NonEmptyString })
  const oneInstance = (lock: Layer.Layer<CacheLock.CacheLock, never, CacheStore.CacheStore> = MemoryLock.layer) =>
    Cache.layer({ namespace: "app", lock: { lease: "3 seconds" } }).pipe(
      Layer.provideMerge(lock),
      Layer.provideMerge(MemoryStore.layer())
    )

  it.effect("a value the schema cannot encode is returned, not cached, and the lock is released at once", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* NonEmpty.getOrSet("a", Effect.succeed("")), "")
      const lock = yield* CacheLock.CacheLock
      assert.isTrue(Option.isSome(yield* lock.tryAcquire("app:nonempty:a", "1 second")), "the lease was released")
    }).pipe(Effect.provide(oneInstance())))

  it.effect("one failed extend does not stop the watchdog: the lease is kept for the whole producer", () =>
    Effect.gen(function*() {
      let extends_ = 0
      const flaky = Layer.effect(
        CacheLock.CacheLock,
        Effect.map(MemoryLock.make, (memory): CacheLock.CacheLock => ({
          ...memory,
          extend: (lease, duration) =>
            Effect.suspend(() =>
              ++extends_ === 1
                ? Effect.fail(new CacheError.LockError({ reason: "Timeout", operation: "lock", key: lease.key }))
                : memory.extend(lease, duration)
            )
        }))
      )
      yield* Effect.gen(function*() {
        const lock = yield* CacheLock.CacheLock
        const run = yield* Effect.fork(NonEmpty.getOrSet("b", Effect.as(Effect.sleep("10 seconds"), "v")))
        for (let i = 0; i < 9; i++) yield* TestClock.adjust("1 second")
        assert.isTrue(Option.isNone(yield* lock.tryAcquire("app:nonempty:b", "1 second")), "still held after 9 s of a 3 s lease")
        yield* TestClock.adjust("1 second")
        assert.strictEqual(yield* Fiber.join(run), "v")
        assert.isAbove(extends_, 3)
      }).pipe(Effect.provide(oneInstance(flaky)))
    }))

  it.effect("a default caller never joins an at-most-once caller's run (whose LockError it could not expect)", () =>
    Effect.gen(function*() {
      const lock = yield* CacheLock.CacheLock
      yield* lock.tryAcquire("app:nonempty:c", "1 hour") // another instance holds the key
      const strict = yield* Effect.fork(
        Effect.either(NonEmpty.getOrSet("c", Effect.succeed("strict"), { lockMode: "at-most-once", lockTimeout: "1 second" }))
      )
      const lenient = yield* Effect.fork(NonEmpty.getOrSet("c", Effect.succeed("lenient"), { lockTimeout: "1 second" }))
      for (let i = 0; i < 3; i++) yield* TestClock.adjust("1 second")
      // The lenient caller ran its producer itself: before the fix, it could have joined the strict run
      // and failed with the strict caller's LockError.
      assert.strictEqual(yield* Fiber.join(lenient), "lenient")
      // The strict caller never ran its own producer: it failed, or found the lenient caller's value.
      const strictOutcome = yield* Fiber.join(strict)
      assert.isTrue(
        strictOutcome._tag === "Left" ? strictOutcome.left._tag === "LockError" : strictOutcome.right === "lenient",
        JSON.stringify(strictOutcome)
      )
    }).pipe(Effect.provide(oneInstance())))
})

describe("a skip or ttl function that throws", () => {
  const Throwing = Keyspace.make({
    name: "throwing",
    key: CacheKey.string,
    value: Schema.String,
    skip: (value) => {
      if (value === "boom") throw new Error("skip threw")
      return false
    }
  })
  for (const [name, layer] of [
    ["without a lock", Cache.layer({ namespace: "t" }).pipe(Layer.provideMerge(MemoryStore.layer()))],
    ["with a lock", Cache.layer({ namespace: "t" }).pipe(Layer.provideMerge(MemoryLock.layer), Layer.provideMerge(MemoryStore.layer()))]
  ] as const) {
    it.effect(`${name}: the caller gets the value, nothing is stored, the key is free again`, () =>
      Effect.gen(function*() {
        assert.strictEqual(yield* Throwing.getOrSet("k", Effect.succeed("boom")), "boom")
        const cache = yield* Cache.Cache
        yield* cache.inFlight.pipe(Effect.tap(() => Effect.yieldNow()), Effect.repeat({ until: (n) => n === 0, times: 100 }))
        assert.strictEqual(yield* cache.inFlight, 0)
        assert.isTrue(Option.isNone(yield* Throwing.get("k")))
        assert.strictEqual(yield* Throwing.getOrSet("k", Effect.succeed("fine")), "fine")
        assertSame(yield* Throwing.get("k"), Option.some("fine"))
      }).pipe(Effect.provide(layer)))
  }
})

describe("the error channel of getOrSet follows its lock mode (checked by tsc)", () => {
  it("LockError appears only when the options may ask for at-most-once", () => {
    const fetch = Effect.fail(new FetchError()) as Effect.Effect<User, FetchError>
    const plain: Effect.Effect<User, FetchError, Cache.Cache> = Users.getOrSet(1, fetch)
    const atLeast: Effect.Effect<User, FetchError, Cache.Cache> = Users.getOrSet(1, fetch, { lockMode: "at-least-once", ttl: "1 minute" })
    // @ts-expect-error at-most-once may fail with a LockError
    const atMost: Effect.Effect<User, FetchError, Cache.Cache> = Users.getOrSet(1, fetch, { lockMode: "at-most-once" })
    const unknownMode = { lockMode: "at-least-once" } as Cache.GetOrSetOptions<User>
    // @ts-expect-error options whose mode is not known statically keep LockError in the type
    const dynamic: Effect.Effect<User, FetchError, Cache.Cache> = Users.getOrSet(1, fetch, unknownMode)
    const memoized: (id: number) => Effect.Effect<User, FetchError, Cache.Cache> = Users.memoize(() => fetch)
    assert.isDefined([plain, atLeast, atMost, dynamic, memoized])
  })
})
