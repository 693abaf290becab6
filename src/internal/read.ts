/**
 * The read path, written once for `get`, `getMany` and `getOrSet`: what a store returned is classified
 * from its header and the Clock (fresh, or not servable), decoded through the keyspace's codec, healed
 * when it cannot be decoded, and counted as a hit or a miss.
 *
 * On an in-process store with a synchronous read, a fresh live entry of the keyspace is answered in one
 * step: no decoding, no effect in between. On a store that does I/O, concurrent readers of one key
 * share one request.
 */
import { isUtf8 } from "node:buffer"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as CacheEntry from "../CacheEntry.js"
import { CodecError, type Operation, type StoreError } from "../CacheError.js"
import * as CacheStore from "../CacheStore.js"
import type { Counters, Engine } from "./engine.js"
import { needsAsync } from "./keyspace.js"
import type { Definition } from "./model.js"

/**
 * A read outcome that is not a value. The class is private to the engine, so no user value can be
 * one: a read answers `A | Outcome` without wrapping the value.
 */
export class Outcome {
  constructor(
    readonly _tag: "Miss" | "Invalid" | "Async" | "Stale",
    readonly cause?: unknown,
    readonly body?: string | Uint8Array,
    /** A stale live entry's value. */
    readonly value?: unknown
  ) {}
}

/** Nothing servable under the key (absent, expired, or a cached failure). */
export const Miss = new Outcome("Miss")

/**
 * The value of a stale entry (past its ttl, within its grace), decoded now: `undefined` when it is not
 * one or cannot be decoded synchronously. Only `getOrSet` asks, once its producer failed.
 */
export const staleValue = <K, A, Id>(keyspace: Definition<K, A, Id>, outcome: Outcome | undefined): A | undefined => {
  if (outcome === undefined || outcome._tag !== "Stale") return undefined
  if (outcome.body === undefined) return outcome.value as A
  const found = decodeBody(keyspace, outcome.body as Uint8Array)
  return found instanceof Outcome ? undefined : found
}

const invalid = (cause: unknown) => new Outcome("Invalid", cause)

const notAnEnvelope = invalid(
  "the entry is not an effect-cachekit 0.2 envelope (written by an older version or by another program)"
)

const asBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/** Decodes a body through the keyspace's codec, synchronously when the schema allows. */
const decodeBody = <K, A, Id>(keyspace: Definition<K, A, Id>, bytes: Uint8Array): A | Outcome => {
  let body: string | Uint8Array = bytes
  if (keyspace.format === "text") {
    const buffer = asBuffer(bytes)
    // Invalid UTF-8 must fail (a miss), not become U+FFFD.
    if (!isUtf8(buffer)) return invalid("the stored text is not valid UTF-8")
    body = buffer.toString("utf8")
  }
  const decoded = keyspace.decodeValueNow(body)
  if (Either.isRight(decoded)) return decoded.right
  return needsAsync(decoded.left.issue) ? new Outcome("Async", undefined, body) : invalid(decoded.left)
}

/**
 * What a stored entry gives a keyspace at `now`: the value when it is fresh, `Miss` when nothing is
 * servable, `Invalid` when it cannot be read (to be healed), `Async` when its schema needs async work.
 */
export const classify = <K, A, Id>(keyspace: Definition<K, A, Id>, stored: CacheEntry.Stored, now: number): A | Outcome => {
  if (CacheStore.isLive(stored)) {
    if (stored.fingerprint !== keyspace.fingerprint) return invalid(`the entry was written under fingerprint ${stored.fingerprint}`)
    if (stored.isFailure) return Miss
    if (now < stored.freshUntil) return stored.value as A
    return now < stored.staleUntil ? new Outcome("Stale", undefined, undefined, stored.value) : Miss
  }
  const entry = CacheEntry.decode(stored)
  if (entry === undefined) return notAnEnvelope
  return classifyEntry(keyspace, entry, now)
}

