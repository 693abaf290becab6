/**
 * The Redis bus: the {@link CacheBus.CacheBus} port over Redis pub/sub, one channel per namespace
 * (`"<namespace>::bus"`).
 *
 * - Messages are published by the same Lua scripts that write (a `PUBLISH` inside the script, so a
 *   write cannot land without its message) when this bus is in the store's context; `publish` is for
 *   the rest (a `clear`).
 * - The subscriber has a connection of its own. It is checked with a `PING` on that connection every
 *   third of the heartbeat: a reply proves the connection is alive and, since a connection delivers in
 *   order, that every message published before the `PING` was sent has arrived. The bus is trusted for
 *   one heartbeat past the sending of the last answered `PING`.
 * - A connection that closes, or a `PING` that gets no answer within the heartbeat (a link that drops
 *   packets without a reset), is a gap: listeners hear `onGap`, the connection is dropped and made
 *   again, the channels subscribed again, and once a `PING` sent after the subscriptions is answered,
 *   listeners hear `onResume`.
 * - On a Cluster, classic pub/sub reaches every node: the subscriber is a plain connection to one of
 *   the masters (the next one is tried after a failed connection). A message published on another
 *   master reaches it over the cluster bus, so there a `PING`'s answer vouches for the messages
 *   published before it up to that hop (milliseconds), and messages of different masters may arrive
 *   out of order (each carries its version).
 *
 * @since 0.3.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { type Cluster, Redis as IORedis } from "ioredis"
import * as CacheBus from "../CacheBus.js"
import { StoreError } from "../CacheError.js"
import * as CacheLock from "../CacheLock.js"
import * as RedisStore from "../CacheStore/Redis.js"
import { timeoutRealTo } from "../internal/realTime.js"
import * as Redis from "../Redis.js"

/**
 * Options of the Redis bus.
 *
 * @example
 * ```ts
 * import { RedisBus } from "effect-cachekit"
 *
 * const BusLive = RedisBus.layer({ heartbeat: "500 millis" } satisfies RedisBus.Options)
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface Options {
  /**
   * How long the bus is trusted past its last sign of life; it is checked every third of it. A
   * two-layer cache serves no in-memory copy unchecked for longer than this after the bus went
   * silent. Default 1 second.
   */
  readonly heartbeat?: Duration.DurationInput | undefined
}

