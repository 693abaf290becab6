/**
 * Conformance suites for backends: a store or a lock proves it keeps the port's contract with one
 * line in a vitest file. Our own backends run them; so can yours.
 *
 * ```ts
 * import type { Layer } from "effect"
 * import type { CacheStore } from "effect-cachekit"
 * import { storeSuite } from "effect-cachekit/testing"
 *
 * declare const MyStoreLayer: Layer.Layer<CacheStore.CacheStore> // your backend's layer
 * storeSuite("my store", MyStoreLayer, { capabilities: { clearByPrefix: true } })
 * ```
 *
 * Needs `vitest` and `@effect/vitest` (optional peer dependencies of this package).
 *
 * @since 0.2.0
 */
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as Cache from "./Cache.js"
import * as CacheBus from "./CacheBus.js"
import * as CacheEntry from "./CacheEntry.js"
import * as CacheKey from "./CacheKey.js"
import * as CacheLock from "./CacheLock.js"
import * as CacheStore from "./CacheStore.js"
import * as Keyspace from "./Keyspace.js"

/**
 * How a suite moves time and which optional capabilities the backend claims.
 *
 * @example
 * ```ts
 * import { Duration, Effect } from "effect"
 * import type { SuiteOptions } from "effect-cachekit/testing"
 *
 * // A server with a clock of its own: wait for real, in short units.
 * const options: SuiteOptions = {
 *   unit: "100 millis",
 *   advance: (d) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, Duration.toMillis(d)))),
 *   live: true
 * }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface SuiteOptions {
  /**
   * Moves the backend's notion of time forward. Default `TestClock.adjust`, for backends that read
   * Effect's Clock; a server with a clock of its own passes a real wait and a short `unit`.
   */
  readonly advance?: ((duration: Duration.Duration) => Effect.Effect<void>) | undefined
  /** The time unit of the suite's ttls and leases; every check keeps at least one unit of margin. Default 1 second. */
  readonly unit?: Duration.DurationInput | undefined
  /** Run each test on the real clock (`it.live`) rather than the TestClock. Default `false`. */
  readonly live?: boolean | undefined
}

/**
 * The store suite's options: {@link SuiteOptions} plus the optional capabilities the store claims.
 * The suite checks the store declares exactly these, then tests each claimed one; what a store does
 * not claim it is not tested for (but a store without `clearByPrefix` must refuse `clear` with reason
 * `"Unsupported"`).
 *
 * @example
 * ```ts
 * import type { StoreSuiteOptions } from "effect-cachekit/testing"
 *
 * const options: StoreSuiteOptions = { capabilities: { liveValues: true, synchronousRead: true, assignsVersions: true } }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface StoreSuiteOptions extends SuiteOptions {
  /**
   * Whether `clear` returns how many entries it removed. Default `true`; a store that clears by
   * moving a prefix to a new generation (memcached) cannot count them and says `false`: the suite then
   * checks that its `clear` returns 0, and still checks what is gone and what stays.
   */
  readonly clearCounts?: boolean | undefined
  readonly capabilities?: {
    /** Keeps `CacheEntry.Live` values as given. Default `false`. */
    readonly liveValues?: boolean | undefined
    /** Offers `getNow`. Default `false`. */
    readonly synchronousRead?: boolean | undefined
    /** Supports `clear(prefix)`. Default `true`. */
    readonly clearByPrefix?: boolean | undefined
    /** Stamps each write's version, growing per key. Default `false`. */
    readonly assignsVersions?: boolean | undefined
    /** Offers `currentVersion`, honours `set`'s `since`, and leaves a tombstone for each delete. Default `false`. */
    readonly conditionalWrites?: boolean | undefined
    /** Offers `expire`: a new ttl for an entry, header and physical ttl together. Default `false`. */
    readonly expire?: boolean | undefined
    /** Keeps integer counters (`increment`, `counter`). Default `false`. */
    readonly increment?: boolean | undefined
    /** The kind of client `raw` hands out (`"redis"`, `"memcached"`, ...). Default `undefined`: none. */
    readonly raw?: keyof CacheStore.RawClients | undefined
    /**
     * A two-layer store (`local`): `getNow` answers what memory may serve unchecked, live entries
     * written with their envelope are kept in memory, and `remember` and `fallback` keep and give
     * copies. Default `false`.
     */
    readonly tiered?: boolean | undefined
  } | undefined
}

/** A suite's layer may provide more than the suite needs, never less. */
type Provides<ROut, Needed> = [Needed] extends [ROut] ? unknown : { readonly "the layer must provide": Exclude<Needed, ROut> }

const decoder = new TextDecoder()

/** An envelope holding `text`, fresh for ever unless told otherwise. */
const envelope = (text: string, header: Partial<CacheEntry.Header> = {}): Uint8Array =>
  CacheEntry.encode({
    fingerprint: "suite0000000",
    version: 0,
    freshUntil: Infinity,
    staleUntil: Infinity,
    tags: [],
    isFailure: false,
    ...header
  }, text)

/** The text an envelope holds, or `undefined` for a miss. */
const textOf = (found: Option.Option<CacheEntry.Stored>): string | undefined => {
  if (Option.isNone(found)) return undefined
  const stored = found.value
  if (CacheStore.isLive(stored)) return String(stored.value)
  const decoded = CacheEntry.decode(stored)
  if (decoded === undefined) throw new Error("the store returned bytes that are not the envelope it was given")
  return decoder.decode(decoded.body)
}

const versionOf = (found: Option.Option<CacheEntry.Stored>): number => {
  const stored = Option.getOrThrow(found)
  if (CacheStore.isLive(stored)) return stored.version
  return CacheEntry.decode(stored)!.version
}

/** A value whose encoded form holds what plain JSON cannot: every store must give it back as written. */
const Parity = Schema.Struct({
  data: Schema.Uint8ArrayFromSelf,
  size: Schema.BigIntFromSelf,
  at: Schema.DateFromSelf,
  parts: Schema.MapFromSelf({ key: Schema.String, value: Schema.Number }),
  labels: Schema.SetFromSelf(Schema.String),
  ratio: Schema.Number,
  note: Schema.UndefinedOr(Schema.String)
})
const ParityValues = Keyspace.make({ name: "parity", key: CacheKey.string, value: Parity })
const Bytes = Keyspace.make({ name: "bytes", key: CacheKey.string, value: Schema.Uint8ArrayFromSelf })

