/**
 * The Redis store: the {@link CacheStore.CacheStore} port over the {@link Redis.Redis} client.
 *
 * Values are read as buffers, so bytes round-trip exactly; time to live is `PX`; batches are one
 * `MGET`, `UNLINK` or pipeline (per hash slot on a Cluster), never a round trip per key; `clear` walks
 * the prefix with `SCAN` + `UNLINK`, never `KEYS`, with glob characters in the prefix escaped.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { Cluster, Redis as IORedis } from "ioredis"
import { StoreError } from "./CacheError.js"
import * as CacheStore from "./CacheStore.js"
import * as RedisCommon from "./internal/redis.js"
import { slotOf } from "./internal/slot.js"
import * as Redis from "./Redis.js"

/**
 * Options of the Redis store.
 *
 * @example
 * ```ts
 * import { RedisStore } from "effect-cachekit"
 *
 * const StoreLive = RedisStore.layer({ maxValueBytes: 1024 * 1024, scanCount: 500 } satisfies RedisStore.Options)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The largest value written or read, in bytes; larger ones fail with reason `"TooLarge"`. Default 16 MiB. */
  readonly maxValueBytes?: number | undefined
  /** How many keys one `SCAN` step asks for during `clear`. Default 1,000. */
  readonly scanCount?: number | undefined
}

const store = "redis"

