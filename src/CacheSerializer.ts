/**
 * Value codecs: how a value's encoded form (the `I` of its `Schema<A, I>`) becomes the text or bytes a
 * store keeps.
 *
 * - `json` (the default): any schema whose encoded form is data; stored as JSON text.
 * - `msgpack`: stored as MessagePack bytes (through `@effect/platform`'s MsgPack).
 * - `string`: schemas whose encoded form is a string; stored as that string.
 * - `bytes`: schemas whose encoded form is a `Uint8Array`; stored as those bytes.
 *
 * Every stored entry's envelope (see `CacheEntry`) carries the {@link fingerprint} of its schema and
 * serializer. A value written under another schema is a miss, never a wrongly shaped value.
 *
 * @since 0.1.0
 */
import * as MsgPack from "@effect/platform/MsgPack"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import type * as CacheStore from "./CacheStore.js"
import { sha256Hex } from "./internal/hash.js"
import * as Json from "./internal/json.js"

/**
 * A serializer accepting values whose encoded form is an `In`.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { CacheSerializer, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Avatars = Keyspace.make({
 *   name: "avatars",
 *   key: CacheKey.number,
 *   value: Schema.Uint8ArrayFromSelf,
 *   serializer: CacheSerializer.bytes
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface CacheSerializer<in In> {
  /** Part of every fingerprint: changing the serializer invalidates stored values. */
  readonly name: string
  /** Whether the stored form is text or bytes. */
  readonly format: "text" | "binary"
  /** The full codec from a value to its stored form. */
  readonly codec: <A, I extends In>(schema: Schema.Schema<A, I>) => Schema.Schema<A, CacheStore.Encoded>
}

/**
 * The first part of a value schema's encoded form that a serializer cannot carry (a declaration such as
 * `Schema.OptionFromSelf`, or a symbol), described for the error `codec` throws; `undefined` when the
 * serializer carries everything the schema can encode to.
 */
const uncarried = (ast: SchemaAST.AST, carried: ReadonlySet<string>): string | undefined => {
  const seen = new Set<SchemaAST.AST>()
  const visit = (node: SchemaAST.AST): string | undefined => {
    if (seen.has(node)) return undefined
    seen.add(node)
    switch (node._tag) {
      case "Declaration": {
        const constructor = node.annotations[SchemaAST.TypeConstructorAnnotationId] as { readonly _tag?: unknown } | undefined
        const name = typeof constructor?._tag === "string" ? constructor._tag : undefined
        if (name === undefined || !carried.has(name)) {
          const description = SchemaAST.getDescriptionAnnotation(node)
          return name ?? (description._tag === "Some" ? description.value : "a Schema.declare or Schema.instanceOf type")
        }
        return firstOf(node.typeParameters)
      }
      case "UniqueSymbol":
      case "SymbolKeyword":
        return "a symbol"
      case "TupleType":
        return firstOf([...node.elements.map((e) => e.type), ...node.rest.map((r) => r.type)])
      case "TypeLiteral":
        return firstOf([...node.propertySignatures.map((p) => p.type), ...node.indexSignatures.map((i) => i.type)])
      case "Union":
        return firstOf(node.types)
      case "Suspend":
        return visit(node.f())
      case "Refinement":
        return visit(node.from)
      case "Transformation":
        return visit(node.from)
      default:
        return undefined
    }
  }
  const firstOf = (nodes: ReadonlyArray<SchemaAST.AST>): string | undefined => {
    for (const node of nodes) {
      const found = visit(node)
      if (found !== undefined) return found
    }
    return undefined
  }
  // Walking `from` of every transformation and refinement visits the encoded side.
  return visit(ast)
}

const refuseUncarried = (serializer: string, ast: SchemaAST.AST, carried: ReadonlySet<string>): void => {
  const found = uncarried(ast, carried)
  if (found === undefined) return
  throw new TypeError(
    `CacheSerializer.${serializer} cannot store this value schema: its encoded form contains ${found}, ` +
      "which is a runtime object, not data. Use a schema that encodes it to data (for example Schema.Option " +
      "instead of Schema.OptionFromSelf, Schema.Map instead of Schema.MapFromSelf), or a serializer that carries it."
  )
}

const jsonCarries: ReadonlySet<string> = new Set(["Uint8Array", "Date", "ReadonlyMap", "ReadonlySet"])

