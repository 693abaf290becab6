/**
 * HTTP response caching for @effect/platform apps, on whatever cache layer the program provides
 * (memory, Redis, two layers), as a shared cache per RFC 9111: GET responses are stored with their
 * status, header fields and body bytes under their URL and the request's values of the fields their
 * `Vary` names; HEAD reads what GET stored. Request and response `Cache-Control` are honoured; a
 * stored response answers `If-None-Match` / `If-Modified-Since` with 304; a stale stored response
 * with a validator (and a `no-cache` one, at every use) is revalidated with the app by a conditional
 * request, whose 304 refreshes it without the app making its body again (RFC 9111 §4.3);
 * `stale-while-revalidate` and `stale-if-error` (RFC 5861) serve a stale response through the
 * cache's grace and soft timeout; every response carries a `Cache-Status` field (RFC 9211); one
 * request per URL runs the app (or revalidates with it) at a time, across a fleet when the cache has
 * a distributed lock.
 *
 * Also a request-scoped cache: a fresh, bounded memory cache per request, dropped when it ends.
 *
 * @since 0.3.0
 */
import * as Headers from "@effect/platform/Headers"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cookies from "@effect/platform/Cookies"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Cache from "./CacheCore.js"
import { InvalidKeyError, type StoreError } from "./CacheError.js"
import * as CacheKey from "./CacheKey.js"
import * as CacheSerializer from "./CacheSerializer.js"
import * as CacheStore from "./CacheStore.js"
import * as MemoryStore from "./CacheStore/Memory.js"
import * as Keyspace from "./Keyspace.js"
import * as Rules from "./internal/httpRules.js"
import { sha256Base64Url } from "./internal/hash.js"
import { timeoutRealTo } from "./internal/realTime.js"

/**
 * Options of {@link middleware}.
 *
 * @example
 * ```ts
 * import { HttpCache } from "effect-cachekit"
 *
 * const options: HttpCache.Options = { defaultTtl: "1 minute", maxBodyBytes: 512 * 1024, keepForRevalidation: "1 hour", name: "pages" }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface Options<Id = Cache.Cache> {
  /**
   * The heuristic freshness lifetime (RFC 9111 §4.2.2): how long a response without `max-age`,
   * `s-maxage` or `Expires` is stored, when its status is heuristically cacheable (200, 203, 204, 300,
   * 301, 308, 404, 405, 410, 414, 501) or it says `public`; at most 10% of the time since its
   * `Last-Modified` when it has one. Default none: such responses are not stored.
   */
  readonly defaultTtl?: Duration.DurationInput | undefined
  /** The largest body stored, in bytes; a larger one is passed through, not stored. Default 1 MiB. */
  readonly maxBodyBytes?: number | undefined
  /**
   * How long a streamed body is collected before it is passed through instead (real time: what was
   * read is sent first, then the rest of the stream), not stored. Default 5 seconds.
   */
  readonly bodyTimeout?: Duration.DurationInput | undefined
  /**
   * The keyspaces' names (`<name>` for responses, `<name>.vary` for each URL's Vary fields) and the
   * prefix of the tags that invalidate a URL: two middlewares over one cache need different names.
   * Letters, digits, `_`, `-` and `.`. Default `"http"`.
   */
  readonly name?: string | undefined
  /**
   * How long a stored 200 response with a validator (`ETag` or `Last-Modified`) is kept past its
   * freshness lifetime (and its RFC 5861 windows, when longer), so that once stale it is revalidated
   * with the app by a conditional request (a 304 then refreshes it, its body kept) instead of being
   * produced again; a response with `no-cache` or `max-age=0` is kept for it too, and revalidated at
   * every use. Nothing is served stale for it: only the RFC 5861 windows and `max-stale` serve a stale
   * response. `0` keeps none. Default 10 minutes.
   */
  readonly keepForRevalidation?: Duration.DurationInput | undefined
  /** This cache's name in `Cache-Status`. Default `"effect-cachekit"`. */
  readonly cacheStatusName?: string | undefined
  /** The cache to store responses in. Default {@link Cache.Cache}. */
  readonly cache?: Context.Tag<Id, Cache.Service> | undefined
}

/** A stored response: what a later request is answered with. */
const StoredResponse = Schema.TaggedStruct("Response", {
  status: Schema.Number,
  headers: Schema.Record({ key: Schema.String, value: Schema.String }),
  body: Schema.Uint8ArrayFromSelf,
  /** The app's body was empty (`HttpServerResponse.empty`): rebuilt without one. */
  empty: Schema.Boolean,
  /** When the response came from the app (the Clock's epoch milliseconds). */
  storedAt: Schema.Number,
  /** Its corrected initial age then, in milliseconds (RFC 9111 §4.2.3). */
  initialAge: Schema.Number,
  /** Its freshness lifetime, in milliseconds. */
  lifetime: Schema.Number,
  /** How long past its lifetime it may be served while revalidated in the background (0 with must-revalidate). */
  staleWhileRevalidate: Schema.Number,
  /** How long past its lifetime it may be served when the app fails (0 with must-revalidate). */
  staleIfError: Schema.Number,
  /** How long past its lifetime it is kept to be revalidated with a conditional request (0 without a validator). */
  keep: Schema.Number,
  /** `must-revalidate` or `proxy-revalidate`: once stale, never served without revalidation (not even for `max-stale`). */
  mustRevalidate: Schema.Boolean,
  /** An unqualified `no-cache`: revalidated with the app at every use, never served as it is. */
  noCache: Schema.Boolean,
  /** Stored from the app's 304 to the cache's conditional request (the body kept from before). */
  validated: Schema.Boolean,
  /** The fields its Vary names (sorted, lower case) and the values the request that produced it had. */
  varyNames: Schema.Array(Schema.String),
  varyValues: Schema.Array(Schema.NullOr(Schema.String))
})
type StoredResponse = typeof StoredResponse.Type

/** What a run gives requests that joined it when its response is not stored: they run the app themselves. */
/**
 * A response not stored: why (as `Cache-Status` says it), and whether the reason is the resource's own
 * (`private`, `no-store`, ...: what was stored for the request is dropped) rather than the request's or
 * the exchange's (a cookie for a new visitor, a body too large: what was stored stays).
 */
const Passed = Schema.TaggedStruct("Passed", { detail: Schema.String, withdraws: Schema.Boolean })
type Passed = typeof Passed.Type

const Produced = Schema.Union(StoredResponse, Passed)
type Produced = typeof Produced.Type

/** The app answered with an error status (500, 502, 503, 504): a failure, so `stale-if-error` can serve a stale response. */
class OriginError {
  constructor(readonly status: number) {}
}

/** What one request's own run of the app gave: the response to send it, and what (if anything) was stored. */
interface Own {
  readonly response: HttpServerResponse.HttpServerResponse
  readonly produced: Produced
  readonly status: number
}

