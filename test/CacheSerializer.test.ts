import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Schema } from "effect"
import { Cache, CacheKey, CacheSerializer, CacheStore, Keyspace } from "../src/index.js"
import { layerSerializing } from "./utils.js"

interface Tree {
  readonly value: number
  readonly children: ReadonlyArray<Tree>
}
const Tree: Schema.Schema<Tree> = Schema.Struct({
  value: Schema.Number,
  children: Schema.Array(Schema.suspend((): Schema.Schema<Tree> => Tree))
})

describe("CacheSerializer.fingerprint", () => {
  it("is stable, and changes with the shape, the serializer or the version", () => {
    const A = Schema.Struct({ id: Schema.Number, name: Schema.String })
    const fp = CacheSerializer.fingerprint(A, CacheSerializer.json)
    assert.match(fp, /^[0-9a-f]{12}$/)
    assert.strictEqual(fp, CacheSerializer.fingerprint(Schema.Struct({ name: Schema.String, id: Schema.Number }), CacheSerializer.json))
    assert.strictEqual(fp, CacheSerializer.fingerprint(A.annotations({ description: "docs only" }), CacheSerializer.json))
    const others = [
      CacheSerializer.fingerprint(Schema.Struct({ id: Schema.String, name: Schema.String }), CacheSerializer.json),
      CacheSerializer.fingerprint(Schema.Struct({ id: Schema.Number }), CacheSerializer.json),
      CacheSerializer.fingerprint(Schema.Struct({ id: Schema.Number, name: Schema.optional(Schema.String) }), CacheSerializer.json),
      CacheSerializer.fingerprint(Schema.Struct({ id: Schema.Int, name: Schema.String }), CacheSerializer.json),
      CacheSerializer.fingerprint(Schema.Struct({ id: Schema.Number, name: Schema.Date }), CacheSerializer.json),
      CacheSerializer.fingerprint(A, CacheSerializer.msgpack),
      CacheSerializer.fingerprint(A, CacheSerializer.json, "2")
    ]
    assert.strictEqual(new Set([fp, ...others]).size, others.length + 1)
  })

  it("terminates on recursive schemas", () => {
    assert.match(CacheSerializer.fingerprint(Tree, CacheSerializer.json), /^[0-9a-f]{12}$/)
  })
})

const roundTrip = <A, I>(name: string, value: Schema.Schema<A, I>, serializer: CacheSerializer.CacheSerializer<I>, sample: A) =>
  it.effect(`${name} round-trips through a store that keeps bytes`, () =>
    Effect.gen(function*() {
      const Space = Keyspace.make({ name, key: CacheKey.string, value, serializer })
      yield* Space.set("k", sample)
      const store = yield* CacheStore.CacheStore
      const raw = Option.getOrThrow(yield* store.get(`ser:${name}:k`))
      assert.strictEqual(typeof raw === "string" ? "text" : "binary", serializer.format)
      assert.deepStrictEqual(yield* Space.get("k"), Option.some(sample))
      // What a remote store returns may come back as bytes whatever was written: still readable.
      const asBytes = typeof raw === "string" ? new TextEncoder().encode(raw) : raw
      yield* store.set(`ser:${name}:k`, asBytes as CacheStore.Encoded, undefined)
      assert.deepStrictEqual(yield* Space.get("k"), Option.some(sample))
    }).pipe(Effect.provide(Cache.layer({ namespace: "ser" }).pipe(Layer.provideMerge(layerSerializing())))))

describe("serializers", () => {
  const Blob = Schema.Struct({ name: Schema.String, data: Schema.Uint8ArrayFromSelf, at: Schema.Date })
  roundTrip("json", Tree, CacheSerializer.json, { value: 1, children: [{ value: 2, children: [] }] })
  roundTrip("msgpack", Blob, CacheSerializer.msgpack, {
    name: "blob",
    data: new Uint8Array([0, 1, 2, 255]),
    at: new Date("2026-01-01T00:00:00Z")
  })
  roundTrip("string", Schema.String, CacheSerializer.string, "plain text: é😀")
  roundTrip("bytes", Schema.Uint8ArrayFromSelf, CacheSerializer.bytes, new Uint8Array(300).map((_, i) => i % 256))

  it.effect("a value schema with an async transformation still round-trips (decoded through Effect)", () =>
    Effect.gen(function*() {
      const Slow = Schema.transformOrFail(Schema.String, Schema.String, {
        strict: true,
        decode: (s) => Effect.promise(() => Promise.resolve(s.toUpperCase())),
        encode: (s) => Effect.promise(() => Promise.resolve(s.toLowerCase()))
      })
      const Space = Keyspace.make({ name: "async", key: CacheKey.string, value: Slow })
      yield* Space.set("k", "HELLO")
      assert.deepStrictEqual(yield* Space.get("k"), Option.some("HELLO"))
      const store = yield* CacheStore.CacheStore
      const raw = Option.getOrThrow(yield* store.get("ser:async:k"))
      assert.isTrue(typeof raw === "string" && raw.endsWith(":\"hello\""))
    }).pipe(Effect.provide(Cache.layer({ namespace: "ser" }).pipe(Layer.provideMerge(layerSerializing())))))

  it.effect("corrupt MessagePack bytes are a miss, not a defect", () =>
    Effect.gen(function*() {
      const Space = Keyspace.make({ name: "mp", key: CacheKey.string, value: Schema.Struct({ n: Schema.Number }), serializer: CacheSerializer.msgpack })
      const store = yield* CacheStore.CacheStore
      const header = new TextEncoder().encode(`ck1:${Space.fingerprint}:`)
      const bad = new Uint8Array([...header, 0xc1, 0xff, 0x00])
      yield* store.set("ser:mp:k", bad, undefined)
      assert.isTrue(Option.isNone(yield* Space.get("k")))
      assert.isFalse(yield* store.has("ser:mp:k"))
    }).pipe(Effect.provide(Cache.layer({ namespace: "ser" }).pipe(Layer.provideMerge(layerSerializing())))))
})
