/**
 * What a cache says about the failures it absorbs: a few log lines per cause per second, each with
 * the count of the lines held back since the last one, annotated with the cache, keyspace, store and
 * operation; and, when keys carry user data, keys replaced by a digest in errors and logs.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import { sha256Base64Url } from "./hash.js"
import { type CacheError, CodecError, InvalidKeyError, LockError, ProducerTimeoutError, StoreError } from "../CacheError.js"

/** Lines per cause per second (real time) before the rest are counted instead of logged. */
const linesPerSecond = 3

/** Causes remembered at most; past it the table starts over (a flood of distinct causes is logged). */
const maxCauses = 1_000

interface Window {
  start: number
  lines: number
  held: number
}

export interface Reporter {
  /**
   * Logs a warning unless its cause already had its lines this second; the message is built only
   * when it is logged. `cause` groups the lines (e.g. keyspace, error tag, reason, operation).
   */
  readonly warn: (
    cause: string,
    annotations: { readonly keyspace?: string | undefined; readonly operation?: string | undefined },
    message: () => string
  ) => Effect.Effect<void>
  readonly redactsKeys: boolean
  /** The key as errors and logs show it: itself, or a digest of its user part when keys are redacted. */
  readonly key: (key: string) => string
  /** The error as it leaves the cache: its key redacted when keys are. */
  readonly error: <E>(error: E) => E
  /** Key fields as events show them: each value a digest when keys are redacted. */
  readonly fields: (fields: Readonly<Record<string, unknown>>) => Readonly<Record<string, unknown>>
}

/** `app:users:42` → `app:users:#<digest>`: the namespace and keyspace stay readable. */
/** The first line of a cause, as a log line quotes it. */
export const firstLine = (cause: Cause.Cause<unknown>): string => Cause.pretty(cause).split("\n")[0]!

/** The digest keys and key data are shown as when redacted (and spans' `cache.key_hash`). */
export const digest = (text: string): string => sha256Base64Url(text).slice(0, 16)

export const digestKey = (key: string): string => {
  const first = key.indexOf(":")
  const second = first < 0 ? -1 : key.indexOf(":", first + 1)
  return second < 0 ? `#${digest(key)}` : `${key.slice(0, second + 1)}#${digest(key)}`
}

const redactError = (error: CacheError): CacheError => {
  if (error.key === undefined) return error
  const key = digestKey(error.key)
  switch (error._tag) {
    case "StoreError":
      return new StoreError({ reason: error.reason, operation: error.operation, key, store: error.store, cause: error.cause })
    case "CodecError":
      return new CodecError({ reason: error.reason, operation: error.operation, key, cause: error.cause })
    case "InvalidKeyError":
      return new InvalidKeyError({ reason: error.reason, operation: error.operation, key, cause: error.cause })
    case "LockError":
      return new LockError({ reason: error.reason, operation: error.operation, key, cause: error.cause })
    case "ProducerTimeoutError":
      return new ProducerTimeoutError({ reason: error.reason, operation: error.operation, key, timeout: error.timeout, cause: error.cause })
  }
}

const isCacheError = (u: unknown): u is CacheError =>
  u instanceof StoreError || u instanceof CodecError || u instanceof InvalidKeyError || u instanceof LockError ||
  u instanceof ProducerTimeoutError

export const make = (options: { readonly cache: string; readonly store: string; readonly redactKeys: boolean }): Reporter => {
  const windows = new Map<string, Window>()
  const base = { cache: options.cache, store: options.store }

  const warn: Reporter["warn"] = (cause, annotations, message) =>
    Effect.suspend(() => {
      const now = performance.now()
      let window = windows.get(cause)
      if (window === undefined) {
        if (windows.size >= maxCauses) windows.clear()
        window = { start: now, lines: 0, held: 0 }
        windows.set(cause, window)
      }
      if (now - window.start >= 1_000) {
        window.start = now
        window.lines = 0
      }
      if (window.lines >= linesPerSecond) {
        window.held++
        return Effect.void
      }
      window.lines++
      const held = window.held
      window.held = 0
      const text = held === 0 ? message() : `${message()} (${held} more like it held back since the last line)`
      return Effect.logWarning(`effect-cachekit: ${text}`).pipe(
        Effect.annotateLogs({
          ...base,
          ...(annotations.keyspace === undefined ? {} : { keyspace: annotations.keyspace }),
          ...(annotations.operation === undefined ? {} : { operation: annotations.operation })
        })
      )
    })

  return {
    warn,
    redactsKeys: options.redactKeys,
    key: options.redactKeys ? digestKey : (key) => key,
    fields: options.redactKeys
      ? (fields) => Object.fromEntries(Object.entries(fields).map(([name, value]) => [name, `#${digest(String(value))}`]))
      : (fields) => ({ ...fields }),
    error: options.redactKeys ? <E>(error: E): E => isCacheError(error) ? redactError(error) as E : error : (error) => error
  }
}
