/**
 * `Cache.events` (what a cache tells its subscribers), the per-keyspace stats, and the key digest on
 * spans: on the memory cache, on a cache whose store fails, and on Redis (writes told with the lock's
 * release) and the two-layer cache (a keyspace per tier, stats summed).
 */
import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Layer, Logger, LogLevel, Metric, MetricLabel, Option, Queue, Schema, Scope, Stream, TestClock } from "effect"
import { inject } from "vitest"
import { Cache, CacheError, CacheEvent, CacheKey, CacheStore, Keyspace } from "../src/index.js"
import { cacheOver, failingStore, layerSerializing, recorded } from "./utils.js"

const Users = Keyspace.make({
  name: "users",
  key: CacheKey.struct({ org: CacheKey.string, id: CacheKey.number }),
  keyTags: ["org"],
  value: Schema.String,
  ttl: "1 minute",
  tags: (key) => [`user:${key.id}`]
})
const Rates = Keyspace.make({ name: "rates", key: CacheKey.string, value: Schema.Number, ttl: "1 minute", grace: "1 hour" })

const user = (id: number) => ({ org: "acme", id })

/** What an event says, in one line: its tag, and its key, operation, keyspace or tags. */
const line = (event: CacheEvent.CacheEvent): string =>
  CacheEvent.$match(event, {
    Hit: (e) => `Hit ${e.key}`,
    Miss: (e) => `Miss ${e.key}`,
    StaleServed: (e) => `StaleServed ${e.key}`,
    DecodeFailure: (e) => `DecodeFailure ${e.key}`,
    Write: (e) => `Write ${e.operation} ${e.key}`,
    Invalidate: (e) => `Invalidate ${e.key}`,
    Clear: (e) => `Clear ${e.keyspace ?? "*"}`,
    InvalidateTags: (e) => `InvalidateTags ${e.tags.join(",")}`,
    InvalidateWhere: (e) => `InvalidateWhere ${e.keyspace} ${JSON.stringify(e.where)}`,
    Failure: (e) => `Failure ${e.keyspace} ${e.error._tag} ${e.error.operation}`,
    RefreshFailure: (e) => `RefreshFailure ${e.key}`,
    Circuit: (e) => `Circuit ${e.backend} ${e.state}`,
    Operation: (e) => `Operation ${e.keyspace ?? "*"} ${e.operation} ${e.success ? "ok" : "failed"}`
  })

/** The events told so far, as lines. */
const told = (queue: Queue.Dequeue<CacheEvent.CacheEvent>) => Effect.map(Queue.takeAll(queue), (events) => Chunk.toArray(events).map(line))

/**
 * Waits (in real time) until no producer run is in flight: `getOrSet` answers its callers before its
 * write lands, and a call meanwhile joins the run instead of reading.
 */
const settled = Effect.flatMap(Cache.Cache, (cache) =>
  Effect.repeat(Effect.zipRight(Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 2))), cache.inFlight), {
    until: (running) => running === 0
  }))

const dropped = (cache: string) =>
  Effect.map(Metric.value(Cache.metrics.eventsDropped.pipe(Metric.taggedWithLabels([MetricLabel.make("cache", cache)]))), (state) => state.count)

describe("types (checked by tsc)", () => {
  it("events, subscribe and stats say what they need and never fail", () => {
    expectTypeOf(Cache.events).toEqualTypeOf<Stream.Stream<CacheEvent.CacheEvent, never, Cache.Cache>>()
    expectTypeOf(Cache.stats).toEqualTypeOf<Effect.Effect<ReadonlyArray<CacheEvent.KeyspaceStats>, never, Cache.Cache>>()
    expectTypeOf(Users.stats).toEqualTypeOf<Effect.Effect<CacheEvent.KeyspaceStats, never, Cache.Cache>>()
    expectTypeOf(Cache.subscribe()).toEqualTypeOf<Effect.Effect<Queue.Dequeue<CacheEvent.CacheEvent>, never, Cache.Cache | Scope.Scope>>()
  })
})

