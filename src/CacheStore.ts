/**
 * The storage port: raw, fully namespaced entries with a physical time to live.
 *
 * A store knows nothing about keyspaces or schemas. It keeps entries ({@link CacheEntry.Stored}:
 * envelope bytes, or live entries in an in-process store) under string keys that the cache has
 * already namespaced and validated, and says what it can do in a {@link Capabilities} record. A
 * backend is a module that calls {@link make} with its operations: `CacheStore/Memory.ts`,
 * `CacheStore/Redis.ts`. The conformance suite in `effect-cachekit/testing` proves a backend in
 * one line.
 *
 * Keys: `"<namespace>:<keyspace>:<segment>"` for user entries; internal keys (locks, and later tag
 * versions and the bus) live under `"<namespace>::"` ({@link internalKey}), a segment no keyspace name
 * can produce, and `clear` never removes them.
 *
 * @since 0.1.0
 */
import type * as PlatformError from "@effect/platform/Error"
import type * as KeyValueStore from "@effect/platform/KeyValueStore"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as CacheEntry from "./CacheEntry.js"
import { StoreError } from "./CacheError.js"

/**
 * A serialized body: text (JSON, plain strings) or bytes (MessagePack, raw bytes), as a serializer
 * writes it before the envelope wraps it.
 *
 * @example
 * ```ts
 * import type { CacheStore } from "effect-cachekit"
 *
 * const text: CacheStore.Encoded = "{}"
 * const bytes: CacheStore.Encoded = new Uint8Array([1, 2, 3])
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Encoded = string | Uint8Array

/**
 * What a store can do. The engine asks this record, never the store's name.
 *
 * @example
 * ```ts
 * import type { CacheStore } from "effect-cachekit"
 *
 * const remote: CacheStore.Capabilities = {
 *   inProcess: false,
 *   liveValues: false,
 *   synchronousRead: false,
 *   atomicAdd: true,
 *   nativeTtl: true,
 *   clearByPrefix: true,
 *   assignsVersions: true,
 *   operationBound: undefined,
 *   conditionalWrites: true,
 *   tiered: false,
 *   expire: true,
 *   increment: true,
 *   raw: undefined
 * }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Capabilities {
  /** Every operation completes in the process without waiting on I/O, so the cache does not race it against a timer. */
  readonly inProcess: boolean
  /** The store keeps {@link CacheEntry.Live} entries as given (no serialization on a hit). */
  readonly liveValues: boolean
  /** The store offers `getNow`, a synchronous read at the Clock's time. */
  readonly synchronousRead: boolean
  /** `add` is atomic for every client of the store; otherwise it is a read then a write. */
  readonly atomicAdd: boolean
  /** Entries expire by themselves after their ttl on the store's own clock (otherwise on the Effect Clock). */
  readonly nativeTtl: boolean
  /** `clear(prefix)` is supported (without blocking the store). */
  readonly clearByPrefix: boolean
  /** The store assigns each write's version itself; otherwise the cache stamps it from the Clock. */
  readonly assignsVersions: boolean
  /**
   * A bound every command the store sends settles within (succeeding or failing with a `"Timeout"`),
   * if the store enforces one itself (Redis: the client's `commandTimeout`). When it is no longer than
   * the cache's timeout, the cache does not race the store's single-command operations against a
   * timer of its own.
   */
  readonly operationBound: Duration.Duration | undefined
  /**
   * The store offers `currentVersion`, honours `set`'s `since` and leaves a tombstone for every
   * delete: a conditional write never lands over a newer write or a later delete.
   */
  readonly conditionalWrites: boolean
  /**
   * A two-layer store (see {@link Local}): it keeps decoded values in memory and envelopes in a shared
   * tier. Writes hand it {@link CacheEntry.Live} entries that carry their envelope
   * ({@link CacheEntry.withEnvelope}); `getNow` reads only what memory may serve unchecked (a miss
   * there is read with `get`); and what the cache decodes from the shared tier is handed back to
   * {@link Local.remember}.
   */
  readonly tiered: boolean
  /**
   * `expire` gives an entry a new time to live, rewriting its header and its physical ttl in one
   * step; otherwise it fails with reason `"Unsupported"`.
   */
  readonly expire: boolean
  /**
   * `increment` adds to an integer counter kept as plain decimal text (no envelope), atomically for
   * every client of the store; otherwise it fails with reason `"Unsupported"`.
   */
  readonly increment: boolean
  /** The kind of client `raw` hands out (see {@link RawClients}), or `undefined`: `raw` fails with reason `"Unsupported"`. */
  readonly raw: keyof RawClients | undefined
}

