/**
 * HttpCache: every rule through `HttpApp.toWebHandlerRuntime` on the test's runtime (so the TestClock
 * drives freshness), and the stampede, the two-instance burst on Redis, a Redis that is down and the
 * request-scoped cache through a real HTTP server (@effect/platform-node on a free loopback port)
 * with a real HTTP client (`fetch`). Each case counts the app's runs.
 */
import { HttpApp, HttpBody, HttpRouter, HttpServer, type HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { createServer, get as httpGet } from "node:http"
import { Data, Deferred, Effect, Layer, Option, Schema, Stream, TestClock } from "effect"
import { Cache, type CacheError, CacheKey, HttpCache, Keyspace, RedisLock, RedisStore } from "../src/index.js"
import * as Rules from "../src/internal/httpRules.js"
import { freePort } from "./setup/servers.js"
import { cacheOver, failingStore, layerSerializing, redisOn } from "./utils.js"

interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly body: string
}

/** The Cache-Status member of this cache. */
const cacheStatus = (answer: Answer): string => answer.headers.get("cache-status") ?? ""

/** A web handler for `app` on the test's runtime: its Clock is the TestClock, its cache the test's. */
const handlerOf = <E>(app: HttpApp.Default<E, Cache.Cache>) =>
  Effect.map(Effect.runtime<Cache.Cache>(), (runtime) => {
    const handler = HttpApp.toWebHandlerRuntime(runtime)(app)
    return (path: string, init?: RequestInit): Effect.Effect<Answer> =>
      Effect.promise(async () => {
        // As a client over HTTP would, the request names its host.
        const headers = new Headers(init?.headers)
        headers.set("host", "shop.test")
        const response = await handler(new Request(`http://shop.test${path}`, { ...init, headers }))
        return { status: response.status, headers: response.headers, body: await response.text() }
      })
  })

/** Until the cache's runs have stored their values (a write lands after the callers have the value). */
const settled = Effect.flatMap(Cache.Cache, (cache) =>
  Effect.promise(async () => {
    for (let i = 0; i < 400 && (await Effect.runPromise(cache.inFlight)) > 0; i++) await new Promise((r) => setTimeout(r, 5))
  }))

/** A route that counts its runs and answers `make(run)`. */
const counted = (make: (run: number) => HttpServerResponse.HttpServerResponse) => {
  const state = { runs: 0, requests: [] as Array<HttpServerRequest.HttpServerRequest> }
  const handler = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.sync(() => {
      state.runs++
      state.requests.push(request)
      return make(state.runs)
    }))
  return { state, handler }
}

const text = (body: string, headers: Record<string, string>, status = 200) => HttpServerResponse.text(body, { headers, status })

const memory = () => Cache.layerMemory({ namespace: "http-test" })

