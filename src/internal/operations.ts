/**
 * The one table of operations. Each direct operation is implemented once, here, against the engine;
 * the cache service's methods, the `Cache.*` accessors and the keyspace handle are derived from this
 * table, so adding an operation means adding one row.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { CodecError, InvalidKeyError, type StoreError } from "../CacheError.js"
import * as CacheEvent from "../CacheEvent.js"
import * as CacheStore from "../CacheStore.js"
import * as Background from "./background.js"
import { type Engine, enginesOf, type Tally } from "./engine.js"
import * as Events from "./events.js"
import { getOrSet } from "./getOrSet.js"
import { getOrSetMany } from "./getOrSetMany.js"
import { isInvalidKey, prefixOf, storeKey, storeKeys } from "./keys.js"
import * as Metrics from "./metrics.js"
import { digest } from "./report.js"
import type {
  AccessorOf,
  CounterAccessorOf,
  CounterDefinition,
  CounterHandleMethods,
  CounterOperation,
  CounterOperations,
  Definition,
  GetOrSet,
  GetOrSetAccessor,
  GetOrSetMany,
  GetOrSetManyAccessor,
  HandleMethods,
  Memoize,
  MemoizeMany,
  Operation,
  Operations,
  RefreshEvery,
  Service,
  ServiceMethods,
  WarmUp,
  WithRequirement
} from "./model.js"
import { type Continuation, hasLive, lookup, lookupMany, lookupStale, servableHeader } from "./read.js"
import * as Tags from "./tags.js"
import { encode, whereTag, write } from "./write.js"

/** An operation implemented against the engine. */
type Implementation<Op extends Operation> = <K, A, Id>(
  engine: Engine,
  keyspace: Definition<K, A, Id, unknown>,
  ...args: Parameters<Operations<K, A>[Op]>
) => ReturnType<Operations<K, A>[Op]>

const whenValid = <X, E>(
  key: string | InvalidKeyError,
  f: (key: string) => Effect.Effect<X, E>
): Effect.Effect<X, E | InvalidKeyError> => isInvalidKey(key) ? Effect.fail(key) : f(key)

const whenAllValid = <X, E>(
  keys: Array<string> | InvalidKeyError,
  f: (keys: Array<string>) => Effect.Effect<X, E>
): Effect.Effect<X, E | InvalidKeyError> => isInvalidKey(keys) ? Effect.fail(keys) : f(keys)

/** What `get` does with a read: static, so a hit allocates nothing but its `Option`. */
const getContinuation: Continuation<unknown, Option.Option<unknown>, StoreError, never> = {
  onHit: (value) => Effect.succeed(Option.some(value)),
  onMiss: () => Effect.succeedNone,
  onFailure: Effect.fail
}

