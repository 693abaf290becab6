/**
 * Key codecs: Schema transformations from a key type `K` to the string segment that follows
 * `"<namespace>:<keyspace>:"` in a store key.
 *
 * Every codec is injective: two different keys never share a segment, nor the UTF-8 bytes of one
 * (Redis stores keys as bytes). A key a codec cannot write faithfully fails with a `ParseError`, which
 * the cache reports as an `InvalidKeyError`: strings that are not well-formed UTF-16 (a lone surrogate
 * would become U+FFFD in UTF-8, so `"\ud800"` and `"\ud801"` would share a Redis key), and values
 * `hashed` cannot write unambiguously. Composite codecs (`struct`, `template`) escape their separators
 * inside each part, so no field value can forge another key. The cache checks the whole store key
 * afterwards: control characters and keys over the cache's `maxKeyLength` fail with an
 * `InvalidKeyError` and never reach a backend.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import * as Number_ from "effect/Number"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as SchemaAST from "effect/SchemaAST"
import { sha256Base64Url } from "./internal/hash.js"

/**
 * A key codec: decodes a segment into a `K`, encodes a `K` into a segment.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import type { CacheKey } from "effect-cachekit"
 *
 * const upper: CacheKey.CacheKey<string> = Schema.String
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface CacheKey<K> extends Schema.Schema<K, string> {}

/**
 * Any key codec, whatever its key type (the bound of `struct` and `template` parts).
 *
 * @example
 * ```ts
 * import { CacheKey } from "effect-cachekit"
 *
 * const parts: ReadonlyArray<CacheKey.Any> = [CacheKey.string, CacheKey.number]
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Any extends Schema.Schema<Schema.Schema.AnyNoContext["Type"], string> {}

/** @internal */
export const FastEncodeId: unique symbol = Symbol.for("effect-cachekit/CacheKey/FastEncode")

/**
 * @internal
 * A shortcut the cache may take instead of running the Schema encoder: returns the segment, or
 * `undefined` when the input is not of the expected shape (the full encoder then reports why).
 */
export type FastEncode = (key: unknown) => string | undefined

/** @internal */
export const getFastEncode = (ast: SchemaAST.AST): FastEncode | undefined =>
  ast.annotations[FastEncodeId] as FastEncode | undefined

/** `String.prototype.isWellFormed` (Node 20+; not yet in the ES2022 lib this package compiles against). */
const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed()

const notWellFormed = "a key must be well-formed UTF-16: a lone surrogate cannot be stored in UTF-8"

/**
 * Strings that are well-formed UTF-16. A lone surrogate becomes U+FFFD in UTF-8, so two keys that
 * differ only there would share a Redis key: every string a codec writes passes this check.
 */
const WellFormedString = Schema.String.pipe(
  Schema.filter((s) => isWellFormed(s) || notWellFormed, { identifier: "WellFormedString" })
)

/** Throws when a constant part of a codec (a field name, a template word, a version) is not well-formed. */
const checkConstant = (what: string, value: string): string => {
  if (!isWellFormed(value)) throw new TypeError(`CacheKey: the ${what} ${JSON.stringify(value)} holds a lone surrogate`)
  return value
}

/**
 * String keys, stored as they are. A string that is not well-formed UTF-16 (it holds a lone
 * surrogate, which UTF-8 cannot store) is refused with a `ParseError`.
 *
 * @example
 * ```ts
 * import { CacheKey, Keyspace } from "effect-cachekit"
 * import { Schema } from "effect"
 *
 * const Sessions = Keyspace.make({ name: "sessions", key: CacheKey.string, value: Schema.String, ttl: "30 minutes" })
 * ```
 *
 * @since 0.1.0
 * @category codecs
 */
export const string: CacheKey<string> = WellFormedString.annotations({
  [FastEncodeId]: ((key: unknown) => typeof key === "string" && isWellFormed(key) ? key : undefined) satisfies FastEncode
})

/** The shortest decimal form of a number, except `-0`, which is written `"-0"` so that it differs from `0`. */
/** Node's `Buffer.prototype` on runtimes that have one (looked up, not imported: this module runs anywhere). */
const bufferPrototype: object | undefined = (globalThis as { readonly Buffer?: { readonly prototype: object } }).Buffer?.prototype

