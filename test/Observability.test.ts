/**
 * Spans (the cache's `spans` option): recorded through a tracer that wraps Effect's own.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric, MetricLabel, Option, Schema, Tracer } from "effect"
import { Cache, CacheKey, Keyspace } from "../src/index.js"
import { recorded } from "./utils.js"

const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: Schema.String, ttl: "1 minute", tags: (id) => [`user:${id}`] })

const attribute = (span: Tracer.Span | undefined, name: string) => span?.attributes.get(name)

describe("spans", () => {
  it.effect("off by default: no span of the cache's", () =>
    Effect.gen(function*() {
      const { spans } = yield* recorded(Effect.zipRight(Users.set(1, "Ada"), Users.get(1)))
      assert.deepStrictEqual(spans.map((span) => span.name), [])
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("with spans: one per operation, the keyspace and store as attributes, hits and producer runs said", () =>
    Effect.gen(function*() {
      const { spans } = yield* recorded(Effect.gen(function*() {
        yield* Users.get(1)
        yield* Users.set(1, "Ada")
        yield* Users.get(1)
        yield* Users.getMany([1, 2])
        yield* Users.getOrSet(3, Effect.succeed("Grace"))
        yield* Users.getOrSet(3, Effect.succeed("not produced"))
        yield* Cache.invalidateTags(["user:1"])
      }))
      assert.deepStrictEqual(spans.map((span) => span.name), [
        "cache.get",
        "cache.set",
        "cache.get",
        "cache.getMany",
        "cache.getOrSet",
        "cache.produce",
        "cache.getOrSet",
        "cache.invalidateTags"
      ])
      const [miss, set, hit, many, produced, producer, found] = spans
      assert.strictEqual(attribute(miss, "cache.hit"), false)
      assert.strictEqual(attribute(hit, "cache.hit"), true)
      assert.strictEqual(attribute(set, "cache.keyspace"), "users")
      assert.strictEqual(attribute(set, "cache.store"), "memory")
      assert.strictEqual(attribute(set, "cache.name"), "spans")
      assert.strictEqual(set!.kind, "client")
      assert.strictEqual(attribute(many, "cache.keys"), 2)
      assert.strictEqual(attribute(many, "cache.hits"), 1)
      assert.strictEqual(attribute(produced, "cache.produced"), true)
      assert.strictEqual(attribute(found, "cache.produced"), false)
      // The producer's span is a child of its getOrSet's.
      assert.isTrue(Option.isSome(producer!.parent))
      assert.strictEqual(Option.getOrThrow(producer!.parent).spanId, produced!.spanId)
      for (const span of spans) assert.strictEqual(span.status._tag, "Ended", `${span.name} ended`)
    }).pipe(Effect.provide(Cache.layerMemory({ namespace: "spans", spans: true }))))

  it.effect("the README's example: cache.getOrSet > cache.produce", () =>
    Effect.gen(function*() {
      const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: Schema.String, ttl: "1 minute" })
      const program = Users.getOrSet(1, Effect.succeed("Ada")).pipe( // spans cache.getOrSet > cache.produce
        Effect.provide(Cache.layerMemory({ spans: true }))
      )
      const { value, spans } = yield* recorded(program)
      assert.strictEqual(value, "Ada")
      assert.deepStrictEqual(spans.map((span) => span.name), ["cache.getOrSet", "cache.produce"])
    }))

  it.effect("a failed operation's span ends with its failure", () =>
    Effect.gen(function*() {
      const { value, spans } = yield* recorded(Effect.either(Users.getOrSet(4, Effect.fail("source down"))))
      assert.isTrue(value._tag === "Left")
      assert.deepStrictEqual(spans.map((span) => span.name), ["cache.getOrSet", "cache.produce"])
      for (const span of spans) {
        const status = span.status
        assert.isTrue(status._tag === "Ended" && status.exit._tag === "Failure", `${span.name} failed`)
      }
    }).pipe(Effect.provide(Cache.layerMemory({ namespace: "failing", spans: true }))))
})

/** How many durations the latency histogram holds for one operation of a keyspace in a cache. */
const timings = (cache: string, keyspace: string, store: string, operation: string) =>
  Effect.map(
    Metric.value(Metric.taggedWithLabels(Cache.metrics.latency, [
      MetricLabel.make("cache", cache),
      MetricLabel.make("keyspace", keyspace),
      MetricLabel.make("store", store),
      MetricLabel.make("operation", operation)
    ])),
    (state) => state.count
  )

describe("latency metrics", () => {
  it.effect("with latencyMetrics: one duration per operation, labelled; the producer's run timed apart; none without", () =>
    Effect.gen(function*() {
      yield* Effect.provide(
        Effect.gen(function*() {
          yield* Users.get(1)
          yield* Users.set(1, "Ada")
          yield* Users.get(1)
          yield* Users.getOrSet(2, Effect.succeed("Grace"))
        }),
        Cache.layerMemory({ namespace: "timed", latencyMetrics: true })
      )
      assert.strictEqual(yield* timings("timed", "users", "memory", "get"), 2)
      assert.strictEqual(yield* timings("timed", "users", "memory", "set"), 1)
      assert.strictEqual(yield* timings("timed", "users", "memory", "getOrSet"), 1)
      assert.strictEqual(yield* timings("timed", "users", "memory", "produce"), 1)
      // No span without `spans`: a timed operation does not annotate the caller's span either.
      const { spans } = yield* recorded(Effect.provide(Users.get(1), Cache.layerMemory({ namespace: "timed", latencyMetrics: true })))
      assert.deepStrictEqual(spans, [])
      yield* Effect.provide(Users.get(1), Cache.layerMemory({ namespace: "untimed" }))
      assert.strictEqual(yield* timings("untimed", "users", "memory", "get"), 0)
    }))
})
