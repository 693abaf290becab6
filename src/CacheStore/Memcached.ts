/**
 * The memcached store: the {@link CacheStore.CacheStore} port over one memcached server, through the
 * `memcache-client` package (an optional peer dependency: install it to use this module). It is
 * reached as `effect-cachekit/CacheStore/Memcached`, never from the package's main module, so an
 * application without the client can import everything else.
 *
 * - Values are stored as bytes, byte for byte, behind a short stamp (below); reads are multi-key
 *   `get`s, and concurrent reads go out together as one.
 * - Keys are sent as they are when memcached can take them (at most 250 bytes of printable ASCII,
 *   no space); any other key (longer, with a space or non-ASCII characters, or starting with `#`) is
 *   sent as `#` followed by the base64url SHA-256 of its UTF-8 bytes, so no two keys share a
 *   memcached key.
 * - A ttl is sent in whole seconds, rounded up (a sub-second ttl is 1 s, never "no expiry"); one over
 *   30 days is sent as an absolute Unix time, as memcached requires.
 * - `add` is memcached's own `add` (atomic); an entry that a clear made unreachable is replaced with
 *   `cas`, so it never blocks an `add`.
 * - Versions come from memcached: every write and delete draws its version with one `incr` of a
 *   counter kept under an internal key, so versions grow across every process sharing the server
 *   while memcached keeps the counter. One it lost (evicted, restarted) is made again at the maker's
 *   time in microseconds, or above the highest version it has seen: above every earlier version
 *   unless that machine's clock is behind the one that made the lost counter. Every removal (a
 *   delete, a `set` with a ttl of zero or less, conditional or not) leaves a tombstone under the key
 *   (its version, for `CacheStore.tombstoneTtl`), which reads as no entry.
 * - Conditional writes (`set` with `since`): the key is read with its cas unique (`gets`); the write is
 *   skipped when the key holds an entry or a tombstone of a version above `since`, else made with
 *   `cas` (`add` where the key is absent), read and checked again when another write lands in
 *   between. `currentVersion` is the counter at the process's last draw, or a higher version read
 *   since in an entry or a tombstone, so it costs no round trip; after an "Unavailable" or "Timeout",
 *   or once the process had to make the counter again, it reads the counter (`incr 0`) first.
 * - An operation whose caller was answered (timed out, interrupted) sends no further command; one
 *   already sent may still run when memcached gets to it.
 * - Memcached cannot list keys, so `clear` moves a namespace (`"<ns>:"`) or a keyspace
 *   (`"<ns>:<keyspace>:"`) to a new generation: one `incr` of a counter kept in memcached under an
 *   internal key. Every entry is stamped with the generations of its namespace and keyspace when it
 *   is written, and every read fetches the current generations in the same multi-key `get` as the
 *   entries: an entry of an older generation is a miss for every process at once, and expires or is
 *   evicted by itself. Internal keys (locks, tag versions) have no generation and are never cleared.
 *   `clear` cannot count what it removed: it returns 0.
 *
 * @since 0.3.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { MemcacheClient, type MemcacheClientOptions, type MultiCasRetrievalResponse, type MultiRetrievalResponse, type RetrievalCommandResponse } from "memcache-client"
import { createHash, randomInt } from "node:crypto"
import * as CacheEntry from "../CacheEntry.js"
import { StoreError } from "../CacheError.js"
import * as CacheStore from "../CacheStore.js"
import * as ReadBatch from "../internal/readBatch.js"
import { timeoutRealTo } from "../internal/realTime.js"

declare module "../CacheStore.js" {
  interface RawClients {
    /** The memcached store's `memcache-client` client. */
    readonly memcached: MemcacheClient
  }
}

/**
 * Options of the memcached store.
 *
 * @example
 * ```ts
 * import type * as MemcachedStore from "effect-cachekit/CacheStore/Memcached"
 *
 * const options: MemcachedStore.Options = {
 *   server: "127.0.0.1:11211",
 *   timeout: "250 millis",
 *   maxValueBytes: 512 * 1024
 * }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface Options {
  /** The server, as `"host:port"`. Default `"127.0.0.1:11211"`. */
  readonly server?: string | undefined
  /**
   * The bound on each operation, round trips included; past it the operation fails with reason
   * `"Timeout"` and its connection is closed. Default 500 ms.
   */
  readonly timeout?: Duration.DurationInput | undefined
  /** The bound on establishing a connection (and on the first contact when the layer is built). Default 1 second. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /**
   * The largest value written, in bytes; a larger one fails with reason `"TooLarge"` before it is
   * sent (and a `set` drops the key's old value, as memcached does). Default: the server's item size
   * (`-I`, read from `stats settings` when the layer is built; 1 MiB when it cannot be read) less 512
   * bytes for memcached's item header, the key and the store's stamp. A value the server still
   * refuses as too large fails with reason `"TooLarge"` too.
   */
  readonly maxValueBytes?: number | undefined
  /**
   * How long this process writes with the generations it last saw without reading them again. A
   * clear made by another process is seen by every read at once; a write made within this time after
   * it, by a process that has not read the namespace since, may be stamped with the old generation
   * and so read as a miss. Default 1 second.
   */
  readonly generationTtl?: Duration.DurationInput | undefined
}

/** @internal */
export const storeName = "memcached"

/** @internal The longest key memcached takes, in bytes. */
export const maxKeyBytes = 250

/** @internal What a value may take of the item size: memcached's item header (up to 63 bytes plus the key) and the stamp. */
export const itemOverhead = 512

/** @internal memcached's default item size (`-I`). */
export const defaultItemSize = 1024 * 1024

/** @internal Expirations above this many seconds are absolute Unix times to memcached. */
export const relativeLimitSeconds = 30 * 24 * 60 * 60

/** memcached reads an expiration as a signed 32-bit number. */
const maxExpiration = 2 ** 31 - 1

