/**
 * The write path, written once for `set`, `setMany`, `add` and `getOrSet`: a value becomes an entry
 * (the live value for an in-process store, the envelope bytes elsewhere) whose header is stamped at the
 * Clock's time, with its physical time to live.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as CacheEntry from "../CacheEntry.js"
import * as CacheStore from "../CacheStore.js"
import { CodecError, InvalidKeyError, type Operation } from "../CacheError.js"
import type * as CacheLock from "../CacheLock.js"
import type { Engine } from "./engine.js"
import type { Definition, WriteOptions } from "./model.js"
import * as Tags from "./tags.js"

/** The time to live of a value: the call's, else the keyspace's, else the cache's; `undefined` for none. */
export const ttlOf = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id, unknown>,
  value: A,
  override: WriteOptions<A>["ttl"]
): Duration.Duration | undefined => {
  const input = override === undefined
    ? keyspace.ttl?.(value)
    : typeof override === "function"
    ? override(value)
    : override
  const ttl = input === undefined ? engine.defaultTtl : Duration.decode(input)
  return ttl === undefined || !Duration.isFinite(ttl) ? undefined : ttl
}

/** The grace of a value, in milliseconds: the call's (fixed or from the value), else the keyspace's. */
const graceOf = <K, A, Id>(keyspace: Definition<K, A, Id, unknown>, value: A, override: WriteOptions<A>["grace"]): number => {
  if (override === undefined) return keyspace.graceMillis
  return Math.max(0, Duration.toMillis(Duration.decode(typeof override === "function" ? override(value) : override)))
}

/** Encodes a value into the entry this store keeps, with its physical time to live (see `entryOf`). */
export const encode = <K, A, Id>(
  engine: Engine,
  operation: Operation,
  keyspace: Definition<K, A, Id, unknown>,
  key: string,
  userKey: K,
  value: A,
  options: WriteOptions<A> | undefined
): Effect.Effect<CacheLock.Write, CodecError | InvalidKeyError> =>
  stamp(engine, operation, keyspace, key, userKey, options, {
    value,
    body: keyspace.encodeValue(value),
    fingerprint: keyspace.fingerprint,
    ttl: () => ttlOf(engine, keyspace, value, options?.ttl),
    graceMillis: graceOf(keyspace, value, options?.grace),
    isFailure: false,
    ownTags: (key) => keyspace.tags?.(key, value)
  })

/** What `stamp` makes an entry of: a value or a failure, and its policy. */
interface Stamping {
  readonly value: unknown
  readonly body: Effect.Effect<string | Uint8Array, unknown>
  readonly fingerprint: string
  readonly ttl: () => Duration.Duration | undefined
  readonly graceMillis: number
  readonly isFailure: boolean
  /** The keyspace's own tags for the entry (none for a failure: there is no value to derive them from). */
  readonly ownTags: (key: any) => Iterable<string> | undefined
}

/** An entry for a value or a failure: its tags checked, its body serialized, its header stamped at the Clock's time. */
const stamp = <K, A, Id>(
  engine: Engine,
  operation: Operation,
  keyspace: Definition<K, A, Id, unknown>,
  key: string,
  userKey: K,
  options: WriteOptions<A> | undefined,
  entry: Stamping
): Effect.Effect<CacheLock.Write, CodecError | InvalidKeyError> => {
  const tags = tagsOf(operation, keyspace, userKey, options, entry.ownTags)
  if (tags instanceof InvalidKeyError) return Effect.fail(tags)
  return Effect.flatMap(serialize(engine, keyspace, entry.body, operation, key), (body) =>
    Effect.clockWith((clock) =>
      Effect.succeed(
        entryOf(engine, entry.value, body, entry.fingerprint, clock.unsafeCurrentTimeMillis(), entry.ttl(), entry.graceMillis, entry.isFailure, tags)
      )
    ))
}

const noTags: ReadonlyArray<string> = []

/**
 * The tags an entry carries: the keyspace's (from its key and value) and the write's, validated, and
 * one per combination of the key fields the keyspace names (`keyTags`).
 */
const tagsOf = <K, A, Id>(
  operation: Operation,
  keyspace: Definition<K, A, Id, unknown>,
  userKey: K,
  options: WriteOptions<A> | undefined,
  ownTags: (key: K) => Iterable<string> | undefined
): ReadonlyArray<string> | InvalidKeyError => {
  let own: Iterable<string> | undefined
  try {
    const found = ownTags(userKey)
    own = found === undefined ? undefined : Array.from(found)
  } catch (cause) {
    return new InvalidKeyError({ reason: "Encode", operation, cause: `the keyspace's tags function threw: ${cause instanceof Error ? cause.message : String(cause)}` })
  }
  const call = options?.tags
  const fields = keyspace.keyTags
  if (own === undefined && call === undefined && fields === undefined) return noTags
  const tags = Tags.validate(operation, own === undefined ? call ?? noTags : call === undefined ? own : [...own, ...call])
  if (tags instanceof InvalidKeyError || fields === undefined) return tags
  // Every non-empty combination of the fields, so `invalidateWhere` on any of them is one tag.
  for (let subset = 1; subset < 1 << fields.length; subset++) {
    const where: Record<string, unknown> = {}
    for (let i = 0; i < fields.length; i++) if (subset & (1 << i)) where[fields[i]!] = (userKey as Record<string, unknown>)[fields[i]!]
    tags.push(whereTag(keyspace.name, where))
  }
  return tags
}