/** Lets forked fibers run up to their first real wait. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

const timing = (options: SuiteOptions) => {
  const unit = Duration.decode(options.unit ?? "1 second")
  return {
    advance: options.advance ?? ((d: Duration.Duration) => TestClock.adjust(d)),
    units: (n: number) => Duration.times(unit, n),
    run: options.live === true ? it.live : it.effect
  }
}

/**
 * The store conformance suite: every {@link CacheStore.CacheStore} operation on envelopes and raw
 * bytes, expiry, batches, prefixes and internal keys, and each optional capability the store claims.
 * Call it at the top level of a vitest file.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "effect-cachekit"
 * import { storeSuite } from "effect-cachekit/testing"
 *
 * storeSuite("MemoryStore", MemoryStore.layer({ capacity: 1_000 }), {
 *   capabilities: { liveValues: true, synchronousRead: true, assignsVersions: true }
 * })
 * ```
 *
 * @since 0.2.0
 * @category suites
 */
export const storeSuite = <ROut, E>(
  name: string,
  layer: Layer.Layer<ROut, E> & Provides<ROut, CacheStore.CacheStore>,
  options: StoreSuiteOptions = {}
): void => {
  const { advance, run, units } = timing(options)
  const claimed = {
    liveValues: options.capabilities?.liveValues ?? false,
    synchronousRead: options.capabilities?.synchronousRead ?? false,
    clearByPrefix: options.capabilities?.clearByPrefix ?? true,
    assignsVersions: options.capabilities?.assignsVersions ?? false,
    conditionalWrites: options.capabilities?.conditionalWrites ?? false,
    tiered: options.capabilities?.tiered ?? false,
    expire: options.capabilities?.expire ?? false,
    increment: options.capabilities?.increment ?? false,
    raw: options.capabilities?.raw
  }
  const test = (title: string, body: (store: CacheStore.CacheStore) => Effect.Effect<void, unknown>) =>
    run(title, () => Effect.flatMap(CacheStore.CacheStore, body).pipe(Effect.provide(layer as unknown as Layer.Layer<CacheStore.CacheStore, E>)))
  /** What `clear` should return when it removed `n` entries: `n`, or 0 from a store that cannot count. */
  const cleared = (n: number) => options.clearCounts === false ? 0 : n

  describe(`CacheStore conformance: ${name}`, () => {
    test("declares the capabilities the suite was told it has", (store) =>
      Effect.sync(() => {
        const { liveValues, synchronousRead, clearByPrefix, assignsVersions, conditionalWrites, tiered, expire, increment, raw } = store.capabilities
        assert.deepStrictEqual({ liveValues, synchronousRead, clearByPrefix, assignsVersions, conditionalWrites, tiered, expire, increment, raw }, claimed)
        assert.strictEqual(store.getNow !== undefined, synchronousRead)
        assert.strictEqual(store.currentVersion !== undefined, conditionalWrites)
        assert.strictEqual(store.local !== undefined, tiered)
      }))

    test("a missing key reads as None", (store) =>
      Effect.gen(function*() {
        assert.isTrue(Option.isNone(yield* store.get("t:missing")))
        assert.isFalse(yield* store.has("t:missing"))
      }))

    test("an envelope round-trips: header and body as written, and set overwrites", (store) =>
      Effect.gen(function*() {
        const written = envelope("one", { freshUntil: 4e12, staleUntil: 5e12, tags: ["a", "ü"], isFailure: true })
        yield* store.set("t:a", written, undefined)
        const stored = Option.getOrThrow(yield* store.get("t:a"))
        assert.instanceOf(stored, Uint8Array)
        const decoded = CacheEntry.decode(stored as Uint8Array)!
        assert.deepStrictEqual(
          { ...decoded, body: decoder.decode(decoded.body), version: undefined },
          { fingerprint: "suite0000000", freshUntil: 4e12, staleUntil: 5e12, tags: ["a", "ü"], isFailure: true, isText: true, body: "one", version: undefined }
        )
        yield* store.set("t:a", envelope("two"), undefined)
        assert.strictEqual(textOf(yield* store.get("t:a")), "two")
        yield* store.set("t:empty", envelope(""), undefined)
        assert.strictEqual(textOf(yield* store.get("t:empty")), "")
      }))

    test("a cache over the store gives back what the memory default gives: bytes, bigints, Dates, Maps, Sets, NaN", (store) =>
      Effect.gen(function*() {
        const value: typeof Parity.Type = {
          data: new Uint8Array([0, 255, 7]),
          size: 2n ** 80n,
          at: new Date(1_700_000_000_123),
          parts: new Map([["a", 1]]),
          labels: new Set(["x"]),
          ratio: NaN,
          note: undefined
        }
        const cache = yield* Cache.make({ namespace: "t" }).pipe(Effect.provideService(CacheStore.CacheStore, store))
        const onStore = Effect.provideService(Cache.Cache, cache)
        yield* onStore(ParityValues.set("p", value))
        yield* onStore(Bytes.set("b", new Uint8Array([1, 2, 3])))
        const got = Option.getOrThrow(yield* onStore(ParityValues.get("p")))
        // Compared as plain arrays: a store may hand bytes back as a Buffer, which is a Uint8Array.
        assert.deepStrictEqual({ ...got, data: Array.from(got.data) }, { ...value, data: [0, 255, 7] })
        assert.isTrue(got.data instanceof Uint8Array)
        assert.deepStrictEqual(Array.from(Option.getOrThrow(yield* onStore(Bytes.get("b")))), [1, 2, 3])
      }).pipe(Effect.scoped))

    test("any bytes round-trip byte for byte (an old or foreign entry is the cache's to judge)", (store) =>
      Effect.gen(function*() {
        const bytes = new Uint8Array(256).map((_, i) => i)
        yield* store.set("t:bytes", bytes, undefined)
        const got = Option.getOrThrow(yield* store.get("t:bytes"))
        assert.instanceOf(got, Uint8Array)
        assert.deepStrictEqual(Array.from(got as Uint8Array), Array.from(bytes))
        const wave1 = new TextEncoder().encode("ck1:0123456789ab:\"old\"")
        yield* store.set("t:old", wave1, undefined)
        assert.deepStrictEqual(Array.from(Option.getOrThrow(yield* store.get("t:old")) as Uint8Array), Array.from(wave1))
      }))

    test("an entry expires after its ttl", (store) =>
      Effect.gen(function*() {
        yield* store.set("t:ttl", envelope("v"), units(4))
        yield* store.set("t:forever", envelope("v"), undefined)
        yield* advance(units(2))
        assert.strictEqual(textOf(yield* store.get("t:ttl")), "v")
        yield* advance(units(3))
        assert.isTrue(Option.isNone(yield* store.get("t:ttl")))
        assert.isFalse(yield* store.has("t:ttl"))
        assert.strictEqual(textOf(yield* store.get("t:forever")), "v")
      }))

    test("a ttl of zero or less stores nothing and removes the old value", (store) =>
      Effect.gen(function*() {
        yield* store.set("t:z", envelope("v"), undefined)
        yield* store.set("t:z", envelope("w"), Duration.zero)
        assert.isTrue(Option.isNone(yield* store.get("t:z")))
      }))

    test("getMany answers in order, with None for misses; setMany writes each with its ttl", (store) =>
      Effect.gen(function*() {
        yield* store.setMany([
          { key: "t:m1", value: envelope("1"), ttl: undefined },
          { key: "t:m3", value: envelope("3"), ttl: units(2) }
        ])
        const got = yield* store.getMany(["t:m1", "t:m2", "t:m3"])
        assert.deepStrictEqual(got.map(textOf), ["1", undefined, "3"])
        assert.deepStrictEqual(yield* store.getMany([]), [])
        yield* store.setMany([])
        yield* advance(units(3))
        assert.deepStrictEqual((yield* store.getMany(["t:m1", "t:m3"])).map(textOf), ["1", undefined])
      }))

    test("add writes only when no live entry exists", (store) =>
      Effect.gen(function*() {
        assert.isTrue(yield* store.add("t:add", envelope("first"), units(1)))
        assert.isFalse(yield* store.add("t:add", envelope("second"), undefined))
        assert.strictEqual(textOf(yield* store.get("t:add")), "first")
        yield* advance(units(2))
        assert.isTrue(yield* store.add("t:add", envelope("third"), undefined))
        assert.strictEqual(textOf(yield* store.get("t:add")), "third")
      }))

    test("delete and deleteMany report what they removed", (store) =>
      Effect.gen(function*() {
        for (const key of ["t:d1", "t:d2", "t:d3"]) yield* store.set(key, envelope(key), undefined)
        assert.isTrue(yield* store.delete("t:d1"))
        assert.isFalse(yield* store.delete("t:d1"))
        assert.strictEqual(yield* store.deleteMany(["t:d2", "t:d3", "t:nope"]), 2)
        assert.strictEqual(yield* store.deleteMany([]), 0)
        assert.isFalse(yield* store.has("t:d2"))
      }))

    if (claimed.clearByPrefix) {
      test("clear removes exactly the prefix, with glob characters taken literally", (store) =>
        Effect.gen(function*() {
          const keys = ["t1:a", "t1:b", "t10:a", "t1x", "a[b]:1", "a[b]:2", "ab:1", "a*:1", "a?:1"]
          for (const key of keys) yield* store.set(key, envelope("v"), undefined)
          const present = (keys: ReadonlyArray<string>) => Effect.forEach(keys, (key) => store.has(key))
          assert.strictEqual(yield* store.clear("t1:"), cleared(2))
          assert.deepStrictEqual(yield* present(["t1:a", "t1:b", "t10:a", "t1x"]), [false, false, true, true])
          assert.strictEqual(yield* store.clear("a[b]:"), cleared(2))
          assert.deepStrictEqual(yield* present(["a[b]:1", "a[b]:2", "ab:1"]), [false, false, true])
          assert.strictEqual(yield* store.clear("a*:"), cleared(1))
          assert.deepStrictEqual(yield* present(["a*:1", "a?:1"]), [false, true])
          assert.strictEqual(yield* store.clear("nothing:"), 0)
          // A key written after the clear is there.
          yield* store.set("t1:a", envelope("after"), undefined)
          assert.strictEqual(textOf(yield* store.get("t1:a")), "after")
        }))

      test("clear never removes internal keys, even under a prefix that covers them", (store) =>
        Effect.gen(function*() {
          const internal = CacheStore.internalKey("ns", "lock", "{ns:users:1}:ns:users:1")
          yield* store.set(internal, envelope("lock"), undefined)
          yield* store.set("ns:users:1", envelope("user"), undefined)
          assert.strictEqual(yield* store.clear("ns:"), cleared(1))
          assert.isTrue(yield* store.has(internal))
          assert.isFalse(yield* store.has("ns:users:1"))
        }))
    } else {
      test("clear is refused with reason Unsupported", (store) =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(store.clear("t:"))
          assert.strictEqual(error.reason, "Unsupported")
        }))
    }

    if (claimed.expire) {
      const header = (found: Option.Option<CacheEntry.Stored>) => {
        const stored = Option.getOrThrow(found)
        return CacheStore.isLive(stored) ? stored : CacheEntry.decode(stored)!
      }
      test("expire gives an entry a new ttl: its header and its physical ttl together, the grace kept, a new version", (store) =>
        Effect.gen(function*() {
          const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
          const unit = Duration.toMillis(units(1))
          // Fresh for 1 unit, then stale for 1 more (its grace): physically gone after 2.
          yield* store.set("t:exp", envelope("v", { freshUntil: now + unit, staleUntil: now + 2 * unit }), units(2))
          const before = header(yield* store.get("t:exp")).version
          assert.isTrue(yield* store.expire("t:exp", units(4), now))
          const after = header(yield* store.get("t:exp"))
          assert.deepStrictEqual([after.freshUntil, after.staleUntil], [now + 4 * unit, now + 5 * unit], "freshUntil moved, grace kept")
          assert.isAbove(after.version, before, "an expire is a write: a new version")
          assert.strictEqual(textOf(yield* store.get("t:exp")), "v", "the body is untouched")
          yield* advance(units(3))
          assert.strictEqual(textOf(yield* store.get("t:exp")), "v", "kept past its old physical ttl")
          const later = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
          assert.isTrue(yield* store.expire("t:exp", units(0.5), later), "shortened")
          yield* advance(units(3))
          assert.isTrue(Option.isNone(yield* store.get("t:exp")), "gone after its new ttl and grace")
          assert.isFalse(yield* store.expire("t:exp", units(4), later), "nothing left to expire")
          assert.isFalse(yield* store.expire("t:never", units(4), later))
          assert.isFalse(yield* store.has("t:never"), "expire creates nothing")
        }))

      test("expire with `since` is skipped when the entry was written after that version; an infinite ttl removes the expiry", (store) =>
        Effect.gen(function*() {
          const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
          yield* store.set("t:exp2", envelope("v", { freshUntil: now + Duration.toMillis(units(2)), staleUntil: now + Duration.toMillis(units(2)) }), units(2))
          const version = header(yield* store.get("t:exp2")).version
          assert.isFalse(yield* store.expire("t:exp2", units(10), now, version - 1), "written after the version read")
          assert.strictEqual(header(yield* store.get("t:exp2")).freshUntil, now + Duration.toMillis(units(2)), "left as it was")
          assert.isTrue(yield* store.expire("t:exp2", Duration.infinity, now, version))
          const after = header(yield* store.get("t:exp2"))
          assert.deepStrictEqual([after.freshUntil, after.staleUntil], [Infinity, Infinity])
          yield* advance(units(3))
          assert.strictEqual(textOf(yield* store.get("t:exp2")), "v", "no physical expiry either")
        }))
    } else {
      test("expire is refused with reason Unsupported", (store) =>
        Effect.gen(function*() {
          yield* store.set("t:exp", envelope("v"), undefined)
          const error = yield* Effect.flip(store.expire("t:exp", units(4), 0))
          assert.strictEqual(error.reason, "Unsupported")
          assert.strictEqual(textOf(yield* store.get("t:exp")), "v")
        }))
    }

    if (claimed.increment) {
      test("increment: atomic, from 0, down as well as up; the ttl set on creation only; counter reads it back", (store) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* store.increment("t:n", 5, units(2)), 5)
          assert.strictEqual(yield* store.increment("t:n", -7, units(100)), -2)
          assert.deepStrictEqual(yield* store.counter("t:n"), Option.some(-2))
          assert.deepStrictEqual(yield* store.counter("t:none"), Option.none())
          const all = yield* Effect.forEach(Array.from({ length: 40 }, () => 1), (by) => store.increment("t:many", by, undefined), { concurrency: "unbounded" })
          assert.deepStrictEqual([...all].sort((a, b) => a - b), Array.from({ length: 40 }, (_, i) => i + 1), "each increment saw its own value")
          yield* advance(units(3))
          assert.deepStrictEqual(yield* store.counter("t:n"), Option.none(), "gone after the ttl it was created with")
          assert.deepStrictEqual(yield* store.counter("t:many"), Option.some(40))
          assert.strictEqual(yield* store.increment("t:kept", 3, units(2)), 3)
          assert.isTrue(yield* store.expire("t:kept", units(10), yield* Effect.clockWith((clock) => clock.currentTimeMillis)), "a counter gets a new ttl")
          yield* advance(units(3))
          assert.deepStrictEqual(yield* store.counter("t:kept"), Option.some(3), "kept past its first ttl, its value untouched")
          assert.strictEqual(yield* store.increment("t:kept", 1, undefined), 4)
          assert.isTrue(yield* store.delete("t:many"))
          assert.strictEqual(yield* store.increment("t:many", 1, undefined), 1, "a deleted counter starts again")
        }))

      test("increment refuses a key holding anything but an integer (WrongType) and a step past MAX_SAFE_INTEGER (Overflow), changing nothing", (store) =>
        Effect.gen(function*() {
          yield* store.set("t:text", envelope("v"), undefined)
          const wrong = yield* Effect.flip(store.increment("t:text", 1, undefined))
          assert.strictEqual(wrong.reason, "WrongType")
          assert.strictEqual(textOf(yield* store.get("t:text")), "v")
          assert.strictEqual((yield* Effect.flip(store.counter("t:text"))).reason, "WrongType")
          assert.strictEqual(yield* store.increment("t:big", Number.MAX_SAFE_INTEGER - 1, undefined), Number.MAX_SAFE_INTEGER - 1)
          assert.strictEqual(yield* store.increment("t:big", 1, undefined), Number.MAX_SAFE_INTEGER)
          const over = yield* Effect.flip(store.increment("t:big", 1, undefined))
          assert.strictEqual(over.reason, "Overflow")
          assert.deepStrictEqual(yield* store.counter("t:big"), Option.some(Number.MAX_SAFE_INTEGER), "left as it was")
          assert.strictEqual(yield* store.increment("t:low", -Number.MAX_SAFE_INTEGER, undefined), -Number.MAX_SAFE_INTEGER)
          assert.strictEqual((yield* Effect.flip(store.increment("t:low", -1, undefined))).reason, "Overflow")
          assert.deepStrictEqual(yield* store.counter("t:low"), Option.some(-Number.MAX_SAFE_INTEGER))
        }))
    } else {
      test("increment is refused with reason Unsupported", (store) =>
        Effect.gen(function*() {
          assert.strictEqual((yield* Effect.flip(store.increment("t:n", 1, undefined))).reason, "Unsupported")
          assert.isTrue(Option.isNone(yield* store.get("t:n")))
        }))
    }

    test(claimed.raw === undefined ? "raw is refused with reason Unsupported" : `raw hands out its ${claimed.raw} client, and refuses any other kind`, (store) =>
      Effect.gen(function*() {
        const other = (claimed.raw === "redis" ? "memcached" : "redis") as string as keyof CacheStore.RawClients
        if (claimed.raw !== undefined) assert.isDefined(yield* store.raw(claimed.raw))
        const error = yield* Effect.flip(store.raw(other))
        assert.strictEqual(error.reason, "Unsupported")
        assert.strictEqual(error.operation, "raw")
      }))

    test("keys with unicode and glob characters are stored as they are", (store) =>
      Effect.gen(function*() {
        const keys = ["t:é😀", "t:*", "t:?", "t:[a-z]", "t:\\", "t:%41", "t: spaced "]
        for (const [i, key] of keys.entries()) yield* store.set(key, envelope(String(i)), undefined)
        for (const [i, key] of keys.entries()) assert.strictEqual(textOf(yield* store.get(key)), String(i))
      }))

    if (claimed.assignsVersions) {
      test("each write of a key gets a higher version than the last, whatever the writer put in", (store) =>
        Effect.gen(function*() {
          const versions: Array<number> = []
          for (let i = 0; i < 5; i++) {
            yield* store.set("t:v", envelope(String(i), { version: i === 2 ? 1e18 : 0 }), undefined)
            versions.push(versionOf(yield* store.get("t:v")))
          }
          yield* store.setMany([{ key: "t:v", value: envelope("many"), ttl: undefined }])
          versions.push(versionOf(yield* store.get("t:v")))
          assert.isAbove(versions[0]!, 0)
          for (let i = 1; i < versions.length; i++) {
            assert.isAbove(versions[i]!, versions[i - 1]!, `versions ${versions.join(", ")}`)
          }
        }))
    }

    if (claimed.conditionalWrites) {
      /** The store's version now; a short pause first, so that what came before is behind it on any clock. */
      const mark = (store: CacheStore.CacheStore) =>
        Effect.zipRight(
          advance(Duration.millis(20)),
          Effect.map(store.currentVersion!, (version) => {
            assert.isDefined(version, "the store knows its version")
            return version!
          })
        )

      test("a conditional write is skipped when its key was deleted after its version, and a tombstone is no entry", (store) =>
        Effect.gen(function*() {
          yield* store.set("t:c1", envelope("old"), undefined)
          yield* store.set("t:c2", envelope("old"), undefined)
          const before = yield* mark(store)
          assert.isTrue(yield* store.delete("t:c1"))
          assert.strictEqual(yield* store.deleteMany(["t:c2"]), 1)
          yield* store.set("t:c1", envelope("produced before the delete"), undefined, undefined, before)
          yield* store.set("t:c2", envelope("produced before the delete"), undefined, undefined, before)
          assert.isUndefined(textOf(yield* store.get("t:c1")), "skipped after delete")
          assert.isUndefined(textOf(yield* store.get("t:c2")), "skipped after deleteMany")
          assert.isFalse(yield* store.has("t:c1"), "the tombstone reads as no entry")
          assert.deepStrictEqual((yield* store.getMany(["t:c1", "t:c2"])).map(Option.isSome), [false, false])
          assert.isFalse(yield* store.delete("t:c1"), "nothing left to delete")
          // A write made after the delete lands: unconditional, or conditional on a later version.
          const after = yield* mark(store)
          yield* store.set("t:c1", envelope("produced after the delete"), undefined, undefined, after)
          assert.strictEqual(textOf(yield* store.get("t:c1")), "produced after the delete")
          assert.isTrue(yield* store.add("t:c2", envelope("added"), undefined), "add sees no entry under a tombstone")
          assert.strictEqual(textOf(yield* store.get("t:c2")), "added")
        }))

      test("a conditional write is skipped when its key was written after its version: the newer value stays", (store) =>
        Effect.gen(function*() {
          const before = yield* mark(store)
          yield* store.set("t:c3", envelope("newer"), undefined)
          yield* store.set("t:c3", envelope("older"), undefined, undefined, before)
          assert.strictEqual(textOf(yield* store.get("t:c3")), "newer")
          const after = yield* mark(store)
          yield* store.set("t:c3", envelope("newest"), undefined, undefined, after)
          assert.strictEqual(textOf(yield* store.get("t:c3")), "newest")
          // Without a version the write is unconditional, as before.
          yield* store.set("t:c3", envelope("plain"), undefined)
          assert.strictEqual(textOf(yield* store.get("t:c3")), "plain")
        }))

      if (claimed.clearByPrefix) {
        test("tombstones are internal: clear neither counts nor needs them", (store) =>
          Effect.gen(function*() {
            yield* store.set("tc:1", envelope("v"), undefined)
            yield* store.set("tc:2", envelope("v"), undefined)
            yield* store.delete("tc:1")
            assert.strictEqual(yield* store.clear("tc:"), cleared(1))
          }))
      }
    }

    if (claimed.liveValues) {
      test("a live entry is kept as it is: a hit returns the same instance", (store) =>
        Effect.gen(function*() {
          const value = { deep: { list: [1, 2, 3] } }
          const live = CacheEntry.Live.make(value, { fingerprint: "suite0000000", freshUntil: Infinity, staleUntil: Infinity, size: 10 })
          yield* store.set("t:live", live, undefined)
          const got = Option.getOrThrow(yield* store.get("t:live"))
          assert.strictEqual(got, live)
          assert.strictEqual((got as CacheEntry.Live).value, value)
        }))
    }

    if (claimed.tiered) {
      /** A live entry carrying its envelope, as the cache writes one to a two-layer store. */
      const liveWithEnvelope = (text: string) => {
        const header = { fingerprint: "suite0000000", version: 0, freshUntil: Infinity, staleUntil: Infinity, tags: [], isFailure: false }
        return CacheEntry.withEnvelope(CacheEntry.Live.make(text, { ...header, size: text.length }), CacheEntry.encode(header, text))
      }
      const local = (store: CacheStore.CacheStore) => store.local!

      test("a live entry written with its envelope is kept in memory, with the version the store gave it", (store) =>
        Effect.gen(function*() {
          const live = liveWithEnvelope("v")
          yield* store.set("t:tier", live, undefined)
          const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
          assert.strictEqual(store.getNow!("t:tier", now), live, "memory serves the live entry itself")
          assert.strictEqual(textOf(yield* store.get("t:tier")), "v")
          if (claimed.assignsVersions) assert.isAbove(live.version, 0)
          yield* store.set("t:tier", envelope("bytes"), undefined)
          assert.isUndefined(store.getNow!("t:tier", now), "bytes written through replace the copy in memory")
          assert.strictEqual(textOf(yield* store.get("t:tier")), "bytes")
        }))

      test("what the cache decoded from the shared tier is remembered; a delete forgets it", (store) =>
        Effect.gen(function*() {
          yield* store.set("t:remember", envelope("w"), undefined)
          const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
          assert.isUndefined(store.getNow!("t:remember", now))
          const mark = local(store).mark()
          const read = Option.getOrThrow(yield* store.get("t:remember"))
          assert.isFalse(CacheStore.isLive(read), "the shared tier answers with the envelope")
          const live = CacheEntry.liveOf(CacheEntry.decode(read as Uint8Array)!, "w")
          local(store).remember("t:remember", live, mark)
          assert.strictEqual(store.getNow!("t:remember", now), live)
          assert.strictEqual(local(store).fallback("t:remember", now), live)
          yield* store.delete("t:remember")
          assert.isUndefined(store.getNow!("t:remember", now))
          assert.isUndefined(local(store).fallback("t:remember", now))
          assert.isTrue(Option.isNone(yield* store.get("t:remember")))
        }))

      test("remember never replaces a newer copy with an older one", (store) =>
        Effect.gen(function*() {
          yield* store.set("t:older", envelope("old"), undefined)
          const mark = local(store).mark()
          const old = Option.getOrThrow(yield* store.get("t:older")) as Uint8Array
          const newer = liveWithEnvelope("new")
          yield* store.set("t:older", newer, undefined)
          local(store).remember("t:older", CacheEntry.liveOf(CacheEntry.decode(old)!, "old"), mark)
          const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
          assert.strictEqual(store.getNow!("t:older", now), newer)
        }))
    } else if (claimed.synchronousRead) {
      test("getNow agrees with get, at the Clock's time", (store) =>
        Effect.gen(function*() {
          yield* store.set("t:now", envelope("v"), units(2))
          const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
          assert.strictEqual(textOf(Option.fromNullable(store.getNow!("t:now", now))), "v")
          assert.isUndefined(store.getNow!("t:missing", now))
          yield* advance(units(3))
          const later = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
          assert.isUndefined(store.getNow!("t:now", later))
        }))
    }
  })
}