const numberText = (n: number): string => Object.is(n, -0) ? "-0" : String(n)

/**
 * Number keys, stored in their shortest decimal form (`42`, `-1.5`, `1e+21`). `-0` is stored as
 * `"-0"` (not as `"0"`), and `NaN`, `Infinity` and `-Infinity` by name, so every number has a segment
 * of its own and decodes back to itself.
 *
 * @example
 * ```ts
 * import { CacheKey, Keyspace } from "effect-cachekit"
 * import { Schema } from "effect"
 *
 * const Scores = Keyspace.make({ name: "scores", key: CacheKey.number, value: Schema.Number })
 * ```
 *
 * @since 0.1.0
 * @category codecs
 */
export const number: CacheKey<number> = Schema.transformOrFail(Schema.String, Schema.Number, {
  strict: true,
  decode: (segment, _, ast) =>
    Option.match(Number_.parse(segment), {
      onNone: () => ParseResult.fail(new ParseResult.Type(ast, segment, `${JSON.stringify(segment)} is not a number`)),
      onSome: ParseResult.succeed
    }),
  encode: (key) => ParseResult.succeed(numberText(key))
}).annotations({
  [FastEncodeId]: ((key: unknown) => typeof key === "number" ? numberText(key) : undefined) satisfies FastEncode
})

const separators = /[%:,=]/g
const escapes = /%([0-9A-F]{2})/g

/** Percent-escapes the characters composite codecs use as separators. */
const escapePart = (part: string): string =>
  part.replace(separators, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)

const unescapePart = (part: string): string =>
  part.replace(escapes, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))

/**
 * Struct keys: each field has its own key codec; fields are written in name order as
 * `name=value,name=value`, with `%`, `:`, `,` and `=` escaped inside names and values, so no field
 * value can collide with another key. A field whose segment is not well-formed UTF-16 is refused with
 * a `ParseError`; a field name that is not well-formed throws when the codec is made.
 *
 * @example
 * ```ts
 * import { CacheKey } from "effect-cachekit"
 *
 * // { org: "acme", id: 7 } is stored as "id=7,org=acme"
 * const MemberKey = CacheKey.struct({ org: CacheKey.string, id: CacheKey.number })
 * ```
 *
 * @since 0.1.0
 * @category codecs
 */
export const struct = <const Fields extends { readonly [name: string]: Any }>(
  fields: Fields
): CacheKey<Schema.Struct.Type<Fields>> => {
  const names = Object.keys(fields).sort().map((name) => checkConstant("struct field name", name))
  const segments = Schema.Struct(Object.fromEntries(names.map((name) => [name, WellFormedString])))
  const fromString = Schema.transformOrFail(Schema.String, segments, {
    strict: true,
    decode: (segment, _, ast) => {
      const out: Record<string, string> = {}
      for (const pair of segment === "" ? [] : segment.split(",")) {
        const eq = pair.indexOf("=")
        if (eq < 0) return ParseResult.fail(new ParseResult.Type(ast, segment, `"${pair}" is not a name=value pair`))
        out[unescapePart(pair.slice(0, eq))] = unescapePart(pair.slice(eq + 1))
      }
      return ParseResult.succeed(out)
    },
    encode: (parts) =>
      ParseResult.succeed(names.map((name) => `${escapePart(name)}=${escapePart(parts[name]!)}`).join(","))
  })
  return Schema.compose(fromString, Schema.Struct(fields), { strict: false }) as unknown as CacheKey<
    Schema.Struct.Type<Fields>
  >
}