/** The tag of the entries of a keyspace whose key has these values in these fields. */
export const whereTag = (keyspace: string, where: Record<string, unknown>): string =>
  `${Tags.wherePrefix}${keyspace}:${JSON.stringify(Object.keys(where).sort().map((field) => [field, typeof where[field], String(where[field])]))}`

/**
 * Encodes a producer's failure that the keyspace caches (`cacheFailure`) into an entry flagged as a
 * failure, under the failure schema's fingerprint, for the policy's ttl (no grace). It carries the
 * call's tags and the key fields' (there is no value for the keyspace's own `tags`), so
 * `invalidateTags` and `invalidateWhere` drop a cached failure too.
 */
export const encodeFailure = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id, unknown>,
  key: string,
  userKey: K,
  failure: unknown,
  options: WriteOptions<A> | undefined
): Effect.Effect<CacheLock.Write, CodecError | InvalidKeyError> => {
  const policy = keyspace.failure!
  return stamp(engine, "getOrSet", keyspace, key, userKey, options, {
    value: failure,
    body: policy.encode(failure),
    fingerprint: policy.fingerprint,
    ttl: () => policy.ttl,
    graceMillis: 0,
    isFailure: true,
    ownTags: () => undefined
  })
}

/** The body of a value or failure, unless the keyspace is kept in memory only on a store of live values. */
const serialize = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id, unknown>,
  encoded: Effect.Effect<string | Uint8Array, unknown>,
  operation: Operation,
  key: string
): Effect.Effect<string | Uint8Array, CodecError> =>
  // A keyspace kept in memory only (`tier: "local"`) on a store of live values is never serialized.
  keyspace.tier === "local" && engine.store.capabilities.liveValues && !engine.store.capabilities.tiered
    ? unserialized
    : Effect.mapError(encoded, (cause) => new CodecError({ reason: "Encode", operation, key, cause }))

/**
 * The entry a store keeps at `now`: the header says when it stops being fresh (the ttl) and when it is
 * gone (the ttl plus the grace: the store's physical time to live); a store that does not assign
 * versions gets the cache's, from the Clock.
 */
const entryOf = (
  engine: Engine,
  value: unknown,
  body: string | Uint8Array,
  fingerprint: string,
  now: number,
  fresh: Duration.Duration | undefined,
  graceMillis: number,
  isFailure: boolean,
  tags: ReadonlyArray<string>
): CacheLock.Write => {
  const freshUntil = fresh === undefined ? Infinity : now + Duration.toMillis(fresh)
  // Kept stale for the grace after the ttl (a ttl of zero or less still removes).
  const grace = fresh === undefined || Duration.toMillis(fresh) <= 0 ? 0 : graceMillis
  const staleUntil = freshUntil + grace
  const ttl = grace === 0 ? fresh : Duration.sum(fresh!, Duration.millis(grace))
  const { assignsVersions, liveValues, tiered } = engine.store.capabilities
  const version = assignsVersions ? 0 : engine.nextVersion(now)
  const header = { fingerprint, version, freshUntil, staleUntil, tags, isFailure }
  // A two-layer store keeps the live value in memory and sends the envelope to the shared tier.
  const stored: CacheEntry.Stored = tiered
    ? CacheEntry.withEnvelope(CacheEntry.Live.make(value, { ...header, size: body.length }), CacheEntry.encode(header, body))
    : liveValues
    ? CacheEntry.Live.make(value, { ...header, size: body.length })
    : CacheEntry.encode(header, body)
  return { value: stored, ttl }
}

/** The body of a value that is not serialized: it counts one byte toward a byte budget. */
const unserialized = Effect.succeed(" ")

/** Encodes and stores one value. */
export const write = <K, A, Id>(
  engine: Engine,
  operation: "set",
  keyspace: Definition<K, A, Id, unknown>,
  key: string,
  userKey: K,
  value: A,
  options: WriteOptions<A> | undefined
) =>
  Effect.flatMap(
    encode(engine, operation, keyspace, key, userKey, value, options),
    (entry) =>
      Effect.map(engine.boundWrite(operation, key, engine.store.set(key, entry.value, entry.ttl, engine.timeout)), () =>
        engine.bindingOf(keyspace).counters.written(key, operation))
  )

/**
 * After the lock stored a value through its own script, a two-layer store keeps the live entry in
 * memory with the version the write got (read back from its envelope; 0: it was not written), unless
 * something happened since `mark`.
 */
export const remember = (engine: Engine, key: string, stored: CacheEntry.Stored, mark: number): void => {
  const local = engine.store.local
  if (local === undefined || !CacheStore.isLive(stored)) return
  const envelope = CacheEntry.envelopeOf(stored)
  const version = envelope === undefined ? 0 : CacheEntry.versionOf(envelope)
  if (version <= 0) return
  stored.version = version
  local.remember(key, stored, mark)
}
