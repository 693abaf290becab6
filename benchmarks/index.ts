/**
 * effect-cachekit side by side with its peers: `npm run bench` (or `npm run bench -- --quick`).
 *
 * Each case runs every contender in several interleaved rounds (mitata measures one round of one
 * contender); a table gives the median ops/s and the ratio to the case's reference row. The same
 * tables go to benchmarks/RESULTS.md with the date, the Node version and the machine.
 *
 * `npm run bench` compiles the project with tsc and runs the compiled JavaScript with plain node, as a
 * user's build would (a TypeScript loader would wrap every function of ours, and none of the peers').
 * The tiered case joins with the tiered store.
 */
import { cachified, type Cache as CachifiedCache, type CacheEntry, totalTtl } from "@epic-web/cachified"
import { BentoCache, bentostore } from "bentocache"
import { memoryDriver } from "bentocache/drivers/memory"
import { createCache } from "cache-manager"
import * as PersistedCache from "@effect/experimental/PersistedCache"
import * as Persistence from "@effect/experimental/Persistence"
import { Cache as EffectCache, Context, Duration, Effect, ManagedRuntime, PrimaryKey, Schema, Scope } from "effect"
import { LRUCache } from "lru-cache"
import { do_not_optimize } from "mitata"
import { Cache, CacheKey, Keyspace } from "../src/index.js"
import {
  BATCH,
  HEAP_ENTRIES,
  heapLines,
  type HeapRow,
  heapTitle,
  KEYS,
  measureHeap,
  type Result,
  runCase,
  selected,
  value,
  writeResults
} from "./harness.js"
import { httpCases } from "./http.js"
import { redisCases } from "./redis.js"

// ---------------------------------------------------------------------------------------------------
// Contenders

const User = Schema.Struct({ id: Schema.Number, name: Schema.String })
type User = typeof User.Type
const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User, ttl: "1 hour" })

/** A runtime holding our cache, so per-call runs do not rebuild the layer. */
const makeOurs = async (options: { readonly spans?: boolean; readonly latencyMetrics?: boolean } = {}) => {
  const runtime = ManagedRuntime.make(Cache.layerMemory({ capacity: 10_000, ...options }))
  await runtime.runPromise(Effect.forEach(Array.from({ length: KEYS }, (_, i) => i), (i) => Users.set(i, value(i))))
  return runtime
}

class Lru extends Context.Tag("bench/Lru")<Lru, LRUCache<number, User>>() {}

/** A PersistedCache key: a request with a primary key, as @effect/experimental requires. */
class GetUser extends Schema.TaggedRequest<GetUser>()("GetUser", {
  failure: Schema.String,
  success: User,
  payload: { id: Schema.Number }
}) {
  [PrimaryKey.symbol]() {
    return `user-${this.id}`
  }
}

/** A PersistedCache over in-memory result persistence, kept warm for the hit cases. */
const makePersisted = async () => {
  const runtime = ManagedRuntime.make(Persistence.layerResultMemory)
  const cache = await runtime.runPromise(
    PersistedCache.make<GetUser, never>({
      storeId: "users",
      lookup: (request: GetUser) => Effect.succeed(value(request.id)),
      timeToLive: () => "1 hour",
      inMemoryCapacity: 10_000,
      inMemoryTTL: "1 hour"
    }).pipe(Effect.provideService(Scope.Scope, await runtime.runPromise(Scope.make())))
  )
  return { runtime, cache }
}

