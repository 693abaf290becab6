/**
 * The read path, written once for `get`, `getMany` and `getOrSet`: what a store returned is classified
 * from its header and the Clock (fresh, or not servable), decoded through the keyspace's codec, healed
 * when it cannot be decoded, and counted as a hit or a miss.
 *
 * On an in-process store with a synchronous read, a fresh live entry of the keyspace is answered in one
 * step: no decoding, no effect in between. On a store that does I/O, concurrent readers of one key
 * share one request.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as CacheEntry from "../CacheEntry.js"
import { CodecError, type Operation, type StoreError } from "../CacheError.js"
import * as CacheStore from "../CacheStore.js"
import type { Counters, Engine } from "./engine.js"
import type * as Tags from "./tags.js"
import { needsAsync } from "./keyspace.js"
import type { Definition, Found } from "./model.js"

/**
 * A read outcome that is not a value. The class is private to the engine, so no user value can be
 * one: a read answers `A | Outcome` without wrapping the value.
 */
export class Outcome {
  constructor(
    readonly _tag: "Miss" | "Invalid" | "Async" | "Stale" | "Failure" | "Due" | "Tagged",
    readonly cause?: unknown,
    readonly body?: string | Uint8Array,
    /**
     * A stale live entry's value; a cached failure's error; a fresh value due for an eager refresh; the
     * stored entry whose tags' versions must be read first.
     */
    readonly value?: unknown
  ) {}
}

/** Nothing servable under the key (absent, expired, or a cached failure). */
export const Miss = new Outcome("Miss")

/**
 * Whether a fresh entry is past the keyspace's `eagerRefresh` point: that fraction of the way from its
 * write (its version, on a microsecond scale) to the end of its ttl.
 */
const isDue = <K, A, Id>(keyspace: Definition<K, A, Id, unknown>, header: CacheEntry.Header, now: number): boolean => {
  const fraction = keyspace.eagerRefresh
  if (fraction === undefined || header.version <= 0 || header.freshUntil === Infinity) return false
  const written = header.version / 1000
  return now >= written + fraction * (header.freshUntil - written)
}

/** A fresh value, or the same value flagged for an eager refresh. */
const freshValue = <K, A, Id>(keyspace: Definition<K, A, Id, unknown>, header: CacheEntry.Header, value: A | Outcome, now: number): A | Outcome =>
  value instanceof Outcome || !isDue(keyspace, header, now) ? value : new Outcome("Due", undefined, undefined, value)

/**
 * The value of a stale entry (past its ttl, within its grace), decoded now: `undefined` when it is not
 * one or cannot be decoded synchronously. Only `getOrSet` asks, once its producer failed.
 */
export const staleValue = <K, A, Id>(keyspace: Definition<K, A, Id, unknown>, outcome: Outcome | undefined): A | undefined => {
  if (outcome === undefined || outcome._tag !== "Stale") return undefined
  if (outcome.body === undefined) return outcome.value as A
  const found = decodeBody(keyspace, outcome.body as Uint8Array)
  return found instanceof Outcome ? undefined : found
}

const invalid = (cause: unknown) => new Outcome("Invalid", cause)

const notAnEnvelope = invalid(
  "the entry is not an effect-cachekit 0.2 envelope (written by an older version or by another program)"
)

// Text bodies are UTF-8, read as written: a leading U+FEFF is the value's, not a byte order mark.
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true })
// Invalid UTF-8 must fail (a miss), not become U+FFFD.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

const notUtf8 = invalid("the stored text is not valid UTF-8")

/** `bytes` as text, or the `Invalid` outcome when they are not valid UTF-8. */
const strictText = (bytes: Uint8Array): string | Outcome => {
  try {
    return strictUtf8.decode(bytes)
  } catch {
    return notUtf8
  }
}

/** A stored body as the keyspace's serializer reads it: text (valid UTF-8 only) or bytes. */
const bodyOf = <K, A, Id>(keyspace: Definition<K, A, Id, unknown>, bytes: Uint8Array): string | Uint8Array | Outcome =>
  keyspace.format !== "text" ? bytes : strictText(bytes)

/** Decodes a body through the keyspace's codec, synchronously when the schema allows. */
const decodeBody = <K, A, Id>(keyspace: Definition<K, A, Id, unknown>, bytes: Uint8Array): A | Outcome =>
  decodeText(keyspace, bodyOf(keyspace, bytes))

