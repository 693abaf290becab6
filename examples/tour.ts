/**
 * A tour of effect-cachekit on the embedded in-memory default: `npm start`.
 *
 * It uses `Cache.layerFromEnv`, so the environment picks the backend (`CACHE_ENABLED`, `CACHE_NAMESPACE`,
 * `CACHE_MEMORY_CAPACITY`, ...). With `CACHE_REDIS_URL` set it runs on Redis and adds a stampede across
 * 4 processes: `CACHE_REDIS_URL=redis://127.0.0.1:6379 npm start` (add `CACHE_TIER=tiered` for the two-layer
 * cache).
 */
import { Console, Duration, Effect, Option, Ref, Schema } from "effect"
import { Cache, CacheKey, Keyspace } from "../src/index.js"
import { runFleet } from "./fleet.js"

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}

const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User, ttl: "10 minutes" })
const Sessions = Keyspace.make({ name: "sessions", key: CacheKey.string, value: Schema.String, ttl: "300 millis" })

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    const value = yield* effect
    return { value, millis: performance.now() - start }
  })

const ms = (millis: number) => millis < 1 ? `${(millis * 1000).toFixed(0)} µs` : `${millis.toFixed(1)} ms`

const tour = Effect.gen(function*() {
  const cache = yield* Cache.Cache
  const rows: Array<[string, string]> = []
  // A shared store may hold a previous run's entries: start cold.
  yield* Users.clear
  yield* Sessions.clear

  // 1. A memoized slow function: the cold call pays the producer, the warm one reads the cache.
  const lookups = yield* Ref.make(0)
  const slowLookup = (id: number) =>
    Ref.update(lookups, (n) => n + 1).pipe(
      Effect.zipRight(Effect.sleep("120 millis")),
      Effect.as(new User({ id, name: `user ${id}` }))
    )
  const getUser = Users.memoize(slowLookup)
  const cold = yield* timed(getUser(1))
  const warm = yield* timed(Effect.repeatN(getUser(1), 999))
  const warmEach = warm.millis / 1_000
  rows.push(["memoized slow function (120 ms), cold call", ms(cold.millis)])
  rows.push([
    "same call, warm (mean of 1,000)",
    `${ms(warmEach)} (${Math.round(cold.millis / warmEach).toLocaleString("en")}× faster), producer ran ${yield* Ref.get(lookups)}×`
  ])

  // 2. A stampede: 1,000 concurrent callers of one cold key share one producer run.
  const produced = yield* Ref.make(0)
  const producer = Ref.update(produced, (n) => n + 1).pipe(
    Effect.zipRight(Effect.sleep("50 millis")),
    Effect.as(new User({ id: 2, name: "Bob" }))
  )
  const stampede = yield* timed(
    Effect.all(Array.from({ length: 1_000 }, () => Users.getOrSet(2, producer)), { concurrency: "unbounded" })
  )
  const sameValue = stampede.value.every((user) => user.name === "Bob")
  rows.push([
    "1,000 concurrent getOrSet on one cold key",
    `producer ran ${yield* Ref.get(produced)}×, ${sameValue ? "all got the same value" : "VALUES DIFFER"}, ${
      ms(stampede.millis)
    }`
  ])

  // 3. Expiry: an entry with a 300 ms time to live.
  yield* Sessions.set("s-1", "token")
  const before = yield* Sessions.get("s-1")
  yield* Effect.sleep(Duration.millis(350))
  const after = yield* Sessions.get("s-1")
  rows.push([
    "entry with a 300 ms ttl",
    `${Option.isSome(before) ? "present" : "missing"} at once, ${Option.isSome(after) ? "still present" : "gone"} after 350 ms`
  ])

  // 4. Corruption: bytes no schema wrote are a miss, dropped, then healed by the next getOrSet.
  yield* cache.store.set(`${cache.namespace}:users:3`, new TextEncoder().encode("{\"id\": \"not a number\""), undefined)
  const corrupt = yield* Users.get(3)
  const stillThere = yield* cache.store.has(`${cache.namespace}:users:3`)
  const healed = yield* Users.getOrSet(3, Effect.succeed(new User({ id: 3, name: "Cyd" })))
  const reread = yield* Users.get(3)
  rows.push([
    "corrupt stored value",
    `read as ${Option.isNone(corrupt) ? "a miss" : "A VALUE"}, entry ${stillThere ? "KEPT" : "dropped"}, healed to "${healed.name}" (${
      Option.isSome(reread) ? "cached again" : "NOT CACHED"
    })`
  ])

  // 5. On Redis: 4 processes × 250 callers on one cold key, coordinated by the distributed lock; on the
  // two-layer cache (CACHE_TIER=tiered), every process ends with the value in its memory.
  const redisUrl = process.env.CACHE_REDIS_URL
  const tiered = cache.store.name === "tiered"
  if ((cache.store.name === "redis" || tiered) && redisUrl !== undefined) {
    const fleet = yield* Effect.promise(() =>
      runFleet(4, {
        url: redisUrl,
        namespace: `${cache.namespace}-tour`,
        key: `stampede-${Date.now()}`,
        callers: 250,
        producerMillis: 50,
        leaseMillis: 10_000,
        tier: tiered ? "tiered" : "redis"
      })
    )
    const inMemory = fleet.outputs.filter((output) => output.inMemory === true).length
    rows.push([
      "4 processes × 250 callers on one cold key",
      `producer ran ${fleet.runs}× in total, ${
        fleet.distinctValues === 1 ? `all ${fleet.callers.toLocaleString("en")} got the same value` : "VALUES DIFFER"
      }, last caller ${fleet.lastWaiterMillis} ms after the producer finished${
        tiered ? `; the value is in the memory of ${inMemory} of 4 processes` : ""
      }`
    ])
  }

  const width = Math.max(...rows.map(([label]) => label.length))
  yield* Console.log(`effect-cachekit tour — store: ${cache.store.name}, namespace: ${cache.namespace}\n`)
  for (const [label, result] of rows) yield* Console.log(`  ${label.padEnd(width)}  ${result}`)
})

Effect.runPromise(tour.pipe(Effect.provide(Cache.layerFromEnv))).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
