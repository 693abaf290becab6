/**
 * The HTTP caching rules `HttpCache` applies, as plain functions of headers and times (no Effect, no
 * I/O): Cache-Control parsing (RFC 9111 §5.2), what may be stored (§3), the freshness lifetime and
 * age (§4.2), the stored header fields, cache keys (method, host, path, sorted query; the Vary
 * variant), conditional requests (RFC 9110 §13), revalidation (RFC 9111 §4.3: the conditional request the
 * cache sends, which stored response a 304 updates, and how) and the `Cache-Status` field (RFC 9211).
 *
 * @internal
 */

/** Directives of a Cache-Control field: name (lower case) → argument, `true` for none. First one wins. */
export type Directives = ReadonlyMap<string, string | true>

/**
 * Parses Cache-Control field values (RFC 9111 §5.2): comma-separated `name[=token|"quoted"]`, names
 * case-insensitive; a quoted argument may hold commas. When a directive appears twice, the first
 * occurrence counts (§4.2.1).
 */
export const parseCacheControl = (value: string | undefined): Directives => {
  const directives = new Map<string, string | true>()
  if (value === undefined) return directives
  let i = 0
  const n = value.length
  while (i < n) {
    while (i < n && (value[i] === "," || value[i] === " " || value[i] === "\t")) i++
    const start = i
    while (i < n && value[i] !== "=" && value[i] !== ",") i++
    const name = value.slice(start, i).trim().toLowerCase()
    let argument: string | true = true
    if (value[i] === "=") {
      i++
      while (i < n && (value[i] === " " || value[i] === "\t")) i++
      if (value[i] === "\"") {
        i++
        let text = ""
        while (i < n && value[i] !== "\"") {
          if (value[i] === "\\" && i + 1 < n) i++
          text += value[i]
          i++
        }
        i++ // the closing quote
        argument = text
        while (i < n && value[i] !== ",") i++
      } else {
        const from = i
        while (i < n && value[i] !== ",") i++
        argument = value.slice(from, i).trim()
      }
    }
    if (name.length > 0 && !directives.has(name)) directives.set(name, argument)
  }
  return directives
}

/** The largest delta-seconds a cache must handle (RFC 9111 §1.2.2): larger values count as this. */
const maxDeltaSeconds = 2_147_483_648

/**
 * A directive's delta-seconds argument in milliseconds: `undefined` when the directive is absent,
 * `null` when its argument is not delta-seconds (an invalid value).
 */
export const deltaSeconds = (directives: Directives, name: string): number | null | undefined => {
  const argument = directives.get(name)
  if (argument === undefined) return undefined
  if (argument === true || !/^\d+$/.test(argument)) return null
  return Math.min(Number(argument), maxDeltaSeconds) * 1000
}

/** The field names a qualified `private="..."` or `no-cache="..."` directive lists (lower case). */
export const qualifiedFields = (directives: Directives, name: string): ReadonlyArray<string> | undefined => {
  const argument = directives.get(name)
  if (argument === undefined || argument === true) return undefined
  return argument.split(",").map((field) => field.trim().toLowerCase()).filter((field) => field.length > 0)
}

/**
 * Status codes a cache may store with a heuristic freshness lifetime (RFC 9110 §15.1). 206 is left
 * out: this cache does not combine partial content.
 */
export const heuristicallyCacheable: ReadonlySet<number> = new Set([200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501])

/** Responses that count as errors for `stale-if-error` (RFC 5861 §4): these are never stored. */
export const isOriginError = (status: number): boolean => status === 500 || status === 502 || status === 503 || status === 504

/**
 * Status codes stored when the response gives an explicit freshness (max-age, s-maxage, Expires) or
 * says `public`: final, understood statuses below 500 except 206 (partial) and 304 (a validation
 * answer, never a stored response), and the heuristically cacheable 501.
 */
export const isUnderstood = (status: number): boolean =>
  (status >= 200 && status < 500 && status !== 206 && status !== 304) || status === 501

/** Hop-by-hop fields (RFC 9110 §7.6.1) and the ones this cache recomputes: never stored. */
const neverStored: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authenticate",
  "proxy-authorization",
  "age",
  "content-length",
  "set-cookie"
])

