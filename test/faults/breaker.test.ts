/**
 * The circuit breaker in front of Redis: during a freeze, getOrSet costs its producer and almost
 * nothing else; one probe per interval; closed again once Redis answers; logged once each way and
 * shown on a gauge.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric, MetricState, Schema } from "effect"
import { Cache, CacheKey, Keyspace } from "../../src/index.js"
import * as Harness from "./harness.js"

const Items = Keyspace.make({ name: "items", key: CacheKey.number, value: Schema.String, ttl: "10 minutes" })


const circuitOpen = (cache: string, backend: "store" | "lock") =>
  Effect.map(
    Metric.value(Cache.metrics.circuitOpen.pipe(Metric.tagged("cache", cache), Metric.tagged("store", "redis"), Metric.tagged("backend", backend))),
    (state: MetricState.MetricState.Gauge<number>) => state.value
  )

/** getOrSet calls on distinct keys, one after the other, for `millis`: how many were answered. */
const callsFor = (millis: number, from: number) =>
  Effect.gen(function*() {
    const until = Date.now() + millis
    let n = 0
    while (Date.now() < until) {
      yield* Items.getOrSet(from + n, Effect.succeed("produced"))
      n++
    }
    return n
  })

describe("circuit breaker", () => {
  it.live("the wall clock set back 1 hour while the circuit is open: it still closes on the next probe once Redis answers", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const clock = yield* Harness.jumpingWallClock
      const options = { url: server.url, timeout: "200 millis", commandTimeout: "150 millis", namespace: "breaker-clock" } as const
      yield* Effect.gen(function*() {
        yield* Items.set(0, "warm")
        server.pause()
        // Five failures open it (the default); the sixth call is refused by the open circuit.
        for (let i = 1; i <= 6; i++) yield* Effect.either(Items.get(i))
        assert.strictEqual(yield* circuitOpen("breaker-clock", "store"), 1, "open")
        clock.jump(-3_600_000)
        server.resume()
        yield* Effect.promise(() => server.admin.ping())
        // The next probe comes within openFor (1 s) of real time, whatever the wall clock says.
        yield* Harness.sleep(1_200)
        yield* Effect.either(Items.get(0))
        const read = yield* Effect.either(Items.get(0))
        assert.isTrue(read._tag === "Right", `Redis answers again: ${read._tag === "Left" ? read.left.message : ""}`)
        assert.strictEqual(yield* circuitOpen("breaker-clock", "store"), 0, "closed")
      }).pipe(Effect.provide(Cache.layerRedis(options)))
    }).pipe(Effect.scoped), 30_000)

  it.live("Redis frozen: once open, getOrSet costs its producer plus well under 1 ms; closed again when Redis answers", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const logs = yield* Harness.captureLogs
      const options = { url: server.url, timeout: "200 millis", commandTimeout: "150 millis" } as const
      const withBreaker = yield* Effect.gen(function*() {
        yield* Items.set(0, "warm")
        yield* Effect.promise(() => server.resetStats())
        server.pause()
        const calls = yield* callsFor(2_000, 1)
        const open = yield* circuitOpen("breaker", "store")
        server.resume()
        yield* Effect.promise(() => server.admin.ping())
        // The next probe (within openFor: 1 s) finds Redis again.
        yield* Harness.sleep(1_100)
        yield* Items.get(0)
        const closed = yield* Items.get(0)
        return { calls, open, closed, closedGauge: yield* circuitOpen("breaker", "store") }
      }).pipe(Effect.provide(Cache.layerRedis({ ...options, namespace: "breaker" })), Effect.provide(logs.layer))
      const withoutBreaker = yield* Effect.gen(function*() {
        yield* Items.set(0, "warm")
        server.pause()
        const calls = yield* callsFor(2_000, 100_000)
        server.resume()
        return calls
      }).pipe(Effect.provide(Cache.layerRedis({ ...options, namespace: "nobreaker", circuitBreaker: false })), Effect.provide(logs.layer))
      console.log(`Redis frozen for 2 s: ${withBreaker.calls} getOrSet calls answered with the breaker, ${withoutBreaker} without`)
      assert.strictEqual(withBreaker.open, 1, "the gauge shows the open circuit")
      // Idle, the open circuit answers ~10,000–20,000 calls in the 2 s; on a machine busy with other
      // work, still over 1,000 (about 1 ms a call at most, the first ~750 ms going to the failures
      // that open it), against ~14 without the breaker.
      assert.isAbove(withBreaker.calls, 1_000, "about a millisecond per call at most once open (the producer is immediate)")
      assert.isAbove(withBreaker.calls, 20 * withoutBreaker, "far more calls answered than without the breaker")
      assert.isAtMost(withoutBreaker, 20, "without a breaker every call waits on the frozen server (150 ms each)")
      assert.strictEqual(withBreaker.closedGauge, 0)
      assert.isTrue(withBreaker.closed._tag === "Some", "Redis is used again")
      const changes = logs.messages().filter((line) => line.includes("the circuit in front of the store"))
      assert.strictEqual(changes.length, 2, changes.join("\n"))
      assert.include(changes[0], "opened")
      assert.include(changes[1], "closed again")
    }).pipe(Effect.scoped), 30_000)

  it.live("while open, Redis sees one probe per interval, not the callers' traffic", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      yield* Effect.gen(function*() {
        yield* Items.set(0, "warm")
        // Refuse new connections and reset the open one: every call fails at once, as against a dead server.
        server.proxy.refuse(true)
        server.proxy.reset()
        yield* Harness.sleep(50)
        const failed = yield* Effect.forEach(Array.from({ length: 10 }, (_, i) => i), (i) => Effect.either(Items.get(i)))
        assert.isTrue(failed.every((r) => r._tag === "Left"))
        const last = failed[failed.length - 1]!
        assert.isTrue(last._tag === "Left" && last.left._tag === "StoreError" && String(last.left.cause).includes("circuit is open"))
        server.proxy.refuse(false)
        yield* Effect.promise(() => server.resetStats())
        // 600 ms of calls with openFor 200 ms: about three probes reach Redis, whatever the call rate.
        yield* callsFor(600, 1)
        const commands = yield* Effect.promise(() => server.commands(["select", "client|setname"]))
        const sent = Object.values(commands).reduce((a, b) => a + b, 0)
        assert.isAtMost(sent, 20, JSON.stringify(commands))
      }).pipe(Effect.provide(Cache.layerRedis({
        url: server.url,
        namespace: "probe",
        circuitBreaker: { failures: 3, openFor: "200 millis" },
        maxReconnectDelay: "5 seconds"
      })))
    }).pipe(Effect.scoped), 30_000)
})