const defaultMaxBodyBytes = 1024 * 1024

/** A tag per URL: every stored variant of it and its Vary list carry it, so one tag invalidation drops them. */
const urlTag = (name: string, primary: string): string =>
  `${name}:url:${sha256Base64Url(primary).slice(0, 22)}`

/** Sends `response` with this cache's member appended to `Cache-Status`, and `Age` when given. */
const finish = (
  response: HttpServerResponse.HttpServerResponse,
  statusName: string,
  status: Rules.CacheStatus,
  ageMillis?: number
): HttpServerResponse.HttpServerResponse => {
  const member = Rules.formatCacheStatus(statusName, status)
  const existing = response.headers["cache-status"]
  const headers: Record<string, string> = { "cache-status": existing === undefined ? member : `${existing}, ${member}` }
  if (ageMillis !== undefined) headers["age"] = String(Math.floor(Math.max(0, ageMillis) / 1000))
  return HttpServerResponse.setHeaders(response, headers)
}

/** A stored response as an HttpServerResponse. */
const rebuild = (stored: StoredResponse): HttpServerResponse.HttpServerResponse =>
  stored.empty
    ? HttpServerResponse.empty({ status: stored.status, headers: Headers.fromInput(stored.headers) })
    : HttpServerResponse.raw(stored.body, {
      status: stored.status,
      headers: Headers.fromInput(stored.headers),
      contentLength: stored.body.length
    })

/** A 304 for a stored response: its validators and caching fields, no body. */
const notModifiedOf = (stored: StoredResponse): HttpServerResponse.HttpServerResponse => {
  const headers: Record<string, string> = {}
  for (const field of Rules.notModifiedFields) {
    const value = stored.headers[field]
    if (value !== undefined) headers[field] = value
  }
  return HttpServerResponse.empty({ status: 304, headers })
}

/** How old a stored response is at `now`, in milliseconds (RFC 9111 §4.2.3). */
const currentAge = (stored: StoredResponse, now: number): number => stored.initialAge + Math.max(0, now - stored.storedAt)

/** Remaining freshness in whole seconds (negative once stale), for `Cache-Status`'s `ttl`. */
const ttlSeconds = (stored: StoredResponse, now: number): number => Math.floor((stored.lifetime - currentAge(stored, now)) / 1000)

/** The entry's ttl: what is left of the lifetime when it is stored (at least 1 ms, so a stale-only response still gets its grace). */
const entryTtl = (produced: Produced): Duration.Duration =>
  produced._tag === "Response" ? Duration.millis(Math.max(1, produced.lifetime - produced.initialAge)) : Duration.zero

/**
 * How long the entry is kept stale: the largest of the RFC 5861 windows and the time it is kept to be
 * revalidated, less how stale it already arrived.
 */
const staleWindow = (stored: Pick<StoredResponse, "staleWhileRevalidate" | "staleIfError" | "keep" | "initialAge" | "lifetime">): number =>
  Math.max(0, Math.max(stored.staleWhileRevalidate, stored.staleIfError, stored.keep) - Math.max(0, stored.initialAge - stored.lifetime))

/** Whether the cache revalidates a stored response with a conditional request: a 200 with a validator. */
const isRevalidatable = (stored: StoredResponse): boolean =>
  stored.status === 200 && Rules.validatorFields(stored.headers) !== undefined

const entryGrace = (produced: Produced): Duration.Duration =>
  produced._tag === "Response" ? Duration.millis(staleWindow(produced)) : Duration.zero

/** Whether a stored response was produced for a request with these Vary values. */
const matchesVary = (stored: StoredResponse, headers: Readonly<Record<string, string | undefined>>): boolean => {
  const values = Rules.varyValues(stored.varyNames, headers)
  return values.every((value, i) => value === stored.varyValues[i])
}

/** What a request asks of the cache (RFC 9111 §5.2.1). */
interface Asked {
  /** `no-cache`, `max-age=0` or `Pragma: no-cache`: go to the app, store what it answers. */
  readonly reload: boolean
  readonly noStore: boolean
  readonly onlyIfCached: boolean
  readonly maxAge: number | undefined
  readonly minFresh: number | undefined
  /** `max-stale` (Infinity without an argument). */
  readonly maxStale: number | undefined
}

const askedOf = (headers: Readonly<Record<string, string | undefined>>): Asked => {
  const cacheControl = headers["cache-control"]
  const directives = Rules.parseCacheControl(cacheControl)
  const pragmaNoCache = cacheControl === undefined && /(^|,)\s*no-cache\s*(,|$)/i.test(headers["pragma"] ?? "")
  const maxAge = Rules.deltaSeconds(directives, "max-age")
  const minFresh = Rules.deltaSeconds(directives, "min-fresh")
  const maxStale = directives.get("max-stale")
  return {
    reload: directives.has("no-cache") || maxAge === 0 || maxAge === null || pragmaNoCache,
    noStore: directives.has("no-store"),
    onlyIfCached: directives.has("only-if-cached"),
    maxAge: maxAge ?? undefined,
    minFresh: minFresh ?? undefined,
    maxStale: maxStale === undefined ? undefined : maxStale === true ? Infinity : Rules.deltaSeconds(directives, "max-stale") ?? 0
  }
}

/**
 * One stored response found for a request: whether it is stale for the cache (past its ttl, within
 * its grace) and how old it is.
 */
interface Found {
  readonly stored: StoredResponse
  readonly isStale: boolean
}

/** What the cache holds for a URL: the Vary fields it knows for it, and the response matching the request, if any. */
interface Lookup {
  readonly names: ReadonlyArray<string>
  readonly found: Found | undefined
  /** Something is stored for the URL (a Vary list, or a response for other Vary values). */
  readonly known: boolean
  /** A read failed (the store is down): nothing is claimed stored. */
  readonly failed: boolean
}

/** A request's body read into bytes within a bound, or the response to pass through instead. */
type Captured =
  | { readonly _tag: "Bytes"; readonly bytes: Uint8Array; readonly empty: boolean }
  | { readonly _tag: "Pass"; readonly response: HttpServerResponse.HttpServerResponse; readonly detail: string }

const encoder = new TextEncoder()

const concat = (chunks: ReadonlyArray<Uint8Array>, size: number): Uint8Array => {
  const out = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.length
  }
  return out
}

/**
 * Reads a response's body into bytes, at most `limit` of them and, for a stream, within `timeoutMillis`
 * of real time. A body of another kind (form data, a Node stream or other raw object), a larger one,
 * or a stream that fails or takes longer gives the response to pass through: a stream then sends what
 * was read first and the rest after it, as the app made it.
 */