/** The table: every direct operation, once. */
export const table: { readonly [Op in Operation]: Implementation<Op> } = {
  // The hot path: no closure between the call and the read.
  get: (engine, keyspace, key) => {
    const full = storeKey(engine, "get", keyspace, key)
    return isInvalidKey(full) ? Effect.fail(full) : lookup(engine, "get", keyspace, full, getContinuation as Continuation<any, any, any, never>)
  },
  getStale: (engine, keyspace, key) => whenValid(storeKey(engine, "get", keyspace, key), (full) => lookupStale(engine, keyspace, full)),
  getMany: (engine, keyspace, keys) =>
    whenAllValid(storeKeys(engine, "getMany", keyspace, keys), (full) => lookupMany(engine, keyspace, full)),
  set: (engine, keyspace, key, value, options) =>
    whenValid(storeKey(engine, "set", keyspace, key), (full) => write(engine, "set", keyspace, full, key, value, options)),
  setMany: (engine, keyspace, entries, options) =>
    Effect.suspend(() => {
      const list = Array.from(entries)
      return whenAllValid(storeKeys(engine, "setMany", keyspace, list.map(([key]) => key)), (full) =>
        Effect.flatMap(
          Effect.forEach(list, ([key, value], i) =>
            Effect.map(encode(engine, "setMany", keyspace, full[i]!, key, value, options), (entry): CacheStore.Entry => ({
              key: full[i]!,
              value: entry.value,
              ttl: entry.ttl
            }))),
          (encoded) =>
            Effect.map(engine.boundWrite("setMany", undefined, engine.store.setMany(encoded, engine.timeout)), () => {
              const counters = engine.bindingOf(keyspace).counters
              for (const key of full) counters.written(key, "setMany")
            })
        ))
    }),
  add: (engine, keyspace, key, value, options) =>
    whenValid(storeKey(engine, "add", keyspace, key), (full) =>
      Effect.flatMap(
        encode(engine, "add", keyspace, full, key, value, options),
        (entry) =>
          Effect.map(engine.boundWrite("add", full, engine.store.add(full, entry.value, entry.ttl, engine.timeout)), (added) => {
            if (added) engine.bindingOf(keyspace).counters.written(full, "add")
            return added
          })
      )),
  has: (engine, keyspace, key) =>
    whenValid(storeKey(engine, "has", keyspace, key), (full) => hasLive(engine, keyspace, full)),
  invalidate: (engine, keyspace, key) =>
    whenValid(storeKey(engine, "delete", keyspace, key), (full) =>
      Effect.map(engine.boundWrite("delete", full, engine.store.delete(full)), () => engine.bindingOf(keyspace).counters.invalidated(full))),
  invalidateMany: (engine, keyspace, keys) =>
    whenAllValid(storeKeys(engine, "deleteMany", keyspace, keys), (full) => Effect.asVoid(removeMany(engine, keyspace, full))),
  deleteMany: (engine, keyspace, keys) => whenAllValid(storeKeys(engine, "deleteMany", keyspace, keys), (full) => removeMany(engine, keyspace, full)),
  remainingTtl: (engine, keyspace, key) =>
    whenValid(storeKey(engine, "ttl", keyspace, key), (full) =>
      Effect.map(servableHeader(engine, "ttl", keyspace, full), (found) =>
        found === undefined
          ? Option.none()
          : Option.some(found.header.freshUntil === Infinity ? Duration.infinity : Duration.millis(found.header.freshUntil - found.now)))),
  expire: (engine, keyspace, key, ttl) =>
    whenValid(storeKey(engine, "expire", keyspace, key), (full) => {
      const duration = Duration.decode(ttl)
      return Effect.flatMap(servableHeader(engine, "expire", keyspace, full), (found) => {
        if (found === undefined) return Effect.succeed(false)
        if (Duration.isFinite(duration) && Duration.toMillis(duration) <= 0) {
          return Effect.as(engine.boundWrite("delete", full, engine.store.delete(full)), true)
        }
        // Conditional on the version read: an entry written again meanwhile keeps its own ttl.
        const since = found.header.version > 0 ? found.header.version : undefined
        return Effect.clockWith((clock) =>
          engine.boundWrite("expire", full, engine.store.expire(full, duration, clock.unsafeCurrentTimeMillis(), since))
        )
      })
    }),
  invalidateWhere: (engine, keyspace, where) =>
    Effect.suspend((): Effect.Effect<void, InvalidKeyError | StoreError> => {
      const fields = Object.keys(where).sort()
      const named = keyspace.keyTags
      if (fields.length === 0 || named === undefined || fields.some((field) => !named.includes(field))) {
        return Effect.fail(
          new InvalidKeyError({
            reason: "Encode",
            operation: "delete",
            cause: `invalidateWhere takes some of the key fields keyspace "${keyspace.name}" names in keyTags (${
              named?.join(", ") ?? "none"
            }), got ${fields.join(", ") || "none"}`
          })
        )
      }
      return Effect.zipRight(
        engine.tags.invalidate([whereTag(keyspace.name, where as Record<string, unknown>)], engine.timeout),
        Effect.sync(() => {
          if (engine.events.listening) {
            engine.events.tell(
              CacheEvent.make.InvalidateWhere({ cache: engine.namespace, store: engine.store.name, keyspace: keyspace.name, where: engine.report.fields(where) })
            )
          }
        })
      )
    }),
  clearKeyspace: (engine, keyspace) => {
    const prefix = prefixOf(engine, keyspace)
    const cleared = keyspace.kind === "single"
      ? Effect.map(engine.boundWrite("delete", prefix, engine.store.delete(prefix)), (removed) => removed ? 1 : 0)
      : engine.boundWrite("clear", prefix, engine.store.clear(prefix))
    return Effect.tap(cleared, () => tellClear(engine, keyspace.name))
  }
}