/** What a decoded envelope gives a keyspace at `now` (see `classify`). */
const classifyEntry = <K, A, Id>(keyspace: Definition<K, A, Id>, entry: CacheEntry.Decoded, now: number): A | Outcome => {
  if (entry.fingerprint !== keyspace.fingerprint) {
    return invalid(`the entry was written under fingerprint ${entry.fingerprint}, not ${keyspace.fingerprint}`)
  }
  if (entry.isFailure) return Miss
  switch (CacheEntry.status(entry, now)) {
    case "fresh":
      return decodeBody(keyspace, entry.body)
    case "stale":
      return new Outcome("Stale", undefined, entry.body)
    case "expired":
      return Miss
  }
}

/**
 * `classify` for what a store read returned: on a two-layer store, an envelope from the shared tier
 * that decodes to a fresh value is handed back to memory, unless something happened since `mark`.
 */
const classifyRead = <K, A, Id>(
  local: CacheStore.Local | undefined,
  keyspace: Definition<K, A, Id>,
  key: string,
  stored: CacheEntry.Stored,
  now: number,
  mark: number
): A | Outcome => {
  if (local === undefined || CacheStore.isLive(stored)) return classify(keyspace, stored, now)
  const entry = CacheEntry.decode(stored)
  if (entry === undefined) return notAnEnvelope
  const found = classifyEntry(keyspace, entry, now)
  if (!(found instanceof Outcome)) local.remember(key, CacheEntry.liveOf(entry, found), mark)
  return found
}

/**
 * A two-layer store whose shared tier failed: the copy memory holds, if it is still fresh (counted as
 * an error and logged at a bounded rate, as `getOrSet` does with any store failure); else the failure.
 */
const fallback = <K, A, Id>(
  engine: Engine,
  local: CacheStore.Local,
  keyspace: Definition<K, A, Id>,
  key: string,
  error: StoreError
): Effect.Effect<A, StoreError> =>
  Effect.clockWith((clock) => {
    const now = clock.unsafeCurrentTimeMillis()
    const copy = local.fallback(key, now)
    const found = copy === undefined ? Miss : classify(keyspace, copy, now)
    if (found instanceof Outcome) return Effect.fail(error)
    engine.bindingOf(keyspace).counters.errors()
    return Effect.as(
      engine.report.warn(
        `${keyspace.name}\u0000${error._tag}\u0000${error.reason}\u0000fallback`,
        { keyspace: keyspace.name, operation: error.operation },
        () => `${engine.report.error(error).message}; serving the copy held in memory`
      ),
      found
    )
  })

/** Drops an entry that cannot be decoded; the read becomes a miss. */
export const heal = <K, A, Id>(
  engine: Engine,
  operation: Operation,
  keyspace: Definition<K, A, Id>,
  key: string,
  cause: unknown
): Effect.Effect<Outcome> => {
  const error = new CodecError({ reason: "Decode", operation, key, cause })
  engine.bindingOf(keyspace).counters.decodeFailures()
  return engine.report.warn(
    `${keyspace.name}\u0000decode\u0000${operation}`,
    { keyspace: keyspace.name, operation },
    () => `${engine.report.error(error).message}; dropping the entry`
  ).pipe(
    Effect.zipRight(engine.boundWrite("delete", key, engine.store.delete(key)).pipe(Effect.ignore)),
    Effect.as(Miss)
  )
}

/** Finishes what `classify` could not answer synchronously: heals an invalid entry, runs an async decode. */
const settle = <K, A, Id>(
  engine: Engine,
  operation: Operation,
  keyspace: Definition<K, A, Id>,
  key: string,
  outcome: Outcome
): Effect.Effect<A | Outcome> => {
  switch (outcome._tag) {
    case "Miss":
    case "Stale":
      return Effect.succeed(outcome)
    case "Invalid":
      return heal(engine, operation, keyspace, key, outcome.cause)
    case "Async":
      return Effect.catchAll(keyspace.decodeValue(outcome.body!), (cause) => heal(engine, operation, keyspace, key, cause))
  }
}

