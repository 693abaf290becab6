/**
 * The Redis store and lock on a real 3-master Redis Cluster: every batch and script must be free of
 * CROSSSLOT errors however the keys spread over the slots.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Ref, Schema } from "effect"
import { type Cluster, Redis as IORedis } from "ioredis"
import { afterAll, beforeAll } from "vitest"
import { Cache, CacheKey, CacheStore, Keyspace, Redis, RedisBus, RedisLock, RedisStore } from "../src/index.js"
import { startCluster, stopCluster, type TestCluster } from "./setup/servers.js"
import { busSuite, lockSuite, storeSuite } from "../src/testing.js"
import { assertSame } from "./utils.js"

let cluster: TestCluster
beforeAll(async () => {
  cluster = await startCluster()
}, 60_000)
afterAll(async () => {
  if (cluster !== undefined) await stopCluster(cluster)
})

const sleep = (duration: Duration.Duration) =>
  Effect.promise(() => new Promise((resolve) => setTimeout(resolve, Duration.toMillis(duration))))

/** A cluster client, with every master emptied when the layer is built. The ports are read lazily. */
const clusterClient = Layer.unwrapEffect(Effect.sync(() =>
  Layer.tap(
    Redis.layer({ cluster: cluster.ports.map((port) => ({ host: "127.0.0.1", port })), connectTimeout: "5 seconds" }),
    (context) =>
      Effect.promise(async () => {
        const client = context.unsafeMap.get(Redis.Redis.key) as Redis.Redis
        await Promise.all((client.client as Cluster).nodes("master").map((node) => node.flushall()))
      })
  )
))

storeSuite("RedisStore on a 3-master Cluster", RedisStore.layer().pipe(Layer.provide(clusterClient)), {
  unit: "100 millis",
  advance: sleep,
  capabilities: { assignsVersions: true, conditionalWrites: true, expire: true, increment: true, raw: "redis" }
})

lockSuite(
  "RedisLock on a 3-master Cluster",
  RedisLock.layer().pipe(Layer.provideMerge(RedisStore.layer()), Layer.provideMerge(clusterClient)),
  { unit: "100 millis", advance: sleep, live: true }
)

busSuite(
  "RedisBus on a 3-master Cluster",
  RedisBus.layer({ heartbeat: "300 millis" }).pipe(Layer.provide(Layer.unwrapEffect(Effect.sync(() =>
    Redis.layer({ cluster: cluster.ports.map((port) => ({ host: "127.0.0.1", port })), connectTimeout: "5 seconds" })
  )))),
  {
    // A message published on one master reaches the others over the cluster bus: not in one order.
    ordered: false,
    // Every master's pub/sub connections: the subscriber is on one of them.
    sever: Effect.promise(() =>
      Promise.all(cluster.ports.map(async (port) => {
        const admin = new IORedis(port, "127.0.0.1")
        try {
          await admin.client("KILL", "TYPE", "pubsub")
        } finally {
          admin.disconnect()
        }
      }))
    )
  }
)

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User, ttl: "10 minutes" })

