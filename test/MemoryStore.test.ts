import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Option, TestClock } from "effect"
import { CacheStore, MemoryStore } from "../src/index.js"
import { storeSuite } from "./suites/CacheStoreSuite.js"

storeSuite("MemoryStore", MemoryStore.layer({ capacity: 1_000 }))
storeSuite("MemoryStore with a byte budget", MemoryStore.layer({ capacity: 1_000, maxBytes: 1_000_000 }))

describe("MemoryStore", () => {
  it.effect("evicts the least recently used entry past its capacity, and counts it", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make({ capacity: 3 })
      for (const key of ["a", "b", "c"]) yield* store.set(key, key, undefined)
      yield* store.get("a") // a is now the most recently used
      yield* store.set("d", "d", undefined)
      assert.isTrue(yield* store.has("a"))
      assert.isFalse(yield* store.has("b"))
      const stats = yield* store.stats
      assert.strictEqual(stats.entries, 3)
      assert.strictEqual(stats.evictions, 1)
    }))

  it.effect("evicts past its byte budget", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make({ capacity: 1_000, maxBytes: 100 })
      for (let i = 0; i < 10; i++) yield* store.set(`k${i}`, "x".repeat(18), undefined) // 20 bytes each
      const stats = yield* store.stats
      assert.isAtMost(stats.bytes, 100)
      assert.strictEqual(stats.entries, 5)
      assert.strictEqual(stats.evictions, 5)
      assert.isTrue(yield* store.has("k9"))
      assert.isFalse(yield* store.has("k0"))
    }))

  it.effect("refuses an entry over maxEntryBytes with a typed error and drops the old value", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make({ capacity: 10, maxEntryBytes: 50 })
      yield* store.set("big", "small", undefined)
      const error = yield* Effect.flip(store.set("big", "x".repeat(100), undefined))
      assert.strictEqual(error.reason, "TooLarge")
      assert.strictEqual(error.key, "big")
      assert.isFalse(yield* store.has("big"))
    }))

  it.effect("keeps live values as they are: a hit returns the same instance", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make()
      const value = { deep: { list: [1, 2, 3] } }
      yield* store.set("live", new CacheStore.LiveValue(value, "fp", 10), undefined)
      const got = Option.getOrThrow(yield* store.get("live"))
      assert.instanceOf(got, CacheStore.LiveValue)
      assert.strictEqual((got as CacheStore.LiveValue).value, value)
    }))

  it.effect("an expired entry does not count as present for add, delete or expire", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make()
      yield* store.set("gone", "v", Duration.millis(1))
      yield* TestClock.adjust(Duration.millis(5))
      assert.isFalse(yield* store.delete("gone"))
      assert.isFalse(yield* store.expire("gone", Duration.seconds(1)))
    }))

  it("rejects a capacity that is not a positive integer", () => {
    assert.throws(() => Effect.runSync(MemoryStore.make({ capacity: 0 })), /capacity/)
  })
})
