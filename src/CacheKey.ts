/**
 * Key codecs: Schema transformations from a key type `K` to the string segment that follows
 * `"<namespace>:<keyspace>:"` in a store key.
 *
 * Every codec is injective: two different keys never share a segment. Composite codecs (`struct`,
 * `template`) escape their separators inside each part, so no field value can forge another key.
 * The cache checks the whole store key afterwards: control characters and keys over the cache's
 * `maxKeyLength` fail with an `InvalidKeyError` and never reach a backend.
 *
 * @since 0.1.0
 */
import { createHash } from "node:crypto"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as SchemaAST from "effect/SchemaAST"

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

/**
 * String keys, stored as they are.
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
export const string: CacheKey<string> = Schema.String.annotations({
  [FastEncodeId]: ((key: unknown) => typeof key === "string" ? key : undefined) satisfies FastEncode
})

/**
 * Number keys, stored in their shortest decimal form (`42`, `-1.5`, `1e+21`).
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
export const number: CacheKey<number> = Schema.NumberFromString.annotations({
  [FastEncodeId]: ((key: unknown) => typeof key === "number" ? String(key) : undefined) satisfies FastEncode
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
 * value can collide with another key.
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
  const names = Object.keys(fields).sort()
  const segments = Schema.Struct(Object.fromEntries(names.map((name) => [name, Schema.String])))
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
 * parts' values; `:` and `%` are escaped inside each part.
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
  const codecs = parts.filter((part): part is Any => typeof part !== "string")
  const segments = Schema.Array(Schema.String)
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

/**
 * Writes a value as JSON with object keys sorted, so equal values give equal text whatever their
 * property order. Throws on values JSON cannot represent faithfully.
 */
const canonicalJson = (value: unknown): string => {
  switch (typeof value) {
    case "string":
    case "boolean":
      return JSON.stringify(value)
    case "number":
      if (!Number.isFinite(value)) return `"${String(value)}"`
      return JSON.stringify(value)
    case "bigint":
      return `"${value}n"`
    case "undefined":
      return "null"
    case "object": {
      if (value === null) return "null"
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`
      if (value instanceof Date) return JSON.stringify(value.toISOString())
      if (value instanceof Uint8Array) return `"bytes:${Buffer.from(value).toString("base64")}"`
      const entries = Object.keys(value)
        .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
        .sort()
        .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`)
      return `{${entries.join(",")}}`
    }
    default:
      throw new TypeError(`a ${typeof value} cannot be part of a hashed key`)
  }
}

/**
 * Hashed keys for complex arguments: the value is encoded with `schema`, written as canonical JSON
 * (object keys sorted) and hashed with SHA-256; the segment is the first 128 bits in base64url.
 * A hashed key cannot be decoded back.
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
      ParseResult.try({
        try: () => createHash("sha256").update(canonicalJson(value)).digest("base64url").slice(0, 22),
        catch: (cause) => new ParseResult.Type(ast, value, cause instanceof Error ? cause.message : String(cause))
      })
  })
  return Schema.compose(fromString, schema, { strict: false }) as unknown as CacheKey<A>
}

/**
 * Versioned keys: `version` is written before the segment (`"v2:<segment>"`), so bumping it moves a
 * keyspace's entries to fresh keys without touching the old ones.
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
  const prefix = `${escapePart(version)}:`
  const fromString = Schema.transformOrFail(Schema.String, Schema.String, {
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