/** The response's header fields as stored: hop-by-hop fields, `Age`, `Content-Length`, `Set-Cookie` and the `stripped` fields removed. */
export const storedHeaders = (
  headers: Readonly<Record<string, string>>,
  stripped: ReadonlyArray<string>
): Record<string, string> => {
  const connection = (headers["connection"] ?? "").split(",").map((field) => field.trim().toLowerCase())
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase()
    if (neverStored.has(lower) || connection.includes(lower) || stripped.includes(lower)) continue
    out[lower] = value
  }
  return out
}

const imfFixdate = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/
const rfc850 = /^(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), \d{2}-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{2} \d{2}:\d{2}:\d{2} GMT$/
const asctime = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/

/**
 * Parses an HTTP-date (RFC 9110 §5.6.7: IMF-fixdate, or the obsolete RFC 850 and asctime forms);
 * `undefined` when absent, `NaN` when it is not one (`Date.parse` alone would read `"0"` as a year).
 */
export const httpDate = (value: string | undefined): number | undefined => {
  if (value === undefined) return undefined
  const text = value.trim()
  if (imfFixdate.test(text)) return Date.parse(text)
  // Two-digit years as the JavaScript engine reads them (below 50: 20xx).
  if (rfc850.test(text)) return Date.parse(text)
  if (asctime.test(text)) return Date.parse(`${text} GMT`)
  return NaN
}

/**
 * The freshness lifetime of a response for a shared cache, in milliseconds (RFC 9111 §4.2.1):
 * `s-maxage`, else `max-age`, else `Expires` − `Date`, else the heuristic (`heuristic`, at most 10% of
 * the time since `Last-Modified` when the response has one, §4.2.2), else `undefined` (no lifetime:
 * not stored). An invalid `max-age`, `s-maxage` or `Expires` gives 0 (stale at once).
 */
export const freshnessLifetime = (
  directives: Directives,
  headers: Readonly<Record<string, string>>,
  dateValue: number,
  heuristic: number | undefined,
  heuristicAllowed: boolean
): { readonly lifetime: number; readonly explicit: boolean } | undefined => {
  const shared = deltaSeconds(directives, "s-maxage")
  if (shared !== undefined) return { lifetime: shared ?? 0, explicit: true }
  const maxAge = deltaSeconds(directives, "max-age")
  if (maxAge !== undefined) return { lifetime: maxAge ?? 0, explicit: true }
  const expires = httpDate(headers["expires"])
  if (expires !== undefined) return { lifetime: Number.isNaN(expires) ? 0 : Math.max(0, expires - dateValue), explicit: true }
  if (heuristic === undefined || !heuristicAllowed) return undefined
  const lastModified = httpDate(headers["last-modified"])
  if (lastModified !== undefined && !Number.isNaN(lastModified) && lastModified < dateValue) {
    return { lifetime: Math.min(heuristic, Math.floor((dateValue - lastModified) / 10)), explicit: false }
  }
  return { lifetime: heuristic, explicit: false }
}

/**
 * The corrected initial age of a response, in milliseconds (RFC 9111 §4.2.3), from the times the
 * request went to the app and the response came back (the Clock's), its `Date` and its `Age`.
 */
export const initialAge = (
  headers: Readonly<Record<string, string>>,
  requestTime: number,
  responseTime: number
): number => {
  const date = httpDate(headers["date"])
  const apparentAge = date === undefined || Number.isNaN(date) ? 0 : Math.max(0, responseTime - date)
  const ageHeader = headers["age"]
  const ageValue = ageHeader !== undefined && /^\d+$/.test(ageHeader.trim()) ? Math.min(Number(ageHeader.trim()), maxDeltaSeconds) * 1000 : 0
  return Math.max(apparentAge, ageValue + Math.max(0, responseTime - requestTime))
}

/** The field names of a Vary value, lower case, sorted, without repeats; `["*"]` for a `*` among them. */
export const varyNames = (value: string | undefined): ReadonlyArray<string> => {
  if (value === undefined) return []
  const names = new Set<string>()
  for (const part of value.split(",")) {
    const name = part.trim().toLowerCase()
    if (name === "*") return ["*"]
    if (name.length > 0) names.add(name)
  }
  return Array.from(names).sort()
}

