/**
 * The ioredis client as a scoped service: standalone, Sentinel or Cluster, with defaults chosen for a
 * cache rather than a queue.
 *
 * ioredis's own defaults let a command wait 10 s or more during an outage and forever against a paused
 * server. Here every command carries a `commandTimeout`, commands issued while the connection is down
 * fail at once instead of queueing (`enableOfflineQueue: false`), and reconnection retries forever with
 * a capped backoff, so a cache recovers when Redis returns without restarting its layer.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { Cluster, Redis as IORedis, type ClusterOptions, type RedisOptions } from "ioredis"

/**
 * A Redis client: a standalone or Sentinel-managed connection, or a Cluster.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Redis } from "effect-cachekit"
 *
 * const client: Effect.Effect<Redis.Client, never, Redis.Redis> = Effect.map(Redis.Redis, (redis) => redis.client)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Client = IORedis | Cluster

/**
 * The Redis service: the client, and whether it talks to a Cluster.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Redis } from "effect-cachekit"
 *
 * // aiocache's `raw`: any command the stores do not wrap.
 * const info = Effect.flatMap(Redis.Redis, (redis) => Effect.promise(() => redis.client.info("memory")))
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Redis {
  readonly client: Client
  readonly isCluster: boolean
}

/**
 * The Redis service tag.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Redis } from "effect-cachekit"
 *
 * const ping = Effect.flatMap(Redis.Redis, (redis) => Effect.promise(() => redis.client.ping()))
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const Redis: Context.Tag<Redis, Redis> = Context.GenericTag<Redis>("effect-cachekit/Redis")

/**
 * How to reach Redis. Give a `url`, or `sentinels` with the master `name`, or `cluster` nodes.
 *
 * @example
 * ```ts
 * import { Redis } from "effect-cachekit"
 *
 * const cluster: Redis.Options = { cluster: [{ host: "127.0.0.1", port: 7000 }], commandTimeout: "300 millis" }
 * const sentinel: Redis.Options = { sentinels: [{ host: "127.0.0.1", port: 26379 }], name: "mymaster" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `redis://[user:password@]host:port[/db]` or `rediss://...`. Credentials belong in a `Redacted`. */
  readonly url?: string | Redacted.Redacted<string> | undefined
  /** Sentinel nodes; with `name`, the master they watch. */
  readonly sentinels?: ReadonlyArray<{ readonly host: string; readonly port: number }> | undefined
  readonly name?: string | undefined
  /** Cluster start-up nodes. */
  readonly cluster?: ReadonlyArray<{ readonly host: string; readonly port: number }> | undefined
  /** Password for Sentinel or Cluster nodes (a `url` carries its own). */
  readonly password?: Redacted.Redacted<string> | undefined
  /** The bound on every command. Default 500 ms. */
  readonly commandTimeout?: Duration.DurationInput | undefined
  /** The bound on establishing a connection. Default 2 seconds. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** Longest pause between reconnection attempts (they never stop). Default 2 seconds. */
  readonly maxReconnectDelay?: Duration.DurationInput | undefined
  /** Batch concurrent commands into one write per tick. Default `true`. */
  readonly autoPipelining?: boolean | undefined
  /**
   * Anything else for ioredis; these win over the defaults above. Leave `keyPrefix` unset: the cache
   * namespaces keys itself, and ioredis does not apply a prefix to SCAN patterns.
   */
  readonly redisOptions?: RedisOptions | undefined
}

const authFailures = new WeakMap<Client, string>()

const isAuthRefusal = (error: unknown): error is Error =>
  error instanceof Error && /^(WRONGPASS|NOAUTH)|invalid password/i.test(error.message)

/**
 * @internal
 * Why the server refused the client's credentials, while it does (cleared once a connection is ready
 * again): a command that fails meanwhile fails for that reason.
 */
export const authRefusal = (client: Client): string | undefined => authFailures.get(client)

/** Records credential refusals, and keeps the error events of a client from being unhandled. */
const watch = (client: Client): void => {
  const onError = (error: unknown) => {
    if (isAuthRefusal(error)) authFailures.set(client, error.message)
  }
  client.on("error", onError)
  client.on("node error", onError)
  client.on("ready", () => authFailures.delete(client))
}

