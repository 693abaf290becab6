/**
 * The distributed lock over Redis: `getOrSet` runs a key's producer at most once at a time across every
 * process sharing the Redis.
 *
 * - Acquire: `SET <lock> <token> NX PX <lease>`.
 * - Extend and release: Lua scripts that compare the token first (`defineCommand`), so a lease that was
 *   lost can neither be extended nor released by its old holder.
 * - The holder's value is written by the release script, in the same step as the token check: a
 *   producer whose lease lapsed never overwrites the value of the holder that took over.
 * - The value is written as the store writes it (`SET ... PX` and a version from Redis's clock).
 * - Waiters are woken by a `PUBLISH` on `<namespace>::lock-released` from the release script; they also
 *   look again at the cache's poll interval, so a lost message costs a poll, not a hang.
 * - A lock key is an internal key of the entry's namespace, in the entry's hash slot
 *   (`<namespace>::lock:{<tag>}:<entry key>`): no keyspace, `clear` or `clearKeyspace` touches it, an ACL
 *   pattern `~<namespace>:*` covers it, and the release script is Cluster-safe.
 *
 * @since 0.2.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { Cluster, Redis as IORedis } from "ioredis"
import { LockError, StoreError } from "../CacheError.js"
import * as CacheLock from "../CacheLock.js"
import * as CacheStore from "../CacheStore.js"
import { timeoutRealTo } from "../internal/realTime.js"
import * as Waiters from "../internal/waiters.js"
import * as Redis from "../Redis.js"
import * as RedisStore from "../CacheStore/Redis.js"

/**
 * Options of the Redis lock.
 *
 * @example
 * ```ts
 * import { RedisLock } from "effect-cachekit"
 *
 * const LockLive = RedisLock.layer({ maxValueBytes: 1024 * 1024 } satisfies RedisLock.Options)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The largest value the release script writes, in bytes; as the Redis store's `maxValueBytes`. Default 16 MiB. */
  readonly maxValueBytes?: number | undefined
  /** Values above this many bytes are written deflated; as the Redis store's `compressAbove`. Default 16 KiB. */
  readonly compressAbove?: number | false | undefined
}

/** The prefix of the error the release script replies with when Redis refused the holder's write. */
const writeRefused = "CACHEKIT-WRITE-REFUSED"

const extendScript = `
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`

// KEYS: lock, entry, the entry's tombstone. ARGV: token, channel, message, mode ("0" no write, "1"
// write), value, px (as the store's write takes it), deadline and since (as the store's set takes
// them), bus origin. Replies { 1 written | 0 not (the lease was lost) | late | superseded, now, version }. The write runs
// under pcall: when Redis refuses it (out of memory), the lock is still released and the waiters
// woken, and the refusal comes back as an error reply after that. A write that comes after its
// deadline, or after a newer write or delete of the key, is not made; the lock is released all the same.
const releaseScript = `${RedisStore.writeFunction}
local written = 0
local version = 0
local refused = nil
if redis.call("GET", KEYS[1]) == ARGV[1] then
  if ARGV[4] == "1" then
    if late(ARGV[7]) then
      written = ${RedisStore.lateReply}
    elseif superseded(KEYS[2], KEYS[3], ARGV[8]) then
      written = ${RedisStore.supersededReply}
    else
      local ok, result = pcall(write, KEYS[2], ARGV[5], ARGV[6])
      if ok then
        written = 1
        version = result
      else
        refused = result
      end
    end
  end
  redis.call("DEL", KEYS[1])
end
redis.call("PUBLISH", ARGV[2], ARGV[3])
publish()
if refused then
  return redis.error_reply("${writeRefused} " .. (type(refused) == "table" and refused.err or tostring(refused)))
end
return { written, now, version }`

// KEYS: lock keys (one hash slot). ARGV: the lease in milliseconds, then one token per key. Replies
// one 1 (taken) or 0 (held by another) per key: SET NX for each, in one step.
const acquireManyScript = `
local taken = {}
for i, key in ipairs(KEYS) do
  if redis.call("SET", key, ARGV[i + 1], "NX", "PX", ARGV[1]) then taken[i] = 1 else taken[i] = 0 end
end
return taken`

