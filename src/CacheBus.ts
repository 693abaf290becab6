/**
 * The invalidation bus port: how the instances of a two-layer cache tell each other that an entry
 * changed, so each drops its in-memory copy.
 *
 * A message names the keys that were written or deleted, each with the version its write got (from
 * the shared store's clock, so an older message never evicts a newer copy), or a prefix that was
 * cleared; it carries the writer's instance id (`origin`), so an instance skips its own, and never a
 * value. A bus also says whether it can be trusted right now ({@link CacheBus.trusted}): while its
 * connection is down, or no sign of life came within its heartbeat, messages may be missing, and the
 * two-layer cache re-validates what it holds instead of serving it.
 *
 * `CacheBus/Redis.ts` is the Redis bus (pub/sub, one channel per namespace); the conformance suite in
 * `effect-cachekit/testing` proves a bus in one line.
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { StoreError } from "./CacheError.js"

/**
 * What a bus carries.
 *
 * - `Keys`: each key was written or deleted; `version` is the version of that write or delete.
 * - `Clear`: every entry under `prefix` was removed, as of `version`.
 *
 * @example
 * ```ts
 * import type { CacheBus } from "effect-cachekit"
 *
 * const written: CacheBus.Message = { _tag: "Keys", origin: "a1", entries: [["app:users:1", 1_700_000_000_000_000]] }
 * const cleared: CacheBus.Message = { _tag: "Clear", origin: "a1", prefix: "app:users:", version: 1_700_000_000_000_000 }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export type Message =
  | {
    readonly _tag: "Keys"
    readonly origin: string
    readonly entries: ReadonlyArray<readonly [key: string, version: number]>
  }
  | {
    readonly _tag: "Clear"
    readonly origin: string
    readonly prefix: string
    readonly version: number
  }

/**
 * What a subscriber is told: each message of another instance, and the bus losing and regaining its
 * connection (between the two, messages may have been missed).
 *
 * @example
 * ```ts
 * import type { CacheBus } from "effect-cachekit"
 *
 * const listener: CacheBus.Listener = {
 *   onMessage: (message) => console.log(message._tag),
 *   onGap: () => console.log("messages may be missed from now on"),
 *   onResume: () => console.log("subscribed again: every message from now on arrives")
 * }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface Listener {
  /** A message published by another instance (never one of this instance's own). */
  readonly onMessage: (message: Message) => void
  /** The bus may have stopped delivering: its connection dropped, or its heartbeat went unanswered. */
  readonly onGap: () => void
  /** The bus delivers again: every message published from now on arrives. */
  readonly onResume: () => void
}

/**
 * The bus service.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheBus } from "effect-cachekit"
 *
 * const announce = Effect.flatMap(CacheBus.CacheBus, (bus) =>
 *   bus.publish("app", { _tag: "Keys", origin: bus.origin, entries: [["app:users:1", 1]] }))
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface CacheBus {
  /** A short name for logs, e.g. `"redis"`. */
  readonly name: string
  /** This instance's id: messages it publishes carry it, and it never hears them back. */
  readonly origin: string
  /** How often the bus checks it is still connected: it is trusted for at most this long past its last sign of life. */
  readonly heartbeat: Duration.Duration
  /** Publishes a message on the channel of `namespace`. */
  readonly publish: (namespace: string, message: Message) => Effect.Effect<void, StoreError>
  /**
   * Delivers the messages of other instances on the channel of `namespace` to `listener` for the life
   * of the scope. Succeeds once subscribed, or (when the server cannot be reached) once the first
   * attempt failed: the listener then hears `onResume` when the subscription is up.
   */
  readonly subscribe: (namespace: string, listener: Listener) => Effect.Effect<void, never, Scope.Scope>
  /**
   * Whether every message published up to a moment ago has been delivered: the subscription is up and
   * had a sign of life within the last {@link CacheBus.heartbeat}. Synchronous and cheap: the
   * two-layer cache asks it on each hit.
   */
  readonly trusted: () => boolean
}

/**
 * The bus service tag.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheBus } from "effect-cachekit"
 *
 * const trusted = Effect.map(CacheBus.CacheBus, (bus) => bus.trusted())
 * ```
 *
 * @since 0.3.0
 * @category tags
 */
export const CacheBus: Context.Tag<CacheBus, CacheBus> = Context.GenericTag<CacheBus>("effect-cachekit/CacheBus")

/**
 * The channel of a namespace: an internal name (`"<namespace>::bus"`) that no keyspace can produce.
 *
 * @example
 * ```ts
 * import { CacheBus } from "effect-cachekit"
 *
 * CacheBus.channelOf("app") // "app::bus"
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export const channelOf = (namespace: string): string => `${namespace}::bus`

// The wire format, shared with the Redis write scripts that publish from Lua: fields separated by
// "\n", which no key can hold (keys refuse control characters).
//   K \n <origin> \n <version> \n <key> [\n <version> \n <key> ...]
//   C \n <origin> \n <version> \n <prefix>

/**
 * @internal
 * A message as it travels.
 */
export const encode = (message: Message): string =>
  message._tag === "Clear"
    ? `C\n${message.origin}\n${message.version}\n${message.prefix}`
    : `K\n${message.origin}${message.entries.map(([key, version]) => `\n${version}\n${key}`).join("")}`

/**
 * @internal
 * A message read from the wire; `undefined` for anything else.
 */
export const decode = (text: string): Message | undefined => {
  const parts = text.split("\n")
  const origin = parts[1]
  if (origin === undefined) return undefined
  if (parts[0] === "C") {
    const version = Number(parts[2])
    const prefix = parts[3]
    return parts.length === 4 && prefix !== undefined && Number.isFinite(version)
      ? { _tag: "Clear", origin, prefix, version }
      : undefined
  }
  if (parts[0] !== "K" || parts.length % 2 !== 0 || parts.length < 4) return undefined
  const entries: Array<readonly [string, number]> = []
  for (let i = 2; i < parts.length; i += 2) {
    const version = Number(parts[i])
    if (!Number.isFinite(version)) return undefined
    entries.push([parts[i + 1]!, version])
  }
  return { _tag: "Keys", origin, entries }
}
