import { assert, describe, it } from "@effect/vitest"
import {
  Config,
  ConfigProvider,
  Duration,
  Context,
  Data,
  Deferred,
  Effect,
  Exit,
  Fiber,
  Layer,
  Metric,
  MetricLabel,
  Option,
  Ref,
  Schema,
  TestClock
} from "effect"
import { Cache, CacheEntry, CacheKey, CacheStore, Keyspace, MemoryStore } from "../src/index.js"
import { assertSame, cacheOver, failingStore, hangingStore, layerSerializing, whileProducing } from "./utils.js"

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
class FetchError extends Data.TaggedError("FetchError")<{ readonly id: number }> {}

const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User, ttl: "10 minutes" })

/** A producer that counts its calls, waits 50 ms of (test) time and returns a user. */
const countingProducer = Effect.gen(function*() {
  const calls = yield* Ref.make(0)
  const fetchUser = (id: number) =>
    Ref.update(calls, (n) => n + 1).pipe(
      Effect.zipRight(Effect.sleep("50 millis")),
      Effect.as(new User({ id, name: `user ${id}` }))
    )
  return { calls, fetchUser }
})

const counter = (
  metric: Metric.Metric.Counter<number>,
  labels: { cache: string; keyspace: string; store: string }
) =>
  Metric.value(
    Metric.taggedWithLabels(metric, [
      MetricLabel.make("cache", labels.cache),
      MetricLabel.make("keyspace", labels.keyspace),
      MetricLabel.make("store", labels.store)
    ])
  ).pipe(Effect.map((state) => state.count))

/**
 * The number of keys in flight once the runs under way have finished their writes: a run stays in
 * flight until its value is stored, a moment after its callers have it.
 */
const inFlightWhenSettled = Effect.flatMap(Cache.Cache, (cache) =>
  cache.inFlight.pipe(
    Effect.tap(() => Effect.yieldNow()),
    Effect.repeat({ until: (n) => n === 0, times: 1_000 })
  ))

const bytes = (text: string) => new TextEncoder().encode(text)

/** An envelope as a writer would store it: fresh for ever unless told otherwise. */
const envelope = (fingerprint: string, body: string | Uint8Array, header: Partial<CacheEntry.Header> = {}) =>
  CacheEntry.encode(
    { fingerprint, version: 1, freshUntil: Infinity, staleUntil: Infinity, tags: [], isFailure: false, ...header },
    body
  )

/** The memory store both in-process (live values) and as a remote store sees it (envelope bytes). */
const backends = [
  ["memory", (namespace: string) => Cache.layer({ namespace }).pipe(Layer.provideMerge(MemoryStore.layer()))],
  ["serializing", (namespace: string) => Cache.layer({ namespace }).pipe(Layer.provideMerge(layerSerializing()))]
] as const