/** The keyspaces' counts, summed over the engines of one cache (a keyspace runs on one of them), by name. */
const statsOf = (engines: ReadonlyArray<Engine>): Array<CacheEvent.KeyspaceStats> => {
  const sums = new Map<string, Tally>()
  for (const engine of engines) {
    for (const [keyspace, tally] of engine.tallies()) {
      const sum = sums.get(keyspace)
      if (sum === undefined) {
        sums.set(keyspace, { ...tally })
        continue
      }
      for (const field of Object.keys(tally) as Array<keyof Tally>) sum[field] += tally[field]
    }
  }
  return Array.from(sums, ([keyspace, tally]) => keyspaceStats(keyspace, tally)).sort((a, b) => a.keyspace < b.keyspace ? -1 : a.keyspace > b.keyspace ? 1 : 0)
}

/** A keyspace's stats from its tally (all zero: none yet). */
const keyspaceStats = (keyspace: string, tally: Tally | undefined): CacheEvent.KeyspaceStats => {
  const hits = tally?.hits ?? 0
  const misses = tally?.misses ?? 0
  return {
    keyspace,
    hits,
    misses,
    hitRatio: hits + misses === 0 ? 0 : hits / (hits + misses),
    staleServed: tally?.staleServed ?? 0,
    decodeFailures: tally?.decodeFailures ?? 0,
    writes: tally?.writes ?? 0,
    failures: tally?.failures ?? 0,
    refreshFailures: tally?.refreshFailures ?? 0
  }
}

/** Removes `keys` (store keys of `keyspace`), telling each key's invalidation; how many were there. */
const removeMany = (engine: Engine, keyspace: Definition<any, any, any, unknown>, keys: ReadonlyArray<string>) =>
  Effect.map(engine.boundWrite("deleteMany", undefined, engine.store.deleteMany(keys)), (removed) => {
    if (engine.events.listening) {
      const counters = engine.bindingOf(keyspace).counters
      for (const key of keys) counters.invalidated(key)
    }
    return removed
  })

/** Tells a clear of `keyspace` (of the whole namespace: `undefined`). */
const tellClear = (engine: Engine, keyspace: string | undefined) =>
  Effect.sync(() => {
    if (engine.events.listening) engine.events.tell(CacheEvent.make.Clear({ cache: engine.namespace, store: engine.store.name, keyspace }))
  })

/** Tells an invalidation of `tags`. */
const tellTags = (engine: Engine, tags: ReadonlyArray<string>) =>
  Effect.sync(() => {
    if (engine.events.listening) engine.events.tell(CacheEvent.make.InvalidateTags({ cache: engine.namespace, store: engine.store.name, tags }))
  })

const operationNames = Object.keys(table) as ReadonlyArray<Operation>

/** A counter operation implemented against the engine. */
type CounterImplementation<Op extends CounterOperation> = <K, Id>(
  engine: Engine,
  counter: CounterDefinition<K, Id>,
  ...args: Parameters<CounterOperations<K>[Op]>
) => ReturnType<CounterOperations<K>[Op]>

