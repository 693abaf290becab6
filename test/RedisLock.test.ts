import { assert, describe, it } from "@effect/vitest"
import type { ChildProcess } from "node:child_process"
import { Duration, Effect, Layer, Option, Ref, Schedule, Schema } from "effect"
import { Redis as IORedis } from "ioredis"
import { afterAll, beforeAll } from "vitest"
import { Cache, CacheKey, Keyspace, Redis, RedisLock, RedisStore } from "../src/index.js"
import { lockKeyOf } from "../src/CacheLock/Redis.js"
import { report, runFleet, spawnWorker, startTogether, type WorkerOutput } from "../examples/fleet.js"
import { commandDelta, commandStats, startRedis, stopRedis } from "./setup/servers.js"
import { lockSuite } from "../src/testing.js"
import { emptiedDatabase, redisOn, whileProducing } from "./utils.js"

const sleep = (duration: Duration.Duration) =>
  Effect.promise(() => new Promise((resolve) => setTimeout(resolve, Duration.toMillis(duration))))

lockSuite(
  "RedisLock",
  RedisLock.layer().pipe(Layer.provideMerge(RedisStore.layer()), Layer.provideMerge(redisOn(10))),
  { unit: "100 millis", advance: sleep, live: true }
)

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User, ttl: "10 minutes" })

describe("RedisLock in one process", () => {
  it.live("4 cache instances on 4 connections × 250 callers: one producer run", () =>
    Effect.gen(function*() {
      const { admin, url } = yield* emptiedDatabase(11)
      const calls = yield* Ref.make(0)
      const produce = Ref.update(calls, (n) => n + 1).pipe(Effect.zipRight(Effect.sleep("50 millis")), Effect.as(new User({ id: 1, name: "Ada" })))
      const instance = Effect.all(Array.from({ length: 250 }, () => Users.getOrSet(1, produce)), { concurrency: "unbounded" }).pipe(
        Effect.provide(Cache.layerRedis({ url, namespace: "fleet1" }))
      )
      const users = (yield* Effect.all([instance, instance, instance, instance], { concurrency: "unbounded" })).flat()
      assert.strictEqual(yield* Ref.get(calls), 1)
      assert.strictEqual(users.length, 1_000)
      assert.isTrue(users.every((u) => u.name === "Ada"))
      assert.strictEqual(yield* Effect.promise(() => admin.exists(lockKeyOf("fleet1:users:1"))), 0, "the lock was released")
    }).pipe(Effect.scoped))

  it.live("a key invalidated or replaced while its producer runs keeps its newer state, with the lock and without", () =>
    Effect.gen(function*() {
      const { admin, url } = yield* emptiedDatabase(12)
      const withLock = Cache.layerRedis({ url, namespace: "raced" })
      const withoutLock = Cache.layer({ namespace: "raced" }).pipe(
        Layer.provideMerge(RedisStore.layer()),
        Layer.provideMerge(Redis.layer({ url }))
      )
      for (const [name, layer] of [["with the lock", withLock], ["without", withoutLock]] as const) {
        yield* Effect.gen(function*() {
          const cache = yield* Cache.Cache
          const settled = Effect.repeat(cache.inFlight, { until: (n) => n === 0, schedule: Schedule.spaced("5 millis"), times: 400 })
          const racing = (id: number, during: Effect.Effect<unknown, unknown, Cache.Cache>) =>
            Effect.gen(function*() {
              const got = yield* whileProducing((produce) => Users.getOrSet(id, produce), new User({ id, name: "produced" }), during)
              assert.strictEqual(got.name, "produced", name)
              yield* settled
            })
          yield* racing(1, Users.invalidate(1))
          assert.isTrue(Option.isNone(yield* Users.get(1)), `${name}: the invalidation stands`)
          yield* racing(2, Users.set(2, new User({ id: 2, name: "newer" })))
          assert.strictEqual(Option.getOrThrow(yield* Users.get(2)).name, "newer", `${name}: the newer write stands`)
          yield* racing(3, Effect.void)
          assert.strictEqual(Option.getOrThrow(yield* Users.get(3)).name, "produced", `${name}: an undisturbed run stores its value`)
          yield* Users.invalidateMany([1, 2, 3])
        }).pipe(Effect.provide(layer))
      }
      assert.deepStrictEqual(yield* Effect.promise(() => admin.keys("raced::lock:*")), [], "no lock left")
    }).pipe(Effect.scoped))

  it.live("the lock key shares the entry's hash slot, whatever the key holds", () =>
    Effect.sync(() => {
      for (const key of ["app:users:1", "app:users:{tagged}x", "app:odd:}{", "app:x:" + "é".repeat(50)]) {
        const lockKey = lockKeyOf(key)
        assert.isTrue(lockKey.startsWith("app::lock:{"))
        assert.strictEqual(RedisSlot(lockKey), RedisSlot(key), key)
      }
    }))
})

