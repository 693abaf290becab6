/**
 * Test stores built on the real memory store: one that keeps only serialized bytes (as a remote store
 * does), one that never answers, one that always fails.
 */
import { Context, Deferred, Effect, Fiber, Layer, Tracer } from "effect"
import { Redis as IORedis } from "ioredis"
import { expect, inject } from "vitest"
import { Cache, CacheError, CacheStore, MemoryStore, Redis } from "../src/index.js"

/** A memory store that refuses live values and is raced against the cache timeout, like a remote store. */
export const serializingStore = (store: CacheStore.CacheStore): CacheStore.CacheStore =>
  CacheStore.make({
    name: "serializing",
    capabilities: { atomicAdd: true, clearByPrefix: true, assignsVersions: true },
    get: store.get,
    getMany: store.getMany,
    set: store.set,
    setMany: store.setMany,
    add: store.add,
    delete: store.delete,
    deleteMany: store.deleteMany,
    has: store.has,
    clear: store.clear,
    expire: store.expire,
    increment: store.increment,
    counter: store.counter,
    currentVersion: store.currentVersion
  })

/** The memory store seen as a remote store, provided both as CacheStore and MemoryStore. */
export const layerSerializing = (options: MemoryStore.Options = {}) =>
  Layer.effectContext(
    Effect.map(MemoryStore.make(options), (store) =>
      Context.make(CacheStore.CacheStore, serializingStore(store)).pipe(Context.add(MemoryStore.MemoryStore, store)))
  )

const everyOperation = (f: (operation: CacheError.Operation) => Effect.Effect<never, CacheError.StoreError>): CacheStore.CacheStore =>
  CacheStore.make({
    name: "broken",
    get: () => f("get"),
    getMany: () => f("getMany"),
    set: () => f("set"),
    setMany: () => f("setMany"),
    add: () => f("add"),
    delete: () => f("delete"),
    deleteMany: () => f("deleteMany"),
    has: () => f("has"),
    clear: () => f("clear")
  })

/** A store whose every operation waits forever, as a paused server does. */
export const hangingStore: CacheStore.CacheStore = everyOperation(() => Effect.never)

/** A store whose every operation fails as an unreachable server does. */
export const failingStore: CacheStore.CacheStore = everyOperation((operation) =>
  Effect.fail(new CacheError.StoreError({ reason: "Unavailable", operation, store: "broken", cause: "connection refused" }))
)

/** A cache over a given store value. */
export const cacheOver = (store: CacheStore.CacheStore, options: Cache.Options = {}) =>
  Cache.layer(options).pipe(Layer.provide(Layer.succeed(CacheStore.CacheStore, store)))

/** A client on database `db` of the shared test Redis, emptied when the layer is built. */
export const redisOn = (db: number, options: Redis.Options = {}) =>
  Layer.tap(Redis.layer({ url: `${inject("redisUrl")}/${db}`, ...options }), (context) =>
    Effect.promise(() => Context.get(context, Redis.Redis).client.flushdb()))

/**
 * Runs a `getOrSet` whose producer returns `value` only once `during` has run (an invalidation, a
 * newer write: what races a producer), and returns what its caller got.
 */
export const whileProducing = <A, E, R, E2, R2>(
  getOrSet: (produce: Effect.Effect<A>) => Effect.Effect<A, E, R>,
  value: A,
  during: Effect.Effect<unknown, E2, R2>
): Effect.Effect<A, E | E2, R | R2> =>
  Effect.gen(function*() {
    const started = yield* Deferred.make<void>()
    const proceed = yield* Deferred.make<void>()
    const produce = Deferred.succeed(started, undefined).pipe(Effect.zipRight(Deferred.await(proceed)), Effect.as(value))
    const fiber = yield* Effect.fork(getOrSet(produce))
    yield* Deferred.await(started)
    yield* during
    yield* Deferred.succeed(proceed, undefined)
    return yield* Fiber.join(fiber)
  })

/**
 * Deep equality that tells `None` from `Some` (chai's `deepStrictEqual` does not: an `Option` is
 * iterable, and chai compares what two objects with different keys iterate over).
 */
export const assertSame = <A>(actual: A, expected: A, message?: string): void => {
  expect(actual, message).toStrictEqual(expected)
}

/** Database `db` of the shared test Redis, emptied, with a plain connection to it for the scope. */
export const emptiedDatabase = (db: number) =>
  Effect.gen(function*() {
    const url = `${inject("redisUrl")}/${db}`
    const admin = yield* Effect.acquireRelease(Effect.sync(() => new IORedis(url)), (admin) => Effect.sync(() => admin.disconnect()))
    yield* Effect.promise(() => admin.flushdb())
    return { url, admin }
  })

/** Runs `program` under a tracer that records every span it starts (Effect's own spans, kept): its value and the cache's spans. */
export const recorded = <A, E, R>(program: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.tracerWith(Effect.succeed), (inner) => {
    const spans: Array<Tracer.Span> = []
    const tracer = Tracer.make({
      span: (...args) => {
        const span = inner.span(...args)
        spans.push(span)
        return span
      },
      context: inner.context
    })
    return Effect.map(Effect.withTracer(program, tracer), (value) => ({ value, spans: spans.filter((span) => span.name.startsWith("cache.")) }))
  })