const captureBody = (
  response: HttpServerResponse.HttpServerResponse,
  limit: number,
  timeoutMillis: number
): Effect.Effect<Captured> => {
  const body = response.body
  const pass = (detail: string): Captured => ({ _tag: "Pass", response, detail })
  const bytes = (data: Uint8Array, empty = false): Captured =>
    data.length > limit ? pass("body-too-large") : { _tag: "Bytes", bytes: data, empty }
  switch (body._tag) {
    case "Empty":
      return Effect.succeed(bytes(new Uint8Array(0), true))
    case "Uint8Array":
      return Effect.succeed(bytes(body.body))
    case "Raw":
      if (typeof body.body === "string") return Effect.succeed(bytes(encoder.encode(body.body)))
      if (body.body instanceof Uint8Array) return Effect.succeed(bytes(body.body))
      return Effect.succeed(pass("body-not-bytes"))
    case "FormData":
      return Effect.succeed(pass("body-not-bytes"))
    case "Stream":
      if (body.contentLength !== undefined && body.contentLength > limit) return Effect.succeed(pass("body-too-large"))
      return collect(response, body, limit, timeoutMillis)
  }
}

/** Collects a streamed body (see {@link captureBody}); the pull lives in a scope of its own, closed when the stream is done. */
const collect = (
  response: HttpServerResponse.HttpServerResponse,
  body: HttpBody.Stream,
  limit: number,
  timeoutMillis: number
): Effect.Effect<Captured> =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const pull = yield* Scope.extend(Stream.toPull(body.stream), scope)
    const chunks: Array<Uint8Array> = []
    let size = 0
    const deadline = Date.now() + timeoutMillis
    // What is left to send after the bytes read: a pending pull first, then the rest of the stream.
    const passRest = (
      detail: string,
      pending: Fiber.Fiber<Chunk.Chunk<Uint8Array>, Option.Option<unknown>> | undefined,
      failure?: Cause.Cause<unknown>
    ): Effect.Effect<Captured> =>
      Effect.gen(function*() {
        let next = pending
        const resume = Effect.suspend(() => {
          if (next === undefined) return pull
          const fiber = next
          next = undefined
          return Fiber.join(fiber)
        })
        const rest = failure === undefined ? Stream.repeatEffectChunkOption(resume) : Stream.failCause(failure)
        const stream = Stream.fromIterable(chunks).pipe(Stream.concat(rest), Stream.ensuring(Scope.close(scope, Exit.void)))
        // Closed with the request, if the stream is never run (a HEAD, or a run in the background).
        const requestScope = yield* Effect.serviceOption(Scope.Scope)
        if (Option.isSome(requestScope)) yield* Scope.addFinalizer(requestScope.value, Scope.close(scope, Exit.void))
        return {
          _tag: "Pass",
          detail,
          response: HttpServerResponse.setBody(response, HttpBody.stream(stream, body.contentType, body.contentLength))
        } satisfies Captured
      })
    for (;;) {
      const pending = yield* Effect.forkIn(pull, scope)
      const settled = yield* timeoutRealTo(
        Effect.map(Fiber.await(pending), Option.some),
        Math.max(0, deadline - Date.now()),
        Effect.succeedNone
      )
      if (Option.isNone(settled)) return yield* passRest("body-timeout", pending)
      const exit = settled.value
      if (Exit.isSuccess(exit)) {
        for (const chunk of exit.value) {
          chunks.push(chunk)
          size += chunk.length
        }
        if (size > limit) return yield* passRest("body-too-large", undefined)
        continue
      }
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure) && Option.isNone(failure.value)) {
        // The end of the stream.
        yield* Scope.close(scope, Exit.void)
        return { _tag: "Bytes", bytes: concat(chunks, size), empty: false } satisfies Captured
      }
      // The stream failed: what was read, then the same failure, as the app's response would have.
      const cause = Option.isSome(failure) && Option.isSome(failure.value)
        ? Cause.fail(failure.value.value)
        : (exit.cause as Cause.Cause<unknown>)
      return yield* passRest("body-failed", undefined, cause)
    }
  })

/**
 * Whether and how a response is stored (RFC 9111 §3), read from its status and header fields before its
 * body: the record to store (its body still to be read), or why not.
 */
const storability = (
  response: HttpServerResponse.HttpServerResponse,
  asked: Asked,
  authorized: boolean,
  heuristic: number | undefined,
  keepMillis: number,
  times: { readonly requestTime: number; readonly responseTime: number }
):
  | { readonly _tag: "Store"; readonly record: Omit<StoredResponse, "body" | "empty" | "varyValues" | "validated" | "_tag"> }
  | { readonly _tag: "Pass"; readonly detail: string; readonly withdraws: boolean } =>
{
  const headers = response.headers
  const directives = Rules.parseCacheControl(headers["cache-control"])
  /** `withdraws`: the resource itself may not be kept (see `Passed`). */
  const pass = (detail: string, withdraws = false) => ({ _tag: "Pass", detail, withdraws }) as const
  if (asked.noStore) return pass("request-no-store")
  if (directives.has("no-store")) return pass("no-store", true)
  const privateFields = Rules.qualifiedFields(directives, "private")
  if (directives.get("private") === true) return pass("private", true)
  const noCacheFields = Rules.qualifiedFields(directives, "no-cache")
  // An unqualified no-cache: stored to be revalidated with the app at every use, which saves the app
  // the body only when the response has a validator to send back (and the cache keeps it for that).
  const noCache = directives.get("no-cache") === true
  const status = response.status
  const revalidatable = status === 200 && Rules.validatorFields(headers) !== undefined && keepMillis > 0
  if (noCache && !revalidatable) return pass("no-cache", true)
  const isPublic = directives.has("public")
  // A shared cache stores a response to a request with Authorization only when the response says so (§3.5).
  if (authorized && !(isPublic || directives.has("s-maxage") || directives.has("must-revalidate"))) return pass("authorization")
  if (!Rules.isUnderstood(status)) return pass("status")
  const names = Rules.varyNames(headers["vary"])
  if (names[0] === "*") return pass("vary-star", true)
  const strip = [...(privateFields ?? []), ...(noCacheFields ?? [])]
  // Set-Cookie is never stored; a response that sets one is stored only when its Cache-Control names
  // the field in private="..." or no-cache="..." (the requester still gets its cookie).
  const setsCookie = !Cookies.isEmpty(response.cookies) || headers["set-cookie"] !== undefined
  if (setsCookie && !strip.includes("set-cookie")) return pass("set-cookie")
  const date = Rules.httpDate(headers["date"])
  const dateValue = date === undefined || Number.isNaN(date) ? times.responseTime : date
  const heuristicAllowed = Rules.heuristicallyCacheable.has(status) || isPublic
  // A no-cache response is never served fresh: without a lifetime of its own it may still be stored
  // (RFC 9111 §3: its status or `public` allows it), to be revalidated.
  const freshness = Rules.freshnessLifetime(directives, headers, dateValue, heuristic, heuristicAllowed) ??
    (noCache && heuristicAllowed ? { lifetime: 0, explicit: false } : undefined)
  if (freshness === undefined) return heuristic === undefined ? pass("no-freshness", true) : pass("status")
  // s-maxage carries proxy-revalidate's semantics for a shared cache (RFC 9111 §5.2.2.10).
  const mustRevalidate = directives.has("must-revalidate") || directives.has("proxy-revalidate") || directives.has("s-maxage")
  // Neither must-revalidate nor no-cache lets a stale response be served (RFC 9111 §4.2.4).
  const window = (name: string) => mustRevalidate || noCache ? 0 : Rules.deltaSeconds(directives, name) ?? 0
  const age = Rules.initialAge(headers, times.requestTime, times.responseTime)
  const record = {
    status,
    headers: Rules.storedHeaders(
      date === undefined ? { ...headers, date: new Date(times.responseTime).toUTCString() } : headers,
      strip
    ),
    storedAt: times.responseTime,
    initialAge: age,
    lifetime: freshness.lifetime,
    staleWhileRevalidate: window("stale-while-revalidate"),
    staleIfError: window("stale-if-error"),
    keep: revalidatable ? keepMillis : 0,
    mustRevalidate,
    noCache,
    varyNames: names
  }
  if (record.lifetime - age <= 0 && staleWindow(record) === 0) {
    return pass(noCache ? "no-cache" : "stale-on-arrival", true)
  }
  return { _tag: "Store", record }
}

