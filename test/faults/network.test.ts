/**
 * Network faults between the cache and Redis, through the test proxy: a connection reset while a
 * command waits for its reply, replies that never come.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Schema } from "effect"
import { Cache, CacheKey, Keyspace } from "../../src/index.js"
import * as Harness from "./harness.js"
import * as Proxy from "./proxy.js"

const Items = Keyspace.make({ name: "items", key: CacheKey.number, value: Schema.String, ttl: "10 minutes" })

/** Script calls, however ioredis sent them. */
const scriptCalls = (commands: Record<string, number>) => (commands.evalsha ?? 0) + (commands.eval ?? 0)

describe("network faults", () => {
  it.live("a connection reset while a write waits for its reply: a typed error, and the write is never sent twice", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const unhandled = yield* Harness.unhandledRejections
      yield* Effect.gen(function*() {
        yield* Items.set(0, "warm") // connected, scripts loaded
        yield* Effect.promise(() => server.resetStats())
        // The write reaches Redis; its reply does not come back; then the connection is reset.
        const exit = yield* Harness.lostReply(server.proxy, () => server.proxy.set(Proxy.blackhole, "down"), Items.set(1, "once"))
        assert.isTrue(Exit.isFailure(exit), "the caller is told the outcome is unknown")
        // Give a resend every chance to happen: the client reconnects well within this.
        yield* Harness.sleep(800)
        yield* Items.get(0).pipe(Effect.retry({ times: 20 }))
        assert.strictEqual(scriptCalls(yield* Effect.promise(() => server.commands())), 1, "the write ran once")
        assert.strictEqual(yield* Effect.promise(() => server.admin.exists("net:items:1")), 1)
      }).pipe(Effect.provide(Cache.layerRedis({ url: server.url, namespace: "net", commandTimeout: "500 millis" })))
      assert.deepStrictEqual(unhandled, [])
    }).pipe(Effect.scoped), 30_000)

  it.live("a connection reset while a lock acquire waits for its reply: the lock it took is released, no stall", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const unhandled = yield* Harness.unhandledRejections
      yield* Effect.gen(function*() {
        yield* Items.set(0, "warm")
        // The read reaches Redis and misses; the SET NX lands but its reply is lost with the connection.
        server.proxy.when("NX", () => server.proxy.set(Proxy.blackhole, "down"))
        const started = Date.now()
        const first = yield* Effect.fork(Effect.either(Items.getOrSet(1, Effect.fail("first" as const))))
        yield* Harness.sleep(100)
        server.proxy.set(Proxy.pass)
        server.proxy.reset()
        yield* Fiber.join(first)
        assert.isBelow(Date.now() - started, 1_500, "the first call did not wait on a lock of its own")
        yield* Harness.sleep(500) // reconnected
        const second = yield* Harness.timed(Items.getOrSet(1, Effect.succeed("value")))
        assert.strictEqual(second.value, "value")
        assert.isBelow(second.millis, 1_000, "no lock of the first call held the key")
      }).pipe(Effect.provide(Cache.layerRedis({ url: server.url, namespace: "netlock", commandTimeout: "500 millis" })))
      assert.deepStrictEqual(yield* Effect.promise(() => server.lockKeys("netlock")), [])
      assert.deepStrictEqual(unhandled, [])
    }).pipe(Effect.scoped), 30_000)
})