for (const [backend, layerFor] of backends) {
  describe(`Cache over the ${backend} store`, () => {
    const provide = <A, E, R>(namespace: string) => (self: Effect.Effect<A, E, R>) =>
      Effect.provide(self, layerFor(namespace))

    it.effect("set, get and invalidate a Schema.Class value", () =>
      Effect.gen(function*() {
        yield* Users.set(1, new User({ id: 1, name: "Ada" }))
        const ada = Option.getOrThrow(yield* Users.get(1))
        assert.instanceOf(ada, User)
        assert.deepStrictEqual(ada, new User({ id: 1, name: "Ada" }))
        yield* Users.invalidate(1)
        assert.isTrue(Option.isNone(yield* Users.get(1)))
      }).pipe(provide("roundtrip")))

    it.effect("a key invalidated or replaced while its producer runs keeps its newer state; the callers get the value", () =>
      Effect.gen(function*() {
        const cache = yield* Cache.Cache
        // The run's write follows its answer; a remote store's bound runs on real time (a real timer).
        const settled = Effect.gen(function*() {
          for (let i = 0; i < 500 && (yield* cache.inFlight) > 0; i++) {
            yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 1)))
          }
          assert.strictEqual(yield* cache.inFlight, 0, "the run finished its write")
        })
        const racing = (id: number, during: Effect.Effect<unknown, unknown, Cache.Cache>) =>
          Effect.gen(function*() {
            const got = yield* whileProducing((produce) => Users.getOrSet(id, produce), new User({ id, name: "produced" }), during)
            assert.strictEqual(got.name, "produced", "the callers get what was produced")
            yield* settled
          })
        // The producer of a missing key runs; meanwhile the data behind it changes and the key is invalidated.
        yield* racing(1, Users.invalidate(1))
        assert.isTrue(Option.isNone(yield* Users.get(1)), "the invalidation stands")
        yield* racing(2, Users.set(2, new User({ id: 2, name: "newer" })))
        assert.strictEqual(Option.getOrThrow(yield* Users.get(2)).name, "newer", "the newer write stands")
        // A producer that starts after the invalidation stores its value.
        yield* racing(3, Effect.void)
        assert.strictEqual(Option.getOrThrow(yield* Users.get(3)).name, "produced")
        assert.strictEqual((yield* Users.getOrSet(1, Effect.succeed(new User({ id: 1, name: "fresh" })))).name, "fresh")
        yield* settled
        assert.strictEqual(Option.getOrThrow(yield* Users.get(1)).name, "fresh")
      }).pipe(provide("raced")))

    it.effect("an entry expires after the keyspace ttl (TestClock)", () =>
      Effect.gen(function*() {
        yield* Users.set(1, new User({ id: 1, name: "Ada" }))
        yield* TestClock.adjust("9 minutes")
        assert.isTrue(Option.isSome(yield* Users.get(1)))
        yield* TestClock.adjust("1 minute")
        assert.isTrue(Option.isNone(yield* Users.get(1)))
      }).pipe(provide("ttl")))

    it.effect("a ttl chosen from the value, a per-write ttl and the cache default", () =>
      Effect.gen(function*() {
        const ByValue = Keyspace.make({
          name: "by-value",
          key: CacheKey.number,
          value: User,
          ttl: (user) => user.name === "short" ? "1 minute" : "1 hour"
        })
        const NoTtl = Keyspace.make({ name: "no-ttl", key: CacheKey.number, value: Schema.String })
        yield* ByValue.set(1, new User({ id: 1, name: "short" }))
        yield* ByValue.set(2, new User({ id: 2, name: "long" }))
        yield* ByValue.set(3, new User({ id: 3, name: "long" }), { ttl: "30 seconds" })
        yield* NoTtl.set(1, "default")
        yield* TestClock.adjust("2 minutes")
        assertSame(
          (yield* ByValue.getMany([1, 2, 3])).map(Option.isSome),
          [false, true, false]
        )
        assert.isTrue(Option.isSome(yield* NoTtl.get(1)))
        yield* TestClock.adjust("1 hour")
        assert.isTrue(Option.isNone(yield* NoTtl.get(1)), "the cache's defaultTtl of 1 hour applies")
      }).pipe(Effect.provide(Cache.layer({ namespace: "ttl-choice", defaultTtl: "1 hour" }).pipe(
        Layer.provide(backend === "memory" ? MemoryStore.layer() : layerSerializing())
      ))))

    it.effect("1,000 concurrent getOrSet on one cold key run the producer once", () =>
      Effect.gen(function*() {
        const { calls, fetchUser } = yield* countingProducer
        const fiber = yield* Effect.fork(
          Effect.all(Array.from({ length: 1_000 }, () => Users.getOrSet(7, fetchUser(7))), { concurrency: "unbounded" })
        )
        yield* TestClock.adjust("50 millis")
        const users = yield* Fiber.join(fiber)
        assert.strictEqual(yield* Ref.get(calls), 1)
        assert.strictEqual(users.length, 1_000)
        assert.isTrue(users.every((user) => user.id === 7 && user.name === "user 7"))
        assert.strictEqual(yield* inFlightWhenSettled, 0)
        // The value is cached: another call does not run the producer.
        yield* Users.getOrSet(7, fetchUser(7))
        assert.strictEqual(yield* Ref.get(calls), 1)
      }).pipe(provide("stampede")))

    it.effect("1,000 distinct cold keys run the producer 1,000 times, all at once", () =>
      Effect.gen(function*() {
        const calls = yield* Ref.make(0)
        const gate = yield* Deferred.make<void>()
        const fetchUser = (id: number) =>
          Ref.update(calls, (n) => n + 1).pipe(
            Effect.zipRight(Deferred.await(gate)),
            Effect.as(new User({ id, name: `user ${id}` }))
          )
        const fiber = yield* Effect.fork(
          Effect.all(Array.from({ length: 1_000 }, (_, i) => Users.getOrSet(i, fetchUser(i))), {
            concurrency: "unbounded"
          })
        )
        const cache = yield* Cache.Cache
        const inFlight = yield* cache.inFlight.pipe(
          Effect.tap(() => Effect.yieldNow()),
          Effect.repeat({ until: (n) => n === 1_000, times: 10_000 })
        )
        assert.strictEqual(inFlight, 1_000, "every key has its own producer running")
        yield* Deferred.succeed(gate, undefined)
        const users = yield* Fiber.join(fiber)
        assert.strictEqual(yield* Ref.get(calls), 1_000)
        assert.isTrue(users.every((user, i) => user.id === i))
        assert.strictEqual(yield* inFlightWhenSettled, 0)
      }).pipe(provide("distinct")))

    it.effect("a failing producer with 100 waiters runs once; all see the typed failure; nothing is cached", () =>
      Effect.gen(function*() {
        const calls = yield* Ref.make(0)
        const failing = Ref.update(calls, (n) => n + 1).pipe(
          Effect.zipRight(Effect.sleep("50 millis")),
          Effect.zipRight(Effect.fail(new FetchError({ id: 9 })))
        )
        const fiber = yield* Effect.fork(
          Effect.all(Array.from({ length: 100 }, () => Effect.either(Users.getOrSet(9, failing))), {
            concurrency: "unbounded"
          })
        )
        yield* TestClock.adjust("50 millis")
        const outcomes = yield* Fiber.join(fiber)
        assert.strictEqual(yield* Ref.get(calls), 1)
        for (const outcome of outcomes) {
          assert.isTrue(outcome._tag === "Left" && outcome.left._tag === "FetchError" && outcome.left.id === 9)
        }
        assert.strictEqual(yield* inFlightWhenSettled, 0)
        assert.isTrue(Option.isNone(yield* Users.get(9)))
        // The next caller tries again.
        const retry = yield* Effect.fork(Effect.either(Users.getOrSet(9, failing)))
        yield* TestClock.adjust("50 millis")
        yield* Fiber.join(retry)
        assert.strictEqual(yield* Ref.get(calls), 2)
      }).pipe(provide("failure")))

    it.effect("interrupting one caller does not cancel the producer another caller waits for", () =>
      Effect.gen(function*() {
        const { calls, fetchUser } = yield* countingProducer
        const first = yield* Effect.fork(Users.getOrSet(3, fetchUser(3)))
        const second = yield* Effect.fork(Users.getOrSet(3, fetchUser(3)))
        yield* TestClock.adjust("10 millis")
        yield* Fiber.interrupt(first)
        yield* TestClock.adjust("40 millis")
        const user = yield* Fiber.join(second)
        assert.strictEqual(user.id, 3)
        assert.strictEqual(yield* Ref.get(calls), 1)
        assert.isTrue(Option.isSome(yield* Users.get(3)), "the producer finished and stored its value")
      }).pipe(provide("interrupt-one")))

    it.effect("when every caller leaves, the producer is interrupted and the guard is empty", () =>
      Effect.gen(function*() {
        const interrupted = yield* Deferred.make<void>()
        const started = yield* Deferred.make<void>()
        const slow = Deferred.succeed(started, undefined).pipe(
          Effect.zipRight(Effect.never),
          Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)),
          Effect.as(new User({ id: 4, name: "never" }))
        )
        const callers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(Users.getOrSet(4, slow)))
        yield* Deferred.await(started)
        yield* Effect.forEach(callers, Fiber.interrupt)
        yield* Deferred.await(interrupted)
        assert.strictEqual(yield* inFlightWhenSettled, 0)
        assert.isTrue(Option.isNone(yield* Users.get(4)))
      }).pipe(provide("interrupt-all")))

    it.effect("the guard keeps nothing for idle keys after many distinct keys", () =>
      Effect.gen(function*() {
        const Numbers = Keyspace.make({ name: "numbers", key: CacheKey.number, value: Schema.Number })
        yield* Effect.forEach(
          Array.from({ length: 20_000 }, (_, i) => i),
          (i) => Numbers.getOrSet(i, Effect.succeed(i * 2)),
          { concurrency: 64, discard: true }
        )
        assert.strictEqual(yield* inFlightWhenSettled, 0)
      }).pipe(Effect.provide(Cache.layer({ namespace: "idle" }).pipe(
        Layer.provide(backend === "memory" ? MemoryStore.layer({ capacity: 100 }) : layerSerializing({ capacity: 100 }))
      ))))

    it.effect("cacheRead: false always produces and refreshes; cacheWrite: false does not store", () =>
      Effect.gen(function*() {
        const { calls, fetchUser } = yield* countingProducer
        yield* Users.set(5, new User({ id: 5, name: "stale" }))
        const refreshed = yield* Effect.fork(Users.getOrSet(5, fetchUser(5), { cacheRead: false }))
        yield* TestClock.adjust("50 millis")
        assert.strictEqual((yield* Fiber.join(refreshed)).name, "user 5")
        assert.strictEqual(Option.getOrThrow(yield* Users.get(5)).name, "user 5")
        const unstored = yield* Effect.fork(Users.getOrSet(6, fetchUser(6), { cacheWrite: false }))
        yield* TestClock.adjust("50 millis")
        yield* Fiber.join(unstored)
        assert.isTrue(Option.isNone(yield* Users.get(6)))
        assert.strictEqual(yield* Ref.get(calls), 2)
      }).pipe(provide("switches")))

    it.effect("skip: a value the predicate rejects is returned but not cached", () =>
      Effect.gen(function*() {
        const Lookups = Keyspace.make({
          name: "lookups",
          key: CacheKey.string,
          value: Schema.Option(Schema.String),
          skip: Option.isNone
        })
        const calls = yield* Ref.make(0)
        const lookup = (found: boolean) =>
          Effect.as(Ref.update(calls, (n) => n + 1), found ? Option.some("hit") : Option.none())
        assert.isTrue(Option.isNone(yield* Lookups.getOrSet("a", lookup(false))))
        assert.isTrue(Option.isNone(yield* Lookups.getOrSet("a", lookup(false))))
        assert.strictEqual(yield* Ref.get(calls), 2)
        yield* Lookups.getOrSet("b", lookup(true))
        yield* Lookups.getOrSet("b", lookup(true))
        assert.strictEqual(yield* Ref.get(calls), 3)
      }).pipe(provide("skip")))

    it.effect("memoize caches an effectful function by argument; Cache.memoize works data-first and data-last", () =>
      Effect.gen(function*() {
        const { calls, fetchUser } = yield* countingProducer
        const getUser = Users.memoize(fetchUser)
        const run = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
          Effect.gen(function*() {
            const fiber = yield* Effect.fork(effect)
            yield* TestClock.adjust("50 millis")
            return yield* Fiber.join(fiber)
          })
        yield* run(getUser(1))
        yield* run(getUser(1))
        yield* run(getUser(2))
        assert.strictEqual(yield* Ref.get(calls), 2)

        const AppConfig = Schema.Struct({ featureX: Schema.Boolean })
        const loads = yield* Ref.make(0)
        const loadConfig = Effect.as(Ref.update(loads, (n) => n + 1), { featureX: true })
        const lastForm = loadConfig.pipe(Cache.memoize({ key: "config", value: AppConfig, ttl: "1 minute" }))
        const firstForm = Cache.memoize(loadConfig, { key: "config", value: AppConfig, ttl: "1 minute" })
        assert.deepStrictEqual(yield* lastForm, { featureX: true })
        assert.deepStrictEqual(yield* firstForm, { featureX: true })
        assert.strictEqual(yield* Ref.get(loads), 1)
        yield* TestClock.adjust("1 minute")
        yield* lastForm
        assert.strictEqual(yield* Ref.get(loads), 2)
      }).pipe(provide("memoize")))

    it.effect("a corrupt stored value is a miss: dropped, counted, and healed by getOrSet", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore.CacheStore
        const labels = { cache: "corrupt", keyspace: "users", store: store.name }
        const before = yield* counter(Cache.metrics.decodeFailures, labels)
        const good = envelope(Users.fingerprint, `{"id":1,"name":"x"}`)
        const corrupt = [
          bytes("not json at all"),
          envelope(Users.fingerprint, "{not json"),
          envelope(Users.fingerprint, `{"id":"one","name":1}`),
          new Uint8Array([0xff, 0xfe, 0x00, 0x01]),
          envelope("000000000000", `{"id":1,"name":"other schema"}`),
          // A wave-1 entry (0.1's "ck1:<fingerprint>:<body>" layout): a miss, healed by the next write.
          bytes(`ck1:${Users.fingerprint}:{"id":1,"name":"x"}`),
          // An envelope cut inside its header, one cut inside a tag, one whose times disagree.
          good.subarray(0, 20),
          envelope(Users.fingerprint, `{"id":1,"name":"x"}`, { tags: ["a-long-tag"] }).subarray(0, 47),
          envelope(Users.fingerprint, `{"id":1,"name":"x"}`, { freshUntil: 2e12, staleUntil: 1e12 }),
          // A sound, fresh header over a body that is not valid UTF-8.
          envelope(Users.fingerprint, new Uint8Array([...new TextEncoder().encode(`{"id":1,"name":"`), 0xff, 0x22, 0x7d]))
        ]
        for (const entry of corrupt) {
          yield* store.set("corrupt:users:1", entry, undefined)
          assert.isTrue(Option.isNone(yield* Users.get(1)))
          assert.isFalse(yield* store.has("corrupt:users:1"), "the bad entry was dropped")
        }
        assert.strictEqual((yield* counter(Cache.metrics.decodeFailures, labels)) - before, corrupt.length)
        yield* store.set("corrupt:users:1", bytes("garbage"), undefined)
        const healed = yield* Users.getOrSet(1, Effect.succeed(new User({ id: 1, name: "fresh" })))
        assert.strictEqual(healed.name, "fresh")
        assert.strictEqual(Option.getOrThrow(yield* Users.get(1)).name, "fresh")
      }).pipe(provide("corrupt")))

    it.effect("a stored value that holds U+FFFD itself reads back as written", () =>
      Effect.gen(function*() {
        yield* Users.set(7, new User({ id: 7, name: "a\uFFFDb\u00e9" }))
        assert.strictEqual(Option.getOrThrow(yield* Users.get(7)).name, "a\uFFFDb\u00e9")
        assert.strictEqual(Option.getOrThrow((yield* Users.getMany([7]))[0]!).name, "a\uFFFDb\u00e9")
      }).pipe(provide("replacement")))

    it.effect("a value written under another schema version is a miss, not a wrongly shaped value", () =>
      Effect.gen(function*() {
        const V1 = Keyspace.make({ name: "profile", key: CacheKey.number, value: Schema.Struct({ age: Schema.Number }) })
        const V2 = Keyspace.make({ name: "profile", key: CacheKey.number, value: Schema.Struct({ age: Schema.String }) })
        const V1bumped = Keyspace.make({
          name: "profile",
          key: CacheKey.number,
          value: Schema.Struct({ age: Schema.Number }),
          version: "2"
        })
        yield* V1.set(1, { age: 42 })
        assert.isTrue(Option.isNone(yield* V2.get(1)))
        yield* V1.set(1, { age: 42 })
        assert.isTrue(Option.isNone(yield* V1bumped.get(1)))
        yield* V1.set(1, { age: 42 })
        assertSame(yield* V1.get(1), Option.some({ age: 42 }))
      }).pipe(provide("versions")))

    it.effect("a __proto__ payload decodes without touching any prototype", () =>
      Effect.gen(function*() {
        const store = yield* CacheStore.CacheStore
        yield* store.set(
          "proto:users:1",
          envelope(Users.fingerprint, `{"__proto__":{"polluted":true},"id":1,"name":"x","constructor":{"prototype":{"polluted":true}}}`),
          undefined
        )
        // A body with a __proto__ key is refused: a miss, never an object whose prototype a writer chose.
        assert.isTrue(Option.isNone(yield* Users.get(1)))
        assert.isUndefined((({}) as Record<string, unknown>).polluted)
        assert.isUndefined((Object.prototype as unknown as Record<string, unknown>).polluted)
      }).pipe(provide("proto")))

    it.effect("control characters and a 100 KB key fail with InvalidKeyError; getOrSet still answers", () =>
      Effect.gen(function*() {
        const Names = Keyspace.make({ name: "names", key: CacheKey.string, value: Schema.String })
        const control = yield* Effect.flip(Names.get("a\r\nFLUSHALL"))
        assert.strictEqual(control._tag, "InvalidKeyError")
        assert.strictEqual(control.reason, "ControlCharacter")
        const huge = yield* Effect.flip(Names.set("k".repeat(100_000), "v"))
        assert.strictEqual(huge._tag, "InvalidKeyError")
        assert.strictEqual(huge.reason === "TooLong" ? huge.reason : huge._tag, "TooLong")
        assert.isBelow(huge.message.length, 400, "the message does not repeat the whole key")
        assert.strictEqual(yield* Names.getOrSet("nul\u0000", Effect.succeed("produced")), "produced")
        const store = yield* CacheStore.CacheStore
        assert.strictEqual(yield* store.clear("invalid-keys:"), 0, "nothing reached the store")
      }).pipe(provide("invalid-keys")))

    it.effect("a value that does not match the schema fails set with CodecError, and is not cached by getOrSet", () =>
      Effect.gen(function*() {
        const Scores = Keyspace.make({ name: "scores", key: CacheKey.string, value: Schema.Number.pipe(Schema.int()) })
        const error = yield* Effect.flip(Scores.set("a", 1.5))
        assert.strictEqual(error._tag, "CodecError")
        assert.strictEqual(yield* Scores.getOrSet("b", Effect.succeed(2.5)), 2.5)
        assert.isTrue(Option.isNone(yield* Scores.get("b")))
      }).pipe(provide("encode")))
  })
}