/**
 * The key type of a template: the types of its codec parts, in order.
 *
 * @example
 * ```ts
 * import { CacheKey } from "effect-cachekit"
 *
 * type K = CacheKey.TemplateKey<readonly ["org", typeof CacheKey.string, "user", typeof CacheKey.number]> // readonly [string, number]
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type TemplateKey<Parts extends ReadonlyArray<string | Any>> = Parts extends
  readonly [infer Head, ...infer Tail extends ReadonlyArray<string | Any>]
  ? Head extends string ? TemplateKey<Tail> : readonly [Schema.Schema.Type<Head & Any>, ...TemplateKey<Tail>]
  : readonly []

/**
 * Template keys: literal words and codec parts joined by `:`. The key is the tuple of the codec
 * parts' values; `:` and `%` are escaped inside each part. A part whose segment is not well-formed
 * UTF-16 is refused with a `ParseError`; a word that is not well-formed throws when the codec is made.
 *
 * @example
 * ```ts
 * import { CacheKey } from "effect-cachekit"
 *
 * // ["acme", 7] is stored as "org:acme:user:7"
 * const UserInOrg = CacheKey.template("org", CacheKey.string, "user", CacheKey.number)
 * ```
 *
 * @since 0.1.0
 * @category codecs
 */
export const template = <const Parts extends ReadonlyArray<string | Any>>(
  ...parts: Parts
): CacheKey<TemplateKey<Parts>> => {
  for (const part of parts) if (typeof part === "string") checkConstant("template word", part)
  const codecs = parts.filter((part): part is Any => typeof part !== "string")
  const segments = Schema.Array(WellFormedString)
  const fromString = Schema.transformOrFail(Schema.String, segments, {
    strict: true,
    decode: (segment, _, ast) => {
      const pieces = segment.split(":")
      if (pieces.length !== parts.length) {
        return ParseResult.fail(new ParseResult.Type(ast, segment, `expected ${parts.length} parts`))
      }
      const values: Array<string> = []
      for (let i = 0; i < parts.length; i++) {
        const part = parts[i]
        if (typeof part === "string") {
          if (pieces[i] !== escapePart(part)) {
            return ParseResult.fail(new ParseResult.Type(ast, segment, `expected "${part}" at part ${i + 1}`))
          }
        } else {
          values.push(unescapePart(pieces[i]!))
        }
      }
      return ParseResult.succeed(values)
    },
    encode: (values) => {
      let next = 0
      return ParseResult.succeed(
        parts.map((part) => escapePart(typeof part === "string" ? part : values[next++]!)).join(":")
      )
    }
  })
  return Schema.compose(fromString, Schema.Tuple(...codecs), { strict: false }) as unknown as CacheKey<
    TemplateKey<Parts>
  >
}

/** Why a value has no canonical text; `path` leads from the root to the offending part. */
class Unrepresentable {
  readonly path: ReadonlyArray<string>
  constructor(readonly what: string, path: ReadonlyArray<string>) {
    this.path = [...path]
  }
  get message(): string {
    return `${this.what} cannot be part of a hashed key${this.path.length === 0 ? "" : ` (at ${this.path.join("")})`}`
  }
}

const enumerableSymbols = (value: object): boolean =>
  Object.getOwnPropertySymbols(value).some((symbol) => Object.prototype.propertyIsEnumerable.call(value, symbol))

/** True when `value` has own enumerable properties beyond the `expected` string keys its form writes. */
const hasExtraProperties = (value: object, expected: number): boolean =>
  Object.keys(value).length !== expected || enumerableSymbols(value)

const byText = (a: string, b: string): number => a < b ? -1 : a > b ? 1 : 0

/** Writes the canonical text of `value`; throws an `Unrepresentable` for what the grammar lacks. */
const writeCanonical = (value: unknown, path: Array<string>, ancestors: Set<object>): string => {
  switch (typeof value) {
    case "string":
      // well-formed JSON.stringify escapes lone surrogates, so the text is well-formed and its UTF-8 injective
      return JSON.stringify(value)
    case "number":
      return numberText(value)
    case "bigint":
      return `${value}n`
    case "boolean":
      return value ? "true" : "false"
    case "undefined":
      return "undefined"
    case "object":
      if (value === null) return "null"
      if (ancestors.has(value)) throw new Unrepresentable("a cyclic value", path)
      ancestors.add(value)
      try {
        return writeObject(value, path, ancestors)
      } finally {
        ancestors.delete(value)
      }
    default:
      throw new Unrepresentable(`a ${typeof value}`, path)
  }
}