/** The counters' table: every counter operation, once. Counters bypass the envelope and the read path. */
export const counterTable: { readonly [Op in CounterOperation]: CounterImplementation<Op> } = {
  get: (engine, counter, key) =>
    whenValid(storeKey(engine, "get", counter.keys, key), (full) => engine.bound("get", full, engine.store.counter(full))),
  increment: (engine, counter, key, by = 1) =>
    whenValid(storeKey(engine, "increment", counter.keys, key), (full): Effect.Effect<number, StoreError | CodecError> =>
      Number.isSafeInteger(by)
        ? engine.boundWrite("increment", full, engine.store.increment(full, by, counter.ttl ?? engine.defaultTtl))
        : Effect.fail(new CodecError({ reason: "Encode", operation: "increment", key: full, cause: `a counter adds safe integers only, got ${by}` }))),
  invalidate: (engine, counter, key) =>
    whenValid(storeKey(engine, "delete", counter.keys, key), (full) => Effect.asVoid(engine.boundWrite("delete", full, engine.store.delete(full)))),
  expire: (engine, counter, key, ttl) =>
    whenValid(storeKey(engine, "expire", counter.keys, key), (full) => {
      const duration = Duration.decode(ttl)
      if (Duration.isFinite(duration) && Duration.toMillis(duration) <= 0) return engine.boundWrite("delete", full, engine.store.delete(full))
      // A counter has no header: only its physical ttl moves.
      return Effect.clockWith((clock) => engine.boundWrite("expire", full, engine.store.expire(full, duration, clock.unsafeCurrentTimeMillis())))
    })
}

const counterOperationNames = Object.keys(counterTable) as ReadonlyArray<CounterOperation>

/**
 * An implementation, a service method and an accessor called with up to three arguments after the
 * keyspace: fixed arity, so the hot path builds no rest array.
 */
type Call = (engine: Engine, keyspace: Definition<any, any, any, unknown>, a?: unknown, b?: unknown, c?: unknown) => any
type MethodCall = (keyspace: Definition<any, any, any, unknown>, a?: unknown, b?: unknown, c?: unknown) => any

/**
 * The service over an engine: the table's operations, `clear`, `getOrSet` and the engine's settings.
 * A two-layer store's single tiers have engines of their own (`tiers`), for keyspaces kept in one tier.
 */