/** Stored text ⇄ the encoded form, through the JSON form of `internal/json.ts`. */
const JsonText: Schema.Schema<unknown, string> = Schema.transformOrFail(Schema.String, Schema.Unknown, {
  strict: true,
  decode: (text, _, ast) => {
    try {
      return ParseResult.succeed(Json.parse(text))
    } catch (error) {
      return ParseResult.fail(new ParseResult.Type(ast, text, `the stored text is not a JSON body: ${(error as Error).message}`))
    }
  },
  encode: (value, _, ast) => {
    try {
      return ParseResult.succeed(Json.stringify(value))
    } catch (error) {
      return ParseResult.fail(new ParseResult.Type(ast, value, (error as Error).message))
    }
  }
})

/**
 * JSON text, the default. Plain data is stored as exactly its `JSON.stringify` text; an encoded form
 * holding what JSON cannot (bytes, bigints, Dates, Maps and Sets as their `...FromSelf` schemas encode
 * them, `undefined`, `NaN`, `±Infinity`, `-0`) is stored as a tagged JSON body, so every store gives back
 * the same value. A schema whose encoded form holds another runtime object (`Schema.OptionFromSelf`,
 * `Schema.instanceOf`, ...) is refused when the keyspace is defined, with a message naming the fix. A
 * stored record with an own `__proto__` key reads as a miss, never as an object with a chosen prototype.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { CacheSerializer, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Prices = Keyspace.make({ name: "prices", key: CacheKey.string, value: Schema.Number, serializer: CacheSerializer.json })
 * const Files = Keyspace.make({ name: "files", key: CacheKey.string, value: Schema.Uint8ArrayFromSelf })
 * ```
 *
 * @since 0.1.0
 * @category serializers
 */
export const json: CacheSerializer<unknown> = {
  name: "json",
  format: "text",
  codec: (schema) => {
    refuseUncarried("json", schema.ast, jsonCarries)
    return Schema.compose(JsonText, schema) as unknown as Schema.Schema<Schema.Schema.Type<typeof schema>, CacheStore.Encoded>
  }
}

/**
 * The built-in serializers' own reading of a stored form into the encoded form (throwing when it
 * cannot), so the cache can decode a body with the value schema alone: through the composed codec a
 * value costs about twice as much.
 */
const readers = new WeakMap<CacheSerializer<never>, (stored: CacheStore.Encoded) => unknown>([
  [json, (stored) => {
    if (typeof stored !== "string") throw new TypeError("a JSON body is text")
    return Json.parse(stored)
  }]
])

/**
 * @internal
 * A serializer's reading of a stored form into the encoded form, if it has one apart from its codec:
 * `codec(schema)` decodes as this reading followed by `schema`, and fails where this reading throws.
 */
export const readerOf = (serializer: CacheSerializer<never>): ((stored: CacheStore.Encoded) => unknown) | undefined =>
  readers.get(serializer)

const msgpackCarries: ReadonlySet<string> = new Set(["Uint8Array", "Date"])

/**
 * MessagePack bytes; more compact than JSON and able to carry bytes, Dates and 64-bit bigints. A schema
 * whose encoded form holds a Map, a Set or another runtime object is refused when the keyspace is
 * defined (MessagePack would give it back as a plain object or array).
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { CacheSerializer, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Blobs = Keyspace.make({
 *   name: "blobs",
 *   key: CacheKey.string,
 *   value: Schema.Struct({ name: Schema.String, data: Schema.Uint8ArrayFromSelf }),
 *   serializer: CacheSerializer.msgpack
 * })
 * ```
 *
 * @since 0.1.0
 * @category serializers
 */
export const msgpack: CacheSerializer<unknown> = {
  name: "msgpack",
  format: "binary",
  codec: (schema) => {
    refuseUncarried("msgpack", schema.ast, msgpackCarries)
    return MsgPack.schema(schema) as unknown as Schema.Schema<Schema.Schema.Type<typeof schema>, CacheStore.Encoded>
  }
}

/**
 * The encoded string itself, for schemas encoding to a string.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { CacheSerializer, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Pages = Keyspace.make({ name: "pages", key: CacheKey.string, value: Schema.String, serializer: CacheSerializer.string })
 * ```
 *
 * @since 0.1.0
 * @category serializers
 */
export const string: CacheSerializer<string> = {
  name: "string",
  format: "text",
  codec: (schema) => schema as unknown as Schema.Schema<Schema.Schema.Type<typeof schema>, CacheStore.Encoded>
}

/**
 * The encoded bytes themselves, for schemas encoding to a `Uint8Array`.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { CacheSerializer, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Thumbnails = Keyspace.make({
 *   name: "thumbnails",
 *   key: CacheKey.number,
 *   value: Schema.Uint8ArrayFromSelf,
 *   serializer: CacheSerializer.bytes
 * })
 * ```
 *
 * @since 0.1.0
 * @category serializers
 */
