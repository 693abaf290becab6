import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric, MetricLabel, Option, Schema, TestClock } from "effect"
import { Cache, CacheEntry, CacheKey, CacheStore, Keyspace, MemoryStore } from "../src/index.js"
import { assertSame, layerSerializing } from "./utils.js"

const Names = Keyspace.make({ name: "names", key: CacheKey.number, value: Schema.String, ttl: "1 minute" })
const layer = Cache.layer({ namespace: "ks" }).pipe(Layer.provideMerge(MemoryStore.layer()))
const failures = Metric.value(
  Metric.taggedWithLabels(Cache.metrics.decodeFailures, [
    MetricLabel.make("cache", "ks-bytes"),
    MetricLabel.make("keyspace", "names"),
    MetricLabel.make("store", "serializing")
  ])
).pipe(Effect.map((state) => state.count))

describe("Keyspace", () => {
  it.effect("getMany and setMany work in one batch, in order", () =>
    Effect.gen(function*() {
      yield* Names.setMany([[1, "one"], [3, "three"]])
      assertSame(yield* Names.getMany([1, 2, 3]), [Option.some("one"), Option.none(), Option.some("three")])
      yield* Names.invalidateMany([1, 3])
      assertSame(yield* Names.getMany([1, 3]), [Option.none(), Option.none()])
    }).pipe(Effect.provide(layer)))

  it.effect("add stores only when absent; has does not decode", () =>
    Effect.gen(function*() {
      assert.isTrue(yield* Names.add(1, "first"))
      assert.isFalse(yield* Names.add(1, "second"))
      assertSame(yield* Names.get(1), Option.some("first"))
      assert.isTrue(yield* Names.has(1))
      yield* TestClock.adjust("1 minute")
      assert.isFalse(yield* Names.has(1))
      assert.isTrue(yield* Names.add(1, "third"))
    }).pipe(Effect.provide(layer)))

  it.effect("clear empties one keyspace and leaves its neighbours", () =>
    Effect.gen(function*() {
      const Names2 = Keyspace.make({ name: "names2", key: CacheKey.number, value: Schema.String })
      yield* Names.setMany([[1, "a"], [2, "b"]])
      yield* Names2.set(1, "kept")
      assert.strictEqual(yield* Names.clear, 2)
      assertSame(yield* Names2.get(1), Option.some("kept"))
    }).pipe(Effect.provide(layer)))

  it.effect("entries live under <namespace>:<name>:<segment>", () =>
    Effect.gen(function*() {
      const Members = Keyspace.make({ name: "members", key: CacheKey.struct({ org: CacheKey.string, id: CacheKey.number }), value: Schema.String })
      yield* Members.set({ org: "acme", id: 7 }, "x")
      const store = yield* CacheStore.CacheStore
      assert.isTrue(yield* store.has("ks:members:id=7,org=acme"))
    }).pipe(Effect.provide(layer)))

  it.effect("a getMany with one invalid key fails with InvalidKeyError before touching the store", () =>
    Effect.gen(function*() {
      const Texts = Keyspace.make({ name: "texts", key: CacheKey.string, value: Schema.String })
      const error = yield* Effect.flip(Texts.getMany(["fine", "bad\u0007"]))
      assert.strictEqual(error._tag, "InvalidKeyError")
    }).pipe(Effect.provide(layer)))

  it.effect("getMany over a store that keeps bytes: corrupt entries are misses, dropped in one batch and counted", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      yield* Names.setMany([[1, "one"], [4, "four"]])
      yield* store.set("ks-bytes:names:2", new TextEncoder().encode("garbage"), undefined)
      const header = { fingerprint: Names.fingerprint, version: 1, freshUntil: Infinity, staleUntil: Infinity, tags: [], isFailure: false }
      yield* store.set("ks-bytes:names:3", CacheEntry.encode(header, "12345"), undefined) // right header, wrong shape
      const before = yield* failures
      assertSame(yield* Names.getMany([1, 2, 3, 4, 5]), [
        Option.some("one"),
        Option.none(),
        Option.none(),
        Option.some("four"),
        Option.none()
      ])
      assert.isFalse(yield* store.has("ks-bytes:names:2"))
      assert.isFalse(yield* store.has("ks-bytes:names:3"))
      assert.isTrue(yield* store.has("ks-bytes:names:1"))
      assert.strictEqual((yield* failures) - before, 2)
    }).pipe(Effect.provide(Cache.layer({ namespace: "ks-bytes" }).pipe(Layer.provideMerge(layerSerializing())))))

  it("refuses a name with a colon or control characters at construction", () => {
    assert.throws(() => Keyspace.make({ name: "a:b", key: CacheKey.string, value: Schema.String }), /keyspace name/)
    assert.throws(() => Keyspace.make({ name: "", key: CacheKey.string, value: Schema.String }), /keyspace name/)
  })
})