const writeObject = (value: object, path: Array<string>, ancestors: Set<object>): string => {
  const at = (step: string, part: unknown): string => {
    path.push(step)
    const text = writeCanonical(part, path, ancestors)
    path.pop()
    return text
  }
  const proto: unknown = Object.getPrototypeOf(value)
  if (proto === Object.prototype || proto === null) {
    if (enumerableSymbols(value)) throw new Unrepresentable("a symbol-keyed property", path)
    const record = value as Record<string, unknown>
    const fields = Object.keys(record).sort(byText).map((key) => {
      const name = JSON.stringify(key)
      return `${name}:${at(`[${name}]`, record[key])}`
    })
    return `{${fields.join(",")}}`
  }
  if (proto === Array.prototype && Array.isArray(value)) {
    const elements: Array<string> = []
    for (let i = 0; i < value.length; i++) {
      if (!Object.prototype.hasOwnProperty.call(value, i)) throw new Unrepresentable("an array with holes", path)
      elements.push(at(`[${i}]`, value[i]))
    }
    if (hasExtraProperties(value, value.length)) throw new Unrepresentable("an array with extra properties", path)
    return `[${elements.join(",")}]`
  }
  if (proto === Date.prototype) {
    if (hasExtraProperties(value, 0)) throw new Unrepresentable("a Date with extra properties", path)
    return `Date(${numberText(Date.prototype.getTime.call(value))})`
  }
  // A Uint8Array, or Node's Buffer where the runtime has one, is its bytes.
  if ((proto === Uint8Array.prototype || (proto === bufferPrototype && proto !== undefined)) && value instanceof Uint8Array) {
    if (hasExtraProperties(value, value.length)) throw new Unrepresentable("a Uint8Array with extra properties", path)
    return `Bytes(${Encoding.encodeHex(value)})`
  }
  if (proto === Map.prototype && value instanceof Map) {
    if (hasExtraProperties(value, 0)) throw new Unrepresentable("a Map with extra properties", path)
    const entries: Array<string> = []
    let i = 0
    for (const [key, entry] of value) {
      entries.push(`${at(`.keys[${i}]`, key)}=>${at(`.values[${i}]`, entry)}`)
      i++
    }
    return `Map(${entries.sort(byText).join(",")})`
  }
  if (proto === Set.prototype && value instanceof Set) {
    if (hasExtraProperties(value, 0)) throw new Unrepresentable("a Set with extra properties", path)
    const elements: Array<string> = []
    let i = 0
    for (const element of value) elements.push(at(`.values[${i++}]`, element))
    return `Set(${elements.sort(byText).join(",")})`
  }
  const name = typeof proto === "object" && proto !== null && typeof proto.constructor === "function" ?
    proto.constructor.name :
    ""
  throw new Unrepresentable(name === "" ? "an object with a custom prototype" : `an object of class ${name}`, path)
}

/**
 * The text a `hashed` key hashes: a canonical, unambiguous writing of a value, in which two values
 * have the same text exactly when they are the same key. Returns the reason on the left for a value
 * that cannot be written faithfully.
 *
 * The text is never parsed, so it goes beyond JSON:
 *
 * ```text
 * value   ::= "undefined" | "null" | "true" | "false" | number | bigint | string
 *           | "[" [value ("," value)*] "]"                   dense arrays, in order
 *           | "{" [string ":" value ("," string ":" value)*] "}"
 *                                                             own enumerable string keys, sorted
 *           | "Date(" number ")"                              the time value; an invalid Date is Date(NaN)
 *           | "Bytes(" hex ")"                                a Uint8Array (or Buffer), lowercase hex
 *           | "Map(" [value "=>" value ("," value "=>" value)*] ")"
 *           | "Set(" [value ("," value)*] ")"                 entries / elements sorted by their text
 * number  ::= "NaN" | "Infinity" | "-Infinity" | "-0" | the shortest decimal form (String(n))
 * bigint  ::= decimal digits, "-" for negatives, then "n"    e.g. 12n, -3n
 * string  ::= JSON.stringify(s)                              lone surrogates escaped as \uXXXX
 * ```
 *
 * Every form starts with a different token (strings with `"`, so a string never reads as another
 * form), and the text is well-formed UTF-16, so its UTF-8 bytes are as distinct as the values. A
 * record may have `Object.prototype` or a `null` prototype; a property whose value is `undefined`
 * is part of the key (`{ a: undefined }` is not `{}`). Maps and Sets compare by content, so
 * insertion order does not matter. Refused: functions, symbols (as values or as keys), cycles,
 * arrays with holes or extra properties, and objects of any other prototype (class instances, boxed
 * primitives, other typed arrays, subclasses).
 *
 * @example
 * ```ts
 * import { CacheKey } from "effect-cachekit"
 *
 * CacheKey.canonicalText({ b: [1n, -0], a: new Map([["x", NaN]]) }) // Right('{"a":Map("x"=>NaN),"b":[1n,-0]}')
 * CacheKey.canonicalText(() => 1) // Left("a function cannot be part of a hashed key")
 * ```
 *
 * @since 0.2.0
 * @category hashing
 */