export const bytes: CacheSerializer<Uint8Array> = {
  name: "bytes",
  format: "binary",
  codec: (schema) => schema as unknown as Schema.Schema<Schema.Schema.Type<typeof schema>, CacheStore.Encoded>
}

/**
 * A canonical description of a schema's structure: property names, optionality, literal values, the
 * identifiers of declarations and refinements. Descriptions, titles and other documentation
 * annotations are left out, so editing a comment does not invalidate a cache.
 */
const describe = (ast: SchemaAST.AST, seen: Map<SchemaAST.AST, number>): string => {
  const recur = (node: SchemaAST.AST) => describe(node, seen)
  const identifier = (node: SchemaAST.Annotated) => {
    const id = SchemaAST.getIdentifierAnnotation(node)
    const schemaId = SchemaAST.getSchemaIdAnnotation(node)
    return [id._tag === "Some" ? id.value : "", schemaId._tag === "Some" ? String(schemaId.value) : ""].join("/")
  }
  switch (ast._tag) {
    case "Declaration":
      return `decl<${identifier(ast)}>(${ast.typeParameters.map(recur).join(",")})`
    case "Literal":
      return `lit(${typeof ast.literal === "bigint" ? `${ast.literal}n` : JSON.stringify(ast.literal)})`
    case "UniqueSymbol":
      return `sym(${String(ast.symbol)})`
    case "Enums":
      return `enums(${ast.enums.map(([name, value]) => `${name}=${JSON.stringify(value)}`).join(",")})`
    case "TemplateLiteral":
      return `tpl(${JSON.stringify(ast.head)}${ast.spans.map((span) => `${recur(span.type)}${JSON.stringify(span.literal)}`).join("")})`
    case "Refinement":
      return `refine<${identifier(ast)}>(${recur(ast.from)})`
    case "TupleType":
      return `tuple(${ast.elements.map((e) => `${recur(e.type)}${e.isOptional ? "?" : ""}`).join(",")};${
        ast.rest.map((r) => recur(r.type)).join(",")
      })`
    case "TypeLiteral": {
      const properties = ast.propertySignatures
        .map((p) => `${String(p.name)}${p.isOptional ? "?" : ""}:${recur(p.type)}`)
        .sort()
      const indexes = ast.indexSignatures.map((i) => `[${recur(i.parameter)}]:${recur(i.type)}`).sort()
      return `{${properties.join(",")};${indexes.join(",")}}`
    }
    case "Union":
      return `union(${ast.types.map(recur).sort().join("|")})`
    case "Suspend": {
      const index = seen.get(ast)
      if (index !== undefined) return `#${index}`
      seen.set(ast, seen.size)
      return `rec${seen.size - 1}(${recur(ast.f())})`
    }
    case "Transformation":
      return `(${recur(ast.from)}->${recur(ast.to)})`
    default:
      return ast._tag
  }
}

const fingerprints = new WeakMap<SchemaAST.AST, Map<string, string>>()

/**
 * The fingerprint of a value schema under a serializer: 12 hex characters of a SHA-256 over the
 * structure of the schema (both its encoded and decoded sides), the serializer's name and an optional
 * `version`. Stored values carry it; a read under a different fingerprint is a miss.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { CacheSerializer } from "effect-cachekit"
 *
 * const v1 = CacheSerializer.fingerprint(Schema.Struct({ id: Schema.Number }), CacheSerializer.json)
 * const v2 = CacheSerializer.fingerprint(Schema.Struct({ id: Schema.String }), CacheSerializer.json)
 * // v1 !== v2
 * ```
 *
 * @since 0.1.0
 * @category fingerprints
 */
export const fingerprint = <A, I, In>(
  schema: Schema.Schema<A, I>,
  serializer: CacheSerializer<In>,
  version?: string
): string => {
  const id = `${serializer.name}\u0000${version ?? ""}`
  let bySerializer = fingerprints.get(schema.ast)
  const cached = bySerializer?.get(id)
  if (cached !== undefined) return cached
  // The schema's own AST holds both sides: a transformation is described by its encoded and decoded ends.
  const structure = describe(schema.ast, new Map())
  const value = sha256Hex(`${id}\u0000${structure}`).slice(0, 12)
  if (bySerializer === undefined) fingerprints.set(schema.ast, bySerializer = new Map())
  bySerializer.set(id, value)
  return value
}