/**
 * Builds the Redis bus over the client in context, with a subscriber connection of its own, closed
 * with the scope.
 *
 * @example
 * ```ts
 * import { RedisBus } from "effect-cachekit"
 *
 * const bus = RedisBus.make({ heartbeat: "1 second" })
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<CacheBus.CacheBus, never, Redis.Redis | Scope.Scope> =>
  Effect.gen(function*() {
    const { client, isCluster } = yield* Redis.Redis
    const heartbeat = Duration.decode(options.heartbeat ?? "1 second")
    const heartbeatMillis = Math.max(1, Duration.toMillis(heartbeat))
    const origin = CacheLock.randomToken().slice(0, 16)
    const commandTimeout = RedisStore.commandTimeoutOf(client, isCluster)

    /** Each channel's listeners, with whether each has heard that its channel is live. */
    const listeners = new Map<string, Set<Subscription>>()
    /** Subscribed, and a PING sent after the subscriptions was answered. */
    let up = false
    /** When the last answered PING was sent (`performance.now()`). */
    let confirmedAt = -Infinity
    /** Bumped by every gap: an answer to a PING sent before it proves nothing. */
    let generation = 0
    let resubscribing = false

    const { connection: subscriber } = yield* Effect.acquireRelease(
      Effect.sync(() => connectSubscriber(client, isCluster)),
      ({ close }) => Effect.sync(close)
    )

    const gap = () => {
      generation++
      if (!up) return
      up = false
      for (const set of listeners.values()) {
        for (const subscription of set) {
          subscription.live = false
          subscription.listener.onGap()
        }
      }
    }

    const resume = (subscription: Subscription) => {
      if (subscription.live) return
      subscription.live = true
      subscription.listener.onResume()
      subscription.wake?.()
    }

    /** Subscribes `channels`, then PINGs: once answered, every message published after the PING arrives. */
    const confirm = (channels: ReadonlyArray<string>): Promise<void> =>
      (channels.length === 0 ? Promise.resolve() : subscriber.subscribe(...channels)).then(() => subscriber.ping()).then(() => {})

    /** Subscribes every channel again (after a reconnection), and resumes once confirmed. */
    const resubscribe = () => {
      const mine = ++generation
      resubscribing = true
      const sentAt = performance.now()
      // A round that never settles (a link dropping packets after it came up): made again.
      const timer = setTimeout(() => {
        if (mine === generation && !up) reconnect()
      }, heartbeatMillis + (commandTimeout ?? 0)).unref()
      confirm(Array.from(listeners.keys())).then(() => {
        clearTimeout(timer)
        if (mine !== generation) return
        resubscribing = false
        up = true
        confirmedAt = sentAt
        for (const set of listeners.values()) for (const subscription of set) resume(subscription)
      }, () => {
        clearTimeout(timer)
        // The connection failed again: its close and its next ready start another round.
        if (mine === generation) resubscribing = false
      })
    }

    subscriber.on("messageBuffer", (channel: Buffer, payload: Buffer) => {
      const set = listeners.get(channel.toString())
      if (set === undefined) return
      const message = CacheBus.decode(payload.toString())
      if (message === undefined || message.origin === origin) return
      for (const subscription of set) subscription.listener.onMessage(message)
    })
    subscriber.on("close", gap)
    subscriber.on("ready", resubscribe)

    // The heartbeat: a PING every third of it; one unanswered within the heartbeat is a gap, and the
    // connection is made again (a link that drops packets never closes by itself).
    const reconnect = () => {
      gap()
      subscriber.disconnect(true)
    }
    const ping = () => {
      if (subscriber.status !== "ready") return
      if (!up) {
        if (!resubscribing) resubscribe()
        return
      }
      const sentAt = performance.now()
      const mine = generation
      let answered = false
      const timer = setTimeout(() => {
        if (!answered && mine === generation) reconnect()
      }, heartbeatMillis).unref()
      subscriber.ping().then(() => {
        answered = true
        clearTimeout(timer)
        if (up && mine === generation && sentAt > confirmedAt) confirmedAt = sentAt
      }, () => {
        answered = true
        clearTimeout(timer)
        if (mine === generation) reconnect()
      })
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => setInterval(ping, Math.max(1, Math.floor(heartbeatMillis / 3))).unref()),
      (timer) => Effect.sync(() => clearInterval(timer))
    )
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        generation++
        up = false
      })
    )

    const publishFailure = (namespace: string, cause: unknown) => {
      const reason = RedisStore.classify(client, cause)
      return new StoreError({ reason, operation: "publish", key: namespace, store: "redis", cause: RedisStore.causeOf(client, reason, cause) })
    }

    const bus: CacheBus.CacheBus = {
      name: "redis",
      origin,
      heartbeat,
      publish: (namespace, message) =>
        Effect.asVoid(Effect.tryPromise({
          try: () => client.publish(CacheBus.channelOf(namespace), CacheBus.encode(message)),
          catch: (cause) => publishFailure(namespace, cause)
        })),
      subscribe: (namespace, listener) =>
        Effect.gen(function*() {
          const channel = CacheBus.channelOf(namespace)
          const subscription: Subscription = { listener, live: false, wake: undefined }
          yield* Effect.acquireRelease(
            Effect.sync(() => {
              let set = listeners.get(channel)
              if (set === undefined) listeners.set(channel, set = new Set())
              set.add(subscription)
              if (up) {
                // A channel added to a live connection: live once a PING sent after its SUBSCRIBE is answered.
                const mine = generation
                confirm([channel]).then(() => {
                  if (mine === generation && set.has(subscription)) resume(subscription)
                }, () => {})
              } else if (subscriber.status === "ready") {
                // A round may be under way without this channel: start another.
                resubscribe()
              }
            }),
            () =>
              Effect.sync(() => {
                const set = listeners.get(channel)
                set?.delete(subscription)
                if (set?.size === 0) {
                  listeners.delete(channel)
                  if (subscriber.status === "ready") subscriber.unsubscribe(channel).catch(() => {})
                }
              })
          )
          // Wait (2 s of real time at most) for the subscription; past it, onResume says when it is up.
          yield* timeoutRealTo(
            Effect.async<void>((resume) => {
              if (subscription.live) return resume(Effect.void)
              subscription.wake = () => {
                subscription.wake = undefined
                resume(Effect.void)
              }
              return Effect.sync(() => {
                subscription.wake = undefined
              })
            }),
            Math.max(2_000, commandTimeout ?? 0),
            Effect.logWarning(
              "effect-cachekit: the Redis bus could not subscribe yet; in-memory copies are checked against Redis until it does"
            )
          )
        }),
      trusted: () => up && performance.now() - confirmedAt < heartbeatMillis
    }
    return bus
  })

