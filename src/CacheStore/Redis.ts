/**
 * The Redis store: the {@link CacheStore.CacheStore} port over the {@link Redis.Redis} client.
 *
 * - Reads are `GET` / `MGET` of buffers, so envelopes round-trip byte for byte.
 * - Writes run a small Lua script: `SET ... PX` and, in the same step, the write's version from
 *   Redis's own clock (`TIME`, kept above the key's previous version) written into the envelope, so
 *   versions never come from a writer's clock.
 * - Batches are one `MGET`, `UNLINK` or script call per hash slot on a Cluster, never a round trip per
 *   key; `clear` walks the prefix with `SCAN` + `UNLINK`, never `KEYS`, with glob characters in the
 *   prefix escaped, and skips internal keys.
 *
 * @since 0.2.0
 */
import calculateSlot from "cluster-key-slot"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { Cluster, Redis as IORedis } from "ioredis"
import { deflateSync, inflateSync } from "node:zlib"
import * as CacheBus from "../CacheBus.js"
import * as CacheEntry from "../CacheEntry.js"
import { StoreError } from "../CacheError.js"
import * as CacheStore from "../CacheStore.js"
import * as Redis from "../Redis.js"
import * as ReadBatch from "../internal/readBatch.js"
import { timeoutRealTo } from "../internal/realTime.js"

declare module "../CacheStore.js" {
  interface RawClients {
    /** The Redis store's ioredis client: a `Redis` on a single server, a `Cluster` on a Cluster. */
    readonly redis: Redis.Client
  }
}

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
  /**
   * Values whose serialized body is larger than this many bytes are sent deflated (zlib: DEFLATE with
   * an Adler-32 checksum, level 1, flagged in the entry's header) when that makes them smaller, and
   * inflated on read (a body that fails its checksum is a miss that heals);
   * `false` never compresses. Reading works either way. Default 16 KiB.
   */
  readonly compressAbove?: number | false | undefined
}

/** @internal Bodies above this many bytes are compressed unless a store or lock says otherwise. */
export const defaultCompressAbove = 16 * 1024

const storeName = "redis"

/**
 * @internal
 * The cause an error of `client` carries: for a refusal of credentials, the server's words (a
 * command that was not even sent would otherwise say "stream not writeable").
 */
export const causeOf = (client: Redis.Client, reason: string, cause: unknown): unknown =>
  reason === "Auth" ? Redis.authRefusal(client) ?? cause : cause

/** @internal */
export const defaultMaxValueBytes = 16 * 1024 * 1024

/**
 * @internal
 * How an ioredis failure of `client` is classified: a command refused for want of credentials, or
 * one that could not be sent while the server refuses them, is `"Auth"`.
 */
export const classify = (client: Redis.Client, cause: unknown): "Timeout" | "Auth" | "WrongType" | "Overflow" | "Backend" | "Unavailable" => {
  const message = cause instanceof Error ? cause.message : String(cause)
  if (/^(NOAUTH|WRONGPASS)/.test(message)) return "Auth"
  if (/timed out/i.test(message)) return "Timeout"
  if (/overflow/i.test(message)) return "Overflow"
  if (/WRONGTYPE|not an integer|out of range/i.test(message)) return "WrongType"
  // A Cluster that cannot route the command (a slot whose master is down, a failover under way).
  if (/^(MOVED|ASK|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|LOADING)\b/.test(message)) return "Unavailable"
  if (cause instanceof Error && cause.name === "ReplyError") return "Backend"
  return Redis.authRefusal(client) === undefined ? "Unavailable" : "Auth"
}

/** @internal */
export const tooLarge = (operation: StoreError["operation"], key: string, size: number, limit: number): StoreError =>
  new StoreError({ reason: "TooLarge", operation, key, store: storeName, cause: `${size} bytes exceeds the ${limit}-byte limit` })

/** Bytes as a Buffer (a view, no copy): what ioredis sends as binary (it would send a plain Uint8Array as text). */
const asBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/**
 * @internal
 * The argument to send for a stored entry: its envelope (a live entry carries one when it is written
 * through a two-layer store; one without cannot reach Redis).
 */
export const argument = (
  operation: StoreError["operation"],
  key: string,
  stored: CacheEntry.Stored,
  limit: number,
  compressAbove: number | false = defaultCompressAbove
): StoreError | Buffer => {
  const value = CacheStore.isLive(stored) ? CacheEntry.envelopeOf(stored) : stored
  if (value === undefined) {
    return new StoreError({ reason: "Backend", operation, key, store: storeName, cause: "a live entry cannot be sent to Redis" })
  }
  if (value.length > limit) return tooLarge(operation, key, value.length, limit)
  const bytes = asBuffer(value)
  if (compressAbove === false || bytes.length <= compressAbove) return bytes
  const packed = CacheEntry.withBody(bytes, true, (body) => body.length > compressAbove ? deflateSync(body, { level: 1 }) : body)
  return packed !== undefined && packed.length < bytes.length ? asBuffer(packed) : bytes
}