describe("Cache on a Redis Cluster", () => {
  it.live("batches of keys spread over every master: getMany, setMany, invalidateMany and clear", () =>
    Effect.gen(function*() {
      const redis = yield* Redis.Redis
      assert.isTrue(redis.isCluster)
      const ids = Array.from({ length: 200 }, (_, i) => i)
      yield* Users.setMany(ids.map((i) => [i, new User({ id: i, name: `u${i}` })] as const))
      const got = yield* Users.getMany(ids)
      assert.isTrue(got.every((user, i) => Option.isSome(user) && user.value.id === i))
      // The keys really are spread over the three masters.
      const perNode = yield* Effect.promise(() =>
        Promise.all((redis.client as Cluster).nodes("master").map((node) => node.dbsize()))
      )
      assert.strictEqual(perNode.length, 3)
      assert.isTrue(perNode.every((n) => n > 0), `keys per master: ${perNode.join(", ")}`)
      yield* Users.invalidateMany(ids.slice(0, 100))
      assert.strictEqual((yield* Users.getMany(ids)).filter(Option.isSome).length, 100)
      const store = yield* CacheStore.CacheStore
      yield* store.set("other:users:1", new TextEncoder().encode("kept"), undefined)
      assert.strictEqual(yield* Cache.clear, 100)
      assert.isTrue(yield* store.has("other:users:1"))
    }).pipe(Effect.provide(
      Cache.layer({ namespace: "cl" }).pipe(Layer.provideMerge(RedisStore.layer()), Layer.provideMerge(clusterClient))
    )))

  it.live("expire, remainingTtl, deleteMany, raw and counters on a Cluster: keys on every master, each script in its key's slot", () =>
    Effect.gen(function*() {
      const ids = Array.from({ length: 60 }, (_, i) => i)
      yield* Users.setMany(ids.map((i) => [i, new User({ id: i, name: `u${i}` })] as const))
      const renewed = yield* Effect.forEach(ids, (id) => Users.expire(id, "1 hour"), { concurrency: "unbounded" })
      assert.isTrue(renewed.every((done) => done))
      const left = yield* Effect.forEach(ids, (id) => Users.remainingTtl(id))
      assert.isTrue(left.every((found) => Option.isSome(found) && Duration.toMinutes(found.value) > 59))
      const client = yield* Cache.raw("redis")
      assert.strictEqual(client, (yield* Redis.Redis).client, "the cache's own client")
      const ttls = yield* Effect.promise(() => Promise.all(ids.map((id) => client.pttl(`cl-cmd:users:${id}`))))
      assert.isTrue(ttls.every((ttl) => ttl > 59 * 60_000), "every key's PTTL moved with its header")
      assert.strictEqual(yield* Users.deleteMany([...ids, 1_000]), 60)
      assert.isFalse(yield* Users.expire(1, "1 hour"))
      // Counters on keys spread over every master, incremented concurrently.
      const Hits = Keyspace.counter({ name: "hits", key: CacheKey.number, ttl: "1 hour" })
      yield* Effect.forEach([...ids, ...ids], (id) => Hits.increment(id, id), { concurrency: "unbounded", discard: true })
      const counts = yield* Effect.forEach(ids, (id) => Hits.get(id))
      assert.isTrue(counts.every((found, id) => Option.isSome(found) && found.value === 2 * id))
      assert.isAbove(yield* Effect.promise(() => client.pttl("cl-cmd:hits:7")), 59 * 60_000)
    }).pipe(Effect.provide(
      Cache.layer({ namespace: "cl-cmd" }).pipe(Layer.provideMerge(RedisStore.layer()), Layer.provideMerge(clusterClient))
    )))

  it.live("tags on a Cluster: entries on every master, 20 tags invalidated at once, their markers in slots of their own, no CROSSSLOT", () =>
    Effect.gen(function*() {
      const Tagged = Keyspace.make({ name: "tagged", key: CacheKey.number, value: User, tags: (id) => [`group:${id % 20}`] })
      const ids = Array.from({ length: 200 }, (_, i) => i)
      yield* Tagged.setMany(ids.map((i) => [i, new User({ id: i, name: `u${i}` })] as const))
      assert.strictEqual((yield* Tagged.getMany(ids)).filter(Option.isSome).length, 200)
      const even = Array.from({ length: 10 }, (_, g) => `group:${g * 2}`)
      yield* Cache.invalidateTags(even)
      const after = yield* Tagged.getMany(ids)
      assert.isTrue(after.every((found, i) => Option.isSome(found) === (i % 2 === 1)), "the even groups only")
      assertSame(yield* Tagged.get(3), Option.some(new User({ id: 3, name: "u3" })))
      assertSame(yield* Tagged.get(4), Option.none())
      yield* Tagged.set(4, new User({ id: 4, name: "again" }))
      assertSame(yield* Tagged.get(4), Option.some(new User({ id: 4, name: "again" })))
    }).pipe(Effect.provide(
      Cache.layer({ namespace: "cl-tags" }).pipe(Layer.provideMerge(RedisStore.layer()), Layer.provideMerge(clusterClient))
    )))

  it.live("getOrSet with the Redis lock on a Cluster: 4 instances × 100 callers, one producer run", () =>
    Effect.gen(function*() {
      const calls = yield* Ref.make(0)
      const produce = Ref.update(calls, (n) => n + 1).pipe(Effect.zipRight(Effect.sleep("50 millis")), Effect.as(new User({ id: 1, name: "Ada" })))
      const layer = Layer.unwrapEffect(Effect.sync(() =>
        Cache.layerRedis({ namespace: "cl-lock", cluster: cluster.ports.map((port) => ({ host: "127.0.0.1", port })) })
      ))
      const instance = Effect.all(Array.from({ length: 100 }, (_, i) => Users.getOrSet(1 + (i % 3) * 1_000, produce)), {
        concurrency: "unbounded"
      }).pipe(Effect.provide(layer))
      const users = (yield* Effect.all([instance, instance, instance, instance], { concurrency: "unbounded" })).flat()
      assert.strictEqual(yield* Ref.get(calls), 3, "one run per key, three keys on different slots")
      assert.isTrue(users.every((u) => u.name === "Ada"))
    }))

  it.live("a two-layer cache on a Cluster: writes on one instance reach the other's memory, keys on every master", () =>
    Effect.gen(function*() {
      const tiered = () =>
        Layer.build(Cache.layerTiered({
          namespace: "cl-tiered",
          redis: { cluster: cluster.ports.map((port) => ({ host: "127.0.0.1", port })), connectTimeout: "5 seconds" }
        }))
      const a = yield* tiered()
      const b = yield* tiered()
      const ids = Array.from({ length: 30 }, (_, i) => i)
      yield* Users.setMany(ids.map((i) => [i, new User({ id: i, name: "v1" })] as const)).pipe(Effect.provide(a))
      const first = yield* Users.getMany(ids).pipe(Effect.provide(b))
      assert.isTrue(first.every((user) => Option.isSome(user) && user.value.name === "v1"))
      const storeB = yield* Effect.map(Cache.Cache, (cache) => cache.store).pipe(Effect.provide(b))
      assert.isTrue(ids.every((i) => storeB.getNow!(`cl-tiered:users:${i}`, Date.now()) !== undefined), "B serves them from memory")
      yield* Users.setMany(ids.map((i) => [i, new User({ id: i, name: "v2" })] as const)).pipe(Effect.provide(a))
      yield* Users.invalidate(0).pipe(Effect.provide(a))
      const start = Date.now()
      for (;;) {
        const seen = yield* Users.getMany(ids).pipe(Effect.provide(b))
        if (Option.isNone(seen[0]!) && seen.slice(1).every((user) => Option.isSome(user) && user.value.name === "v2")) break
        assert.isBelow(Date.now() - start, 2_000, "B follows A within 2 s")
        yield* sleep(Duration.millis(5))
      }
    }).pipe(Effect.scoped))
})