/**
 * The lock conformance suite: exclusivity, release, extension, lapse, fenced writes and wake-ups.
 * The layer must also provide the {@link CacheStore.CacheStore} the lock writes to.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { MemoryLock, MemoryStore } from "effect-cachekit"
 * import { lockSuite } from "effect-cachekit/testing"
 *
 * lockSuite("in-process lock", MemoryLock.layer.pipe(Layer.provideMerge(MemoryStore.layer())))
 * ```
 *
 * @since 0.2.0
 * @category suites
 */
export const lockSuite = <ROut, E>(
  name: string,
  layer: Layer.Layer<ROut, E> & Provides<ROut, CacheLock.CacheLock | CacheStore.CacheStore>,
  options: SuiteOptions = {}
): void => {
  const { advance, run, units } = timing(options)
  const test = (title: string, body: (lock: CacheLock.CacheLock, store: CacheStore.CacheStore) => Effect.Effect<void, unknown>) =>
    run(title, () =>
      Effect.flatMap(Effect.all([CacheLock.CacheLock, CacheStore.CacheStore]), ([lock, store]) => body(lock, store)).pipe(
        Effect.provide(layer as unknown as Layer.Layer<CacheLock.CacheLock | CacheStore.CacheStore, E>)
      ))

  describe(`CacheLock conformance: ${name}`, () => {
    test("one holder at a time; release frees the lock", (lock) =>
      Effect.gen(function*() {
        const first = yield* lock.tryAcquire("l:a", units(10))
        assert.isTrue(Option.isSome(first))
        assert.isTrue(Option.isNone(yield* lock.tryAcquire("l:a", units(10))))
        assert.isTrue(Option.isSome(yield* lock.tryAcquire("l:b", units(10))), "other keys are independent")
        yield* lock.release(Option.getOrThrow(first), Option.none())
        assert.isTrue(Option.isSome(yield* lock.tryAcquire("l:a", units(10))))
      }))

    test("tryAcquireMany takes every free key at once, leaves the held ones, and each lease acts alone", (lock) =>
      Effect.gen(function*() {
        // Keys spread over many hash slots (a Cluster's masters), two of them already held.
        const keys = Array.from({ length: 24 }, (_, i) => `l:many:${i}`)
        const held = Option.getOrThrow(yield* lock.tryAcquire(keys[3]!, units(10)))
        yield* lock.tryAcquire(keys[17]!, units(10))
        const leases = yield* CacheLock.tryAcquireMany(lock, keys, units(10))
        assert.strictEqual(leases.length, keys.length)
        leases.forEach((lease, i) => {
          assert.strictEqual(Option.isSome(lease), i !== 3 && i !== 17, `key ${i}`)
          if (Option.isSome(lease)) assert.strictEqual(lease.value.key, keys[i])
        })
        assert.isTrue(Option.isNone(yield* lock.tryAcquire(keys[0]!, units(10))), "a key taken by the batch is held")
        assert.isTrue(yield* lock.extend(Option.getOrThrow(leases[5]!), units(10)), "each lease extends alone")
        yield* lock.release(Option.getOrThrow(leases[0]!), Option.none())
        assert.isTrue(Option.isSome(yield* lock.tryAcquire(keys[0]!, units(10))), "and releases alone")
        assert.isTrue(Option.isNone(yield* lock.tryAcquire(keys[1]!, units(10))), "the others are still held")
        yield* lock.release(held, Option.none())
        const again = yield* CacheLock.tryAcquireMany(lock, [keys[3]!, keys[17]!], units(10))
        assert.deepStrictEqual(again.map(Option.isSome), [true, false], "released: free again; still held: not")
        assert.deepStrictEqual(yield* CacheLock.tryAcquireMany(lock, [], units(10)), [])
      }))

    test("a lease lapses by itself; extend keeps it", (lock) =>
      Effect.gen(function*() {
        const kept = Option.getOrThrow(yield* lock.tryAcquire("l:kept", units(4)))
        yield* lock.tryAcquire("l:lapsed", units(4))
        yield* advance(units(2))
        assert.isTrue(yield* lock.extend(kept, units(4)))
        yield* advance(units(3))
        assert.isTrue(Option.isNone(yield* lock.tryAcquire("l:kept", units(4))), "extended lease still held")
        assert.isTrue(Option.isSome(yield* lock.tryAcquire("l:lapsed", units(4))), "unextended lease lapsed")
      }))

    test("a lost lease cannot extend, and its write is refused: the new holder's value stands", (lock, store) =>
      Effect.gen(function*() {
        const old = Option.getOrThrow(yield* lock.tryAcquire("l:fenced", units(2)))
        yield* advance(units(3))
        const current = Option.getOrThrow(yield* lock.tryAcquire("l:fenced", units(10)))
        assert.isFalse(yield* lock.extend(old, units(10)))
        assert.isTrue(yield* lock.release(current, Option.some({ value: envelope("new"), ttl: undefined })))
        assert.isFalse(yield* lock.release(old, Option.some({ value: envelope("stale"), ttl: undefined })))
        assert.strictEqual(textOf(yield* store.get("l:fenced")), "new")
      }))

    test("release with a value stores it with its ttl", (lock, store) =>
      Effect.gen(function*() {
        const lease = Option.getOrThrow(yield* lock.tryAcquire("l:ttl", units(10)))
        assert.isTrue(yield* lock.release(lease, Option.some({ value: envelope("v"), ttl: units(2) })))
        assert.strictEqual(textOf(yield* store.get("l:ttl")), "v")
        yield* advance(units(3))
        assert.isTrue(Option.isNone(yield* store.get("l:ttl")))
      }))

    test("release with a ttl of zero stores nothing and removes the old value, as a store write does", (lock, store) =>
      Effect.gen(function*() {
        yield* store.set("l:zero", envelope("old"), undefined)
        const lease = Option.getOrThrow(yield* lock.tryAcquire("l:zero", units(10)))
        yield* lock.release(lease, Option.some({ value: envelope("new"), ttl: Duration.zero }))
        assert.isTrue(Option.isNone(yield* store.get("l:zero")))
        assert.isTrue(Option.isSome(yield* lock.tryAcquire("l:zero", units(10))), "and the lock is free")
      }))

    test("the lock is not an entry: holding it leaves the key's entry, the store's clear and has alone", (lock, store) =>
      Effect.gen(function*() {
        yield* store.set("ns:k", envelope("entry"), undefined)
        const lease = Option.getOrThrow(yield* lock.tryAcquire("ns:k", units(10)))
        assert.strictEqual(textOf(yield* store.get("ns:k")), "entry")
        yield* Effect.ignore(store.clear("ns:"))
        assert.isTrue(Option.isNone(yield* lock.tryAcquire("ns:k", units(10))), "clear did not free the lock")
        assert.isTrue(yield* lock.extend(lease, units(10)))
      }))

    test("awaitRelease waits while the lock is held and returns when the holder releases", (lock) =>
      Effect.gen(function*() {
        const lease = Option.getOrThrow(yield* lock.tryAcquire("l:wake", units(10)))
        const waiter = yield* Effect.fork(lock.awaitRelease("l:wake", units(100)))
        yield* advance(units(1))
        yield* settle
        assert.isTrue(Option.isNone(yield* Fiber.poll(waiter)), "awaitRelease returned while the lock was held")
        yield* lock.release(lease, Option.none())
        const outcome = yield* Fiber.join(waiter).pipe(Effect.timeout(units(50)), Effect.either)
        assert.strictEqual(outcome._tag, "Right", "the waiter was not woken by the release")
      }))

    test("awaitRelease ends at its timeout when nobody releases", (lock) =>
      Effect.gen(function*() {
        yield* lock.tryAcquire("l:still", units(100))
        const waiter = yield* Effect.fork(lock.awaitRelease("l:still", units(4)))
        yield* advance(units(1))
        yield* settle
        assert.isTrue(Option.isNone(yield* Fiber.poll(waiter)), "awaitRelease returned long before its timeout")
        yield* advance(units(5))
        const outcome = yield* Fiber.join(waiter).pipe(Effect.timeout(units(50)), Effect.either)
        assert.strictEqual(outcome._tag, "Right", "awaitRelease did not end at its timeout")
      }))
  })
}