/** A request's values for the Vary fields: trimmed, inner whitespace collapsed; `null` for an absent field. */
export const varyValues = (
  names: ReadonlyArray<string>,
  headers: Readonly<Record<string, string | undefined>>
): Array<string | null> =>
  names.map((name) => {
    const value = headers[name]
    return value === undefined ? null : value.trim().replace(/\s+/g, " ")
  })

/** The secondary key of a request under a URL's Vary fields: `""` when there are none. */
export const variantOf = (names: ReadonlyArray<string>, headers: Readonly<Record<string, string | undefined>>): string =>
  variantFrom(names, varyValues(names, headers))

/** The secondary key of the Vary fields' values. */
export const variantFrom = (names: ReadonlyArray<string>, values: ReadonlyArray<string | null>): string =>
  names.length === 0 ? "" : JSON.stringify([names, values])

/**
 * The primary key of a request (RFC 9111 §4.1): `GET` (HEAD reads what GET stored), the host (lower
 * case), the path as sent, and the query with its parameters sorted by name; the values of a repeated
 * parameter keep their order (`a=1&a=2` and `a=2&a=1` are different requests), and an empty query is
 * none.
 */
export const primaryKey = (host: string, url: string): string => {
  const queryAt = url.indexOf("?")
  const hashAt = url.indexOf("#")
  const end = hashAt === -1 ? url.length : hashAt
  const path = queryAt === -1 || queryAt > end ? url.slice(0, end) : url.slice(0, queryAt)
  const query = queryAt === -1 || queryAt > end ? "" : url.slice(queryAt + 1, end)
  return `GET ${host.toLowerCase()} ${path}${normalizedQuery(query)}`
}

const normalizedQuery = (query: string): string => {
  if (query.length === 0) return ""
  const params = new URLSearchParams(query)
  // A stable sort: the values of one name keep their order.
  params.sort()
  const text = params.toString()
  return text.length === 0 ? "" : `?${text}`
}

/** The entity tags of an If-None-Match value (`*` as itself). */
const entityTags = (value: string): ReadonlyArray<string> => {
  const tags: Array<string> = []
  const pattern = /\s*(\*|(?:W\/)?"[^"]*")\s*(?:,|$)/g
  for (const match of value.matchAll(pattern)) tags.push(match[1]!)
  return tags
}