describe("Cache.events on the memory cache", () => {
  it.scoped("every operation tells what it did, with the store key; nothing before the subscription", () =>
    Effect.gen(function*() {
      yield* Users.set(user(0), "before anybody listened")
      const events = yield* Cache.subscribe()
      yield* Users.get(user(1))
      yield* Users.set(user(1), "Ada")
      yield* Users.get(user(1))
      yield* Users.getMany([user(1), user(2)])
      yield* Users.has(user(2))
      assert.isTrue(yield* Users.add(user(2), "Bob"))
      assert.isFalse(yield* Users.add(user(2), "not added"))
      yield* Users.setMany([[user(3), "Cy"], [user(4), "Di"]])
      yield* Users.getOrSet(user(5), Effect.succeed("Eve"))
      yield* Users.getOrSet(user(5), Effect.succeed("not produced"))
      yield* Users.getOrSetMany([user(5), user(6)], (missing) => Effect.succeed(missing.map((key) => [key, `#${key.id}`] as const)))
      yield* Users.invalidate(user(1))
      yield* Users.invalidateMany([user(2), user(3)])
      yield* Users.deleteMany([user(4)])
      yield* Cache.invalidateTags(["user:5"])
      yield* Users.invalidateWhere({ org: "acme" })
      yield* Users.clear
      yield* Cache.clear
      assert.deepStrictEqual(yield* told(events), [
        "Miss events:users:id=1,org=acme",
        "Write set events:users:id=1,org=acme",
        "Hit events:users:id=1,org=acme",
        "Hit events:users:id=1,org=acme",
        "Miss events:users:id=2,org=acme",
        "Write add events:users:id=2,org=acme",
        "Write setMany events:users:id=3,org=acme",
        "Write setMany events:users:id=4,org=acme",
        "Miss events:users:id=5,org=acme",
        "Write getOrSet events:users:id=5,org=acme",
        "Hit events:users:id=5,org=acme",
        "Hit events:users:id=5,org=acme",
        "Miss events:users:id=6,org=acme",
        "Write getOrSetMany events:users:id=6,org=acme",
        "Invalidate events:users:id=1,org=acme",
        "Invalidate events:users:id=2,org=acme",
        "Invalidate events:users:id=3,org=acme",
        "Invalidate events:users:id=4,org=acme",
        "InvalidateTags user:5",
        `InvalidateWhere users {"org":"acme"}`,
        "Clear users",
        "Clear *"
      ])
    }).pipe(Effect.provide(Cache.layerMemory({ namespace: "events" }))))

  it.scoped("Cache.events: a stream that subscribes when it runs", () =>
    Effect.gen(function*() {
      const collected = yield* Effect.fork(Stream.runCollect(Stream.take(Cache.events, 2)))
      // Until the stream runs, its reads are not told: read until it has two.
      let reads = 0
      while (Option.isNone(yield* Fiber.poll(collected))) {
        yield* Rates.get("eur")
        reads++
        yield* Effect.yieldNow()
      }
      const events = Chunk.toArray(yield* Fiber.join(collected))
      assert.deepStrictEqual(events.map(line), ["Miss stream:rates:eur", "Miss stream:rates:eur"])
      assert.isAtLeast(reads, 2)
      const [first] = events
      assert.isTrue(CacheEvent.$is("Miss")(first!))
      if (CacheEvent.$is("Miss")(first!)) {
        assert.strictEqual(first.cache, "stream")
        assert.strictEqual(first.store, "memory")
        assert.strictEqual(first.keyspace, "rates")
      }
    }).pipe(Effect.provide(Cache.layerMemory({ namespace: "stream" }))))

  it.scoped("a decode failure and a stale value served are told", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      const events = yield* Cache.subscribe()
      yield* store.set("decode:rates:usd", new TextEncoder().encode("not an entry"), undefined)
      yield* Rates.get("usd")
      yield* Rates.set("eur", 1.1)
      yield* TestClock.adjust("2 minutes")
      assert.strictEqual(yield* Rates.getOrSet("eur", Effect.fail("rates service down")), 1.1)
      assert.deepStrictEqual(yield* told(events), [
        "DecodeFailure decode:rates:usd",
        "Miss decode:rates:usd",
        "Write set decode:rates:eur",
        "Miss decode:rates:eur",
        "StaleServed decode:rates:eur"
      ])
    }).pipe(Effect.provide(Cache.layer({ namespace: "decode" })), Effect.provide(layerSerializing())))

  it.scoped("with redactKeys, keys are told as digests", () =>
    Effect.gen(function*() {
      const events = yield* Cache.subscribe()
      yield* Users.get(user(7))
      const [miss] = Chunk.toArray(yield* Queue.takeAll(events))
      assert.isTrue(CacheEvent.$is("Miss")(miss!))
      const key = (miss as CacheEvent.CacheEvent & { readonly key: string }).key
      assert.match(key, /^redacted:users:#[A-Za-z0-9_-]{16}$/)
      assert.notInclude(key, "acme")
    }).pipe(Effect.provide(Cache.layerMemory({ namespace: "redacted", redactKeys: true }))))

  it.scoped("a subscriber that falls behind loses what does not fit, counted; the cache goes on", () =>
    Effect.gen(function*() {
      const before = yield* dropped("slow")
      const events = yield* Cache.subscribe({ bufferSize: 2 })
      const all = yield* Cache.subscribe()
      for (let i = 0; i < 5; i++) yield* Rates.get(`k${i}`)
      assert.deepStrictEqual(yield* told(events), ["Miss slow:rates:k0", "Miss slow:rates:k1"])
      assert.strictEqual((yield* told(all)).length, 5, "another subscriber has its own buffer")
      // A size that is not a finite number gets the default buffer, not a broken queue.
      const odd = yield* Cache.subscribe({ bufferSize: Number.NaN })
      yield* Rates.get("k5")
      assert.deepStrictEqual(yield* told(odd), ["Miss slow:rates:k5"])
      yield* told(events)
      yield* told(all)
      assert.strictEqual((yield* dropped("slow")) - before, 3)
    }).pipe(Effect.provide(Cache.layerMemory({ namespace: "slow" }))))

  it.effect("a subscription ends with its scope: later events are not kept for it", () =>
    Effect.gen(function*() {
      const queue = yield* Effect.scoped(Cache.subscribe())
      yield* Rates.get("gone")
      assert.isTrue(yield* Queue.isShutdown(queue))
      const again = yield* Effect.scoped(Effect.gen(function*() {
        const events = yield* Cache.subscribe()
        yield* Rates.get("back")
        return yield* told(events)
      }))
      assert.deepStrictEqual(again, ["Miss ended:rates:back"])
    }).pipe(Effect.provide(Cache.layerMemory({ namespace: "ended" }))))

  it.scoped("with latencyMetrics, each operation is told with its duration and outcome", () =>
    Effect.gen(function*() {
      const events = yield* Cache.subscribe()
      yield* Rates.getOrSet("eur", Effect.succeed(1.1))
      yield* Effect.either(Users.get({ org: "acme\u0000", id: 1 }))
      const operations = Chunk.toArray(yield* Queue.takeAll(events)).filter(CacheEvent.$is("Operation"))
      assert.deepStrictEqual(operations.map(line), [
        "Operation rates produce ok",
        "Operation rates getOrSet ok",
        "Operation users get failed"
      ])
      for (const operation of operations) assert.isAtLeast(operation.durationMillis, 0)
    }).pipe(Effect.provide(Cache.layerMemory({ namespace: "timed", latencyMetrics: true }))))
})