/**
 * The clients a store may hand out through `raw`, by kind. The backend modules add theirs by module
 * augmentation: `CacheStore/Redis.ts` adds `redis` (the ioredis client, standalone or Cluster), and
 * `CacheStore/Memcached.ts` adds `memcached` (its `memcache-client` client) once it is imported. A
 * store of your own adds its client the same way.
 *
 * @example
 * ```ts
 * import type { CacheStore } from "effect-cachekit"
 *
 * type RedisClient = CacheStore.RawClients["redis"] // ioredis's Redis | Cluster
 *
 * // A backend of your own:
 * interface MyClient { readonly ping: () => Promise<string> }
 * declare module "effect-cachekit/CacheStore" {
 *   interface RawClients {
 *     readonly mine: MyClient
 *   }
 * }
 * ```
 *
 * @since 0.4.0
 * @category models
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface RawClients {}

/**
 * A client a store hands out: its kind and the client itself, typed by {@link RawClients}.
 *
 * @example
 * ```ts
 * import type { CacheStore } from "effect-cachekit"
 *
 * const describe = (raw: CacheStore.Raw) => `a ${raw.kind} client`
 * ```
 *
 * @since 0.4.0
 * @category models
 */
export type Raw = { readonly [K in keyof RawClients]: { readonly kind: K; readonly client: RawClients[K] } }[keyof RawClients]

/**
 * What a two-layer store (capability `tiered`) offers the cache beyond the port: a way to keep in
 * memory what the cache decoded from the shared tier, and what memory holds when the shared tier
 * cannot be reached.
 *
 * @example
 * ```ts
 * import type { CacheEntry, CacheStore } from "effect-cachekit"
 *
 * const copies = new Map<string, CacheEntry.Live>()
 * let epoch = 0
 * const local: CacheStore.Local = {
 *   mark: () => epoch,
 *   remember: (key, entry, mark) => { if (mark === epoch) copies.set(key, entry) },
 *   fallback: (key, now) => { const entry = copies.get(key); return entry !== undefined && now < entry.staleUntil ? entry : undefined }
 * }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface Local {
  /** A mark taken before a read of the shared tier, for {@link Local.remember}. */
  readonly mark: () => number
  /**
   * Keeps in memory an entry the cache read from the shared tier and decoded (its header is the
   * envelope's, its version the shared tier's), unless something that may make it stale happened
   * since `mark` (a newer write or a delete heard of, a clear, a gap in the bus).
   */
  readonly remember: (key: string, entry: CacheEntry.Live, mark: number) => void
  /**
   * The copy memory holds under `key` while physically alive at `now`, whether or not it could be
   * checked: what the cache serves (counted and logged) when the shared tier fails.
   */
  readonly fallback: (key: string, now: number) => CacheEntry.Live | undefined
  /**
   * The newest version of `key` heard on the bus lately (written or deleted by another instance), if
   * any: the cache drops what it trusted about the key below it (tag versions).
   */
  readonly heard?: ((key: string) => number | undefined) | undefined
  /**
   * Each tier as a store of its own, for keyspaces that use one (`tier: "local"`, `"shared"`):
   * `local` keeps live values in this instance's memory only (its deletes and clears still reach the
   * other instances' memory); `shared` is the shared store alone.
   */
  readonly tiers?: { readonly local: CacheStore; readonly shared: CacheStore } | undefined
  /** The namespace whose bus messages the store hears: a cache of another namespace would not be kept coherent. */
  readonly namespace?: string | undefined
}

/**
 * One entry of a batch write.
 *
 * @example
 * ```ts
 * import { Duration } from "effect"
 * import type { CacheStore } from "effect-cachekit"
 *
 * declare const bytes: Uint8Array
 * const entries: ReadonlyArray<CacheStore.Entry> = [{ key: "app:n:1", value: bytes, ttl: Duration.seconds(30) }]
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry {
  readonly key: string
  readonly value: CacheEntry.Stored
  /** Physical time to live; `undefined` keeps the entry until it is evicted or deleted. */
  readonly ttl: Duration.Duration | undefined
}