/**
 * A middleware for @effect/platform `HttpApp`s (an `HttpRouter` among them) that caches GET responses
 * in the cache in context, as a shared cache (RFC 9111), and adds that cache to the app's requirements.
 *
 * - **Stored**: GET responses with an understood status whose freshness is explicit (`s-maxage`, then
 *   `max-age`, then `Expires`), or heuristically cacheable ones (200, 203, 204, 300, 301, 308, 404,
 *   405, 410, 414, 501, or any `public` one) for `defaultTtl`; a 200 with an unqualified `no-cache`
 *   only when it has a validator (`ETag` or `Last-Modified`), to be revalidated at every use; never
 *   `no-store`, `private`, `Vary: *`, 206, 304, the errors 500/502/503/504, a response to a request
 *   with `Authorization` unless it says `public`, `s-maxage` or `must-revalidate`, nor one that sets a
 *   cookie unless its Cache-Control names `set-cookie` in `private="..."` or `no-cache="..."` (then
 *   stored without it). A body over `maxBodyBytes`, a stream not done within `bodyTimeout`, or a body
 *   that is not bytes (form data, a Node stream) is passed through, not stored.
 * - **Keys**: host, path and query with its parameters sorted by name (the values of a repeated one
 *   keep their order), then the request's values of the fields the URL's stored `Vary` names.
 * - **Served**: a fresh stored response, with `Age`; a stored 200 answers a matching `If-None-Match`
 *   (else `If-Modified-Since`) with 304. HEAD is answered from a stored GET (a HEAD miss goes to the
 *   app, not stored). A request's `no-cache` / `max-age=0` / `Pragma: no-cache` goes to the app
 *   (revalidating what is stored, below) and stores its answer; `max-age`, `min-fresh` and
 *   `max-stale` are honoured; `only-if-cached` gets a 504 when nothing suitable is stored; `no-store`
 *   is served from the cache but never stores.
 * - **Revalidation** (RFC 9111 §4.3): a stored 200 with an `ETag` or `Last-Modified` is kept
 *   `keepForRevalidation` (10 minutes) past its freshness; once stale, or when the request says
 *   `no-cache` / `max-age=0`, or at every use when the response said `no-cache`, the app gets the
 *   request with `If-None-Match` (its ETag) and `If-Modified-Since` (its Last-Modified) in place of
 *   the client's own conditions. Its 304 (about that response: the same ETag, weak comparison, else
 *   the same Last-Modified) updates the stored header fields except those of the body, computes its
 *   freshness again and stores it; the client gets the stored body (or a 304 when its own condition
 *   matches). Its 200 is stored as a miss's is; a 304 about another representation sends the request
 *   again without conditions. The app sees conditional fields only when the cache added them.
 * - **Stale**: within `stale-while-revalidate` the stale response is served at once and the app
 *   revalidates it in the background (conditional, as above); within `stale-if-error`, when the app
 *   fails or answers 500/502/503/504 (each request asks the app again: no backoff after a failure).
 *   Neither with `must-revalidate`, `proxy-revalidate`, `s-maxage` (RFC 9111 §5.2.2.10) or
 *   `no-cache`; a response kept only to be revalidated is never served stale (but to `max-stale`,
 *   unless it says `must-revalidate` or `s-maxage`). A `Range` request is answered whole from a
 *   stored response, else it goes to the app alone.
 * - **One run per URL**: concurrent requests for a URL share one run of the app (one conditional
 *   request, when revalidating), across instances when the cache has a distributed lock
 *   (`Cache.layerRedis`); a request whose run's response is not stored (or does not match its Vary
 *   values) runs the app itself. A request with `Authorization` never joins another's run.
 * - **Invalidation**: a POST, PUT, PATCH or DELETE answered below 400 invalidates the URL's stored
 *   responses, and those of its `Location` and `Content-Location` on the same host (RFC 9111 §4.4).
 * - **Failures**: the app's failures reach the caller unchanged (only `stale-if-error` serves a stale
 *   response instead); a failing cache never fails a request: it answers from the app.
 *
 * Every response gets a `Cache-Status` member (`hit`, `fwd=uri-miss|vary-miss|stale|request|method`,
 * `fwd-status`, `ttl`, `stored`, `collapsed`, `detail`); a revalidated response says
 * `fwd=stale; fwd-status=304; ttl=60; stored` (`fwd=request` when the request asked for it).
 *
 * @example
 * ```ts
 * import { HttpRouter, HttpServerResponse } from "@effect/platform"
 * import { Effect } from "effect"
 * import { HttpCache } from "effect-cachekit"
 *
 * const app = HttpRouter.empty.pipe(
 *   HttpRouter.get("/products", Effect.succeed(HttpServerResponse.text("...", { headers: { "cache-control": "public, max-age=60" } }))),
 *   HttpCache.middleware({ defaultTtl: "1 minute" })
 * )
 * ```
 *
 * @since 0.3.0
 * @category middleware
 */