describe("Cache.events: failures and the circuit", () => {
  it.scoped("absorbed store failures are told with their error, then the circuit opening", () =>
    Effect.gen(function*() {
      const events = yield* Cache.subscribe()
      for (let i = 0; i < 5; i++) {
        assert.strictEqual(yield* Rates.getOrSet("eur", Effect.succeed(1.1)), 1.1)
        yield* settled
      }
      const lines = yield* told(events)
      assert.include(lines, "Failure rates StoreError get")
      assert.include(lines, "Circuit store open")
      const stats = yield* Rates.stats
      assert.isAtLeast(stats.failures, 5)
      assert.strictEqual(stats.hits, 0)
    }).pipe(Effect.provide(cacheOver(failingStore, { namespace: "broken" }))))
})

describe("Cache.events with redactKeys", () => {
  /** A store whose reads fail naming their key, as a server's do. */
  const keyedFailures: CacheStore.CacheStore = {
    ...failingStore,
    get: (key) => Effect.fail(new CacheError.StoreError({ reason: "Unavailable", operation: "get", key, store: "broken", cause: "refused" }))
  }

  /** Every event told, checked for the key's parts in clear. */
  const noneInClear = (all: ReadonlyArray<CacheEvent.CacheEvent>) => {
    for (const event of all) {
      assert.notInclude(JSON.stringify(event), "secret-org", event._tag)
      assert.notInclude(JSON.stringify(event), "424242", event._tag)
    }
  }

  it.scoped("the circuit's detail quotes the failure with its key redacted", () =>
    Effect.gen(function*() {
      const events = yield* Cache.subscribe()
      for (let i = 0; i < 5; i++) yield* Effect.either(Users.get({ org: "secret-org", id: 424242 }))
      const all = Chunk.toArray(yield* Queue.takeAll(events))
      const circuit = all.find(CacheEvent.$is("Circuit"))
      assert.isDefined(circuit)
      assert.include(circuit!.detail, "redact:users:#")
      noneInClear(all)
    }).pipe(Effect.provide(cacheOver(keyedFailures, { namespace: "redact", redactKeys: true }))))

  it.scoped("InvalidateWhere's field values are digests", () =>
    Effect.gen(function*() {
      const events = yield* Cache.subscribe()
      yield* Users.set({ org: "secret-org", id: 424242 }, "Ada")
      yield* Users.invalidateWhere({ org: "secret-org" })
      const all = Chunk.toArray(yield* Queue.takeAll(events))
      const where = all.find(CacheEvent.$is("InvalidateWhere"))
      assert.match(String(where!.where["org"]), /^#[A-Za-z0-9_-]{16}$/)
      noneInClear(all)
    }).pipe(Effect.provide(Cache.layerMemory({ namespace: "redact", redactKeys: true }))))
})

describe("stats", () => {
  it.effect("per keyspace: hits, misses, ratio, writes, stale values and decode failures; zeros before any", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* Rates.stats, {
        keyspace: "rates",
        hits: 0,
        misses: 0,
        hitRatio: 0,
        staleServed: 0,
        decodeFailures: 0,
        writes: 0,
        failures: 0,
        refreshFailures: 0
      })
      yield* Rates.set("eur", 1.1)
      yield* Rates.get("eur")
      yield* Rates.get("eur")
      yield* Rates.get("usd")
      yield* Rates.getMany(["eur", "usd", "gbp"])
      yield* Users.getOrSet(user(1), Effect.succeed("Ada"))
      yield* TestClock.adjust("2 minutes")
      yield* Rates.getOrSet("eur", Effect.fail("down"))
      const rates = yield* Rates.stats
      assert.deepStrictEqual(rates, {
        keyspace: "rates",
        hits: 3,
        misses: 4,
        hitRatio: 3 / 7,
        staleServed: 1,
        decodeFailures: 0,
        writes: 1,
        failures: 0,
        refreshFailures: 0
      })
      const all = yield* Cache.stats
      assert.deepStrictEqual(all.map((stats) => stats.keyspace), ["rates", "users"])
      assert.deepStrictEqual(all[0], rates)
      assert.strictEqual(all[1]!.writes, 1)
      assert.strictEqual(all[1]!.misses, 1)
    }).pipe(Effect.provide(Cache.layerMemory({ namespace: "stats" }))))

  it.scoped("refreshEvery's failed runs count and are told as the eager refreshes' are", () =>
    Effect.gen(function*() {
      const events = yield* Cache.subscribe()
      yield* Layer.build(Rates.refreshEvery("eur", Effect.fail("rates service down"), "1 minute"))
      yield* TestClock.adjust("1 minute")
      const stats = yield* Rates.stats
      assert.isAtLeast(stats.refreshFailures, 1)
      const told = Chunk.toArray(yield* Queue.takeAll(events)).filter(CacheEvent.$is("RefreshFailure"))
      assert.strictEqual(told.length, stats.refreshFailures)
      assert.strictEqual(told[0]!.key, "refresh:rates:eur")
    }).pipe(Effect.provide(Cache.layerMemory({ namespace: "refresh" }))))

  it.effect("each cache counts its own: another cache's reads are not in its stats", () =>
    Effect.gen(function*() {
      yield* Rates.get("eur").pipe(Effect.provide(Cache.layerMemory({ namespace: "other" })))
      assert.strictEqual((yield* Rates.stats).misses, 0)
    }).pipe(Effect.provide(Cache.layerMemory({ namespace: "own" }))))
})