/**
 * The backend port. Keys arrive fully namespaced and already validated. A `ttl` of zero or less
 * stores nothing and removes what was there. A store takes ownership of the entries it is given (it
 * may write the version into an envelope in place) and returns them byte for byte (or, for live
 * entries, as the same object).
 *
 * @example
 * ```ts
 * import { Effect, Option } from "effect"
 * import { CacheStore, MemoryStore } from "effect-cachekit"
 *
 * const program = Effect.gen(function* () {
 *   const store = yield* CacheStore.CacheStore
 *   yield* store.set("app:counters:a", new Uint8Array([1]), undefined)
 *   const value = yield* store.get("app:counters:a")   // Option.some(bytes)
 * }).pipe(Effect.provide(MemoryStore.layer({ capacity: 100 })))
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface CacheStore {
  /** A short name for errors, logs and metrics, e.g. `"memory"` or `"redis"`. */
  readonly name: string
  readonly capabilities: Capabilities
  readonly get: (key: string) => Effect.Effect<Option.Option<CacheEntry.Stored>, StoreError>
  /**
   * With `synchronousRead`: the entry under `key` at `now` (epoch milliseconds from the Clock), read
   * synchronously, or `undefined`. The cache's hit path uses it to read without extra effects.
   */
  readonly getNow: ((key: string, now: number) => CacheEntry.Stored | undefined) | undefined
  /** One result per key, in the order of `keys`. */
  readonly getMany: (keys: ReadonlyArray<string>) => Effect.Effect<Array<Option.Option<CacheEntry.Stored>>, StoreError>
  /**
   * Writes an entry. `wait` is how long the caller waits for the write: a store that can tell (Redis)
   * refuses a write that reaches it after that, failing with reason `"Timeout"`, so a write whose
   * caller was told it failed never lands later over a newer one.
   *
   * `since` (a version from {@link CacheStore.currentVersion}) makes the write conditional: it is
   * skipped, successfully, when the key was written or deleted after that version (a delete leaves a
   * tombstone for {@link tombstoneTtl}). `getOrSet` passes the version it read at, so a value produced
   * while the key was invalidated or replaced is not stored over the newer state.
   */
  readonly set: (
    key: string,
    value: CacheEntry.Stored,
    ttl: Duration.Duration | undefined,
    wait?: Duration.Duration | undefined,
    since?: number | undefined
  ) => Effect.Effect<void, StoreError>
  /** Writes a batch; `wait` as for `set`. */
  readonly setMany: (entries: ReadonlyArray<Entry>, wait?: Duration.Duration | undefined) => Effect.Effect<void, StoreError>
  /** Writes only if no entry exists under `key`; `true` when it wrote. `wait` as for `set`. */
  readonly add: (
    key: string,
    value: CacheEntry.Stored,
    ttl: Duration.Duration | undefined,
    wait?: Duration.Duration | undefined
  ) => Effect.Effect<boolean, StoreError>
  /** `true` when an entry was removed. */
  readonly delete: (key: string) => Effect.Effect<boolean, StoreError>
  /** The number of entries removed. */
  readonly deleteMany: (keys: ReadonlyArray<string>) => Effect.Effect<number, StoreError>
  readonly has: (key: string) => Effect.Effect<boolean, StoreError>
  /**
   * Removes every entry whose key starts with `prefix`, except internal keys ({@link isInternalKey});
   * returns how many were removed (0 from a store that clears by moving the prefix to a new
   * generation and cannot count: memcached). Fails with reason `"Unsupported"` without
   * `clearByPrefix`.
   */
  readonly clear: (prefix: string) => Effect.Effect<number, StoreError>
  /**
   * With `expire`: gives the entry under `key` a new time to live: its header's `freshUntil` becomes
   * `now + ttl` (`now`: epoch milliseconds from the Clock; an infinite ttl: no expiry), its grace is
   * kept (`staleUntil` moves by as much), its physical ttl becomes `ttl` plus that grace, and it gets a
   * new version (a write: a two-layer store's bus announces it). `false`, and nothing changes, when no
   * entry is stored under the key, or (with `since`) when the entry's version is above `since` (it was
   * written again after the caller read it). Bytes that are not an envelope get the physical ttl only.
   */
  readonly expire: (key: string, ttl: Duration.Duration, now: number, since?: number | undefined) => Effect.Effect<boolean, StoreError>
  /**
   * With `increment`: adds `by` to the integer counter under `key` and answers the new value,
   * atomically. An absent key starts from 0 and is created with the physical ttl `ttl` (a ttl of its
   * own is never changed by later increments). The counter is kept as plain decimal text, no envelope:
   * `get` reads it back as bytes. Fails with reason `"WrongType"` when the key holds anything but such an
   * integer, and `"Overflow"` (leaving the counter as it was) past `Number.MAX_SAFE_INTEGER` either way.
   */
  readonly increment: (key: string, by: number, ttl: Duration.Duration | undefined) => Effect.Effect<number, StoreError>
  /**
   * With `increment`: the value of the counter under `key`, `None` when there is none; fails with
   * reason `"WrongType"` when the key holds anything but a counter.
   */
  readonly counter: (key: string) => Effect.Effect<Option.Option<number>, StoreError>
  /**
   * The store's client of kind `kind` (see {@link RawClients}), for commands the port does not offer.
   * Fails with reason `"Unsupported"` when the store has no client of that kind (capability `raw`).
   */
  readonly raw: <K extends keyof RawClients>(kind: K) => Effect.Effect<RawClients[K], StoreError>
  /**
   * With `conditionalWrites`: a version that every later write and delete of the store exceeds (a
   * lower bound of the store's version clock now), for a conditional `set`; `undefined` while the
   * store cannot tell.
   */
  readonly currentVersion: Effect.Effect<number | undefined> | undefined
  /** With `tiered`: the memory tier's hooks. */
  readonly local: Local | undefined
}