export const middleware = <Id = Cache.Cache>(options: Options<Id> = {}) => {
  const name = options.name ?? "http"
  const statusName = options.cacheStatusName ?? "effect-cachekit"
  const maxBodyBytes = options.maxBodyBytes ?? defaultMaxBodyBytes
  if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes < 0) {
    throw new RangeError(`effect-cachekit: HttpCache maxBodyBytes must be a non-negative integer, got ${maxBodyBytes}`)
  }
  const bodyTimeoutMillis = Duration.toMillis(Duration.decode(options.bodyTimeout ?? "5 seconds"))
  const heuristic = options.defaultTtl === undefined ? undefined : Duration.toMillis(Duration.decode(options.defaultTtl))
  const keepMillis = Duration.toMillis(Duration.decode(options.keepForRevalidation ?? "10 minutes"))
  if (!(keepMillis >= 0) || !Number.isFinite(keepMillis)) {
    throw new RangeError(`effect-cachekit: HttpCache keepForRevalidation must be a finite, non-negative duration`)
  }
  const cacheTag = (options.cache ?? Cache.Cache) as unknown as Context.Tag<Id, Cache.Service>
  const Responses = Keyspace.make({
    name,
    key: CacheKey.hashed(Schema.Struct({ primary: Schema.String, variant: Schema.String })),
    value: Produced,
    serializer: CacheSerializer.msgpack,
    tags: (key) => [urlTag(name, key.primary)],
    // A failed run never makes the next request skip the app: past stale-if-error nothing stale may be
    // served (an entry kept only to be revalidated), and within it the app is asked again (one run per
    // key at a time), as RFC 5861 has it.
    graceBackoff: Duration.zero,
    cache: cacheTag
  })
  const VaryLists = Keyspace.make({
    name: `${name}.vary`,
    key: CacheKey.hashed(Schema.String),
    value: Schema.Array(Schema.String),
    tags: (primary) => [urlTag(name, primary)],
    cache: cacheTag
  })

  /** Reads never fail a request: a store failure is a miss, noted (`undefined`). */
  const readResponse = (primary: string, variant: string): Effect.Effect<Option.Option<Found> | undefined, never, Id> =>
    Responses.getStale({ primary, variant }).pipe(
      Effect.map(Option.flatMap((found) =>
        found.value._tag === "Response" ? Option.some<Found>({ stored: found.value, isStale: found.isStale }) : Option.none()
      )),
      Effect.orElseSucceed(() => undefined)
    )

  const lookup = (primary: string, headers: Headers.Headers): Effect.Effect<Lookup, never, Id> =>
    Effect.gen(function*() {
      // One read after the other: reading both at once would fork a fiber per read, which costs a
      // request more than waiting for the second read (on memory) or its round trip (on Redis).
      const vary = yield* Effect.orElseSucceed(VaryLists.get(primary), () => undefined)
      const names = vary === undefined ? [] : Option.getOrElse(vary, () => [] as ReadonlyArray<string>)
      const candidate = yield* readResponse(primary, names.length === 0 ? "" : Rules.variantOf(names, headers))
      const found = candidate === undefined ? undefined : Option.getOrUndefined(Option.filter(candidate, (found) => matchesVary(found.stored, headers)))
      return {
        names,
        found,
        known: (vary !== undefined && Option.isSome(vary)) || (candidate !== undefined && Option.isSome(candidate)),
        failed: vary === undefined || candidate === undefined
      }
    })

  /** Writes that must not fail a request: logged at debug level, never raised. */
  const quietly = <E>(effect: Effect.Effect<unknown, E, Id>): Effect.Effect<void, never, Id> =>
    Effect.catchAllCause(Effect.asVoid(effect), (cause) => Effect.logDebug("effect-cachekit: an HTTP cache write failed", cause))

  /**
   * After a request's own run stored a response: the URL's Vary list is written (again, so it lives
   * as long as its newest variant) when the response varies or its fields changed; and the response
   * is written under the key its own Vary gives when that is not the key it was produced under
   * (`elsewhere`).
   */
  const afterProduced = (primary: string, known: ReadonlyArray<string>, stored: StoredResponse, elsewhere: boolean) => {
    const list = sameNames(known, stored.varyNames) && stored.varyNames.length === 0
      ? Effect.void
      : VaryLists.set(primary, stored.varyNames, { ttl: Duration.sum(entryTtl(stored), entryGrace(stored)) })
    const response = elsewhere
      ? Responses.set({ primary, variant: Rules.variantFrom(stored.varyNames, stored.varyValues) }, stored, { ttl: entryTtl, grace: entryGrace })
      : Effect.void
    return quietly(Effect.zipRight(list, response))
  }

  return <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R | Id> => {
    // The request's path, in order; the steps are the functions below.
    return Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const method = request.method
      if (method !== "GET" && method !== "HEAD") return yield* other(request, method)
      const headers = request.headers
      const asked = askedOf(headers)
      const primary = Rules.primaryKey(headers["host"] ?? "", request.url)
      const now = yield* Clock.currentTimeMillis
      const found = yield* lookup(primary, headers)
      const answer = fromCache(found, asked, now, headers)
      if (answer !== undefined) return answer
      if (asked.onlyIfCached) {
        return finish(HttpServerResponse.empty({ status: 504 }), statusName, { detail: "only-if-cached" })
      }
      // A stored no-cache response is revalidated as a stale one is.
      const fwd: Rules.CacheStatus["fwd"] = asked.reload
        ? "request"
        : found.found !== undefined && !found.found.isStale && !found.found.stored.noCache
        ? "request"
        : found.found !== undefined
        ? "stale"
        : found.known
        ? "vary-miss"
        : "uri-miss"
      // HEAD reads what GET stored; a HEAD miss goes to the app as it is, and is not stored. So does a
      // Range request (a stored response answers it whole; the app's 206 is not stored).
      if (method === "HEAD") return yield* alone(request, fwd, "head")
      if (headers["range"] !== undefined) return yield* alone(request, fwd, "range")
      // A request with credentials never shares another's run, nor gives its response to another.
      if (headers["authorization"] !== undefined) return yield* authorizedRun(request, primary, found, asked, fwd)
      if (asked.noStore) return yield* alone(request, fwd, "request-no-store")
      return yield* sharedRun(request, primary, found, asked, fwd, now, 0)
    })

    /**
     * A stored response the request accepts, with `Age` and `Cache-Status` (a 304 when its conditions
     * match); `undefined` when it must go to the app.
     */
    function fromCache(found: Lookup, asked: Asked, now: number, headers: Headers.Headers): HttpServerResponse.HttpServerResponse | undefined {
      const entry = found.found
      if (entry === undefined) return undefined
      const stored = entry.stored
      // A no-cache response is revalidated with the app at every use (RFC 9111 §5.2.2.4).
      if (stored.noCache) return undefined
      const age = currentAge(stored, now)
      const remaining = stored.lifetime - age
      let detail: string | undefined
      if (!entry.isStale) {
        if (asked.reload) return undefined
        if (asked.maxAge !== undefined && age > asked.maxAge) return undefined
        if (asked.minFresh !== undefined && remaining < asked.minFresh) return undefined
      } else {
        // A stale response only for a request that accepts it (max-stale), only while it is kept, and
        // never once must-revalidate says it needs the app (§5.2.2.2).
        if (stored.mustRevalidate || asked.reload || asked.maxStale === undefined || -remaining > asked.maxStale) return undefined
        detail = "max-stale"
      }
      return served(stored, headers, { hit: true, ttl: ttlSeconds(stored, now), detail }, age)
    }

    /** A stored response sent to a request: a 304 when the request's conditions match it. */
    function served(stored: StoredResponse, headers: Headers.Headers, status: Rules.CacheStatus, age: number | undefined) {
      const response = stored.status === 200 && Rules.notModified(headers, stored.headers) ? notModifiedOf(stored) : rebuild(stored)
      return finish(response, statusName, status, age)
    }

    /** Methods other than GET and HEAD go to the app; an unsafe one that succeeded invalidates its URLs (RFC 9111 §4.4). */
    function other(request: HttpServerRequest.HttpServerRequest, method: string) {
      return Effect.gen(function*() {
        const response = yield* app
        if (method !== "OPTIONS" && method !== "TRACE" && response.status < 400) {
          const host = request.headers["host"] ?? ""
          const targets = [Rules.primaryKey(host, request.url)]
          for (const field of ["location", "content-location"]) {
            const value = response.headers[field]
            if (value === undefined) continue
            try {
              const url = new URL(value, `http://${host || "localhost"}`)
              if (host === "" ? url.host === "localhost" : url.host === host.toLowerCase()) {
                targets.push(Rules.primaryKey(host, url.pathname + url.search))
              }
            } catch {
              // Not a URL: nothing to invalidate.
            }
          }
          yield* quietly(Effect.flatMap(cacheTag, (cache) => cache.invalidateTags(targets.map((target) => urlTag(name, target)))))
        }
        return finish(response, statusName, { fwd: "method" })
      })
    }

    /** Runs the app for this request alone: nothing stored, nothing shared. */
    function alone(request: HttpServerRequest.HttpServerRequest, fwd: Rules.CacheStatus["fwd"], detail: string) {
      return Effect.map(
        Effect.provideService(app, HttpServerRequest.HttpServerRequest, request),
        (response) => finish(response, statusName, { fwd, fwdStatus: response.status, detail })
      )
    }

    /**
     * Runs the app once for this request (its own conditional fields removed, so the answer can be
     * stored): the response to send back and what to store, or an `OriginError` for an error status.
     * With a stored response to revalidate (`candidate`: a 200 with a validator), the request is made
     * conditional on it (RFC 9111 §4.3.1); the app's 304 then updates it (§4.3.4), its body kept, and
     * the requester gets it as a 200 (or its own 304). A 304 about another representation sends the
     * request again, unconditional.
     */
    function produce(
      request: HttpServerRequest.HttpServerRequest,
      asked: Asked,
      authorized: boolean,
      candidate: StoredResponse | undefined,
      keep: (own: Own) => void
    ): Effect.Effect<Produced, E | OriginError, R> {
      return Effect.gen(function*() {
        const revalidated = candidate !== undefined && isRevalidatable(candidate) ? candidate : undefined
        const validators = revalidated === undefined ? undefined : Rules.validatorFields(revalidated.headers)
        const unconditional = Headers.remove(request.headers, Rules.conditionalFields)
        const sent = request.modify({ headers: validators === undefined ? unconditional : Headers.setAll(unconditional, validators) })
        const requestTime = yield* Clock.currentTimeMillis
        const response = yield* Effect.provideService(app, HttpServerRequest.HttpServerRequest, sent)
        const responseTime = yield* Clock.currentTimeMillis
        if (revalidated !== undefined && response.status === 304) {
          if (!Rules.selectsStored(revalidated.headers, response.headers)) {
            return yield* produce(request, asked, authorized, undefined, keep)
          }
          return notModified(request, asked, authorized, revalidated, response, { requestTime, responseTime }, keep)
        }
        if (Rules.isOriginError(response.status)) {
          keep({ response, produced: { _tag: "Passed", detail: "error-status", withdraws: false }, status: response.status })
          return yield* Effect.fail(new OriginError(response.status))
        }
        const verdict = storability(response, asked, authorized, heuristic, keepMillis, { requestTime, responseTime })
        if (verdict._tag === "Pass") {
          const produced: Passed = { _tag: "Passed", detail: verdict.detail, withdraws: verdict.withdraws }
          keep({ response, produced, status: response.status })
          return produced
        }
        const body = yield* captureBody(response, maxBodyBytes, bodyTimeoutMillis)
        if (body._tag === "Pass") {
          const produced: Passed = { _tag: "Passed", detail: body.detail, withdraws: false }
          keep({ response: body.response, produced, status: response.status })
          return produced
        }
        const stored: StoredResponse = {
          _tag: "Response",
          ...verdict.record,
          body: body.bytes,
          empty: body.empty,
          validated: false,
          varyValues: Rules.varyValues(verdict.record.varyNames, request.headers)
        }
        // The requester gets the app's own response (its cookies too); a stream it had is replaced by the bytes read.
        const own = response.body._tag === "Stream"
          ? HttpServerResponse.setBody(response, HttpBody.raw(body.bytes, { contentType: response.body.contentType, contentLength: body.bytes.length }))
          : response
        keep({ response: own, produced: stored, status: response.status })
        return stored
      })
    }

    /**
     * The app's 304 to the cache's conditional request: the stored response with its header fields
     * updated from the 304's (§3.2), its freshness, age and windows computed again from them and this
     * exchange's times, stored as a new response would be; when the updated fields no longer allow
     * storing it (a `no-store` now, say), the requester still gets it, and nothing is stored.
     */
    function notModified(
      request: HttpServerRequest.HttpServerRequest,
      asked: Asked,
      authorized: boolean,
      revalidated: StoredResponse,
      response: HttpServerResponse.HttpServerResponse,
      times: { readonly requestTime: number; readonly responseTime: number },
      keep: (own: Own) => void
    ): Produced {
      const headers = Rules.updatedHeaders(revalidated.headers, response.headers, times.responseTime)
      const updated = HttpServerResponse.mergeCookies(
        HttpServerResponse.empty({ status: revalidated.status, headers: Headers.fromInput(headers) }),
        response.cookies
      )
      const verdict = storability(updated, asked, authorized, heuristic, keepMillis, times)
      // A 304 that names other Vary fields: the stored body was chosen by the old ones, so it is served
      // to this request but not stored under the new ones.
      const varies = verdict._tag === "Store" && !sameNames(verdict.record.varyNames, revalidated.varyNames)
      if (verdict._tag === "Pass" || varies) {
        const served: StoredResponse = { ...revalidated, headers: Rules.storedHeaders(headers, []) }
        const produced: Passed = verdict._tag === "Pass"
          ? { _tag: "Passed", detail: verdict.detail, withdraws: verdict.withdraws }
          : { _tag: "Passed", detail: "vary-changed", withdraws: true }
        keep({ response: HttpServerResponse.mergeCookies(rebuild(served), response.cookies), produced, status: response.status })
        return produced
      }
      const stored: StoredResponse = {
        _tag: "Response",
        ...verdict.record,
        body: revalidated.body,
        empty: revalidated.empty,
        validated: true,
        varyValues: Rules.varyValues(verdict.record.varyNames, request.headers)
      }
      keep({ response: HttpServerResponse.mergeCookies(rebuild(stored), response.cookies), produced: stored, status: response.status })
      return stored
    }

    /** The response of a run this request made itself, with its `Cache-Status` (a 304 when its conditions match what was stored). */
    function ownResponse(own: Own, headers: Headers.Headers, fwd: Rules.CacheStatus["fwd"], now: number, failed: boolean) {
      const produced = own.produced
      if (produced._tag === "Response") {
        // With the store failing the write is not claimed: it is tried, and most likely failed too.
        const status: Rules.CacheStatus = failed
          ? { fwd, fwdStatus: own.status, ttl: ttlSeconds(produced, now), detail: "store-error" }
          : { fwd, fwdStatus: own.status, stored: true, ttl: ttlSeconds(produced, now) }
        return produced.status === 200 && Rules.notModified(headers, produced.headers)
          ? finish(notModifiedOf(produced), statusName, status)
          : finish(own.response, statusName, status)
      }
      return finish(own.response, statusName, { fwd, fwdStatus: own.status, detail: produced.detail })
    }

    /** A request with Authorization: its own run, stored (with `set`) only when the response allows it. */
    function authorizedRun(
      request: HttpServerRequest.HttpServerRequest,
      primary: string,
      found: Lookup,
      asked: Asked,
      fwd: Rules.CacheStatus["fwd"]
    ) {
      return Effect.gen(function*() {
        let own: Own | undefined
        const exit = yield* Effect.exit(produce(request, asked, true, found.found?.stored, (kept) => {
          own = kept
        }))
        const now = yield* Clock.currentTimeMillis
        if (Exit.isFailure(exit)) {
          const failure = Cause.failureOption(exit.cause)
          if (own !== undefined && Option.isSome(failure) && failure.value instanceof OriginError) {
            return ownResponse(own, request.headers, fwd, now, found.failed)
          }
          return yield* Effect.failCause(exit.cause as Cause.Cause<E>)
        }
        const produced = exit.value
        if (produced._tag === "Response") yield* afterProduced(primary, found.names, produced, true)
        return ownResponse(own!, request.headers, fwd, now, found.failed)
      })
    }

    /**
     * The shared path: `getOrSet` on the request's key, so one request per key runs the app at a time
     * (fleet-wide with a distributed lock); the response's lifetime is the entry's ttl, its RFC 5861
     * windows the entry's grace; within `stale-while-revalidate` a zero soft timeout answers the stale
     * response at once while the run goes on.
     */
    function sharedRun(
      request: HttpServerRequest.HttpServerRequest,
      primary: string,
      found: Lookup,
      asked: Asked,
      fwd: Rules.CacheStatus["fwd"],
      started: number,
      attempt: number
    ): Effect.Effect<HttpServerResponse.HttpServerResponse, E, R | Id> {
      return Effect.gen(function*() {
        const headers = request.headers
        const variant = Rules.variantOf(found.names, headers)
        const stale = found.found?.isStale === true ? found.found.stored : undefined
        const revalidating = stale !== undefined && stale.staleWhileRevalidate > 0 &&
          currentAge(stale, started) - stale.lifetime <= stale.staleWhileRevalidate
        // A fresh entry the request refused (no-cache, max-age, min-fresh), or a no-cache one, is
        // replaced by a new run (conditional on it, when it has a validator).
        const refresh = asked.reload || (found.found !== undefined && !found.found.isStale)
        let own: Own | undefined
        let ownFailure: Cause.Cause<E | OriginError> | undefined
        let elsewhere: StoredResponse | undefined
        // The Vary writes happen in the run itself, wherever it completes (in the background too).
        // The response the lookup found is the one a conditional request revalidates: should another
        // run have replaced it meanwhile, the app's 200 to the condition stores the new one, and its 304
        // (the stored body is still current) a write the store's versions let through only if nothing
        // newer landed.
        const run = produce(request, asked, false, found.found?.stored, (kept) => {
          own = kept
        }).pipe(
          Effect.tap((produced) => {
            // The app answered that the resource may not be kept (private, no-store, no-cache without a
            // validator, Vary: *, no freshness, or a 304 that says so or names other Vary fields): what
            // was stored for the request is dropped rather than kept to be served stale. An answer not
            // kept for a reason of this request or this exchange (a cookie set for a new visitor, a body
            // too large or too slow, a status such as 429) leaves it.
            if (produced._tag !== "Response") {
              return found.found === undefined || !produced.withdraws ? Effect.void : quietly(Responses.invalidate({ primary, variant }))
            }
            const moved = !sameNames(found.names, produced.varyNames)
            if (moved) elsewhere = produced
            return afterProduced(primary, found.names, produced, moved)
          }),
          Effect.tapErrorCause((cause) =>
            Effect.sync(() => {
              ownFailure = cause
            })
          )
        )
        const exit = yield* Effect.exit(Responses.getOrSet({ primary, variant }, run, {
          ttl: entryTtl,
          grace: entryGrace,
          skip: (produced) => produced._tag === "Passed" || produced === elsewhere,
          cacheRead: !refresh,
          softTimeout: revalidating ? Duration.zero : undefined
        }))
        const now = yield* Clock.currentTimeMillis
        if (Exit.isFailure(exit)) {
          // This request's own run failed: its error status, or the app's failure, unchanged.
          if (own !== undefined) {
            const failure = Cause.failureOption(exit.cause)
            if (Option.isSome(failure) && failure.value instanceof OriginError) return ownResponse(own, headers, fwd, now, found.failed)
            return yield* Effect.failCause(exit.cause as Cause.Cause<E>)
          }
          // Another request's run failed: this one asks the app itself.
          return yield* alone(request, fwd, "collapsed-failed")
        }
        const produced = exit.value
        if (own !== undefined && produced === own.produced) return ownResponse(own, headers, fwd, now, found.failed)
        if (produced._tag === "Passed") return yield* alone(request, fwd, produced.detail)
        if (!matchesVary(produced, headers)) {
          // Produced for other Vary values: look again with the URL's Vary list as it is now, once.
          if (attempt > 0) return yield* alone(request, "vary-miss", "vary-changed")
          const again = yield* lookup(primary, headers)
          const answer = again.found === undefined || again.found.isStale ? undefined : fromCache(again, asked, now, headers)
          return answer ?? (yield* sharedRun(request, primary, again, asked, "vary-miss", started, attempt + 1))
        }
        const age = currentAge(produced, now)
        // Another request's run (here or, through the lock, in another instance) produced it meanwhile.
        const collapsed = produced.storedAt >= started
        if (age > produced.lifetime && !collapsed) {
          // A stale response: served at once within stale-while-revalidate, or because the app failed.
          if (revalidating) {
            return served(produced, headers, { hit: true, ttl: ttlSeconds(produced, now), detail: "stale-while-revalidate" }, age)
          }
          if (age - produced.lifetime > produced.staleIfError) {
            // Kept only to be revalidated (or must-revalidate, no-cache): the app's failure stands.
            if (ownFailure !== undefined) {
              const failure = Cause.failureOption(ownFailure)
              if (own !== undefined && Option.isSome(failure) && failure.value instanceof OriginError) {
                return ownResponse(own, headers, fwd, now, found.failed)
              }
              return yield* Effect.failCause(ownFailure as Cause.Cause<E>)
            }
            // Another request's run failed (or failed a moment ago): this one asks the app itself.
            return yield* alone(request, fwd, "collapsed-failed")
          }
          return served(
            produced,
            headers,
            own === undefined
              ? { hit: true, ttl: ttlSeconds(produced, now), detail: "stale-if-error" }
              : { fwd: "stale", fwdStatus: Rules.isOriginError(own.status) ? own.status : undefined, ttl: ttlSeconds(produced, now), detail: "stale-if-error" },
            age
          )
        }
        return served(
          produced,
          headers,
          collapsed
            ? { fwd, fwdStatus: produced.validated ? 304 : produced.status, collapsed: true, ttl: ttlSeconds(produced, now) }
            : { hit: true, ttl: ttlSeconds(produced, now) },
          age
        )
      })
    }
  }
}

