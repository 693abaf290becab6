/**
 * The typed errors of effect-cachekit.
 *
 * Every failure names the `operation` that failed, the `key` where there is one, a `reason` literal
 * and the underlying `cause`. Each class has its own `_tag`, so `Effect.catchTag` picks one kind:
 *
 * - {@link StoreError}: the backend failed (timeout, unavailable, refused, too large, wrong type).
 * - {@link CodecError}: a value could not be encoded for the store (or decoded from it).
 * - {@link InvalidKeyError}: a key could not be turned into a safe store key.
 * - {@link LockError}: a lock could not be taken or was lost.
 * - {@link ProducerTimeoutError}: `getOrSet` stopped waiting for a producer at the keyspace's (or the
 *   call's) `hardTimeout`.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Predicate from "effect/Predicate"

/**
 * The brand every effect-cachekit error carries, so {@link isCacheError} recognizes them whatever
 * their tag.
 *
 * @example
 * ```ts
 * import { CacheError } from "effect-cachekit"
 *
 * const error = new CacheError.StoreError({ reason: "Timeout", operation: "get" })
 * error[CacheError.TypeId] === CacheError.TypeId // true
 * ```
 *
 * @since 0.2.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("effect-cachekit/CacheError")

/**
 * @since 0.2.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * The operations that can fail, as they appear in errors, logs and metrics.
 *
 * @example
 * ```ts
 * import type { CacheError } from "effect-cachekit"
 *
 * const isRead = (operation: CacheError.Operation) => operation === "get" || operation === "getMany"
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Operation =
  | "get"
  | "getMany"
  | "set"
  | "setMany"
  | "add"
  | "delete"
  | "deleteMany"
  | "has"
  | "clear"
  | "expire"
  | "ttl"
  | "increment"
  | "raw"
  | "getOrSet"
  | "lock"
  | "unlock"
  | "publish"

const describeCause = (cause: unknown): string => {
  if (cause === undefined) return ""
  if (Predicate.hasProperty(cause, "message") && typeof cause.message === "string") return `: ${cause.message}`
  return `: ${String(cause)}`
}

const describeKey = (key: string | undefined): string => {
  if (key === undefined) return ""
  return key.length > 120 ? ` (key "${key.slice(0, 120)}…", ${key.length} characters)` : ` (key "${key}")`
}

/**
 * The backend failed: it timed out, could not be reached, refused the credentials (`"Auth"`: a wrong
 * password or user, or none where one is required), refused a value that is too large, found a value
 * of the wrong type (`"WrongType"`: e.g. a counter's key holding something other than an integer),
 * refused an increment past `Number.MAX_SAFE_INTEGER` either way (`"Overflow"`: the counter is left as
 * it was), answered with an error, or does not support the operation.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheError } from "effect-cachekit"
 *
 * const program = Effect.fail(new CacheError.StoreError({ reason: "Timeout", operation: "get", key: "app:users:1" }))
 * program.pipe(Effect.catchTag("StoreError", (e) => Effect.log(e.message)))
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class StoreError extends Data.TaggedError("StoreError")<{
  readonly reason: "Timeout" | "Unavailable" | "Auth" | "TooLarge" | "WrongType" | "Overflow" | "Backend" | "Unsupported"
  readonly operation: Operation
  readonly key?: string | undefined
  readonly store?: string | undefined
  readonly cause?: unknown
}> {
  /**
   * @since 0.2.0
   */
  readonly [TypeId]: TypeId = TypeId

  /**
   * @since 0.1.0
   */
  override get message(): string {
    const store = this.store === undefined ? "" : ` in the ${this.store} store`
    return `${this.operation} failed${store} (${this.reason})${describeKey(this.key)}${describeCause(this.cause)}`
  }
}

