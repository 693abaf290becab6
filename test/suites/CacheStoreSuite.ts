/**
 * The store conformance suite: every CacheStore operation, TTL driven by the Clock, prefixes and
 * clear. A store proves itself with one line: `storeSuite("my store", MyStore.layer(...))`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option, TestClock } from "effect"
import { CacheStore } from "../../src/index.js"

export interface SuiteOptions {
  /**
   * Moves the store's notion of time forward. Default `TestClock.adjust`, for stores that read Effect's
   * Clock; a server with a clock of its own (Redis) passes a real wait and a short `unit`.
   */
  readonly advance?: (duration: Duration.Duration) => Effect.Effect<void>
  /** The time unit of the suite's ttls; every check keeps at least one unit of margin. Default 1 second. */
  readonly unit?: Duration.DurationInput
}

const text = (value: Option.Option<CacheStore.StoredValue>): string | undefined => {
  if (Option.isNone(value)) return undefined
  const v = value.value
  if (typeof v === "string") return v
  if (v instanceof Uint8Array) return new TextDecoder().decode(v)
  throw new Error("expected an encoded value")
}

export const storeSuite = <E>(
  name: string,
  layer: Layer.Layer<CacheStore.CacheStore, E>,
  options: SuiteOptions = {}
) => {
  const advance = options.advance ?? ((d: Duration.Duration) => TestClock.adjust(d))
  const unit = Duration.decode(options.unit ?? "1 second")
  const units = (n: number) => Duration.times(unit, n)
  const test = (title: string, body: (store: CacheStore.CacheStore) => Effect.Effect<void, unknown>) =>
    it.effect(title, () => Effect.flatMap(CacheStore.CacheStore, body).pipe(Effect.provide(layer)))

  describe(`CacheStore conformance: ${name}`, () => {
    test("a missing key reads as None", (store) =>
      Effect.gen(function*() {
        assert.isTrue(Option.isNone(yield* store.get("t:missing")))
        assert.isFalse(yield* store.has("t:missing"))
      }))

    test("set then get returns the text, and set overwrites", (store) =>
      Effect.gen(function*() {
        yield* store.set("t:a", "one", undefined)
        assert.strictEqual(text(yield* store.get("t:a")), "one")
        yield* store.set("t:a", "two", undefined)
        assert.strictEqual(text(yield* store.get("t:a")), "two")
        yield* store.set("t:empty", "", undefined)
        assert.strictEqual(text(yield* store.get("t:empty")), "")
      }))

    test("bytes round-trip byte for byte", (store) =>
      Effect.gen(function*() {
        const bytes = new Uint8Array(256).map((_, i) => i)
        yield* store.set("t:bytes", bytes, undefined)
        const got = Option.getOrThrow(yield* store.get("t:bytes"))
        assert.instanceOf(got, Uint8Array)
        assert.deepStrictEqual(Array.from(got as Uint8Array), Array.from(bytes))
      }))

    test("an entry expires after its ttl, read through the Clock", (store) =>
      Effect.gen(function*() {
        yield* store.set("t:ttl", "v", units(4))
        yield* store.set("t:forever", "v", undefined)
        yield* advance(units(2))
        assert.strictEqual(text(yield* store.get("t:ttl")), "v")
        yield* advance(units(3))
        assert.isTrue(Option.isNone(yield* store.get("t:ttl")))
        assert.isFalse(yield* store.has("t:ttl"))
        assert.strictEqual(text(yield* store.get("t:forever")), "v")
      }))

    test("a ttl of zero or less stores nothing and removes the old value", (store) =>
      Effect.gen(function*() {
        yield* store.set("t:z", "v", undefined)
        yield* store.set("t:z", "w", Duration.zero)
        assert.isTrue(Option.isNone(yield* store.get("t:z")))
      }))

    test("getMany answers in order, with None for misses", (store) =>
      Effect.gen(function*() {
        yield* store.setMany([
          { key: "t:m1", value: "1", ttl: undefined },
          { key: "t:m3", value: "3", ttl: units(2) }
        ])
        const got = yield* store.getMany(["t:m1", "t:m2", "t:m3"])
        assert.deepStrictEqual(got.map(text), ["1", undefined, "3"])
        assert.deepStrictEqual(yield* store.getMany([]), [])
        yield* advance(units(3))
        assert.deepStrictEqual((yield* store.getMany(["t:m1", "t:m3"])).map(text), ["1", undefined])
      }))

    test("add writes only when no live entry exists", (store) =>
      Effect.gen(function*() {
        assert.isTrue(yield* store.add("t:add", "first", units(1)))
        assert.isFalse(yield* store.add("t:add", "second", undefined))
        assert.strictEqual(text(yield* store.get("t:add")), "first")
        yield* advance(units(2))
        assert.isTrue(yield* store.add("t:add", "third", undefined))
        assert.strictEqual(text(yield* store.get("t:add")), "third")
      }))

    test("delete and deleteMany report what they removed", (store) =>
      Effect.gen(function*() {
        yield* store.set("t:d1", "1", undefined)
        yield* store.set("t:d2", "2", undefined)
        yield* store.set("t:d3", "3", undefined)
        assert.isTrue(yield* store.delete("t:d1"))
        assert.isFalse(yield* store.delete("t:d1"))
        assert.strictEqual(yield* store.deleteMany(["t:d2", "t:d3", "t:nope"]), 2)
        assert.strictEqual(yield* store.deleteMany([]), 0)
        assert.isFalse(yield* store.has("t:d2"))
      }))

    test("increment counts from zero, keeps the ttl and refuses non-integers", (store) =>
      Effect.gen(function*() {
        assert.strictEqual(yield* store.increment("t:n", 1), 1)
        assert.strictEqual(yield* store.increment("t:n", 41), 42)
        assert.strictEqual(yield* store.increment("t:n", -50), -8)
        yield* store.set("t:ttl-n", "5", units(2))
        assert.strictEqual(yield* store.increment("t:ttl-n", 1), 6)
        yield* advance(units(3))
        assert.isFalse(yield* store.has("t:ttl-n"))
        yield* store.set("t:text", "hello", undefined)
        const error = yield* Effect.flip(store.increment("t:text", 1))
        assert.strictEqual(error._tag, "StoreError")
        assert.strictEqual(error.reason, "WrongType")
        assert.strictEqual(text(yield* store.get("t:text")), "hello")
      }))

    test("expire sets a new ttl on a live entry only", (store) =>
      Effect.gen(function*() {
        yield* store.set("t:e", "v", undefined)
        assert.isTrue(yield* store.expire("t:e", units(4)))
        assert.isFalse(yield* store.expire("t:missing", units(4)))
        yield* advance(units(2))
        assert.isTrue(yield* store.has("t:e"))
        yield* advance(units(3))
        assert.isFalse(yield* store.has("t:e"))
      }))

    test("clear removes exactly the prefix, with special characters taken literally", (store) =>
      Effect.gen(function*() {
        const keys = ["t1:a", "t1:b", "t10:a", "t1x", "a[b]:1", "a[b]:2", "ab:1", "a*:1", "a?:1"]
        for (const key of keys) yield* store.set(key, "v", undefined)
        assert.strictEqual(yield* store.clear("t1:"), 2)
        assert.isTrue(yield* store.has("t10:a"))
        assert.isTrue(yield* store.has("t1x"))
        assert.strictEqual(yield* store.clear("a[b]:"), 2)
        assert.isTrue(yield* store.has("ab:1"))
        assert.strictEqual(yield* store.clear("a*:"), 1)
        assert.isTrue(yield* store.has("a?:1"))
        assert.strictEqual(yield* store.clear("nothing:"), 0)
      }))

    test("keys with unicode and glob characters are stored as they are", (store) =>
      Effect.gen(function*() {
        const keys = ["t:é😀", "t:*", "t:?", "t:[a-z]", "t:\\", "t:%41", "t: spaced "]
        for (const [i, key] of keys.entries()) yield* store.set(key, String(i), undefined)
        for (const [i, key] of keys.entries()) assert.strictEqual(text(yield* store.get(key)), String(i))
      }))
  })
}
