/**
 * What the two-layer cache's tests share: a redis-server of the file's own (they kill its pub/sub
 * connections, pause and restart it), instances of `Cache.layerTiered`, and polling on real time.
 */
import type { ChildProcess } from "node:child_process"
import { Context, Effect, Layer, Option, Schema, Scope } from "effect"
import { Redis as IORedis } from "ioredis"
import { afterAll, beforeAll } from "vitest"
import { Cache, CacheKey, Keyspace, type Redis } from "../src/index.js"
import { startRedis, stopRedis } from "./setup/servers.js"

/** Starts a redis-server for the calling test file (before its tests, stopped after them). */
export const ownServer = () => {
  const handle: { server: { port: number; process: ChildProcess } | undefined } = { server: undefined }
  beforeAll(async () => {
    handle.server = await startRedis()
  })
  afterAll(async () => {
    if (handle.server !== undefined) await stopRedis(handle.server.process)
  })
  const server = () => handle.server!
  const urlOf = (db: number, port = server().port) => `redis://127.0.0.1:${port}/${db}`
  /** Database `db` of the server, emptied, with a plain connection to it for the scope. */
  const database = (db: number) =>
    Effect.gen(function*() {
      const url = urlOf(db)
      const admin = yield* Effect.acquireRelease(Effect.sync(() => new IORedis(url)), (admin) => Effect.sync(() => admin.disconnect()))
      yield* Effect.promise(() => admin.flushdb())
      return { url, admin }
    })
  return { server, urlOf, database }
}

export const sleep = (millis: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, millis)))

export class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
export const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User, ttl: "10 minutes" })

export const ada = new User({ id: 1, name: "Ada" })
export const grace = new User({ id: 1, name: "Grace" })

export type Instance = Context.Context<Cache.Cache | Redis.Redis>

/** One instance of a two-layer cache (a fresh layer: its own memory, client and bus). */
export const instance = (url: string, namespace: string, options: Partial<Cache.TieredOptions> = {}) =>
  Effect.flatMap(Scope.Scope, (scope) =>
    Layer.buildWithScope(
      Cache.layerTiered({ namespace, l1: { capacity: 1_000 }, ...options, redis: { url, ...options.redis } }),
      scope
    ))

export const on = <A, E>(instance: Instance, effect: Effect.Effect<A, E, Cache.Cache | Redis.Redis>) => Effect.provide(effect, instance)

/** What an instance's memory may serve unchecked under `key` now (at the TestClock's time 0). */
export const unchecked = (instance: Instance, key: string) =>
  on(instance, Effect.map(Cache.Cache, (cache) => cache.store.getNow!(key, 0)))

/** Polls `read` every 2 ms until `done` holds of its result, for at most `millis` of real time; the time it took. */
export const until = <A, E, R>(read: Effect.Effect<A, E, R>, done: (a: A) => boolean, millis = 2_000) =>
  Effect.gen(function*() {
    const start = performance.now()
    while (performance.now() - start < millis) {
      if (done(yield* read)) return performance.now() - start
      yield* sleep(2)
    }
    return yield* Effect.die(new Error(`not done within ${millis} ms`))
  })

export const nameOf = (found: Option.Option<User>) => Option.isSome(found) ? found.value.name : "none"
