/**
 * Value codecs: how a value's encoded form (the `I` of its `Schema<A, I>`) becomes the text or bytes a
 * store keeps.
 *
 * - `json` (the default): any schema; stored as JSON text.
 * - `msgpack`: any schema; stored as MessagePack bytes (through `@effect/platform`'s MsgPack).
 * - `string`: schemas whose encoded form is a string; stored as that string.
 * - `bytes`: schemas whose encoded form is a `Uint8Array`; stored as those bytes.
 *
 * Every stored value starts with a short header carrying the {@link fingerprint} of its schema and
 * serializer. A value written under another schema is a miss, never a wrongly shaped value.
 *
 * @since 0.1.0
 */
import { isUtf8 } from "node:buffer"
import { createHash } from "node:crypto"
import * as MsgPack from "@effect/platform/MsgPack"
import * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import type * as CacheStore from "./CacheStore.js"

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
 * JSON text, for any schema whose encoded form JSON can hold. The default.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { CacheSerializer, CacheKey, Keyspace } from "effect-cachekit"
 *
 * const Prices = Keyspace.make({ name: "prices", key: CacheKey.string, value: Schema.Number, serializer: CacheSerializer.json })
 * ```
 *
 * @since 0.1.0
 * @category serializers
 */
export const json: CacheSerializer<unknown> = {
  name: "json",
  format: "text",
  codec: (schema) => Schema.parseJson(schema) as Schema.Schema<Schema.Schema.Type<typeof schema>, CacheStore.Encoded>
}

/**
 * MessagePack bytes, for any schema; more compact than JSON and able to carry bytes.
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
  codec: (schema) =>
    MsgPack.schema(schema) as unknown as Schema.Schema<Schema.Schema.Type<typeof schema>, CacheStore.Encoded>
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
  const value = createHash("sha256").update(`${id}\u0000${structure}`).digest("hex").slice(0, 12)
  if (bySerializer === undefined) fingerprints.set(schema.ast, bySerializer = new Map())
  bySerializer.set(id, value)
  return value
}

/** The header every stored value starts with: `ck1:<fingerprint>:`. */
const headerPrefix = "ck1:"
const headerLength = headerPrefix.length + 12 + 1

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder("utf-8", { fatal: true })

/** @internal */
export const frame = (fingerprint: string, body: CacheStore.Encoded): CacheStore.Encoded => {
  const header = `${headerPrefix}${fingerprint}:`
  if (typeof body === "string") return header + body
  const out = new Uint8Array(headerLength + body.length)
  out.set(textEncoder.encode(header), 0)
  out.set(body, headerLength)
  return out
}

/**
 * @internal
 * The body of a stored value written under `fingerprint`, in the serializer's format; `undefined`
 * when the header is missing or names another fingerprint. Throws when text is not valid UTF-8.
 */
export const unframe = (
  fingerprint: string,
  payload: CacheStore.Encoded,
  format: "text" | "binary"
): CacheStore.Encoded | undefined => {
  if (payload.length < headerLength) return undefined
  const header = `${headerPrefix}${fingerprint}:`
  if (typeof payload === "string") {
    if (!payload.startsWith(header)) return undefined
    const body = payload.slice(headerLength)
    return format === "text" ? body : textEncoder.encode(body)
  }
  // Compare the header in place: no string is built for a value of another schema or a foreign one.
  for (let i = 0; i < headerLength; i++) {
    if (payload[i] !== header.charCodeAt(i)) return undefined
  }
  if (format === "binary") return payload.subarray(headerLength)
  if (Buffer.isBuffer(payload)) {
    // Native validation, then native decoding: invalid UTF-8 must fail (a miss), not become U+FFFD.
    const body = payload.subarray(headerLength)
    if (!isUtf8(body)) throw new TypeError("the stored text is not valid UTF-8")
    return body.toString("utf8")
  }
  return textDecoder.decode(payload.subarray(headerLength))
}