/**
 * What a backend gives {@link make}: `get`, `set` and `delete` at least; the batch operations,
 * `has`, `add` and `clear` are derived when it leaves them out (and its capabilities say so).
 *
 * @example
 * ```ts
 * import { Effect, Option } from "effect"
 * import { CacheStore } from "effect-cachekit"
 *
 * const entries = new Map<string, Uint8Array>()
 * const impl: CacheStore.Implementation = {
 *   name: "map",
 *   capabilities: { inProcess: true },
 *   get: (key) => Effect.sync(() => Option.fromNullable(entries.get(key))),
 *   set: (key, value) => Effect.sync(() => void entries.set(key, value as Uint8Array)),
 *   delete: (key) => Effect.sync(() => entries.delete(key))
 * }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Implementation {
  readonly name: string
  /**
   * What the store can do. Left out: `false` (and `operationBound` undefined), except `atomicAdd` and
   * `clearByPrefix`, which default to whether `add` and `clear` are given.
   */
  readonly capabilities?: Partial<Omit<Capabilities, "synchronousRead" | "conditionalWrites" | "tiered" | "expire" | "increment" | "raw">> | undefined
  readonly get: CacheStore["get"]
  readonly getNow?: ((key: string, now: number) => CacheEntry.Stored | undefined) | undefined
  readonly getMany?: CacheStore["getMany"] | undefined
  readonly set: CacheStore["set"]
  readonly setMany?: CacheStore["setMany"] | undefined
  /** Atomic insert-if-absent; without it, `add` reads then writes (and `atomicAdd` is `false`). */
  readonly add?: CacheStore["add"] | undefined
  readonly delete: CacheStore["delete"]
  readonly deleteMany?: CacheStore["deleteMany"] | undefined
  readonly has?: CacheStore["has"] | undefined
  readonly clear?: CacheStore["clear"] | undefined
  /** With it, the store honours `set`'s `since` and leaves tombstones (`conditionalWrites`). */
  readonly currentVersion?: CacheStore["currentVersion"] | undefined
  /** With it, entries can be given a new ttl (`expire`); without it, `expire` fails with reason `"Unsupported"`. */
  readonly expire?: CacheStore["expire"] | undefined
  /** With it, integer counters (`increment`); without it, `increment` fails with reason `"Unsupported"`. */
  readonly increment?: CacheStore["increment"] | undefined
  /** How the store reads a counter back; derived from `get` when left out (a counter's decimal text). */
  readonly counter?: CacheStore["counter"] | undefined
  /** The client `raw` hands out (capability `raw`); without it, `raw` fails with reason `"Unsupported"`. */
  readonly raw?: Raw | undefined
  /** With it, the store is a two-layer store (`tiered`). */
  readonly local?: Local | undefined
}

/** A {@link Raw} whatever clients are known (none at all: `Raw` is then `never`). */
type RawOf = { readonly kind: keyof RawClients; readonly client: unknown }

