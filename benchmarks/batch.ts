/**
 * Batch loading: `getOrSetMany` of 100 keys beside 100 concurrent `getOrSet`s of the same keys, on
 * hits (every key stored) and on a cold batch (every key missing, so the producer runs: one call
 * with the 100 keys for the batch, one call per key for the getOrSets), in memory and on Redis.
 */
import { Effect, ManagedRuntime, Schema } from "effect"
import { Cache, CacheKey, Keyspace } from "../src/index.js"
import { type Result, runCase, value } from "./harness.js"

const User = Schema.Struct({ id: Schema.Number, name: Schema.String })
const BATCH = 100

export const batchCases = async (url: string): Promise<Array<Result>> => {
  const results: Array<Result> = []
  const ids = Array.from({ length: BATCH }, (_, i) => i)
  for (const [label, layer] of [
    ["memory", Cache.layerMemory({ capacity: 100_000 })],
    ["Redis", Cache.layerRedis({ url, namespace: "batch" })]
  ] as const) {
    const runtime = ManagedRuntime.make(layer)
    const Users = Keyspace.make({ name: "batch-users", key: CacheKey.number, value: User, ttl: "1 hour" })
    const one = (id: number) => Effect.sync(() => value(id))
    const many = (missing: ReadonlyArray<number>) => Effect.sync(() => missing.map((id) => [id, value(id)] as const))
    await runtime.runPromise(Users.setMany(ids.map((id) => [id, value(id)] as const)))
    results.push(await runCase(`Batch of ${BATCH} keys, every key stored (${label})`, `${BATCH} concurrent getOrSet`, [
      {
        name: `${BATCH} concurrent getOrSet`,
        batch: () => runtime.runPromise(Effect.forEach(ids, (id) => Users.getOrSet(id, one(id)), { concurrency: "unbounded", discard: true }))
      },
      { name: `getOrSetMany(${BATCH})`, batch: () => runtime.runPromise(Users.getOrSetMany(ids, many)) }
    ], BATCH))
    // Cold: each round reads keys nobody stored yet (a fresh range per batch), so every key is produced.
    let next = 1_000_000
    const fresh = () => Array.from({ length: BATCH }, () => next++)
    results.push(await runCase(`Batch of ${BATCH} keys, none stored: produced and stored (${label})`, `${BATCH} concurrent getOrSet`, [
      {
        name: `${BATCH} concurrent getOrSet`,
        batch: () => runtime.runPromise(Effect.forEach(fresh(), (id) => Users.getOrSet(id, one(id)), { concurrency: "unbounded", discard: true }))
      },
      { name: `getOrSetMany(${BATCH})`, batch: () => runtime.runPromise(Users.getOrSetMany(fresh(), many)) }
    ], BATCH))
    await runtime.dispose()
  }
  return results
}
