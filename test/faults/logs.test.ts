/**
 * What a cache logs during an outage: a few lines per cause per second with a count of the ones held
 * back, annotated; and keys redacted when asked.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Cache, CacheKey, Keyspace } from "../../src/index.js"
import * as Harness from "./harness.js"

const Emails = Keyspace.make({ name: "emails", key: CacheKey.string, value: Schema.String, ttl: "10 minutes" })


describe("logs in an outage", () => {
  it.live("Redis down for 1.5 s of calls: a few lines per cause per second, counts of the rest, annotated", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const logs = yield* Harness.captureLogs
      let calls = 0
      yield* Effect.gen(function*() {
        yield* Emails.set("warm", "x")
        server.process().kill("SIGKILL")
        yield* Harness.sleep(100)
        const until = Date.now() + 1_500
        while (Date.now() < until) {
          yield* Effect.forEach(
            Array.from({ length: 100 }, (_, i) => `user${calls + i}@example.com`),
            (key) => Emails.getOrSet(key, Effect.succeed("produced")),
            { concurrency: "unbounded", discard: true }
          )
          calls += 100
        }
      }).pipe(
        Effect.provide(Cache.layerRedis({ url: server.url, namespace: "logs", timeout: "200 millis", commandTimeout: "150 millis" })),
        Effect.provide(logs.layer)
      )
      const absorbed = logs.lines.filter((line) => line.message.includes("carrying on without the cache"))
      console.log(`${calls} getOrSet calls in 1.5 s of outage: ${logs.lines.length} log lines (${absorbed.length} of absorbed failures)`)
      assert.isAbove(calls, 1_000)
      // Causes: the read, and the write after the producer; three lines each per second, over ~2 seconds.
      assert.isAtMost(absorbed.length, 2 * 3 * 3)
      assert.isTrue(absorbed.some((line) => /\d+ more like it held back/.test(line.message)), "the held-back lines are counted")
      for (const line of absorbed) {
        assert.strictEqual(line.annotations.cache, "logs")
        assert.strictEqual(line.annotations.keyspace, "emails")
        assert.strictEqual(line.annotations.store, "redis")
        assert.isString(line.annotations.operation)
      }
    }).pipe(Effect.scoped), 30_000)

  it.live("the wall clock set back 1 hour mid-outage: the next second's lines still come (the rate window reads the monotonic clock)", () =>
    Effect.gen(function*() {
      const logs = yield* Harness.captureLogs
      const clock = yield* Harness.jumpingWallClock
      const absorbed = () => logs.lines.filter((line) => line.message.includes("carrying on without the cache")).length
      const burst = (from: number) =>
        Effect.forEach(Array.from({ length: 20 }, (_, i) => `user${from + i}@example.com`), (key) => Emails.getOrSet(key, Effect.succeed("produced")), {
          discard: true
        })
      const counts = yield* Effect.gen(function*() {
        yield* burst(0)
        const first = absorbed()
        clock.jump(-3_600_000)
        yield* Harness.sleep(1_100)
        yield* burst(100)
        return { first, second: absorbed() - first }
      }).pipe(
        Effect.provide(Cache.layerRedis({ url: "redis://127.0.0.1:1", namespace: "jump", connectTimeout: "100 millis", circuitBreaker: false })),
        Effect.provide(logs.layer)
      )
      assert.isAbove(counts.first, 0, "the outage is logged")
      // Two causes (the read, the write after the producer), at most 3 lines each in a second.
      assert.isAtMost(counts.first, 2 * 3, "at most 3 lines per cause in a second")
      assert.isAbove(counts.second, 0, "a second later, by real time, the outage is logged again")
    }).pipe(Effect.scoped), 30_000)

  it.live("redactKeys: errors and logs show a digest, never the key", () =>
    Effect.gen(function*() {
      const logs = yield* Harness.captureLogs
      const key = "ada@example.com"
      const { direct, other } = yield* Effect.gen(function*() {
        const direct = yield* Effect.flip(Emails.get(key))
        const other = yield* Effect.flip(Emails.get("grace@example.com"))
        yield* Emails.getOrSet(key, Effect.succeed("produced"))
        return { direct, other }
      }).pipe(
        Effect.provide(Cache.layerRedis({ url: "redis://127.0.0.1:1", namespace: "private", redactKeys: true, connectTimeout: "100 millis" })),
        Effect.provide(logs.layer)
      )
      assert.strictEqual(direct._tag, "StoreError")
      assert.match(direct.key ?? "", /^private:emails:#[A-Za-z0-9_-]{16}$/)
      assert.notStrictEqual(direct.key, other.key, "two keys, two digests")
      const texts = [direct.message, ...logs.lines.map((line) => line.message)]
      assert.isTrue(logs.lines.some((line) => line.message.includes("private:emails:#")), "the log names the entry by its digest")
      for (const text of texts) assert.notInclude(text, "ada@example.com")
    }), 30_000)
})