/**
 * @internal
 * What a client knows of its server's clock, so a write can carry the latest server time at which it
 * may still run: the moment its caller stops waiting. A write that reaches Redis later (it sat in a
 * socket buffer or a paused server) is refused by its script, so a write the caller was told had
 * failed can never land after a newer one.
 *
 * Every reply that carries the server's `TIME` is a sample: `serverTime - receivedAt` is a lower bound
 * of the offset between the server's clock and this process's monotonic clock (the command ran before
 * its reply came), `serverTime - sentAt` an upper bound. The estimate is the highest lower bound seen
 * recently; a sample whose upper bound is below it (the server's clock went back, or another server
 * answered) replaces it. It is measured with one `TIME` when the client is first ready and each time a
 * connection is ready again (after a failover the server may be another machine). Deadlines are
 * computed on the monotonic clock, so a jump of this machine's wall clock changes nothing; the fence
 * holds to within the difference between the clocks of the servers a client reaches (Cluster nodes, a
 * promoted replica), which NTP keeps to milliseconds.
 */
export interface ServerClock {
  /**
   * The server time (epoch milliseconds on its clock) after which a command sent now no longer
   * serves a caller that waits `waitMillis`; `undefined` while the offset is unknown.
   */
  readonly deadline: (waitMillis: number) => number | undefined
  /** The server's time now (microseconds), never later than it really is; `undefined` while the offset is unknown. */
  readonly now: () => number | undefined
  /** Records the server time (microseconds) a reply carried, for a command sent at `sentAt` (`performance.now()`). */
  readonly observe: (sentAt: number, serverMicros: number) => void
  /** Measures the offset with one `TIME`, if it is unknown (a failure leaves it unknown). */
  readonly measure: () => Promise<void>
}

/** How long a sample of the server's clock is trusted before a lower one may replace it (drift). */
const clockWindowMillis = 10_000

const clocks = new WeakMap<Client, ServerClock>()

/** @internal The server clock of a client (one per client, shared by its store and lock). */
export const serverClock = (client: Client): ServerClock => {
  const existing = clocks.get(client)
  if (existing !== undefined) return existing
  let best = -Infinity
  let bestAt = 0
  let measuring: Promise<void> | undefined
  const observe = (sentAt: number, serverMicros: number) => {
    const now = performance.now()
    const serverMillis = serverMicros / 1000
    const lower = serverMillis - now
    if (lower > best || serverMillis - sentAt < best || now - bestAt > clockWindowMillis) {
      best = lower
      bestAt = now
    }
  }
  const measure = (): Promise<void> => {
    if (best !== -Infinity) return Promise.resolve()
    return measuring ??= (async () => {
      const sentAt = performance.now()
      try {
        const [seconds, micros] = await client.time()
        observe(sentAt, Number(seconds) * 1_000_000 + Number(micros))
      } catch {
        // Unknown still: the next write measures again.
      } finally {
        measuring = undefined
      }
    })()
  }
  const clock: ServerClock = {
    deadline: (waitMillis) => best === -Infinity ? undefined : Math.floor(performance.now() + waitMillis + best) - 1,
    now: () => best === -Infinity ? undefined : Math.floor((performance.now() + best) * 1000) - 1,
    observe,
    measure
  }
  // A connection that is ready again may reach another server (after a failover): sample at once.
  // The estimate is kept meanwhile; the first sample below it replaces it (its upper bound).
  client.on("ready", () => {
    const sentAt = performance.now()
    client.time().then(([seconds, micros]) => observe(sentAt, Number(seconds) * 1_000_000 + Number(micros)), () => {})
  })
  clocks.set(client, clock)
  if (client.status === "ready") void measure()
  return clock
}

const millis = (input: Duration.DurationInput | undefined, fallback: Duration.DurationInput) =>
  Duration.toMillis(Duration.decode(input ?? fallback))

