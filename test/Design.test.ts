/**
 * The README's quick start and the parts of DESIGN.md's "What a user writes" example that the library
 * covers so far, as written, compiled and run: in memory, on the test Redis, and from configuration
 * read through a ConfigProvider (never the real environment). Each later capability (grace and
 * timeouts, tags, getOrSetMany, the tiered layer, warm-up and refresh) adds its lines here; every
 * line of the example now runs (the HTTP middleware has a file of its own).
 */
import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { inject } from "vitest"
import { Config, ConfigProvider, Data, Effect, Layer, Option, Ref, Schema } from "effect"
import { HttpApp, HttpRouter, type HttpServerError, HttpServerResponse } from "@effect/platform"
import { Cache, type CacheError, CacheKey, HttpCache, Keyspace, RecordingStore } from "../src/index.js"
import { assertSame } from "./utils.js"

/** Runs `self` with configuration read from `entries` only. */
const withConfig = (entries: Record<string, string>) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.withConfigProvider(self, ConfigProvider.fromMap(new Map(Object.entries(entries))))

describe("the README quick start", () => {
  class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
  class FetchError extends Data.TaggedError("FetchError")<{ readonly id: number }> {}
  const AppConfig = Schema.Struct({ featureX: Schema.Boolean })

  it.effect("compiles and behaves as written", () =>
    Effect.gen(function*() {
      const fetches = yield* Ref.make(0)
      const configLoads = yield* Ref.make(0)
      const fetchUser = (id: number): Effect.Effect<User, FetchError> =>
        id < 0 ? Effect.fail(new FetchError({ id })) : Effect.as(Ref.update(fetches, (n) => n + 1), new User({ id, name: id === 2 ? "Bob" : "?" }))
      const loadConfig = Effect.as(Ref.update(configLoads, (n) => n + 1), { featureX: true })

      // ---- as in the README ----
      const Users = Keyspace.make({
        name: "users",
        key: CacheKey.number,            // K = number, stored as "<namespace>:users:<id>"
        value: User,                     // any Schema<A, I>; JSON by default, or serializer: CacheSerializer.msgpack
        ttl: "10 minutes",
      })

      const program = Effect.gen(function* () {
        yield* Users.set(1, new User({ id: 1, name: "Ada" }))
        const ada = yield* Users.get(1)                         // Option<User>
        const bob = yield* Users.getOrSet(2, fetchUser(2))      // User; fetchUser runs at most once at a time
        yield* Users.invalidate(1)
        return { ada, bob }
      })

      // Memoize any effect or effectful function through the cache in context.
      const getUser = Users.memoize(fetchUser)                  // (id: number) => Effect<User, FetchError, Cache>
      const config = loadConfig.pipe(Cache.memoize({ key: "config", value: AppConfig, ttl: "1 minute" }))

      // Pick the backend by providing a layer; tests provide a different one.
      const memory = program.pipe(Effect.provide(Cache.layerMemory({ capacity: 10_000 })))
      const redis = program.pipe(Effect.provide(Cache.layerRedis({ url: "redis://127.0.0.1:6379" })))
      const fromEnv = program.pipe(Effect.provide(Cache.layerFromEnv))  // CACHE_ENABLED, CACHE_REDIS_URL, ...
      // ---- end of the example ----

      const { ada, bob } = yield* memory
      assertSame(ada, Option.some(new User({ id: 1, name: "Ada" })))
      assert.strictEqual(bob.name, "Bob")
      assert.strictEqual(yield* Ref.get(fetches), 1)

      // From configuration: in memory without a URL, on Redis with one.
      const inMemory = yield* fromEnv.pipe(withConfig({ CACHE_NAMESPACE: "design-env" }))
      assert.strictEqual(inMemory.bob.name, "Bob")
      const url = `${inject("redisUrl")}/20`
      const onRedisFromEnv = yield* fromEnv.pipe(withConfig({ CACHE_NAMESPACE: "design-env", CACHE_REDIS_URL: url }))
      assertSame(onRedisFromEnv.ada, Option.some(new User({ id: 1, name: "Ada" })))
      // The example's URL names the default port; here it runs against the test server.
      const onRedis = yield* program.pipe(Effect.provide(Cache.layerRedis({ url, namespace: "design" })))
      assert.strictEqual(onRedis.bob.name, "Bob")
      void redis // the example's own line, typechecked; running it needs a Redis on the default port

      const typed: (id: number) => Effect.Effect<User, FetchError, Cache.Cache> = getUser
      yield* Effect.gen(function*() {
        const before = yield* Ref.get(fetches)
        yield* typed(3)
        yield* typed(3)
        assert.strictEqual((yield* Ref.get(fetches)) - before, 1, "memoized: id 3 fetched once")
        const failure = yield* Effect.flip(typed(-1))
        assert.strictEqual(failure._tag, "FetchError")
        yield* config
        yield* config
        assert.strictEqual(yield* Ref.get(configLoads), 1)
      }).pipe(Effect.provide(Layer.fresh(Cache.layerMemory({ capacity: 10_000 }))))
    }))
})