/**
 * Reads and classifies one entry from the store (for stores without a synchronous read, and for what
 * a two-layer store's memory could not answer).
 */
const readStored = <K, A, Id>(
  engine: Engine,
  operation: Operation,
  keyspace: Definition<K, A, Id>,
  key: string,
  guarded = true
): Effect.Effect<A | Outcome, StoreError> => {
  const local = engine.store.local
  const bound = guarded ? engine.bound : engine.boundUnguarded
  const read = (mark: number) =>
    Effect.flatMap(bound(operation, key, engine.store.get(key)), (stored) =>
      Option.isNone(stored)
        ? Effect.succeed(Miss)
        : Effect.clockWith((clock) => {
          const found = classifyRead(local, keyspace, key, stored.value, clock.unsafeCurrentTimeMillis(), mark)
          return found instanceof Outcome ? settle(engine, operation, keyspace, key, found) : Effect.succeed(found)
        }))
  if (local === undefined) return read(0)
  return Effect.suspend(() => Effect.catchAll(read(local.mark()), (error) => fallback(engine, local, keyspace, key, error)))
}

/** What a caller does with a read: a hit, a miss, or a store failure. */
export interface Continuation<A, X, E, R> {
  readonly onHit: (value: A) => Effect.Effect<X, E, R>
  /** `stale`: what the store held past its ttl, within its grace, if anything. */
  readonly onMiss: (stale?: Outcome) => Effect.Effect<X, E, R>
  readonly onFailure: (error: StoreError) => Effect.Effect<X, E, R>
}

/**
 * The hit path: reads `key` for `keyspace`, counts a hit or a miss, and continues with the caller's
 * continuation. The one place that reads an entry for a caller.
 */
export const lookup = <K, A, Id, X, E, R>(
  engine: Engine,
  operation: Operation,
  keyspace: Definition<K, A, Id>,
  key: string,
  k: Continuation<A, X, E, R>
): Effect.Effect<X, E, R> => {
  const counters = engine.bindingOf(keyspace).counters
  const getNow = engine.store.getNow
  if (getNow !== undefined) {
    return Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      const stored = getNow(key, now)
      if (stored === undefined) {
        // A two-layer store's memory had nothing it may serve unchecked: read the shared tier.
        if (engine.store.local !== undefined) return lookupShared(engine, operation, keyspace, key, counters, k)
        counters.misses()
        return k.onMiss()
      }
      const found = classify(keyspace, stored, now)
      if (!(found instanceof Outcome)) {
        counters.hits()
        return k.onHit(found)
      }
      return Effect.flatMap(settle(engine, operation, keyspace, key, found), (settled) => {
        if (settled instanceof Outcome) {
          counters.misses()
          return k.onMiss(settled)
        }
        counters.hits()
        return k.onHit(settled)
      })
    })
  }
  return lookupShared(engine, operation, keyspace, key, counters, k)
}

/** The read of a store that does I/O: readers of one key under one schema share one request. */
const lookupShared = <K, A, Id, X, E, R>(
  engine: Engine,
  operation: Operation,
  keyspace: Definition<K, A, Id>,
  key: string,
  counters: Counters,
  k: Continuation<A, X, E, R>
): Effect.Effect<X, E, R> =>
  Effect.matchEffect(engine.reads.share(`${key}\u0000${keyspace.fingerprint}`, readStored(engine, operation, keyspace, key)), {
    onFailure: k.onFailure,
    onSuccess: (found) => {
      if (found instanceof Outcome) {
        counters.misses()
        return k.onMiss(found)
      }
      counters.hits()
      return k.onHit(found)
    }
  })