const main = async () => {
  const map = new Map<number, User>()
  const lru = new LRUCache<number, User>({ max: 10_000, ttl: 3_600_000 })
  for (let i = 0; i < KEYS; i++) {
    map.set(i, value(i))
    lru.set(i, value(i))
  }
  const ours = await makeOurs()
  const runOurs = <A, E>(effect: Effect.Effect<A, E, Cache.Cache>) => ours.runPromise(effect)
  // The observability options' cost on the same hit (both are off by default).
  const timed = await makeOurs({ latencyMetrics: true })
  const traced = await makeOurs({ spans: true })

  const effectCache = await Effect.runPromise(
    EffectCache.make({ capacity: 10_000, timeToLive: Duration.hours(1), lookup: (i: number) => Effect.succeed(value(i)) })
  )
  await Effect.runPromise(Effect.forEach(Array.from({ length: KEYS }, (_, i) => i), (i) => effectCache.get(i)))

  const bento = new BentoCache({
    default: "memory",
    stores: { memory: bentostore().useL1Layer(memoryDriver({ maxItems: 10_000 })) }
  })
  for (let i = 0; i < KEYS; i++) await bento.set({ key: String(i), value: value(i), ttl: "1h" })

  const manager = createCache({ ttl: 3_600_000 })
  for (let i = 0; i < KEYS; i++) await manager.set(String(i), value(i))

  const cachifiedStore = new LRUCache<string, CacheEntry>({ max: 10_000 })
  const cachifiedCache: CachifiedCache = {
    get: (key) => cachifiedStore.get(key),
    set: (key, entry) => void cachifiedStore.set(key, entry, { ttl: totalTtl(entry.metadata) }),
    delete: (key) => void cachifiedStore.delete(key)
  }
  for (let i = 0; i < KEYS; i++) {
    await cachified({ key: String(i), cache: cachifiedCache, ttl: 3_600_000, getFreshValue: () => value(i) })
  }

  const keys = Array.from({ length: BATCH }, (_, i) => (i * 7919) % KEYS)
  const persisted = await makePersisted()
  // Requests built once: the measurement is the cache's, not the request allocation's.
  const requests = keys.map((id) => new GetUser({ id }))
  await persisted.runtime.runPromise(Effect.forEach(requests, (r) => persisted.cache.get(r), { discard: true }))
  const lruTag = Context.make(Lru, lru)

  const results: Array<Result> = []
  if (selected("l1")) results.push(await runCase("L1 hit get (1,000-key working set, ~100-byte values)", "effect-cachekit get, in one Effect program", [
    { name: "Map.get", batch: () => { for (const k of keys) do_not_optimize(map.get(k)) } },
    { name: "lru-cache get", batch: () => { for (const k of keys) do_not_optimize(lru.get(k)) } },
    {
      name: "floor: service lookup + lru.get, in one Effect program",
      batch: () => Effect.runPromise(Effect.provide(Effect.forEach(keys, (k) => Effect.map(Lru, (c) => c.get(k)), { discard: true }), lruTag))
    },
    { name: "effect-cachekit get, in one Effect program", batch: () => runOurs(Effect.forEach(keys, (k) => Users.get(k), { discard: true })) },
    {
      name: "effect-cachekit get, latencyMetrics on",
      batch: () => timed.runPromise(Effect.forEach(keys, (k) => Users.get(k), { discard: true }))
    },
    { name: "effect-cachekit get, spans on", batch: () => traced.runPromise(Effect.forEach(keys, (k) => Users.get(k), { discard: true })) },
    {
      name: "effect-cachekit get, one runPromise per get",
      batch: async () => { for (const k of keys) do_not_optimize(await runOurs(Users.get(k))) }
    },
    { name: "Effect Cache.get, in one Effect program", batch: () => Effect.runPromise(Effect.forEach(keys, (k) => effectCache.get(k), { discard: true })) },
    {
      name: "Effect Cache.get, one runPromise per get",
      batch: async () => { for (const k of keys) do_not_optimize(await Effect.runPromise(effectCache.get(k))) }
    },
    {
      name: "@effect/experimental PersistedCache.get, in one Effect program",
      batch: () => persisted.runtime.runPromise(Effect.forEach(requests, (r) => persisted.cache.get(r), { discard: true }))
    },
    { name: "bentocache get (memory)", batch: async () => { for (const k of keys) do_not_optimize(await bento.get({ key: String(k) })) } },
    { name: "cache-manager 7 get (memory)", batch: async () => { for (const k of keys) do_not_optimize(await manager.get(String(k))) } }
  ]))

  const never = Effect.die("a hit never produces")
  if (selected("getOrSet")) results.push(await runCase("getOrSet hit (the memoize shape)", "effect-cachekit getOrSet, in one Effect program", [
    { name: "effect-cachekit get, in one Effect program", batch: () => runOurs(Effect.forEach(keys, (k) => Users.get(k), { discard: true })) },
    {
      name: "effect-cachekit getOrSet, in one Effect program",
      batch: () => runOurs(Effect.forEach(keys, (k) => Users.getOrSet(k, never), { discard: true }))
    },
    { name: "Effect Cache.get (lookup cache), in one Effect program", batch: () => Effect.runPromise(Effect.forEach(keys, (k) => effectCache.get(k), { discard: true })) },
    {
      name: "bentocache getOrSet (memory)",
      batch: async () => { for (const k of keys) do_not_optimize(await bento.getOrSet({ key: String(k), factory: () => value(k), ttl: "1h" })) }
    },
    {
      name: "cache-manager 7 wrap (memory)",
      batch: async () => { for (const k of keys) do_not_optimize(await manager.wrap(String(k), async () => value(k), 3_600_000)) }
    },
    {
      name: "@epic-web/cachified (lru-cache)",
      batch: async () => {
        for (const k of keys) {
          do_not_optimize(await cachified({ key: String(k), cache: cachifiedCache, ttl: 3_600_000, getFreshValue: () => value(k) }))
        }
      }
    }
  ]))

  if (selected("resilience")) results.push(...(await resilienceCases(keys)))
  if (selected("heap")) results.push(await heapPerEntry())
  if (selected("http")) results.push(...(await httpCases()))
  if (selected("redis") || selected("tiered") || selected("batch")) results.push(...(await redisCases()))
  writeResults(results)
  await bento.disconnect()
}