describe("DESIGN.md's example, the parts built so far", () => {
  class FetchError extends Schema.TaggedError<FetchError>()("FetchError", {}) {}
  class User extends Schema.Class<User>("User")({ id: Schema.Number, org: Schema.String, name: Schema.String }) {}
  const AppConfig: Schema.Schema<{ readonly flags: ReadonlyArray<string> }> = Schema.Struct({ flags: Schema.Array(Schema.String) })

  it.effect("compiles and behaves as written", () =>
    Effect.gen(function*() {
      const fetched: Array<number> = []
      const fetchUser = (id: number): Effect.Effect<User, FetchError> =>
        Effect.sync(() => {
          fetched.push(id)
          return new User({ id, org: "acme", name: id === 2 ? "Bob" : `user ${id}` })
        })
      const batches: Array<ReadonlyArray<number>> = []
      // The source has no user 3.
      const fetchUsers = (ids: ReadonlyArray<number>): Effect.Effect<Iterable<readonly [number, User]>, FetchError> =>
        Effect.sync(() => {
          batches.push([...ids])
          return ids.filter((id) => id !== 3).map((id) => [id, new User({ id, org: "acme", name: `user ${id}` })] as const)
        })
      const fetchRate = (_currency: string): Effect.Effect<number> => Effect.succeed(1.08)
      let configLoads = 0
      const loadConfig: Effect.Effect<typeof AppConfig.Type> = Effect.sync(() => {
        configLoads++
        return { flags: ["x"] }
      })

      // ---- as in DESIGN.md ----
      const Users = Keyspace.make({
        name: "users",
        key: CacheKey.number,                  // stored as "<namespace>:users:<id>"
        value: User,                           // any Schema<A, I>; the default serializer carries bytes too
        ttl: "10 minutes",
        grace: "1 hour",                       // serve stale when the producer fails or is slow
        softTimeout: "100 millis",             // with a stale value: answer it after this, finish in background
        hardTimeout: "5 seconds",              // give up on the producer
        eagerRefresh: 0.8,                     // after 80% of ttl a hit refreshes in background
        tags: (_id, user) => [`org:${user.org}`],
      })

      const program = Effect.gen(function* () {
        yield* Users.set(1, new User({ id: 1, org: "acme", name: "Ada" }))
        const ada = yield* Users.get(1)                        // Option<User>
        const bob = yield* Users.getOrSet(2, fetchUser(2))     // one producer at a time, fleet-wide
        yield* Users.invalidate(1)
        yield* Cache.invalidateTags(["org:acme"])              // O(1) round trips, however many entries
        return [ada, bob] as const
      })

      // Users has a hardTimeout, so its producers may also fail with CacheError.ProducerTimeoutError.
      const getUser = Users.memoize(fetchUser)                 // (id: number) => Effect<User, FetchError | ProducerTimeoutError, Cache>

      // Batch: one MGET; only the missing ids reach the producer, once; results in key order
      // (None where the producer returned nothing for a key).
      const some = Users.getOrSetMany([1, 2, 3], fetchUsers)   // Effect<Array<Option<User>>, FetchError | ProducerTimeoutError, Cache>
      const config = loadConfig.pipe(Cache.memoize({ key: "config", value: AppConfig, ttl: "1 minute" }))

      // The backend is a layer; tests provide another.
      const layers = [
        Cache.layerMemory({ capacity: 10_000 }),
        Cache.layerRedis({ url: "redis://127.0.0.1:6379" }),
        Cache.layerTiered({ l1: { capacity: 1_000 }, redis: { url: "redis://127.0.0.1:6379" } }), // L1 + L2 + bus
        Cache.layerConfig({ namespace: Config.string("APP_CACHE_NAMESPACE"), redis: { url: Config.redacted("APP_REDIS_URL") } }),
                                                                // Effect's convention: Config.Wrap<Options>
        Cache.layerFromEnv                                      // CACHE_ENABLED, CACHE_REDIS_URL, CACHE_TIER, ...
      ] as const

      // Background work is a layer too: it lives and stops with the program's scope.
      const Warm = Users.warmUp([1, 2, 3], fetchUser, { timeout: "10 seconds" })   // Layer, bounded start
      const Rates = Keyspace.make({ name: "rates", key: CacheKey.string, value: Schema.Number, ttl: "10 minutes" })
      const RatesRefresh = Rates.refreshEvery("EUR", fetchRate("EUR"), "5 minutes")  // once per fleet per period
      // ---- end of the example ----

      expectTypeOf(getUser).toEqualTypeOf<(id: number) => Effect.Effect<User, FetchError | CacheError.ProducerTimeoutError, Cache.Cache>>()
      expectTypeOf(some).toEqualTypeOf<Effect.Effect<Array<Option.Option<User>>, FetchError | CacheError.ProducerTimeoutError, Cache.Cache>>()

      // The batch, with user 1 cached: one batch read of the store, ids 2 and 3 asked once, in one call,
      // results in key order, None for 3; a second run reads the cache only.
      yield* Effect.gen(function*() {
        const recording = yield* RecordingStore.RecordingStore
        yield* Users.set(1, new User({ id: 1, org: "acme", name: "Ada" }))
        yield* recording.reset
        const found = yield* some
        assertSame(found, [
          Option.some(new User({ id: 1, org: "acme", name: "Ada" })),
          Option.some(new User({ id: 2, org: "acme", name: "user 2" })),
          Option.none()
        ])
        assert.deepStrictEqual(batches, [[2, 3]])
        const reads = (yield* recording.operations).filter((op) => op.operation === "getMany" || op.operation === "get")
        assert.deepStrictEqual(reads[0], { operation: "getMany", keys: ["cache:users:1", "cache:users:2", "cache:users:3"], at: reads[0]!.at })
        for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
        assertSame((yield* some)[1], Option.some(new User({ id: 2, org: "acme", name: "user 2" })))
        assert.deepStrictEqual(batches, [[2, 3], [3]], "only the id the source has not got is asked again")
      }).pipe(Effect.provide(Cache.layer().pipe(Layer.provideMerge(RecordingStore.layer()))))
      const [[ada, bob], bobAfter] = yield* Effect.all([program, Users.get(2)]).pipe(Effect.provide(layers[0]))
      assertSame(ada, Option.some(new User({ id: 1, org: "acme", name: "Ada" })))
      assert.strictEqual(bob.name, "Bob")
      assertSame(bobAfter, Option.none(), "the tag invalidation dropped Bob, cached by getOrSet under org:acme")

      // layerConfig, with both settings read through the ConfigProvider: the Redis URL is a secret.
      const url = `${inject("redisUrl")}/21`
      const [onRedis] = yield* program.pipe(
        Effect.provide(layers[3]),
        withConfig({ APP_CACHE_NAMESPACE: "design-config", APP_REDIS_URL: url })
      )
      assertSame(onRedis, Option.some(new User({ id: 1, org: "acme", name: "Ada" })))
      const missing = yield* Effect.exit(program.pipe(Effect.provide(layers[3]), withConfig({})))
      assert.isTrue(missing._tag === "Failure", "a missing setting fails the layer, it does not fall back")
      void layers[1] // typechecked; running it (and layers[2]) needs a Redis on the default port

      // The two-layer cache, as written but on the test server, and from the environment (CACHE_TIER).
      const tieredUrl = `${inject("redisUrl")}/23`
      const [tieredAda, tieredBob] = yield* program.pipe(
        Effect.provide(Cache.layerTiered({ namespace: "design-tiered", l1: { capacity: 1_000 }, redis: { url: tieredUrl } }))
      )
      assertSame(tieredAda, Option.some(new User({ id: 1, org: "acme", name: "Ada" })))
      assert.strictEqual(tieredBob.name, "Bob")
      const storeName = yield* Effect.map(Cache.Cache, (cache) => cache.store.name).pipe(
        Effect.provide(layers[4]),
        withConfig({ CACHE_NAMESPACE: "design-env", CACHE_REDIS_URL: tieredUrl, CACHE_TIER: "tiered" })
      )
      assert.strictEqual(storeName, "tiered")

      // Warm-up and refresh, on a cache of their own.
      yield* Effect.gen(function*() {
        const before = fetched.length
        assert.strictEqual((yield* Users.getOrSet(2, fetchUser(2))).name, "Bob", "warmed up: no fetch")
        assert.deepStrictEqual(fetched.slice(before), [])
        assertSame(yield* Rates.get("EUR"), Option.some(1.08))
      }).pipe(Effect.provide(Layer.mergeAll(Warm, RatesRefresh).pipe(Layer.provideMerge(Cache.layerMemory()))))

      yield* Effect.gen(function*() {
        const before = fetched.length
        assert.strictEqual((yield* getUser(5)).name, "user 5")
        assert.strictEqual((yield* getUser(5)).name, "user 5")
        assert.strictEqual(fetched.length - before, 1)
        assert.deepStrictEqual(yield* config, { flags: ["x"] })
        assert.deepStrictEqual(yield* config, { flags: ["x"] })
        assert.strictEqual(configLoads, 1)
        // The memoized config lives at "<namespace>:config": a keyspace named "config" never meets it.
        const Configs = Keyspace.make({ name: "config", key: CacheKey.string, value: Schema.String })
        yield* Configs.set("", "a keyspace entry")
        assert.strictEqual(yield* Configs.clear, 1)
        assert.deepStrictEqual(yield* config, { flags: ["x"] })
        assert.strictEqual(configLoads, 1, "clearing the keyspace left the memoized value alone")
      }).pipe(Effect.provide(layers[4]), withConfig({ CACHE_NAMESPACE: "design-env" }))
    }))
})

