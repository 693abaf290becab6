import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Option, TestClock } from "effect"
import { CacheEntry, MemoryStore, RecordingStore } from "../src/index.js"
import { storeSuite } from "../src/testing.js"

const memory = { capabilities: { liveValues: true, synchronousRead: true, assignsVersions: true, conditionalWrites: true, expire: true, increment: true } } as const
storeSuite("MemoryStore", MemoryStore.layer({ capacity: 1_000 }), memory)
storeSuite("MemoryStore with a byte budget", MemoryStore.layer({ capacity: 1_000, maxBytes: 1_000_000 }), memory)
storeSuite("RecordingStore", RecordingStore.layer(), { capabilities: { assignsVersions: true, conditionalWrites: true, expire: true, increment: true } })

const bytes = (text: string) => new TextEncoder().encode(text)

describe("MemoryStore", () => {
  it.effect("evicts the least recently used entry past its capacity, and counts it", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make({ capacity: 3 })
      for (const key of ["a", "b", "c"]) yield* store.set(key, bytes(key), undefined)
      yield* store.get("a") // a is now the most recently used
      yield* store.set("d", bytes("d"), undefined)
      assert.isTrue(yield* store.has("a"))
      assert.isFalse(yield* store.has("b"))
      const stats = yield* store.stats
      assert.strictEqual(stats.entries, 3)
      assert.strictEqual(stats.evictions, 1)
    }))

  it.effect("evicts past its byte budget", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make({ capacity: 1_000, maxBytes: 100 })
      for (let i = 0; i < 10; i++) yield* store.set(`k${i}`, bytes("x".repeat(18)), undefined) // 20 bytes each
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
      yield* store.set("big", bytes("small"), undefined)
      const error = yield* Effect.flip(store.set("big", bytes("x".repeat(100)), undefined))
      assert.strictEqual(error.reason, "TooLarge")
      assert.strictEqual(error.key, "big")
      assert.isFalse(yield* store.has("big"))
    }))

  it.effect("keeps live values as they are: a hit returns the same instance", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make()
      const value = { deep: { list: [1, 2, 3] } }
      const live = CacheEntry.Live.make(value, { fingerprint: "000000000000", freshUntil: Infinity, staleUntil: Infinity, size: 10 })
      yield* store.set("live", live, undefined)
      const got = Option.getOrThrow(yield* store.get("live"))
      assert.strictEqual(got, live)
      assert.strictEqual((got as CacheEntry.Live).value, value)
    }))

  it.effect("an expired entry does not count as present for add or delete", () =>
    Effect.gen(function*() {
      const store = yield* MemoryStore.make()
      yield* store.set("gone", bytes("v"), Duration.millis(1))
      yield* TestClock.adjust(Duration.millis(5))
      assert.isFalse(yield* store.delete("gone"))
      assert.isTrue(yield* store.add("gone", bytes("again"), undefined))
    }))

  it("rejects a capacity that is not a positive integer", () => {
    assert.throws(() => Effect.runSync(MemoryStore.make({ capacity: 0 })), /capacity/)
  })
})