/**
 * The ioredis options this module uses: the cache-oriented defaults, with `options.redisOptions` on top.
 * Useful to build a client of your own for {@link layerFromClient}.
 *
 * @example
 * ```ts
 * import { Redis as IORedis } from "ioredis"
 * import { Redis } from "effect-cachekit"
 *
 * const client = new IORedis("redis://127.0.0.1:6379", Redis.clientOptions({ commandTimeout: "250 millis" }))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const clientOptions = (options: Options): RedisOptions => {
  const maxDelay = millis(options.maxReconnectDelay, "2 seconds")
  return {
    commandTimeout: millis(options.commandTimeout, "500 millis"),
    connectTimeout: millis(options.connectTimeout, "2 seconds"),
    // Fail a command while disconnected instead of holding it until the server returns.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // A command whose connection dropped before its reply may have run: never send it again (an
    // INCRBY would count twice, a late SET would land after newer writes). Its caller gets a typed
    // error instead.
    autoResendUnfulfilledCommands: false,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 10), maxDelay),
    enableAutoPipelining: options.autoPipelining ?? true,
    // The lock's scripts go out at once: an auto-pipelined command waits for the next tick, which
    // comes only after every fiber the run has just answered has resumed, so a release (and the
    // wake-up of the other instances' waiters it publishes) would wait for all of them. So do the
    // reads: the store already gathers a tick's gets into one MGET (or one GET), and holding that one
    // command back a tick to wrap it in a pipeline of its own costs more than it saves.
    autoPipeliningIgnoredCommands: sentAtOnce,
    ...(options.password === undefined ? {} : { password: Redacted.value(options.password) }),
    ...options.redisOptions
  }
}

/** The lock's scripts, by their defined names: a release must not wait for the next tick. */
const lockScripts = ["cachekitLockRelease", "cachekitLockExtend"]
/**
 * The commands sent at once, never auto-pipelined, on a single server: the lock's scripts, and the
 * reads the store coalesces itself (a tick's gets go out as one MGET, or one GET when alone).
 */
const sentAtOnce = [...lockScripts, "mget", "get"]
/**
 * On a Cluster the store does not coalesce gets, and a read cannot be sent behind a node's pipeline
 * as a script (ioredis routes a script's pipeline by its first argument): there reads stay
 * auto-pipelined.
 */
const sentAtOnceOnCluster = lockScripts

const connect = (options: Options): Redis => {
  const redisOptions = clientOptions(options)
  if (options.cluster !== undefined) {
    const clusterOptions: ClusterOptions = {
      redisOptions,
      enableOfflineQueue: false,
      enableAutoPipelining: redisOptions.enableAutoPipelining ?? true,
      autoPipeliningIgnoredCommands: options.redisOptions?.autoPipeliningIgnoredCommands ?? sentAtOnceOnCluster,
      clusterRetryStrategy: redisOptions.retryStrategy!
    }
    return { client: new Cluster(options.cluster.map((node) => ({ ...node })), clusterOptions), isCluster: true }
  }
  if (options.sentinels !== undefined) {
    return {
      client: new IORedis({
        ...redisOptions,
        sentinels: options.sentinels.map((node) => ({ ...node })),
        name: options.name ?? "mymaster"
      }),
      isCluster: false
    }
  }
  const url = options.url === undefined ? "redis://127.0.0.1:6379" : Redacted.isRedacted(options.url)
    ? Redacted.value(options.url)
    : options.url
  return { client: new IORedis(url, redisOptions), isCluster: false }
}

/**
 * Resolves once the client is ready, or after `connectTimeout` of real time (a timer, not the Effect
 * Clock, so a layer built under `TestClock` does not hang): a cache starts even when Redis is down.
 */
const awaitReady = (redis: Redis, timeout: Duration.DurationInput) =>
  Effect.async<void>((resume) => {
    const client = redis.client
    if (client.status === "ready") return resume(Effect.void)
    const done = () => {
      clearTimeout(timer)
      resume(Effect.void)
    }
    const timer = setTimeout(() => {
      client.off("ready", done)
      const refusal = authRefusal(client)
      resume(Effect.logWarning(
        refusal === undefined
          ? "effect-cachekit: Redis is not reachable yet; the cache works without it until it is"
          : `effect-cachekit: Redis refused the credentials (${refusal}); calls fail with reason "Auth" and the cache works without Redis until they are fixed`
      ))
    }, Duration.toMillis(Duration.decode(timeout)))
    client.once("ready", done)
    return Effect.sync(() => {
      clearTimeout(timer)
      client.off("ready", done)
    })
  })

