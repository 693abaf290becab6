/**
 * Compiles a keyspace: its name, key and value codecs ready to run, its fingerprint and its policy.
 * `Keyspace.make` and `Cache.memoize` build one; the cache service runs on it.
 */
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as CacheKey from "../CacheKey.js"
import * as CacheSerializer from "../CacheSerializer.js"
import type * as CacheStore from "../CacheStore.js"
import type * as Model from "./model.js"
import type { Definition, FailurePolicy, Service } from "./model.js"

/**
 * Which producer failures a keyspace caches (negative caching), and for how long.
 *
 * `schema` both picks the failures (those it accepts as they are, e.g. a `Schema.TaggedError` class)
 * and stores them; `ttl` is how long later callers fail with the stored failure without running the
 * producer.
 */
export interface CacheFailure<F, FI> extends Model.CacheFailure<F, FI> {}

/**
 * The parts of a keyspace a user chooses. `F` is the type of the failures it caches (`cacheFailure`),
 * `T` the type of its `hardTimeout` (`undefined`: none).
 */
export interface Options<
  K,
  A,
  I,
  Id,
  F = never,
  FI = never,
  T extends Duration.DurationInput | undefined = Duration.DurationInput | undefined
> {
  /** Letters, digits, `_`, `-` and `.`; no `:`. */
  readonly name: string
  readonly key: CacheKey.CacheKey<K>
  readonly value: Schema.Schema<A, I>
  /** A fixed time to live, or one chosen from the value. Defaults to the cache's `defaultTtl`. */
  readonly ttl?: Duration.DurationInput | ((value: A) => Duration.DurationInput) | undefined
  /**
   * How long an entry is kept past its ttl, stale: `get` no longer returns it, but `getOrSet` serves
   * it when its producer fails (a typed error or a defect), logged and counted. Default none.
   */
  readonly grace?: Duration.DurationInput | undefined
  /**
   * After a producer failed and a stale value was served, how long `getOrSet` keeps serving that
   * stale value before it runs the producer again (in this process), so an outage of the source
   * does not hammer it. Default 10 seconds.
   */
  readonly graceBackoff?: Duration.DurationInput | undefined
  /**
   * With a stale value (within grace): when the producer takes longer than this (on the Clock), the
   * caller gets the stale value and the producer completes in the background (still one run, under
   * the lock, its value stored). Without a stale value the caller waits. A batch (`getOrSetMany`)
   * answers its stale values once every key it still waits for has one. Default none.
   */
  readonly softTimeout?: Duration.DurationInput | undefined
  /**
   * How long a caller of `getOrSet` waits for the producer (on the Clock): then it gets the stale value
   * if there is one (within grace), else fails with `CacheError.ProducerTimeoutError`, which the
   * keyspace's `getOrSet` and `memoize` then have in their error type. The producer is interrupted
   * unless another caller still waits for it (or a `softTimeout` already handed it to the background).
   * Default none.
   */
  readonly hardTimeout?: T
  /**
   * A fraction of the ttl (strictly between 0 and 1): a `getOrSet` hit on an entry older than this
   * fraction of its ttl returns the value at once and refreshes the entry in the background, once
   * (one run per key in the process, under the lock across processes). A batch (`getOrSetMany`)
   * refreshes all its keys past that point with one producer call. Default none.
   */
  readonly eagerRefresh?: number | undefined
  /**
   * Caches the producer's typed failures that `schema` accepts, for `ttl`: later callers of
   * `getOrSet` fail with the same (decoded) error without running the producer, until it expires.
   * `get` reads such an entry as a miss. Default none: failures are never cached.
   */
  readonly cacheFailure?: CacheFailure<F, FI> | undefined
  /**
   * The tags of an entry, from its key and value: `Cache.invalidateTags` invalidates every entry that
   * carries one of them, in O(1) round trips. Tags are non-empty strings of at most 1,024 characters
   * without control characters. Default none.
   */
  readonly tags?: ((key: K, value: A) => Iterable<string>) | undefined
  /**
   * Key fields (of a `CacheKey.struct` key) every entry is tagged by, so `invalidateWhere({ org: "acme" })`
   * invalidates every entry whose key has that org in one tag invalidation, not a scan. At most 4
   * fields (an entry carries one tag per combination of them). Default none.
   */
  readonly keyTags?: ReadonlyArray<K extends object ? keyof K & string : never> | undefined
  /** How values are stored. Default `CacheSerializer.json`. */
  readonly serializer?: CacheSerializer.CacheSerializer<NoInfer<I>> | undefined
  /** Values for which this returns `true` are returned to callers but never cached (e.g. `Option.isNone`). */
  readonly skip?: ((value: A) => boolean) | undefined
  /** Bump to invalidate every stored value of this keyspace without a schema change. */
  readonly version?: string | undefined
  /** The cache to use when a program has more than one; defaults to `Cache.Cache`. */
  readonly cache?: Context.Tag<Id, Service> | undefined
  /**
   * Runs after a producer of this keyspace ran and its value was stored, once the callers have the
   * value, with the keyspace's cache in context: for side effects such as warming a related key
   * (vetoing a value is `skip`'s job). A failure is logged and changes nothing else.
   */
  readonly onProduced?: ((key: K, value: A) => Effect.Effect<void, unknown, Id>) | undefined
  /**
   * Where a two-layer cache keeps this keyspace's entries: `"both"` (default) in memory and in the
   * shared store; `"local"` in each instance's memory only (live values, never serialized: for objects
   * that cannot be; its invalidations still reach every instance); `"shared"` in the shared store only
   * (values too big to copy into every instance's memory). Other caches have one store and ignore it.
   */
  readonly tier?: "local" | "shared" | "both" | undefined
}