const decodeText = <K, A, Id>(keyspace: Definition<K, A, Id, unknown>, body: string | Uint8Array | Outcome): A | Outcome => {
  if (body instanceof Outcome) return body
  const decoded = keyspace.decodeValueNow(body)
  if (Either.isRight(decoded)) return decoded.right
  return needsAsync(decoded.left.issue) ? new Outcome("Async", undefined, body) : invalid(decoded.left)
}

/**
 * What a stored entry gives a keyspace at `now`: the value when it is fresh, `Miss` when nothing is
 * servable, `Invalid` when it cannot be read (to be healed), `Async` when its schema needs async work.
 */
export const classify = <K, A, Id>(
  keyspace: Definition<K, A, Id, unknown>,
  stored: CacheEntry.Stored,
  now: number,
  check: Tags.Tags["check"]
): A | Outcome => {
  if (CacheStore.isLive(stored)) {
    if (!stored.isFailure && stored.fingerprint !== keyspace.fingerprint) return invalid(`the entry was written under fingerprint ${stored.fingerprint}`)
    // A cached failure carries its write's tags too: an invalidated tag drops it as it drops a value.
    if (stored.tags.length > 0 && now < stored.staleUntil) {
      const outcome = taggedOutcome(stored, now, check, stored)
      if (outcome !== undefined) return outcome
    }
    if (stored.isFailure) return failureOf(keyspace, stored, now, stored.value)
    if (now < stored.freshUntil) return keyspace.eagerRefresh === undefined ? stored.value as A : freshValue(keyspace, stored, stored.value as A, now)
    return now < stored.staleUntil ? new Outcome("Stale", undefined, undefined, stored.value) : Miss
  }
  // The common case (fresh, untagged, no eager refresh) without decoding the header into an object.
  if (keyspace.eagerRefresh === undefined) {
    const at = CacheEntry.freshBodyAt(stored, keyspace.fingerprint, now)
    if (at >= 0) return decodeText(keyspace, bodyAt(keyspace, stored, at))
  }
  const entry = CacheEntry.decode(stored)
  if (entry === undefined) return notAnEnvelope
  return classifyEntry(keyspace, entry, now, check, stored)
}

/**
 * `bodyOf` for the body that starts at `at`: text is read straight from the envelope, and checked
 * for valid UTF-8 only when the decoder replaced something (U+FFFD), so a valid body is read once.
 */
const bodyAt = <K, A, Id>(keyspace: Definition<K, A, Id, unknown>, bytes: Uint8Array, at: number): string | Uint8Array | Outcome => {
  const body = bytes.subarray(at)
  if (keyspace.format !== "text") return body
  const text = utf8.decode(body)
  return text.includes("\uFFFD") ? strictText(body) : text
}

/**
 * What an entry's tags say at `now`: nothing (`undefined`: every tag is older than the entry), a miss
 * (a tag was invalidated after the entry was written), or `Tagged` when the tags' versions must be read
 * first (`settle` reads them and classifies `stored` again).
 */
const taggedOutcome = (header: CacheEntry.Header, now: number, check: Tags.Tags["check"], stored: CacheEntry.Stored): Outcome | undefined => {
  const verdict = check(header.tags, header.version, now)
  return verdict === true ? undefined : verdict === false ? Miss : new Outcome("Tagged", undefined, undefined, stored)
}

/** What a decoded envelope gives a keyspace at `now` (see `classify`). */
const classifyEntry = <K, A, Id>(
  keyspace: Definition<K, A, Id, unknown>,
  entry: CacheEntry.Decoded,
  now: number,
  check: Tags.Tags["check"],
  stored: CacheEntry.Stored
): A | Outcome => {
  if (!entry.isFailure && entry.fingerprint !== keyspace.fingerprint) {
    return invalid(`the entry was written under fingerprint ${entry.fingerprint}, not ${keyspace.fingerprint}`)
  }
  // A cached failure carries its write's tags too: an invalidated tag drops it as it drops a value.
  if (entry.tags.length > 0 && now < entry.staleUntil) {
    const outcome = taggedOutcome(entry, now, check, stored)
    if (outcome !== undefined) return outcome
  }
  if (entry.isFailure) return failureOf(keyspace, entry, now, undefined)
  switch (CacheEntry.status(entry, now)) {
    case "fresh":
      return keyspace.eagerRefresh === undefined ? decodeBody(keyspace, entry.body) : freshValue(keyspace, entry, decodeBody(keyspace, entry.body), now)
    case "stale":
      return new Outcome("Stale", undefined, entry.body)
    case "expired":
      return Miss
  }
}