describe("Cache over the memory store, hit path", () => {
  it.effect("a hit returns the stored instance itself: no serialization on the L1 hit path", () =>
    Effect.gen(function*() {
      const ada = new User({ id: 1, name: "Ada" })
      yield* Users.set(1, ada)
      assert.strictEqual(Option.getOrThrow(yield* Users.get(1)), ada)
      assert.strictEqual(yield* Users.getOrSet(1, Effect.die("not called")), ada)
    }).pipe(Effect.provide(Cache.layerMemory({ namespace: "identity" }))))
})

describe("Cache fail-safe", () => {
  it.effect("a store that never answers: direct calls time out with a typed error, getOrSet falls back", () =>
    Effect.gen(function*() {
      const get = yield* Effect.fork(Effect.flip(Users.get(1)))
      yield* TestClock.adjust("250 millis")
      const error = yield* Fiber.join(get)
      assert.strictEqual(error._tag, "StoreError")
      assert.isTrue(error._tag === "StoreError" && error.reason === "Timeout")

      const calls = yield* Ref.make(0)
      const produced = yield* Effect.fork(
        Users.getOrSet(1, Effect.as(Ref.update(calls, (n) => n + 1), new User({ id: 1, name: "fallback" })))
      )
      // One timeout for the read; the value is handed over without waiting for the write.
      yield* TestClock.adjust("250 millis")
      const user = yield* Fiber.join(produced)
      assert.strictEqual(user.name, "fallback")
      assert.strictEqual(yield* Ref.get(calls), 1)
    }).pipe(Effect.provide(cacheOver(hangingStore, { namespace: "hanging", timeout: "250 millis" }))))

  it.effect("a store that is down: direct calls fail with Unavailable, getOrSet answers and counts the errors", () =>
    Effect.gen(function*() {
      const labels = { cache: "down", keyspace: "users", store: "broken" }
      const before = yield* counter(Cache.metrics.errors, labels)
      const error = yield* Effect.flip(Users.set(1, new User({ id: 1, name: "x" })))
      assert.isTrue(error._tag === "StoreError" && error.reason === "Unavailable")
      const users = yield* Effect.all(
        Array.from({ length: 10 }, () => Users.getOrSet(2, Effect.succeed(new User({ id: 2, name: "fallback" })))),
        { concurrency: "unbounded" }
      )
      assert.isTrue(users.every((u) => u.name === "fallback"))
      assert.isAbove((yield* counter(Cache.metrics.errors, labels)) - before, 0)
    }).pipe(Effect.provide(cacheOver(failingStore, { namespace: "down" }))))
})