/** Weak comparison of two entity tags (RFC 9110 §8.8.3.2): their opaque parts are equal. */
const weakMatch = (a: string, b: string): boolean => a.replace(/^W\//, "") === b.replace(/^W\//, "")

/**
 * Whether a conditional GET or HEAD is answered `304 Not Modified` by a stored 200 response (RFC 9110
 * §13.1.2, §13.1.3): `If-None-Match` against its `ETag` (weak comparison), else `If-Modified-Since`
 * against its `Last-Modified`.
 */
export const notModified = (
  request: Readonly<Record<string, string | undefined>>,
  response: Readonly<Record<string, string>>
): boolean => {
  const ifNoneMatch = request["if-none-match"]
  if (ifNoneMatch !== undefined) {
    const etag = response["etag"]
    const tags = entityTags(ifNoneMatch)
    return tags.includes("*") || (etag !== undefined && tags.some((tag) => weakMatch(tag, etag.trim())))
  }
  const since = httpDate(request["if-modified-since"])
  const modified = httpDate(response["last-modified"])
  return since !== undefined && modified !== undefined && !Number.isNaN(since) && !Number.isNaN(modified) && modified <= since
}

/** The conditional request fields (RFC 9110 §13.1): a client's are removed before the app is run for the cache. */
export const conditionalFields: ReadonlyArray<string> = ["if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range"]

/**
 * The conditional fields the cache sends to revalidate a stored response (RFC 9111 §4.3.1):
 * `If-None-Match` with its `ETag` and `If-Modified-Since` with its `Last-Modified` (both when it has
 * both, as browsers do: an app that checks one of them answers 304; RFC 9110 §13.1.3 has the app
 * ignore `If-Modified-Since` beside `If-None-Match`); `undefined` when it has neither validator.
 */
export const validatorFields = (stored: Readonly<Record<string, string>>): Record<string, string> | undefined => {
  const fields: Record<string, string> = {}
  const etag = stored["etag"]
  const lastModified = stored["last-modified"]
  if (etag !== undefined) fields["if-none-match"] = etag
  if (lastModified !== undefined) fields["if-modified-since"] = lastModified
  return etag === undefined && lastModified === undefined ? undefined : fields
}

/**
 * Whether a 304 answering the cache's conditional request identifies the stored response it was
 * asked about, to update it (RFC 9111 §4.3.4): its `ETag`, when it has one, is the stored one (weak
 * comparison: the request matched it so); else its `Last-Modified`, when it has one, is the stored one;
 * a 304 without validators answers the one response the request named. Otherwise it is about another
 * representation, and updates nothing.
 */
export const selectsStored = (
  stored: Readonly<Record<string, string>>,
  notModifiedHeaders: Readonly<Record<string, string | undefined>>
): boolean => {
  const etag = notModifiedHeaders["etag"]
  if (etag !== undefined) {
    const own = stored["etag"]
    return own !== undefined && weakMatch(own.trim(), etag.trim())
  }
  const lastModified = httpDate(notModifiedHeaders["last-modified"])
  if (lastModified !== undefined) {
    const own = httpDate(stored["last-modified"])
    return own !== undefined && !Number.isNaN(own) && own === lastModified
  }
  return true
}

/**
 * Fields a 304 never replaces in a stored response (RFC 9111 §3.2: `Content-Length`; and the fields
 * that describe the stored body, which a 304 does not carry, RFC 9110 §15.4.5).
 */
const bodyFields: ReadonlySet<string> = new Set(["content-length", "content-type", "content-encoding", "content-range", "transfer-encoding"])

/**
 * A stored response's header fields updated from a 304 (RFC 9111 §3.2, §4.3.4): each field of the 304
 * replaces the stored one, except those describing the body; a `Date` is `responseTime` when the 304
 * has none (the stored one would make the updated response as old as the first). What may not be
 * stored (hop-by-hop fields, `Age`, `Set-Cookie`) is removed by {@link storedHeaders} afterwards.
 */
export const updatedHeaders = (
  stored: Readonly<Record<string, string>>,
  notModifiedHeaders: Readonly<Record<string, string>>,
  responseTime: number
): Record<string, string> => {
  const out: Record<string, string> = { ...stored }
  for (const [name, value] of Object.entries(notModifiedHeaders)) {
    const lower = name.toLowerCase()
    if (!bodyFields.has(lower)) out[lower] = value
  }
  if (notModifiedHeaders["date"] === undefined) out["date"] = new Date(responseTime).toUTCString()
  return out
}

/** The header fields a 304 carries from the stored response (RFC 9110 §15.4.5). */
export const notModifiedFields: ReadonlyArray<string> = ["cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified"]

/** One member of a `Cache-Status` field (RFC 9211 §2): this cache's name and its parameters. */
export interface CacheStatus {
  readonly hit?: boolean | undefined
  readonly fwd?: "bypass" | "method" | "uri-miss" | "vary-miss" | "miss" | "request" | "stale" | undefined
  readonly fwdStatus?: number | undefined
  /** Remaining freshness in seconds (negative: stale). */
  readonly ttl?: number | undefined
  readonly stored?: boolean | undefined
  readonly collapsed?: boolean | undefined
  readonly detail?: string | undefined
}

const token = /^[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*$/

/** Serializes a member: `name; hit; ttl=42` (parameters in the RFC's order, the name a token or a string). */
export const formatCacheStatus = (name: string, status: CacheStatus): string => {
  const parts = [token.test(name) ? name : JSON.stringify(name)]
  if (status.hit === true) parts.push("hit")
  if (status.fwd !== undefined) parts.push(`fwd=${status.fwd}`)
  if (status.fwdStatus !== undefined) parts.push(`fwd-status=${status.fwdStatus}`)
  if (status.ttl !== undefined) parts.push(`ttl=${status.ttl}`)
  if (status.stored === true) parts.push("stored")
  if (status.collapsed === true) parts.push("collapsed")
  if (status.detail !== undefined) parts.push(`detail=${token.test(status.detail) ? status.detail : JSON.stringify(status.detail)}`)
  return parts.join("; ")
}