interface AcquirePipeline {
  cachekitLockAcquireMany(...keysThenArgs: Array<string | number>): AcquirePipeline
  exec(): Promise<Array<[Error | null, unknown]> | null>
}

/** Runs a pipeline of one command: its reply, or its error. */
const pipelinedOne = async (pipeline: AcquirePipeline): Promise<Array<number>> => {
  const replies = await pipeline.exec()
  const [error, reply] = replies?.[0] ?? [new Error("the pipeline was discarded"), undefined]
  if (error !== null) throw error
  return reply as Array<number>
}

interface Scripts {
  pipeline(): AcquirePipeline
  cachekitLockAcquireMany(...keysThenArgs: Array<string | number>): Promise<Array<number>>
  cachekitLockExtend(lock: string, token: string, millis: number): Promise<number>
  cachekitLockRelease(
    lock: string,
    entry: string,
    tombstone: string,
    token: string,
    channel: string,
    message: string,
    mode: string,
    value: Buffer | string,
    px: string,
    deadline: string,
    since: string,
    origin: string
  ): Promise<RedisStore.Reply>
}

const channelSuffix = "::lock-released"

/** How many locks one acquire script takes at most, so a huge batch never holds Redis for long. */
const acquireChunk = 256

/** How many acquisitions of unknown outcome are remembered for clean-up; past it, the oldest lapse with their lease. */
const maxUnsettled = 10_000

/** @internal The lock key of an entry key: internal to its namespace, in its hash slot. */
export const lockKeyOf = (key: string): string =>
  CacheStore.internalKey(CacheStore.namespaceOf(key), "lock", `{${RedisStore.tagForSlot(RedisStore.slotOf(key))}}:${key}`)

const lockError = (client: Redis.Client, operation: LockError["operation"], key: string, cause: unknown) => {
  const reason = RedisStore.classify(client, cause)
  return new LockError({
    reason: reason === "Timeout" || reason === "Auth" ? reason : "Unavailable",
    operation,
    key,
    cause: RedisStore.causeOf(client, reason, cause)
  })
}

/** The channel a namespace's releases are published on. */
const channelOf = (key: string): string => `${CacheStore.namespaceOf(key)}${channelSuffix}`

const defineScripts = (client: Redis.Client): Scripts => {
  client.defineCommand("cachekitLockExtend", { numberOfKeys: 1, lua: extendScript })
  client.defineCommand("cachekitLockAcquireMany", { lua: acquireManyScript })
  client.defineCommand("cachekitLockRelease", { numberOfKeys: 3, lua: releaseScript })
  return client as unknown as Scripts
}

