/**
 * Late writes: a write whose caller gave up on it (its bytes sat in a slow link) reaches Redis after a
 * newer write. The write scripts carry the caller's deadline on the server's clock and refuse it, so
 * the newer value stays, whichever path wrote the late one: `set`, `setMany`, getOrSet's lock release,
 * getOrSet without a lock.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Layer, Option, Schema } from "effect"
import { Cache, CacheKey, CacheError, Keyspace, Redis, RedisStore } from "../../src/index.js"
import * as Harness from "./harness.js"
import * as Proxy from "./proxy.js"
import { assertSame } from "../utils.js"

const Items = Keyspace.make({ name: "items", key: CacheKey.number, value: Schema.String, ttl: "10 minutes" })

/** How long the slow link holds the late write's bytes; the caller waits 300 ms. */
const lateBy = 900

/**
 * A cache through the proxy (the one whose writes come late) and one straight to the server (the
 * newer writer), on the same namespace.
 */
const caches = (server: Harness.Server, slow: Layer.Layer<Cache.Cache | Redis.Redis>) =>
  Effect.all({
    slow: Layer.build(slow),
    direct: Layer.build(Cache.layerRedis({ url: `redis://127.0.0.1:${server.port}`, namespace: "late", commandTimeout: "300 millis" }))
  })

/** Runs `late` with the link to Redis slowed (up) and, while its bytes are held, `newer` directly. */
const race = <A, E>(
  server: Harness.Server,
  late: Effect.Effect<A, E>,
  newer: Effect.Effect<unknown, unknown>
) =>
  Effect.gen(function*() {
    server.proxy.set(Proxy.delay(lateBy), "up")
    const started = Date.now()
    const fiber = yield* Effect.fork(Effect.exit(late))
    yield* Harness.sleep(50)
    yield* Effect.orDie(newer)
    const exit = yield* Fiber.join(fiber)
    const waited = Date.now() - started
    // The held bytes reach Redis now; give the late write every chance to land.
    yield* Harness.sleep(lateBy + 300)
    server.proxy.set(Proxy.pass)
    return { exit, waited }
  })

const read = (server: Harness.Server, key: string) => Effect.promise(() => server.admin.getBuffer(key))

describe("late writes", () => {
  it.live("a set that times out and reaches Redis after a newer write is refused: the newer value stays", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const unhandled = yield* Harness.unhandledRejections
      const { direct, slow } = yield* caches(server, Cache.layerRedis({ url: server.url, namespace: "late", commandTimeout: "300 millis" }))
      yield* Items.set(1, "warm").pipe(Effect.provide(slow)) // connected, scripts loaded, the server's clock known
      const { exit, waited } = yield* race(server, Items.set(1, "old").pipe(Effect.provide(slow)), Items.set(1, "new").pipe(Effect.provide(direct)))
      assert.isTrue(Exit.isFailure(exit), "the late write's caller is told it failed")
      if (Exit.isFailure(exit)) {
        const error = Cause.failureOption(exit.cause)
        assert.isTrue(Option.isSome(error) && CacheError.isStoreError(error.value) && error.value.reason === "Timeout")
      }
      assert.isBelow(waited, 600, "the caller waited its 300 ms bound, not for the slow link")
      assertSame(yield* Items.get(1).pipe(Effect.provide(direct)), Option.some("new"))
      assert.deepStrictEqual(unhandled, [])
    }).pipe(Effect.scoped), 30_000)

  it.live("a late setMany is refused as a whole: no entry of the batch replaces a newer one", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const { direct, slow } = yield* caches(server, Cache.layerRedis({ url: server.url, namespace: "late", commandTimeout: "300 millis" }))
      yield* Items.set(0, "warm").pipe(Effect.provide(slow))
      const { exit } = yield* race(
        server,
        Items.setMany([[1, "old"], [2, "old"]]).pipe(Effect.provide(slow)),
        Items.setMany([[1, "new"], [2, "new"]]).pipe(Effect.provide(direct))
      )
      assert.isTrue(Exit.isFailure(exit))
      assertSame(yield* Items.getMany([1, 2]).pipe(Effect.provide(direct)), [Option.some("new"), Option.some("new")])
    }).pipe(Effect.scoped), 30_000)

  it.live("getOrSet: a lock release whose value comes late does not overwrite a newer set, and the lock is still released", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const unhandled = yield* Harness.unhandledRejections
      const { direct, slow } = yield* caches(server, Cache.layerRedis({ url: server.url, namespace: "late", commandTimeout: "300 millis" }))
      yield* Items.set(0, "warm").pipe(Effect.provide(slow))
      // The producer's value is released (with the lock) over the slow link; meanwhile a newer set lands.
      const produced = yield* Items.getOrSet(1, Effect.succeed("produced").pipe(
        Effect.tap(() => Effect.sync(() => server.proxy.set(Proxy.delay(lateBy), "up")))
      )).pipe(Effect.provide(slow))
      assert.strictEqual(produced, "produced", "the caller has the value at once")
      yield* Harness.sleep(50)
      yield* Items.set(1, "new").pipe(Effect.provide(direct))
      yield* Harness.sleep(lateBy + 300)
      server.proxy.set(Proxy.pass)
      assertSame(yield* Items.get(1).pipe(Effect.provide(direct)), Option.some("new"))
      assert.deepStrictEqual(yield* Effect.promise(() => server.lockKeys("late")), [], "the late release still released the lock")
      assert.deepStrictEqual(unhandled, [])
    }).pipe(Effect.scoped), 30_000)

  it.live("getOrSet without a lock: its write, made once the callers have the value, is fenced the same way", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const unlocked = Cache.layer({ namespace: "late", timeout: "300 millis" }).pipe(
        Layer.provideMerge(RedisStore.layer()),
        Layer.provideMerge(Redis.layer({ url: server.url, commandTimeout: "300 millis" }))
      )
      const { direct, slow } = yield* caches(server, unlocked)
      yield* Items.set(0, "warm").pipe(Effect.provide(slow))
      const produced = yield* Items.getOrSet(1, Effect.succeed("produced").pipe(
        Effect.tap(() => Effect.sync(() => server.proxy.set(Proxy.delay(lateBy), "up")))
      )).pipe(Effect.provide(slow))
      assert.strictEqual(produced, "produced")
      yield* Harness.sleep(50)
      yield* Items.set(1, "new").pipe(Effect.provide(direct))
      yield* Harness.sleep(lateBy + 300)
      server.proxy.set(Proxy.pass)
      assertSame(yield* Items.get(1).pipe(Effect.provide(direct)), Option.some("new"))
    }).pipe(Effect.scoped), 30_000)

  it.live("a write that is slow but within its caller's wait lands: the fence refuses only what its caller gave up on", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const { direct, slow } = yield* caches(server, Cache.layerRedis({ url: server.url, namespace: "late", commandTimeout: "1 second", timeout: "1 second" }))
      yield* Items.set(0, "warm").pipe(Effect.provide(slow))
      server.proxy.set(Proxy.delay(300), "up")
      yield* Items.set(1, "slow but in time").pipe(Effect.provide(slow))
      server.proxy.set(Proxy.pass)
      assertSame(yield* Items.get(1).pipe(Effect.provide(direct)), Option.some("slow but in time"))
      assert.isNotNull(yield* read(server, "late:items:1"))
    }).pipe(Effect.scoped), 30_000)
})