export const makeService = (engine: Engine, tiers?: { readonly local: Engine; readonly shared: Engine }): Service => {
  const methods: Record<string, unknown> = {}
  // With keys redacted, every error leaves the cache through one mapping; without, nothing is added.
  const redact = engine.report.error
  const redacting = engine.report.redactsKeys
  const engineOf = (keyspace: Definition<any, any, any, unknown>): Engine =>
    tiers === undefined || keyspace.tier === "both" ? engine : keyspace.tier === "local" ? tiers.local : tiers.shared
  for (const name of operationNames) {
    const implementation = table[name] as unknown as Call
    methods[name] = redacting
      ? (keyspace: Definition<any, any, any, unknown>, a?: unknown, b?: unknown, c?: unknown) =>
        Effect.mapError(implementation(engineOf(keyspace), keyspace, a, b, c), redact)
      : tiers === undefined
      ? (keyspace: Definition<any, any, any, unknown>, a?: unknown, b?: unknown, c?: unknown) => implementation(engine, keyspace, a, b, c)
      : (keyspace: Definition<any, any, any, unknown>, a?: unknown, b?: unknown, c?: unknown) =>
        implementation(engineOf(keyspace), keyspace, a, b, c)
  }
  const counters: Record<string, unknown> = {}
  for (const name of counterOperationNames) {
    const implementation = counterTable[name] as unknown as (engine: Engine, counter: CounterDefinition<any, any>, a?: unknown, b?: unknown) => Effect.Effect<unknown, any>
    counters[name] = redacting
      ? (counter: CounterDefinition<any, any>, a?: unknown, b?: unknown) => Effect.mapError(implementation(engine, counter, a, b), redact)
      : (counter: CounterDefinition<any, any>, a?: unknown, b?: unknown) => implementation(engine, counter, a, b)
  }
  const namespacePrefix = `${engine.namespace}:`
  const clear = Effect.tap(engine.boundWrite("clear", namespacePrefix, engine.store.clear(namespacePrefix)), () => tellClear(engine, undefined))
  // On the keyspace's own store: a keyspace kept in memory only claims per instance.
  const claim: Service["claim"] = (keyspace, key, occasion, ttl) => {
    const on = engineOf(keyspace)
    return whenValid(storeKey(on, "add", keyspace, key), (full) => {
      const marker = CacheStore.internalKey(on.namespace, "claim", `${occasion}:${full}`)
      return on.boundWrite("add", marker, on.store.add(marker, new Uint8Array([1]), Duration.decode(ttl), on.timeout))
    })
  }
  const service: Service = {
    ...(methods as unknown as ServiceMethods),
    namespace: engine.namespace,
    store: engine.store,
    defaultTtl: engine.defaultTtl,
    timeout: engine.timeout,
    maxKeyLength: engine.maxKeyLength,
    inFlight: Effect.sync(() => engine.flights.size()),
    events: Stream.unwrapScoped(Effect.map(engine.events.subscribe(Events.defaultBufferSize), (queue) => Stream.fromQueue(queue))),
    subscribe: (options) => engine.events.subscribe(options?.bufferSize ?? Events.defaultBufferSize),
    stats: Effect.sync(() => statsOf(tiers === undefined ? [engine] : [engine, tiers.local, tiers.shared])),
    counters: counters as unknown as Service["counters"],
    clear: redacting ? Effect.mapError(clear, redact) : clear,
    invalidateTags: (tags) =>
      Effect.suspend((): Effect.Effect<void, InvalidKeyError | StoreError> => {
        const valid = Tags.validate("delete", tags)
        if (isInvalidKey(valid)) return Effect.fail(redact(valid))
        if (valid.length === 0) return Effect.void
        const invalidated = Effect.zipRight(engine.tags.invalidate(valid, engine.timeout), tellTags(engine, valid))
        return redacting ? Effect.mapError(invalidated, redact) : invalidated
      }),
    getOrSet: redacting
      ? (keyspace, key, produce, options) => Effect.mapError(getOrSet(engineOf(keyspace), keyspace, key, produce, options), redact) as any
      : (keyspace, key, produce, options) => getOrSet(engineOf(keyspace), keyspace, key, produce, options) as any,
    getOrSetMany: redacting
      ? (keyspace, keys, produce, options) => Effect.mapError(getOrSetMany(engineOf(keyspace), keyspace, keys, produce, options), redact) as any
      : (keyspace, keys, produce, options) => getOrSetMany(engineOf(keyspace), keyspace, keys, produce, options) as any,
    claim: redacting ? (keyspace, key, occasion, ttl) => Effect.mapError(claim(keyspace, key, occasion, ttl), redact) : claim
  }
  const made = engine.spans || engine.latencyMetrics ? instrumented(engine, engineOf, service) : service
  enginesOf.set(made, engineOf)
  engine.service.current = made
  if (tiers !== undefined) tiers.local.service.current = tiers.shared.service.current = made
  return made
}

/** The operations of one key (their first argument): their spans carry the key's digest. */
const singleKey: ReadonlySet<Operation> = new Set<Operation>(["get", "getStale", "set", "add", "has", "invalidate", "remainingTtl", "expire"])

/** What a read's span says of its outcome: hit or miss (and stale, for `getStale`; hits, for `getMany`). */
const outcomes: { readonly [Op in Operation]?: (found: any) => Effect.Effect<void> } = {
  get: (found: Option.Option<unknown>) => Effect.annotateCurrentSpan("cache.hit", Option.isSome(found)),
  getStale: (found: Option.Option<{ readonly isStale: boolean }>) =>
    Effect.annotateCurrentSpan({ "cache.hit": Option.isSome(found), "cache.stale": Option.isSome(found) && found.value.isStale }),
  getMany: (found: ReadonlyArray<Option.Option<unknown>>) =>
    Effect.annotateCurrentSpan({ "cache.keys": found.length, "cache.hits": found.filter(Option.isSome).length }),
  has: (found: boolean) => Effect.annotateCurrentSpan("cache.hit", found)
}