/**
 * Builds the Redis lock over the client in context, with a subscriber connection of its own for
 * wake-ups, closed with the scope.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RedisLock } from "effect-cachekit"
 *
 * const lock = RedisLock.make()
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<CacheLock.CacheLock, never, Redis.Redis | Scope.Scope> =>
  Effect.gen(function*() {
    const { client, isCluster } = yield* Redis.Redis
    const origin = yield* RedisStore.busOrigin
    const scripts = defineScripts(client)
    const commandTimeout = RedisStore.commandTimeoutOf(client, isCluster)
    // On a Cluster: cut at commandTimeout, and sent again while a migrating slot refuses it (TRYAGAIN).
    const whole = RedisStore.wholeCall(isCluster, commandTimeout)
    const maxValueBytes = options.maxValueBytes ?? RedisStore.defaultMaxValueBytes
    const waiters = Waiters.make()

    const subscriber = yield* Effect.acquireRelease(
      Effect.sync(() => {
        // The subscriber may queue its SUBSCRIBE until connected: it is not a request anyone waits on.
        const connection: IORedis | Cluster = isCluster
          ? (client as Cluster).duplicate(undefined, { enableOfflineQueue: true })
          : (client as IORedis).duplicate({ enableOfflineQueue: true })
        connection.on("error", () => {})
        connection.on("pmessage", (_pattern: string, _channel: string, key: string) => waiters.wake(key))
        return connection
      }),
      (connection) => Effect.sync(() => connection.disconnect())
    )
    // Wait (2 s of real time at most) for the subscription, so early releases are heard; if it fails,
    // waiters poll.
    const couldNotSubscribe = Effect.logWarning(
      "effect-cachekit: the Redis lock could not subscribe to wake-ups yet; waiters will poll"
    )
    yield* timeoutRealTo(
      Effect.tryPromise(() => subscriber.psubscribe(`*${channelSuffix}`)).pipe(Effect.catchAll(() => couldNotSubscribe)),
      2_000,
      couldNotSubscribe
    )
    // A Redis that evicts keys under memory pressure may evict a held lock (it has a TTL under every
    // policy but noeviction): say so once. The fencing still holds (a holder whose lock was evicted
    // cannot write through it), but a second producer may run: at-most-once is not guaranteed there.
    yield* timeoutRealTo(
      Effect.tryPromise(() => client.config("GET", "maxmemory-policy") as Promise<unknown>).pipe(
        Effect.flatMap((reply) => {
          const policy = Array.isArray(reply) ? String(reply[1] ?? "") : ""
          return policy === "" || policy === "noeviction" ? Effect.void : Effect.logWarning(
            `effect-cachekit: Redis evicts keys under memory pressure (maxmemory-policy ${policy}), so it may evict a held lock: ` +
              "a producer may then run twice (lockMode \"at-most-once\" is not guaranteed); a value is never written through a lost lock"
          )
        }),
        // CONFIG may be refused (a managed Redis, an ACL): nothing to say then.
        Effect.ignore
      ),
      1_000,
      Effect.void
    )

    // An acquisition whose reply never came (timed out, interrupted, or its connection dropped) may
    // still land on Redis. Its token is kept and a token-checked release is sent at once: on the same
    // connection it runs after the SET it follows, so a SET that lands late is undone as soon as it
    // lands. Whatever could not be sent is sent again each time the client is ready.
    const unsettled = new Map<string, string>() // token → entry key
    const settle = (token: string, key: string) =>
      whole(() =>
        scripts.cachekitLockRelease(lockKeyOf(key), key, RedisStore.tombstoneKeyOf(key), token, channelOf(key), key, "0", "", "", "", "", "")
      )().then(() => void unsettled.delete(token), () => {})
    const abandon = (token: string, key: string) => {
      if (unsettled.size >= maxUnsettled) unsettled.delete(unsettled.keys().next().value!)
      unsettled.set(token, key)
      void settle(token, key)
    }
    const onReady = () => {
      for (const [token, key] of unsettled) void settle(token, key)
    }
    client.on("ready", onReady)
    yield* Effect.addFinalizer(() => Effect.sync(() => client.off("ready", onReady)))

    const call = <A>(operation: LockError["operation"], key: string, run: () => Promise<A>) =>
      Effect.tryPromise({ try: whole(run), catch: (cause) => lockError(client, operation, key, cause) })

    const lock: CacheLock.CacheLock = {
      name: "redis",
      inProcess: false,
      operationBound: commandTimeout === undefined ? undefined : Duration.millis(commandTimeout),
      tryAcquire: (key, lease) =>
        Effect.suspend(() => {
          const token = CacheLock.randomToken()
          const millis = Math.max(1, Math.ceil(Duration.toMillis(Duration.decode(lease))))
          return call("lock", key, () => client.set(lockKeyOf(key), token, "PX", millis, "NX")).pipe(
            Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : Effect.sync(() => abandon(token, key))),
            Effect.map((reply) => reply === "OK" ? Option.some({ key, token }) : Option.none())
          )
        }),
      // One script per hash slot (a lock key lives in its entry's slot), at most 256 keys each, sent at
      // once. A script whose reply never came may have taken its keys: each of its tokens is settled
      // as after a single acquire, with a token-checked release sent behind it.
      tryAcquireMany: (keys, lease) =>
        Effect.suspend(() => {
          const millis = Math.max(1, Math.ceil(Duration.toMillis(Duration.decode(lease))))
          const tokens = keys.map(() => CacheLock.randomToken())
          const groups = RedisStore.groupBySlot(keys, isCluster).flatMap((group) => RedisStore.chunks(group, acquireChunk))
          return Effect.map(
            Effect.forEach(groups, (group) =>
              call("lock", keys[group[0]!]!, () => {
                const args = [group.length, ...group.map((i) => lockKeyOf(keys[i]!)), millis, ...group.map((i) => tokens[i]!)]
                // On a Cluster, a pipeline of its own routes the script by its keys (the first argument is their count).
                return isCluster ? pipelinedOne(scripts.pipeline().cachekitLockAcquireMany(...args)) : scripts.cachekitLockAcquireMany(...args)
              }).pipe(
                  Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : Effect.sync(() => group.forEach((i) => abandon(tokens[i]!, keys[i]!)))),
                  Effect.map((taken) => group.map((i, j) => [i, taken[j] === 1] as const))
                ), { concurrency: "unbounded" }),
            (answers) => {
              const out = new Array<Option.Option<CacheLock.Lease>>(keys.length)
              for (const group of answers) {
                for (const [i, taken] of group) out[i] = taken ? Option.some({ key: keys[i]!, token: tokens[i]! }) : Option.none()
              }
              return out
            }
          )
        }),
      extend: (lease, duration) =>
        Effect.map(
          call("lock", lease.key, () =>
            scripts.cachekitLockExtend(
              lockKeyOf(lease.key),
              lease.token,
              Math.max(1, Math.ceil(Duration.toMillis(Duration.decode(duration))))
            )),
          (n) => n === 1
        ),
      release: (lease, write, wait) => {
        const channel = channelOf(lease.key)
        const since = Option.isSome(write) && write.value.since !== undefined ? String(write.value.since) : ""
        const send = (mode: string, value: Buffer | string, px: string) =>
          RedisStore.fenced(
            client,
            mode === "1" ? RedisStore.waitMillis(commandTimeout, wait) : Infinity,
            whole((deadline) =>
              scripts.cachekitLockRelease(
                lockKeyOf(lease.key),
                lease.key,
                RedisStore.tombstoneKeyOf(lease.key),
                lease.token,
                channel,
                lease.key,
                mode,
                value,
                px,
                deadline,
                since,
                origin
              )),
            (cause): LockError | StoreError =>
              cause instanceof Error && cause.message.includes(writeRefused)
                ? new StoreError({ reason: "Backend", operation: "set", key: lease.key, store: "redis", cause: cause.message.replace(`${writeRefused} `, "") })
                : lockError(client, "unlock", lease.key, cause),
            () =>
              new StoreError({
                reason: "Timeout",
                operation: "set",
                key: lease.key,
                store: "redis",
                cause: "the value reached Redis after its caller stopped waiting, so it was not stored (the lock was released)"
              })
          ).pipe(Effect.map(([outcome, , version]) => {
            // The version the write got goes into the envelope the lock was handed (0: not written).
            if (Option.isSome(write)) RedisStore.stampVersion(write.value.value, outcome === 1 ? version ?? 0 : 0)
            return outcome === 1 || outcome === RedisStore.supersededReply
          }))
        if (Option.isNone(write)) return send("0", "", "")
        const px = RedisStore.pxArgument(write.value.ttl)
        // A ttl of zero or less stores nothing and removes what was there, as in the store.
        if (px === "-") return send("1", "", px)
        const value = RedisStore.argument("set", lease.key, write.value.value, maxValueBytes, options.compressAbove ?? RedisStore.defaultCompressAbove)
        // A value too large to store still releases the lock (so waiters are not held up) and, as in the
        // store, drops the old value so that no stale value outlives the refused write.
        if (value instanceof StoreError) return Effect.zipRight(send("1", "", "-"), Effect.fail(value))
        return send("1", value, px)
      },
      awaitRelease: waiters.wait
    }
    return lock
  })

/**
 * The Redis lock as a layer. Provide it with the store: `Cache.layerRedis` does.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Cache, Redis, RedisLock, RedisStore } from "effect-cachekit"
 *
 * const CacheLive = Cache.layer({ namespace: "app" }).pipe(
 *   Layer.provide(Layer.merge(RedisStore.layer(), RedisLock.layer())),
 *   Layer.provide(Redis.layer({ url: "redis://127.0.0.1:6379" }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<CacheLock.CacheLock, never, Redis.Redis> =>
  Layer.scoped(CacheLock.CacheLock, make(options))