/** The first byte of a stored value: this store's stamp, format 1. */
const stampMagic = 0xce

/** The first byte of a tombstone: what a delete leaves under the key, its version as a big-endian float64 after it. */
const tombstoneMagic = 0xcf

/** How long a tombstone lives, in seconds (`CacheStore.tombstoneTtl`). */
const tombstoneSeconds = Math.ceil(Duration.toSeconds(CacheStore.tombstoneTtl))

/**
 * @internal
 * The key of the store's version counter: every write and delete draws its version from it with
 * `incr`, so versions grow across every process sharing the memcached. An internal key of no
 * namespace: nothing clears it, and no namespace can produce it.
 */
export const versionKey = CacheStore.internalKey("", "version", "store")

/** @internal What a delete leaves under a key: the tombstone of `version`. */
export const tombstoneOf = (version: number): Buffer => {
  const out = Buffer.allocUnsafe(9)
  out[0] = tombstoneMagic
  out.writeDoubleBE(version, 1)
  return out
}

/** @internal The version of a tombstone, or `undefined` for any other value. */
export const tombstoneVersion = (value: unknown): number | undefined =>
  Buffer.isBuffer(value) && value.length === 9 && value[0] === tombstoneMagic ? value.readDoubleBE(1) : undefined

/** The first character of a hashed key; a key starting with it is always hashed. */
const hashMarker = "#"

/** Printable ASCII without the space: what memcached's text protocol takes in a key. */
const plainKey = /^[\x21-\x7e]+$/

/**
 * @internal
 * The memcached key of a store key: the key itself when memcached can take it, else `#` and the
 * base64url SHA-256 of its UTF-8 bytes (44 characters). A key sent as it is never starts with `#`,
 * so a hashed key and a plain one never meet.
 */
export const physicalKey = (key: string): string =>
  key.length <= maxKeyBytes && plainKey.test(key) && !key.startsWith(hashMarker)
    ? key
    : hashMarker + createHash("sha256").update(key, "utf8").digest("base64url")

/**
 * @internal
 * The memcached expiration of a ttl: 0 for none; whole seconds rounded up (at least 1); over 30 days,
 * an absolute Unix time from `nowMillis` (capped at 2038-01-19, the largest memcached reads);
 * `"remove"` for a ttl of zero or less.
 */
export const expirationOf = (ttl: Duration.Duration | undefined, nowMillis: number): number | "remove" => {
  const millis = CacheStore.ttlMillis(ttl)
  if (millis === undefined) return 0
  if (millis <= 0) return "remove"
  const seconds = Math.max(1, Math.ceil(millis / 1000))
  if (seconds <= relativeLimitSeconds) return seconds
  return Math.min(maxExpiration, Math.floor(nowMillis / 1000) + seconds)
}

/** @internal The internal key of a namespace's generation, or of a keyspace's. */
export const generationKey = (namespace: string, keyspace = ""): string => CacheStore.internalKey(namespace, "generation", keyspace)

/**
 * @internal
 * The generations a store key is stamped with: its namespace's and, for `"<ns>:<keyspace>:<rest>"`, its
 * keyspace's. Internal keys and keys without a namespace have none (nothing clears them).
 */
export const generationsOf = (key: string): ReadonlyArray<string> => {
  const colon = key.indexOf(":")
  if (colon < 0 || key.charCodeAt(colon + 1) === 58) return []
  const namespace = key.slice(0, colon)
  const second = key.indexOf(":", colon + 1)
  return second < 0 ? [generationKey(namespace)] : [generationKey(namespace), generationKey(namespace, key.slice(colon + 1, second))]
}

/**
 * @internal
 * The generation a clear of `prefix` moves on: `"<ns>:"` a namespace's, `"<ns>:<keyspace>:"` a
 * keyspace's; `"none"` for a prefix that covers internal keys only; `undefined` for any other prefix.
 */
export const generationToClear = (prefix: string): string | "none" | undefined => {
  if (CacheStore.isInternalKey(prefix)) return "none"
  if (!prefix.endsWith(":")) return undefined
  const body = prefix.slice(0, -1)
  const colon = body.indexOf(":")
  if (colon < 0) return generationKey(body)
  const keyspace = body.slice(colon + 1)
  return keyspace === "" || keyspace.includes(":") ? undefined : generationKey(body.slice(0, colon), keyspace)
}

/** @internal A value as stored: the stamp (magic byte, count, then each generation as length and ASCII digits), then the bytes. */
export const stamped = (generations: ReadonlyArray<string>, bytes: Uint8Array): Buffer => {
  let length = 2
  for (const generation of generations) length += 1 + generation.length
  const out = Buffer.allocUnsafe(length + bytes.length)
  out[0] = stampMagic
  out[1] = generations.length
  let at = 2
  for (const generation of generations) {
    out[at++] = generation.length
    at += out.write(generation, at, "latin1")
  }
  out.set(bytes, at)
  return out
}

/**
 * @internal
 * The bytes of a stored value whose stamp carries exactly `current` (the generations now; `undefined`
 * for one that does not exist, which no entry matches), or `undefined`: a value of an older
 * generation, or one this store did not write.
 */
export const unstamped = (value: Buffer, current: ReadonlyArray<string | undefined>): Buffer | undefined => {
  if (value.length < 2 || value[0] !== stampMagic || value[1] !== current.length) return undefined
  let at = 2
  for (const generation of current) {
    if (generation === undefined || at >= value.length) return undefined
    const length = value[at++]!
    if (length !== generation.length || value.toString("latin1", at, at + length) !== generation) return undefined
    at += length
  }
  return value.subarray(at)
}

/** @internal How a client failure is classified. */
export const classify = (cause: unknown): StoreError["reason"] => {
  const message = cause instanceof Error ? cause.message : String(cause)
  if (/object too large/i.test(message)) return "TooLarge"
  if (/timeout/i.test(message)) return "Timeout"
  if (/^(SERVER_ERROR|CLIENT_ERROR|ERROR)\b/.test(message)) return "Backend"
  return "Unavailable"
}