/**
 * Builds a store from its operations, deriving what it leaves out: `getMany`, `setMany` and
 * `deleteMany` one key at a time, `has` from `get`, `add` as a read then a write, and `clear` as an
 * `"Unsupported"` failure.
 *
 * @example
 * ```ts
 * import { Effect, Option } from "effect"
 * import { CacheStore } from "effect-cachekit"
 *
 * const entries = new Map<string, Uint8Array>()
 * const store = CacheStore.make({
 *   name: "map",
 *   capabilities: { inProcess: true },
 *   get: (key) => Effect.sync(() => Option.fromNullable(entries.get(key))),
 *   set: (key, value) => Effect.sync(() => void entries.set(key, value as Uint8Array)),
 *   delete: (key) => Effect.sync(() => entries.delete(key))
 * })
 * store.capabilities.atomicAdd // false: derived from get + set
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (impl: Implementation): CacheStore => {
  const given = impl.capabilities ?? {}
  const capabilities: Capabilities = {
    inProcess: given.inProcess ?? false,
    liveValues: given.liveValues ?? false,
    synchronousRead: impl.getNow !== undefined,
    atomicAdd: impl.add !== undefined && (given.atomicAdd ?? true),
    nativeTtl: given.nativeTtl ?? false,
    clearByPrefix: impl.clear !== undefined && (given.clearByPrefix ?? true),
    assignsVersions: given.assignsVersions ?? false,
    operationBound: given.operationBound,
    conditionalWrites: impl.currentVersion !== undefined,
    tiered: impl.local !== undefined,
    expire: impl.expire !== undefined,
    increment: impl.increment !== undefined,
    raw: (impl.raw as RawOf | undefined)?.kind
  }
  const unsupported = (operation: StoreError["operation"], key: string | undefined, cause: string) =>
    new StoreError({ reason: "Unsupported", operation, key, store: impl.name, cause })
  const raw = impl.raw as RawOf | undefined
  const { get, set } = impl
  const del = impl.delete
  return {
    name: impl.name,
    capabilities,
    get,
    getNow: impl.getNow,
    getMany: impl.getMany ?? ((keys) => Effect.forEach(keys, get)),
    set,
    setMany: impl.setMany ??
      ((entries, wait) => Effect.forEach(entries, (entry) => set(entry.key, entry.value, entry.ttl, wait), { discard: true })),
    add: impl.add ?? ((key, value, ttl, wait) =>
      Effect.flatMap(get(key), (found) => Option.isSome(found) ? Effect.succeed(false) : Effect.as(set(key, value, ttl, wait), true))),
    delete: del,
    deleteMany: impl.deleteMany ??
      ((keys) => Effect.map(Effect.forEach(keys, del), (removed) => removed.filter((r) => r).length)),
    has: impl.has ?? ((key) => Effect.map(get(key), Option.isSome)),
    clear: impl.clear ?? ((prefix) =>
      Effect.fail(
        new StoreError({ reason: "Unsupported", operation: "clear", key: prefix, store: impl.name, cause: "this store cannot clear by prefix" })
      )),
    currentVersion: impl.currentVersion,
    expire: impl.expire ?? ((key) => Effect.fail(unsupported("expire", key, "this store cannot change an entry's ttl"))),
    increment: impl.increment ?? ((key) => Effect.fail(unsupported("increment", key, "this store keeps no counters"))),
    counter: impl.counter ?? (impl.increment === undefined
      ? ((key) => Effect.fail(unsupported("get", key, "this store keeps no counters")))
      : ((key) =>
        Effect.flatMap(get(key), (found) => {
          if (Option.isNone(found)) return Effect.succeedNone
          const value = isLive(found.value) ? undefined : counterOf(found.value)
          return value === undefined ? Effect.fail(notACounter(impl.name, key, "get")) : Effect.succeed(Option.some(value))
        }))),
    raw: <K extends keyof RawClients>(kind: K): Effect.Effect<RawClients[K], StoreError> =>
      raw !== undefined && raw.kind === kind
        ? Effect.succeed(raw.client as RawClients[K])
        : Effect.fail(unsupported("raw", undefined, raw === undefined ? "this store has no client to hand out" : `this store's client is a ${raw.kind} client, not a ${String(kind)} client`)),
    local: impl.local
  }
}

/**
 * How long the tombstone a delete leaves lives: a conditional write (`getOrSet`'s) whose read came
 * before the delete is skipped if it arrives within this time. A producer that runs longer than this
 * after its key was deleted may still store its value.
 *
 * @example
 * ```ts
 * import { Duration } from "effect"
 * import { CacheStore } from "effect-cachekit"
 *
 * Duration.toSeconds(CacheStore.tombstoneTtl) // 30
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export const tombstoneTtl: Duration.Duration = Duration.seconds(30)

/**
 * The store service tag.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheStore } from "effect-cachekit"
 *
 * const known = Effect.flatMap(CacheStore.CacheStore, (store) => store.has("app:users:1"))
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const CacheStore: Context.Tag<CacheStore, CacheStore> = Context.GenericTag<CacheStore>(
  "effect-cachekit/CacheStore"
)

/**
 * The key of an internal entry of `namespace` (a lock, a tag version): `"<namespace>::<kind>:<rest>"`.
 * No keyspace can produce it (keyspace names are never empty), no keyspace operation reads or
 * deletes it, and `clear` skips it, while an ACL pattern `~<namespace>:*` still covers it.
 *
 * @example
 * ```ts
 * import { CacheStore } from "effect-cachekit"
 *
 * CacheStore.internalKey("app", "lock", "app:users:1") // "app::lock:app:users:1"
 * ```
 *
 * @since 0.2.0
 * @category keys
 */