const sameNames = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): boolean =>
  a.length === b.length && a.every((name, i) => name === b[i])

/**
 * Invalidates every stored response of a URL (each of its Vary variants) that a {@link middleware}
 * with the same `name` and `cache` stored: one tag invalidation. The URL is absolute
 * (`"https://shop.example/products?page=2"`); its query is normalized as the middleware's keys are.
 *
 * @example
 * ```ts
 * import { HttpCache } from "effect-cachekit"
 *
 * const purge = HttpCache.invalidate("http://shop.example/products")
 * ```
 *
 * @since 0.3.0
 * @category invalidation
 */
export const invalidate = <Id = Cache.Cache>(
  url: string,
  options: { readonly name?: string | undefined; readonly cache?: Context.Tag<Id, Cache.Service> | undefined } = {}
): Effect.Effect<void, InvalidKeyError | StoreError, Id> => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch (cause) {
    return Effect.fail(new InvalidKeyError({ reason: "Encode", operation: "delete", key: url, cause: `not an absolute URL: ${String(cause)}` }))
  }
  const primary = Rules.primaryKey(parsed.host, parsed.pathname + parsed.search)
  const cacheTag = (options.cache ?? Cache.Cache) as unknown as Context.Tag<Id, Cache.Service>
  return Effect.flatMap(cacheTag, (cache) => cache.invalidateTags([urlTag(options.name ?? "http", primary)]))
}

