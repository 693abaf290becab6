/**
 * The counters every cache updates. Defined here so the engine and the public module share them.
 */
import * as Metric from "effect/Metric"

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
  errors: Metric.counter("effect_cachekit_errors_total", {
    description: "store failures that getOrSet absorbed by falling back to the producer",
    incremental: true
  })
} as const