/**
 * @internal
 * What a read of `key` returned, as the cache reads it: a compressed body inflated (at most `limit`
 * bytes, else `"TooLarge"`; a body that does not inflate is handed on as it is, so the cache reads it
 * as a miss and heals it).
 */
export const unpacked = (operation: StoreError["operation"], key: string, value: Buffer, limit: number): StoreError | Buffer => {
  if (value.length > limit) return tooLarge(operation, key, value.length, limit)
  if (!CacheEntry.isCompressed(value)) return value
  try {
    const inflated = CacheEntry.withBody(value, false, (body) => inflateSync(body, { maxOutputLength: limit }))
    return inflated === undefined ? value : asBuffer(inflated)
  } catch (cause) {
    if ((cause as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE" || cause instanceof RangeError) {
      return new StoreError({
        reason: "TooLarge",
        operation,
        key,
        store: storeName,
        cause: `the compressed value inflates past the ${limit}-byte limit`
      })
    }
    return value
  }
}

/**
 * @internal
 * Writes the version a script gave an entry into the envelope the store was handed (0: not written),
 * so that a caller (a two-layer store) learns it.
 */
export const stampVersion = (stored: CacheEntry.Stored, version: number): void => {
  const envelope = CacheStore.isLive(stored) ? CacheEntry.envelopeOf(stored) : stored
  if (envelope !== undefined) CacheEntry.stampVersion(envelope, Math.max(0, version))
}

/** @internal The `PX` argument of a write: `""` for no expiry, `"-"` for "store nothing, remove the old value". */
export const pxArgument = (ttl: Duration.Duration | undefined): string => {
  const millis = CacheStore.ttlMillis(ttl)
  return millis === undefined ? "" : millis <= 0 ? "-" : String(millis)
}

/** @internal The Cluster hash slot of a key (CRC16 of the key, or of its `{hash tag}`, modulo 16384). */
export const slotOf = (key: string): number => calculateSlot(key)

let tags: Array<string> | undefined

/**
 * @internal
 * A short string whose slot is `slot` (the table is built once, on first use), so a companion key (a
 * lock) can be put in any key's slot whatever characters that key holds.
 */
export const tagForSlot = (slot: number): string => {
  if (tags === undefined) {
    const table = new Array<string>(16384)
    let filled = 0
    for (let i = 0; filled < 16384; i++) {
      const candidate = i.toString(36)
      const s = calculateSlot(candidate)
      if (table[s] === undefined) {
        table[s] = candidate
        filled++
      }
    }
    tags = table
  }
  return tags[slot]!
}

/** How far ahead of Redis's clock an entry's version may be and still count as a newer write. */
const futureSlackMicros = 1_000_000

/**
 * @internal
 * What every script that writes an entry starts with. `now` is Redis's `TIME` in microseconds, read
 * once. `late(deadline)` says whether the caller has stopped waiting (`deadline`: server epoch
 * milliseconds, `""` for a caller that waits as long as it takes): such a write is refused, so a write
 * whose caller was told it failed never lands after a newer one. `superseded(key, tombstone, since)`
 * says whether a write conditional on version `since` (`""`: unconditional) comes after a newer write
 * or a later delete (whose tombstone holds its version); an entry whose version lies over a second
 * ahead of `now` (stamped before the server's clock was set back) is not taken for a newer write, or it
 * would hold back every conditional write until the clock caught up with it. `write(key, value, px)` stores the
 * value (px `""`: no expiry; `"-"`: remove instead) and writes the version into its envelope: `now`,
 * kept above the version already under the key. Returns the version (0 for a removal).
 *
 * Every script's last argument is the writer's bus origin (`""`: no bus). With one, each key written
 * or removed is announced, and `publish()` (called before the script returns) sends one bus message
 * for them on `"<namespace>::bus"` (see `CacheBus`), in the same step as the writes.
 */
export const writeFunction = `
local clock = redis.call("TIME")
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local function late(deadline)
  return deadline ~= "" and now > tonumber(deadline) * 1000
end
local versions = {}
local function versionAt(key)
  local known = versions[key]
  if known then return known end
  local version = 0
  local head = redis.pcall("GETRANGE", key, 0, ${CacheEntry.versionOffset + 7})
  if type(head) == "string" and #head == ${CacheEntry.versionOffset + 8} and string.sub(head, 1, 3) == "${luaBytes(CacheEntry.magic)}" then
    version = struct.unpack(">d", head, ${CacheEntry.versionOffset + 1})
  end
  versions[key] = version
  return version
end
local function superseded(key, tombstone, since)
  if since == "" then return false end
  local floor = tonumber(since)
  local deleted = redis.call("GET", tombstone)
  if deleted and tonumber(deleted) > floor then return true end
  local version = versionAt(key)
  return version > floor and version <= now + ${futureSlackMicros}
end
local origin = ARGV[#ARGV]
local announced = {}
local busNamespace = nil
local function announce(key, version)
  if origin == "" then return end
  busNamespace = busNamespace or string.match(key, "^[^:]*")
  announced[#announced + 1] = string.format("%.0f", version) .. "\\n" .. key
end
local function publish()
  if #announced > 0 then
    redis.call("PUBLISH", busNamespace .. "::bus", "K\\n" .. origin .. "\\n" .. table.concat(announced, "\\n"))
  end
end
-- The version of a removal: above the entry's, so the delete is newer than what it removes.
local function removal(key)
  local version = versionAt(key)
  if version >= now then return version + 1 end
  return now
end
local function write(key, value, px)
  if px == "-" then
    local version = removal(key)
    redis.call("UNLINK", key)
    versions[key] = 0
    announce(key, version)
    return 0
  end
  local version = now
  local previous = versionAt(key)
  if previous >= version then version = previous + 1 end
  if px == "" then
    redis.call("SET", key, value)
  else
    redis.call("SET", key, value, "PX", px)
  end
  if #value >= ${CacheEntry.versionOffset + 8} and string.sub(value, 1, 3) == "${luaBytes(CacheEntry.magic)}" then
    redis.call("SETRANGE", key, ${CacheEntry.versionOffset}, struct.pack(">d", version))
  end
  versions[key] = version
  announce(key, version)
  return version
end
`

/** @internal The first number a write script replies with when the write came after its deadline. */
export const lateReply = -2

/** @internal The first number a conditional write script replies with when the key changed since its version. */
export const supersededReply = -3

/**
 * @internal
 * The tombstone key of an entry key: internal to its namespace, in its hash slot. A delete leaves
 * its version there for {@link CacheStore.tombstoneTtl}.
 */
export const tombstoneKeyOf = (key: string): string =>
  CacheStore.internalKey(CacheStore.namespaceOf(key), "deleted", `{${tagForSlot(slotOf(key))}}:${key}`)

const tombstoneMillis = String(Duration.toMillis(CacheStore.tombstoneTtl))

function luaBytes(binary: string): string {
  return Array.from(binary, (c) => `\\${c.charCodeAt(0)}`).join("")
}

// Each replies `{ outcome, now }`: the outcome, and Redis's time for the client's server clock.
// KEYS: entry, its tombstone. ARGV: value, px, deadline, since, origin.
const setScript = `${writeFunction}
if late(ARGV[3]) then return { ${lateReply}, now } end
if superseded(KEYS[1], KEYS[2], ARGV[4]) then return { ${supersededReply}, now } end
local version = write(KEYS[1], ARGV[1], ARGV[2])
publish()
return { version, now }`

// KEYS: entries, then their tombstones (as many). ARGV: the tombstones' px, origin. Replies { removed, now }.
const deleteScript = `${writeFunction}
local removed = 0
local half = #KEYS / 2
for i = 1, half do
  local version = removal(KEYS[i])
  removed = removed + redis.call("UNLINK", KEYS[i])
  redis.call("SET", KEYS[half + i], string.format("%.0f", version), "PX", ARGV[1])
  announce(KEYS[i], version)
end
publish()
return { removed, now }`

// KEYS: entries. ARGV: deadline, then value and px per entry, then origin. Replies { count, now, version... }.
const setManyScript = `${writeFunction}
if late(ARGV[1]) then return { ${lateReply}, now } end
local reply = { #KEYS, now }
for i, key in ipairs(KEYS) do
  reply[i + 2] = write(key, ARGV[2 * i], ARGV[2 * i + 1])
end
publish()
return reply`

// KEYS: entry. ARGV: value, px, deadline, origin.
const addScript = `${writeFunction}
if late(ARGV[3]) then return { ${lateReply}, now } end
if redis.call("EXISTS", KEYS[1]) == 1 then
  return { -1, now }
end
local version = write(KEYS[1], ARGV[1], ARGV[2])
publish()
return { version, now }`

// KEYS: entry, its tombstone. ARGV: ttl in ms ("": no expiry), the Clock's now in ms, since ("": none),
// origin. Rewrites the envelope's version, freshUntil and staleUntil (contiguous in the header) and the
// key's physical ttl in one step, the grace kept. Replies { version (0: no entry), now }.
const expireScript = `${writeFunction}
if redis.call("EXISTS", KEYS[1]) == 0 then return { 0, now } end
if superseded(KEYS[1], KEYS[2], ARGV[3]) then return { ${supersededReply}, now } end
local head = redis.call("GETRANGE", KEYS[1], 0, ${CacheEntry.freshOffset + 15})
local isEnvelope = #head == ${CacheEntry.freshOffset + 16} and string.sub(head, 1, 3) == "${luaBytes(CacheEntry.magic)}"
local grace = 0
local version = now
if isEnvelope then
  local fresh = struct.unpack(">d", head, ${CacheEntry.freshOffset + 1})
  local stale = struct.unpack(">d", head, ${CacheEntry.freshOffset + 9})
  if fresh ~= math.huge and stale ~= math.huge and stale > fresh then grace = stale - fresh end
  local previous = versionAt(KEYS[1])
  if previous >= version then version = previous + 1 end
  local freshUntil = math.huge
  local staleUntil = math.huge
  if ARGV[1] ~= "" then
    freshUntil = tonumber(ARGV[2]) + tonumber(ARGV[1])
    staleUntil = freshUntil + grace
  end
  redis.call("SETRANGE", KEYS[1], ${CacheEntry.versionOffset},
    struct.pack(">d", version) .. struct.pack(">d", freshUntil) .. struct.pack(">d", staleUntil))
end
if ARGV[1] == "" then
  redis.call("PERSIST", KEYS[1])
else
  redis.call("PEXPIRE", KEYS[1], math.ceil(tonumber(ARGV[1]) + grace))
end
announce(KEYS[1], version)
publish()
return { version, now }`

// KEYS: the counter. ARGV: by, px ("": none). INCRBY within Number.MAX_SAFE_INTEGER, the ttl set when
// the counter is created only. Anything but an integer under the key is refused, and an increment past
// the bound is undone in the same step. Replies the new value.
const incrementScript = `
local existed = redis.call("EXISTS", KEYS[1])
local current = redis.call("GET", KEYS[1])
if current and not string.match(current, "^%-?%d+$") then
  return redis.error_reply("WRONGTYPE the key holds something other than an integer counter")
end
local value = redis.call("INCRBY", KEYS[1], ARGV[1])
if value > ${Number.MAX_SAFE_INTEGER} or value < -${Number.MAX_SAFE_INTEGER} then
  if existed == 0 then redis.call("DEL", KEYS[1]) else redis.call("DECRBY", KEYS[1], ARGV[1]) end
  return redis.error_reply("OVERFLOW the counter would pass Number.MAX_SAFE_INTEGER; it is left as it was")
end
if existed == 0 and ARGV[2] ~= "" then redis.call("PEXPIRE", KEYS[1], ARGV[2]) end
return value`

/**
 * @internal
 * What a write script replies: its outcome, Redis's time in microseconds, and (setMany) the version of
 * each entry.
 */
export type Reply = readonly [outcome: number, now: number, ...versions: Array<number>]

/**
 * MGET as a script, for a read that must wait behind auto-pipelined commands (see the store's
 * `mgetInOrder`): its name is not in the ignored list, so ioredis pipelines it. In slices of 1,000
 * keys, under Lua's limit on `unpack`.
 */
const readScript = `local out = {}
for i = 1, #KEYS, 1000 do
  local part = redis.call("MGET", unpack(KEYS, i, math.min(i + 999, #KEYS)))
  for j = 1, #part do out[#out + 1] = part[j] end
end
return out`

interface Scripts {
  cachekitReadBuffer(count: number, ...keys: ReadonlyArray<string>): Promise<Array<Buffer | null>>
  cachekitSet(key: string, tombstone: string, value: Buffer, px: string, deadline: string, since: string, origin: string): Promise<Reply>
  cachekitDelete(...keysThenArgs: Array<string | number>): Promise<Reply>
  cachekitSetMany(...keysThenArgs: Array<string | Buffer | number>): Promise<Reply>
  cachekitAdd(key: string, value: Buffer, px: string, deadline: string, origin: string): Promise<Reply>
  cachekitExpire(key: string, tombstone: string, ttl: string, now: string, since: string, origin: string): Promise<Reply>
  cachekitIncrement(key: string, by: string, px: string): Promise<number>
  pipeline(): ScriptPipeline
}

interface ScriptPipeline {
  cachekitSetMany(...keysThenArgs: Array<string | Buffer | number>): ScriptPipeline
  cachekitDelete(...keysThenArgs: Array<string | number>): ScriptPipeline
  exec(): Promise<Array<[Error | null, unknown]> | null>
}

/** Runs a pipeline of one command: its reply, or its error. */
const execOne = async (pipeline: ScriptPipeline): Promise<Reply> => {
  const replies = await pipeline.exec()
  const [error, reply] = replies?.[0] ?? [new Error("the pipeline was discarded"), undefined]
  if (error !== null) throw error
  return reply as Reply
}

/** @internal Registers the entry-writing scripts (and the read script) on a client (idempotent). */
export const defineWriteScripts = (client: Redis.Client): Scripts => {
  client.defineCommand("cachekitSet", { numberOfKeys: 2, lua: setScript })
  client.defineCommand("cachekitDelete", { lua: deleteScript })
  client.defineCommand("cachekitAdd", { numberOfKeys: 1, lua: addScript })
  client.defineCommand("cachekitSetMany", { lua: setManyScript })
  client.defineCommand("cachekitRead", { lua: readScript })
  client.defineCommand("cachekitExpire", { numberOfKeys: 2, lua: expireScript })
  client.defineCommand("cachekitIncrement", { numberOfKeys: 1, lua: incrementScript })
  return client as unknown as Scripts
}

/**
 * @internal
 * Sends a write whose script takes a deadline: the latest server time at which the caller, who waits
 * `waitMillis` from now, still waits (`""` when it waits as long as it takes, or the server's clock is
 * not known yet and cannot be learnt in time). Records the server time of the reply. Fails with
 * `onLate()` when the script refused the write because it came after its deadline.
 */
export const fenced = <E>(
  client: Redis.Client,
  waitMillis: number,
  send: (deadline: string) => Promise<Reply>,
  onError: (cause: unknown) => E,
  onLate: () => E
): Effect.Effect<Reply, E> => {
  const clock = Redis.serverClock(client)
  const run = (sentAt: number, deadline: number | undefined) =>
    Effect.flatMap(
      Effect.tryPromise({ try: () => send(deadline === undefined ? "" : String(deadline)), catch: onError }),
      (reply) => {
        clock.observe(sentAt, reply[1])
        return reply[0] === lateReply ? Effect.fail(onLate()) : Effect.succeed(reply)
      }
    )
  return Effect.suspend(() => {
    const sentAt = performance.now()
    if (!Number.isFinite(waitMillis)) return run(sentAt, undefined)
    const deadline = clock.deadline(waitMillis)
    if (deadline !== undefined) return run(sentAt, deadline)
    // The first writes of a client wait for its first sample of the server's clock, within the
    // caller's wait: what is left of it bounds the write too.
    return Effect.flatMap(timeoutRealTo(Effect.promise(clock.measure), waitMillis, Effect.void), () => {
      const left = Math.max(0, waitMillis - (performance.now() - sentAt))
      return timeoutRealTo(run(sentAt, clock.deadline(left)), left, Effect.fail(onLate()))
    })
  })
}

/**
 * @internal
 * What makes a call on a Cluster settle within its `commandTimeout`, and survive a slot migration.
 * A standalone client bounds each command by `commandTimeout`, and `run` is used as it is.
 *
 * A Cluster client bounds each attempt, then tries again after a redirection or a closed connection
 * (with a slot refresh between tries, up to 16 times): a call on a slot whose master is down took
 * 1.2 s for a 500 ms `commandTimeout`. There the call is cut at `commandTimeout`, with the error a
 * timed-out command has. And while a slot migrates, a script whose keys are split between the two
 * masters is refused with `TRYAGAIN`, which ioredis does not retry once it has followed an `ASK` in a
 * pipeline (nor `NOSCRIPT` after an `EVAL` the other master refused): such a refusal means the
 * command did not run, so it is sent again every {@link redirectRetryMillis} until the cut.
 */
export const wholeCall = (isCluster: boolean, commandTimeout: number | undefined) =>
<A extends ReadonlyArray<unknown>, B>(run: (...args: A) => Promise<B>): (...args: A) => Promise<B> =>
  !isCluster ? run : (...args) =>
    new Promise<B>((resolve, reject) => {
      let settled = false
      const settle = (f: () => void) => {
        if (settled) return
        settled = true
        clearTimeout(cut)
        f()
      }
      const cut = commandTimeout === undefined ? undefined : setTimeout(
        () => settle(() => reject(new Error("Command timed out (retries included)"))),
        commandTimeout
      )
      let attempts = 0
      const attempt = () =>
        run(...args).then(
          (value) => settle(() => resolve(value)),
          (error: unknown) => {
            if (!settled && isNotRun(error) && (cut !== undefined || ++attempts < maxRedirectRetries)) {
              setTimeout(attempt, redirectRetryMillis)
            } else {
              settle(() => reject(error))
            }
          }
        )
      attempt()
    })

/** @internal How long a Cluster call waits before it is sent again after a refusal that says it did not run. */
export const redirectRetryMillis = 50

/** Without a `commandTimeout` to cut them, at most this many tries. */
const maxRedirectRetries = 20

/** A reply that says the command was not run (a slot migrating, a script not loaded on that master). */
const isNotRun = (error: unknown): boolean => error instanceof Error && /^(TRYAGAIN|ASK|NOSCRIPT)\b/.test(error.message)

/** @internal The bound every command of the client carries (its `commandTimeout`), if it has one. */
export const commandTimeoutOf = (client: Redis.Client, isCluster: boolean): number | undefined =>
  isCluster ? (client as Cluster).options.redisOptions?.commandTimeout : (client as IORedis).options.commandTimeout

/**
 * @internal
 * How long the caller of a write waits, in milliseconds: the cache's bound on it (`wait`) or the
 * command's, whichever is shorter; `Infinity` when neither bounds it.
 */
export const waitMillis = (commandTimeout: number | undefined, wait: Duration.Duration | undefined): number =>
  Math.min(commandTimeout ?? Infinity, wait === undefined ? Infinity : Duration.toMillis(wait))

/**
 * @internal
 * The origin the write scripts publish under: the Redis bus's, when one is in context (its messages
 * then come from the same scripts as the writes); `""` (no message) otherwise.
 */
export const busOrigin: Effect.Effect<string> = Effect.map(
  Effect.serviceOption(CacheBus.CacheBus),
  (bus) => bus._tag === "Some" && bus.value.name === "redis" ? bus.value.origin : ""
)

/** Escapes the glob characters of a SCAN pattern so a prefix matches literally. */
const escapeGlob = (prefix: string): string => prefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`)

/** @internal Groups keys by Cluster hash slot (one group when not on a Cluster), remembering their positions. */
export const groupBySlot = (keys: ReadonlyArray<string>, isCluster: boolean): Array<Array<number>> => {
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

/** How many keys one coalesced read asks for at most. */
const readBatchKeys = 512

/** How many entries one script call writes at most, so a huge batch never holds Redis for long. */
const writeChunk = 256

/** @internal Splits a list into lists of at most `size` items. */
export const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

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
  Effect.flatMap(Effect.zip(Redis.Redis, busOrigin), ([{ client, isCluster }, origin]) => {
    const maxValueBytes = options.maxValueBytes ?? defaultMaxValueBytes
    const compressAbove = options.compressAbove ?? defaultCompressAbove
    const scanCount = options.scanCount ?? 1_000
    const scripts = defineWriteScripts(client)
    const commandTimeout = commandTimeoutOf(client, isCluster)
    const whole = wholeCall(isCluster, commandTimeout)
    const serverClock = Redis.serverClock(client)

    const failure = (operation: StoreError["operation"], key: string | undefined, cause: unknown) => {
      const reason = classify(client, cause)
      return new StoreError({ reason, operation, key, store: storeName, cause: causeOf(client, reason, cause) })
    }
    const call = <A>(operation: StoreError["operation"], key: string | undefined, run: () => Promise<A>) =>
      Effect.tryPromise({ try: whole(run), catch: (cause) => failure(operation, key, cause) })

    const received = (operation: StoreError["operation"], key: string, value: Buffer | null) => {
      if (value === null) return Effect.succeedNone
      const bytes = unpacked(operation, key, value, maxValueBytes)
      return bytes instanceof StoreError ? Effect.fail(bytes) : Effect.succeed(Option.some<CacheEntry.Stored>(bytes))
    }

    // On a single server, reads are not auto-pipelined (the store gathers them itself; see
    // `Redis.clientOptions`): they go out at once, unless commands issued before them still wait in the
    // auto-pipeline (a write issued and not awaited, as getOrSet's once its callers have the value).
    // Then they go as a script, which ioredis pipelines behind those commands, so a read never
    // overtakes a command issued before it. On a Cluster reads are auto-pipelined, in order.
    const mgetInOrder = (keys: ReadonlyArray<string>): Promise<Array<Buffer | null>> =>
      isCluster || client.autoPipelineQueueSize === 0 ? client.mgetBuffer(...keys) : scripts.cachekitReadBuffer(keys.length, ...keys)
    const getInOrder = (key: string): Promise<Buffer | null> =>
      isCluster || client.autoPipelineQueueSize === 0
        ? client.getBuffer(key)
        : scripts.cachekitReadBuffer(1, key).then((values) => values[0] ?? null)

    // Concurrent gets go out together as one MGET, each caller answered with its own key's outcome; a
    // lone get is a GET (no reply array to build). Not on a Cluster: keys rarely share a slot there,
    // and during a slot migration a multi-key read is refused (TRYAGAIN) where a GET follows the ASK.
    const mget = (keys: ReadonlyArray<string>) =>
      keys.length === 1 ? getInOrder(keys[0]!).then((value) => [value]) : mgetInOrder(keys)
    const reads = ReadBatch.make<Option.Option<CacheEntry.Stored>, StoreError>({
      maxKeys: readBatchKeys,
      groupOf: () => 0,
      read: (keys) => mget(keys).then((values) => keys.map((key, i) => received("get", key, values[i] ?? null))),
      failure: (key, cause) => Effect.fail(failure("get", key, cause))
    })
    const getOne = (key: string) => Effect.flatMap(call("get", key, () => getInOrder(key)), (value) => received("get", key, value))

    /** Drops a key whose new value was refused, so no stale value outlives the write. */
    const refuse = (operation: StoreError["operation"], key: string, error: StoreError) =>
      error.reason === "TooLarge"
        ? Effect.zipRight(deleteAll(operation, [key]).pipe(Effect.ignore), Effect.fail(error))
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

    /** Deletes entries and leaves their tombstones: one script per slot (per chunk). */
    const deleteAll = (operation: StoreError["operation"], keys: ReadonlyArray<string>) =>
      keys.length === 0 ? Effect.succeed(0) : Effect.map(
        Effect.forEach(
          groupBySlot(keys, isCluster).flatMap((group) => chunks(group, writeChunk)),
          (group) =>
            call(operation, group.length === 1 ? keys[group[0]!] : undefined, () => {
              const args = [
                group.length * 2,
                ...group.map((i) => keys[i]!),
                ...group.map((i) => tombstoneKeyOf(keys[i]!)),
                tombstoneMillis,
                origin
              ]
              // As for setMany: on a Cluster, routed by its keys in a pipeline of its own.
              return isCluster ? execOne(scripts.pipeline().cachekitDelete(...args)) : scripts.cachekitDelete(...args)
            }),
          { concurrency: "unbounded" }
        ),
        (replies) => replies.reduce((sum, [removed]) => sum + removed, 0)
      )

    const scanNode = (node: IORedis, prefix: string): Effect.Effect<number, StoreError> => {
      const pattern = `${escapeGlob(prefix)}*`
      const step = (cursor: string, removed: number): Effect.Effect<number, StoreError> =>
        Effect.flatMap(
          call("clear", prefix, () => node.scan(cursor, "MATCH", pattern, "COUNT", scanCount)),
          ([next, keys]) =>
            Effect.flatMap(
              unlinkAll("clear", keys.filter((key) => !CacheStore.isInternalKey(key))),
              (n) => next === "0" ? Effect.succeed(removed + n) : step(next, removed + n)
            )
        )
      return step("0", 0)
    }

    const late = (operation: StoreError["operation"], key: string | undefined) => () =>
      new StoreError({
        reason: "Timeout",
        operation,
        key,
        store: storeName,
        cause: "the write reached Redis after its caller stopped waiting, so it was not applied"
      })
    const write = (
      operation: StoreError["operation"],
      key: string | undefined,
      wait: Duration.Duration | undefined,
      send: (deadline: string) => Promise<Reply>
    ) => fenced(client, waitMillis(commandTimeout, wait), whole(send), (cause) => failure(operation, key, cause), late(operation, key))


    const writeOne = (
      operation: "set" | "add",
      key: string,
      value: CacheEntry.Stored,
      ttl: Duration.Duration | undefined,
      wait: Duration.Duration | undefined,
      since: number | undefined
    ) => {
      const px = pxArgument(ttl)
      if (px === "-") {
        // A removal: as a delete (its tombstone, its bus message).
        return operation === "add" ? Effect.succeed(-1) : Effect.as(deleteAll(operation, [key]), 0)
      }
      const body = argument(operation, key, value, maxValueBytes, compressAbove)
      if (body instanceof StoreError) return refuse(operation, key, body)
      return Effect.map(
        write(operation, key, wait, (deadline) =>
          operation === "set"
            ? since === undefined
              // Unconditional: the script never reads the tombstone, so the entry key stands in for it
              // (same slot) and a plain set computes no tombstone key.
              ? scripts.cachekitSet(key, key, body, px, deadline, "", origin)
              : scripts.cachekitSet(key, tombstoneKeyOf(key), body, px, deadline, String(since), origin)
            : scripts.cachekitAdd(key, body, px, deadline, origin)),
        ([outcome]) => {
          stampVersion(value, outcome)
          return outcome
        }
      )
    }

    const store = CacheStore.make({
      name: storeName,
      capabilities: {
        inProcess: false,
        liveValues: false,
        atomicAdd: true,
        nativeTtl: true,
        clearByPrefix: true,
        assignsVersions: true,
        operationBound: commandTimeout === undefined ? undefined : Duration.millis(commandTimeout)
      },
      get: isCluster ? getOne : reads.get,
      getMany: (keys) => {
        if (keys.length === 0) return Effect.succeed([])
        // One pass, no effect per value: place each reply and check its size.
        const place = (out: Array<Option.Option<CacheEntry.Stored>>, group: ReadonlyArray<number> | undefined, values: ReadonlyArray<Buffer | null>) => {
          for (let j = 0; j < values.length; j++) {
            const index = group === undefined ? j : group[j]!
            const value = values[j] ?? null
            if (value === null) {
              out[index] = Option.none()
              continue
            }
            const bytes = unpacked("getMany", keys[index]!, value, maxValueBytes)
            if (bytes instanceof StoreError) return bytes
            out[index] = Option.some(bytes)
          }
          return undefined
        }
        const read = (group: ReadonlyArray<number> | undefined) =>
          call("getMany", undefined, () => mgetInOrder(group === undefined ? keys : group.map((i) => keys[i]!)))
        const settled = (out: Array<Option.Option<CacheEntry.Stored>>, refused: StoreError | undefined) =>
          refused === undefined ? Effect.succeed(out) : Effect.fail(refused)
        // A single server (or keys of one slot): one MGET, no fiber per group.
        const groups = isCluster ? groupBySlot(keys, true) : undefined
        if (groups === undefined || groups.length === 1) {
          const group = groups?.[0]
          return Effect.flatMap(read(group), (values) => {
            const out = new Array<Option.Option<CacheEntry.Stored>>(keys.length)
            return settled(out, place(out, group, values))
          })
        }
        return Effect.flatMap(
          Effect.forEach(groups, (group) => Effect.map(read(group), (values) => [group, values] as const), { concurrency: "unbounded" }),
          (replies) => {
            const out = new Array<Option.Option<CacheEntry.Stored>>(keys.length)
            let refused: StoreError | undefined
            for (const [group, values] of replies) refused ??= place(out, group, values)
            return settled(out, refused)
          }
        )
      },
      set: (key, value, ttl, wait, since) => Effect.asVoid(writeOne("set", key, value, ttl, wait, since)),
      setMany: (entries, wait) => {
        if (entries.length === 0) return Effect.void
        const bodies: Array<Buffer> = []
        for (const entry of entries) {
          const body = argument("setMany", entry.key, entry.value, maxValueBytes, compressAbove)
          if (body instanceof StoreError) return refuse("setMany", entry.key, body)
          bodies.push(body)
        }
        return Effect.forEach(
          groupBySlot(entries.map((entry) => entry.key), isCluster).flatMap((group) => chunks(group, writeChunk)),
          (group) =>
            Effect.map(
              write("setMany", undefined, wait, (deadline) => {
                const args = [
                  group.length,
                  ...group.map((i) => entries[i]!.key),
                  deadline,
                  ...group.flatMap((i) => [bodies[i]!, pxArgument(entries[i]!.ttl)]),
                  origin
                ]
                // Auto-pipelining routes a command by its first argument, here the key count: on a
                // Cluster, a batch of one slot goes in a pipeline of its own, routed by its keys.
                return isCluster ? execOne(scripts.pipeline().cachekitSetMany(...args)) : scripts.cachekitSetMany(...args)
              }),
              (reply) => group.forEach((i, j) => stampVersion(entries[i]!.value, reply[j + 2] ?? 0))
            ),
          { concurrency: "unbounded", discard: true }
        )
      },
      add: (key, value, ttl, wait) => Effect.map(writeOne("add", key, value, ttl, wait, undefined), (version) => version >= 0),
      delete: (key) => Effect.map(deleteAll("delete", [key]), (n) => n > 0),
      deleteMany: (keys) => deleteAll("deleteMany", keys),
      has: (key) => Effect.map(call("has", key, () => client.exists(key)), (n) => n > 0),
      clear: (prefix) => {
        const nodes: ReadonlyArray<IORedis> = isCluster ? (client as Cluster).nodes("master") : [client as IORedis]
        const removed = Effect.map(
          Effect.forEach(nodes, (node) => scanNode(node, prefix), { concurrency: "unbounded" }),
          (counts) => counts.reduce((a, b) => a + b, 0)
        )
        if (origin === "") return removed
        // With a bus: one message for the prefix once the walk ends, however it ends (done, failed or
        // cut short), since what it removed is gone either way; sent in the background, so a clear cut
        // short by its timeout does not wait for it.
        const publish = Effect.ignore(call("clear", prefix, () => {
          const message = CacheBus.encode({ _tag: "Clear", origin, prefix, version: serverClock.now() ?? Date.now() * 1000 })
          return client.publish(CacheBus.channelOf(CacheStore.namespaceOf(prefix)), message)
        }))
        return Effect.ensuring(removed, Effect.asVoid(Effect.forkDaemon(publish)))
      },
      expire: (key, ttl, now, since) =>
        Effect.map(
          call("expire", key, () =>
            scripts.cachekitExpire(
              key,
              tombstoneKeyOf(key),
              Duration.isFinite(ttl) ? String(Math.max(1, Math.ceil(Duration.toMillis(ttl)))) : "",
              String(now),
              since === undefined ? "" : String(since),
              origin
            )),
          ([outcome]) => outcome > 0
        ),
      increment: (key, by, ttl) => {
        const px = pxArgument(ttl)
        return call("increment", key, () => scripts.cachekitIncrement(key, String(by), px === "-" ? "" : px))
      },
      counter: (key) =>
        Effect.flatMap(call("get", key, () => getInOrder(key)), (value) => {
          if (value === null) return Effect.succeedNone
          const counter = CacheStore.counterOf(value)
          return counter === undefined ? Effect.fail(CacheStore.notACounter(storeName, key, "get")) : Effect.succeed(Option.some(counter))
        }),
      raw: { kind: "redis", client },
      currentVersion: Effect.sync(() => serverClock.now())
    })
    // The first writes need the server's clock: learn it before the store is used (one TIME; not
    // waited for when Redis is not reachable, nor for longer than a command).
    return Effect.as(timeoutRealTo(Effect.promise(serverClock.measure), commandTimeout ?? 1_000, Effect.void), store)
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