/**
 * The service with the cache's `spans` and `latencyMetrics` options. With spans: each operation in a
 * span `cache.<operation>` (client kind) with the cache's namespace, the keyspace and the store as
 * attributes, and what `outcomes` says of a read; a `getOrSet`'s producer in a child span
 * `cache.produce`. With latency metrics: each operation's duration, in real time, in the histogram.
 */
const instrumented = (
  engine: Engine,
  engineOf: (keyspace: Definition<any, any, any, unknown>) => Engine,
  service: Service
): Service => {
  // Histogram labels, made once per engine, keyspace and operation: the metric finds its hook by the
  // identity of the array, so each update passes the same one.
  const labelSets = new WeakMap<Engine, Map<string, Map<string, ReadonlyArray<MetricLabel.MetricLabel>>>>()
  const labelsOf = (operation: string, on: Engine, keyspace: string | undefined) => {
    let byKeyspace = labelSets.get(on)
    if (byKeyspace === undefined) labelSets.set(on, byKeyspace = new Map())
    let byOperation = byKeyspace.get(keyspace ?? "")
    if (byOperation === undefined) byKeyspace.set(keyspace ?? "", byOperation = new Map())
    let labels = byOperation.get(operation)
    if (labels === undefined) {
      labels = [
        MetricLabel.make("cache", on.namespace),
        MetricLabel.make("keyspace", keyspace ?? ""),
        MetricLabel.make("store", on.store.name),
        MetricLabel.make("operation", operation)
      ]
      byOperation.set(operation, labels)
    }
    return labels
  }
  const timed = <X, E, R>(operation: string, on: Engine, keyspace: string | undefined, effect: Effect.Effect<X, E, R>) =>
    Effect.suspend(() => {
      const started = performance.now()
      return Effect.onExit(effect, (exit) =>
        Effect.sync(() => {
          const durationMillis = performance.now() - started
          Metrics.latency.unsafeUpdate(durationMillis, labelsOf(operation, on, keyspace))
          if (on.events.listening) {
            on.events.tell(
              CacheEvent.make.Operation({ cache: on.namespace, store: on.store.name, keyspace, operation, durationMillis, success: Exit.isSuccess(exit) })
            )
          }
        }))
    })
  const spanned = <X, E, R>(
    operation: string,
    on: Engine,
    keyspace: string | undefined,
    effect: Effect.Effect<X, E, R>,
    keyHash?: string | undefined
  ) => {
    const measured = engine.latencyMetrics ? timed(operation, on, keyspace, effect) : effect
    if (!engine.spans) return measured
    const attributes: Record<string, string> = { "cache.name": on.namespace, "cache.store": on.store.name }
    if (keyspace !== undefined) attributes["cache.keyspace"] = keyspace
    if (keyHash !== undefined) attributes["cache.key_hash"] = keyHash
    return Effect.withSpan(measured, `cache.${operation}`, { kind: "client", attributes })
  }
  /** The span's `cache.key_hash`: the digest of the store key, as redacted keys show it (none for an invalid key). */
  const keyHashOf = (on: Engine, keyspace: Definition<any, any, any, unknown>, key: unknown): string | undefined => {
    if (!engine.spans) return undefined
    const full = storeKey(on, "get", keyspace, key)
    return isInvalidKey(full) ? undefined : digest(full)
  }
  const methods: Record<string, unknown> = {}
  for (const name of operationNames) {
    const plain = service[name] as unknown as MethodCall
    const outcome = outcomes[name]
    const keyed = singleKey.has(name)
    methods[name] = (keyspace: Definition<any, any, any, unknown>, a?: unknown, b?: unknown, c?: unknown) => {
      const run = plain(keyspace, a, b, c) as Effect.Effect<unknown, unknown>
      const on = engineOf(keyspace)
      return spanned(
        name,
        on,
        keyspace.name,
        outcome === undefined || !engine.spans ? run : Effect.tap(run, outcome),
        keyed ? keyHashOf(on, keyspace, a) : undefined
      )
    }
  }
  const counters: Record<string, unknown> = {}
  for (const name of counterOperationNames) {
    const plain = service.counters[name] as unknown as (counter: CounterDefinition<any, any>, a?: unknown, b?: unknown) => Effect.Effect<unknown, unknown>
    counters[name] = (counter: CounterDefinition<any, any>, a?: unknown, b?: unknown) =>
      spanned(`counter.${name}`, engine, counter.name, plain(counter, a, b))
  }
  /** The producer's child span; `produced` tells the run's span whether this call's producer ran. */
  const producing = <X, E, R>(on: Engine, keyspace: string, produce: Effect.Effect<X, E, R>, ran: { produced: boolean }) =>
    spanned("produce", on, keyspace, Effect.suspend(() => {
      ran.produced = true
      return produce
    }))
  /** With spans, the run's span says whether this call's producer ran. */
  const saysProduced = <X, E, R>(run: Effect.Effect<X, E, R>, ran: { readonly produced: boolean }) =>
    engine.spans ? Effect.tap(run, () => Effect.annotateCurrentSpan("cache.produced", ran.produced)) : run
  return {
    ...service,
    ...(methods as unknown as ServiceMethods),
    counters: counters as unknown as Service["counters"],
    clear: spanned("clear", engine, undefined, service.clear),
    invalidateTags: (tags) => spanned("invalidateTags", engine, undefined, service.invalidateTags(tags)),
    getOrSet: (keyspace, key, produce, options) => {
      const on = engineOf(keyspace)
      const ran = { produced: false }
      return spanned(
        "getOrSet",
        on,
        keyspace.name,
        saysProduced(service.getOrSet(keyspace, key, producing(on, keyspace.name, produce, ran), options), ran),
        keyHashOf(on, keyspace, key)
      ) as any
    },
    getOrSetMany: (keyspace, keys, produce, options) => {
      const on = engineOf(keyspace)
      const ran = { produced: false }
      return spanned(
        "getOrSetMany",
        on,
        keyspace.name,
        saysProduced(service.getOrSetMany(keyspace, keys, (missing) => producing(on, keyspace.name, produce(missing), ran), options), ran)
      ) as any
    },
    claim: (keyspace, key, occasion, ttl) => {
      const on = engineOf(keyspace)
      return spanned("claim", on, keyspace.name, service.claim(keyspace, key, occasion, ttl), keyHashOf(on, keyspace, key))
    }
  }
}