/**
 * The tag of the request-scoped cache that {@link requestScoped} provides to each request.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { CacheKey, HttpCache, Keyspace } from "effect-cachekit"
 *
 * const Lookups = Keyspace.make({ name: "lookups", key: CacheKey.string, value: Schema.String, cache: HttpCache.RequestCache })
 * ```
 *
 * @since 0.3.0
 * @category tags
 */
export class RequestCache extends Context.Tag("effect-cachekit/HttpCache/RequestCache")<RequestCache, Cache.Service>() {}

/**
 * Options of {@link requestScoped}.
 *
 * @example
 * ```ts
 * import { HttpCache } from "effect-cachekit"
 *
 * const options: HttpCache.RequestScopedOptions = { capacity: 500, maxBytes: 4 * 1024 * 1024 }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface RequestScopedOptions<Id = RequestCache> {
  /** Most entries. Default 1,000. */
  readonly capacity?: number | undefined
  /** Byte budget of the entries (their serialized size). Default 8 MiB. */
  readonly maxBytes?: number | undefined
  /** The time to live of entries whose keyspace sets none, within the request. Default none. */
  readonly defaultTtl?: Duration.DurationInput | undefined
  /** The tag to provide the cache under. Default {@link RequestCache}. */
  readonly cache?: Context.Tag<Id, Cache.Service> | undefined
}

