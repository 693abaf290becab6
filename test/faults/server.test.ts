/**
 * Faults of the server itself: credentials it refuses, a shutdown while it is down or frozen, an
 * eviction policy that may evict locks.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Redacted, Schema, Scope } from "effect"
import { Cache, CacheKey, Keyspace } from "../../src/index.js"
import * as Harness from "./harness.js"

const Items = Keyspace.make({ name: "items", key: CacheKey.number, value: Schema.String, ttl: "10 minutes" })


describe("server faults", () => {
  it.live("a wrong password: StoreError reason Auth at the first call, one clear log line, the password nowhere", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server(["--requirepass", "right-secret"])
      const logs = yield* Harness.captureLogs
      const unhandled = yield* Harness.unhandledRejections
      const url = Redacted.make(`redis://:wrong-secret@127.0.0.1:${server.proxy.port}`)
      const seen = yield* Effect.gen(function*() {
        const error = yield* Effect.flip(Items.get(1))
        assert.strictEqual(error._tag, "StoreError")
        assert.strictEqual(error._tag === "StoreError" ? error.reason : undefined, "Auth")
        const value = yield* Items.getOrSet(1, Effect.succeed("from the producer"))
        assert.strictEqual(value, "from the producer", "getOrSet still answers")
        return error.message
      }).pipe(
        Effect.provide(Cache.layerRedis({ url, namespace: "auth", connectTimeout: "300 millis" })),
        Effect.provide(logs.layer)
      )
      const lines = logs.messages()
      const refusals = lines.filter((line) => line.includes("refused the credentials"))
      assert.strictEqual(refusals.length, 1, lines.join("\n"))
      assert.include(refusals[0], "WRONGPASS")
      assert.include(seen, "WRONGPASS", "the error says why")
      for (const text of [seen, ...lines]) assert.notInclude(text, "wrong-secret")
      assert.deepStrictEqual(unhandled, [])
    }).pipe(Effect.scoped), 30_000)

  it.live("no password where one is required (NOAUTH): reason Auth", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server(["--requirepass", "right-secret"])
      const error = yield* Effect.flip(Items.get(1)).pipe(
        Effect.provide(Cache.layerRedis({ url: server.url, namespace: "noauth", connectTimeout: "300 millis" }))
      )
      assert.isTrue(error._tag === "StoreError" && error.reason === "Auth", error.message)
    }).pipe(Effect.scoped), 30_000)

  const shutdown = (fault: (server: Harness.Server) => Effect.Effect<void>) =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const closed = yield* Effect.gen(function*() {
        const scope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(Cache.layerRedis({ url: server.url, namespace: "exit" }), scope)
        yield* Items.getOrSet(1, Effect.succeed("value")).pipe(Effect.provide(context))
        yield* fault(server)
        return yield* Harness.timed(Scope.close(scope, Exit.void))
      })
      server.resume()
      return closed.millis
    }).pipe(Effect.scoped)

  it.live("shutting down while Redis is frozen (SIGSTOP) takes under 200 ms", () =>
    Effect.map(shutdown((server) => Effect.sync(() => server.pause())), (millis) => assert.isBelow(millis, 200)), 30_000)

  it.live("shutting down while Redis is down takes under 200 ms", () =>
    Effect.map(
      shutdown((server) => Effect.promise(async () => {
        server.process().kill("SIGKILL")
        await new Promise((resolve) => server.process().once("exit", resolve))
      })),
      (millis) => assert.isBelow(millis, 200)
    ), 30_000)

  const lockWarnings = (extra: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const server = yield* Harness.server(extra)
      const logs = yield* Harness.captureLogs
      yield* Items.getOrSet(1, Effect.succeed("v")).pipe(
        Effect.provide(Cache.layerRedis({ url: server.url, namespace: "evict" })),
        Effect.provide(logs.layer)
      )
      return logs.messages().filter((line) => line.includes("may evict a held lock"))
    }).pipe(Effect.scoped)

  it.live("a Redis that may evict locks (allkeys-lru): one warning at start; noeviction: none", () =>
    Effect.gen(function*() {
      const evicting = yield* lockWarnings(["--maxmemory-policy", "allkeys-lru"])
      assert.strictEqual(evicting.length, 1)
      assert.include(evicting[0], "allkeys-lru")
      assert.deepStrictEqual(yield* lockWarnings(["--maxmemory-policy", "noeviction"]), [])
    }), 30_000)
})