describe("Cache layers", () => {
  class SessionCache extends Context.Tag("test/SessionCache")<SessionCache, Cache.Service>() {}
  const Sessions = Keyspace.make({ name: "sessions", key: CacheKey.string, value: Schema.String, cache: SessionCache })

  it.effect("two caches in one program keep their entries apart; clear empties one namespace", () =>
    Effect.gen(function*() {
      const Labels = Keyspace.make({ name: "sessions", key: CacheKey.string, value: Schema.String })
      yield* Sessions.set("s1", "session value")
      yield* Labels.set("s1", "default value")
      assertSame(yield* Sessions.get("s1"), Option.some("session value"))
      assertSame(yield* Labels.get("s1"), Option.some("default value"))
      assert.strictEqual(yield* Cache.clear, 1)
      assert.isTrue(Option.isNone(yield* Labels.get("s1")))
      assertSame(yield* Sessions.get("s1"), Option.some("session value"))
    }).pipe(
      Effect.provide(Layer.mergeAll(Cache.layer({ namespace: "app" }), Layer.scoped(SessionCache, Cache.make({ namespace: "sess" })))
        .pipe(Layer.provide(MemoryStore.layer())))
    ))

  it.effect("layerFromEnv reads the environment; CACHE_ENABLED=false runs every producer; an empty CACHE_REDIS_URL is unset", () =>
    Effect.gen(function*() {
      const calls = yield* Ref.make(0)
      const produce = Effect.as(Ref.update(calls, (n) => n + 1), new User({ id: 1, name: "x" }))
      const program = Effect.zipRight(Users.getOrSet(1, produce), Users.getOrSet(1, produce))
      const withEnv = (env: Record<string, string>) =>
        Effect.provide(program, Cache.layerFromEnv.pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))))
      yield* withEnv({ CACHE_NAMESPACE: "configured", CACHE_MEMORY_CAPACITY: "10" })
      assert.strictEqual(yield* Ref.get(calls), 1)
      yield* withEnv({ CACHE_ENABLED: "false" })
      assert.strictEqual(yield* Ref.get(calls), 3)
      // Empty means unset: the memory store, not a connection attempt to "".
      yield* withEnv({ CACHE_REDIS_URL: "" })
      assert.strictEqual(yield* Ref.get(calls), 4)
      const settings = yield* Effect.withConfigProvider(Cache.config, ConfigProvider.fromMap(new Map([["CACHE_REDIS_URL", ""]])))
      assert.isUndefined(settings.redis)
      const bad = yield* Effect.exit(withEnv({ CACHE_NAMESPACE: "a:b" }))
      assert.isTrue(Exit.isFailure(bad))
      const badCapacity = yield* Effect.exit(withEnv({ CACHE_MEMORY_CAPACITY: "-1" }))
      assert.isTrue(Exit.isFailure(badCapacity))
    }))

  it.effect("layerConfig takes every option as a Config (Config.Wrap), read when the layer is built", () =>
    Effect.gen(function*() {
      const provider = ConfigProvider.fromMap(new Map([["APP_NS", "wrapped"], ["APP_CAPACITY", "2"]]))
      const CacheLive = Cache.layerConfig({
        namespace: Config.string("APP_NS"),
        capacity: Config.integer("APP_CAPACITY"),
        defaultTtl: Config.succeed(Duration.minutes(1))
      })
      const cache = yield* Effect.provide(Cache.Cache, CacheLive.pipe(Layer.provide(Layer.setConfigProvider(provider))))
      assert.strictEqual(cache.namespace, "wrapped")
      assert.deepStrictEqual(cache.defaultTtl, Duration.minutes(1))
      const missing = yield* Effect.exit(Effect.provide(Cache.Cache, CacheLive.pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map()))))))
      assert.isTrue(Exit.isFailure(missing), "a missing required setting fails the layer")
    }))

  it.effect("hits and misses are counted per keyspace", () =>
    Effect.gen(function*() {
      const labels = { cache: "counted", keyspace: "users", store: "memory" }
      yield* Users.get(1)
      yield* Users.set(1, new User({ id: 1, name: "x" }))
      yield* Users.get(1)
      yield* Users.getOrSet(1, Effect.die("not called"))
      assert.strictEqual(yield* counter(Cache.metrics.misses, labels), 1)
      assert.strictEqual(yield* counter(Cache.metrics.hits, labels), 2)
    }).pipe(Effect.provide(Cache.layerMemory({ namespace: "counted" }))))
})
