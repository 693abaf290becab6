/**
 * The lock conformance suite: exclusivity, release, extension, lapse, fenced writes and wake-ups.
 * A lock layer proves itself with one line: `lockSuite("my lock", layer)`; the layer must also provide
 * the CacheStore the lock writes to.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Option, TestClock } from "effect"
import { CacheLock, CacheStore } from "../../src/index.js"

export interface LockSuiteOptions {
  /** Moves the lock's notion of time forward. Default `TestClock.adjust`. */
  readonly advance?: (duration: Duration.Duration) => Effect.Effect<void>
  /** The time unit of the suite's leases. Default 1 second. */
  readonly unit?: Duration.DurationInput
  /** Run on the real clock (for a lock whose leases run on a server's clock). Default `false`. */
  readonly live?: boolean
}

const text = (value: Option.Option<CacheStore.StoredValue>) => {
  if (Option.isNone(value)) return undefined
  const v = value.value
  if (v instanceof CacheStore.LiveValue) return String(v.value)
  return typeof v === "string" ? v : new TextDecoder().decode(v)
}

export const lockSuite = <E>(
  name: string,
  layer: Layer.Layer<CacheLock.CacheLock | CacheStore.CacheStore, E>,
  options: LockSuiteOptions = {}
) => {
  const advance = options.advance ?? ((d: Duration.Duration) => TestClock.adjust(d))
  const unit = Duration.decode(options.unit ?? "1 second")
  const units = (n: number) => Duration.times(unit, n)
  const test = (title: string, body: (lock: CacheLock.CacheLock, store: CacheStore.CacheStore) => Effect.Effect<void, unknown>) =>
    (options.live === true ? it.live : it.effect)(title, () =>
      Effect.flatMap(Effect.all([CacheLock.CacheLock, CacheStore.CacheStore]), ([lock, store]) => body(lock, store)).pipe(
        Effect.provide(layer)
      ))
  const value = (text: string): CacheStore.StoredValue => text

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
        assert.isTrue(yield* lock.release(current, Option.some({ value: value("new"), ttl: undefined })))
        assert.isFalse(yield* lock.release(old, Option.some({ value: value("stale"), ttl: undefined })))
        assert.strictEqual(text(yield* store.get("l:fenced")), "new")
      }))

    test("release with a value stores it with its ttl", (lock, store) =>
      Effect.gen(function*() {
        const lease = Option.getOrThrow(yield* lock.tryAcquire("l:ttl", units(10)))
        assert.isTrue(yield* lock.release(lease, Option.some({ value: value("v"), ttl: units(2) })))
        assert.strictEqual(text(yield* store.get("l:ttl")), "v")
        yield* advance(units(3))
        assert.isTrue(Option.isNone(yield* store.get("l:ttl")))
      }))

    test("release with a ttl of zero stores nothing and removes the old value, as a store write does", (lock, store) =>
      Effect.gen(function*() {
        yield* store.set("l:zero", value("old"), undefined)
        const lease = Option.getOrThrow(yield* lock.tryAcquire("l:zero", units(10)))
        yield* lock.release(lease, Option.some({ value: value("new"), ttl: Duration.zero }))
        assert.isTrue(Option.isNone(yield* store.get("l:zero")))
        assert.isTrue(Option.isSome(yield* lock.tryAcquire("l:zero", units(10))), "and the lock is free")
      }))

    test("awaitRelease returns when the holder releases, before its timeout", (lock) =>
      Effect.gen(function*() {
        const lease = Option.getOrThrow(yield* lock.tryAcquire("l:wake", units(10)))
        const waiter = yield* Effect.fork(lock.awaitRelease("l:wake", units(100)))
        yield* advance(units(1))
        yield* lock.release(lease, Option.none())
        const outcome = yield* Fiber.join(waiter).pipe(Effect.timeout(units(50)), Effect.either)
        assert.strictEqual(outcome._tag, "Right")
      }))

    test("awaitRelease ends at its timeout when nobody releases", (lock) =>
      Effect.gen(function*() {
        yield* lock.tryAcquire("l:still", units(100))
        const waiter = yield* Effect.fork(lock.awaitRelease("l:still", units(2)))
        yield* advance(units(3))
        yield* Fiber.join(waiter)
      }))
  })
}