/** A refusal of this store's own (a value too large, a prefix it cannot clear): typed with the operation that met it. */
class Refusal extends Error {
  constructor(readonly reason: StoreError["reason"], message: string, readonly key?: string) {
    super(message)
  }
}

/** One operation in flight: `settled` once its caller was answered (a value, a failure, a timeout, an interruption). */
interface Op {
  readonly settled: boolean
}

/** What stops an operation whose caller was answered before its next command (never reaches the caller). */
class Abandoned extends Error {
  constructor() {
    super("the operation's caller was answered: no further command is sent")
  }
}

/** Stops a multi-step operation before its next command once its caller was answered (timed out, interrupted). */
const going = (op: Op | undefined): void => {
  if (op?.settled === true) throw new Abandoned()
}

/** A refusal the server answered with (`NOT_STORED`, `NOT_FOUND`, `EXISTS`): an outcome, not a failure. */
const isReply = (cause: unknown, reply: "NOT_STORED" | "NOT_FOUND" | "EXISTS"): boolean =>
  cause instanceof Error && cause.message === reply

/** What a multi-key `get` answers for one key. */
type Found = RetrievalCommandResponse<unknown>

/** The text of a value as the client hands it back (a string; a number or bytes from another writer). */
const textOf = (value: unknown): string => Buffer.isBuffer(value) ? value.toString("latin1") : String(value)

/** A generation as memcached's `incr` keeps it: an unsigned 64-bit decimal. */
const generationPattern = /^\d{1,20}$/

/** The generation a reply holds, or `undefined` for none (or for something else under its key, which no entry matches). */
const generationIn = (found: Found | undefined): string | undefined => {
  if (found === undefined) return undefined
  const text = textOf(found.value)
  return generationPattern.test(text) ? text : undefined
}

/** How many generations a store remembers at most. */
const maxKnownGenerations = 10_000

/**
 * Counters are kept as memcached's own unsigned decimals, offset by 2^53, so that `incr` and `decr`
 * (which never go below 0) work on them and negative counters down to `-Number.MAX_SAFE_INTEGER` fit.
 */
const counterBias = 2n ** 53n
const maxSafe = BigInt(Number.MAX_SAFE_INTEGER)

/** @internal A counter's value as this store keeps it. */
export const counterText = (value: number): string => (BigInt(value) + counterBias).toString()

/** @internal The value of a counter as this store keeps it, or `undefined` for anything else (or past the safe range). */
export const counterFrom = (text: string): number | undefined => {
  if (!/^[0-9]{1,20}$/.test(text)) return undefined
  const value = BigInt(text) - counterBias
  return value >= -maxSafe && value <= maxSafe ? Number(value) : undefined
}

/** How many keys one `get` asks for at most. */
const keysPerGet = 256

/** How many times `add` tries again when other writers keep changing the key under it. */
const addAttempts = 5

/** How many times a missing generation is created and read again before the write gives up. */
const generationAttempts = 3

const millisOf = (input: Duration.DurationInput | undefined, fallback: Duration.DurationInput): number =>
  Duration.toMillis(Duration.decode(input ?? fallback))