/**
 * Reads `key` without counting or sharing: `getOrSet`'s second look under its guard or lock, where a
 * store failure is absorbed as a miss by the caller. `guarded: false` after the lock answered for the
 * key: the breaker (opened by other keys' failures) does not refuse it.
 */
export const reread = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id>,
  key: string,
  guarded = true
): Effect.Effect<A | Outcome, StoreError> => {
  const getNow = engine.store.getNow
  if (getNow === undefined) return readStored(engine, "getOrSet", keyspace, key, guarded)
  return Effect.clockWith((clock) => {
    const now = clock.unsafeCurrentTimeMillis()
    const stored = getNow(key, now)
    if (stored === undefined) {
      return engine.store.local === undefined ? Effect.succeed(Miss) : readStored(engine, "getOrSet", keyspace, key, guarded)
    }
    const found = classify(keyspace, stored, now)
    return found instanceof Outcome ? settle(engine, "getOrSet", keyspace, key, found) : Effect.succeed(found)
  })
}

/**
 * A batch read: one store call, every entry classified in one synchronous pass, what cannot be decoded
 * dropped with one batch delete, async schemas decoded afterwards.
 */
export const lookupMany = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id>,
  keys: ReadonlyArray<string>
): Effect.Effect<Array<Option.Option<A>>, StoreError> => {
  const local = engine.store.local
  if (local === undefined) return readMany(engine, keyspace, keys, undefined, 0)
  // A two-layer store whose shared tier failed: each key from memory where it holds a fresh copy.
  return Effect.suspend(() =>
    Effect.catchAll(readMany(engine, keyspace, keys, local, local.mark()), (error) =>
      Effect.forEach(keys, (key) => Effect.option(fallback(engine, local, keyspace, key, error))).pipe(
        Effect.flatMap((found) => found.every(Option.isNone) ? Effect.fail(error) : Effect.succeed(found))
      ))
  )
}

const readMany = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id>,
  keys: ReadonlyArray<string>,
  local: CacheStore.Local | undefined,
  mark: number
): Effect.Effect<Array<Option.Option<A>>, StoreError> =>
  Effect.flatMap(engine.bound("getMany", undefined, engine.store.getMany(keys)), (stored) =>
    Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      const c = engine.bindingOf(keyspace).counters
      const out = new Array<Option.Option<A>>(stored.length)
      const invalid: Array<string> = []
      const later: Array<readonly [number, Outcome]> = []
      for (let i = 0; i < stored.length; i++) {
        const entry = stored[i]!
        const found = Option.isNone(entry) ? Miss : classifyRead(local, keyspace, keys[i]!, entry.value, now, mark)
        if (!(found instanceof Outcome)) {
          c.hits()
          out[i] = Option.some(found)
          continue
        }
        out[i] = Option.none()
        if (found._tag === "Async") {
          later.push([i, found])
          continue
        }
        c.misses()
        if (found._tag === "Invalid") {
          c.decodeFailures()
          invalid.push(keys[i]!)
        }
      }
      const healed = invalid.length === 0 ? Effect.void : engine.report.warn(
        `${keyspace.name}\u0000decode\u0000getMany`,
        { keyspace: keyspace.name, operation: "getMany" },
        () => `getMany could not decode ${invalid.length} value(s) (e.g. key "${engine.report.key(invalid[0]!)}"); dropping them`
      ).pipe(Effect.zipRight(engine.boundWrite("deleteMany", undefined, engine.store.deleteMany(invalid)).pipe(Effect.ignore)))
      const slow = later.length === 0 ? Effect.void : Effect.forEach(later, ([i, outcome]) =>
        Effect.map(settle(engine, "getMany", keyspace, keys[i]!, outcome), (found) => {
          if (found instanceof Outcome) return c.misses()
          c.hits()
          out[i] = Option.some(found)
        }), { discard: true })
      return Effect.as(Effect.zipRight(healed, slow), out)
    }))