/**
 * Connects to Redis for the life of the layer's scope; the connection is closed with the scope.
 * Connection errors are logged, never thrown: while Redis is unreachable, commands fail with typed
 * errors and the cache falls back to producers.
 *
 * @example
 * ```ts
 * import { Redacted } from "effect"
 * import { Redis } from "effect-cachekit"
 *
 * const RedisLive = Redis.layer({ url: Redacted.make("redis://:secret@127.0.0.1:6379"), commandTimeout: "200 millis" })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Redis> =>
  Layer.scoped(
    Redis,
    Effect.acquireRelease(
      Effect.sync(() => {
        const redis = connect(options)
        // Without a listener, ioredis reports connection errors as unhandled 'error' events.
        watch(redis.client)
        return redis
      }),
      (redis) => Effect.promise(() => close(redis.client))
    ).pipe(
      // Outside the acquire, which cannot be interrupted, so the wait's timeout can end it.
      Effect.tap((redis) => awaitReady(redis, options.connectTimeout ?? "2 seconds"))
    )
  )

/**
 * QUIT when connected, so replies in flight arrive; bounded (50 ms: a shutdown never waits on a
 * frozen server), because a release cannot be interrupted and QUIT on a connection that never came up
 * does not settle. Then the socket is closed for good.
 */
const close = async (client: Client): Promise<void> => {
  if (client.status === "ready") {
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([
      client.quit().catch(() => "closed"),
      new Promise((resolve) => timer = setTimeout(resolve, 50))
    ])
    clearTimeout(timer)
  }
  client.disconnect()
}

const envUrl = Config.redacted("CACHE_REDIS_URL").pipe(Config.withDescription("redis://[user:password@]host:port[/db]"))

const isBlank = (url: Redacted.Redacted<string>) => Redacted.value(url).trim() === ""

const envCommandTimeout = Config.duration("CACHE_REDIS_COMMAND_TIMEOUT").pipe(
  Config.option,
  Config.map(Option.getOrUndefined),
  Config.withDescription("the bound on every Redis command")
)

/**
 * The client settings {@link layerFromEnv} reads: `CACHE_REDIS_URL` (a secret: it may carry a
 * password; required, and not empty) and `CACHE_REDIS_COMMAND_TIMEOUT`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Redis } from "effect-cachekit"
 *
 * const url = Effect.map(Redis.config, (options) => options.url)
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  url: envUrl.pipe(Config.validate({ message: "CACHE_REDIS_URL is empty", validation: (url) => !isBlank(url) })),
  commandTimeout: envCommandTimeout
})

/**
 * @internal
 * The same settings when Redis is optional: `None` when `CACHE_REDIS_URL` is unset or empty.
 */
export const optionalConfig: Config.Config<Option.Option<Options>> = Config.all({
  url: envUrl.pipe(Config.option, Config.map(Option.filter((url) => !isBlank(url)))),
  commandTimeout: envCommandTimeout
}).pipe(Config.map(({ commandTimeout, url }) => Option.map(url, (url): Options => ({ url, commandTimeout }))))

/**
 * A client configured with Effect's `Config`: each option may be given as a `Config` (Effect's
 * convention, `Config.Wrap<Options>`), read when the layer is built.
 *
 * @example
 * ```ts
 * import { Config } from "effect"
 * import { Redis } from "effect-cachekit"
 *
 * const RedisLive = Redis.layerConfig({ url: Config.redacted("APP_REDIS_URL"), commandTimeout: Config.succeed("250 millis") })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (options: Config.Config.Wrap<Options>): Layer.Layer<Redis, ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layer))

/**
 * A client configured from the environment (see {@link config}): `CACHE_REDIS_URL` and
 * `CACHE_REDIS_COMMAND_TIMEOUT`.
 *
 * @example
 * ```ts
 * import { Redis } from "effect-cachekit"
 *
 * const RedisLive = Redis.layerFromEnv // CACHE_REDIS_URL=redis://127.0.0.1:6379
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerFromEnv: Layer.Layer<Redis, ConfigError.ConfigError> = Layer.unwrapEffect(Effect.map(config, layer))

/**
 * Wraps a client the program already owns, waiting (at most 2 seconds) for it to be ready. The layer
 * does not close it.
 *
 * @example
 * ```ts
 * import { Redis as IORedis } from "ioredis"
 * import { Redis } from "effect-cachekit"
 *
 * const client = new IORedis("redis://127.0.0.1:6379", Redis.clientOptions({}))
 * const RedisLive = Redis.layerFromClient(client)
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromClient = (client: Client): Layer.Layer<Redis> => {
  const redis: Redis = { client, isCluster: client instanceof Cluster }
  return Layer.effect(Redis, Effect.sync(() => watch(client)).pipe(Effect.zipRight(awaitReady(redis, "2 seconds")), Effect.as(redis)))
}