/** Builds the store over a client, after one bounded contact with the server that reads its item size. */
const build = (client: MemcacheClient, options: Options): Effect.Effect<CacheStore.CacheStore> =>
  Effect.gen(function*() {
    const timeoutMillis = millisOf(options.timeout, "500 millis")
    const connectMillis = millisOf(options.connectTimeout, "1 second")
    const generationMillis = millisOf(options.generationTtl, "1 second")

    // One contact at start: the connection is up before the first call, and the server's item size is
    // known. A server that answers but does not tell (a proxy without `stats settings`) leaves the default.
    const contact = yield* timeoutRealTo(
      Effect.either(Effect.tryPromise(() => client.cmd<{ STAT?: Array<Array<string>> }>("stats settings"))),
      connectMillis,
      Effect.succeed(undefined)
    )
    const answered = contact !== undefined && (contact._tag === "Right" || classify(contact.left.error) === "Backend")
    if (!answered) {
      yield* Effect.logWarning(
        `effect-cachekit: memcached at ${options.server ?? "127.0.0.1:11211"} is not reachable yet; the cache works without it until it is`
      )
    }
    const itemSize = contact?._tag === "Right" ? Number(contact.right.STAT?.find(([name]) => name === "item_size_max")?.[1]) : NaN
    const maxValueBytes = options.maxValueBytes ?? (Number.isFinite(itemSize) && itemSize > 0 ? itemSize : defaultItemSize) - itemOverhead

    /** The generations this process knows: the value (`undefined`: none exists) and when the command that read it was sent. */
    const known = new Map<string, { readonly value: string | undefined; readonly sentAt: number }>()
    const learn = (generation: string, value: string | undefined, sentAt: number) => {
      const previous = known.get(generation)
      // A reply to an older command never replaces what a newer one taught (a clear's own incr).
      if (previous !== undefined && previous.sentAt > sentAt) return
      // Bounded: keys of many distinct "<ns>:<segment>:" shapes must not grow it for ever (forgetting
      // costs a read of the generations at the next write, nothing else).
      if (previous === undefined && known.size >= maxKnownGenerations) known.clear()
      known.set(generation, { value, sentAt })
    }
    const fresh = (generation: string): string | undefined => {
      const entry = known.get(generation)
      return entry !== undefined && entry.value !== undefined && performance.now() - entry.sentAt < generationMillis
        ? entry.value
        : undefined
    }

    /**
     * `floor`: what `currentVersion` answers without a round trip while `trusted`: the counter's value
     * at this process's last draw, or a higher version read since in an entry or a tombstone (drawn
     * before it was read, so not above the counter while the counter lives). `highest`: the highest
     * version this process has ever seen, where a counter it has to make again starts.
     *
     * The counter is monotonic while memcached keeps it. One lost (evicted, or a restart) is made again
     * by the first process that needs it, above what that process has seen and at least its clock in
     * microseconds: above every earlier version unless that machine's clock is behind the one that
     * made the lost counter (counters lag their maker's clock: they grow by one per write, the clock
     * by a million a second). Another process may meanwhile hold a floor above the new counter: it
     * trusts it only until its next draw (which answers the counter: a floor above it is dropped), or
     * its next "Unavailable" or "Timeout" (a restart shows as one): `currentVersion` then reads the
     * counter again (`incr 0`) before it answers.
     */
    let floor = 0
    let highest = 0
    let trusted = false
    const learnVersion = (version: number) => {
      // A version far ahead of this machine's clock is none the counter gave (bytes some other program wrote).
      if (version > (Date.now() + 86_400_000) * 1000) return
      if (version > highest) highest = version
      if (version > floor) floor = version
    }

    /**
     * Draws `n` versions from the counter (0: reads it) and answers the highest: one `incr`. A counter
     * memcached does not hold (never made, evicted, lost in a restart) is made again at this machine's
     * time in microseconds, or above the highest version seen, whichever is higher; this process then
     * reads it again before it trusts its floor. `op`: the operation it draws for, which stops once
     * its caller was answered.
     */
    const drawVersions = async (n: number, op?: Op): Promise<number> => {
      const physical = physicalKey(versionKey)
      for (let attempt = 0; attempt < addAttempts; attempt++) {
        going(op)
        try {
          const top = Number(await client.incr(physical, n))
          // The counter's value now: every later draw is above it. A floor above it (the counter was
          // lost and made again lower) is dropped: a lower bound is always safe, a higher one is not.
          floor = top
          if (top > highest) highest = top
          trusted = true
          return top
        } catch (cause) {
          if (!isReply(cause, "NOT_FOUND")) throw cause
        }
        going(op)
        const start = Math.max(highest, Date.now() * 1000) + n
        try {
          await client.add(physical, String(start), { lifetime: 0 })
          floor = start
          highest = Math.max(highest, start)
          // Made again: memcached lost it, and maybe more. Read it before trusting the floor again.
          trusted = false
          return start
        } catch (cause) {
          // Another process made it first: draw from that one.
          if (!isReply(cause, "NOT_STORED")) throw cause
        }
      }
      throw new Error("the version counter kept being removed and made again while versions were drawn")
    }

    const failure = (operation: StoreError["operation"], key: string | undefined, cause: unknown): StoreError => {
      if (cause instanceof Refusal) {
        return new StoreError({ reason: cause.reason, operation, key: cause.key ?? key, store: storeName, cause: cause.message })
      }
      const reason = classify(cause)
      // The server may be another one when it answers again (restarted, empty): read the generations
      // and the version counter afresh.
      if (reason === "Unavailable" || reason === "Timeout") {
        known.clear()
        trusted = false
      }
      return new StoreError({ reason, operation, key, store: storeName, cause })
    }

    const timedOut = (operation: StoreError["operation"], key: string | undefined) => {
      known.clear()
      trusted = false
      return new StoreError({ reason: "Timeout", operation, key, store: storeName, cause: `no answer within ${timeoutMillis} ms` })
    }

    /**
     * Runs one operation: its failures typed, the whole of it (every round trip) bounded by one timer
     * (real time, not the Clock). An operation cut short or interrupted sends no further command (each
     * step checks its `op` first); the commands already sent are bounded by the client's own timeout,
     * and nothing waits for them.
     */
    const run = <A>(operation: StoreError["operation"], key: string | undefined, body: (op: Op) => Promise<A>): Effect.Effect<A, StoreError> =>
      Effect.async<A, StoreError>((resume) => {
        const op = { settled: false }
        const settle = (outcome: Effect.Effect<A, StoreError>) => {
          if (op.settled) return
          op.settled = true
          clearTimeout(timer)
          resume(outcome)
        }
        const timer = setTimeout(() => settle(Effect.fail(timedOut(operation, key))), timeoutMillis)
        let running: Promise<A>
        try {
          running = body(op)
        } catch (cause) {
          running = Promise.reject(cause)
        }
        running.then((value) => settle(Effect.succeed(value)), (cause: unknown) => settle(Effect.fail(failure(operation, key, cause))))
        return Effect.sync(() => {
          op.settled = true
          clearTimeout(timer)
        })
      })

    /** Reads physical keys with as few `get`s as it takes (pipelined on the connection). */
    const getRaw = async (physical: ReadonlyArray<string>, withCas = false): Promise<Map<string, Found>> => {
      const out = new Map<string, Found>()
      const chunks: Array<Array<string>> = []
      for (let i = 0; i < physical.length; i += keysPerGet) chunks.push(physical.slice(i, i + keysPerGet))
      const replies = await Promise.all(
        chunks.map((keys): Promise<MultiRetrievalResponse | undefined> =>
          withCas ? client.gets<MultiCasRetrievalResponse>(keys) : client.get<MultiRetrievalResponse>(keys)
        )
      )
      for (const reply of replies) {
        for (const [key, found] of Object.entries(reply ?? {})) out.set(key, found)
      }
      return out
    }

    /**
     * Reads store keys and their current generations in one multi-key `get` (the generations after the
     * entries, so a clear that completed while the entries were read wins), and learns the
     * generations. Each key's answer: its bytes when its stamp is current, with the raw reply.
     */
    const read = async (keys: ReadonlyArray<string>, withCas = false) => {
      const generationsPerKey = keys.map(generationsOf)
      const generations = Array.from(new Set(generationsPerKey.flat()))
      const physical = Array.from(new Set([...keys.map(physicalKey), ...generations.map(physicalKey)]))
      const sentAt = performance.now()
      const found = await getRaw(physical, withCas)
      const current = new Map<string, string | undefined>()
      for (const generation of generations) {
        const value = generationIn(found.get(physicalKey(generation)))
        current.set(generation, value)
        learn(generation, value, sentAt)
      }
      return keys.map((key, i) => {
        const raw = found.get(physicalKey(key))
        const stamp = generationsPerKey[i]!.map((generation) => current.get(generation))
        const bytes = raw !== undefined && Buffer.isBuffer(raw.value) ? unstamped(raw.value, stamp) : undefined
        const deleted = raw === undefined ? undefined : tombstoneVersion(raw.value)
        if (bytes !== undefined) learnVersion(CacheEntry.versionOf(bytes))
        else if (deleted !== undefined) learnVersion(deleted)
        return { bytes, raw, stamp, deleted }
      })
    }

    /** The current generation of `generation`: known lately, else read, else created. */
    const pending = new Map<string, Promise<string>>()
    const currentOf = (generation: string): Promise<string> => {
      const value = fresh(generation)
      if (value !== undefined) return Promise.resolve(value)
      const inFlight = pending.get(generation)
      if (inFlight !== undefined) return inFlight
      const fetching = (async () => {
        const physical = physicalKey(generation)
        for (let attempt = 0; attempt < generationAttempts; attempt++) {
          const sentAt = performance.now()
          const found = (await getRaw([physical])).get(physical)
          if (found !== undefined) {
            const text = generationIn(found)
            if (text === undefined) throw new Refusal("Backend", `the generation key ${generation} holds something other than a generation`)
            learn(generation, text, sentAt)
            return text
          }
          // None yet (or evicted): start one at a random value, so a generation that was evicted and
          // created again does not bring back the entries stamped with its old values.
          const initial = String(randomInt(1, 2 ** 47))
          const addedAt = performance.now()
          try {
            await client.add(physical, initial, { lifetime: 0 })
            learn(generation, initial, addedAt)
            return initial
          } catch (cause) {
            if (!isReply(cause, "NOT_STORED")) throw cause
            // Another writer created it first: read it again.
          }
        }
        throw new Error(`the generation ${generation} kept changing while it was read`)
      })().finally(() => pending.delete(generation))
      pending.set(generation, fetching)
      return fetching
    }
    const stampOf = (key: string): Promise<Array<string>> => Promise.all(generationsOf(key).map(currentOf))

    /** The bytes to store for an entry (a live entry carries its envelope when written through a two-layer store). */
    const bytesOf = (key: string, stored: CacheEntry.Stored): Uint8Array => {
      const value = CacheStore.isLive(stored) ? CacheEntry.envelopeOf(stored) : stored
      if (value === undefined) throw new Refusal("Backend", "a live entry cannot be sent to memcached", key)
      if (value.length > maxValueBytes) throw new Refusal("TooLarge", `${value.length} bytes exceeds the ${maxValueBytes}-byte limit`, key)
      return value
    }
    const isTooLarge = (error: unknown) => error instanceof Refusal && error.reason === "TooLarge"

    /** `delete`, answering whether memcached held the key. */
    const remove = (physical: string): Promise<boolean> =>
      client.delete(physical).then(() => true, (cause: unknown) => {
        if (isReply(cause, "NOT_FOUND")) return false
        throw cause
      })

    /** Leaves the tombstone of `version` under a key: what a delete, or any removal, writes. */
    const bury = (physical: string, version: number): Promise<unknown> =>
      client.set(physical, tombstoneOf(version), { lifetime: tombstoneSeconds })

    /**
     * Writes one entry with a version drawn for it, or `version`. A ttl of zero or less removes it
     * instead, as a delete does: the tombstone of that version, so a conditional write of an older
     * version is skipped rather than brought back.
     */
    const write = async (key: string, stored: CacheEntry.Stored, ttl: Duration.Duration | undefined, op: Op, version?: number) => {
      const physical = physicalKey(key)
      const expiration = expirationOf(ttl, Date.now())
      if (expiration === "remove") {
        const drawn = version ?? await drawVersions(1, op)
        going(op)
        await bury(physical, drawn)
        return
      }
      let bytes: Uint8Array
      try {
        bytes = bytesOf(key, stored)
      } catch (error) {
        // No old value outlives a refused write (memcached drops it too when it refuses one).
        if (isTooLarge(error)) await remove(physical).catch(() => false)
        throw error
      }
      const [stamp, drawn] = await Promise.all([stampOf(key), version ?? drawVersions(1, op)])
      CacheEntry.stampVersion(bytes, drawn)
      going(op)
      await client.set(physical, stamped(stamp, bytes), { lifetime: expiration })
    }

    /**
     * A write conditional on version `since`: the key is read with its cas unique (`gets`), and the
     * write is skipped when it holds an entry or a tombstone of a version above `since`; otherwise it is
     * written with `cas` (with `add` where the key is absent), so nothing that lands in between is
     * overwritten: the key is read again and the check made again, a bounded number of times. A key
     * that other writers change at every try keeps theirs (they came after `since`).
     */
    const writeSince = async (key: string, stored: CacheEntry.Stored, ttl: Duration.Duration | undefined, since: number, op: Op) => {
      const physical = physicalKey(key)
      const expiration = expirationOf(ttl, Date.now())
      let bytes: Uint8Array | undefined
      if (expiration !== "remove") {
        try {
          bytes = bytesOf(key, stored)
        } catch (error) {
          if (isTooLarge(error)) await remove(physical).catch(() => false)
          throw error
        }
      }
      // Drawn while the key is read: above `since` (drawn after it was seen), so above what it replaces.
      const drawing = drawVersions(1, op)
      drawing.catch(() => {})
      for (let attempt = 0; attempt < addAttempts; attempt++) {
        going(op)
        const [entry] = await read([key], true)
        const { deleted, raw } = entry!
        if (deleted !== undefined ? deleted > since : entry!.bytes !== undefined && CacheEntry.versionOf(entry!.bytes) > since) return
        try {
          if (bytes === undefined) {
            // A removal: the tombstone of a version drawn for it replaces what is there (with `cas`,
            // unless it changed meanwhile; with `add` where the key is absent), as a delete leaves one.
            // A tombstone already there is replaced too: its version is at most `since`, below this one.
            const tombstone = tombstoneOf(await drawing)
            going(op)
            if (raw?.casUniq === undefined) await client.add(physical, tombstone, { lifetime: tombstoneSeconds })
            else await client.cas(physical, tombstone, { casUniq: raw.casUniq, lifetime: tombstoneSeconds })
            return
          }
          const stamp = entry!.stamp.every((generation) => generation !== undefined) ? entry!.stamp as Array<string> : await stampOf(key)
          CacheEntry.stampVersion(bytes, await drawing)
          const lifetime = expiration === "remove" ? -1 : expiration
          going(op)
          if (raw?.casUniq === undefined) await client.add(physical, stamped(stamp, bytes), { lifetime })
          else await client.cas(physical, stamped(stamp, bytes), { casUniq: raw.casUniq, lifetime })
          return
        } catch (cause) {
          // NOT_STORED (another write made the key first), EXISTS (it changed), NOT_FOUND (it went away): look again.
          if (!isReply(cause, "NOT_STORED") && !isReply(cause, "EXISTS") && !isReply(cause, "NOT_FOUND")) throw cause
        }
      }
    }

    /**
     * Deletes keys: each read (with the generations) while their versions are drawn, in one round
     * trip, then replaced by its tombstone (the delete's version, for `CacheStore.tombstoneTtl`), so a
     * write conditional on an older version is skipped. Counts the live ones it found.
     */
    const removeAll = async (keys: ReadonlyArray<string>, op: Op): Promise<number> => {
      const unique = Array.from(new Set(keys))
      const [entries, top] = await Promise.all([read(unique), drawVersions(unique.length, op)])
      const first = top - unique.length + 1
      going(op)
      await Promise.all(unique.map((key, i) => bury(physicalKey(key), first + i)))
      let count = 0
      unique.forEach((key, i) => {
        // A key nothing clears counts whatever it holds but a tombstone; others only with a current stamp, or a counter.
        const { bytes, deleted, raw } = entries[i]!
        const live = bytes !== undefined ||
          (raw !== undefined && deleted === undefined && (generationsOf(key).length === 0 || counterFrom(textOf(raw.value)) !== undefined))
        if (live) count++
      })
      return count
    }

    const add = async (key: string, stored: CacheEntry.Stored, ttl: Duration.Duration | undefined, op: Op): Promise<boolean> => {
      const physical = physicalKey(key)
      const expiration = expirationOf(ttl, Date.now())
      if (expiration === "remove") return false
      let bytes: Uint8Array
      try {
        bytes = bytesOf(key, stored)
      } catch (error) {
        // As every store answers: a key that holds a live entry is not added to, whatever the value.
        if (isTooLarge(error) && (await read([key]))[0]!.bytes !== undefined) return false
        throw error
      }
      let [stamp, version] = await Promise.all([stampOf(key), drawVersions(1, op)])
      CacheEntry.stampVersion(bytes, version)
      for (let attempt = 0; attempt < addAttempts; attempt++) {
        going(op)
        try {
          await client.add(physical, stamped(stamp, bytes), { lifetime: expiration })
          return true
        } catch (cause) {
          if (!isReply(cause, "NOT_STORED")) throw cause
        }
        // memcached holds the key: a live entry, or one a clear made unreachable, which gives way.
        going(op)
        const [entry] = await read([key], true)
        if (entry!.bytes !== undefined) return false
        if (entry!.raw === undefined || entry!.raw.casUniq === undefined) continue // gone meanwhile: add again
        if (entry!.stamp.every((generation) => generation !== undefined)) stamp = entry!.stamp as Array<string>
        else stamp = await stampOf(key)
        going(op)
        try {
          await client.cas(physical, stamped(stamp, bytes), { casUniq: entry!.raw.casUniq, lifetime: expiration })
          return true
        } catch (cause) {
          // EXISTS: another write landed first; NOT_FOUND: it went away. Either way, look again.
          if (!isReply(cause, "EXISTS") && !isReply(cause, "NOT_FOUND")) throw cause
        }
      }
      // Other writers changed the key at every try: theirs is the entry.
      return false
    }

    /**
     * Gives an entry a new ttl: read with its cas token, its header retimed (a new version from the
     * Clock, as the cache stamps one on this store), written back with `cas` and the new lifetime;
     * again when another write came in between, until it lands or the entry is gone.
     */
    const expire = async (key: string, ttl: Duration.Duration, now: number, since: number | undefined, op: Op): Promise<boolean> => {
      const physical = physicalKey(key)
      let drawn: number | undefined
      for (let attempt = 0; attempt < addAttempts; attempt++) {
        going(op)
        const [entry] = await read([key], true)
        const casUniq = entry!.raw?.casUniq
        if (entry!.bytes === undefined && entry!.raw !== undefined && counterFrom(textOf(entry!.raw.value)) !== undefined) {
          // A counter (no stamp, no header): memcached's own touch moves its expiry, its value untouched.
          const lifetime = expirationOf(Duration.isFinite(ttl) ? Duration.millis(Math.max(1, Math.ceil(Duration.toMillis(ttl)))) : undefined, Date.now())
          going(op)
          return client.touch(physical, lifetime === "remove" ? 1 : lifetime).then(() => true, (cause: unknown) => {
            if (isReply(cause, "NOT_FOUND")) return false
            throw cause
          })
        }
        if (entry!.bytes === undefined || casUniq === undefined) return false
        const version = CacheEntry.versionOf(entry!.bytes)
        if (since !== undefined && version > since) return false
        const times = CacheEntry.timesOf(entry!.bytes)
        const after = CacheStore.expiryAfter(times ?? { freshUntil: Infinity, staleUntil: Infinity }, ttl, now)
        const bytes = times === undefined
          ? entry!.bytes
          : CacheEntry.retimed(entry!.bytes, after.freshUntil, after.staleUntil, drawn ??= await drawVersions(1, op))!
        const lifetime = expirationOf(after.millis === undefined ? undefined : Duration.millis(after.millis), Date.now())
        going(op)
        try {
          await client.cas(physical, stamped(entry!.stamp as ReadonlyArray<string>, bytes), { casUniq, lifetime: lifetime === "remove" ? 1 : lifetime })
          return true
        } catch (cause) {
          // EXISTS: another write landed first; NOT_FOUND: it went away. Either way, look again.
          if (!isReply(cause, "EXISTS") && !isReply(cause, "NOT_FOUND")) throw cause
        }
      }
      return false
    }

    /**
     * Adds to a counter with memcached's own `incr` / `decr` (atomic; the expiry it was created with is
     * kept); an absent counter is created with `add` and the ttl. Past the safe range the change is
     * undone with the opposite command (not in the same step as on Redis).
     */
    const increment = async (key: string, by: number, ttl: Duration.Duration | undefined, op: Op): Promise<number> => {
      const physical = physicalKey(key)
      for (let attempt = 0; attempt < addAttempts; attempt++) {
        going(op)
        let reply: string
        try {
          reply = String(by >= 0 ? await client.incr(physical, by) : await client.decr(physical, -by))
        } catch (cause) {
          if (isReply(cause, "NOT_FOUND")) {
            const expiration = expirationOf(ttl, Date.now())
            if (expiration === "remove") return by
            going(op)
            try {
              await client.add(physical, counterText(by), { lifetime: expiration })
              return by
            } catch (refused) {
              // Another writer created it first: increment that one.
              if (isReply(refused, "NOT_STORED")) continue
              throw refused
            }
          }
          if (/non-numeric/i.test(cause instanceof Error ? cause.message : String(cause))) {
            // A tombstone (the key was deleted) holds no counter: the counter starts again, over it.
            const found = (await getRaw([physical], true)).get(physical)
            if (found?.casUniq !== undefined && tombstoneVersion(found.value) !== undefined) {
              const expiration = expirationOf(ttl, Date.now())
              going(op)
              try {
                await client.cas(physical, counterText(by), { casUniq: found.casUniq, lifetime: expiration === "remove" ? -1 : expiration })
                return by
              } catch (lost) {
                if (isReply(lost, "EXISTS") || isReply(lost, "NOT_FOUND")) continue
                throw lost
              }
            }
            throw new Refusal("WrongType", "the key holds something other than an integer counter")
          }
          throw cause
        }
        const value = counterFrom(reply)
        if (value === undefined) {
          // Undone even when the caller has been answered: no counter is left past the safe range.
          await (by >= 0 ? client.decr(physical, by) : client.incr(physical, -by)).catch(() => undefined)
          throw new Refusal("Overflow", `the counter would pass Number.MAX_SAFE_INTEGER by adding ${by}; the change was undone`)
        }
        return value
      }
      throw new Error("the counter kept being removed and created again while it was incremented")
    }

    const counter = async (key: string): Promise<Option.Option<number>> => {
      const physical = physicalKey(key)
      const found = (await getRaw([physical])).get(physical)
      if (found === undefined || tombstoneVersion(found.value) !== undefined) return Option.none()
      const value = counterFrom(textOf(found.value))
      if (value === undefined) throw new Refusal("WrongType", "the key holds something other than an integer counter")
      return Option.some(value)
    }

    const clear = async (prefix: string): Promise<number> => {
      const generation = generationToClear(prefix)
      if (generation === "none") return 0
      if (generation === undefined) {
        throw new Refusal(
          "Unsupported",
          `memcached clears a namespace ("<namespace>:") or a keyspace ("<namespace>:<keyspace>:"), not "${prefix}"`
        )
      }
      const sentAt = performance.now()
      try {
        learn(generation, generationIn({ tokens: [], value: await client.incr(physicalKey(generation), 1) }), sentAt)
      } catch (cause) {
        // No generation: nothing under the prefix can be read, so there is nothing to clear.
        if (!isReply(cause, "NOT_FOUND")) throw cause
        learn(generation, undefined, sentAt)
      }
      return 0
    }

    // Concurrent gets go out together as one multi-key get.
    const reads = ReadBatch.make<Option.Option<CacheEntry.Stored>, StoreError>({
      maxKeys: keysPerGet,
      groupOf: () => 0,
      read: (keys) =>
        read(keys).then((entries) => entries.map(({ bytes }) => Effect.succeed(Option.fromNullable<CacheEntry.Stored | undefined>(bytes)))),
      failure: (key, cause) => Effect.fail(failure("get", key, cause)),
      timeout: { millis: timeoutMillis, onTimeout: (key) => Effect.fail(timedOut("get", key)) }
    })

    return CacheStore.make({
      name: storeName,
      capabilities: {
        inProcess: false,
        liveValues: false,
        atomicAdd: true,
        nativeTtl: true,
        clearByPrefix: true,
        assignsVersions: true,
        operationBound: Duration.millis(timeoutMillis)
      },
      get: reads.get,
      getMany: (keys) =>
        keys.length === 0 ? Effect.succeed([]) : run("getMany", undefined, () =>
          read(keys).then((entries) => entries.map(({ bytes }) => Option.fromNullable<CacheEntry.Stored | undefined>(bytes)))),
      set: (key, value, ttl, _wait, since) =>
        run("set", key, (op) => since === undefined ? write(key, value, ttl, op) : writeSince(key, value, ttl, since, op)),
      setMany: (entries) =>
        entries.length === 0 ? Effect.void : run("setMany", undefined, async (op) => {
          // One draw of versions for the batch; every entry that fits is written, and the first refusal
          // is reported once they are.
          const first = (await drawVersions(entries.length, op)) - entries.length + 1
          const outcomes = await Promise.allSettled(entries.map((entry, i) => write(entry.key, entry.value, entry.ttl, op, first + i)))
          const refused = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === "rejected")
          if (refused !== undefined) throw refused.reason
        }),
      add: (key, value, ttl) => run("add", key, (op) => add(key, value, ttl, op)),
      delete: (key) => run("delete", key, (op) => removeAll([key], op).then((n) => n > 0)),
      deleteMany: (keys) => keys.length === 0 ? Effect.succeed(0) : run("deleteMany", undefined, (op) => removeAll(keys, op)),
      has: (key) =>
        Effect.mapBoth(reads.get(key), {
          onFailure: (error) => new StoreError({ reason: error.reason, operation: "has", key, store: storeName, cause: error.cause }),
          onSuccess: Option.isSome
        }),
      clear: (prefix) => run("clear", prefix, () => clear(prefix)),
      expire: (key, ttl, now, since) => run("expire", key, (op) => expire(key, ttl, now, since, op)),
      increment: (key, by, ttl) => run("increment", key, (op) => increment(key, by, ttl, op)),
      counter: (key) => run("get", key, () => counter(key)),
      raw: { kind: "memcached", client },
      // The floor (the counter at the last draw, or a version read since) while it is trusted; else the
      // counter's value, read with `incr 0` (bounded; `undefined` when memcached cannot say: the write is
      // then unconditional). Not trusted before the first draw, after an "Unavailable" or "Timeout",
      // nor after this process had to make the counter again.
      currentVersion: Effect.suspend(() =>
        trusted && floor > 0
          ? Effect.succeed<number | undefined>(floor)
          : Effect.orElseSucceed(run("get", versionKey, (op) => drawVersions(0, op)), () => undefined)
      )
    })
  })