/** The accessors: each operation on the cache a keyspace names, read from context. */
export const accessors: { readonly [Op in Operation]: AccessorOf<Op> } = Object.fromEntries(
  operationNames.map((name) => [
    name,
    (keyspace: Definition<any, any, any, unknown>, a?: unknown, b?: unknown, c?: unknown) =>
      Effect.flatMap(keyspace.cache, (cache) => (cache[name] as unknown as MethodCall)(keyspace, a, b, c))
  ])
) as never

/** The counter accessors: each counter operation on the cache a counter keyspace names, read from context. */
export const counterAccessors: { readonly [Op in CounterOperation]: CounterAccessorOf<Op> } = Object.fromEntries(
  counterOperationNames.map((name) => [
    name,
    (counter: CounterDefinition<any, any>, a?: unknown, b?: unknown) =>
      Effect.flatMap(counter.cache, (cache) =>
        (cache.counters[name] as unknown as (counter: CounterDefinition<any, any>, a?: unknown, b?: unknown) => Effect.Effect<unknown>)(counter, a, b))
  ])
) as never

/** A counter keyspace's handle: the counter table's operations bound to it. */
export const makeCounterHandle = <K, Id>(counter: CounterDefinition<K, Id>): CounterHandleMethods<K, Id> =>
  Object.fromEntries(
    counterOperationNames.map((name) => [
      name,
      (a?: unknown, b?: unknown) => (counterAccessors[name] as unknown as (counter: CounterDefinition<K, Id>, a?: unknown, b?: unknown) => unknown)(counter, a, b)
    ])
  ) as unknown as CounterHandleMethods<K, Id>