describe("on Redis", () => {
  const url = `${inject("redisUrl")}/40`

  it.scoped("getOrSet's write is told once the lock's release stored it; stats count it", () =>
    Effect.gen(function*() {
      yield* Cache.clear
      const events = yield* Cache.subscribe()
      assert.strictEqual(yield* Rates.getOrSet("eur", Effect.succeed(1.1)), 1.1)
      yield* settled
      assert.strictEqual(yield* Rates.getOrSet("eur", Effect.succeed(2)), 1.1)
      assert.deepStrictEqual(yield* told(events), [
        "Miss events-redis:rates:eur",
        "Write getOrSet events-redis:rates:eur",
        "Hit events-redis:rates:eur"
      ])
      const stats = yield* Rates.stats
      assert.strictEqual(stats.writes, 1)
      assert.strictEqual(stats.hitRatio, 0.5)
    }).pipe(Effect.provide(Cache.layerRedis({ url, namespace: "events-redis" }))))

  it.scoped("the two-layer cache: keyspaces in one tier tell their events and count in the cache's stats", () =>
    Effect.gen(function*() {
      const Local = Keyspace.make({ name: "local", key: CacheKey.string, value: Schema.String, tier: "local" })
      const Shared = Keyspace.make({ name: "shared", key: CacheKey.string, value: Schema.String, tier: "shared" })
      yield* Cache.clear
      const events = yield* Cache.subscribe()
      yield* Local.set("a", "1")
      yield* Local.get("a")
      yield* Shared.get("b")
      yield* Rates.get("c")
      const lines = yield* Effect.map(Queue.takeAll(events), (all) =>
        Chunk.toArray(all).map((event) => `${line(event)} on ${(event as CacheEvent.Origin).store}`))
      assert.deepStrictEqual(lines, [
        "Write set events-tiered:local:a on tiered-local",
        "Hit events-tiered:local:a on tiered-local",
        "Miss events-tiered:shared:b on redis",
        "Miss events-tiered:rates:c on tiered"
      ])
      const stats = yield* Cache.stats
      assert.deepStrictEqual(stats.map((s) => [s.keyspace, s.hits, s.misses, s.writes]), [
        ["local", 1, 0, 1],
        ["rates", 0, 1, 0],
        ["shared", 0, 1, 0]
      ])
    }).pipe(Effect.provide(Cache.layerTiered({ namespace: "events-tiered", redis: { url } }))))
})

