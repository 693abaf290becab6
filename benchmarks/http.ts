/**
 * The HTTP middleware beside the bare handler: requests answered in process through
 * `HttpApp.toWebHandlerRuntime` (no sockets), so the rows show what the cache adds to a request and
 * what it saves when the handler has work to do.
 */
import { HttpApp, HttpRouter, HttpServerResponse } from "@effect/platform"
import { Effect, ManagedRuntime } from "effect"
import { Cache, HttpCache } from "../src/index.js"
import { type Result, runCase } from "./harness.js"

const REQUESTS = 200
const paths = Array.from({ length: 20 }, (_, i) => `/products/${i}`)

/** A JSON page of ~2 KB, as a product page's API might answer. */
const page = (id: string) =>
  JSON.stringify({ id, items: Array.from({ length: 20 }, (_, i) => ({ sku: `${id}-${i}`, name: `item ${i} of ${id}`, price: i * 3 + 0.99 })) })

/** The app: builds the page (cheap, or after 1 ms of work elsewhere, as a database read would take). */
const appWith = (work: Effect.Effect<void>) =>
  HttpRouter.empty.pipe(
    HttpRouter.get(
      "/products/:id",
      Effect.flatMap(HttpRouter.params, (params) =>
        Effect.as(work, HttpServerResponse.text(page(params.id ?? ""), {
          contentType: "application/json",
          headers: { "cache-control": "public, max-age=3600" }
        })))
    )
  )

export const httpCases = async (): Promise<Array<Result>> => {
  const runtime = ManagedRuntime.make(Cache.layerMemory({ capacity: 10_000 }))
  const cacheRuntime = await runtime.runtime()
  const handlers = (name: string, work: Effect.Effect<void>) => {
    const bare = HttpApp.toWebHandlerRuntime(cacheRuntime)(appWith(work))
    const cached = HttpApp.toWebHandlerRuntime(cacheRuntime)(appWith(work).pipe(HttpCache.middleware({ name, defaultTtl: "1 hour" })))
    return { bare, cached }
  }
  const requestAll = (handler: (request: Request) => Promise<Response>) => async () => {
    await Promise.all(Array.from({ length: REQUESTS }, async (_, i) => {
      const response = await handler(new Request(`http://shop.test${paths[i % paths.length]}`, { headers: { host: "shop.test" } }))
      await response.arrayBuffer()
    }))
  }
  const results: Array<Result> = []
  const cheap = handlers("http-cheap", Effect.void)
  const slow = handlers("http-slow", Effect.sleep("1 millis"))
  // Fill the cache once.
  await requestAll(cheap.cached)()
  await requestAll(slow.cached)()
  results.push(await runCase(`HTTP GET, ${REQUESTS} requests in flight, handler builds a 2 KB JSON page (in process, toWebHandler)`, "bare handler", [
    { name: "bare handler", batch: requestAll(cheap.bare) },
    { name: "HttpCache.middleware (memory), hit", batch: requestAll(cheap.cached) }
  ], REQUESTS))
  results.push(await runCase(`HTTP GET, ${REQUESTS} requests in flight, handler waits 1 ms then builds the page`, "bare handler", [
    { name: "bare handler", batch: requestAll(slow.bare) },
    { name: "HttpCache.middleware (memory), hit", batch: requestAll(slow.cached) }
  ], REQUESTS))
  await runtime.dispose()
  return results
}