/** `getOrSet` on the cache a keyspace names, read from context. */
export const getOrSetAccessor: GetOrSetAccessor = (keyspace, key, produce, options) =>
  Effect.flatMap(keyspace.cache, (cache) => cache.getOrSet(keyspace, key, produce, options))

/** `getOrSetMany` on the cache a keyspace names, read from context. */
export const getOrSetManyAccessor: GetOrSetManyAccessor = (keyspace, keys, produce, options) =>
  Effect.flatMap(keyspace.cache, (cache) => cache.getOrSetMany(keyspace, keys, produce, options))

/**
 * A batch function memoized per key: `getOrSetMany` with `f` as the producer, answering `f`'s shape
 * (the pairs of the keys found, each distinct key once, in the order asked).
 */
const memoizeMany = <K, A, Id, X>(keyspace: Definition<K, A, Id, X>): MemoizeMany<K, A, Id, X> => (f, options) => (keys) =>
  Effect.suspend(() => {
    const list = Array.from(keys)
    return Effect.map(getOrSetManyAccessor(keyspace, list, f, options), (found) => {
      const seen = new Set<string>()
      const out: Array<readonly [K, A]> = []
      found.forEach((value, i) => {
        if (Option.isNone(value)) return
        const segment = keyspace.encodeKey(list[i]!)
        const identity = segment._tag === "Right" ? segment.right : undefined
        if (identity !== undefined && seen.has(identity)) return
        if (identity !== undefined) seen.add(identity)
        out.push([list[i]!, value.value])
      })
      return out
    })
  })

/** The keyspace handle: the table's operations bound to one keyspace, plus `clear`, `getOrSet` and `memoize`. */
export const makeHandle = <K, A, Id, X>(keyspace: Definition<K, A, Id, X>): HandleMethods<K, A, Id> & {
  readonly clear: WithRequirement<ReturnType<Operations<K, A>["clearKeyspace"]>, Id>
  readonly getOrSet: GetOrSet<K, A, Id, X>
  readonly memoize: Memoize<K, A, Id, X>
  readonly getOrSetMany: GetOrSetMany<K, A, Id, X>
  readonly memoizeMany: MemoizeMany<K, A, Id, X>
  readonly stats: Effect.Effect<CacheEvent.KeyspaceStats, never, Id>
  readonly warmUp: WarmUp<K, A, Id>
  readonly refreshEvery: RefreshEvery<K, A, Id>
} => {
  const methods: Record<string, unknown> = {}
  for (const name of operationNames) {
    if (name === "clearKeyspace") continue
    const accessor = accessors[name] as unknown as MethodCall
    methods[name] = (a?: unknown, b?: unknown, c?: unknown) => accessor(keyspace, a, b, c)
  }
  return {
    ...(methods as unknown as HandleMethods<K, A, Id>),
    clear: accessors.clearKeyspace(keyspace) as WithRequirement<ReturnType<Operations<K, A>["clearKeyspace"]>, Id>,
    getOrSet: (key, produce, options) => getOrSetAccessor(keyspace, key, produce, options),
    memoize: (f, options) => (key) => getOrSetAccessor(keyspace, key, f(key), options),
    getOrSetMany: (keys, produce, options) => getOrSetManyAccessor(keyspace, keys, produce, options),
    memoizeMany: memoizeMany(keyspace),
    stats: Effect.flatMap(keyspace.cache, (cache) =>
      Effect.map(cache.stats, (all) => all.find((stats) => stats.keyspace === keyspace.name) ?? keyspaceStats(keyspace.name, undefined))),
    warmUp: (keys, produce, options) => Background.warmUp(keyspace, keys, produce, options),
    refreshEvery: (key, produce, every, options) => Background.refreshEvery(keyspace, key, produce, every, options)
  }
}