export const internalKey = (namespace: string, kind: string, rest: string): string => `${namespace}::${kind}:${rest}`

/**
 * Whether a key is internal: its namespace is followed by `"::"`.
 *
 * @example
 * ```ts
 * import { CacheStore } from "effect-cachekit"
 *
 * CacheStore.isInternalKey("app::lock:app:users:1") // true
 * CacheStore.isInternalKey("app:users::1")          // false: a user key whose segment starts with ":"
 * ```
 *
 * @since 0.2.0
 * @category keys
 */
export const isInternalKey = (key: string): boolean => {
  const colon = key.indexOf(":")
  return colon >= 0 && key.charCodeAt(colon + 1) === 58
}

/**
 * The namespace of a store key: the text before its first `":"`.
 *
 * @example
 * ```ts
 * import { CacheStore } from "effect-cachekit"
 *
 * CacheStore.namespaceOf("app:users:1") // "app"
 * ```
 *
 * @since 0.2.0
 * @category keys
 */
export const namespaceOf = (key: string): string => {
  const colon = key.indexOf(":")
  return colon < 0 ? key : key.slice(0, colon)
}

/**
 * A store that keeps nothing: every read misses and every write is dropped. This is the backend of a
 * disabled cache (`CACHE_ENABLED=false`): `getOrSet` always runs the producer.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheStore } from "effect-cachekit"
 *
 * const program = Effect.flatMap(CacheStore.CacheStore, (store) => store.get("app:users:1")) // always None
 * program.pipe(Effect.provideService(CacheStore.CacheStore, CacheStore.noop))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const noop: CacheStore = make({
  name: "noop",
  capabilities: { inProcess: true, liveValues: true, atomicAdd: true, clearByPrefix: true, assignsVersions: true },
  get: () => Effect.succeedNone,
  getNow: () => undefined,
  getMany: (keys) => Effect.succeed(keys.map(() => Option.none())),
  set: () => Effect.void,
  setMany: () => Effect.void,
  // Nothing is ever present, so an add always finds the key absent; the write is dropped like any other.
  add: () => Effect.succeed(true),
  delete: () => Effect.succeed(false),
  deleteMany: () => Effect.succeed(0),
  has: () => Effect.succeed(false),
  clear: () => Effect.succeed(0),
  // Nothing is ever present to give a new ttl to.
  expire: () => Effect.succeed(false),
  // Every counter starts from nothing, and the result is dropped like any other write.
  increment: (_key, by) => Effect.succeed(by),
  counter: () => Effect.succeedNone
})

/**
 * The no-op store as a layer: caching disabled.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Cache, CacheStore } from "effect-cachekit"
 *
 * const disabled = Cache.layer({ namespace: "app" }).pipe(Layer.provide(CacheStore.layerNoop))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNoop: Layer.Layer<CacheStore> = Layer.succeed(CacheStore, noop)

/**
 * @internal
 * A physical time to live as whole milliseconds; `undefined` for none.
 */
export const ttlMillis = (ttl: Duration.Duration | undefined): number | undefined =>
  ttl === undefined || !Duration.isFinite(ttl) ? undefined : Math.ceil(Duration.toMillis(ttl))

/** @internal The live entry of `stored`, if it is one. */
export const isLive = (stored: CacheEntry.Stored): stored is CacheEntry.Live => stored instanceof CacheEntry.Live

/**
 * @internal
 * What `expire` makes of an entry's times: `freshUntil` at `now + ttl` (an infinite ttl: `Infinity`),
 * the grace it had kept (`staleUntil - freshUntil`; none when it had no expiry), and the physical ttl in
 * milliseconds (`undefined`: none).
 */