/**
 * A cached failure (`cacheFailure`): while fresh, and written under the keyspace's failure schema, the
 * stored error (a live entry's as it is, an envelope's decoded); else nothing servable, so the
 * producer runs and its outcome replaces it. A failure that needs async decoding is not served.
 */
const failureOf = <K, A, Id>(
  keyspace: Definition<K, A, Id, unknown>,
  entry: CacheEntry.Header & { readonly body?: Uint8Array },
  now: number,
  live: unknown
): Outcome => {
  const policy = keyspace.failure
  if (policy === undefined || entry.fingerprint !== policy.fingerprint || now >= entry.freshUntil) return Miss
  if (entry.body === undefined) return new Outcome("Failure", undefined, undefined, live)
  const body = bodyOf(keyspace, entry.body)
  if (body instanceof Outcome) return Miss
  const decoded = policy.decodeNow(body)
  return Either.isRight(decoded) ? new Outcome("Failure", undefined, undefined, decoded.right) : Miss
}

/**
 * `classify` for what a store read returned: on a two-layer store, an envelope from the shared tier
 * that decodes to a fresh value is handed back to memory, unless something happened since `mark`.
 */
const classifyRead = <K, A, Id>(
  local: CacheStore.Local | undefined,
  keyspace: Definition<K, A, Id, unknown>,
  key: string,
  stored: CacheEntry.Stored,
  now: number,
  mark: number,
  check: Tags.Tags["check"]
): A | Outcome => {
  if (local === undefined || CacheStore.isLive(stored)) return classify(keyspace, stored, now, check)
  const entry = CacheEntry.decode(stored)
  if (entry === undefined) return notAnEnvelope
  const found = classifyEntry(keyspace, entry, now, check, stored)
  keepInMemory(local, key, entry, found, mark)
  return found
}

/** A two-layer store's memory keeps what a read of the shared tier found servable (fresh, or due). */
const keepInMemory = (local: CacheStore.Local, key: string, entry: CacheEntry.Decoded, found: unknown, mark: number): void => {
  if (!(found instanceof Outcome)) local.remember(key, CacheEntry.liveOf(entry, found), mark)
  else if (found._tag === "Due") local.remember(key, CacheEntry.liveOf(entry, found.value), mark)
}

/**
 * A two-layer store whose shared tier failed: the copy memory holds, if it is still fresh (counted as
 * an error and logged at a bounded rate, as `getOrSet` does with any store failure); else the failure.
 */
const fallback = <K, A, Id>(
  engine: Engine,
  local: CacheStore.Local,
  keyspace: Definition<K, A, Id, unknown>,
  key: string,
  error: StoreError
): Effect.Effect<A, StoreError> =>
  Effect.clockWith((clock) => {
    const found = heldCopy(engine, local, keyspace, key, clock.unsafeCurrentTimeMillis())
    return found instanceof Outcome ? Effect.fail(error) : Effect.as(servingCopies(engine, keyspace, error), found)
  })

/** The fresh copy memory holds of `key` that a read may serve while the shared tier fails, else `Miss`. */
const heldCopy = <K, A, Id>(
  engine: Engine,
  local: CacheStore.Local,
  keyspace: Definition<K, A, Id, unknown>,
  key: string,
  now: number
): A | Outcome => {
  const copy = local.fallback(key, now)
  const classified = copy === undefined ? Miss : classify(keyspace, copy, now, engine.tags.check)
  if (classified instanceof Outcome) return classified._tag === "Due" ? classified.value as A : Miss
  return classified
}

/** A read that serves memory's copies because the shared tier failed: the failure counted once, logged at a bounded rate. */
const servingCopies = <K, A, Id>(engine: Engine, keyspace: Definition<K, A, Id, unknown>, error: StoreError): Effect.Effect<void> => {
  engine.bindingOf(keyspace).counters.failure(error)
  return engine.report.warn(
    `${keyspace.name}\u0000${error._tag}\u0000${error.reason}\u0000fallback`,
    { keyspace: keyspace.name, operation: error.operation },
    () => `${engine.report.error(error).message}; serving the copy held in memory`
  )
}