const validName = /^[A-Za-z0-9_.-]+$/

export const validateName = (what: string, name: string): string => {
  if (!validName.test(name)) {
    throw new TypeError(
      `effect-cachekit: the ${what} ${JSON.stringify(name)} may hold only letters, digits, "_", "-" and "." (no ":")`
    )
  }
  return name
}

/** Whether a parse failure only says the schema needs async work (a `Forbidden` issue somewhere). */
export const needsAsync = (issue: ParseResult.ParseIssue): boolean => {
  switch (issue._tag) {
    case "Forbidden":
      return true
    case "Composite":
      return Array.isArray(issue.issues)
        ? issue.issues.some(needsAsync)
        : needsAsync(issue.issues as ParseResult.ParseIssue)
    case "Pointer":
    case "Refinement":
    case "Transformation":
      return needsAsync(issue.issue)
    default:
      return false
  }
}

/**
 * Runs a codec synchronously (no fiber, no Effect machinery: the hot read path), and only when the
 * schema needs async work through its Effect form.
 */
const syncFirst = <I, O>(
  sync: (input: I) => Either.Either<O, ParseResult.ParseError>,
  effectful: (input: I) => Effect.Effect<O, ParseResult.ParseError>
) =>
(input: I): Effect.Effect<O, ParseResult.ParseError> => {
  const result = sync(input)
  if (Either.isRight(result)) return Effect.succeed(result.right)
  return needsAsync(result.left.issue) ? effectful(input) : Effect.fail(result.left)
}

/**
 * The synchronous decoder of a stored form: the serializer's own reading, then the schema alone
 * (half the work of the composed codec per value); where the reading throws, the codec, which names
 * the failure.
 */
const decodeNowOf = <A, I>(
  serializer: CacheSerializer.CacheSerializer<never>,
  schema: Schema.Schema<A, I>,
  codec: Schema.Schema<A, CacheStore.Encoded>
): (stored: unknown) => Either.Either<A, ParseResult.ParseError> => {
  const whole = Schema.decodeUnknownEither(codec)
  const read = CacheSerializer.readerOf(serializer)
  if (read === undefined) return whole
  const value = Schema.decodeUnknownEither(schema)
  return (stored) => {
    let encoded: unknown
    try {
      encoded = read(stored as CacheStore.Encoded)
    } catch {
      return whole(stored)
    }
    return value(encoded)
  }
}

/** Compiles a `cacheFailure` policy: failures go through the keyspace's serializer, under a fingerprint of their own. */
const failurePolicy = <F, FI>(
  policy: CacheFailure<F, FI>,
  serializer: CacheSerializer.CacheSerializer<unknown>,
  version: string | undefined
): FailurePolicy => {
  const codec = serializer.codec(policy.schema) as Schema.Schema<unknown, string | Uint8Array>
  const matches = Schema.is(policy.schema)
  return {
    fingerprint: CacheSerializer.fingerprint(policy.schema, serializer, `${version ?? ""}\u0000failure`),
    ttl: Duration.decode(policy.ttl),
    matches,
    encode: syncFirst(Schema.encodeEither(codec), Schema.encode(codec)),
    decodeNow: decodeNowOf(serializer, policy.schema as Schema.Schema<unknown, FI>, codec)
  }
}

const fraction = (what: string, value: number | undefined): number | undefined => {
  if (value === undefined) return undefined
  if (!(value > 0 && value < 1)) throw new TypeError(`effect-cachekit: ${what} must be strictly between 0 and 1 (got ${value})`)
  return value
}

