/**
 * Store keys: `"<namespace>:<keyspace>:<segment>"` (or `"<namespace>:<name>"` for a single entry),
 * validated before any backend sees them. Internal keys (`"<namespace>::..."`) cannot be produced
 * here: keyspace names are never empty.
 */
import * as Either from "effect/Either"
import { InvalidKeyError, type Operation } from "../CacheError.js"
import type { Engine } from "./engine.js"
import type { Definition } from "./model.js"

/** C0 and C1 control characters and DEL (a line break or a terminal escape to a log reader). */
const controlCharacter = /[\u0000-\u001f\u007f-\u009f]/

/** `String.prototype.isWellFormed` (Node 20+; not yet in the ES2022 lib this package compiles against). */
const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed()

/** The prefix every store key of the keyspace starts with (for a single entry, its key). */
export const prefixOf = <K, A, Id>(engine: Engine, keyspace: Definition<K, A, Id, unknown>): string => engine.bindingOf(keyspace).prefix

export const isInvalidKey = (u: unknown): u is InvalidKeyError => u instanceof InvalidKeyError

/**
 * The validated store key of `key`, or the reason it cannot be one. The prefix was validated with the
 * namespace and the keyspace name, so only the segment is checked.
 */
export const storeKey = <K, A, Id>(
  engine: Engine,
  operation: Operation,
  keyspace: Definition<K, A, Id, unknown>,
  key: K
): string | InvalidKeyError => {
  const prefix = engine.bindingOf(keyspace).prefix
  if (keyspace.kind === "single") return prefix
  const encoded = keyspace.encodeKey(key)
  if (Either.isLeft(encoded)) return new InvalidKeyError({ reason: "Encode", operation, cause: encoded.left })
  const segment = encoded.right
  const full = prefix + segment
  if (full.length > engine.maxKeyLength) {
    return new InvalidKeyError({
      reason: "TooLong",
      operation,
      key: full,
      cause: `${full.length} characters, the limit is ${engine.maxKeyLength}`
    })
  }
  if (controlCharacter.test(segment)) return new InvalidKeyError({ reason: "ControlCharacter", operation, key: full })
  // Two different lone surrogates both become U+FFFD in UTF-8: such keys would share a Redis key.
  if (!isWellFormed(segment)) return new InvalidKeyError({ reason: "InvalidUnicode", operation, key: full })
  return full
}

/** The validated store keys of `keys`, or the first reason one cannot be. */
export const storeKeys = <K, A, Id>(
  engine: Engine,
  operation: Operation,
  keyspace: Definition<K, A, Id, unknown>,
  keys: Iterable<K>
): Array<string> | InvalidKeyError => {
  const out: Array<string> = []
  for (const key of keys) {
    const full = storeKey(engine, operation, keyspace, key)
    if (typeof full !== "string") return full
    out.push(full)
  }
  return out
}