describe("spans carry the key's digest", () => {
  it.effect("cache.key_hash: the digest redacted keys show, the same for one key; none on batches", () =>
    Effect.gen(function*() {
      const { spans } = yield* recorded(Effect.gen(function*() {
        yield* Users.set(user(1), "Ada")
        yield* Users.get(user(1))
        yield* Users.getOrSet(user(2), Effect.succeed("Bob"))
        yield* Users.getMany([user(1)])
      }))
      const hashes = spans.map((span) => span.attributes.get("cache.key_hash"))
      assert.deepStrictEqual(spans.map((span) => span.name), ["cache.set", "cache.get", "cache.getOrSet", "cache.produce", "cache.getMany"])
      assert.strictEqual(hashes[0], hashes[1])
      assert.match(String(hashes[0]), /^[A-Za-z0-9_-]{16}$/)
      assert.notStrictEqual(hashes[2], hashes[0])
      assert.isUndefined(hashes[3])
      assert.isUndefined(hashes[4])
      // The same digest as a redacted key's.
      const events = yield* Effect.scoped(Effect.gen(function*() {
        const queue = yield* Cache.subscribe()
        yield* Users.get(user(1))
        return Chunk.toArray(yield* Queue.takeAll(queue))
      })).pipe(Effect.provide(Cache.layerMemory({ namespace: "digests", redactKeys: true })))
      const redacted = (events[0] as CacheEvent.CacheEvent & { readonly key: string }).key
      assert.strictEqual(redacted, `digests:users:#${hashes[1]}`)
    }).pipe(Effect.provide(Cache.layerMemory({ namespace: "digests", spans: true }))))
})

describe("the README's examples", () => {
  it.effect("Events and Stats, as written there", () =>
    Effect.gen(function*() {
      // ---- as in the README ----
      const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: Schema.String })

      const told = Effect.scoped(Effect.gen(function*() {
        const events = yield* Cache.subscribe()
        yield* Users.getOrSet(1, Effect.succeed("Ada"))
        return yield* Queue.takeAll(events) // Miss cache:users:1, Write getOrSet cache:users:1
      })).pipe(Effect.provide(Cache.layerMemory()))

      const ratio = Effect.gen(function*() {
        yield* Users.set(1, "Ada")
        yield* Users.get(1)
        yield* Users.get(2)
        return (yield* Users.stats).hitRatio // 0.5
      }).pipe(Effect.provide(Cache.layerMemory()))
      // ---- end ----
      assert.deepStrictEqual(Chunk.toArray(yield* told).map(line), ["Miss cache:users:1", "Write getOrSet cache:users:1"])
      assert.strictEqual(yield* ratio, 0.5)
    }))

  it.scoped("logMisses runs beside the program and logs each miss", () =>
    Effect.gen(function*() {
      const logged: Array<unknown> = []
      const logger = Logger.make(({ message }) => logged.push(message))
      // ---- as in the README ----
      const logMisses = Cache.events.pipe(
        Stream.filter(CacheEvent.$is("Miss")),
        Stream.runForEach((miss) => Effect.logDebug(`cache miss ${miss.key}`))
      )
      // ---- end ----
      yield* Effect.forkScoped(logMisses.pipe(Logger.withMinimumLogLevel(LogLevel.Debug), Effect.provide(Logger.replace(Logger.defaultLogger, logger))))
      while (logged.length === 0) {
        yield* Rates.get("eur")
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 1)))
      }
      assert.deepStrictEqual(logged[0], ["cache miss cache:rates:eur"])
    }).pipe(Effect.provide(Cache.layerMemory())))
})
