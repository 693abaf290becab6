/**
 * Bounds end to end, against a frozen server (SIGSTOP): every direct call settles within 1.1× the
 * cache timeout, and getOrSet within one timeout plus its producer's time, whichever of the cache
 * timeout and the client's commandTimeout is the shorter. Real time; the margin (150 ms) is for a
 * loaded machine, not for the code.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Cache, CacheKey, Keyspace } from "../../src/index.js"
import * as Harness from "./harness.js"

const Items = Keyspace.make({ name: "items", key: CacheKey.number, value: Schema.String, ttl: "10 minutes" })
const margin = 150

const direct = [
  ["get", Items.get(1)],
  ["getMany", Items.getMany([1, 2, 3])],
  ["set", Items.set(1, "x")],
  ["setMany", Items.setMany([[1, "x"], [2, "y"]])],
  ["invalidate", Items.invalidate(1)],
  ["invalidateMany", Items.invalidateMany([1, 2])],
  ["has", Items.has(1)],
  ["clear", Cache.clear],
  ["200 concurrent gets", Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) => Items.get(i), { concurrency: "unbounded" })]
] as const

const frozen = (timeoutMillis: number, commandTimeoutMillis: number) =>
  Effect.gen(function*() {
    const server = yield* Harness.server()
    const unhandled = yield* Harness.unhandledRejections
    const bound = Math.min(timeoutMillis, commandTimeoutMillis)
    const timings: Record<string, number> = {}
    yield* Effect.gen(function*() {
      yield* Items.set(0, "warm")
      server.pause()
      for (const [name, call] of direct) {
        const result = yield* Harness.timed(Effect.either(call as Effect.Effect<unknown, unknown, Cache.Cache>))
        assert.strictEqual(result.value._tag, "Left", `${name} failed`)
        timings[name] = result.millis
        assert.isBelow(result.millis, 1.1 * timeoutMillis + margin, `${name} within 1.1× the timeout`)
      }
      const produced = yield* Harness.timed(Items.getOrSet(5, Effect.as(Effect.sleep("100 millis"), "v")))
      assert.strictEqual(produced.value, "v")
      timings.getOrSet = produced.millis
      assert.isBelow(produced.millis, bound + 100 + margin, "getOrSet: one store timeout and the producer")
      const once = yield* Harness.timed(Effect.either(Items.getOrSet(6, Effect.succeed("v"), { lockMode: "at-most-once" })))
      timings["getOrSet at most once"] = once.millis
      assert.isTrue(once.value._tag === "Left" && once.value.left._tag === "LockError")
      assert.isBelow(once.millis, 2 * bound + margin, "at most once: the read, then the lock, each bounded")
      server.resume()
    }).pipe(Effect.provide(Cache.layerRedis({
      url: server.url,
      namespace: "bounds",
      timeout: `${timeoutMillis} millis`,
      commandTimeout: `${commandTimeoutMillis} millis`,
      // Each operation meets the frozen server itself (an open circuit would answer for it at once).
      circuitBreaker: false
    })))
    console.log(`frozen server, timeout ${timeoutMillis} ms, commandTimeout ${commandTimeoutMillis} ms: ${JSON.stringify(timings)}`)
    assert.deepStrictEqual(unhandled, [])
  }).pipe(Effect.scoped)

describe("bounds on a frozen server", () => {
  it.live("cache timeout shorter than the command timeout (400 ms, 1 s)", () => frozen(400, 1_000), 60_000)
  it.live("command timeout shorter than the cache timeout (600 ms, 500 ms)", () => frozen(600, 500), 60_000)
})
