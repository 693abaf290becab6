/**
 * An HTTP server whose responses go through HttpCache: `npx tsx examples/http-server.ts`.
 *
 * It listens on 127.0.0.1, port `PORT` (default 3000), on the memory cache; with `CACHE_REDIS_URL` set,
 * `Cache.layerFromEnv` puts it on Redis and several instances then share the cache and its lock. Try:
 *
 *   curl -i localhost:3000/products                      # a miss: Cache-Status says fwd=uri-miss; stored
 *   curl -i localhost:3000/products                      # a hit, with Age
 *   curl -i -H 'if-none-match: "products-v1"' localhost:3000/products   # 304
 *   curl -i localhost:3000/news                          # no-cache: stored, revalidated with the app at every use:
 *   curl -i localhost:3000/news                          #   the app answers 304, Cache-Status says fwd-status=304
 *   curl -i -H 'accept-language: fr' localhost:3000/greeting           # one stored response per language
 *   curl -i localhost:3000/me                            # private: never stored
 *   curl -i -X POST localhost:3000/products              # invalidates /products
 *   curl -i localhost:3000/report                        # the same lookup twice in one request, one load
 */
import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { createServer } from "node:http"
import { Config, Effect, Layer, Schema } from "effect"
import { Cache, CacheKey, HttpCache, Keyspace } from "../src/index.js"

/** A slow source, so a hit is easy to tell from a miss. */
const slowly = <A>(value: A) => Effect.as(Effect.sleep("300 millis"), value)

/** Looked up once per request however many times the request asks (the request-scoped cache). */
const Rates = Keyspace.make({ name: "rates", key: CacheKey.string, value: Schema.Number, cache: HttpCache.RequestCache })

const app = HttpRouter.empty.pipe(
  HttpRouter.get(
    "/products",
    Effect.map(slowly(["tea", "coffee"]), (products) =>
      HttpServerResponse.unsafeJson(products, {
        headers: { "cache-control": "public, max-age=60, stale-while-revalidate=30, stale-if-error=600", etag: "\"products-v1\"" }
      }))
  ),
  HttpRouter.post("/products", Effect.succeed(HttpServerResponse.empty({ status: 204 }))),
  // Checked with the app at every use: the cache sends If-None-Match with the stored ETag, and the
  // app's 304 (cheap: no body made) lets the cache answer with the body it stored.
  HttpRouter.get(
    "/news",
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      const headers = { "cache-control": "no-cache", etag: "\"news-1\"" }
      return request.headers["if-none-match"] === headers.etag
        ? Effect.succeed(HttpServerResponse.empty({ status: 304, headers }))
        : Effect.map(slowly("today's news"), (news) => HttpServerResponse.text(news, { headers }))
    })
  ),
  HttpRouter.get(
    "/greeting",
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
      Effect.map(slowly((request.headers["accept-language"] ?? "").startsWith("fr") ? "bonjour" : "hello"), (greeting) =>
        HttpServerResponse.text(greeting, { headers: { "cache-control": "max-age=300", vary: "accept-language" } })))
  ),
  HttpRouter.get("/me", Effect.succeed(HttpServerResponse.text("your account", { headers: { "cache-control": "private, max-age=60" } }))),
  HttpRouter.get(
    "/report",
    Effect.gen(function*() {
      const first = yield* Rates.getOrSet("EUR", slowly(1.08))
      const second = yield* Rates.getOrSet("EUR", slowly(1.08)) // from this request's cache
      return HttpServerResponse.text(`EUR ${first} ${second}`, { headers: { "cache-control": "no-store" } })
    })
  ),
  HttpCache.requestScoped({ capacity: 100 }),
  HttpCache.middleware({ defaultTtl: "1 minute" })
)

const Server = Layer.unwrapEffect(
  Effect.map(Config.withDefault(Config.integer("PORT"), 3000), (port) =>
    HttpServer.serve(app).pipe(
      HttpServer.withLogAddress,
      Layer.provide(NodeHttpServer.layer(() => createServer(), { port, host: "127.0.0.1" }))
    ))
)

NodeRuntime.runMain(Layer.launch(Server.pipe(Layer.provide(Cache.layerFromEnv))))