/** A listener, and whether it has heard that its channel is live since the last gap. */
interface Subscription {
  readonly listener: CacheBus.Listener
  live: boolean
  /** Ends the wait of `subscribe` for the channel to be live, while it waits. */
  wake: (() => void) | undefined
}

/** The subscriber's connection: a duplicate of a standalone client, a plain connection to a Cluster master. */
const connectSubscriber = (client: Redis.Client, isCluster: boolean): { readonly connection: IORedis; readonly close: () => void } => {
  let connection: IORedis
  let close = () => connection.disconnect()
  if (isCluster) {
    const cluster = client as Cluster
    const masters = () =>
      cluster.nodes("master").map((node) => ({ host: node.options.host ?? "127.0.0.1", port: node.options.port ?? 6379 }))
    let next = 0
    const first = masters()[0]
    connection = new IORedis({
      ...cluster.options.redisOptions,
      host: first?.host ?? "127.0.0.1",
      port: first?.port ?? 6379,
      enableOfflineQueue: true,
      autoResubscribe: false,
      maxRetriesPerRequest: null,
      // Not yet connected to the Cluster: connect once it is, to one of its masters.
      lazyConnect: first === undefined
    })
    const moveOn = () => {
      const nodes = masters()
      if (nodes.length === 0) return
      const node = nodes[++next % nodes.length]!
      connection.options.host = node.host
      connection.options.port = node.port
    }
    if (first === undefined) {
      const onReady = () => {
        moveOn()
        connection.connect().catch(() => {})
      }
      cluster.once("ready", onReady)
      close = () => {
        cluster.off("ready", onReady)
        connection.disconnect()
      }
    }
    // A master that is gone: the next attempt goes to another one.
    connection.on("reconnecting", moveOn)
  } else {
    connection = (client as IORedis).duplicate({ enableOfflineQueue: true, autoResubscribe: false, maxRetriesPerRequest: null })
  }
  connection.on("error", () => {})
  return { connection, close: () => close() }
}

/**
 * The Redis bus as a layer, providing {@link CacheBus.CacheBus}. With it in their context, the Redis
 * store and lock publish every write on it: `Cache.layerTiered` wires them.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Redis, RedisBus } from "effect-cachekit"
 *
 * const BusLive = RedisBus.layer().pipe(Layer.provide(Redis.layer({ url: "redis://127.0.0.1:6379" })))
 * ```
 *
 * @since 0.3.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<CacheBus.CacheBus, never, Redis.Redis> =>
  Layer.scoped(CacheBus.CacheBus, make(options))