/**
 * The bus suite's options: how to sever the bus's connection (as a server restart or a network
 * fault would), for the reconnection case; without it, that case is left out.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { BusSuiteOptions } from "effect-cachekit/testing"
 *
 * declare const killSubscribers: Effect.Effect<void>
 * const options: BusSuiteOptions = { sever: killSubscribers }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface BusSuiteOptions {
  /** Drops the connections of every bus instance the suite made (e.g. `CLIENT KILL TYPE pubsub`). */
  readonly sever?: Effect.Effect<void, unknown> | undefined
  /**
   * Whether one publisher's messages arrive in the order they were published. Default `true`; a bus
   * whose messages travel by different routes (Redis Cluster: a message published on one node reaches
   * another over the cluster bus) says `false`, and the suite checks that every message arrives
   * intact. Receivers never rely on the order: a message's version says which write is newer.
   */
  readonly ordered?: boolean | undefined
}

/** Waits on real time, polling every 2 ms, until `done()` holds; fails after `millis`. */
const eventually = (what: string, done: () => boolean, millis = 5_000): Effect.Effect<void, Error> =>
  Effect.async<void, Error>((resume) => {
    const start = Date.now()
    const timer = setInterval(() => {
      if (done()) {
        clearInterval(timer)
        resume(Effect.void)
      } else if (Date.now() - start > millis) {
        clearInterval(timer)
        resume(Effect.fail(new Error(`${what}: not within ${millis} ms`)))
      }
    }, 2)
    return Effect.sync(() => clearInterval(timer))
  })

