/**
 * The text form of `CacheSerializer.json`.
 *
 * A value that is plain JSON data (strings, finite numbers other than `-0`, booleans, null, arrays and
 * plain objects) is stored as exactly `JSON.stringify(value)`. A value whose encoded form holds what
 * JSON text cannot (bytes, bigints, Dates, Maps, Sets, `undefined`, `NaN`, `±Infinity`, `-0`) is stored
 * as a tagged body: `~` followed by JSON in which each such value is an object `{"~t": tag, "v": ...}`
 * and every object key starting with `~` gets one more `~`, so no data can pass for a tag.
 *
 * Refused, with a message: functions, symbols, class instances, cycles or nesting deeper than
 * `maxDepth`, and an own `__proto__` key (on write and on read, escaped or not: a decoded record must
 * never carry a prototype chosen by whoever wrote the bytes).
 */
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"

/** A value the JSON form cannot carry, or stored text that is not one of its bodies. */
export class Refused extends Error {}

const maxDepth = 512
const tagKey = "~t"
const taggedPrefix = "~"

const tooDeep = () => new Refused(`the value is cyclic or nested deeper than ${maxDepth} levels`)
const protoKey = () => new Refused("an own \"__proto__\" key cannot be stored")

const isPlainObject = (value: object): boolean => {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

const kindOf = (value: unknown): string => {
  if (typeof value === "function") return "a function"
  if (typeof value === "symbol") return "a symbol"
  const name = (value as object).constructor?.name
  return typeof name === "string" && name !== "" ? `an instance of ${name}` : "an object with a custom prototype"
}

const notData = (value: unknown) =>
  new Refused(
    `${kindOf(value)} is not data CacheSerializer.json can store (plain objects, arrays, strings, numbers, ` +
      "booleans, null, undefined, bigints, Uint8Arrays, Dates, Maps and Sets are)"
  )

const isSpecial = (value: object): boolean =>
  value instanceof Uint8Array || value instanceof Date || value instanceof Map || value instanceof Set

/** Whether `value` needs a tagged body; throws `Refused` for what cannot be stored at all. */
const needsTags = (value: unknown, depth: number): boolean => {
  switch (typeof value) {
    case "string":
    case "boolean":
      return false
    case "number":
      return !Number.isFinite(value) || Object.is(value, -0)
    case "bigint":
    case "undefined":
      return true
    case "object": {
      if (value === null) return false
      if (depth >= maxDepth) throw tooDeep()
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          if (needsTags(value[i], depth + 1)) return true
        }
        return false
      }
      if (isSpecial(value)) return true
      if (!isPlainObject(value)) throw notData(value)
      for (const key of Object.keys(value)) {
        if (key === "__proto__") throw protoKey()
        if (needsTags((value as Record<string, unknown>)[key], depth + 1)) return true
      }
      return false
    }
    default:
      throw notData(value)
  }
}

const tagged = (tag: string, v?: unknown) => v === undefined ? { [tagKey]: tag } : { [tagKey]: tag, v }

/** The JSON-safe tree of a value that needs tags. */
const toTree = (value: unknown, depth: number): unknown => {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value
    case "number":
      if (Number.isFinite(value) && !Object.is(value, -0)) return value
      return tagged("num", Object.is(value, -0) ? "-0" : String(value))
    case "bigint":
      return tagged("big", value.toString())
    case "undefined":
      return tagged("undef")
    case "object": {
      if (value === null) return null
      if (depth >= maxDepth) throw tooDeep()
      const next = depth + 1
      if (Array.isArray(value)) {
        const out = new Array<unknown>(value.length)
        for (let i = 0; i < value.length; i++) out[i] = toTree(value[i], next)
        return out
      }
      if (value instanceof Uint8Array) return tagged("u8", Encoding.encodeBase64(value))
      if (value instanceof Date) {
        const time = value.getTime()
        return tagged("date", Number.isNaN(time) ? null : time)
      }
      if (value instanceof Map) return tagged("map", Array.from(value, ([k, v]) => [toTree(k, next), toTree(v, next)]))
      if (value instanceof Set) return tagged("set", Array.from(value, (v) => toTree(v, next)))
      if (!isPlainObject(value)) throw notData(value)
      const out: Record<string, unknown> = Object.create(null)
      for (const key of Object.keys(value)) {
        if (key === "__proto__") throw protoKey()
        out[key.startsWith(taggedPrefix) ? taggedPrefix + key : key] = toTree((value as Record<string, unknown>)[key], next)
      }
      return out
    }
    default:
      throw notData(value)
  }
}