const connect = (options: Options): MemcacheClient => new MemcacheClient(clientSettings(options))

/**
 * Builds a memcached store whose client lives as long as the scope: it connects to the server (a
 * bounded first contact: the store is built even when memcached is down) and is shut down with the
 * scope, without waiting on the server.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as MemcachedStore from "effect-cachekit/CacheStore/Memcached"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const store = yield* MemcachedStore.make({ server: "127.0.0.1:11211" })
 *   yield* store.set("app:counters:a", new Uint8Array([1]), undefined)
 *   return yield* store.get("app:counters:a")
 * }))
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<CacheStore.CacheStore, never, Scope.Scope> =>
  Effect.flatMap(
    Effect.acquireRelease(Effect.sync(() => connect(options)), (client) => Effect.sync(() => client.shutdown())),
    (client) => build(client, options)
  )

/**
 * A memcached store as a layer; its connection is closed with the layer.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Cache } from "effect-cachekit"
 * import * as MemcachedStore from "effect-cachekit/CacheStore/Memcached"
 *
 * const CacheLive = Cache.layer({ namespace: "app" }).pipe(
 *   Layer.provide(MemcachedStore.layer({ server: "127.0.0.1:11211", timeout: "250 millis" }))
 * )
 * ```
 *
 * @since 0.3.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<CacheStore.CacheStore> =>
  Layer.scoped(CacheStore.CacheStore, make(options))

/**
 * A memcached store configured with Effect's `Config`: each option may be given as a `Config`
 * (`Config.Wrap<Options>`), read when the layer is built.
 *
 * @example
 * ```ts
 * import { Config } from "effect"
 * import * as MemcachedStore from "effect-cachekit/CacheStore/Memcached"
 *
 * const StoreLive = MemcachedStore.layerConfig({
 *   server: Config.string("APP_MEMCACHED_SERVER"),
 *   timeout: Config.succeed("250 millis")
 * })
 * ```
 *
 * @since 0.3.0
 * @category layers
 */