/** The key fields entries are tagged by, checked and sorted. */
const keyTagsOf = (fields: ReadonlyArray<string> | undefined): ReadonlyArray<string> | undefined => {
  if (fields === undefined || fields.length === 0) return undefined
  const unique = Array.from(new Set(fields)).sort()
  if (unique.length > 4) throw new TypeError(`effect-cachekit: keyTags names at most 4 fields (got ${unique.length})`)
  return unique
}

/** A fraction of the ttl after which a hit refreshes, checked. */
const eagerRefreshOf = (value: number | undefined): number | undefined => fraction("eagerRefresh", value)

export const make = <K, A, I, Id, F, FI, T extends Duration.DurationInput | undefined>(
  options: Options<K, A, I, Id, F, FI, T>,
  defaultCache: Context.Tag<Id, Service>,
  kind: Definition<K, A, Id>["kind"] = "keyspace"
): Definition<K, A, Id, unknown> => {
  const serializer = (options.serializer ?? CacheSerializer.json) as CacheSerializer.CacheSerializer<I>
  const valueCodec = serializer.codec(options.value)
  const fastKey = CacheKey.getFastEncode(options.key.ast)
  const slowKey = Schema.encodeEither(options.key)
  const ttl = options.ttl
  return {
    name: validateName("keyspace name", options.name),
    kind,
    cache: options.cache ?? defaultCache,
    fingerprint: CacheSerializer.fingerprint(options.value, serializer, options.version),
    format: serializer.format,
    encodeKey: fastKey === undefined ? (key) => slowKey(key) : (key) => {
      const segment = fastKey(key)
      return segment === undefined ? slowKey(key) : Either.right(segment)
    },
    encodeValue: syncFirst(Schema.encodeEither(valueCodec), Schema.encode(valueCodec)),
    decodeValue: Schema.decodeUnknown(valueCodec),
    decodeValueNow: decodeNowOf(serializer, options.value, valueCodec),
    ttl: ttl === undefined ? undefined : typeof ttl === "function" ? ttl : (() => {
      const fixed = Duration.decode(ttl)
      return () => fixed
    })(),
    skip: options.skip,
    graceMillis: options.grace === undefined ? 0 : Math.max(0, Duration.toMillis(Duration.decode(options.grace))),
    graceBackoffMillis: Duration.toMillis(Duration.decode(options.graceBackoff ?? "10 seconds")),
    softTimeout: options.softTimeout === undefined ? undefined : Duration.decode(options.softTimeout),
    onProduced: options.onProduced,
    tier: options.tier ?? "both",
    hardTimeout: options.hardTimeout === undefined ? undefined : Duration.decode(options.hardTimeout),
    eagerRefresh: eagerRefreshOf(options.eagerRefresh),
    tags: options.tags,
    keyTags: keyTagsOf(options.keyTags),
    failure: options.cacheFailure === undefined
      ? undefined
      : failurePolicy(options.cacheFailure, serializer as CacheSerializer.CacheSerializer<unknown>, options.version),
    compileFailure: (policy) => failurePolicy(policy, serializer as CacheSerializer.CacheSerializer<unknown>, options.version),
    variant: ""
  }
}

/** A call's own policies, compiled once per keyspace, `eagerRefresh` and `cacheFailure` object. */
const variants = new WeakMap<Definition<any, any, any, unknown>, Map<number | undefined, WeakMap<object, Definition<any, any, any, unknown>>>>()
const noFailure = {}
let variantCount = 0

/**
 * The keyspace as a call with its own `eagerRefresh` or `cacheFailure` sees it: the same keyspace
 * (name, codecs, fingerprint) with those policies, reading apart from the keyspace's own (`variant`).
 */
export const withCallPolicy = <K, A, Id>(
  keyspace: Definition<K, A, Id, unknown>,
  options: { readonly eagerRefresh?: number | undefined; readonly cacheFailure?: Model.CacheFailure<any, any> | undefined } | undefined
): Definition<K, A, Id, unknown> => {
  const eager = options?.eagerRefresh
  const failure = options?.cacheFailure
  if (eager === undefined && failure === undefined) return keyspace
  let byEager = variants.get(keyspace)
  if (byEager === undefined) variants.set(keyspace, byEager = new Map())
  let byFailure = byEager.get(eager)
  if (byFailure === undefined) byEager.set(eager, byFailure = new WeakMap())
  let variant = byFailure.get(failure ?? noFailure)
  if (variant === undefined) {
    variant = {
      ...keyspace,
      eagerRefresh: eager === undefined ? keyspace.eagerRefresh : eagerRefreshOf(eager),
      failure: failure === undefined ? keyspace.failure : keyspace.compileFailure(failure),
      variant: `\u0000${++variantCount}`
    }
    byFailure.set(failure ?? noFailure, variant)
  }
  return variant as Definition<K, A, Id, unknown>
}
