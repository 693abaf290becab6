import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Ref, Schedule, Schema } from "effect"
import { inject } from "vitest"
import * as MemcachedLock from "../src/CacheLock/Memcached.js"
import * as MemcachedStore from "../src/CacheStore/Memcached.js"
import { Cache, CacheEntry, CacheKey, CacheLock, CacheStore, Keyspace } from "../src/index.js"
import { lockSuite } from "../src/testing.js"
import { memcachedRemaining } from "./setup/memcached.js"

const server = inject("memcachedServer")
const port = Number(server.split(":")[1])

const sleep = (duration: Duration.Duration) =>
  Effect.promise(() => new Promise((resolve) => setTimeout(resolve, Duration.toMillis(duration))))

// memcached expires keys on its own clock, in whole seconds (a lease is sent as its seconds plus one):
// the suite waits for real, in units of 3 seconds, so that every lapse it waits for is a second past.
lockSuite("MemcachedLock", MemcachedLock.layerWithStore({ server }), { unit: "3 seconds", advance: sleep, live: true })

/** The seconds the run's memcached will keep `physical` for, or `undefined` when it holds nothing. */
const remaining = (physical: string) => Effect.promise(() => memcachedRemaining(port, physical))

const envelope = (text: string) =>
  CacheEntry.encode({ fingerprint: "lk0000000000", version: 0, freshUntil: Infinity, staleUntil: Infinity, tags: [], isFailure: false }, text)
const body = (found: Option.Option<CacheEntry.Stored>) =>
  Option.isNone(found) ? undefined : new TextDecoder().decode(CacheEntry.decode(found.value as Uint8Array)!.body)

const both = Effect.all([CacheLock.CacheLock, CacheStore.CacheStore])

describe("MemcachedLock", () => {
  it("its layers say what they need", () => {
    expectTypeOf(MemcachedLock.layer({ server })).toEqualTypeOf<Layer.Layer<CacheLock.CacheLock, never, CacheStore.CacheStore>>()
    expectTypeOf(MemcachedLock.layerWithStore({ server })).toEqualTypeOf<Layer.Layer<CacheStore.CacheStore | CacheLock.CacheLock>>()
  })

  it("a lease goes to memcached as its seconds rounded up, plus one (its clock ticks once a second)", () => {
    assert.strictEqual(MemcachedLock.leaseExpiration("300 millis", 0), 2)
    assert.strictEqual(MemcachedLock.leaseExpiration("1 second", 0), 2)
    assert.strictEqual(MemcachedLock.leaseExpiration("1001 millis", 0), 3)
    assert.strictEqual(MemcachedLock.leaseExpiration("3 seconds", 0), 4)
    assert.strictEqual(MemcachedLock.leaseExpiration("40 days", 1_000_000_000), 1_000_000 + 40 * 86_400 + 1)
  })

  it.live("the lock key is internal to the entry's namespace, with the lease as its expiration; release removes it", () =>
    Effect.gen(function*() {
      const [lock] = yield* both
      const lockKey = MemcachedLock.lockKeyOf("lk:users:1")
      assert.strictEqual(lockKey, "lk::lock:lk:users:1")
      assert.strictEqual(MemcachedLock.lockKeyOf(`lk:users:${"x".repeat(300)}`).length, 44, "hashed as the store hashes keys")
      const lease = Option.getOrThrow(yield* lock.tryAcquire("lk:users:1", "500 millis"))
      const left = (yield* remaining(lockKey))!
      assert.isTrue(left >= 1 && left <= 2, `a sub-second lease is held one to two seconds (${left})`)
      assert.isTrue(yield* lock.extend(lease, "10 seconds"))
      assert.isAbove((yield* remaining(lockKey))!, 9)
      assert.isTrue(yield* lock.release(lease, Option.none()))
      assert.isUndefined(yield* remaining(lockKey), "gone")
    }).pipe(Effect.provide(MemcachedLock.layerWithStore({ server }))))

  it.live("a lease of another token neither extends nor releases the lock, and its value is not written", () =>
    Effect.gen(function*() {
      const [lock, store] = yield* both
      const held = Option.getOrThrow(yield* lock.tryAcquire("lk:other:1", "10 seconds"))
      const forged: CacheLock.Lease = { key: held.key, token: CacheLock.randomToken() }
      assert.isFalse(yield* lock.extend(forged, "10 seconds"))
      assert.isFalse(yield* lock.release(forged, Option.some({ value: envelope("forged"), ttl: undefined })))
      assert.isUndefined(body(yield* store.get("lk:other:1")))
      assert.isTrue(Option.isNone(yield* lock.tryAcquire("lk:other:1", "10 seconds")), "still held")
      assert.isTrue(yield* lock.release(held, Option.some({ value: envelope("mine"), ttl: undefined })))
      assert.strictEqual(body(yield* store.get("lk:other:1")), "mine")
      assert.isFalse(yield* lock.release(held, Option.none()), "released once")
    }).pipe(Effect.provide(MemcachedLock.layerWithStore({ server }))))

  it.live("a release's write is conditional: skipped when the key was deleted or written after its version; the lock is released", () =>
    Effect.gen(function*() {
      const [lock, store] = yield* both
      yield* store.set("lk:cond:1", envelope("old"), undefined)
      const since = (yield* store.currentVersion!)!
      const lease = Option.getOrThrow(yield* lock.tryAcquire("lk:cond:1", "10 seconds"))
      yield* store.delete("lk:cond:1")
      assert.isTrue(yield* lock.release(lease, Option.some({ value: envelope("late"), ttl: undefined, since })))
      assert.isUndefined(body(yield* store.get("lk:cond:1")), "the delete stands")
      const again = Option.getOrThrow(yield* lock.tryAcquire("lk:cond:1", "10 seconds"))
      const later = (yield* store.currentVersion!)!
      assert.isTrue(yield* lock.release(again, Option.some({ value: envelope("fresh"), ttl: undefined, since: later })))
      assert.strictEqual(body(yield* store.get("lk:cond:1")), "fresh")
    }).pipe(Effect.provide(MemcachedLock.layerWithStore({ server }))))

  it.live("awaitRelease in another instance sees a release (it polls) before its wait ends", () =>
    Effect.gen(function*() {
      const holder = yield* Effect.provide(both, MemcachedLock.layerWithStore({ server }))
      const waiter = yield* Effect.provide(both, MemcachedLock.layerWithStore({ server }))
      const lease = Option.getOrThrow(yield* holder[0].tryAcquire("lk:wake:1", "30 seconds"))
      const waiting = yield* Effect.fork(waiter[0].awaitRelease("lk:wake:1", "20 seconds"))
      yield* sleep(Duration.millis(100))
      yield* holder[0].release(lease, Option.none())
      // Generous: the poll looks every 250 ms at most; what matters is that it returns long before 20 s.
      const outcome = yield* waiting.await.pipe(Effect.timeout("10 seconds"), Effect.either)
      assert.strictEqual(outcome._tag, "Right")
    }).pipe(Effect.scoped))
})

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User, ttl: "10 minutes" })