/**
 * A batch read while the shared tier fails: each key from memory where it holds a fresh copy (the
 * rest missing), the failure counted once for the batch and, with `count`, each key's hit or miss;
 * the failure itself when memory holds none of them.
 */
const fallbackMany = <K, A, Id>(
  engine: Engine,
  local: CacheStore.Local,
  keyspace: Definition<K, A, Id, unknown>,
  keys: ReadonlyArray<string>,
  error: StoreError,
  count: boolean
): Effect.Effect<Array<A | Outcome>, StoreError> =>
  Effect.clockWith((clock) => {
    const now = clock.unsafeCurrentTimeMillis()
    const found = keys.map((key) => heldCopy(engine, local, keyspace, key, now))
    if (found.every((value) => value instanceof Outcome)) return Effect.fail(error)
    if (count) {
      const counters = engine.bindingOf(keyspace).counters
      found.forEach((value, i) => value instanceof Outcome ? counters.miss(keys[i]!) : counters.hit(keys[i]!))
    }
    return Effect.as(servingCopies(engine, keyspace, error), found)
  })

/** Drops an entry that cannot be decoded; the read becomes a miss. */
export const heal = <K, A, Id>(
  engine: Engine,
  operation: Operation,
  keyspace: Definition<K, A, Id, unknown>,
  key: string,
  cause: unknown
): Effect.Effect<Outcome> => {
  const error = new CodecError({ reason: "Decode", operation, key, cause })
  engine.bindingOf(keyspace).counters.decodeFailure(key)
  return engine.report.warn(
    `${keyspace.name}\u0000decode\u0000${operation}`,
    { keyspace: keyspace.name, operation },
    () => `${engine.report.error(error).message}; dropping the entry`
  ).pipe(
    Effect.zipRight(engine.boundWrite("delete", key, engine.store.delete(key)).pipe(Effect.ignore)),
    Effect.as(Miss)
  )
}

/**
 * Finishes what `classify` could not answer synchronously: heals an invalid entry, runs an async
 * decode, reads the versions of an entry's tags (which may fail: the store is asked).
 */
const settle = <K, A, Id>(
  engine: Engine,
  operation: Operation,
  keyspace: Definition<K, A, Id, unknown>,
  key: string,
  outcome: Outcome
): Effect.Effect<A | Outcome, StoreError> => {
  switch (outcome._tag) {
    case "Miss":
    case "Stale":
    case "Failure":
    case "Due":
      return Effect.succeed(outcome)
    case "Invalid":
      return heal(engine, operation, keyspace, key, outcome.cause)
    case "Async":
      return Effect.catchAll(keyspace.decodeValue(outcome.body!), (cause) => heal(engine, operation, keyspace, key, cause))
    case "Tagged": {
      // Read the tags' versions, then classify the entry again knowing them.
      const stored = outcome.value as CacheEntry.Stored
      const header = CacheStore.isLive(stored) ? stored : CacheEntry.decode(stored)
      if (header === undefined) return Effect.succeed(notAnEnvelope)
      return Effect.flatMap(engine.tags.load(header.tags), (isValid) =>
        Effect.clockWith((clock) => {
          const found = classify(keyspace, stored, clock.unsafeCurrentTimeMillis(), (_, version) => isValid(version))
          return found instanceof Outcome ? settle(engine, operation, keyspace, key, found) : Effect.succeed(found)
        }))
    }
  }
}

/**
 * Reads and classifies one entry from the store (for stores without a synchronous read, and for what
 * a two-layer store's memory could not answer).
 */
const readStored = <K, A, Id>(
  engine: Engine,
  operation: Operation,
  keyspace: Definition<K, A, Id, unknown>,
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
          const found = classifyRead(local, keyspace, key, stored.value, clock.unsafeCurrentTimeMillis(), mark, engine.tags.check)
          if (!(found instanceof Outcome)) return Effect.succeed(found)
          const settled = settle(engine, operation, keyspace, key, found)
          // A tagged entry read from the shared tier, found valid once its tags were read: memory keeps it.
          if (local === undefined || found._tag !== "Tagged" || CacheStore.isLive(stored.value)) return settled
          const bytes = stored.value
          return Effect.tap(settled, (value) => {
            if (value instanceof Outcome && value._tag !== "Due") return
            const entry = CacheEntry.decode(bytes)
            if (entry !== undefined) keepInMemory(local, key, entry, value, mark)
          })
        }))
  if (local === undefined) return read(0)
  return Effect.suspend(() => Effect.catchAll(read(local.mark()), (error) => fallback(engine, local, keyspace, key, error)))
}