export const canonicalText = (value: unknown): Either.Either<string, string> => {
  try {
    return Either.right(writeCanonical(value, [], new Set()))
  } catch (cause) {
    return Either.left(
      cause instanceof Unrepresentable ? cause.message : cause instanceof Error ? cause.message : String(cause)
    )
  }
}

/**
 * Hashed keys for complex arguments: the value is encoded with `schema`, written as its
 * {@link canonicalText} (object keys sorted, `NaN`, `-0`, `undefined`, bigints, Dates, bytes, Maps and
 * Sets each in a form of their own) and hashed with SHA-256; the segment is the first 128 bits in
 * base64url. An encoded value the canonical text cannot represent (a function, a symbol, a class
 * instance, a cycle, ...) is refused with a `ParseError`. A hashed key cannot be decoded back.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { CacheKey } from "effect-cachekit"
 *
 * const SearchKey = CacheKey.hashed(Schema.Struct({ query: Schema.String, filters: Schema.Array(Schema.String) }))
 * ```
 *
 * @since 0.1.0
 * @category codecs
 */
export const hashed = <A, I>(schema: Schema.Schema<A, I>): CacheKey<A> => {
  const fromString = Schema.transformOrFail(Schema.String, Schema.encodedSchema(schema), {
    strict: false,
    decode: (segment, _, ast) =>
      ParseResult.fail(new ParseResult.Forbidden(ast, segment, "a hashed key cannot be decoded")),
    encode: (value, _, ast) =>
      Either.match(canonicalText(value), {
        onLeft: (reason) => ParseResult.fail(new ParseResult.Type(ast, value, reason)),
        onRight: (text) => ParseResult.succeed(sha256Base64Url(text).slice(0, 22))
      })
  })
  return Schema.compose(fromString, schema, { strict: false }) as unknown as CacheKey<A>
}

/**
 * Versioned keys: `version` is written before the segment (`"v2:<segment>"`), so bumping it moves a
 * keyspace's entries to fresh keys without touching the old ones. A segment that is not well-formed
 * UTF-16 is refused with a `ParseError`; a version that is not well-formed throws when the codec is made.
 *
 * @example
 * ```ts
 * import { CacheKey } from "effect-cachekit"
 *
 * const UserKeyV2 = CacheKey.versioned(CacheKey.number, "v2") // 7 is stored as "v2:7"
 * ```
 *
 * @since 0.1.0
 * @category codecs
 */
export const versioned = <K>(codec: CacheKey<K>, version: string): CacheKey<K> => {
  const prefix = `${escapePart(checkConstant("version", version))}:`
  const fromString = Schema.transformOrFail(Schema.String, WellFormedString, {
    strict: true,
    decode: (segment, _, ast) =>
      segment.startsWith(prefix)
        ? ParseResult.succeed(segment.slice(prefix.length))
        : ParseResult.fail(new ParseResult.Type(ast, segment, `expected the "${version}" version prefix`)),
    encode: (segment) => ParseResult.succeed(prefix + segment)
  })
  const inner = getFastEncode(codec.ast)
  const composed = Schema.compose(fromString, codec)
  return inner === undefined ? composed : composed.annotations({
    [FastEncodeId]: ((key: unknown) => {
      const segment = inner(key)
      return segment === undefined ? undefined : prefix + segment
    }) satisfies FastEncode
  })
}
