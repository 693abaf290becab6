import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Schema } from "effect"
import { Cache, CacheEntry, CacheKey, CacheSerializer, CacheStore, Keyspace } from "../src/index.js"
import { assertSame, layerSerializing } from "./utils.js"

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
      assert.instanceOf(raw, Uint8Array)
      const entry = CacheEntry.decode(raw as Uint8Array)
      assert.strictEqual(entry?.fingerprint, Space.fingerprint)
      // Compared as values: the msgpack serializer gives bytes back as a Buffer (a Uint8Array).
      const got = yield* Space.get("k")
      assert.isTrue(Option.isSome(got), "a hit")
      assert.deepStrictEqual(Option.getOrThrow(got), sample)
      // A copy of the bytes (as a remote store hands back) reads the same.
      yield* store.set(`ser:${name}:k`, Uint8Array.from(raw as Uint8Array), undefined)
      const again = yield* Space.get("k")
      assert.isTrue(Option.isSome(again), "a hit")
      assert.deepStrictEqual(Option.getOrThrow(again), sample)
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
      assertSame(yield* Space.get("k"), Option.some("HELLO"))
      const store = yield* CacheStore.CacheStore
      const raw = Option.getOrThrow(yield* store.get("ser:async:k"))
      const entry = CacheEntry.decode(raw as Uint8Array)
      assert.strictEqual(entry === undefined ? undefined : Buffer.from(entry.body).toString("utf8"), "\"hello\"")
    }).pipe(Effect.provide(Cache.layer({ namespace: "ser" }).pipe(Layer.provideMerge(layerSerializing())))))

  it.effect("corrupt MessagePack bytes are a miss, not a defect", () =>
    Effect.gen(function*() {
      const Space = Keyspace.make({ name: "mp", key: CacheKey.string, value: Schema.Struct({ n: Schema.Number }), serializer: CacheSerializer.msgpack })
      const store = yield* CacheStore.CacheStore
      const bad = CacheEntry.encode(
        { fingerprint: Space.fingerprint, version: 1, freshUntil: Infinity, staleUntil: Infinity, tags: [], isFailure: false },
        new Uint8Array([0xc1, 0xff, 0x00])
      )
      yield* store.set("ser:mp:k", bad, undefined)
      assert.isTrue(Option.isNone(yield* Space.get("k")))
      assert.isFalse(yield* store.has("ser:mp:k"))
    }).pipe(Effect.provide(Cache.layer({ namespace: "ser" }).pipe(Layer.provideMerge(layerSerializing())))))
})

