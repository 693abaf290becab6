/**
 * The DESIGN.md "What a user writes" example, as written, compiled and run (against the test Redis for
 * `layerRedis`). `layerTiered` joins this test with the tiered store.
 */
import { assert, it } from "@effect/vitest"
import { inject } from "vitest"
import { Data, Effect, Layer, Option, Ref, Schema } from "effect"
import { Cache, CacheKey, Keyspace } from "../src/index.js"

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
class FetchError extends Data.TaggedError("FetchError")<{ readonly id: number }> {}
const AppConfig = Schema.Struct({ featureX: Schema.Boolean })

it.effect("the DESIGN.md example compiles and behaves as written", () =>
  Effect.gen(function*() {
    const fetches = yield* Ref.make(0)
    const configLoads = yield* Ref.make(0)
    const fetchUser = (id: number): Effect.Effect<User, FetchError> =>
      id < 0 ? Effect.fail(new FetchError({ id })) : Effect.as(Ref.update(fetches, (n) => n + 1), new User({ id, name: id === 2 ? "Bob" : "?" }))
    const loadConfig = Effect.as(Ref.update(configLoads, (n) => n + 1), { featureX: true })

    // ---- as in DESIGN.md ----
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
    const getUser = Users.memoize(fetchUser)                  // (id: number) => Effect<User, FetchError, Cache | R>
    const config = loadConfig.pipe(Cache.memoize({ key: "config", value: AppConfig, ttl: "1 minute" }))

    // Pick the backend by providing a layer; tests provide a different one.
    const url = `${inject("redisUrl")}/20`
    const memory = program.pipe(Effect.provide(Cache.layerMemory({ capacity: 10_000 })))
    const redis = program.pipe(Effect.provide(Cache.layerRedis({ url: "redis://127.0.0.1:6379" })))
    const fromEnv = program.pipe(Effect.provide(Cache.layerConfig))           // from env: CACHE_ENABLED, CACHE_REDIS_URL, ...
    // ---- end of the example ----

    const { ada, bob } = yield* memory
    assert.deepStrictEqual(ada, Option.some(new User({ id: 1, name: "Ada" })))
    assert.strictEqual(bob.name, "Bob")
    assert.strictEqual(yield* Ref.get(fetches), 1)
    yield* fromEnv
    // The example's URL names the default port; here it runs against the test server.
    const onRedis = yield* program.pipe(Effect.provide(Cache.layerRedis({ url, namespace: "design" })))
    assert.strictEqual(onRedis.bob.name, "Bob")
    assert.deepStrictEqual(onRedis.ada, Option.some(new User({ id: 1, name: "Ada" })))
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