export const layerConfig = (options: Config.Config.Wrap<Options>): Layer.Layer<CacheStore.CacheStore, ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layer))

/**
 * A memcached store over a `memcache-client` client the program already owns (the layer does not
 * shut it down). Build it with {@link clientSettings} so its commands carry the store's timeout, or
 * with a `cmdTimeout` of your own no longer than `timeout`.
 *
 * @example
 * ```ts
 * import { MemcacheClient } from "memcache-client"
 * import * as MemcachedStore from "effect-cachekit/CacheStore/Memcached"
 *
 * const client = new MemcacheClient(MemcachedStore.clientSettings({ server: "127.0.0.1:11211" }))
 * const StoreLive = MemcachedStore.layerFromClient(client)
 * ```
 *
 * @since 0.3.0
 * @category layers
 */
export const layerFromClient = (
  client: MemcacheClient,
  options: Omit<Options, "server" | "connectTimeout"> = {}
): Layer.Layer<CacheStore.CacheStore> => Layer.effect(CacheStore.CacheStore, build(client, options))

/**
 * The `memcache-client` options the store's own client uses: the server, a command timeout equal to
 * the store's `timeout` (a command that times out closes its connection, so a late reply is never
 * taken for another command's), the connect timeout, `TCP_NODELAY`, keep-alive probes and native
 * promises.
 *
 * @example
 * ```ts
 * import { MemcacheClient } from "memcache-client"
 * import * as MemcachedStore from "effect-cachekit/CacheStore/Memcached"
 *
 * const client = new MemcacheClient(MemcachedStore.clientSettings({ server: "127.0.0.1:11211", timeout: "200 millis" }))
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const clientSettings = (options: Pick<Options, "server" | "timeout" | "connectTimeout"> = {}): MemcacheClientOptions => ({
  server: options.server ?? "127.0.0.1:11211",
  cmdTimeout: millisOf(options.timeout, "500 millis"),
  connectTimeout: millisOf(options.connectTimeout, "1 second"),
  keepAlive: 60_000,
  noDelay: true,
  // memcache-client would take bluebird when the application has it installed.
  Promise: globalThis.Promise
})