export const expiryAfter = (
  header: { readonly freshUntil: number; readonly staleUntil: number },
  ttl: Duration.Duration,
  now: number
): { readonly freshUntil: number; readonly staleUntil: number; readonly millis: number | undefined } => {
  const grace = header.freshUntil === Infinity ? 0 : Math.max(0, header.staleUntil - header.freshUntil)
  if (!Duration.isFinite(ttl)) return { freshUntil: Infinity, staleUntil: Infinity, millis: undefined }
  const millis = Math.max(1, Math.ceil(Duration.toMillis(ttl)))
  return { freshUntil: now + millis, staleUntil: now + millis + grace, millis: millis + grace }
}

/**
 * @internal
 * The value of a counter as a store keeps it (plain decimal text), or `undefined` for anything else: a
 * safe integer written as `-?[0-9]+`, nothing around it.
 */
export const counterOf = (bytes: Uint8Array): number | undefined => {
  if (bytes.length === 0 || bytes.length > 17) return undefined
  const text = String.fromCharCode(...bytes)
  if (!/^-?[0-9]+$/.test(text)) return undefined
  const value = Number(text)
  return Number.isSafeInteger(value) ? value : undefined
}

/** @internal A counter as a store keeps it: its decimal text. */
export const counterBytes = (value: number): Uint8Array => Uint8Array.from(String(value), (digit) => digit.charCodeAt(0))

/** @internal The error of a key that holds something other than a counter. */
export const notACounter = (store: string, key: string, operation: StoreError["operation"] = "increment"): StoreError =>
  new StoreError({ reason: "WrongType", operation, key, store, cause: "the key holds something other than an integer counter" })

/** @internal The error of an increment past `Number.MAX_SAFE_INTEGER`. */
export const overflow = (store: string, key: string, value: number, by: number): StoreError =>
  new StoreError({
    reason: "Overflow",
    operation: "increment",
    key,
    store,
    cause: `${value} + ${by} is past Number.MAX_SAFE_INTEGER (${Number.MAX_SAFE_INTEGER}) either way; the counter is left as it was`
  })

/**
 * Options of {@link fromKeyValueStore}.
 *
 * @example
 * ```ts
 * import type { CacheStore } from "effect-cachekit"
 *
 * const options: CacheStore.KeyValueStoreOptions = { name: "files" }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface KeyValueStoreOptions {
  /** The store's name in errors, logs and metrics. Default `"keyvalue"`. */
  readonly name?: string | undefined
}

/**
 * The frame every entry written through {@link fromKeyValueStore} carries: `"ckx"`, a format byte,
 * then the physical expiry as a big-endian float64 (epoch milliseconds from the Clock; `Infinity`
 * for none), then the stored bytes.
 */
const frameMagic = [0x63, 0x6b, 0x78, 0x01] as const
const frameLength = 12

const frame = (bytes: Uint8Array, expiresAt: number): Uint8Array => {
  const out = new Uint8Array(frameLength + bytes.length)
  out.set(frameMagic)
  new DataView(out.buffer).setFloat64(4, expiresAt)
  out.set(bytes, frameLength)
  return out
}

/** The expiry and payload of a framed entry; bytes some other program wrote are a payload that never expires. */
const unframe = (bytes: Uint8Array): { readonly expiresAt: number; readonly payload: Uint8Array } => {
  if (
    bytes.length < frameLength || bytes[0] !== frameMagic[0] || bytes[1] !== frameMagic[1] ||
    bytes[2] !== frameMagic[2] || bytes[3] !== frameMagic[3]
  ) return { expiresAt: Infinity, payload: bytes }
  const expiresAt = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getFloat64(4)
  return { expiresAt: Number.isNaN(expiresAt) ? 0 : expiresAt, payload: bytes.subarray(frameLength) }
}

/** A KeyValueStore's failure as the port's: the platform's reason mapped to the nearest store reason. */
const fromPlatformError = (
  error: PlatformError.PlatformError,
  operation: StoreError["operation"],
  key: string | undefined,
  store: string
): StoreError => {
  let reason: StoreError["reason"] = "Backend"
  if (error._tag === "SystemError") {
    switch (error.reason) {
      case "TimedOut":
        reason = "Timeout"
        break
      case "PermissionDenied":
        reason = "Auth"
        break
      case "Busy":
      case "WouldBlock":
      case "BadResource":
        reason = "Unavailable"
        break
      case "WriteZero":
        reason = "TooLarge"
        break
    }
  }
  return new StoreError({ reason, operation, key, store, cause: error })
}

