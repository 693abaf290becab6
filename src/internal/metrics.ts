/**
 * The counters every cache updates. Defined here so the engine and the public module share them.
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

export const counters = {
  hits: Metric.counter("effect_cachekit_hits_total", { description: "reads that found a value", incremental: true }),
  misses: Metric.counter("effect_cachekit_misses_total", {
    description: "reads that found nothing usable",
    incremental: true
  }),
  decodeFailures: Metric.counter("effect_cachekit_decode_failures_total", {
    description: "stored values that could not be decoded (corrupt, or written under another schema) and were dropped",
    incremental: true
  }),
  staleServed: Metric.counter("effect_cachekit_stale_served_total", {
    description: "stale values (past their ttl, within their grace) getOrSet or getOrSetMany served because the producer failed or passed its soft or hard timeout",
    incremental: true
  }),
  errors: Metric.counter("effect_cachekit_errors_total", {
    description: "store and lock failures the cache absorbed (getOrSet carried on without it, or a two-layer cache served its memory's copy)",
    incremental: true
  })
} as const

export const unsharedWrites = Metric.counter("effect_cachekit_unshared_writes_total", {
  description: "writes a two-layer cache kept in memory only, because the shared tier failed",
  incremental: true
})

export const refreshFailures = Metric.counter("effect_cachekit_refresh_failures_total", {
  description: "refreshEvery runs and eager refreshes whose producer failed (the old value stayed)",
  incremental: true
})

export const circuit = Metric.gauge("effect_cachekit_circuit_open", {
  description: "1 while the circuit breaker in front of a backend (label backend: store or lock) is open, 0 while it is closed"
})

/** How long each public operation took, in milliseconds of real time: 0.05 ms to about 3.3 s. */
export const latency = Metric.histogram(
  "effect_cachekit_operation_duration_ms",
  MetricBoundaries.exponential({ start: 0.05, factor: 2, count: 17 }),
  "how long each public operation of a cache took, in milliseconds of real time (the cache's latencyMetrics option)"
)

export const eventsDropped = Metric.counter("effect_cachekit_events_dropped_total", {
  description: "events a subscriber of Cache.events lost because its buffer was full",
  incremental: true
})
