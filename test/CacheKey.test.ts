import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, FastCheck, Schema } from "effect"
import { CacheKey } from "../src/index.js"

const encode = <K>(codec: CacheKey.CacheKey<K>, key: K) => Schema.encodeSync(codec)(key)
const decode = <K>(codec: CacheKey.CacheKey<K>, segment: string) => Schema.decodeSync(codec)(segment)

describe("CacheKey", () => {
  it("string and number keys", () => {
    assert.strictEqual(encode(CacheKey.string, "ada"), "ada")
    assert.strictEqual(encode(CacheKey.number, 42), "42")
    assert.strictEqual(encode(CacheKey.number, -1.5), "-1.5")
    assert.strictEqual(decode(CacheKey.number, "42"), 42)
  })

  it("struct keys are written in field-name order whatever the property order", () => {
    const Member = CacheKey.struct({ org: CacheKey.string, id: CacheKey.number })
    assert.strictEqual(encode(Member, { org: "acme", id: 7 }), "id=7,org=acme")
    assert.strictEqual(encode(Member, { id: 7, org: "acme" }), "id=7,org=acme")
    assert.deepStrictEqual(decode(Member, "id=7,org=acme"), { org: "acme", id: 7 })
  })

  it("struct keys never collide through separator characters inside a field", () => {
    const Pair = CacheKey.struct({ a: CacheKey.string, b: CacheKey.string })
    assert.notStrictEqual(encode(Pair, { a: "x,b=y", b: "" }), encode(Pair, { a: "x", b: "y,b=" }))
    FastCheck.assert(
      FastCheck.property(
        FastCheck.record({ a: FastCheck.string(), b: FastCheck.string() }),
        FastCheck.record({ a: FastCheck.string(), b: FastCheck.string() }),
        (x, y) => (x.a === y.a && x.b === y.b) === (encode(Pair, x) === encode(Pair, y))
      ),
      { numRuns: 2_000 }
    )
    FastCheck.assert(
      FastCheck.property(FastCheck.record({ a: FastCheck.string(), b: FastCheck.string() }), (x) => {
        const back = decode(Pair, encode(Pair, x))
        return back.a === x.a && back.b === x.b
      })
    )
  })

  it("template keys join literal words and escaped parts", () => {
    const UserInOrg = CacheKey.template("org", CacheKey.string, "user", CacheKey.number)
    assert.strictEqual(encode(UserInOrg, ["acme", 7]), "org:acme:user:7")
    assert.strictEqual(encode(UserInOrg, ["a:user:1", 7]), "org:a%3Auser%3A1:user:7")
    assert.deepStrictEqual(decode(UserInOrg, "org:a%3Auser%3A1:user:7"), ["a:user:1", 7])
    FastCheck.assert(
      FastCheck.property(FastCheck.string(), FastCheck.string(), (x, y) =>
        (x === y) === (encode(UserInOrg, [x, 1]) === encode(UserInOrg, [y, 1]))),
      { numRuns: 1_000 }
    )
  })

  it("hashed keys are stable across property order and differ for different values", () => {
    const Search = CacheKey.hashed(Schema.Struct({ query: Schema.String, filters: Schema.Array(Schema.String), at: Schema.Date }))
    const at = new Date("2026-01-01T00:00:00Z")
    const a = encode(Search, { query: "q", filters: ["x"], at })
    const b = encode(Search, { filters: ["x"], at, query: "q" })
    assert.strictEqual(a, b)
    assert.strictEqual(a.length, 22)
    assert.match(a, /^[A-Za-z0-9_-]+$/)
    assert.notStrictEqual(a, encode(Search, { query: "q", filters: ["y"], at }))
    assert.isTrue(Either.isLeft(Schema.decodeEither(Search)(a)), "a hashed key cannot be decoded")
  })

  it.effect("hashed keys refuse values the schema refuses, with a ParseError", () =>
    Effect.gen(function*() {
      const Ints = CacheKey.hashed(Schema.Array(Schema.Int))
      const error = yield* Effect.flip(Schema.encode(Ints)([1.5]))
      assert.strictEqual(error._tag, "ParseError")
    }))

  it("versioned keys carry their version before the segment", () => {
    const V2 = CacheKey.versioned(CacheKey.number, "v2")
    assert.strictEqual(encode(V2, 7), "v2:7")
    assert.strictEqual(decode(V2, "v2:7"), 7)
    assert.isTrue(Either.isLeft(Schema.decodeEither(V2)("v1:7")))
    const VStruct = CacheKey.versioned(CacheKey.struct({ id: CacheKey.number }), "v3")
    assert.strictEqual(encode(VStruct, { id: 1 }), "v3:id=1")
  })
})