describe("CacheSerializer.json", () => {
  const provide = Effect.provide(Cache.layer({ namespace: "ser" }).pipe(Layer.provideMerge(layerSerializing())))
  const bodyOf = (raw: CacheStore.Encoded) => {
    const entry = CacheEntry.decode(raw as Uint8Array)
    return entry === undefined ? undefined : Buffer.from(entry.body).toString("utf8")
  }

  const Everything = Schema.Struct({
    bytes: Schema.Uint8ArrayFromSelf,
    big: Schema.BigIntFromSelf,
    at: Schema.DateFromSelf,
    invalidAt: Schema.DateFromSelf,
    byId: Schema.MapFromSelf({ key: Schema.Number, value: Schema.Struct({ name: Schema.String }) }),
    tags: Schema.SetFromSelf(Schema.String),
    missing: Schema.Undefined,
    list: Schema.Array(Schema.UndefinedOr(Schema.Number)),
    numbers: Schema.Array(Schema.Number),
    "~t": Schema.String,
    "~~odd": Schema.Number
  })
  const everything: typeof Everything.Type = {
    bytes: new Uint8Array([0, 1, 254, 255]),
    big: -(2n ** 90n),
    at: new Date("2026-12-04T10:00:00.123Z"),
    invalidAt: new Date(NaN),
    byId: new Map([[1, { name: "a" }], [2, { name: "b" }]]),
    tags: new Set(["x", "~y"]),
    missing: undefined,
    list: [1, undefined, 3],
    numbers: [NaN, Infinity, -Infinity, -0, 0.5],
    "~t": "not a tag",
    "~~odd": 2
  }

  it.effect("carries bytes, bigints, Dates, Maps, Sets, undefined and non-finite numbers through a byte store", () =>
    Effect.gen(function*() {
      const Space = Keyspace.make({ name: "all", key: CacheKey.string, value: Everything })
      yield* Space.set("k", everything)
      const got = Option.getOrThrow(yield* Space.get("k"))
      assert.deepStrictEqual(got, everything)
      assert.isTrue(Object.is(got.numbers[3], -0))
      assert.isTrue(Object.hasOwn(got, "missing"))
      const store = yield* CacheStore.CacheStore
      assert.isTrue(bodyOf(Option.getOrThrow(yield* store.get("ser:all:k")) as CacheStore.Encoded)?.startsWith("~"))
    }).pipe(provide))

  it.effect("stores plain data as exactly its JSON.stringify text", () =>
    Effect.gen(function*() {
      const Plain = Schema.Struct({ id: Schema.Number, name: Schema.String, tags: Schema.Array(Schema.String), "~k": Schema.Boolean })
      const Space = Keyspace.make({ name: "plain", key: CacheKey.string, value: Plain })
      const value = { id: 1, name: "é😀\u0000\"", tags: ["a"], "~k": true }
      yield* Space.set("k", value)
      const store = yield* CacheStore.CacheStore
      assert.strictEqual(bodyOf(Option.getOrThrow(yield* store.get("ser:plain:k")) as CacheStore.Encoded), JSON.stringify(value))
      assertSame(yield* Space.get("k"), Option.some(value))
    }).pipe(provide))

  it("refuses, when the keyspace is defined, a schema whose encoded form is a runtime object", () => {
    class Point {
      constructor(readonly x: number) {}
    }
    assert.throws(
      () => Keyspace.make({ name: "opt", key: CacheKey.string, value: Schema.OptionFromSelf(Schema.Number) }),
      /CacheSerializer\.json cannot store this value schema: its encoded form contains effect\/Option.*Schema\.Option instead/
    )
    assert.throws(
      () => Keyspace.make({ name: "pt", key: CacheKey.string, value: Schema.Struct({ at: Schema.instanceOf(Point) }) }),
      /CacheSerializer\.json cannot store/
    )
    assert.throws(
      () =>
        Keyspace.make({
          name: "mp",
          key: CacheKey.string,
          value: Schema.MapFromSelf({ key: Schema.String, value: Schema.Number }),
          serializer: CacheSerializer.msgpack
        }),
      /CacheSerializer\.msgpack cannot store this value schema: its encoded form contains ReadonlyMap/
    )
    // What the schemas encode to data is fine: Option, Map, Date as an ISO string, a recursive tree.
    Keyspace.make({ name: "ok", key: CacheKey.string, value: Schema.Struct({ o: Schema.Option(Schema.Number), m: Schema.Map({ key: Schema.String, value: Schema.Date }), t: Tree }) })
  })

  it.effect("a value that is not data fails the write with a CodecError and stores nothing", () =>
    Effect.gen(function*() {
      class Point {
        constructor(readonly x: number) {}
      }
      const Any = Keyspace.make({ name: "any", key: CacheKey.string, value: Schema.Unknown })
      const cyclic: Record<string, unknown> = {}
      cyclic.self = cyclic
      const withProto = JSON.parse(`{"__proto__":{"isAdmin":true}}`)
      for (const value of [new Point(1), () => 1, Symbol("s"), cyclic, withProto, [1, { f: Math.max }]]) {
        const error = yield* Effect.flip(Any.set("k", value))
        assert.strictEqual(error._tag, "CodecError")
      }
      const store = yield* CacheStore.CacheStore
      assert.isFalse(yield* store.has("ser:any:k"))
    }).pipe(provide))

  it.effect("a stored record with an own __proto__ key, escaped or not, or a malformed tag is a miss", () =>
    Effect.gen(function*() {
      const Roles = Keyspace.make({ name: "roles", key: CacheKey.string, value: Schema.Record({ key: Schema.String, value: Schema.Unknown }) })
      const store = yield* CacheStore.CacheStore
      const write = (body: string) =>
        store.set(
          "ser:roles:k",
          CacheEntry.encode({ fingerprint: Roles.fingerprint, version: 1, freshUntil: Infinity, staleUntil: Infinity, tags: [], isFailure: false }, body),
          undefined
        )
      for (
        const body of [
          `{"__proto__":{"isAdmin":true}}`,
          `{"a":[{"\\u005f_proto__":{"isAdmin":true}}]}`,
          `~{"~__proto__":{"isAdmin":true}}`,
          `~{"x":{"~t":"big","v":"12x"}}`,
          `~{"x":{"~t":"nope"}}`,
          `~[1,`
        ]
      ) {
        yield* write(body)
        const got = yield* Roles.get("k")
        assert.isTrue(Option.isNone(got), body)
        assert.isFalse(yield* store.has("ser:roles:k"), `${body} is healed`)
      }
      yield* write(`{"name":"ok","constructor":{"prototype":{"isAdmin":true}}}`)
      const safe = Option.getOrThrow(yield* Roles.get("k"))
      assert.isUndefined(({} as Record<string, unknown>).isAdmin)
      assert.strictEqual(Object.getPrototypeOf(safe), Object.prototype)
    }).pipe(provide))
})