/**
 * Any `@effect/platform` `KeyValueStore` (the file system, browser storage, an in-memory map) as a
 * cache store.
 *
 * A KeyValueStore has no time to live and no listing, so:
 *
 * - each entry is written in a small frame that carries its physical expiry (from the Effect
 *   `Clock`); a read of an expired entry answers `None` and removes it (best effort: a failed removal
 *   is left for the next read or write);
 * - `clear` is refused with reason `"Unsupported"` (capability `clearByPrefix` is `false`): the store
 *   cannot list its keys. `Cache.clear` and `Keyspace.clear` therefore fail on it; invalidation by key
 *   and by tag works;
 * - `add` is a read then a write (not atomic), `has` and `delete` read first (an expired entry is
 *   absent), and the cache stamps versions from its Clock (no conditional writes).
 *
 * Bytes under a key that were not written through this adapter are handed to the cache as they are
 * (it reads them as a miss and replaces them). A failure of the KeyValueStore (`PlatformError`) is a
 * `StoreError`: `TimedOut` is `"Timeout"`, `PermissionDenied` `"Auth"`, `Busy`, `WouldBlock` and
 * `BadResource` `"Unavailable"`, `WriteZero` `"TooLarge"`, anything else `"Backend"`, with the
 * platform's error as `cause`.
 *
 * @example
 * ```ts
 * import { KeyValueStore } from "@effect/platform"
 * import { Effect, Layer } from "effect"
 * import { Cache, CacheStore } from "effect-cachekit"
 *
 * const StoreLive = Layer.effect(CacheStore.CacheStore, Effect.map(KeyValueStore.KeyValueStore, (kvs) => CacheStore.fromKeyValueStore(kvs)))
 * const CacheLive = Cache.layer({ namespace: "app" }).pipe(Layer.provide(StoreLive), Layer.provide(KeyValueStore.layerMemory))
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const fromKeyValueStore = (kvs: KeyValueStore.KeyValueStore, options: KeyValueStoreOptions = {}): CacheStore => {
  const name = options.name ?? "keyvalue"
  const mapError = (operation: StoreError["operation"], key: string | undefined) => (error: PlatformError.PlatformError) =>
    fromPlatformError(error, operation, key, name)
  const now = Effect.clockWith((clock) => Effect.succeed(clock.unsafeCurrentTimeMillis()))

  /** The live payload under `key`, removing an expired entry on the way. */
  const read = (operation: StoreError["operation"], key: string): Effect.Effect<Option.Option<Uint8Array>, StoreError> =>
    Effect.flatMap(Effect.mapError(kvs.getUint8Array(key), mapError(operation, key)), (found) => {
      if (Option.isNone(found)) return Effect.succeedNone
      const { expiresAt, payload } = unframe(found.value)
      return Effect.flatMap(now, (at) =>
        expiresAt > at ? Effect.succeedSome(payload) : Effect.as(Effect.ignore(kvs.remove(key)), Option.none()))
    })

  const write = (
    operation: StoreError["operation"],
    key: string,
    value: CacheEntry.Stored,
    ttl: Duration.Duration | undefined
  ): Effect.Effect<void, StoreError> => {
    const bytes = isLive(value) ? CacheEntry.envelopeOf(value) : value
    if (bytes === undefined) {
      return Effect.fail(new StoreError({ reason: "Backend", operation, key, store: name, cause: "a live entry cannot be written to a KeyValueStore" }))
    }
    const millis = ttlMillis(ttl)
    if (millis !== undefined && millis <= 0) return Effect.mapError(kvs.remove(key), mapError(operation, key))
    return Effect.flatMap(now, (at) =>
      Effect.mapError(kvs.set(key, frame(bytes, millis === undefined ? Infinity : at + millis)), mapError(operation, key)))
  }

  return make({
    name,
    capabilities: { inProcess: false, liveValues: false, nativeTtl: false, assignsVersions: false },
    get: (key) => read("get", key),
    set: (key, value, ttl) => write("set", key, value, ttl),
    setMany: (entries) => Effect.forEach(entries, (entry) => write("setMany", entry.key, entry.value, entry.ttl), { discard: true }),
    delete: (key) =>
      Effect.flatMap(read("delete", key), (found) =>
        Option.isNone(found) ? Effect.succeed(false) : Effect.as(Effect.mapError(kvs.remove(key), mapError("delete", key)), true)),
    has: (key) => Effect.map(read("has", key), Option.isSome)
  })
}