// The slot as Redis computes it, from the dependency ioredis itself uses.
import calculateSlot from "cluster-key-slot"
const RedisSlot = (key: string) => calculateSlot(key)

describe("getOrSet across 4 real processes", () => {
  let server: { port: number; process: ChildProcess }
  let admin: IORedis
  let worker: { url: string; namespace: string }
  beforeAll(async () => {
    server = await startRedis()
    admin = new IORedis(server.port, "127.0.0.1")
    worker = { url: `redis://127.0.0.1:${server.port}`, namespace: "fleet" }
  })
  afterAll(async () => {
    admin.disconnect()
    await stopRedis(server.process)
  })

  it("4 processes × 250 callers, producer 50 ms: exactly one producer call, one value for all 1,000", { timeout: 60_000 }, async () => {
    const before = await commandStats(admin)
    const fleet = await runFleet(4, { ...worker, key: "cold", callers: 250, producerMillis: 50, leaseMillis: 10_000 })
    const after = await commandStats(admin)
    const runs = Number(await admin.get("runs:cold"))
    const commands = commandDelta(before, after, ["info", "client|setinfo", "select", "psubscribe", "client|setname", "incr"])
    console.log(
      `cross-process stampede: processes started within ${fleet.startSpread} ms; producer runs ${runs}; ` +
        `${fleet.callers} callers got ${fleet.distinctValues} distinct value(s); ` +
        `last caller returned ${fleet.lastWaiterMillis} ms after the producer finished ` +
        `(first return in each waiting process: ${fleet.firstReturnPerWaitingProcess.join(", ")} ms); commands ${JSON.stringify(commands)}`
    )
    assert.isTrue(fleet.outputs.every((o) => o.startedAt < fleet.producedAt), "every process started before the value existed")
    assert.strictEqual(runs, 1)
    assert.strictEqual(fleet.callers, 1_000)
    assert.strictEqual(fleet.distinctValues, 1)
    // Not one GET per waiter: each process reads the key a handful of times, not 250.
    assert.isBelow(commands.get ?? 0, 40)
  })

  it("the lock holder is SIGKILLed mid-producer: another process takes over after the lease, every caller gets a value", { timeout: 60_000 }, async () => {
    const holder = spawnWorker({ ...worker, key: "killed", callers: 10, producerMillis: 60_000, leaseMillis: 1_000 })
    await startTogether([holder])
    // Wait until the holder has taken the lock and its producer runs.
    const lock = lockKeyOf("fleet:stampede:killed")
    for (let i = 0; i < 200 && (await admin.get("runs:killed")) === null; i++) await new Promise((r) => setTimeout(r, 50))
    assert.strictEqual(await admin.exists(lock), 1, `the holder holds the lock ${lock}: ${JSON.stringify(await admin.keys("*"))}`)
    const waiters = [0, 1].map(() => spawnWorker({ ...worker, key: "killed", callers: 100, producerMillis: 50, leaseMillis: 1_000 }))
    await startTogether(waiters)
    // The waiters wait on the lock; the holder's watchdog keeps extending it.
    await new Promise((r) => setTimeout(r, 1_500))
    assert.strictEqual(Number(await admin.get("runs:killed")), 1, "nobody took over a live holder")
    holder.kill("SIGKILL")
    const taken = report((await Promise.all(waiters.map((w) => w.done))) as ReadonlyArray<WorkerOutput>)
    assert.isUndefined(await holder.done)
    assert.strictEqual(taken.callers, 200)
    assert.strictEqual(taken.distinctValues, 1, "the process that took over produced one value for everyone")
    assert.strictEqual(Number(await admin.get("runs:killed")), 2, "the killed holder's run, then one take-over")
  })
})