/** What a caller does with a read: a hit, a miss, or a store failure. */
export interface Continuation<A, X, E, R> {
  readonly onHit: (value: A) => Effect.Effect<X, E, R>
  /** A hit on an entry past its eager refresh point (`onHit` when absent). */
  readonly onDue?: ((value: A) => Effect.Effect<X, E, R>) | undefined
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
  keyspace: Definition<K, A, Id, unknown>,
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
        counters.miss(key)
        return k.onMiss()
      }
      const found = classify(keyspace, stored, now, engine.tags.check)
      if (!(found instanceof Outcome)) {
        counters.hit(key)
        return k.onHit(found)
      }
      return Effect.matchEffect(settle(engine, operation, keyspace, key, found), {
        onFailure: k.onFailure,
        onSuccess: (settled) => answer(counters, key, k, settled)
      })
    })
  }
  return lookupShared(engine, operation, keyspace, key, counters, k)
}

/** The read of a store that does I/O: readers of one key under one schema share one request. */
const lookupShared = <K, A, Id, X, E, R>(
  engine: Engine,
  operation: Operation,
  keyspace: Definition<K, A, Id, unknown>,
  key: string,
  counters: Counters,
  k: Continuation<A, X, E, R>
): Effect.Effect<X, E, R> =>
  Effect.matchEffect(engine.reads.share(`${key}\u0000${keyspace.fingerprint}${keyspace.variant}`, readStored(engine, operation, keyspace, key)), {
    onFailure: k.onFailure,
    onSuccess: (found) => answer(counters, key, k, found)
  })

/** Counts a read and hands it to the caller's continuation. */
const answer = <A, X, E, R>(counters: Counters, key: string, k: Continuation<A, X, E, R>, found: A | Outcome): Effect.Effect<X, E, R> => {
  if (!(found instanceof Outcome)) {
    counters.hit(key)
    return k.onHit(found)
  }
  if (found._tag === "Due") {
    counters.hit(key)
    return (k.onDue ?? k.onHit)(found.value as A)
  }
  counters.miss(key)
  return k.onMiss(found)
}

/**
 * Reads `key` without counting or sharing: `getOrSet`'s second look under its guard or lock, where a
 * store failure is absorbed as a miss by the caller. `guarded: false` after the lock answered for the
 * key: the breaker (opened by other keys' failures) does not refuse it.
 */
export const reread = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id, unknown>,
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
    const found = classify(keyspace, stored, now, engine.tags.check)
    return found instanceof Outcome ? settle(engine, "getOrSet", keyspace, key, found) : Effect.succeed(found)
  })
}

/**
 * A batch read: one store call, every entry classified in one synchronous pass, what cannot be decoded
 * dropped with one batch delete, async schemas decoded afterwards.
 */
export const lookupMany = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id, unknown>,
  keys: ReadonlyArray<string>
): Effect.Effect<Array<Option.Option<A>>, StoreError> => {
  const local = engine.store.local
  if (local === undefined) return readMany(engine, keyspace, keys, undefined, 0)
  // A two-layer store whose shared tier failed: each key from memory where it holds a fresh copy.
  return Effect.suspend(() =>
    Effect.catchAll(readMany(engine, keyspace, keys, local, local.mark()), (error) =>
      Effect.map(fallbackMany(engine, local, keyspace, keys, error, true), (found) =>
        found.map((value) => value instanceof Outcome ? Option.none() : Option.some(value))))
  )
}

