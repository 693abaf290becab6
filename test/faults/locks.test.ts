/**
 * Faults around the distributed lock: a paused server, a reset connection, a server out of memory.
 * Real redis-server, real signals, real time.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Schema } from "effect"
import { spawnWorker, startTogether } from "../../examples/fleet.js"
import { Cache, CacheKey, Keyspace } from "../../src/index.js"
import * as Harness from "./harness.js"

const Items = Keyspace.make({ name: "items", key: CacheKey.number, value: Schema.String, ttl: "10 minutes" })
const keys = Array.from({ length: 40 }, (_, i) => i + 1)

/** Waits until the server answers its admin connection again. */
const answering = (server: Harness.Server) => Effect.promise(() => server.admin.ping())

describe("lock faults", () => {
  it.live("a lock taken while Redis was paused is released when it answers: no orphan, no stall after recovery", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const unhandled = yield* Harness.unhandledRejections
      const cache = Cache.layerRedis({ url: server.url, namespace: "orphan", timeout: "400 millis", commandTimeout: "250 millis" })
      yield* Effect.gen(function*() {
        yield* Items.set(0, "warm") // connected and scripts loaded before the pause
        server.pause()
        // Every call settles on its bounds while the server is frozen; the producers fail, so nothing
        // is written and only the locks their SET NX took (once the server runs again) could remain.
        const during = yield* Harness.timed(Effect.forEach(
          keys,
          (key) => Effect.either(Items.getOrSet(key, Effect.fail("no value during the outage" as const))),
          { concurrency: "unbounded" }
        ))
        assert.isTrue(during.value.every(Either.isLeft))
        assert.isBelow(during.millis, 3_000, "the calls settled while the server was frozen")
        yield* Harness.sleep(300)
        server.resume()
        yield* answering(server)
        // After recovery the first getOrSet on every key produces at once: within producer time + 1 s.
        const after = yield* Harness.timed(Effect.forEach(
          keys,
          (key) => Items.getOrSet(key, Effect.as(Effect.sleep("50 millis"), `item ${key}`)),
          { concurrency: "unbounded" }
        ))
        assert.deepStrictEqual(after.value, keys.map((key) => `item ${key}`))
        assert.isBelow(after.millis, 1_050, "no orphan lock stalled a key")
      }).pipe(Effect.provide(cache))
      assert.deepStrictEqual(yield* Effect.promise(() => server.lockKeys("orphan")), [], "no lock left on the server")
      assert.deepStrictEqual(unhandled, [])
    }).pipe(Effect.scoped), 30_000)

  it.live("a release whose write Redis refuses (out of memory) still releases the lock; the caller has its value", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const unhandled = yield* Harness.unhandledRejections
      yield* Effect.promise(() => server.admin.set("ballast", "x".repeat(4_000_000)))
      // Memory fills up while the producer holds the lock: its write will be refused (noeviction).
      const produce = Effect.as(Effect.promise(() => server.admin.config("SET", "maxmemory", "1mb")), "value")
      const value = yield* Items.getOrSet(1, produce).pipe(
        Effect.provide(Cache.layerRedis({ url: server.url, namespace: "oom", timeout: "1 second" }))
      )
      assert.strictEqual(value, "value")
      assert.deepStrictEqual(yield* Effect.promise(() => server.lockKeys("oom")), [], "the lock was released")
      assert.strictEqual(yield* Effect.promise(() => server.admin.exists("oom:items:1")), 0, "nothing was written")
      yield* Effect.promise(() => server.admin.config("SET", "maxmemory", "0"))
      assert.deepStrictEqual(unhandled, [])
    }).pipe(Effect.scoped), 30_000)

  it.live("a lock holder frozen mid-producer (SIGSTOP) loses the lock within one default lease; a waiter produces", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const holder = yield* Effect.acquireRelease(
        Effect.sync(() => spawnWorker({ url: server.url, namespace: "frozen", key: "k", callers: 1, producerMillis: 60_000, leaseMillis: 0 })),
        (worker) => Effect.sync(() => worker.kill("SIGKILL"))
      )
      yield* Effect.promise(() => startTogether([holder]))
      // The holder's producer runs (it counts its run first): it holds the lock. Then it freezes.
      while ((yield* Effect.promise(() => server.admin.get("runs:k"))) === null) yield* Harness.sleep(20)
      holder.kill("SIGSTOP")
      const Produced = Schema.Struct({ by: Schema.Number, finishedAt: Schema.Number })
      const Values = Keyspace.make({ name: "stampede", key: CacheKey.string, value: Produced, ttl: "1 minute" })
      const taken = yield* Harness.timed(
        Values.getOrSet("k", Effect.sync(() => ({ by: process.pid, finishedAt: Date.now() }))).pipe(
          Effect.provide(Cache.layerRedis({ url: server.url, namespace: "frozen" }))
        )
      )
      assert.strictEqual(taken.value.by, process.pid, "the waiter produced once the frozen holder's lease lapsed")
      // The default lease is 3 s (the lock timeout is 10 s): one lease plus a poll, with a margin.
      assert.isBelow(taken.millis, 4_500, `took ${taken.millis} ms`)
      console.log(`frozen holder: a waiter produced after ${taken.millis} ms`)
    }).pipe(Effect.scoped), 30_000)
})