describe("DESIGN.md's HTTP example", () => {
  it.effect("compiles and behaves as written: the second request is a hit, the cache in the app's requirements", () =>
    Effect.gen(function*() {
      // ---- as in DESIGN.md ----
      const app = HttpRouter.empty.pipe(
        HttpRouter.get("/products", Effect.succeed(HttpServerResponse.text("...", { headers: { "cache-control": "public, max-age=60" } }))),
        HttpCache.middleware({ defaultTtl: "1 minute" })  // RFC 9111 rules, ETag/304, Vary, Cache-Status; adds Cache to R
      )
      // ---- end of the example ----

      expectTypeOf(app).toEqualTypeOf<HttpApp.Default<HttpServerError.RouteNotFound, Cache.Cache>>()
      const handler = HttpApp.toWebHandlerRuntime(yield* Effect.runtime<Cache.Cache>())(app)
      const get = () => Effect.promise(async () => {
        const response = await handler(new Request("http://shop.test/products"))
        return { body: await response.text(), status: response.headers.get("cache-status") }
      })
      const first = yield* get()
      yield* Effect.flatMap(Cache.Cache, (cache) => Effect.repeat(cache.inFlight, { until: (n) => n === 0 }))
      const second = yield* get()
      assert.deepStrictEqual([first.body, second.body], ["...", "..."])
      assert.strictEqual(first.status, "effect-cachekit; fwd=uri-miss; fwd-status=200; ttl=60; stored")
      assert.strictEqual(second.status, "effect-cachekit; hit; ttl=60")
    }).pipe(Effect.provide(Cache.layerMemory())))
})