const readMany = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id, unknown>,
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
      let hits = 0
      let misses = 0
      for (let i = 0; i < stored.length; i++) {
        const entry = stored[i]!
        const found = Option.isNone(entry) ? Miss : classifyRead(local, keyspace, keys[i]!, entry.value, now, mark, engine.tags.check)
        if (!(found instanceof Outcome) || found._tag === "Due") {
          hits++
          out[i] = Option.some(found instanceof Outcome ? found.value as A : found)
          continue
        }
        out[i] = Option.none()
        if (found._tag === "Async" || found._tag === "Tagged") {
          later.push([i, found])
          continue
        }
        misses++
        if (found._tag === "Invalid") {
          c.decodeFailure(keys[i]!)
          invalid.push(keys[i]!)
        }
      }
      if (hits > 0) c.hits(hits)
      if (misses > 0) c.misses(misses)
      if (engine.events.listening) {
        // Entries settled later tell their own reads.
        const settledLater = new Set(later.map(([at]) => at))
        for (let i = 0; i < out.length; i++) {
          if (!settledLater.has(i)) c.tellRead(Option.isSome(out[i]!), keys[i]!)
        }
      }
      const healed = invalid.length === 0 ? Effect.void : engine.report.warn(
        `${keyspace.name}\u0000decode\u0000getMany`,
        { keyspace: keyspace.name, operation: "getMany" },
        () => `getMany could not decode ${invalid.length} value(s) (e.g. key "${engine.report.key(invalid[0]!)}"); dropping them`
      ).pipe(Effect.zipRight(engine.boundWrite("deleteMany", undefined, engine.store.deleteMany(invalid)).pipe(Effect.ignore)))
      const slow = later.length === 0 ? Effect.void : Effect.forEach(later, ([i, outcome]) =>
        Effect.map(settle(engine, "getMany", keyspace, keys[i]!, outcome), (found) => {
          if (found instanceof Outcome && found._tag === "Due") found = found.value as A
          if (found instanceof Outcome) return c.miss(keys[i]!)
          c.hit(keys[i]!)
          out[i] = Option.some(found)
        }), { discard: true })
      return Effect.as(Effect.zipRight(healed, slow), out)
    }))

/**
 * `getOrSetMany`'s read: one store call for `keys`, each entry classified as `getOrSet`'s read does
 * (a value, or the `Outcome` that says why not: stale, a cached failure, a miss), what cannot be
 * decoded healed, async schemas decoded and tags checked. `count`: the first look counts hits and
 * misses, a second one does not. `guarded: false` after the lock answered for the keys. On a
 * two-layer store whose shared tier failed, each key from memory where it holds a fresh copy.
 */
export const lookupOutcomes = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id, unknown>,
  keys: ReadonlyArray<string>,
  count: boolean,
  guarded = true
): Effect.Effect<Array<A | Outcome>, StoreError> => {
  const local = engine.store.local
  const bound = guarded ? engine.bound : engine.boundUnguarded
  const read = (mark: number) =>
    Effect.flatMap(bound("getMany", undefined, engine.store.getMany(keys)), (stored) =>
      Effect.clockWith((clock) => {
        const now = clock.unsafeCurrentTimeMillis()
        const out = new Array<A | Outcome>(stored.length)
        const later: Array<number> = []
        for (let i = 0; i < stored.length; i++) {
          const entry = stored[i]!
          const found = Option.isNone(entry) ? Miss : classifyRead(local, keyspace, keys[i]!, entry.value, now, mark, engine.tags.check)
          out[i] = found
          if (found instanceof Outcome && (found._tag === "Invalid" || found._tag === "Async" || found._tag === "Tagged")) later.push(i)
        }
        const settled = later.length === 0 ? Effect.void : Effect.forEach(later, (i) => {
          const found = out[i] as Outcome
          return Effect.map(settle(engine, "getOrSet", keyspace, keys[i]!, found), (value) => {
            out[i] = value
            // A tagged entry read from the shared tier, found valid once its tags were read: memory keeps it.
            const entry = stored[i]!
            if (local === undefined || found._tag !== "Tagged" || Option.isNone(entry) || CacheStore.isLive(entry.value)) return
            if (value instanceof Outcome && value._tag !== "Due") return
            const decoded = CacheEntry.decode(entry.value)
            if (decoded !== undefined) keepInMemory(local, keys[i]!, decoded, value, mark)
          })
        }, { discard: true })
        return Effect.as(
          Effect.tap(settled, () => {
            if (!count) return
            const counters = engine.bindingOf(keyspace).counters
            out.forEach((found, i) => {
              if (!(found instanceof Outcome) || found._tag === "Due") counters.hit(keys[i]!)
              else counters.miss(keys[i]!)
            })
          }),
          out
        )
      }))
  if (local === undefined) return read(0)
  return Effect.suspend(() =>
    Effect.catchAll(read(local.mark()), (error) =>
      fallbackMany(engine, local, keyspace, keys, error, count))
  )
}