describe("getOrSet over memcached with the memcached lock", () => {
  it.live("4 cache instances (4 layers, 4 connections) × 100 callers: one producer run, one value", () =>
    Effect.gen(function*() {
      const calls = yield* Ref.make(0)
      const produce = Ref.update(calls, (n) => n + 1).pipe(Effect.zipRight(Effect.sleep("100 millis")), Effect.as(new User({ id: 1, name: "Ada" })))
      const instance = Effect.all(Array.from({ length: 100 }, () => Users.getOrSet(1, produce)), { concurrency: "unbounded" }).pipe(
        Effect.provide(Cache.layer({ namespace: "mfleet", lock: { pollInterval: "50 millis" } }).pipe(Layer.provide(MemcachedLock.layerWithStore({ server }))))
      )
      const users = (yield* Effect.all([instance, instance, instance, instance], { concurrency: "unbounded" })).flat()
      assert.strictEqual(yield* Ref.get(calls), 1)
      assert.strictEqual(users.length, 400)
      assert.isTrue(users.every((u) => u.name === "Ada"))
      assert.isUndefined(yield* remaining(MemcachedLock.lockKeyOf("mfleet:users:1")), "the lock was released")
    }))

  it.live("several keys across instances, at most once: each key's producer runs once", () =>
    Effect.gen(function*() {
      const calls = yield* Ref.make(new Map<number, number>())
      const produce = (id: number) =>
        Ref.update(calls, (m) => new Map(m).set(id, (m.get(id) ?? 0) + 1)).pipe(
          Effect.zipRight(Effect.sleep("30 millis")),
          Effect.as(new User({ id, name: `user ${id}` }))
        )
      const ids = Array.from({ length: 10 }, (_, i) => i + 1)
      const instance = Effect.forEach(ids, (id) => Users.getOrSet(id, produce(id), { lockMode: "at-most-once" }), { concurrency: "unbounded" }).pipe(
        Effect.provide(Cache.layer({ namespace: "mkeys", lock: { pollInterval: "50 millis" } }).pipe(Layer.provide(MemcachedLock.layerWithStore({ server }))))
      )
      const results = yield* Effect.all([instance, instance, instance], { concurrency: "unbounded" })
      for (const result of results) assert.deepStrictEqual(result.map((u) => u.id), ids)
      assert.deepStrictEqual(Array.from((yield* Ref.get(calls)).values()), ids.map(() => 1))
    }))

  it.live("with lock: false, layerWithStore provides the store alone", () =>
    Effect.gen(function*() {
      const lock = yield* Effect.serviceOption(CacheLock.CacheLock)
      assert.isTrue(Option.isNone(lock))
      const store = yield* CacheStore.CacheStore
      assert.isTrue(store.capabilities.conditionalWrites)
    }).pipe(Effect.provide(MemcachedLock.layerWithStore({ server, lock: false }))))

  it.live("a key invalidated while its producer runs under the lock keeps its newer state", () =>
    Effect.gen(function*() {
      const got = yield* Users.getOrSet(7, Effect.zipRight(Users.invalidate(7), Effect.succeed(new User({ id: 7, name: "produced" }))))
      assert.strictEqual(got.name, "produced")
      const cache = yield* Cache.Cache
      yield* Effect.repeat(cache.inFlight, { until: (n) => n === 0, schedule: Schedule.spaced("5 millis"), times: 400 })
      assert.isTrue(Option.isNone(yield* Users.get(7)), "the invalidation stands")
      assert.isUndefined(yield* remaining(MemcachedLock.lockKeyOf("mraced:users:7")), "no lock left")
    }).pipe(Effect.provide(Cache.layer({ namespace: "mraced" }).pipe(Layer.provide(MemcachedLock.layerWithStore({ server }))))))
})

// Keeps the import of the store module used for its types in this file.
void MemcachedStore.storeName