describe("the README's HTTP example", () => {
  it.effect("compiles and behaves as written: the request-scoped lookup once, the response stored, a 304 for its ETag", () =>
    Effect.gen(function*() {
      let loads = 0
      const loadPrice = (_sku: string): Effect.Effect<number> => Effect.sync(() => ++loads)

      // ---- as in the README ----
      // Looked up once per request, however many handlers ask (the request-scoped cache).
      const Prices = Keyspace.make({ name: "prices", key: CacheKey.string, value: Schema.Number, cache: HttpCache.RequestCache })

      const app = HttpRouter.empty.pipe(
        HttpRouter.get("/products", Effect.map(Prices.getOrSet("tea", loadPrice("tea")), (price) =>
          HttpServerResponse.unsafeJson({ tea: price }, {
            headers: { "cache-control": "public, max-age=60, stale-while-revalidate=30, stale-if-error=600", etag: "\"v1\"" }
          }))),
        HttpCache.requestScoped({ capacity: 100 }),   // removes HttpCache.RequestCache from the requirements
        HttpCache.middleware({ defaultTtl: "1 minute", maxBodyBytes: 1024 * 1024 }) // adds Cache.Cache
      )
      // ---- end of the example ----

      expectTypeOf(app).toEqualTypeOf<HttpApp.Default<HttpServerError.RouteNotFound, Cache.Cache>>()
      const handler = HttpApp.toWebHandlerRuntime(yield* Effect.runtime<Cache.Cache>())(app)
      const get = (headers: Record<string, string> = {}) => Effect.promise(async () => {
        const response = await handler(new Request("http://shop.test/products", { headers }))
        return { status: response.status, body: await response.text() }
      })
      assert.deepStrictEqual(yield* get(), { status: 200, body: "{\"tea\":1}" })
      yield* Effect.flatMap(Cache.Cache, (cache) => Effect.repeat(cache.inFlight, { until: (n) => n === 0 }))
      assert.deepStrictEqual(yield* get(), { status: 200, body: "{\"tea\":1}" })
      assert.deepStrictEqual(yield* get({ "if-none-match": "\"v1\"" }), { status: 304, body: "" })
      assert.strictEqual(loads, 1)
    }).pipe(Effect.provide(Cache.layerMemory())))
})
