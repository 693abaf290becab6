/**
 * One process of a fleet: `callers` concurrent getOrSet on one cold key through Cache.layerRedis. The
 * producer counts its runs in Redis (INCR `runs:<key>`), waits `producerMillis`, and returns who
 * produced the value and when it finished.
 *
 * argv: redisUrl namespace key callers producerMillis leaseMillis (0: the default lease) [tier: redis
 * (default) or tiered, Cache.layerTiered, whose report says whether the value ended in this process's
 * memory]. Runs one stampede on another key (`<key>-warm-up`), then prints "ready", starts
 * when a line arrives on standard input (so a fleet starts together), then prints one JSON line with
 * the producer runs counted so far in the whole fleet.
 */
import { Effect, Schema } from "effect"
import { Cache, CacheKey, Keyspace, Redis } from "../src/index.js"

const [url, namespace, key, callers, producerMillis, leaseMillis, tier] = process.argv.slice(2)

const Produced = Schema.Struct({ by: Schema.Number, finishedAt: Schema.Number })
const Values = Keyspace.make({ name: "stampede", key: CacheKey.string, value: Produced, ttl: "1 minute" })

const cacheOnRedis = (options: Cache.TieredOptions) => Cache.layerRedis({ ...options, ...options.redis })

const go = Effect.async<void>((resume) => {
  process.stdin.once("data", () => resume(Effect.void))
  process.stdout.write("ready\n")
})

const program = Effect.gen(function*() {
  const redis = yield* Redis.Redis
  const producing = (counted: string, millis: number) =>
    Effect.promise(() => redis.client.incr(`runs:${counted}`)).pipe(
      Effect.zipRight(Effect.sleep(millis)),
      Effect.map(() => ({ by: process.pid, finishedAt: Date.now() }))
    )
  const produce = producing(key!, Number(producerMillis))
  // One short stampede on another key first, so the fleet meets the measured one warm (compiled
  // code, connections), as a long-running service would.
  const warmUp = `${key}-warm-up`
  const warmProduce = producing(warmUp, Math.min(Number(producerMillis), 20))
  yield* Effect.all(Array.from({ length: Number(callers) }, () => Values.getOrSet(warmUp, warmProduce, { lockTimeout: "30 seconds" })), {
    concurrency: "unbounded"
  })
  const cache = yield* Cache.Cache
  for (let i = 0; i < 100 && (yield* cache.inFlight) > 0; i++) yield* Effect.sleep(10)
  yield* go
  const startedAt = Date.now()
  const results = yield* Effect.all(
    Array.from({ length: Number(callers) }, () =>
      Effect.map(Values.getOrSet(key!, produce, { lockTimeout: "30 seconds" }), (value) => ({ value, returnedAt: Date.now() }))),
    { concurrency: "unbounded" }
  )
  const runs = Number(yield* Effect.promise(() => redis.client.get(`runs:${key}`)))
  // A two-layer cache: is the value in this process's memory, served without asking Redis? (Once the
  // run has finished storing it: callers get the value before the write and the lock's release.)
  for (let i = 0; i < 100 && (yield* cache.inFlight) > 0; i++) yield* Effect.sleep(10)
  const store = cache.store
  const inMemory = store.getNow?.(`${namespace}:stampede:${key}`, Date.now()) !== undefined
  process.stdout.write(`${JSON.stringify({ pid: process.pid, startedAt, runs, results, inMemory })}\n`)
}).pipe(
  // A lease of 0 keeps the cache's default lease.
  Effect.provide((tier === "tiered" ? Cache.layerTiered : cacheOnRedis)({
    namespace: namespace!,
    redis: { url: url! },
    ...(Number(leaseMillis) > 0 ? { lock: { lease: `${Number(leaseMillis)} millis` } } : {})
  }))
)

Effect.runPromise(program).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