/** Escapes the glob characters of a SCAN pattern so a prefix matches literally. */
const escapeGlob = (prefix: string): string => prefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`)

/** Groups keys by Cluster hash slot (one group when not on a Cluster), remembering their positions. */
const groupBySlot = (keys: ReadonlyArray<string>, isCluster: boolean): Array<Array<number>> => {
  if (!isCluster) return [keys.map((_, i) => i)]
  const groups = new Map<number, Array<number>>()
  keys.forEach((key, i) => {
    const slot = slotOf(key)
    const group = groups.get(slot)
    if (group === undefined) groups.set(slot, [i])
    else group.push(i)
  })
  return Array.from(groups.values())
}

const { ttlMillis } = RedisCommon

/**
 * Builds a Redis store over the client in context.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RedisStore } from "effect-cachekit"
 *
 * const store = RedisStore.make({ maxValueBytes: 1024 * 1024 })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<CacheStore.CacheStore, never, Redis.Redis> =>
  Effect.map(Redis.Redis, ({ client, isCluster }) => {
    const maxValueBytes = options.maxValueBytes ?? RedisCommon.defaultMaxValueBytes
    const scanCount = options.scanCount ?? 1_000

    const call = <A>(operation: StoreError["operation"], key: string | undefined, run: () => Promise<A>) =>
      Effect.tryPromise({
        try: run,
        catch: (cause) => new StoreError({ reason: RedisCommon.classify(cause), operation, key, store, cause })
      })

    const payload = (operation: StoreError["operation"], key: string, value: CacheStore.StoredValue) =>
      RedisCommon.argument(operation, key, value, maxValueBytes)

    const received = (operation: StoreError["operation"], key: string, value: Buffer | null) =>
      value === null
        ? Effect.succeedNone
        : value.length > maxValueBytes
        ? Effect.fail(RedisCommon.tooLarge(operation, key, value.length, maxValueBytes))
        : Effect.succeed(Option.some<CacheStore.StoredValue>(value))

    /** Drops a key whose new value was refused, so no stale value outlives the write. */
    const refuse = (operation: StoreError["operation"], key: string) => (error: StoreError) =>
      error.reason === "TooLarge"
        ? Effect.zipRight(call(operation, key, () => client.unlink(key)).pipe(Effect.ignore), Effect.fail(error))
        : Effect.fail(error)

    const unlinkAll = (operation: StoreError["operation"], keys: ReadonlyArray<string>) =>
      keys.length === 0 ? Effect.succeed(0) : Effect.map(
        Effect.forEach(
          groupBySlot(keys, isCluster),
          (group) => call(operation, undefined, () => client.unlink(...group.map((i) => keys[i]!))),
          { concurrency: "unbounded" }
        ),
        (counts) => counts.reduce((a, b) => a + b, 0)
      )

    const scanNode = (node: IORedis, prefix: string): Effect.Effect<number, StoreError> => {
      const pattern = `${escapeGlob(prefix)}*`
      const step = (cursor: string, removed: number): Effect.Effect<number, StoreError> =>
        Effect.flatMap(
          call("clear", prefix, () => node.scan(cursor, "MATCH", pattern, "COUNT", scanCount)),
          ([next, keys]) =>
            Effect.flatMap(unlinkAll("clear", keys), (n) => next === "0" ? Effect.succeed(removed + n) : step(next, removed + n))
        )
      return step("0", 0)
    }

    const setCommand = (key: string, value: Buffer | string, px: number | undefined, onlyIfAbsent: boolean) =>
      px === undefined
        ? onlyIfAbsent ? client.set(key, value, "NX") : client.set(key, value)
        : onlyIfAbsent
        ? client.set(key, value, "PX", px, "NX")
        : client.set(key, value, "PX", px)

    // Every command carries the client's commandTimeout, so each command settles within it.
    const commandTimeout = isCluster
      ? (client as Cluster).options.redisOptions?.commandTimeout
      : (client as IORedis).options.commandTimeout
    const result: CacheStore.CacheStore = {
      name: store,
      isInProcess: false,
      acceptsLiveValues: false,
      operationBound: commandTimeout === undefined ? undefined : Duration.millis(commandTimeout),
      get: (key) => Effect.flatMap(call("get", key, () => client.getBuffer(key)), (value) => received("get", key, value)),
      getMany: (keys) =>
        keys.length === 0 ? Effect.succeed([]) : Effect.flatMap(
          Effect.forEach(
            groupBySlot(keys, isCluster),
            (group) =>
              Effect.map(
                call("getMany", undefined, () => client.mgetBuffer(...group.map((i) => keys[i]!))),
                (values) => group.map((index, j) => [index, values[j] ?? null] as const)
              ),
            { concurrency: "unbounded" }
          ),
          (groups) => {
            // One pass, no effect per value: place each reply and check its size.
            const out = new Array<Option.Option<CacheStore.StoredValue>>(keys.length)
            for (const group of groups) {
              for (const [index, value] of group) {
                if (value !== null && value.length > maxValueBytes) {
                  return Effect.fail(RedisCommon.tooLarge("getMany", keys[index]!, value.length, maxValueBytes))
                }
                out[index] = value === null ? Option.none() : Option.some(value)
              }
            }
            return Effect.succeed(out)
          }
        ),
      set: (key, value, ttl) => {
        const px = ttlMillis(ttl)
        if (px !== undefined && px <= 0) return Effect.asVoid(call("set", key, () => client.unlink(key)))
        return Effect.flatMap(payload("set", key, value), (body) => call("set", key, () => setCommand(key, body, px, false))).pipe(
          Effect.catchAll(refuse("set", key)),
          Effect.asVoid
        )
      },
      setMany: (entries) =>
        entries.length === 0 ? Effect.void : Effect.flatMap(
          Effect.forEach(entries, (entry) => Effect.map(payload("setMany", entry.key, entry.value), (body) => ({ entry, body }))),
          (encoded) =>
            Effect.forEach(
              groupBySlot(encoded.map(({ entry }) => entry.key), isCluster),
              (group) =>
                call("setMany", undefined, async () => {
                  const pipeline = client.pipeline()
                  for (const i of group) {
                    const { body, entry } = encoded[i]!
                    const px = ttlMillis(entry.ttl)
                    if (px === undefined) pipeline.set(entry.key, body)
                    else if (px <= 0) pipeline.unlink(entry.key)
                    else pipeline.set(entry.key, body, "PX", px)
                  }
                  const replies = (await pipeline.exec()) ?? []
                  const failed = replies.find(([error]) => error !== null)
                  if (failed !== undefined) throw failed[0]
                }),
              { concurrency: "unbounded", discard: true }
            )
        ),
      add: (key, value, ttl) => {
        const px = ttlMillis(ttl)
        if (px !== undefined && px <= 0) return Effect.succeed(false)
        return Effect.flatMap(
          payload("add", key, value),
          (body) => call("add", key, () => setCommand(key, body, px, true))
        ).pipe(Effect.map((reply) => reply === "OK"))
      },
      delete: (key) => Effect.map(call("delete", key, () => client.unlink(key)), (n) => n > 0),
      deleteMany: (keys) => unlinkAll("deleteMany", keys),
      has: (key) => Effect.map(call("has", key, () => client.exists(key)), (n) => n > 0),
      increment: (key, by) =>
        Number.isSafeInteger(by)
          ? call("increment", key, () => client.incrby(key, by))
          : Effect.fail(new StoreError({ reason: "WrongType", operation: "increment", key, store, cause: `${by} is not an integer` })),
      expire: (key, ttl) => {
        const px = ttlMillis(ttl)
        if (px === undefined) {
          return Effect.zipRight(
            call("expire", key, () => client.persist(key)),
            Effect.map(call("expire", key, () => client.exists(key)), (n) => n > 0)
          )
        }
        if (px <= 0) return Effect.map(call("expire", key, () => client.unlink(key)), (n) => n > 0)
        return Effect.map(call("expire", key, () => client.pexpire(key, px)), (n) => n === 1)
      },
      clear: (prefix) => {
        const nodes: ReadonlyArray<IORedis> = isCluster ? (client as Cluster).nodes("master") : [client as IORedis]
        return Effect.map(
          Effect.forEach(nodes, (node) => scanNode(node, prefix), { concurrency: "unbounded" }),
          (counts) => counts.reduce((a, b) => a + b, 0)
        )
      }
    }
    return result
  })

/**
 * A Redis store over the client in context.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Cache, Redis, RedisStore } from "effect-cachekit"
 *
 * const CacheLive = Cache.layer({ namespace: "app" }).pipe(
 *   Layer.provide(RedisStore.layer()),
 *   Layer.provide(Redis.layer({ url: "redis://127.0.0.1:6379" }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<CacheStore.CacheStore, never, Redis.Redis> =>
  Layer.effect(CacheStore.CacheStore, make(options))