describe("HttpCache.middleware: storing and serving", () => {
  it.effect("a fresh response is stored and served with Age and Cache-Status until its max-age ends", () =>
    Effect.gen(function*() {
      const { handler, state } = counted((run) => text(`v${run}`, { "cache-control": "public, max-age=60" }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/products", handler), HttpCache.middleware()))
      const first = yield* call("/products")
      assert.strictEqual(first.body, "v1")
      assert.strictEqual(cacheStatus(first), "effect-cachekit; fwd=uri-miss; fwd-status=200; ttl=60; stored")
      yield* settled
      yield* TestClock.adjust("10 seconds")
      const second = yield* call("/products")
      assert.strictEqual(second.body, "v1")
      assert.strictEqual(cacheStatus(second), "effect-cachekit; hit; ttl=50")
      assert.strictEqual(second.headers.get("age"), "10")
      assert.strictEqual(second.headers.get("content-type"), "text/plain")
      assert.strictEqual(state.runs, 1)
      yield* TestClock.adjust("51 seconds")
      const third = yield* call("/products")
      assert.strictEqual(third.body, "v2", "past max-age the app runs again")
      assert.strictEqual(state.runs, 2)
    }).pipe(Effect.provide(memory())))

  it.effect("s-maxage wins over max-age, max-age over Expires, Expires over defaultTtl", () =>
    Effect.gen(function*() {
      const routes = {
        shared: counted(() => text("s", { "cache-control": "max-age=10, s-maxage=100" })),
        maxAge: counted(() => text("m", { "cache-control": "max-age=30", expires: new Date(1_000_000).toUTCString(), date: new Date(0).toUTCString() })),
        expires: counted(() => text("e", { expires: new Date(20_000).toUTCString(), date: new Date(0).toUTCString() })),
        heuristic: counted(() => text("h", {}))
      }
      const call = yield* handlerOf(HttpRouter.empty.pipe(
        HttpRouter.get("/shared", routes.shared.handler),
        HttpRouter.get("/max-age", routes.maxAge.handler),
        HttpRouter.get("/expires", routes.expires.handler),
        HttpRouter.get("/heuristic", routes.heuristic.handler),
        HttpCache.middleware({ defaultTtl: "5 seconds" })
      ))
      for (const path of ["/shared", "/max-age", "/expires", "/heuristic"]) yield* call(path)
      yield* settled
      yield* TestClock.adjust("4 seconds")
      for (const path of ["/shared", "/max-age", "/expires", "/heuristic"]) yield* call(path)
      assert.deepStrictEqual(Object.values(routes).map((route) => route.state.runs), [1, 1, 1, 1], "all fresh at 4 s")
      yield* TestClock.adjust("2 seconds") // 6 s: past defaultTtl
      for (const path of ["/shared", "/max-age", "/expires", "/heuristic"]) yield* call(path)
      yield* settled
      assert.deepStrictEqual(Object.values(routes).map((route) => route.state.runs), [1, 1, 1, 2])
      yield* TestClock.adjust("15 seconds") // 21 s: past Expires (20 s after Date)
      for (const path of ["/shared", "/max-age", "/expires"]) yield* call(path)
      yield* settled
      assert.deepStrictEqual([routes.shared.state.runs, routes.maxAge.state.runs, routes.expires.state.runs], [1, 1, 2])
      yield* TestClock.adjust("10 seconds") // 31 s: past max-age=30 (the Expires beside it is ignored)
      for (const path of ["/shared", "/max-age"]) yield* call(path)
      assert.deepStrictEqual([routes.shared.state.runs, routes.maxAge.state.runs], [1, 2], "s-maxage=100 still fresh at 31 s")
    }).pipe(Effect.provide(memory())))

  it.effect("the heuristic lifetime: only heuristically cacheable statuses, at most 10% of the time since Last-Modified", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_000_000)
      const routes = {
        created: counted(() => text("c", {}, 201)),
        notFound: counted(() => text("n", {}, 404)),
        modified: counted(() => text("l", { "last-modified": new Date(1_000_000 - 20_000).toUTCString() })),
        publicCreated: counted(() => text("p", { "cache-control": "public" }, 201))
      }
      const call = yield* handlerOf(HttpRouter.empty.pipe(
        HttpRouter.get("/created", routes.created.handler),
        HttpRouter.get("/missing", routes.notFound.handler),
        HttpRouter.get("/modified", routes.modified.handler),
        HttpRouter.get("/public-created", routes.publicCreated.handler),
        HttpCache.middleware({ defaultTtl: "1 minute" })
      ))
      const paths = ["/created", "/missing", "/modified", "/public-created"]
      const first = yield* Effect.forEach(paths, (path) => call(path))
      assert.strictEqual(cacheStatus(first[0]!), "effect-cachekit; fwd=uri-miss; fwd-status=201; detail=status")
      yield* settled
      yield* TestClock.adjust("1 second")
      for (const path of paths) yield* call(path)
      assert.deepStrictEqual(Object.values(routes).map((route) => route.state.runs), [2, 1, 1, 1], "201 is not heuristically cacheable; public makes it so")
      yield* TestClock.adjust("1500 millis") // 2.5 s: past 10% of the 20 s since Last-Modified
      yield* call("/modified")
      assert.strictEqual(routes.modified.state.runs, 2)
    }).pipe(Effect.provide(memory())))

  it.effect("without defaultTtl a response without explicit freshness is not stored", () =>
    Effect.gen(function*() {
      const { handler, state } = counted(() => text("x", {}))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/x", handler), HttpCache.middleware()))
      const first = yield* call("/x")
      yield* settled
      yield* call("/x")
      assert.strictEqual(state.runs, 2)
      assert.strictEqual(cacheStatus(first), "effect-cachekit; fwd=uri-miss; fwd-status=200; detail=no-freshness")
    }).pipe(Effect.provide(memory())))

  for (
    const [cacheControl, detail] of [
      ["no-store, max-age=60", "no-store"],
      ["private, max-age=60", "private"],
      ["no-cache, max-age=60", "no-cache"],
      ["max-age=0", "stale-on-arrival"]
    ] as const
  ) {
    it.effect(`a response with "${cacheControl}" is not stored (${detail})`, () =>
      Effect.gen(function*() {
        const { handler, state } = counted((run) => text(`v${run}`, { "cache-control": cacheControl }))
        const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/x", handler), HttpCache.middleware({ defaultTtl: "1 minute" })))
        const first = yield* call("/x")
        yield* settled
        const second = yield* call("/x")
        assert.strictEqual(second.body, "v2")
        assert.strictEqual(state.runs, 2)
        assert.include(cacheStatus(first), `detail=${detail}`)
      }).pipe(Effect.provide(memory())))
  }

  it.effect("error statuses and 206 are never stored; a 404 with max-age is", () =>
    Effect.gen(function*() {
      const statuses = [500, 503, 206, 404]
      const routes = statuses.map((status) => counted(() => text("x", { "cache-control": "max-age=60" }, status)))
      let router = HttpRouter.empty
      statuses.forEach((status, i) => {
        router = HttpRouter.get(router, `/s${status}`, routes[i]!.handler)
      })
      const call = yield* handlerOf(router.pipe(HttpCache.middleware()))
      for (const status of statuses) yield* call(`/s${status}`)
      yield* settled
      for (const status of statuses) yield* call(`/s${status}`)
      assert.deepStrictEqual(routes.map((route) => route.state.runs), [2, 2, 2, 1])
    }).pipe(Effect.provide(memory())))

  it.effect("the query is normalized: parameters sorted by name, the values of a repeated one kept in order", () =>
    Effect.gen(function*() {
      const { handler, state } = counted((run) => text(`v${run}`, { "cache-control": "max-age=60" }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/search", handler), HttpCache.middleware()))
      yield* call("/search?b=2&a=1")
      yield* settled
      assert.strictEqual((yield* call("/search?a=1&b=2")).body, "v1")
      assert.strictEqual(state.runs, 1)
      yield* call("/search?a=1&a=2")
      yield* settled
      assert.strictEqual((yield* call("/search?a=2&a=1")).body, "v3", "a=2&a=1 is another request")
      assert.strictEqual((yield* call("/search?a=1&a=2")).body, "v2")
      assert.strictEqual((yield* call("/search?a=1&b=2&")).body, "v1", "an empty parameter list adds nothing")
      assert.strictEqual(state.runs, 3)
    }).pipe(Effect.provide(memory())))

  it.effect("HEAD is answered from a stored GET (no body, its length); a HEAD miss goes to the app and is not stored", () =>
    Effect.gen(function*() {
      const { handler, state } = counted((run) => text(`body ${run}`, { "cache-control": "max-age=60" }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/page", handler), HttpCache.middleware()))
      const headMiss = yield* call("/page", { method: "HEAD" })
      assert.strictEqual(headMiss.status, 200)
      assert.include(cacheStatus(headMiss), "detail=head")
      yield* settled
      assert.strictEqual((yield* call("/page")).body, "body 2", "the HEAD stored nothing")
      yield* settled
      const head = yield* call("/page", { method: "HEAD" })
      assert.strictEqual(head.body, "")
      assert.strictEqual(head.headers.get("content-length"), "6")
      assert.include(cacheStatus(head), "hit")
      assert.strictEqual(state.runs, 2)
    }).pipe(Effect.provide(memory())))

  it.effect("methods other than GET and HEAD go to the app; a successful POST invalidates the URL and its Location", () =>
    Effect.gen(function*() {
      const list = counted((run) => text(`list ${run}`, { "cache-control": "max-age=600" }))
      const item = counted((run) => text(`item ${run}`, { "cache-control": "max-age=600" }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(
        HttpRouter.get("/items", list.handler),
        HttpRouter.get("/items/1", item.handler),
        HttpRouter.post("/items", Effect.succeed(HttpServerResponse.empty({ status: 201, headers: { location: "/items/1" } }))),
        HttpRouter.post("/fail", Effect.succeed(HttpServerResponse.empty({ status: 400 }))),
        HttpCache.middleware()
      ))
      yield* call("/items")
      yield* call("/items/1")
      yield* settled
      const failed = yield* call("/fail", { method: "POST" })
      assert.strictEqual(cacheStatus(failed), "effect-cachekit; fwd=method")
      yield* call("/items")
      assert.strictEqual(list.state.runs, 1)
      yield* call("/items", { method: "POST" })
      assert.strictEqual((yield* call("/items")).body, "list 2")
      assert.strictEqual((yield* call("/items/1")).body, "item 2", "the Location header's URL too")
    }).pipe(Effect.provide(memory())))

  it.effect("HttpCache.invalidate drops every stored variant of a URL; a URL that is not one is a typed error", () =>
    Effect.gen(function*() {
      const { handler, state } = counted((run) => text(`v${run}`, { "cache-control": "max-age=600", vary: "accept-language" }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/p", handler), HttpCache.middleware()))
      yield* call("/p?x=1", { headers: { "accept-language": "en" } })
      yield* settled
      yield* call("/p?x=1", { headers: { "accept-language": "fr" } })
      yield* settled
      yield* HttpCache.invalidate("http://other.test/p?x=1") // another host: nothing
      assert.strictEqual((yield* call("/p?x=1", { headers: { "accept-language": "en" } })).body, "v1")
      yield* HttpCache.invalidate("http://shop.test/p?x=1")
      assert.strictEqual((yield* call("/p?x=1", { headers: { "accept-language": "en" } })).body, "v3")
      assert.strictEqual((yield* call("/p?x=1", { headers: { "accept-language": "fr" } })).body, "v4")
      assert.strictEqual(state.runs, 4)
      const bad = yield* Effect.flip(HttpCache.invalidate("/relative"))
      assert.strictEqual(bad._tag, "InvalidKeyError")
    }).pipe(Effect.provide(memory())))
})

describe("HttpCache.middleware: request directives", () => {
  const setup = Effect.gen(function*() {
    const route = counted((run) => text(`v${run}`, { "cache-control": "max-age=100" }))
    const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/r", route.handler), HttpCache.middleware()))
    yield* call("/r")
    yield* settled
    return { call, state: route.state }
  })

  it.effect("no-cache, max-age=0 and Pragma: no-cache go to the app and store its new answer", () =>
    Effect.gen(function*() {
      const { call, state } = yield* setup
      const reload = yield* call("/r", { headers: { "cache-control": "no-cache" } })
      assert.strictEqual(reload.body, "v2")
      assert.include(cacheStatus(reload), "fwd=request")
      yield* settled
      assert.strictEqual((yield* call("/r")).body, "v2", "the refreshed response was stored")
      assert.strictEqual((yield* call("/r", { headers: { "cache-control": "max-age=0" } })).body, "v3")
      yield* settled
      assert.strictEqual((yield* call("/r", { headers: { pragma: "no-cache" } })).body, "v4")
      assert.strictEqual(state.runs, 4)
    }).pipe(Effect.provide(memory())))

  it.effect("max-age, min-fresh and max-stale", () =>
    Effect.gen(function*() {
      const { call, state } = yield* setup
      yield* TestClock.adjust("50 seconds")
      assert.strictEqual((yield* call("/r", { headers: { "cache-control": "max-age=60" } })).body, "v1")
      assert.strictEqual((yield* call("/r", { headers: { "cache-control": "min-fresh=40" } })).body, "v1")
      assert.strictEqual(state.runs, 1)
      assert.strictEqual((yield* call("/r", { headers: { "cache-control": "max-age=30" } })).body, "v2", "older than 30 s")
      yield* settled
      assert.strictEqual((yield* call("/r", { headers: { "cache-control": "min-fresh=200" } })).body, "v3", "not fresh for 200 s more")
      assert.strictEqual(state.runs, 3)
    }).pipe(Effect.provide(memory())))

  it.effect("max-stale serves a stale response the cache still keeps", () =>
    Effect.gen(function*() {
      const route = counted((run) => text(`v${run}`, { "cache-control": "max-age=10, stale-if-error=100" }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/r", route.handler), HttpCache.middleware()))
      yield* call("/r")
      yield* settled
      yield* TestClock.adjust("30 seconds")
      const stale = yield* call("/r", { headers: { "cache-control": "max-stale=60" } })
      assert.strictEqual(stale.body, "v1")
      assert.strictEqual(cacheStatus(stale), "effect-cachekit; hit; ttl=-20; detail=max-stale")
      assert.strictEqual((yield* call("/r", { headers: { "cache-control": "max-stale=5" } })).body, "v2")
      assert.strictEqual(route.state.runs, 2)
    }).pipe(Effect.provide(memory())))

  it.effect("only-if-cached: the stored response, or 504", () =>
    Effect.gen(function*() {
      const { call, state } = yield* setup
      assert.strictEqual((yield* call("/r", { headers: { "cache-control": "only-if-cached" } })).body, "v1")
      const missing = yield* call("/r?other", { headers: { "cache-control": "only-if-cached" } })
      assert.strictEqual(missing.status, 504)
      assert.strictEqual(cacheStatus(missing), "effect-cachekit; detail=only-if-cached")
      assert.strictEqual(state.runs, 1)
    }).pipe(Effect.provide(memory())))

  it.effect("no-store: served from the cache, but a miss stores nothing", () =>
    Effect.gen(function*() {
      const { call, state } = yield* setup
      assert.strictEqual((yield* call("/r", { headers: { "cache-control": "no-store" } })).body, "v1")
      const miss = yield* call("/r?new", { headers: { "cache-control": "no-store" } })
      assert.include(cacheStatus(miss), "detail=request-no-store")
      yield* settled
      assert.strictEqual((yield* call("/r?new")).body, "v3", "nothing was stored for the no-store request")
      assert.strictEqual(state.runs, 3)
    }).pipe(Effect.provide(memory())))
})

describe("HttpCache.middleware: Authorization, cookies, Vary", () => {
  it.effect("a response to a request with Authorization is stored only when it says public, s-maxage or must-revalidate", () =>
    Effect.gen(function*() {
      const privateRoute = counted((run) => text(`mine ${run}`, { "cache-control": "max-age=60" }))
      const publicRoute = counted((run) => text(`all ${run}`, { "cache-control": "public, max-age=60" }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(
        HttpRouter.get("/me", privateRoute.handler),
        HttpRouter.get("/catalog", publicRoute.handler),
        HttpCache.middleware()
      ))
      const authorized = { headers: { authorization: "Bearer alice" } }
      const mine = yield* call("/me", authorized)
      assert.include(cacheStatus(mine), "detail=authorization")
      yield* settled
      assert.strictEqual((yield* call("/me")).body, "mine 2", "never served to anyone else")
      yield* call("/catalog", authorized)
      yield* settled
      const shared = yield* call("/catalog")
      assert.strictEqual(shared.body, "all 1")
      assert.include(cacheStatus(shared), "hit")
      assert.strictEqual(publicRoute.state.runs, 1)
    }).pipe(Effect.provide(memory())))

  it.effect("Set-Cookie: not stored; with private=\"set-cookie\" stored without it, the requester keeping its cookie", () =>
    Effect.gen(function*() {
      const plain = counted((run) => HttpServerResponse.unsafeSetCookie(text(`p${run}`, { "cache-control": "max-age=60" }), "session", `s${run}`))
      const stripped = counted((run) =>
        HttpServerResponse.unsafeSetCookie(text(`q${run}`, { "cache-control": "max-age=60, private=\"set-cookie\"" }), "session", `t${run}`)
      )
      const call = yield* handlerOf(HttpRouter.empty.pipe(
        HttpRouter.get("/plain", plain.handler),
        HttpRouter.get("/stripped", stripped.handler),
        HttpCache.middleware()
      ))
      const first = yield* call("/plain")
      assert.include(cacheStatus(first), "detail=set-cookie")
      assert.include(first.headers.get("set-cookie") ?? "", "session=s1")
      yield* settled
      yield* call("/plain")
      assert.strictEqual(plain.state.runs, 2)
      const own = yield* call("/stripped")
      assert.include(own.headers.get("set-cookie") ?? "", "session=t1", "the requester gets its cookie")
      yield* settled
      const hit = yield* call("/stripped")
      assert.strictEqual(hit.body, "q1")
      assert.isNull(hit.headers.get("set-cookie"), "no one else does")
      assert.strictEqual(stripped.state.runs, 1)
    }).pipe(Effect.provide(memory())))

  it.effect("Vary: one stored response per value of the named fields, the URL's Vary kept; Vary: * is not stored", () =>
    Effect.gen(function*() {
      const route = counted((run) => text(`v${run}`, { "cache-control": "max-age=60", vary: "Accept-Language" }))
      const star = counted((run) => text(`s${run}`, { "cache-control": "max-age=60", vary: "*" }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(
        HttpRouter.get("/v", route.handler),
        HttpRouter.get("/star", star.handler),
        HttpCache.middleware()
      ))
      const en = { headers: { "accept-language": "en" } }
      const fr = { headers: { "accept-language": "fr" } }
      assert.strictEqual((yield* call("/v", en)).body, "v1")
      yield* settled
      const frMiss = yield* call("/v", fr)
      assert.strictEqual(frMiss.body, "v2")
      assert.include(cacheStatus(frMiss), "fwd=vary-miss")
      yield* settled
      assert.strictEqual((yield* call("/v", en)).body, "v1")
      assert.strictEqual((yield* call("/v", { headers: { "accept-language": "  en " } })).body, "v1", "values are trimmed")
      assert.strictEqual((yield* call("/v", fr)).body, "v2")
      const none = yield* call("/v")
      assert.strictEqual(none.body, "v3", "an absent field is a value of its own")
      assert.strictEqual(route.state.runs, 3)
      const first = yield* call("/star")
      assert.include(cacheStatus(first), "detail=vary-star")
      yield* settled
      yield* call("/star")
      assert.strictEqual(star.state.runs, 2)
    }).pipe(Effect.provide(memory())))
})

describe("HttpCache.middleware: validation", () => {
  it.effect("ETag / If-None-Match (weak comparison) and Last-Modified / If-Modified-Since answer 304", () =>
    Effect.gen(function*() {
      const lastModified = new Date(Date.UTC(2024, 0, 1)).toUTCString()
      const route = counted(() => text("body", { "cache-control": "max-age=60", etag: "\"abc\"", "last-modified": lastModified }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/e", route.handler), HttpCache.middleware()))
      const first = yield* call("/e", { headers: { "if-none-match": "W/\"abc\"" } })
      assert.strictEqual(first.status, 304, "the miss's own stored response answers its condition")
      assert.strictEqual(first.body, "")
      assert.strictEqual(first.headers.get("etag"), "\"abc\"")
      assert.isUndefined(route.state.requests[0]!.headers["if-none-match"], "the app got an unconditional request")
      yield* settled
      const hit = yield* call("/e", { headers: { "if-none-match": "\"x\", \"abc\"" } })
      assert.strictEqual(hit.status, 304)
      assert.include(cacheStatus(hit), "hit")
      assert.strictEqual((yield* call("/e", { headers: { "if-none-match": "\"other\"" } })).status, 200)
      assert.strictEqual((yield* call("/e", { headers: { "if-modified-since": lastModified } })).status, 304)
      assert.strictEqual((yield* call("/e", { headers: { "if-modified-since": new Date(Date.UTC(2023, 0, 1)).toUTCString() } })).status, 200)
      assert.strictEqual(route.state.runs, 1)
    }).pipe(Effect.provide(memory())))
})

describe("HttpCache.middleware: bodies", () => {
  const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => i % 251)
  const headers = { "cache-control": "max-age=60" }

  it.effect("each body kind is stored byte for byte or passed through whole: bytes, text, raw, streams, form data", () =>
    Effect.gen(function*() {
      const encoder = new TextEncoder()
      const routes = {
        bytes: counted(() => HttpServerResponse.uint8Array(bytes(1000), { headers })),
        raw: counted(() => HttpServerResponse.raw("raw text é", { headers })),
        stream: counted(() =>
          HttpServerResponse.stream(Stream.fromIterable([encoder.encode("chunk 1, "), encoder.encode("chunk 2")]), { headers, contentType: "text/plain" })
        ),
        empty: counted(() => HttpServerResponse.empty({ status: 204, headers })),
        form: counted(() => {
          const form = new FormData()
          form.append("a", "1")
          return HttpServerResponse.formData(form, { headers })
        })
      }
      const call = yield* handlerOf(HttpRouter.empty.pipe(
        HttpRouter.get("/bytes", routes.bytes.handler),
        HttpRouter.get("/raw", routes.raw.handler),
        HttpRouter.get("/stream", routes.stream.handler),
        HttpRouter.get("/empty", routes.empty.handler),
        HttpRouter.get("/form", routes.form.handler),
        HttpCache.middleware()
      ))
      const paths = ["/bytes", "/raw", "/stream", "/empty", "/form"]
      const first = yield* Effect.forEach(paths, (path) => call(path))
      yield* settled
      const second = yield* Effect.forEach(paths, (path) => call(path))
      assert.deepStrictEqual(Object.values(routes).map((route) => route.state.runs), [1, 1, 1, 1, 2])
      for (let i = 0; i < 4; i++) assert.strictEqual(second[i]!.body, first[i]!.body, paths[i])
      assert.strictEqual(second[2]!.body, "chunk 1, chunk 2")
      assert.strictEqual(second[2]!.headers.get("content-type"), "text/plain")
      assert.strictEqual(second[1]!.body, "raw text é")
      assert.strictEqual(second[3]!.status, 204)
      assert.include(cacheStatus(first[4]!), "detail=body-not-bytes")
      assert.include(second[4]!.body, "name=\"a\"", "form data passed through as the app made it")
    }).pipe(Effect.provide(memory())))

  it.effect("a body over maxBodyBytes, or a stream past it, passes through whole and is not stored", () =>
    Effect.gen(function*() {
      const big = counted(() => HttpServerResponse.uint8Array(bytes(2000), { headers }))
      const bigStream = counted(() =>
        HttpServerResponse.stream(Stream.fromIterable([bytes(600), bytes(600), bytes(600)]), { headers })
      )
      const call = yield* handlerOf(HttpRouter.empty.pipe(
        HttpRouter.get("/big", big.handler),
        HttpRouter.get("/big-stream", bigStream.handler),
        HttpCache.middleware({ maxBodyBytes: 1000 })
      ))
      const first = yield* call("/big")
      assert.include(cacheStatus(first), "detail=body-too-large")
      const streamed = yield* call("/big-stream")
      assert.include(cacheStatus(streamed), "detail=body-too-large")
      const whole = new TextDecoder().decode(Uint8Array.from([...bytes(600), ...bytes(600), ...bytes(600)]))
      assert.strictEqual(streamed.body, whole, "every byte, in order")
      yield* settled
      yield* call("/big")
      yield* call("/big-stream")
      assert.deepStrictEqual([big.state.runs, bigStream.state.runs], [2, 2])
    }).pipe(Effect.provide(memory())))

  it.live("a stream not done within bodyTimeout passes through (what was read, then the rest) and is not stored", () =>
    Effect.gen(function*() {
      const encoder = new TextEncoder()
      const slow = counted(() =>
        HttpServerResponse.stream(
          Stream.concat(Stream.make(encoder.encode("first ")), Stream.fromEffect(Effect.as(Effect.sleep("1 second"), encoder.encode("second")))),
          { headers }
        )
      )
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/slow", slow.handler), HttpCache.middleware({ bodyTimeout: "100 millis" })))
      const first = yield* call("/slow")
      assert.strictEqual(first.body, "first second", "the whole body, in order")
      assert.include(cacheStatus(first), "detail=body-timeout")
      yield* settled
      yield* call("/slow")
      assert.strictEqual(slow.state.runs, 2)
    }).pipe(Effect.provide(memory())))

  it.effect("a stream that fails is passed through with the same failure and not stored", () =>
    Effect.gen(function*() {
      const encoder = new TextEncoder()
      const broken = counted(() =>
        HttpServerResponse.stream(Stream.concat(Stream.make(encoder.encode("partial")), Stream.fail(new Error("disk gone"))), { headers })
      )
      const app = HttpRouter.empty.pipe(HttpRouter.get("/broken", broken.handler), HttpCache.middleware())
      const request = HttpServerRequest.fromWeb(new Request("http://shop.test/broken"))
      const response = yield* app.pipe(Effect.provideService(HttpServerRequest.HttpServerRequest, request))
      assert.include(response.headers["cache-status"] ?? "", "detail=body-failed")
      assert.strictEqual(response.body._tag, "Stream")
      const body = response.body as HttpBody.Stream
      const exit = yield* Effect.exit(Stream.runCollect(body.stream))
      assert.isTrue(exit._tag === "Failure" && String(exit.cause).includes("disk gone"))
    }).pipe(Effect.provide(memory())))
})

class Unavailable extends Data.TaggedError("Unavailable")<{ readonly reason: string }> {}

describe("HttpCache.middleware: failures and stale responses", () => {
  it.effect("the app's failures reach the caller unchanged, and its error type is kept", () =>
    Effect.gen(function*() {
      const failing: HttpApp.Default<Unavailable> = Effect.fail(new Unavailable({ reason: "db" }))
      const app = failing.pipe(HttpCache.middleware())
      expectTypeOf(app).toEqualTypeOf<HttpApp.Default<Unavailable, Cache.Cache>>()
      const request = HttpServerRequest.fromWeb(new Request("http://shop.test/x"))
      const error = yield* Effect.flip(app.pipe(Effect.provideService(HttpServerRequest.HttpServerRequest, request)))
      assert.deepStrictEqual(error, new Unavailable({ reason: "db" }))
    }).pipe(Effect.provide(memory())))

  it.effect("stale-if-error: a stale response replaces the app's failure or error status within the window, not after", () =>
    Effect.gen(function*() {
      const state = { mode: "ok" as "ok" | "fail" | "503", runs: 0 }
      const handler = Effect.suspend(() => {
        state.runs++
        if (state.mode === "fail") return Effect.fail(new Unavailable({ reason: "down" }))
        return Effect.succeed(text(state.mode === "503" ? "busy" : `v${state.runs}`, { "cache-control": "max-age=60, stale-if-error=300" }, state.mode === "503" ? 503 : 200))
      })
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/p", handler), HttpCache.middleware()))
      yield* call("/p")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      state.mode = "503"
      const stale = yield* call("/p")
      assert.strictEqual(stale.status, 200)
      assert.strictEqual(stale.body, "v1")
      assert.strictEqual(cacheStatus(stale), "effect-cachekit; fwd=stale; fwd-status=503; ttl=-30; detail=stale-if-error")
      assert.strictEqual(stale.headers.get("age"), "90")
      yield* TestClock.adjust("11 seconds") // past the cache's graceBackoff
      state.mode = "fail"
      const staleAgain = yield* call("/p")
      assert.strictEqual(staleAgain.body, "v1", "the app's failure: the stale response again")
      assert.strictEqual(state.runs, 3)
      yield* TestClock.adjust("400 seconds") // past max-age + stale-if-error
      const failed = yield* call("/p")
      assert.strictEqual(failed.status, 500, "the failure reaches the server")
      state.mode = "503"
      const busy = yield* call("/p")
      assert.strictEqual(busy.status, 503)
      assert.strictEqual(cacheStatus(busy), "effect-cachekit; fwd=uri-miss; fwd-status=503; detail=error-status")
    }).pipe(Effect.provide(memory())))

  it.effect("must-revalidate: never stale, even with stale-if-error", () =>
    Effect.gen(function*() {
      const state = { down: false, runs: 0 }
      const handler = Effect.suspend(() => {
        state.runs++
        return state.down ? Effect.succeed(text("busy", {}, 503)) : Effect.succeed(text(`v${state.runs}`, { "cache-control": "max-age=60, must-revalidate, stale-if-error=300" }))
      })
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/p", handler), HttpCache.middleware()))
      yield* call("/p")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      state.down = true
      assert.strictEqual((yield* call("/p")).status, 503)
    }).pipe(Effect.provide(memory())))

  it.effect("stale-while-revalidate: within the window the stale response is served at once and the app runs in the background", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const state = { runs: 0 }
      const handler = Effect.suspend(() => {
        state.runs++
        const response = text(`v${state.runs}`, { "cache-control": "max-age=60, stale-while-revalidate=120" })
        return state.runs === 1 ? Effect.succeed(response) : Effect.as(Deferred.await(gate), response)
      })
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/p", handler), HttpCache.middleware()))
      yield* call("/p")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      const stale = yield* call("/p")
      assert.strictEqual(stale.body, "v1", "served while the app is still held")
      assert.strictEqual(cacheStatus(stale), "effect-cachekit; hit; ttl=-30; detail=stale-while-revalidate")
      assert.strictEqual(state.runs, 2)
      yield* Deferred.succeed(gate, undefined)
      yield* settled
      const fresh = yield* call("/p")
      assert.strictEqual(fresh.body, "v2", "the background run stored its response")
      assert.include(cacheStatus(fresh), "hit")
      // Past the window (but within the grace nothing else): the app's answer is waited for.
      yield* TestClock.adjust("200 seconds")
      assert.strictEqual((yield* call("/p")).body, "v3")
    }).pipe(Effect.provide(memory())))

  it.live("a store that fails never fails a request: every request is answered by the app", () =>
    Effect.gen(function*() {
      const { handler, state } = counted((run) => text(`v${run}`, { "cache-control": "max-age=60" }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/p", handler), HttpCache.middleware()))
      const answers = yield* Effect.forEach([1, 2, 3], () => call("/p"))
      assert.deepStrictEqual(answers.map((answer) => answer.body), ["v1", "v2", "v3"])
      assert.match(cacheStatus(answers[0]!), /^effect-cachekit; fwd=uri-miss; fwd-status=200; ttl=(59|60); detail=store-error$/, "not claimed stored")
      assert.strictEqual(state.runs, 3)
    }).pipe(Effect.provide(cacheOver(failingStore, { namespace: "http-test" }))))
})

/**
 * A route that validates as apps do: it counts its runs, keeps each request, and answers 304 itself
 * when the request's If-None-Match names its current ETag (else If-Modified-Since its Last-Modified);
 * `current` says what it would answer now, `notModified` the fields of its 304.
 */
const validating = (
  current: () => { readonly body: string; readonly headers: Record<string, string> },
  notModified: () => Record<string, string> = () => {
    const { headers } = current()
    const fields: Record<string, string> = {}
    for (const name of ["etag", "last-modified", "cache-control"]) if (headers[name] !== undefined) fields[name] = headers[name]
    return fields
  }
) => {
  const state = { runs: 0, bodies: 0, notModified: 0, requests: [] as Array<HttpServerRequest.HttpServerRequest> }
  const handler = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.sync(() => {
      state.runs++
      state.requests.push(request)
      const { body, headers } = current()
      const ifNoneMatch = request.headers["if-none-match"]
      const ifModifiedSince = request.headers["if-modified-since"]
      const unchanged = ifNoneMatch !== undefined
        ? headers["etag"] !== undefined && ifNoneMatch.split(",").map((tag) => tag.trim()).includes(headers["etag"])
        : ifModifiedSince !== undefined && headers["last-modified"] === ifModifiedSince
      if (unchanged) {
        state.notModified++
        return HttpServerResponse.empty({ status: 304, headers: notModified() })
      }
      state.bodies++
      return text(body, headers)
    }))
  return { state, handler }
}

/** The conditional fields of the app's `i`-th request (1-based). */
const conditionsOf = (
  state: { readonly requests: ReadonlyArray<HttpServerRequest.HttpServerRequest> },
  i: number
): { readonly ifNoneMatch: string | undefined; readonly ifModifiedSince: string | undefined } => {
  const headers: Readonly<Record<string, string | undefined>> = state.requests[i - 1]!.headers
  return { ifNoneMatch: headers["if-none-match"], ifModifiedSince: headers["if-modified-since"] }
}

describe("HttpCache.middleware: revalidation", () => {
  it.effect("a stale response with an ETag goes to the app as If-None-Match; its 304 refreshes the entry and the client gets the stored body", () =>
    Effect.gen(function*() {
      const route = validating(() => ({ body: "the catalog", headers: { "cache-control": "max-age=60", etag: "\"v1\"" } }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/catalog", route.handler), HttpCache.middleware()))
      const first = yield* call("/catalog")
      assert.strictEqual(first.body, "the catalog")
      assert.deepStrictEqual(conditionsOf(route.state, 1), { ifNoneMatch: undefined, ifModifiedSince: undefined })
      yield* settled
      yield* TestClock.adjust("90 seconds")
      const revalidated = yield* call("/catalog")
      assert.strictEqual(revalidated.status, 200)
      assert.strictEqual(revalidated.body, "the catalog")
      assert.strictEqual(revalidated.headers.get("content-type"), "text/plain")
      assert.strictEqual(revalidated.headers.get("etag"), "\"v1\"")
      assert.strictEqual(cacheStatus(revalidated), "effect-cachekit; fwd=stale; fwd-status=304; ttl=60; stored")
      assert.deepStrictEqual(conditionsOf(route.state, 2), { ifNoneMatch: "\"v1\"", ifModifiedSince: undefined })
      assert.deepStrictEqual([route.state.runs, route.state.bodies, route.state.notModified], [2, 1, 1], "the body was produced once")
      yield* settled
      yield* TestClock.adjust("30 seconds")
      const hit = yield* call("/catalog")
      assert.strictEqual(hit.body, "the catalog")
      assert.strictEqual(cacheStatus(hit), "effect-cachekit; hit; ttl=30", "fresh again from the 304")
      assert.strictEqual(hit.headers.get("age"), "30")
      assert.strictEqual(route.state.runs, 2)
    }).pipe(Effect.provide(memory())))

  it.effect("a response with Last-Modified only is revalidated with If-Modified-Since", () =>
    Effect.gen(function*() {
      const lastModified = new Date(Date.UTC(2024, 0, 1)).toUTCString()
      const route = validating(() => ({ body: "report", headers: { "cache-control": "max-age=60", "last-modified": lastModified } }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/report", route.handler), HttpCache.middleware()))
      yield* call("/report")
      yield* settled
      yield* TestClock.adjust("61 seconds")
      const revalidated = yield* call("/report")
      assert.strictEqual(revalidated.body, "report")
      assert.include(cacheStatus(revalidated), "fwd=stale; fwd-status=304")
      assert.deepStrictEqual(conditionsOf(route.state, 2), { ifNoneMatch: undefined, ifModifiedSince: lastModified })
      yield* settled
      yield* call("/report")
      assert.deepStrictEqual([route.state.runs, route.state.bodies], [2, 1])
    }).pipe(Effect.provide(memory())))

  it.effect("the app's 200 to the condition replaces the stored response", () =>
    Effect.gen(function*() {
      const version = { current: 1 }
      const route = validating(() => ({
        body: `catalog v${version.current}`,
        headers: { "cache-control": "max-age=60", etag: `"v${version.current}"` }
      }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/catalog", route.handler), HttpCache.middleware()))
      yield* call("/catalog")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      version.current = 2
      const changed = yield* call("/catalog")
      assert.strictEqual(changed.body, "catalog v2")
      assert.strictEqual(cacheStatus(changed), "effect-cachekit; fwd=stale; fwd-status=200; ttl=60; stored")
      assert.strictEqual(conditionsOf(route.state, 2).ifNoneMatch, "\"v1\"")
      yield* settled
      assert.strictEqual((yield* call("/catalog")).body, "catalog v2", "the new body was stored")
      assert.strictEqual(route.state.runs, 2)
      yield* TestClock.adjust("90 seconds")
      assert.strictEqual((yield* call("/catalog")).body, "catalog v2")
      assert.strictEqual(conditionsOf(route.state, 3).ifNoneMatch, "\"v2\"", "the next condition names the new ETag")
      assert.deepStrictEqual([route.state.bodies, route.state.notModified], [2, 1])
    }).pipe(Effect.provide(memory())))

  it.effect("the 304's header fields update the stored ones: a new max-age, new fields; the body's own fields are kept", () =>
    Effect.gen(function*() {
      const route = validating(
        () => ({ body: "page", headers: { "cache-control": "max-age=60", etag: "\"p\"", "x-version": "1" } }),
        () => ({ "cache-control": "max-age=300", etag: "\"p\"", "x-version": "2", "content-type": "application/octet-stream" })
      )
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/page", route.handler), HttpCache.middleware()))
      yield* call("/page")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      const revalidated = yield* call("/page")
      assert.strictEqual(cacheStatus(revalidated), "effect-cachekit; fwd=stale; fwd-status=304; ttl=300; stored")
      assert.strictEqual(revalidated.headers.get("cache-control"), "max-age=300")
      assert.strictEqual(revalidated.headers.get("x-version"), "2")
      assert.strictEqual(revalidated.headers.get("content-type"), "text/plain", "a 304 does not describe the stored body")
      yield* settled
      yield* TestClock.adjust("200 seconds")
      const hit = yield* call("/page")
      assert.strictEqual(cacheStatus(hit), "effect-cachekit; hit; ttl=100", "fresh for the 304's max-age")
      assert.strictEqual(hit.headers.get("x-version"), "2")
      assert.strictEqual(route.state.runs, 2)
    }).pipe(Effect.provide(memory())))

  it.effect("a client's own condition is answered by the cache: 304 against the revalidated entry, the app seeing only the cache's", () =>
    Effect.gen(function*() {
      const route = validating(() => ({ body: "doc", headers: { "cache-control": "max-age=60", etag: "\"d1\"" } }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/doc", route.handler), HttpCache.middleware()))
      yield* call("/doc")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      const conditional = yield* call("/doc", { headers: { "if-none-match": "W/\"d1\"", "if-modified-since": new Date(0).toUTCString() } })
      assert.strictEqual(conditional.status, 304)
      assert.strictEqual(conditional.body, "")
      assert.strictEqual(cacheStatus(conditional), "effect-cachekit; fwd=stale; fwd-status=304; ttl=60; stored")
      assert.deepStrictEqual(conditionsOf(route.state, 2), { ifNoneMatch: "\"d1\"", ifModifiedSince: undefined }, "the cache's condition, not the client's")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      const other = yield* call("/doc", { headers: { "if-none-match": "\"d0\"" } })
      assert.strictEqual(other.status, 200, "a condition naming another tag gets the stored body")
      assert.strictEqual(other.body, "doc")
      assert.strictEqual(conditionsOf(route.state, 3).ifNoneMatch, "\"d1\"")
      assert.deepStrictEqual([route.state.bodies, route.state.notModified], [1, 2])
    }).pipe(Effect.provide(memory())))

  it.effect("a client's conditional request is never stored as a 304: with nothing to store, the app's 304 goes to the client alone", () =>
    Effect.gen(function*() {
      const route = validating(() => ({ body: "doc", headers: { "cache-control": "max-age=60", etag: "\"d1\"" } }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/doc", route.handler), HttpCache.middleware()))
      // no-store: nothing is stored, so the request reaches the app as it is.
      const passed = yield* call("/doc", { headers: { "if-none-match": "\"d1\"", "cache-control": "no-store" } })
      assert.strictEqual(passed.status, 304)
      assert.strictEqual(conditionsOf(route.state, 1).ifNoneMatch, "\"d1\"")
      assert.strictEqual(cacheStatus(passed), "effect-cachekit; fwd=uri-miss; fwd-status=304; detail=request-no-store")
      yield* settled
      // Stored by a conditional request: the app is asked unconditionally, the client answered from what was stored.
      const miss = yield* call("/doc", { headers: { "if-none-match": "\"d1\"" } })
      assert.strictEqual(miss.status, 304)
      assert.isUndefined(conditionsOf(route.state, 2).ifNoneMatch)
      yield* settled
      const plain = yield* call("/doc")
      assert.strictEqual(plain.status, 200)
      assert.strictEqual(plain.body, "doc")
      assert.include(cacheStatus(plain), "hit")
      assert.strictEqual(route.state.runs, 2)
    }).pipe(Effect.provide(memory())))

  it.effect("a 304 about another representation (another ETag) is not used: the request goes again, unconditional", () =>
    Effect.gen(function*() {
      const state = { runs: 0, requests: [] as Array<HttpServerRequest.HttpServerRequest> }
      const handler = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
        Effect.sync(() => {
          state.runs++
          state.requests.push(request)
          return request.headers["if-none-match"] !== undefined
            ? HttpServerResponse.empty({ status: 304, headers: { etag: "\"other\"" } })
            : text(`v${state.runs}`, { "cache-control": "max-age=60", etag: `"v${state.runs}"` })
        }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/p", handler), HttpCache.middleware()))
      yield* call("/p")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      const answer = yield* call("/p")
      assert.strictEqual(answer.body, "v3")
      assert.deepStrictEqual(state.requests.map((request) => request.headers["if-none-match"]), [undefined, "\"v1\"", undefined])
      assert.include(cacheStatus(answer), "fwd-status=200; ttl=60; stored")
    }).pipe(Effect.provide(memory())))

  it.effect("no-cache in the response: stored, and revalidated with the app at every use (304: the stored body)", () =>
    Effect.gen(function*() {
      const route = validating(() => ({ body: "always checked", headers: { "cache-control": "no-cache", etag: "\"n1\"" } }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/n", route.handler), HttpCache.middleware()))
      const first = yield* call("/n")
      assert.strictEqual(cacheStatus(first), "effect-cachekit; fwd=uri-miss; fwd-status=200; ttl=0; stored")
      yield* settled
      for (let i = 2; i <= 4; i++) {
        const again = yield* call("/n")
        assert.strictEqual(again.body, "always checked")
        assert.strictEqual(cacheStatus(again), "effect-cachekit; fwd=stale; fwd-status=304; ttl=0; stored")
        assert.strictEqual(conditionsOf(route.state, i).ifNoneMatch, "\"n1\"")
        yield* settled
      }
      assert.deepStrictEqual([route.state.runs, route.state.bodies, route.state.notModified], [4, 1, 3])
      const cachedOnly = yield* call("/n", { headers: { "cache-control": "only-if-cached" } })
      assert.strictEqual(cachedOnly.status, 504, "never served without the app")
      assert.strictEqual((yield* call("/n", { method: "HEAD" })).status, 200)
      assert.strictEqual(route.state.runs, 5, "a HEAD goes to the app too")
    }).pipe(Effect.provide(memory())))

  it.effect("no-cache with max-age: revalidated at every use even while fresh", () =>
    Effect.gen(function*() {
      const route = validating(() => ({ body: "b", headers: { "cache-control": "no-cache, max-age=600", etag: "\"b\"" } }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/b", route.handler), HttpCache.middleware()))
      yield* call("/b")
      yield* settled
      yield* TestClock.adjust("10 seconds")
      const again = yield* call("/b")
      assert.strictEqual(again.body, "b")
      assert.strictEqual(cacheStatus(again), "effect-cachekit; fwd=stale; fwd-status=304; ttl=600; stored")
      assert.deepStrictEqual([route.state.runs, route.state.bodies], [2, 1])
    }).pipe(Effect.provide(memory())))

  it.effect("a request's no-cache revalidates a fresh stored response with a conditional request", () =>
    Effect.gen(function*() {
      const route = validating(() => ({ body: "fresh", headers: { "cache-control": "max-age=600", etag: "\"f\"" } }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/f", route.handler), HttpCache.middleware()))
      yield* call("/f")
      yield* settled
      const reload = yield* call("/f", { headers: { "cache-control": "no-cache" } })
      assert.strictEqual(reload.body, "fresh")
      assert.strictEqual(cacheStatus(reload), "effect-cachekit; fwd=request; fwd-status=304; ttl=600; stored")
      assert.strictEqual(conditionsOf(route.state, 2).ifNoneMatch, "\"f\"")
      assert.deepStrictEqual([route.state.runs, route.state.bodies], [2, 1])
    }).pipe(Effect.provide(memory())))

  it.effect("stale-while-revalidate: the stale response at once, the background run conditional", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const inner = validating(() => ({ body: "list", headers: { "cache-control": "max-age=60, stale-while-revalidate=120", etag: "\"l\"" } }))
      const handler = Effect.suspend(() => inner.state.runs === 0 ? inner.handler : Effect.zipRight(Deferred.await(gate), inner.handler))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/l", handler), HttpCache.middleware()))
      yield* call("/l")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      const stale = yield* call("/l")
      assert.strictEqual(stale.body, "list")
      assert.strictEqual(cacheStatus(stale), "effect-cachekit; hit; ttl=-30; detail=stale-while-revalidate")
      yield* Deferred.succeed(gate, undefined)
      yield* settled
      assert.strictEqual(conditionsOf(inner.state, 2).ifNoneMatch, "\"l\"")
      const fresh = yield* call("/l")
      assert.strictEqual(cacheStatus(fresh), "effect-cachekit; hit; ttl=60", "the background 304 refreshed it")
      assert.deepStrictEqual([inner.state.runs, inner.state.bodies, inner.state.notModified], [2, 1, 1])
    }).pipe(Effect.provide(memory())))

  it.effect("20 concurrent requests on a stale URL send one conditional request; all get the stored body", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const inner = validating(() => ({ body: "shared", headers: { "cache-control": "max-age=60", etag: "\"s\"" } }))
      const handler = Effect.suspend(() => inner.state.runs === 0 ? inner.handler : Effect.zipRight(Deferred.await(gate), inner.handler))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/s", handler), HttpCache.middleware()))
      yield* call("/s")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      const burst = yield* Effect.fork(Effect.all(Array.from({ length: 20 }, () => call("/s")), { concurrency: "unbounded" }))
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 100)))
      yield* Deferred.succeed(gate, undefined)
      const answers = yield* burst.await.pipe(Effect.flatten)
      assert.isTrue(answers.every((answer) => answer.status === 200 && answer.body === "shared"))
      assert.deepStrictEqual([inner.state.runs, inner.state.bodies, inner.state.notModified], [2, 1, 1], "one conditional request")
      const statuses = answers.map(cacheStatus)
      assert.strictEqual(statuses.filter((status) => status === "effect-cachekit; fwd=stale; fwd-status=304; ttl=60; stored").length, 1)
      const collapsed = statuses.filter((status) => status === "effect-cachekit; fwd=stale; fwd-status=304; ttl=60; collapsed").length
      assert.isAbove(collapsed, 0)
      assert.strictEqual(collapsed + statuses.filter((status) => status.includes("; hit;")).length, 19)
    }).pipe(Effect.provide(memory())))

  it.effect("a request with Authorization revalidates a stored public response too, and stores the 304's update", () =>
    Effect.gen(function*() {
      const route = validating(() => ({ body: "catalog", headers: { "cache-control": "public, max-age=60", etag: "\"c\"" } }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/c", route.handler), HttpCache.middleware()))
      yield* call("/c")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      const authorized = yield* call("/c", { headers: { authorization: "Bearer alice" } })
      assert.strictEqual(authorized.body, "catalog")
      assert.strictEqual(cacheStatus(authorized), "effect-cachekit; fwd=stale; fwd-status=304; ttl=60; stored")
      assert.strictEqual(conditionsOf(route.state, 2).ifNoneMatch, "\"c\"")
      yield* settled
      assert.include(cacheStatus(yield* call("/c")), "hit", "fresh again for everyone")
      assert.deepStrictEqual([route.state.runs, route.state.bodies], [2, 1])
    }).pipe(Effect.provide(memory())))


  it.effect("a response kept only to be revalidated is never served stale: the app's error status or failure stands", () =>
    Effect.gen(function*() {
      const state = { mode: "ok" as "ok" | "503" | "fail", runs: 0 }
      const handler = Effect.suspend(() => {
        state.runs++
        if (state.mode === "fail") return Effect.fail(new Unavailable({ reason: "down" }))
        if (state.mode === "503") return Effect.succeed(text("busy", {}, 503))
        return Effect.succeed(text("ok", { "cache-control": "max-age=60", etag: "\"k\"" }))
      })
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/k", handler), HttpCache.middleware()))
      yield* call("/k")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      state.mode = "503"
      const busy = yield* call("/k")
      assert.strictEqual(busy.status, 503)
      assert.strictEqual(cacheStatus(busy), "effect-cachekit; fwd=stale; fwd-status=503; detail=error-status")
      // A failure does not hold the key back: the next request's run asks the app again (no backoff).
      const again = yield* call("/k")
      assert.strictEqual(again.status, 503)
      assert.strictEqual(cacheStatus(again), "effect-cachekit; fwd=stale; fwd-status=503; detail=error-status")
      state.mode = "fail"
      assert.strictEqual((yield* call("/k")).status, 500, "the failure reaches the server")
      assert.strictEqual((yield* call("/k", { headers: { "cache-control": "max-stale" } })).body, "ok", "max-stale accepts it")
      // Once the app is back, the next request's run stores its answer: collapsing and storing resume at once.
      state.mode = "ok"
      const back = yield* call("/k")
      assert.strictEqual(back.body, "ok")
      assert.include(cacheStatus(back), "stored")
      yield* settled
      assert.include(cacheStatus(yield* call("/k")), "hit")
      assert.strictEqual(state.runs, 5)
    }).pipe(Effect.provide(memory())))

  it.effect("s-maxage carries proxy-revalidate: once stale it is never served without the app, not even for max-stale", () =>
    Effect.gen(function*() {
      const route = validating(() => ({ body: "s", headers: { "cache-control": "s-maxage=60, stale-while-revalidate=600", etag: "\"s\"" } }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/s", route.handler), HttpCache.middleware()))
      yield* call("/s")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      const stale = yield* call("/s", { headers: { "cache-control": "max-stale" } })
      assert.strictEqual(stale.body, "s")
      assert.strictEqual(cacheStatus(stale), "effect-cachekit; fwd=stale; fwd-status=304; ttl=60; stored", "revalidated, not served stale")
      assert.deepStrictEqual([route.state.runs, route.state.bodies], [2, 1])
    }).pipe(Effect.provide(memory())))

  it.effect("a revalidation the app answers with a response the cache may not keep drops what was stored", () =>
    Effect.gen(function*() {
      let mode: "public" | "private" = "public"
      const route = validating(() =>
        mode === "public"
          ? { body: "shared", headers: { "cache-control": "max-age=60", etag: "\"a\"" } }
          : { body: "user-42", headers: { "cache-control": "private, max-age=60", etag: "\"b\"" } }
      )
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/p", route.handler), HttpCache.middleware()))
      yield* call("/p")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      mode = "private"
      const own = yield* call("/p")
      assert.strictEqual(own.body, "user-42")
      yield* settled
      const later = yield* call("/p", { headers: { "cache-control": "max-stale" } })
      assert.strictEqual(later.body, "user-42", "the old shared response is not served any more")
      assert.include(cacheStatus(later), "fwd=uri-miss")
      assert.strictEqual(route.state.runs, 3)
    }).pipe(Effect.provide(memory())))

  it.effect("an answer not kept for a reason of the request (a Range's 206, a cookie for a new visitor) leaves the stored response", () =>
    Effect.gen(function*() {
      let mode: "ok" | "down" = "ok"
      const route = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
        Effect.sync(() => {
          if (mode === "down") return text("down", {}, 503)
          const headers = { "cache-control": "max-age=60, stale-if-error=3600" }
          if (request.headers["range"] !== undefined) return text("fu", { ...headers, "content-range": "bytes 0-1/4" }, 206)
          const page = text("full", headers)
          return request.headers["cookie"] === undefined ? HttpServerResponse.unsafeSetCookie(page, "sid", "new") : page
        }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/r", route), HttpCache.middleware()))
      yield* call("/r", { headers: { cookie: "sid=1" } })
      yield* settled
      yield* TestClock.adjust("90 seconds")
      const partial = yield* call("/r", { headers: { range: "bytes=0-1", cookie: "sid=1" } })
      assert.strictEqual(partial.status, 206)
      assert.include(cacheStatus(partial), "detail=range")
      const visitor = yield* call("/r")
      assert.strictEqual(visitor.body, "full")
      assert.include(cacheStatus(visitor), "detail=set-cookie")
      yield* settled
      mode = "down"
      const outage = yield* call("/r", { headers: { cookie: "sid=1" } })
      assert.strictEqual(outage.body, "full", "stale-if-error still serves the stored response")
      assert.include(cacheStatus(outage), "stale-if-error")
    }).pipe(Effect.provide(memory())))

  it.effect("a 304 that names other Vary fields is served but not stored", () =>
    Effect.gen(function*() {
      const route = validating(
        () => ({ body: "v", headers: { "cache-control": "max-age=60", etag: "\"v\"" } }),
        () => ({ etag: "\"v\"", "cache-control": "max-age=60", vary: "accept-language" })
      )
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/v", route.handler), HttpCache.middleware()))
      yield* call("/v")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      const revalidated = yield* call("/v", { headers: { "accept-language": "de" } })
      assert.strictEqual(revalidated.body, "v")
      assert.include(cacheStatus(revalidated), "detail=vary-changed")
      yield* settled
      const next = yield* call("/v", { headers: { "accept-language": "de" } })
      assert.notInclude(cacheStatus(next), "hit", "nothing stored for the new Vary fields")
      assert.strictEqual(next.body, "v")
    }).pipe(Effect.provide(memory())))

  it.effect("must-revalidate with a validator: kept and revalidated, never served stale, not even for max-stale", () =>
    Effect.gen(function*() {
      const route = validating(() => ({ body: "strict", headers: { "cache-control": "max-age=60, must-revalidate", etag: "\"m\"" } }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/m", route.handler), HttpCache.middleware()))
      yield* call("/m")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      const answer = yield* call("/m", { headers: { "cache-control": "max-stale" } })
      assert.strictEqual(answer.body, "strict")
      assert.include(cacheStatus(answer), "fwd=stale; fwd-status=304")
      assert.deepStrictEqual([route.state.runs, route.state.bodies], [2, 1])
    }).pipe(Effect.provide(memory())))

  it.effect("keepForRevalidation bounds how long a stale response is kept; 0 keeps none", () =>
    Effect.gen(function*() {
      const route = validating(() => ({ body: "x", headers: { "cache-control": "max-age=60", etag: "\"x\"" } }))
      const short = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/x", route.handler), HttpCache.middleware({ keepForRevalidation: "1 minute" })))
      yield* short("/x")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      assert.include(cacheStatus(yield* short("/x")), "fwd=stale; fwd-status=304")
      yield* settled
      yield* TestClock.adjust("150 seconds") // past 60 s of freshness and 60 s kept
      assert.include(cacheStatus(yield* short("/x")), "fwd=uri-miss; fwd-status=200")
      assert.deepStrictEqual(conditionsOf(route.state, 3), { ifNoneMatch: undefined, ifModifiedSince: undefined })
      const other = validating(() => ({ body: "y", headers: { "cache-control": "max-age=60", etag: "\"y\"" } }))
      const none = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/y", other.handler), HttpCache.middleware({ keepForRevalidation: 0, name: "none" })))
      yield* none("/y")
      yield* settled
      yield* TestClock.adjust("61 seconds")
      assert.include(cacheStatus(yield* none("/y")), "fwd=uri-miss; fwd-status=200")
      const noCache = validating(() => ({ body: "z", headers: { "cache-control": "no-cache", etag: "\"z\"" } }))
      const off = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/z", noCache.handler), HttpCache.middleware({ keepForRevalidation: 0, name: "off" })))
      assert.include(cacheStatus(yield* off("/z")), "detail=no-cache", "no-cache is not stored without it")
    }).pipe(Effect.provide(memory())))

  it.effect("revalidation through a store that keeps only bytes (the stored record round-trips)", () =>
    Effect.gen(function*() {
      const route = validating(() => ({ body: "bytes", headers: { "cache-control": "max-age=60", etag: "\"b\"" } }))
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/b", route.handler), HttpCache.middleware()))
      yield* call("/b")
      yield* settled
      yield* TestClock.adjust("90 seconds")
      assert.include(cacheStatus(yield* call("/b")), "fwd=stale; fwd-status=304; ttl=60; stored")
      yield* settled
      const hit = yield* call("/b")
      assert.strictEqual(hit.body, "bytes")
      assert.strictEqual(cacheStatus(hit), "effect-cachekit; hit; ttl=60")
      assert.strictEqual(route.state.runs, 2)
    }).pipe(Effect.provide(Cache.layer({ namespace: "http-test" }).pipe(Layer.provide(layerSerializing())))))
})

describe("HttpCache.middleware: one run per URL", () => {
  it.effect("50 concurrent requests on a cold URL run the app once; the others are collapsed into its run", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const state = { runs: 0 }
      const handler = Effect.suspend(() => {
        state.runs++
        return Effect.as(Deferred.await(gate), text("once", { "cache-control": "max-age=60" }))
      })
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/cold", handler), HttpCache.middleware()))
      const burst = yield* Effect.fork(Effect.all(Array.from({ length: 50 }, () => call("/cold")), { concurrency: "unbounded" }))
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 200)))
      yield* Deferred.succeed(gate, undefined)
      const answers = yield* burst.await.pipe(Effect.flatten)
      assert.strictEqual(state.runs, 1)
      assert.isTrue(answers.every((answer) => answer.body === "once"))
      const statuses = answers.map(cacheStatus)
      assert.strictEqual(statuses.filter((status) => status.endsWith("; stored")).length, 1)
      // Requests that joined the run say so; on a loaded machine one may arrive after it and hit.
      const collapsed = statuses.filter((status) => status.includes("; collapsed")).length
      assert.isAbove(collapsed, 0)
      assert.strictEqual(collapsed + statuses.filter((status) => status.includes("; hit;")).length, 49)
    }).pipe(Effect.provide(memory())))

  it.effect("a run whose response is not stored is not shared: each waiting request runs the app itself", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const state = { runs: 0 }
      const handler = Effect.suspend(() => {
        state.runs++
        return Effect.as(Deferred.await(gate), text(`private ${state.runs}`, { "cache-control": "private, max-age=60" }))
      })
      const call = yield* handlerOf(HttpRouter.empty.pipe(HttpRouter.get("/me", handler), HttpCache.middleware()))
      const burst = yield* Effect.fork(Effect.all(Array.from({ length: 5 }, () => call("/me")), { concurrency: "unbounded" }))
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 50)))
      yield* Deferred.succeed(gate, undefined)
      const answers = yield* burst.await.pipe(Effect.flatten)
      assert.strictEqual(state.runs, 5)
      assert.strictEqual(new Set(answers.map((answer) => answer.body)).size, 5, "each request got its own response")
    }).pipe(Effect.provide(memory())))
})

/** A real HTTP server for `app` on a free loopback port, for the scope; its base URL. */
const serve = <E>(app: HttpApp.Default<E, Cache.Cache>, cache: Layer.Layer<Cache.Cache, unknown>) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      HttpServer.serve(app).pipe(
        Layer.provideMerge(NodeHttpServer.layer(() => createServer(), { port: 0, host: "127.0.0.1" })),
        Layer.provideMerge(cache)
      )
    )
    const server = yield* Effect.provide(HttpServer.HttpServer, context)
    const address = server.address
    if (address._tag !== "TcpAddress") return yield* Effect.die("not a TCP server")
    return { base: `http://127.0.0.1:${address.port}`, context }
  })

/** GETs each URL at once over HTTP (node:http, each with the Host a load balancer would pass on). */
const fetchAll = (urls: ReadonlyArray<string>, host = "shop.example") =>
  Effect.promise(() =>
    Promise.all(urls.map((url) =>
      new Promise<Answer>((resolve, reject) => {
        const request = httpGet(url, { headers: { host } }, (response) => {
          const chunks: Array<Buffer> = []
          response.on("data", (chunk: Buffer) => chunks.push(chunk))
          response.on("end", () => {
            const headers = new Headers()
            for (const [name, value] of Object.entries(response.headers)) {
              if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value)
            }
            resolve({ status: response.statusCode ?? 0, headers, body: Buffer.concat(chunks).toString("utf8") })
          })
          response.on("error", reject)
        })
        request.on("error", reject)
      })
    ))
  )

describe("HttpCache.middleware through a real HTTP server", () => {
  const slowRoute = () => {
    const state = { runs: 0 }
    const handler = Effect.suspend(() => {
      state.runs++
      return Effect.as(Effect.sleep("200 millis"), text("from the app", { "cache-control": "max-age=60" }))
    })
    return { state, handler }
  }

  it.live("memory: a burst of 50 requests on a cold URL runs the handler once; the next requests are hits", () =>
    Effect.gen(function*() {
      const { handler, state } = slowRoute()
      const { base } = yield* serve(HttpRouter.empty.pipe(HttpRouter.get("/cold", handler), HttpCache.middleware()), memory())
      const answers = yield* fetchAll(Array.from({ length: 50 }, () => `${base}/cold?burst=1`))
      assert.strictEqual(state.runs, 1)
      assert.isTrue(answers.every((answer) => answer.status === 200 && answer.body === "from the app"))
      const later = yield* fetchAll([`${base}/cold?burst=1`])
      assert.include(cacheStatus(later[0]!), "hit")
      assert.strictEqual(state.runs, 1)
    }).pipe(Effect.scoped))

  it.live("Redis: two caches sharing one Redis (two instances, 25 requests each) run the handler once", () =>
    Effect.gen(function*() {
      const { handler, state } = slowRoute()
      const app = HttpRouter.empty.pipe(HttpRouter.get("/cold", handler), HttpCache.middleware())
      // Each instance: its own client, store, lock and cache, on database 27.
      const cacheLayer = () =>
        Cache.layer({ namespace: "http-burst" }).pipe(
          Layer.provideMerge(Layer.mergeAll(RedisStore.layer(), RedisLock.layer()).pipe(Layer.provideMerge(redisOn(27))))
        )
      const a = yield* serve(app, cacheLayer())
      const b = yield* serve(app, cacheLayer())
      const urls = Array.from({ length: 50 }, (_, i) => `${i % 2 === 0 ? a.base : b.base}/cold?fleet=1`)
      const answers = yield* fetchAll(urls)
      assert.strictEqual(state.runs, 1)
      assert.isTrue(answers.every((answer) => answer.status === 200 && answer.body === "from the app"))
      const statuses = answers.map(cacheStatus)
      assert.strictEqual(statuses.filter((status) => status.endsWith("; stored")).length, 1)
      const later = yield* fetchAll([`${a.base}/cold?fleet=1`, `${b.base}/cold?fleet=1`])
      assert.isTrue(later.every((answer) => cacheStatus(answer).includes("hit")), "both instances read the stored response")
      assert.strictEqual(state.runs, 1)
    }).pipe(Effect.scoped))

  it.live("Redis: a stale URL on two instances (10 requests each) is revalidated with one conditional request", () =>
    Effect.gen(function*() {
      // Stored stale (max-age=0, with an ETag): kept to be revalidated; the 304 makes it fresh for a minute.
      const state = { runs: 0, conditional: 0 }
      const handler = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
        Effect.suspend(() => {
          state.runs++
          if (request.headers["if-none-match"] === "\"r1\"") {
            state.conditional++
            return Effect.as(Effect.sleep("200 millis"), HttpServerResponse.empty({ status: 304, headers: { etag: "\"r1\"", "cache-control": "max-age=60" } }))
          }
          return Effect.succeed(text("from the app", { "cache-control": "max-age=0", etag: "\"r1\"" }))
        }))
      const app = HttpRouter.empty.pipe(HttpRouter.get("/stale", handler), HttpCache.middleware())
      const cacheLayer = () =>
        Cache.layer({ namespace: "http-revalidate" }).pipe(
          Layer.provideMerge(Layer.mergeAll(RedisStore.layer(), RedisLock.layer()).pipe(Layer.provideMerge(redisOn(27))))
        )
      const a = yield* serve(app, cacheLayer())
      const b = yield* serve(app, cacheLayer())
      const [first] = yield* fetchAll([`${a.base}/stale`])
      assert.match(cacheStatus(first!), /^effect-cachekit; fwd=uri-miss; fwd-status=200; ttl=(0|-1); stored$/, "stored, stale at once")
      yield* Effect.sleep("50 millis") // the write lands after the response
      const urls = Array.from({ length: 20 }, (_, i) => `${i % 2 === 0 ? a.base : b.base}/stale`)
      const answers = yield* fetchAll(urls)
      assert.isTrue(answers.every((answer) => answer.status === 200 && answer.body === "from the app"))
      assert.deepStrictEqual([state.runs, state.conditional], [2, 1], "one conditional request for the fleet")
      const statuses = answers.map(cacheStatus)
      assert.strictEqual(statuses.filter((status) => status.includes("fwd-status=304") && status.endsWith("; stored")).length, 1)
      const later = yield* fetchAll([`${a.base}/stale`, `${b.base}/stale`])
      assert.isTrue(later.every((answer) => cacheStatus(answer).includes("hit")), "fresh on both instances")
      assert.strictEqual(state.runs, 2)
    }).pipe(Effect.scoped))


  it.live("Redis that is down: every request is answered by the app, none fails", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(() => freePort())
      const { handler, state } = counted((run) => text(`v${run}`, { "cache-control": "max-age=60" }))
      const { base } = yield* serve(
        HttpRouter.empty.pipe(HttpRouter.get("/p", handler), HttpCache.middleware()),
        Cache.layerRedis({ url: `redis://127.0.0.1:${port}/28`, namespace: "http-down", connectTimeout: "200 millis" })
      )
      const answers = yield* fetchAll(Array.from({ length: 10 }, () => `${base}/p`))
      assert.isTrue(answers.every((answer) => answer.status === 200 && answer.body.startsWith("v")))
      assert.isTrue(answers.every((answer) => cacheStatus(answer).endsWith("detail=store-error")), "nothing claimed stored")
      // One after the other: each is answered by the app, nothing having been stored.
      const runs = state.runs
      const [later] = yield* fetchAll([`${base}/p`])
      const [last] = yield* fetchAll([`${base}/p`])
      assert.deepStrictEqual([later!.body, last!.body], [`v${runs + 1}`, `v${runs + 2}`])
    }).pipe(Effect.scoped))
})

describe("HttpCache.requestScoped", () => {
  const Notes = Keyspace.make({ name: "notes", key: CacheKey.string, value: Schema.String, cache: HttpCache.RequestCache })

  it.live("each request has a cache of its own, gone once the request is answered", () =>
    Effect.gen(function*() {
      const seen: Array<Cache.Service> = []
      const loads = { count: 0 }
      const load = (who: string) => Effect.sync(() => {
        loads.count++
        return `note of ${who}`
      })
      const route = Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const who = new URL(request.url, "http://x").searchParams.get("who") ?? "?"
        seen.push(yield* HttpCache.RequestCache)
        const before = yield* Notes.get("note")
        // The same lookup twice within the request: one load.
        const first = yield* Notes.getOrSet("note", load(who))
        const second = yield* Notes.getOrSet("note", load(who))
        yield* Effect.sleep("50 millis")
        return HttpServerResponse.unsafeJson({ before: Option.isSome(before), first, second })
      })
      const app = HttpRouter.empty.pipe(HttpRouter.get("/note", route), HttpCache.requestScoped({ capacity: 10 }))
      expectTypeOf(app).toEqualTypeOf<HttpApp.Default<HttpServerError.RouteNotFound | CacheError.StoreError | CacheError.InvalidKeyError, never>>()
      const { base } = yield* serve(app, memory())
      const answers = yield* fetchAll([`${base}/note?who=ada`, `${base}/note?who=bob`])
      const bodies = answers.map((answer) => JSON.parse(answer.body) as { before: boolean; first: string; second: string })
      assert.deepStrictEqual(bodies, [
        { before: false, first: "note of ada", second: "note of ada" },
        { before: false, first: "note of bob", second: "note of bob" }
      ], "two concurrent requests never see each other's entries")
      assert.strictEqual(loads.count, 2)
      const [third] = yield* fetchAll([`${base}/note?who=cyd`])
      assert.isFalse((JSON.parse(third!.body) as { before: boolean }).before, "nothing left from earlier requests")
      assert.strictEqual(seen.length, 3)
      assert.strictEqual(new Set(seen).size, 3, "a fresh cache per request")
      for (const cache of seen) {
        const left = yield* Notes.get("note").pipe(Effect.provideService(HttpCache.RequestCache, cache))
        assert.isTrue(Option.isNone(left), "dropped at the end of its request")
      }
    }).pipe(Effect.scoped))

  it.effect("its capacity bounds it", () =>
    Effect.gen(function*() {
      const route = Effect.gen(function*() {
        for (let i = 0; i < 20; i++) yield* Notes.set(`n${i}`, "x")
        const kept = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => `n${i}`), (key) => Notes.get(key))
        return HttpServerResponse.text(String(kept.filter(Option.isSome).length))
      })
      const request = HttpServerRequest.fromWeb(new Request("http://shop.test/"))
      const response = yield* route.pipe(HttpCache.requestScoped({ capacity: 5 }), Effect.provideService(HttpServerRequest.HttpServerRequest, request))
      assert.strictEqual(response.body._tag === "Uint8Array" ? new TextDecoder().decode(response.body.body) : "", "5")
    }))
})

describe("the HTTP rules", () => {
  it("Cache-Control: names case-insensitive, quoted arguments with commas, the first occurrence wins, bad delta-seconds invalid", () => {
    const directives = Rules.parseCacheControl("Max-Age=60, private=\"set-cookie, x-user\", no-cache, max-age=5, s-maxage=abc")
    assert.strictEqual(directives.get("max-age"), "60")
    assert.deepStrictEqual(Rules.qualifiedFields(directives, "private"), ["set-cookie", "x-user"])
    assert.strictEqual(directives.get("no-cache"), true)
    assert.strictEqual(Rules.deltaSeconds(directives, "max-age"), 60_000)
    assert.strictEqual(Rules.deltaSeconds(directives, "s-maxage"), null)
    assert.strictEqual(Rules.deltaSeconds(directives, "min-fresh"), undefined)
    assert.strictEqual(Rules.deltaSeconds(Rules.parseCacheControl("max-age=99999999999999"), "max-age"), 2_147_483_648_000)
  })

  it("keys: host lower case, query sorted by name with repeated values in order, fragments dropped; Vary names sorted", () => {
    assert.strictEqual(Rules.primaryKey("Shop.Example", "/p?b=2&a=1&a=0#top"), "GET shop.example /p?a=1&a=0&b=2")
    assert.strictEqual(Rules.primaryKey("h", "/p?"), "GET h /p")
    assert.deepStrictEqual(Rules.varyNames("Accept-Language, accept-encoding,, Accept-Language"), ["accept-encoding", "accept-language"])
    assert.deepStrictEqual(Rules.varyNames("accept, *"), ["*"])
    assert.strictEqual(Rules.variantOf([], { a: "1" }), "")
    assert.notStrictEqual(Rules.variantOf(["a"], {}), Rules.variantOf(["a"], { a: "" }), "absent is not empty")
  })

  it("freshness: invalid Expires is stale at once; age counts Age, the time the app took and Date", () => {
    const none = Rules.parseCacheControl(undefined)
    assert.deepStrictEqual(Rules.freshnessLifetime(none, { expires: "0" }, 1000, undefined, true), { lifetime: 0, explicit: true })
    assert.strictEqual(Rules.freshnessLifetime(none, {}, 1000, undefined, true), undefined)
    for (const date of ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"]) {
      assert.strictEqual(Rules.httpDate(date), 784_111_777_000, date)
    }
    assert.isNaN(Rules.httpDate("2024-01-01"))
    assert.deepStrictEqual(Rules.freshnessLifetime(none, {}, 1000, 5000, false), undefined)
    assert.strictEqual(Rules.initialAge({ age: "10" }, 0, 2000), 12_000)
    assert.strictEqual(Rules.initialAge({ date: new Date(0).toUTCString() }, 29_000, 30_000), 30_000)
  })

  it("revalidation: the conditional fields sent, which 304 updates a stored response, and how", () => {
    const lastModified = "Mon, 01 Jan 2024 00:00:00 GMT"
    assert.deepStrictEqual(Rules.validatorFields({ etag: "\"a\"", "last-modified": lastModified }), {
      "if-none-match": "\"a\"",
      "if-modified-since": lastModified
    })
    assert.deepStrictEqual(Rules.validatorFields({ "last-modified": lastModified }), { "if-modified-since": lastModified })
    assert.isUndefined(Rules.validatorFields({ "cache-control": "max-age=60" }))
    assert.isTrue(Rules.selectsStored({ etag: "\"a\"" }, { etag: "W/\"a\"" }), "weak comparison")
    assert.isFalse(Rules.selectsStored({ etag: "\"a\"" }, { etag: "\"b\"" }))
    assert.isFalse(Rules.selectsStored({ "last-modified": lastModified }, { etag: "\"a\"" }), "a tag the stored response lacks")
    assert.isTrue(Rules.selectsStored({ "last-modified": lastModified }, { "last-modified": "Monday, 01-Jan-24 00:00:00 GMT" }))
    assert.isFalse(Rules.selectsStored({ "last-modified": lastModified }, { "last-modified": "Tue, 02 Jan 2024 00:00:00 GMT" }))
    assert.isTrue(Rules.selectsStored({ etag: "\"a\"" }, {}), "no validator: the response the request named")
    const updated = Rules.updatedHeaders(
      { "cache-control": "max-age=60", "content-type": "text/html", etag: "\"a\"", date: "Mon, 01 Jan 2024 00:00:00 GMT", "x-old": "1" },
      { "cache-control": "max-age=300", "content-type": "text/plain", "content-length": "0", "x-new": "2" },
      Date.UTC(2024, 0, 2)
    )
    assert.deepStrictEqual(updated, {
      "cache-control": "max-age=300",
      "content-type": "text/html",
      etag: "\"a\"",
      date: "Tue, 02 Jan 2024 00:00:00 GMT",
      "x-old": "1",
      "x-new": "2"
    })
  })


  it("Cache-Status members: parameters in order, a detail that is not a token quoted", () => {
    assert.strictEqual(Rules.formatCacheStatus("edge", { fwd: "uri-miss", fwdStatus: 200, stored: true }), "edge; fwd=uri-miss; fwd-status=200; stored")
    assert.strictEqual(Rules.formatCacheStatus("my cache", { hit: true, ttl: -3, detail: "two words" }), "\"my cache\"; hit; ttl=-3; detail=\"two words\"")
  })
})