/**
 * A value could not be encoded for the store (reason `"Encode"`), or bytes read from the store could
 * not be decoded (reason `"Decode"`). Reads treat a decode failure as a miss and heal the entry; the
 * error is logged and counted rather than returned.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheError } from "effect-cachekit"
 *
 * const program = Effect.fail(new CacheError.CodecError({ reason: "Encode", operation: "set", key: "app:users:1" }))
 * program.pipe(Effect.catchTag("CodecError", (e) => Effect.log(e.reason)))
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class CodecError extends Data.TaggedError("CodecError")<{
  readonly reason: "Encode" | "Decode"
  readonly operation: Operation
  readonly key?: string | undefined
  readonly cause?: unknown
}> {
  /**
   * @since 0.2.0
   */
  readonly [TypeId]: TypeId = TypeId

  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `${this.operation} could not ${this.reason === "Encode" ? "encode" : "decode"} the value${
      describeKey(this.key)
    }${describeCause(this.cause)}`
  }
}

/**
 * A key could not become a store key: its codec refused it (`"Encode"`), it holds control characters
 * (`"ControlCharacter"`) or a lone surrogate (`"InvalidUnicode"`: two such keys could become the same
 * bytes), or it is longer than the cache allows (`"TooLong"`). Such a key never reaches
 * a backend.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheError } from "effect-cachekit"
 *
 * const program = Effect.fail(new CacheError.InvalidKeyError({ reason: "TooLong", operation: "get", key: "x".repeat(5000) }))
 * program.pipe(Effect.catchTag("InvalidKeyError", (e) => Effect.log(e.message)))
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidKeyError extends Data.TaggedError("InvalidKeyError")<{
  readonly reason: "Encode" | "ControlCharacter" | "InvalidUnicode" | "TooLong"
  readonly operation: Operation
  readonly key?: string | undefined
  readonly cause?: unknown
}> {
  /**
   * @since 0.2.0
   */
  readonly [TypeId]: TypeId = TypeId

  /**
   * @since 0.1.0
   */
  override get message(): string {
    const detail = this.reason === "ControlCharacter"
      ? "it contains a control character"
      : this.reason === "InvalidUnicode"
      ? "it contains a lone surrogate (not well-formed UTF-16), which would not survive UTF-8 encoding"
      : this.reason === "TooLong"
      ? "it is longer than the cache's maxKeyLength"
      : "its key codec refused it"
    return `${this.operation} was given an invalid key: ${detail}${describeKey(this.key)}${describeCause(this.cause)}`
  }
}

/**
 * A lock could not be acquired within its timeout (`"Timeout"`), the lock backend refused the
 * credentials (`"Auth"`), or it failed (`"Unavailable"`). `getOrSet` raises it only in `"at-most-once"` mode; a lease lost while producing is
 * logged and its write refused, and the caller still gets the value.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheError } from "effect-cachekit"
 *
 * const program = Effect.fail(new CacheError.LockError({ reason: "Timeout", operation: "lock", key: "app:users:1" }))
 * program.pipe(Effect.catchTag("LockError", () => Effect.succeed("fallback")))
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class LockError extends Data.TaggedError("LockError")<{
  readonly reason: "Timeout" | "Auth" | "Unavailable"
  readonly operation: Operation
  readonly key?: string | undefined
  readonly cause?: unknown
}> {
  /**
   * @since 0.2.0
   */
  readonly [TypeId]: TypeId = TypeId

  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `${this.operation} failed (${this.reason})${describeKey(this.key)}${describeCause(this.cause)}`
  }
}

/**
 * `getOrSet` (or a memoized function) stopped waiting for its producer at the `hardTimeout` of its
 * keyspace or call (reason `"Timeout"`), and no stale value was there to serve instead. The producer
 * is interrupted unless another caller still waits for it. Only a keyspace or call with a
 * `hardTimeout` has this error in its type.
 *
 * @example
 * ```ts
 * import { Duration, Effect } from "effect"
 * import { CacheError } from "effect-cachekit"
 *
 * const program = Effect.fail(
 *   new CacheError.ProducerTimeoutError({ reason: "Timeout", operation: "getOrSet", key: "app:users:1", timeout: Duration.seconds(5) })
 * )
 * program.pipe(Effect.catchTag("ProducerTimeoutError", () => Effect.succeed("fallback")))
 * ```
 *
 * @since 0.2.0
 * @category errors
 */
