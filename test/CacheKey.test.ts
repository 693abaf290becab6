import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, FastCheck, Schema } from "effect"
// The module itself, not src/index.js: the rest of src is being rewritten and may not load mid-change.
import * as CacheKey from "../src/CacheKey.js"

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

  describe("collision-free: equal keys <=> equal UTF-8 bytes, or a ParseError", () => {
    const fc = FastCheck
    const bytes = (segment: string) => Buffer.from(segment, "utf8")
    /** The oracle for refused strings, written independently of the codec's `isWellFormed`. */
    const hasLoneSurrogate = (s: string) => /\p{Surrogate}/u.test(s)

    /**
     * The law for one pair: if neither key is refused, the segments are equal, and so are their
     * UTF-8 bytes, exactly when the keys are equal. A refusal is a ParseError.
     */
    const checkPair = <K>(codec: CacheKey.CacheKey<K>, same: (a: K, b: K) => boolean, a: K, b: K) => {
      const x = Schema.encodeEither(codec)(a)
      const y = Schema.encodeEither(codec)(b)
      for (const side of [x, y]) if (Either.isLeft(side)) assert.strictEqual(side.left._tag, "ParseError")
      if (Either.isLeft(x) || Either.isLeft(y)) return false
      const equal = same(a, b)
      assert.strictEqual(x.right === y.right, equal, `segments ${JSON.stringify([x.right, y.right])}`)
      assert.strictEqual(bytes(x.right).equals(bytes(y.right)), equal, `bytes of ${JSON.stringify([x.right, y.right])}`)
      return true
    }

    const isParseError = <A>(result: Either.Either<A, { readonly _tag: string }>) =>
      Either.isLeft(result) && result.left._tag === "ParseError"

    // strings built from separators, escapes, lone and paired surrogates, U+FFFD (what a lone
    // surrogate becomes in UTF-8), plus arbitrary UTF-16 code units
    const piece = fc.constantFrom(
      "a", "b", ":", ",", "=", "%", "%3A", "%25", "\ud800", "\ud801", "\udc00", "\ud83d", "\ude00", "\ud83d\ude00",
      "\ufffd", "\u00e9", "e\u0301"
    )
    const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((unit) => String.fromCharCode(unit))
    const keyString = fc.oneof(
      fc.array(piece, { maxLength: 4 }).map((pieces) => pieces.join("")),
      fc.string({ unit: codeUnit, maxLength: 4 }),
      fc.string({ maxLength: 4 })
    )
    const keyNumber = fc.oneof(
      fc.constantFrom(0, -0, NaN, Infinity, -Infinity, 1, -1, 1e21, 5e-324, Number.MAX_VALUE),
      fc.integer({ min: -2, max: 2 }),
      fc.double()
    )
    const sameString = (a: string, b: string) => a === b
    const sameNumber = (a: number, b: number) => Object.is(a, b)

    it("number keys: -0 is \"-0\", every number decodes back to itself, and the fast path agrees", () => {
      assert.strictEqual(encode(CacheKey.number, -0), "-0")
      assert.strictEqual(encode(CacheKey.number, 0), "0")
      assert.isTrue(Object.is(decode(CacheKey.number, "-0"), -0))
      assert.isTrue(Object.is(decode(CacheKey.number, "0"), 0))
      assert.deepStrictEqual([NaN, Infinity, -Infinity].map((n) => encode(CacheKey.number, n)), ["NaN", "Infinity", "-Infinity"])
      const fast = CacheKey.getFastEncode(CacheKey.number.ast)!
      assert.strictEqual(fast(-0), "-0")
      assert.strictEqual(fast("7"), undefined)
      const V = CacheKey.versioned(CacheKey.number, "v2")
      const fastV = CacheKey.getFastEncode(V.ast)!
      fc.assert(
        fc.property(keyNumber, (n) => {
          assert.strictEqual(fast(n), encode(CacheKey.number, n))
          assert.strictEqual(fastV(n), encode(V, n))
          assert.isTrue(Object.is(decode(CacheKey.number, encode(CacheKey.number, n)), n))
        }),
        { numRuns: 2_000 }
      )
      fc.assert(
        fc.property(keyNumber, keyNumber, (a, b) => {
          assert.isTrue(checkPair(CacheKey.number, sameNumber, a, b), "a number is never refused")
          assert.isTrue(checkPair(V, sameNumber, a, b))
        }),
        { numRuns: 2_000 }
      )
    })

    it("string keys refuse lone surrogates, in the schema encoder and in the fast path", () => {
      // "\ud800" and "\ud801" are different strings with the same UTF-8 bytes (EF BF BD, U+FFFD)
      assert.isTrue(bytes("\ud800").equals(bytes("\ud801")))
      const fast = CacheKey.getFastEncode(CacheKey.string.ast)!
      for (const lone of ["\ud800", "\ud801", "\udc00", "a\ud83d", "\ude00b", "\ude00\ud83d"]) {
        assert.isTrue(isParseError(Schema.encodeEither(CacheKey.string)(lone)), JSON.stringify(lone))
        assert.strictEqual(fast(lone), undefined, JSON.stringify(lone))
      }
      assert.strictEqual(encode(CacheKey.string, "\ud83d\ude00"), "\ud83d\ude00")
      assert.strictEqual(fast("\ud83d\ude00"), "\ud83d\ude00")
      const V = CacheKey.versioned(CacheKey.string, "v1")
      const fastV = CacheKey.getFastEncode(V.ast)!
      fc.assert(
        fc.property(keyString, keyString, (a, b) => {
          assert.strictEqual(Either.isLeft(Schema.encodeEither(CacheKey.string)(a)), hasLoneSurrogate(a))
          assert.strictEqual(fast(a), hasLoneSurrogate(a) ? undefined : encode(CacheKey.string, a))
          assert.strictEqual(fastV(a), hasLoneSurrogate(a) ? undefined : encode(V, a))
          checkPair(CacheKey.string, sameString, a, b)
          checkPair(V, sameString, a, b)
        }),
        { numRuns: 3_000 }
      )
    })

    it("struct, template and versioned keys refuse lone surrogates in any string part, even from a plain Schema.String", () => {
      const Pair = CacheKey.struct({ s: CacheKey.string, raw: Schema.String, n: CacheKey.number })
      const Path = CacheKey.template("org", CacheKey.string, "raw", Schema.String, "n", CacheKey.number)
      const Raw = CacheKey.versioned(Schema.String, "v1")
      const Nested = CacheKey.versioned(Pair, "v2")
      assert.isTrue(isParseError(Schema.encodeEither(Pair)({ s: "a", raw: "\ud800", n: 1 })))
      assert.isTrue(isParseError(Schema.encodeEither(Pair)({ s: "\ud800", raw: "a", n: 1 })))
      assert.isTrue(isParseError(Schema.encodeEither(Path)(["a", "\udc00", 1])))
      assert.isTrue(isParseError(Schema.encodeEither(Raw)("\ud801")))
      assert.strictEqual(encode(Pair, { s: "x", raw: "y", n: -0 }), "n=-0,raw=y,s=x")
      type PairKey = Schema.Schema.Type<typeof Pair>
      type PathKey = Schema.Schema.Type<typeof Path>
      const samePair = (a: PairKey, b: PairKey) => a.s === b.s && a.raw === b.raw && Object.is(a.n, b.n)
      const samePath = (a: PathKey, b: PathKey) => a[0] === b[0] && a[1] === b[1] && Object.is(a[2], b[2])
      const pair = fc.record({ s: keyString, raw: keyString, n: keyNumber })
      const path = fc.tuple(keyString, keyString, keyNumber)
      fc.assert(
        fc.property(pair, pair, path, path, (a, b, p, q) => {
          const refused = hasLoneSurrogate(a.s) || hasLoneSurrogate(a.raw)
          assert.strictEqual(Either.isLeft(Schema.encodeEither(Pair)(a)), refused)
          assert.strictEqual(Either.isLeft(Schema.encodeEither(Path)(p)), hasLoneSurrogate(p[0]) || hasLoneSurrogate(p[1]))
          assert.strictEqual(Either.isLeft(Schema.encodeEither(Raw)(a.raw)), hasLoneSurrogate(a.raw))
          if (checkPair(Pair, samePair, a, b)) {
            const back = decode(Pair, encode(Pair, a))
            assert.isTrue(samePair(back, a))
          }
          if (checkPair(Path, samePath, p, q)) assert.isTrue(samePath(decode(Path, encode(Path, p)), p))
          checkPair(Nested, samePair, a, b)
          checkPair(Raw, sameString, a.raw, b.raw)
        }),
        { numRuns: 2_000 }
      )
    })

    it("a field name, template word or version with a lone surrogate is refused when the codec is made", () => {
      // versions "\ud800" and "\ud801" would be the same bytes on Redis: bumping one to the other would move nothing
      assert.throws(() => CacheKey.versioned(CacheKey.string, "\ud800"), /lone surrogate/)
      assert.throws(() => CacheKey.template("\ud801", CacheKey.string), /lone surrogate/)
      assert.throws(() => CacheKey.struct({ "\udc00": CacheKey.string }), /lone surrogate/)
      assert.strictEqual(encode(CacheKey.versioned(CacheKey.string, "\ud83d\ude00"), "a"), "\ud83d\ude00:a")
    })

    const Hashed = CacheKey.hashed(Schema.Unknown)

    it("hashed keys: the known collisions of the old canonical JSON all differ now", () => {
      const pairs: ReadonlyArray<readonly [string, unknown, unknown]> = [
        ["NaN", NaN, "NaN"],
        ["Infinity", Infinity, "Infinity"],
        ["-Infinity", -Infinity, "-Infinity"],
        ["[undefined] / [null]", [undefined], [null]],
        ["undefined / null", undefined, null],
        ["{ a: undefined } / {}", { a: undefined }, {}],
        ["1n / \"1n\"", 1n, "1n"],
        ["a Date / its ISO string", new Date(0), "1970-01-01T00:00:00.000Z"],
        ["bytes / \"bytes:...\"", new Uint8Array([0]), "bytes:AA=="],
        ["-0 / 0", -0, 0],
        ["[-0] / [0]", [-0], [0]],
        ["two Maps", new Map([["a", 1]]), new Map([["b", 2]])],
        ["a Map / {}", new Map([["a", 1]]), {}],
        ["two Sets", new Set([1]), new Set([2])],
        ["a Set / an array", new Set([1]), [1]],
        ["two lone surrogates", "\ud800", "\ud801"],
        ["a lone surrogate / U+FFFD", "\ud800", "\ufffd"],
        ["a Date / Date(NaN) text", new Date(NaN), "Date(NaN)"],
        ["two invalid Dates / a valid one", new Date(NaN), new Date(0)]
      ]
      for (const [name, a, b] of pairs) {
        const x = encode(Hashed, a)
        const y = encode(Hashed, b)
        assert.notStrictEqual(x, y, name)
        assert.isFalse(bytes(x).equals(bytes(y)), name)
      }
      assert.strictEqual(encode(Hashed, new Map([["a", 1], ["b", 2]])), encode(Hashed, new Map([["b", 2], ["a", 1]])))
      assert.strictEqual(encode(Hashed, new Set([1, 2])), encode(Hashed, new Set([2, 1])))
      assert.strictEqual(encode(Hashed, new Uint8Array([1, 2])), encode(Hashed, Buffer.from([1, 2])))
      assert.strictEqual(encode(Hashed, new Date(NaN)), encode(Hashed, new Date("not a date")))
      assert.strictEqual(encode(Hashed, { a: 1 }), encode(Hashed, Object.assign(Object.create(null), { a: 1 })))
    })

    it("hashed keys: the canonical text", () => {
      const text = (value: unknown) => Either.getOrThrow(CacheKey.canonicalText(value))
      assert.strictEqual(text([undefined, null, true, false, NaN, Infinity, -Infinity, -0, 0, 1.5, 1e21, 12n, -3n]),
        "[undefined,null,true,false,NaN,Infinity,-Infinity,-0,0,1.5,1e+21,12n,-3n]")
      assert.strictEqual(text({ b: "x", a: undefined, "": [] }), "{\"\":[],\"a\":undefined,\"b\":\"x\"}")
      assert.strictEqual(text([new Date(0), new Date(NaN), new Uint8Array([0, 255]), Buffer.alloc(0)]),
        "[Date(0),Date(NaN),Bytes(00ff),Bytes()]")
      assert.strictEqual(text(new Map<unknown, unknown>([["b", 1], [2, new Set(["y", "x"])]])), "Map(\"b\"=>1,2=>Set(\"x\",\"y\"))")
      assert.strictEqual(text(["\ud800", "\ud83d\ude00", "Date(0)"]), "[\"\\ud800\",\"\ud83d\ude00\",\"Date(0)\"]")
      const shared = { x: 1 }
      assert.strictEqual(text([shared, shared]), "[{\"x\":1},{\"x\":1}]", "a shared value is not a cycle")
    })

    const unrepresentable: ReadonlyArray<readonly [string, () => unknown]> = [
      ["a function", () => () => 1],
      ["a symbol", () => Symbol("s")],
      ["a class instance", () => new (class Point { x = 1 })()],
      ["an Error", () => new Error("e")],
      ["a RegExp", () => /x/],
      ["a boxed string", () => new String("a")],
      ["another typed array", () => new Int8Array(1)],
      ["a Uint8Array subclass", () => new (class Bytes extends Uint8Array {})(1)],
      ["an inherited property", () => Object.create({ inherited: 1 })],
      ["a symbol key", () => ({ [Symbol("k")]: 1 })],
      ["an array with a hole", () => [, 1]],
      ["an array with an extra property", () => Object.assign([1], { extra: true })],
      ["a Map with an extra property", () => Object.assign(new Map(), { extra: 1 })],
      ["a WeakMap", () => new WeakMap()],
      ["a cycle", () => {
        const cycle: Record<string, unknown> = {}
        cycle.self = [cycle]
        return cycle
      }]
    ]

    it.effect("hashed keys refuse values the canonical text cannot represent, with a ParseError", () =>
      Effect.gen(function*() {
        for (const [name, make] of unrepresentable) {
          const error = yield* Effect.flip(Schema.encode(Hashed)(make()))
          assert.strictEqual(error._tag, "ParseError", name)
          assert.match(error.message, /cannot be part of a hashed key/, name)
        }
        const nested = yield* Effect.flip(Schema.encode(Hashed)({ a: [1, new Map([[() => 1, 2]])] }))
        assert.match(nested.message, /a function cannot be part of a hashed key \(at \["a"\]\[1\]\.keys\[0\]\)/)
      }))

    // a value tree over the special values, strings that mimic the tagged forms, and every container
    const special = fc.constantFrom<unknown>(
      0, -0, NaN, Infinity, -Infinity, undefined, null, true, false, 0n, 1n, -1n,
      "0", "-0", "NaN", "Infinity", "-Infinity", "undefined", "null", "true", "1n", "12n", "Date(0)", "Date(NaN)",
      "Bytes()", "Bytes(00)", "Map()", "Set()", "[]", "{}", "\"a\"", "a=>b", "1970-01-01T00:00:00.000Z", "bytes:",
      "bytes:AA==", "\ud800", "\ud801", "\udc00", "\ufffd", "\ud83d\ude00"
    )
    const leaf = fc.oneof(
      special,
      fc.integer({ min: -2, max: 2 }),
      fc.double(),
      fc.bigInt({ min: -3n, max: 3n }),
      keyString,
      fc.integer({ min: -1, max: 1 }).map((time) => new Date(time)),
      fc.date({ noInvalidDate: false }),
      fc.uint8Array({ maxLength: 2, max: 1 }),
      fc.uint8Array({ maxLength: 2 }).map((array) => Buffer.from(array))
    )
    const { value: keyValue } = fc.letrec((tie) => ({
      value: fc.oneof({ depthSize: "small", withCrossShrink: true }, leaf, tie("array"), tie("record"), tie("map"), tie("set")),
      array: fc.array(tie("value"), { maxLength: 3 }),
      record: fc.dictionary(fc.constantFrom("a", "b", "", "\"", "a:b"), tie("value"), { maxKeys: 3, noNullPrototype: false }),
      map: fc.array(fc.tuple(tie("value"), tie("value")), { maxLength: 3 }).map((entries) => new Map(entries)),
      set: fc.array(tie("value"), { maxLength: 3 }).map((elements) => new Set(elements))
    }))

    type Kind = "array" | "date" | "bytes" | "map" | "set" | "record"
    const kindOf = (value: object): Kind =>
      Array.isArray(value) ? "array" : value instanceof Date ? "date" : value instanceof Uint8Array ? "bytes" :
      value instanceof Map ? "map" : value instanceof Set ? "set" : "record"
    /** Greedy matching is exact because `same` is an equivalence. */
    const sameMultiset = <A>(xs: ReadonlyArray<A>, ys: ReadonlyArray<A>, same: (x: A, y: A) => boolean) => {
      if (xs.length !== ys.length) return false
      const used = ys.map(() => false)
      return xs.every((x) => {
        const i = ys.findIndex((y, j) => !used[j] && same(x, y))
        if (i >= 0) used[i] = true
        return i >= 0
      })
    }
    /** The key equality hashed keys promise, written independently of the canonical text. */
    const sameKey = (a: unknown, b: unknown): boolean => {
      if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) return Object.is(a, b)
      const kind = kindOf(a)
      if (kind !== kindOf(b)) return false
      switch (kind) {
        case "array": {
          const [x, y] = [a as ReadonlyArray<unknown>, b as ReadonlyArray<unknown>]
          return x.length === y.length && x.every((element, i) => sameKey(element, y[i]))
        }
        case "date":
          return Object.is((a as Date).getTime(), (b as Date).getTime())
        case "bytes":
          return Buffer.from(a as Uint8Array).equals(Buffer.from(b as Uint8Array))
        case "map":
          return sameMultiset([...(a as Map<unknown, unknown>)], [...(b as Map<unknown, unknown>)], (x, y) =>
            sameKey(x[0], y[0]) && sameKey(x[1], y[1]))
        case "set":
          return sameMultiset([...(a as Set<unknown>)], [...(b as Set<unknown>)], sameKey)
        case "record": {
          const [x, y] = [a as Record<string, unknown>, b as Record<string, unknown>]
          const [kx, ky] = [Object.keys(x).sort(), Object.keys(y).sort()]
          return kx.length === ky.length && kx.every((k, i) => k === ky[i] && sameKey(x[k], y[k]))
        }
      }
    }
    /** An equal key built afresh: properties, entries and elements in reverse order, records and bytes in their other form. */
    const rebuild = (value: unknown): unknown => {
      if (typeof value !== "object" || value === null) return value
      if (Array.isArray(value)) return value.map(rebuild)
      if (value instanceof Date) return new Date(value.getTime())
      if (value instanceof Uint8Array) return Buffer.isBuffer(value) ? new Uint8Array(value) : Buffer.from(value)
      if (value instanceof Map) return new Map([...value].reverse().map(([k, v]) => [rebuild(k), rebuild(v)]))
      if (value instanceof Set) return new Set([...value].reverse().map(rebuild))
      const out: Record<string, unknown> = Object.getPrototypeOf(value) === null ? {} : Object.create(null)
      for (const key of Object.keys(value).reverse()) out[key] = rebuild((value as Record<string, unknown>)[key])
      return out
    }

    it("hashed keys: for generated values, equal keys <=> equal bytes, and no representable value is refused", () => {
      let equalPairs = 0
      let distinctPairs = 0
      const pairs = fc.oneof(
        fc.tuple(keyValue, keyValue),
        keyValue.map((value) => [value, rebuild(value)] as const)
      )
      fc.assert(
        fc.property(pairs, ([a, b]) => {
          assert.isTrue(Either.isRight(Schema.encodeEither(Hashed)(a)), "a representable value is never refused")
          assert.isTrue(checkPair(Hashed, sameKey, a, b))
          if (sameKey(a, b)) equalPairs++
          else distinctPairs++
        }),
        { numRuns: 3_000 }
      )
      // the law was exercised in both directions
      assert.isAbove(equalPairs, 300)
      assert.isAbove(distinctPairs, 300)
    })

    it("hashed keys: an unrepresentable value anywhere in a key refuses the whole key", () => {
      const bad = fc.constantFrom(...unrepresentable).map(([, make]) => make())
      const wrapped = fc.tuple(keyValue, bad, fc.integer({ min: 0, max: 5 })).map(([value, inner, where]) =>
        [
          () => [value, inner],
          () => ({ a: value, b: inner }),
          () => new Map([[inner, value]]),
          () => new Map([[value, inner]]),
          () => new Set([value, inner]),
          () => inner
        ][where]!()
      )
      fc.assert(
        fc.property(wrapped, (value) => isParseError(Schema.encodeEither(Hashed)(value))),
        { numRuns: 500 }
      )
    })
  })
})