/** Waits `millis` of real time. */
const pause = (millis: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, millis)))

/**
 * The bus conformance suite: delivery between instances, an instance's own messages filtered out,
 * messages in the order they were published, trust once subscribed, and (with `sever`) a gap and a
 * resumption after a dropped connection. Each test builds two fresh instances of `layer` (two
 * processes, as far as the bus can tell) and uses a namespace of its own. Runs on real time.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Redis, RedisBus } from "effect-cachekit"
 * import { busSuite } from "effect-cachekit/testing"
 *
 * busSuite("RedisBus", RedisBus.layer().pipe(Layer.provide(Redis.layer({ url: "redis://127.0.0.1:6379" }))))
 * ```
 *
 * @since 0.3.0
 * @category suites
 */
export const busSuite = <ROut, E>(
  name: string,
  layer: Layer.Layer<ROut, E> & Provides<ROut, CacheBus.CacheBus>,
  options: BusSuiteOptions = {}
): void => {
  let namespaces = 0
  /** Two fresh instances listening on one new namespace, each with what it heard. */
  const pair = Effect.gen(function*() {
    const namespace = `bus-suite-${process.pid}-${Date.now().toString(36)}-${namespaces++}`
    const listen = Effect.gen(function*() {
      const context = yield* Layer.build(Layer.fresh(layer as unknown as Layer.Layer<CacheBus.CacheBus, E>))
      const bus = Context.get(context, CacheBus.CacheBus)
      const heard = { messages: [] as Array<CacheBus.Message>, gaps: 0, resumes: 0 }
      yield* bus.subscribe(namespace, {
        onMessage: (message) => void heard.messages.push(message),
        onGap: () => void heard.gaps++,
        onResume: () => void heard.resumes++
      })
      yield* eventually("the subscription is up", () => heard.resumes > 0 && bus.trusted())
      return { bus, heard }
    })
    return { namespace, a: yield* listen, b: yield* listen }
  })
  const test = (title: string, body: Effect.Effect<void, unknown, Scope.Scope>) => it.live(title, () => Effect.scoped(body))

  describe(`CacheBus conformance: ${name}`, () => {
    test("a message reaches the other instances, not its publisher; instances have distinct origins", Effect.gen(function*() {
      const { a, b, namespace } = yield* pair
      assert.notStrictEqual(a.bus.origin, b.bus.origin)
      const message: CacheBus.Message = { _tag: "Keys", origin: a.bus.origin, entries: [[`${namespace}:users:1`, 1_000_001]] }
      yield* a.bus.publish(namespace, message)
      yield* eventually("B hears A's message", () => b.heard.messages.length === 1)
      assert.deepStrictEqual(b.heard.messages[0], message)
      yield* pause(50)
      assert.strictEqual(a.heard.messages.length, 0, "A never hears its own message")
    }))

    const ordered = options.ordered ?? true
    test(ordered ? "messages arrive in the order they were published, keys and versions intact" : "every message arrives, keys and versions intact", Effect.gen(function*() {
      const { a, b, namespace } = yield* pair
      const sent = Array.from({ length: 100 }, (_, i): CacheBus.Message =>
        i % 10 === 9
          ? { _tag: "Clear", origin: a.bus.origin, prefix: `${namespace}:k${i}:`, version: 2_000_000 + i }
          : { _tag: "Keys", origin: a.bus.origin, entries: [[`${namespace}:k:${i}`, 2_000_000 + i], [`${namespace}:k:${i} b`, 3_000_000 + i]] })
      yield* Effect.forEach(sent, (message) => a.bus.publish(namespace, message), { discard: true })
      yield* eventually("B hears all 100", () => b.heard.messages.length === 100)
      const versionOf = (message: CacheBus.Message) => message._tag === "Clear" ? message.version : message.entries[0]![1]
      const inOrder = (messages: ReadonlyArray<CacheBus.Message>) => [...messages].sort((x, y) => versionOf(x) % 1_000_000 - versionOf(y) % 1_000_000)
      assert.deepStrictEqual(ordered ? b.heard.messages : inOrder(b.heard.messages), sent)
    }))

    test("a namespace hears only its own channel", Effect.gen(function*() {
      const { a, b, namespace } = yield* pair
      yield* a.bus.publish(`${namespace}-other`, { _tag: "Keys", origin: a.bus.origin, entries: [["x:y:1", 1]] })
      yield* a.bus.publish(namespace, { _tag: "Keys", origin: a.bus.origin, entries: [["x:y:2", 2]] })
      yield* eventually("B hears its namespace's message", () => b.heard.messages.length >= 1)
      yield* pause(50)
      assert.deepStrictEqual(b.heard.messages.map((m) => m._tag === "Keys" ? m.entries[0]![0] : ""), ["x:y:2"])
    }))

    if (options.sever !== undefined) {
      const sever = options.sever
      test("a dropped connection is a gap: no longer trusted until it resumes, then delivery goes on", Effect.gen(function*() {
        const { a, b, namespace } = yield* pair
        yield* sever
        yield* eventually("B hears of the gap", () => b.heard.gaps > 0)
        yield* eventually("B resumes", () => b.heard.resumes > 1 && b.bus.trusted())
        yield* eventually("A resumes", () => a.heard.resumes > 1 && a.bus.trusted())
        yield* a.bus.publish(namespace, { _tag: "Keys", origin: a.bus.origin, entries: [[`${namespace}:after`, 9]] })
        yield* eventually("B hears A after the gap", () => b.heard.messages.length === 1)
      }))
    }
  })
}
