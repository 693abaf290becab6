/**
 * Background work as layers: warming a keyspace up on start, and refreshing an entry on a period,
 * once per fleet. Each lives in the scope of the layer that made it and stops when it closes.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { enginesOf } from "./engine.js"
import { isInvalidKey, storeKey } from "./keys.js"
import * as Metrics from "./metrics.js"
import { firstLine } from "./report.js"
import type { Definition, RefreshOptions, WarmUpOptions } from "./model.js"


/**
 * Fills the cache with `produce` for each key on start (through `getOrSet`: a key already cached is
 * left as it is, and one producer per key runs across the fleet), holding the program's start for
 * `timeout` at most (on the Clock); what is left then completes in the background. Failures are
 * logged with their count.
 */
export const warmUp = <K, A, Id, E, R>(
  keyspace: Definition<K, A, Id, unknown>,
  keys: Iterable<K>,
  produce: (key: K) => Effect.Effect<A, E, R>,
  options: WarmUpOptions | undefined
): Layer.Layer<never, never, Id | R> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const cache = yield* keyspace.cache
    const list = Array.from(keys)
    const started = yield* Clock.currentTimeMillis
    let done = 0
    const failures: Array<Cause.Cause<unknown>> = []
    const annotate = Effect.annotateLogs({ cache: cache.namespace, keyspace: keyspace.name })
    const work = Effect.forEach(
      list,
      (key) =>
        cache.getOrSet(keyspace, key, produce(key)).pipe(
          Effect.matchCause({ onFailure: (cause) => void failures.push(cause), onSuccess: () => void done++ })
        ),
      { concurrency: options?.concurrency ?? 16, discard: true }
    ).pipe(
      Effect.zipRight(Effect.suspend(() =>
        failures.length === 0 ? Effect.void : Effect.logWarning(
          `effect-cachekit: the warm-up of keyspace "${keyspace.name}" could not produce ${failures.length} of ${list.length} keys (first: ${firstLine(failures[0]!)})`
        )
      )),
      annotate
    )
    const fiber = yield* Effect.forkScoped(work)
    if (options?.timeout === undefined) return yield* Fiber.join(fiber)
    const timeout = Duration.decode(options.timeout)
    const finished = yield* Effect.timeoutOption(Fiber.await(fiber), timeout)
    if (Option.isSome(finished)) return
    yield* Effect.logWarning(
      `effect-cachekit: the warm-up of keyspace "${keyspace.name}" had ${done} of ${list.length} keys after ${Duration.format(timeout)}; the program starts, the rest completes in the background`
    ).pipe(annotate)
    // Say when the rest is done (or the scope closes first).
    yield* Effect.forkScoped(Effect.zipRight(
      Fiber.await(fiber),
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.logInfo(`effect-cachekit: the warm-up of keyspace "${keyspace.name}" completed in the background after ${now - started} ms`).pipe(annotate))
    ))
  }))

/**
 * Refreshes `key` every `every` (periods aligned on the Clock, so every instance sees the same
 * periods): the first instance to claim a period (an atomic insert in the store) runs the producer
 * and stores its value, the others skip it; so across a fleet the producer runs once per period. On
 * start the entry is filled if it is missing. A failed refresh keeps the old value, is logged and
 * counted (`effect_cachekit_refresh_failures_total`).
 */
export const refreshEvery = <K, A, Id, E, R>(
  keyspace: Definition<K, A, Id, unknown>,
  key: K,
  produce: Effect.Effect<A, E, R>,
  every: Duration.DurationInput | Schedule.Schedule<unknown>,
  options: RefreshOptions<A> | undefined
): Layer.Layer<never, never, Id | R> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const cache = yield* keyspace.cache
    const labels = [MetricLabel.make("cache", cache.namespace), MetricLabel.make("keyspace", keyspace.name)]
    const annotate = Effect.annotateLogs({ cache: cache.namespace, keyspace: keyspace.name, operation: "refresh" })
    // Counted as the cache counts its eager refreshes' failures (metric, stats, event), where the
    // service is one of this library's; else on the metric alone.
    const engine = enginesOf.get(cache)?.(keyspace)
    const storeKeyOf = engine === undefined ? undefined : storeKey(engine, "set", keyspace, key)
    const failed = (cause: Cause.Cause<unknown>) =>
      Effect.zipRight(
        Effect.sync(() =>
          engine === undefined || storeKeyOf === undefined || isInvalidKey(storeKeyOf)
            ? Metrics.refreshFailures.unsafeUpdate(1, labels)
            : engine.bindingOf(keyspace).counters.refreshFailure(storeKeyOf, cause)
        ),
        Effect.logWarning(
          `effect-cachekit: the refresh of an entry of keyspace "${keyspace.name}" failed (${firstLine(cause)}); the old value stays`
        ).pipe(annotate)
      )
    const fill = Effect.catchAllCause(Effect.asVoid(cache.getOrSet(keyspace, key, produce, options)), failed)
    const force = Effect.catchAllCause(Effect.asVoid(cache.getOrSet(keyspace, key, produce, { ...options, cacheRead: false })), failed)
    if (Schedule.isSchedule(every)) {
      // A Schedule runs in each instance on its own: no claim, so a fleet refreshes once per instance.
      yield* Effect.forkScoped(Effect.zipRight(fill, Effect.schedule(force, every)))
      return
    }
    const period = Duration.decode(every)
    const millis = Math.max(1, Duration.toMillis(period))
    const refresh = (index: number) =>
      Effect.flatMap(
        Effect.either(cache.claim(keyspace, key, `refresh:${millis}:${index}`, period)),
        (claimed) => {
          if (claimed._tag === "Left") return failed(Cause.fail(claimed.left))
          return claimed.right ? force : Effect.void
        }
      )
    const loop = Effect.forever(Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const index = Math.floor(now / millis) + 1
      return Effect.zipRight(Effect.sleep(Duration.millis(index * millis - now)), refresh(index))
    }))
    yield* Effect.forkScoped(Effect.zipRight(fill, loop))
  }))