export class ProducerTimeoutError extends Data.TaggedError("ProducerTimeoutError")<{
  readonly reason: "Timeout"
  readonly operation: Operation
  readonly key?: string | undefined
  /** The hard timeout that ran out. */
  readonly timeout: Duration.Duration
  readonly cause?: unknown
}> {
  /**
   * @since 0.2.0
   */
  readonly [TypeId]: TypeId = TypeId

  /**
   * @since 0.2.0
   */
  override get message(): string {
    return `${this.operation} stopped waiting for the producer after ${Duration.format(this.timeout)} (hardTimeout)${describeKey(this.key)}`
  }
}

/**
 * Every error effect-cachekit can raise.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { CacheError } from "effect-cachekit"
 *
 * const describe = (error: CacheError.CacheError): string => `${error._tag}: ${error.message}`
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export type CacheError = StoreError | CodecError | InvalidKeyError | LockError | ProducerTimeoutError

/**
 * Whether a value is any effect-cachekit error.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheError } from "effect-cachekit"
 *
 * const program = Effect.fail(new CacheError.LockError({ reason: "Timeout", operation: "lock" }))
 * program.pipe(Effect.catchIf(CacheError.isCacheError, (e) => Effect.log(e.message)))
 * ```
 *
 * @since 0.2.0
 * @category guards
 */
export const isCacheError = (u: unknown): u is CacheError => Predicate.hasProperty(u, TypeId)

const tagged = <E extends CacheError>(tag: E["_tag"]) => (u: unknown): u is E =>
  isCacheError(u) && u._tag === tag

/**
 * Whether a value is a {@link StoreError}.
 *
 * @example
 * ```ts
 * import { CacheError } from "effect-cachekit"
 *
 * CacheError.isStoreError(new CacheError.StoreError({ reason: "Timeout", operation: "get" })) // true
 * ```
 *
 * @since 0.2.0
 * @category guards
 */
export const isStoreError: (u: unknown) => u is StoreError = tagged<StoreError>("StoreError")

/**
 * Whether a value is a {@link CodecError}.
 *
 * @example
 * ```ts
 * import { CacheError } from "effect-cachekit"
 *
 * CacheError.isCodecError(new CacheError.CodecError({ reason: "Encode", operation: "set" })) // true
 * ```
 *
 * @since 0.2.0
 * @category guards
 */
export const isCodecError: (u: unknown) => u is CodecError = tagged<CodecError>("CodecError")

/**
 * Whether a value is an {@link InvalidKeyError}.
 *
 * @example
 * ```ts
 * import { CacheError } from "effect-cachekit"
 *
 * CacheError.isInvalidKeyError(new CacheError.InvalidKeyError({ reason: "TooLong", operation: "get" })) // true
 * ```
 *
 * @since 0.2.0
 * @category guards
 */
export const isInvalidKeyError: (u: unknown) => u is InvalidKeyError = tagged<InvalidKeyError>("InvalidKeyError")

/**
 * Whether a value is a {@link LockError}.
 *
 * @example
 * ```ts
 * import { CacheError } from "effect-cachekit"
 *
 * CacheError.isLockError(new CacheError.LockError({ reason: "Timeout", operation: "lock" })) // true
 * ```
 *
 * @since 0.2.0
 * @category guards
 */
export const isLockError: (u: unknown) => u is LockError = tagged<LockError>("LockError")

/**
 * Whether a value is a {@link ProducerTimeoutError}.
 *
 * @example
 * ```ts
 * import { Duration } from "effect"
 * import { CacheError } from "effect-cachekit"
 *
 * CacheError.isProducerTimeoutError(
 *   new CacheError.ProducerTimeoutError({ reason: "Timeout", operation: "getOrSet", timeout: Duration.seconds(1) })
 * ) // true
 * ```
 *
 * @since 0.2.0
 * @category guards
 */
export const isProducerTimeoutError: (u: unknown) => u is ProducerTimeoutError = tagged<ProducerTimeoutError>(
  "ProducerTimeoutError"
)
