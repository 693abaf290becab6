/**
 * @internal
 * What the Redis store and the Redis lock share: how ioredis failures are classified, and how a stored
 * value becomes a command argument within the size limit.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { StoreError } from "../CacheError.js"
import * as CacheStore from "../CacheStore.js"

/** @internal A time to live as whole milliseconds for PX; `undefined` for none. */
export const ttlMillis = (ttl: Duration.Duration | undefined): number | undefined =>
  ttl === undefined || !Duration.isFinite(ttl) ? undefined : Math.ceil(Duration.toMillis(ttl))

/** @internal */
export const defaultMaxValueBytes = 16 * 1024 * 1024

/** @internal */
export const classify = (cause: unknown): "Timeout" | "WrongType" | "Backend" | "Unavailable" => {
  const message = cause instanceof Error ? cause.message : String(cause)
  if (/timed out/i.test(message)) return "Timeout"
  if (/WRONGTYPE|not an integer|out of range|overflow/i.test(message)) return "WrongType"
  if (cause instanceof Error && cause.name === "ReplyError") return "Backend"
  return "Unavailable"
}

/** @internal */
export const tooLarge = (operation: StoreError["operation"], key: string, size: number, limit: number) =>
  new StoreError({
    reason: "TooLarge",
    operation,
    key,
    store: "redis",
    cause: `${size} bytes exceeds the ${limit}-byte limit`
  })

/** @internal The argument to send for a stored value; live values never reach Redis. */
export const argument = (
  operation: StoreError["operation"],
  key: string,
  value: CacheStore.StoredValue,
  limit: number
): Effect.Effect<Buffer | string, StoreError> => {
  if (value instanceof CacheStore.LiveValue) {
    return Effect.fail(
      new StoreError({ reason: "Backend", operation, key, store: "redis", cause: "a live value cannot be sent to Redis" })
    )
  }
  const size = typeof value === "string" ? Buffer.byteLength(value) : value.length
  if (size > limit) return Effect.fail(tooLarge(operation, key, size, limit))
  return Effect.succeed(typeof value === "string" ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength))
}