/**
 * A fresh memory cache, bounded by `capacity` and `maxBytes`, for one request: built when the request
 * comes in, its entries dropped and its scope closed once the app has given its response.
 */
const requestLayer = <Id>(options: RequestScopedOptions<Id>): Layer.Layer<Id> =>
  Layer.scoped(
    (options.cache ?? RequestCache) as unknown as Context.Tag<Id, Cache.Service>,
    Effect.gen(function*() {
      const store = yield* MemoryStore.make({ capacity: options.capacity ?? 1_000, maxBytes: options.maxBytes ?? 8 * 1024 * 1024 })
      // Added first, so it runs last: after the cache's own runs have settled, nothing is left.
      yield* Effect.addFinalizer(() => Effect.ignore(store.clear("")))
      return yield* Effect.provideService(Cache.make({ namespace: "request", defaultTtl: options.defaultTtl }), CacheStore.CacheStore, store)
    })
  )

/**
 * A middleware that gives each request a cache of its own: a fresh memory cache (bounded by
 * `capacity` and `maxBytes`) under {@link RequestCache} (or `options.cache`), so work repeated within
 * one request (the same lookup from several places) runs once. Two requests never share it; it is
 * dropped, its entries cleared, once the app has given its response (a streamed body that reads it
 * later finds it empty). Removes the tag from the app's requirements.
 *
 * @example
 * ```ts
 * import { HttpRouter, HttpServerResponse } from "@effect/platform"
 * import { Effect, Schema } from "effect"
 * import { CacheKey, HttpCache, Keyspace } from "effect-cachekit"
 *
 * const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: Schema.String, cache: HttpCache.RequestCache })
 * declare const loadUser: (id: number) => Effect.Effect<string>
 *
 * const app = HttpRouter.empty.pipe(
 *   HttpRouter.get("/me", Effect.map(Users.getOrSet(1, loadUser(1)), (name) => HttpServerResponse.text(name))),
 *   HttpCache.requestScoped({ capacity: 100 })
 * )
 * ```
 *
 * @since 0.3.0
 * @category middleware
 */
export const requestScoped = <Id = RequestCache>(options: RequestScopedOptions<Id> = {}) => {
  const layer = requestLayer(options)
  return <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, Exclude<R, Id>> =>
    Effect.provide(app, layer) as HttpApp.Default<E, Exclude<R, Id>>
}