// ---------------------------------------------------------------------------------------------------
// Resilience, in memory: what a tag check costs a hit, and serving stale values while the producer
// fails (grace, with the default backoff), beside bentocache's grace.

class SourceDown extends Error {}
const down = () => Promise.reject(new SourceDown("the source is down"))

const resilienceCases = async (keys: ReadonlyArray<number>): Promise<Array<Result>> => {
  const Tagged = Keyspace.make({ name: "tagged", key: CacheKey.number, value: User, ttl: "1 hour", tags: (id) => [`shard:${id % 10}`] })
  const Graceful = Keyspace.make({ name: "graceful", key: CacheKey.number, value: User, ttl: "1 millis", grace: "1 hour" })
  const runtime = ManagedRuntime.make(Cache.layerMemory({ capacity: 10_000 }))
  const bento = new BentoCache({
    default: "memory",
    stores: { memory: bentostore().useL1Layer(memoryDriver({ maxItems: 10_000 })) }
  })
  await runtime.runPromise(Effect.forEach(Array.from({ length: KEYS }, (_, i) => i), (i) =>
    Effect.zipRight(Users.set(i, value(i)), Effect.zipRight(Tagged.set(i, value(i)), Graceful.set(i, value(i))))))
  for (let i = 0; i < KEYS; i++) {
    await bento.set({ key: `u${i}`, value: value(i), ttl: "1h" })
    await bento.set({ key: `t${i}`, value: value(i), ttl: "1h", tags: [`shard:${i % 10}`] })
    await bento.set({ key: `g${i}`, value: value(i), ttl: "1ms", grace: "1h" })
  }
  // Past the 1 ms ttl: every Graceful entry (and bentocache's) is stale, within its grace.
  await new Promise((resolve) => setTimeout(resolve, 20))
  const never = Effect.die("a hit never produces")
  const failing = Effect.fail(new SourceDown("the source is down"))
  const results: Array<Result> = []
  results.push(await runCase("getOrSet hit on tagged entries (the tag check, memory)", "effect-cachekit getOrSet, untagged", [
    { name: "effect-cachekit getOrSet, untagged", batch: () => runtime.runPromise(Effect.forEach(keys, (k) => Users.getOrSet(k, never), { discard: true })) },
    { name: "effect-cachekit getOrSet, tagged", batch: () => runtime.runPromise(Effect.forEach(keys, (k) => Tagged.getOrSet(k, never), { discard: true })) },
    { name: "bentocache getOrSet (memory), untagged", batch: async () => { for (const k of keys) do_not_optimize(await bento.getOrSet({ key: `u${k}`, factory: () => value(k), ttl: "1h" })) } },
    {
      name: "bentocache getOrSet (memory), tagged",
      batch: async () => { for (const k of keys) do_not_optimize(await bento.getOrSet({ key: `t${k}`, factory: () => value(k), ttl: "1h", tags: [`shard:${k % 10}`] })) }
    }
  ]))
  results.push(await runCase("stale served while the producer fails (grace, memory)", "effect-cachekit getOrSet", [
    {
      name: "effect-cachekit getOrSet",
      batch: () => runtime.runPromise(Effect.forEach(keys, (k) => Graceful.getOrSet(k, failing), { discard: true }))
    },
    {
      name: "bentocache getOrSet (memory, grace)",
      batch: async () => {
        for (const k of keys) do_not_optimize(await bento.getOrSet({ key: `g${k}`, factory: down, ttl: "1ms", grace: "1h" }))
      }
    }
  ]))
  await runtime.dispose()
  await bento.disconnect()
  return results
}