/** The stored text of a value: plain JSON when it is plain data, else a tagged body. */
export const stringify = (value: unknown): string =>
  needsTags(value, 0) ? taggedPrefix + JSON.stringify(toTree(value, 0)) : JSON.stringify(value)

const malformed = (tag: unknown) => new Refused(`the stored text holds a malformed tagged value (${JSON.stringify(tag)})`)

const numbers: Record<string, number> = { "NaN": NaN, "Infinity": Infinity, "-Infinity": -Infinity, "-0": -0 }

const fromTag = (node: Record<string, unknown>, depth: number): unknown => {
  const tag = node[tagKey]
  const v = node.v
  switch (tag) {
    case "undef":
      return undefined
    case "num":
      if (typeof v === "string" && Object.hasOwn(numbers, v)) return numbers[v]
      break
    case "big":
      if (typeof v === "string" && /^-?\d+$/.test(v)) return BigInt(v)
      break
    case "u8":
      if (typeof v === "string") {
        const bytes = Encoding.decodeBase64(v)
        if (Either.isRight(bytes)) return bytes.right
      }
      break
    case "date":
      if (v === null) return new Date(NaN)
      if (typeof v === "number") return new Date(v)
      break
    case "map":
      if (Array.isArray(v)) {
        return new Map(v.map((pair) => {
          if (!Array.isArray(pair) || pair.length !== 2) throw malformed(tag)
          return [fromTree(pair[0], depth), fromTree(pair[1], depth)]
        }))
      }
      break
    case "set":
      if (Array.isArray(v)) return new Set(v.map((item) => fromTree(item, depth)))
      break
  }
  throw malformed(tag)
}

/** The value of a tagged body's tree. */
const fromTree = (node: unknown, depth: number): unknown => {
  if (typeof node !== "object" || node === null) return node
  if (depth >= maxDepth) throw tooDeep()
  const next = depth + 1
  if (Array.isArray(node)) return node.map((item) => fromTree(item, next))
  const record = node as Record<string, unknown>
  if (Object.hasOwn(record, tagKey)) return fromTag(record, next)
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(record)) {
    const name = key.startsWith(taggedPrefix) ? key.slice(1) : key
    if (name === "__proto__") throw protoKey()
    out[name] = fromTree(record[key], next)
  }
  return out
}

/** Throws when a parsed plain body holds an own `__proto__` key anywhere. */
const refuseProtoKeys = (node: unknown, depth: number): void => {
  if (typeof node !== "object" || node === null) return
  if (depth >= maxDepth) throw tooDeep()
  if (Array.isArray(node)) {
    for (const item of node) refuseProtoKeys(item, depth + 1)
    return
  }
  for (const key of Object.keys(node)) {
    if (key === "__proto__") throw protoKey()
    refuseProtoKeys((node as Record<string, unknown>)[key], depth + 1)
  }
}

/** The value of stored text; throws `SyntaxError` or `Refused` for text that is not a body. */
export const parse = (text: string): unknown => {
  if (text.startsWith(taggedPrefix)) return fromTree(JSON.parse(text.slice(1)), 0)
  const value = JSON.parse(text)
  // `JSON.parse` makes `__proto__` an own key; a schema copying it into a record would set the
  // prototype. Only text naming it (or using an escape that could spell it) needs the walk.
  if (text.includes("__proto__") || text.includes("\\u")) refuseProtoKeys(value, 0)
  return value
}