/**
 * `getStale`'s read: the entry's value, fresh or stale (within grace), with its header's say. Tags,
 * cached failures and fingerprints count as for `get`; a stale value is decoded here.
 */
export const lookupStale = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id, unknown>,
  key: string
): Effect.Effect<Option.Option<Found<A>>, StoreError> => {
  const counters = engine.bindingOf(keyspace).counters
  const getNow = engine.store.getNow
  const read: Effect.Effect<Option.Option<CacheEntry.Stored>, StoreError> = getNow === undefined || engine.store.local !== undefined
    ? engine.bound("get", key, engine.store.get(key))
    : Effect.clockWith((clock) => Effect.succeed(Option.fromNullable(getNow(key, clock.unsafeCurrentTimeMillis()))))
  return Effect.flatMap(read, (stored) =>
    Effect.clockWith((clock): Effect.Effect<Option.Option<Found<A>>, StoreError> => {
      if (Option.isNone(stored)) {
        counters.miss(key)
        return Effect.succeedNone
      }
      const now = clock.unsafeCurrentTimeMillis()
      const version = CacheStore.isLive(stored.value) ? stored.value.version : CacheEntry.versionOf(stored.value)
      const age = Duration.millis(version <= 0 ? 0 : Math.max(0, now - version / 1000))
      const found = classify(keyspace, stored.value, now, engine.tags.check)
      const settled = found instanceof Outcome ? settle(engine, "get", keyspace, key, found) : Effect.succeed(found)
      return Effect.map(settled, (value) => {
        if (value instanceof Outcome) {
          const isStale = value._tag === "Stale"
          const served = isStale ? staleValue(keyspace, value) : value._tag === "Due" ? value.value as A : undefined
          if (served === undefined) {
            counters.miss(key)
            return Option.none()
          }
          counters.hit(key)
          return Option.some({ value: served, isStale, age })
        }
        counters.hit(key)
        return Option.some({ value, isStale: false, age })
      })
    }))
}

/**
 * The header of the entry under `key` when it is one `get` would return (fresh, of this keyspace's
 * schema, not a cached failure, not invalidated by a tag), with the Clock's time it was judged at;
 * `undefined` otherwise. Judged from the header: the value is not decoded.
 */
export const servableHeader = <K, A, Id>(
  engine: Engine,
  operation: Operation,
  keyspace: Definition<K, A, Id, unknown>,
  key: string
): Effect.Effect<{ readonly header: CacheEntry.Header; readonly now: number } | undefined, StoreError> =>
  Effect.clockWith((clock) => {
    const getNow = engine.store.getNow
    const copy = getNow === undefined ? undefined : getNow(key, clock.unsafeCurrentTimeMillis())
    const read: Effect.Effect<Option.Option<CacheEntry.Stored>, StoreError> = copy !== undefined || (getNow !== undefined && engine.store.local === undefined)
      ? Effect.succeed(Option.fromNullable(copy))
      : engine.bound(operation, key, engine.store.get(key))
    return Effect.flatMap(read, (stored) =>
      Effect.clockWith((clock) => {
        if (Option.isNone(stored)) return Effect.succeed(undefined)
        const header = CacheStore.isLive(stored.value) ? stored.value : CacheEntry.decode(stored.value)
        const now = clock.unsafeCurrentTimeMillis()
        if (header === undefined || header.isFailure || header.fingerprint !== keyspace.fingerprint || now >= header.freshUntil) {
          return Effect.succeed(undefined)
        }
        const found = { header, now }
        if (header.tags.length === 0) return Effect.succeed(found)
        const verdict = engine.tags.check(header.tags, header.version, now)
        return verdict !== undefined
          ? Effect.succeed(verdict ? found : undefined)
          : Effect.map(engine.tags.load(header.tags), (isValid) => isValid(header.version) ? found : undefined)
      }))
  })

/**
 * `has`: whether `key` holds an entry `get` would return (fresh, of this keyspace's schema, not a
 * cached failure, not invalidated by a tag), judged from its header: the value is not decoded.
 */
export const hasLive = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id, unknown>,
  key: string
): Effect.Effect<boolean, StoreError> => Effect.map(servableHeader(engine, "has", keyspace, key), (found) => found !== undefined)