// ---------------------------------------------------------------------------------------------------
// Heap per entry: what a filled structure retains, measured by releasing it.
//
// For each contender: gc, measure heapUsed (base); fill N entries through the contender's public API,
// gc, measure (full); drop every reference to the structure (closing its runtime or scope), gc,
// measure (released). What the entries retain is (full - released) / N: whatever the fill left
// behind that outlives the structure (compiled code, interned strings, module-level tables, lazily
// built globals) stays in both `full` and `released`, so it is not charged to the entries. The
// values themselves are built before `base` and held throughout, so no contender is charged for them.
// (full - base) / N, which also counts what the fill left behind, is printed for reference, and
// (released - base) / N shows what outlived the structure.

const heapPerEntry = async (): Promise<Result> => {
  const N = HEAP_ENTRIES
  // Values as a decoder would hand them over: flat strings. value(i)'s name is a rope (a template
  // literal); a contender that serializes it would flatten it in place during its fill, and the
  // heap that flattening frees would be taken off that contender's count.
  const values: ReadonlyArray<User> = Array.from({ length: N }, (_, i) => JSON.parse(JSON.stringify(value(i))))
  const rows: Array<HeapRow> = []
  rows.push(await measureHeap("Map", () => new Map(values.map((v, i) => [i, v]))))
  rows.push(
    await measureHeap("lru-cache (with ttl)", () => {
      const c = new LRUCache<number, User>({ max: N, ttl: 3_600_000 })
      values.forEach((v, i) => c.set(i, v))
      return c
    })
  )
  rows.push(
    await measureHeap(
      "effect-cachekit memory store",
      async () => {
        const runtime = ManagedRuntime.make(Cache.layerMemory({ capacity: N }))
        await runtime.runPromise(Effect.forEach(values, (v, i) => Users.set(i, v), { discard: true }))
        return runtime
      },
      (runtime) => runtime.dispose()
    )
  )
  rows.push(
    await measureHeap("Effect Cache", async () => {
      const c = await Effect.runPromise(
        EffectCache.make({ capacity: N, timeToLive: Duration.hours(1), lookup: (i: number) => Effect.succeed(values[i]!) })
      )
      await Effect.runPromise(Effect.forEach(values, (_, i) => c.get(i), { discard: true }))
      return c
    })
  )
  rows.push(
    await measureHeap(
      "bentocache (memory)",
      async () => {
        const b = new BentoCache({ default: "m", stores: { m: bentostore().useL1Layer(memoryDriver({ maxItems: N })) } })
        for (let i = 0; i < N; i++) await b.set({ key: String(i), value: values[i], ttl: "1h" })
        return b
      },
      (b) => b.disconnect()
    )
  )
  do_not_optimize(values)
  const lines = heapLines(rows)
  console.log(lines.join("\n"))
  return {
    title: heapTitle,
    reference: "Map",
    rows: rows.map((r) => ({ name: r.name, opsPerSecond: r.retained })),
    unit: "bytes/entry",
    lines
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
