/**
 * The Redis cases: a redis-server of the benchmark's own on a free loopback port; Redis get hits
 * (sequential, 100 in flight), getMany(100) against one MGET, and stampedes with their Redis command
 * counts from INFO commandstats.
 */
import { cachified, type Cache as CachifiedCache, type CacheEntry } from "@epic-web/cachified"
import { BentoCache, bentostore } from "bentocache"
import { memoryDriver } from "bentocache/drivers/memory"
import { redisDriver } from "bentocache/drivers/redis"
import { createCache } from "cache-manager"
import { Deferred, Effect, ManagedRuntime, Schema } from "effect"
import { Redis as IORedis } from "ioredis"
import { LRUCache } from "lru-cache"
import { do_not_optimize } from "mitata"
import { runFleet } from "../examples/fleet.js"
import { Cache, CacheKey, Keyspace } from "../src/index.js"
import { commandDelta, commandStats, startRedis, stopRedis } from "../test/setup/servers.js"
import { type Result, runCase, selected, value } from "./harness.js"
import { batchCases } from "./batch.js"
import { peerStampede } from "./peers.js"
import { tieredCases } from "./tiered.js"

const User = Schema.Struct({ id: Schema.Number, name: Schema.String })
const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User, ttl: "1 hour" })
/** The same entries, each carrying a tag: a read also checks the tag's version (trusted for the tagWindow). */
const Tagged = Keyspace.make({ name: "tagged", key: CacheKey.number, value: User, ttl: "1 hour", tags: (id) => [`shard:${id % 10}`] })

/** Connection chatter and the workers' own run counter are not the cache's commands. */
const delta = (before: Record<string, number>, after: Record<string, number>) =>
  commandDelta(before, after, ["info", "select", "client|setinfo", "client|setname", "quit", "psubscribe", "incr"])

const describeCommands = (commands: Record<string, number>) => {
  const total = Object.values(commands).reduce((a, b) => a + b, 0)
  const detail = Object.entries(commands).sort((a, b) => b[1] - a[1]).map(([n, c]) => `${c} ${n.toUpperCase()}`).join(", ")
  return total === 0 ? "0" : `${total} (${detail})`
}

/**
 * Large values with and without compression: a set then a get of a JSON document of a given size
 * (records with repeated field names and varied numbers, as real payloads are), on one Redis.
 */
const compressionCases = async (url: string): Promise<Array<Result>> => {
  const Docs = Keyspace.make({
    name: "docs",
    key: CacheKey.string,
    value: Schema.Array(Schema.Struct({ id: Schema.Number, name: Schema.String, score: Schema.Number, tags: Schema.Array(Schema.String) }))
  })
  const documentOf = (bytes: number) =>
    Array.from({ length: Math.ceil(bytes / 80) }, (_, i) => ({ id: i, name: `user-${i}`, score: (i * 7919) % 1000, tags: ["a", `t${i % 7}`] }))
  const plain = ManagedRuntime.make(Cache.layerRedis({ url, namespace: "zip-off", compressAbove: false }))
  const packed = ManagedRuntime.make(Cache.layerRedis({ url, namespace: "zip-on", compressAbove: 1 }))
  const results: Array<Result> = []
  const raw = new IORedis(url)
  for (const size of [2_048, 16_384, 131_072]) {
    const doc = documentOf(size)
    await plain.runPromise(Docs.set("d", doc))
    await packed.runPromise(Docs.set("d", doc))
    const [stored, deflated] = await Promise.all([raw.strlen("zip-off:docs:d"), raw.strlen("zip-on:docs:d")])
    const label = `${Math.round(JSON.stringify(doc).length / 1024)} KB`
    const kept = `Redis keeps ${(stored / 1024).toFixed(1)} KB plain, ${(deflated / 1024).toFixed(1)} KB deflated`
    results.push(await runCase(`Redis set + get of a ${label} JSON value: compression (${kept})`, "not compressed", [
      { name: "not compressed", batch: () => plain.runPromise(Effect.zipRight(Docs.set("d", doc), Docs.get("d"))) },
      { name: "deflated (level 1)", batch: () => packed.runPromise(Effect.zipRight(Docs.set("d", doc), Docs.get("d"))) }
    ], 1))
  }
  raw.disconnect()
  await plain.dispose()
  await packed.dispose()
  return results
}

export const redisCases = async (): Promise<Array<Result>> => {
  const server = await startRedis()
  const url = `redis://127.0.0.1:${server.port}`
  const admin = new IORedis(server.port, "127.0.0.1")
  const results: Array<Result> = []
  try {
    if (selected("tiered")) results.push(...(await tieredCases(url, server.port)))
    if (selected("batch")) results.push(...(await batchCases(url)))
    if (!selected("redis")) return results
    const plain = new IORedis(server.port, "127.0.0.1")
    const piped = new IORedis(server.port, "127.0.0.1", { enableAutoPipelining: true })
    const ours = ManagedRuntime.make(Cache.layerRedis({ url, namespace: "bench" }))
    const bento = new BentoCache({
      default: "redis",
      stores: { redis: bentostore().useL2Layer(redisDriver({ connection: { host: "127.0.0.1", port: server.port } })) }
    })
    const ids = Array.from({ length: 1_000 }, (_, i) => i)
    await ours.runPromise(Users.setMany(ids.map((i) => [i, value(i)] as const)))
    await ours.runPromise(Tagged.setMany(ids.map((i) => [i, value(i)] as const)))
    for (const i of ids) {
      await plain.set(`raw:${i}`, JSON.stringify(value(i)))
      await bento.set({ key: `b${i}`, value: value(i), ttl: "1h" })
      await bento.set({ key: `t${i}`, value: value(i), ttl: "1h", tags: [`shard:${i % 10}`] })
    }

    const SEQ = 200
    const seqKeys = Array.from({ length: SEQ }, (_, i) => (i * 7919) % 1_000)
    results.push(await runCase("Redis get hit, sequential", "raw ioredis GET", [
      { name: "raw ioredis GET", batch: async () => { for (const k of seqKeys) do_not_optimize(await plain.getBuffer(`raw:${k}`)) } },
      { name: "raw ioredis GET (auto-pipelining)", batch: async () => { for (const k of seqKeys) do_not_optimize(await piped.getBuffer(`raw:${k}`)) } },
      {
        name: "floor: Effect.tryPromise(ioredis GET), same loop",
        batch: () => Effect.runPromise(Effect.forEach(seqKeys, (k) => Effect.tryPromise(() => piped.getBuffer(`raw:${k}`)), { discard: true }))
      },
      { name: "effect-cachekit get", batch: () => ours.runPromise(Effect.forEach(seqKeys, (k) => Users.get(k), { discard: true })) },
      {
        name: "effect-cachekit get, tagged entries",
        batch: () => ours.runPromise(Effect.forEach(seqKeys, (k) => Tagged.get(k), { discard: true }))
      },
      { name: "bentocache get (redis)", batch: async () => { for (const k of seqKeys) do_not_optimize(await bento.get({ key: `b${k}` })) } },
      { name: "bentocache get (redis), tagged entries", batch: async () => { for (const k of seqKeys) do_not_optimize(await bento.get({ key: `t${k}` })) } }
    ], SEQ))

    const FLIGHT = 100
    const flights = 10
    const flightKeys = Array.from({ length: FLIGHT }, (_, i) => (i * 7919) % 1_000)
    results.push(await runCase("Redis get hit, 100 in flight", "raw ioredis GET (auto-pipelining)", [
      {
        name: "raw ioredis GET",
        batch: async () => { for (let f = 0; f < flights; f++) do_not_optimize(await Promise.all(flightKeys.map((k) => plain.getBuffer(`raw:${k}`)))) }
      },
      {
        name: "raw ioredis GET (auto-pipelining)",
        batch: async () => { for (let f = 0; f < flights; f++) do_not_optimize(await Promise.all(flightKeys.map((k) => piped.getBuffer(`raw:${k}`)))) }
      },
      {
        name: "floor: Effect.tryPromise(ioredis GET), same forEach",
        batch: () =>
          Effect.runPromise(Effect.forEach(Array.from({ length: flights }), () =>
            Effect.forEach(flightKeys, (k) => Effect.tryPromise(() => piped.getBuffer(`raw:${k}`)), { concurrency: "unbounded", discard: true }), { discard: true }))
      },
      {
        name: "effect-cachekit get",
        batch: () =>
          ours.runPromise(Effect.forEach(Array.from({ length: flights }), () =>
            Effect.forEach(flightKeys, (k) => Users.get(k), { concurrency: "unbounded", discard: true }), { discard: true }))
      },
      {
        name: "bentocache get (redis)",
        batch: async () => { for (let f = 0; f < flights; f++) do_not_optimize(await Promise.all(flightKeys.map((k) => bento.get({ key: `b${k}` })))) }
      }
    ], FLIGHT * flights))

    const many = Array.from({ length: 100 }, (_, i) => i * 10)
    results.push(await runCase("getMany of 100 keys (keys/s)", "raw ioredis MGET", [
      { name: "raw ioredis MGET", batch: async () => { for (let f = 0; f < 10; f++) do_not_optimize(await plain.mgetBuffer(...many.map((k) => `raw:${k}`))) } },
      {
        name: "raw ioredis MGET + JSON.parse (no validation)",
        batch: async () => {
          for (let f = 0; f < 10; f++) {
            const values = await plain.mgetBuffer(...many.map((k) => `raw:${k}`))
            do_not_optimize(values.map((v) => v === null ? undefined : JSON.parse(v.toString("utf8"))))
          }
        }
      },
      { name: "effect-cachekit getMany", batch: () => ours.runPromise(Effect.forEach(Array.from({ length: 10 }), () => Users.getMany(many), { discard: true })) }
    ], 1_000))

    results.push(...(await compressionCases(url)))
    results.push(await stampedeInProcess(admin, url, server.port))
    results.push(await stampedeAcrossProcesses(admin, url))

    await ours.dispose()
    await bento.disconnect()
    plain.disconnect()
    piped.disconnect()
  } finally {
    admin.disconnect()
    await stopRedis(server.process)
  }
  return results
}

// ---------------------------------------------------------------------------------------------------
// Stampede in one process: 1,000 concurrent getOrSet on one cold key, 50 ms producer.

interface StampedeRow {
  readonly name: string
  readonly calls: number
  readonly millis: number
  readonly commands: string
  readonly lastWaiter?: string
}

const stampedeLines = (title: string, rows: ReadonlyArray<StampedeRow>, withWaiter = false) => {
  const width = Math.max(...rows.map((r) => r.name.length))
  return [
    `### ${title}`,
    "",
    `| contender${" ".repeat(Math.max(0, width - 9))} | producer calls | wall time | Redis commands |${withWaiter ? " last waiter after the producer |" : ""}`,
    `| ${"-".repeat(width)} | ---: | ---: | --- |${withWaiter ? " ---: |" : ""}`,
    ...rows.map((r) =>
      `| ${r.name.padEnd(width)} | ${r.calls} | ${r.millis.toFixed(0)} ms | ${r.commands} |${withWaiter ? ` ${r.lastWaiter ?? "n/a"} |` : ""}`
    ),
    ""
  ]
}

const stampedeInProcess = async (admin: IORedis, url: string, port: number): Promise<Result> => {
  const CALLERS = 1_000
  const rows: Array<StampedeRow> = []
  const measureOne = async (name: string, run: (key: string, produce: () => Promise<typeof value extends (i: number) => infer V ? V : never>) => Promise<unknown>) => {
    let calls = 0
    const produce = async () => {
      calls++
      await new Promise((r) => setTimeout(r, 50))
      return value(7)
    }
    const key = `stampede-${name.replace(/\W+/g, "-")}-${Date.now()}`
    // One stampede on another key first, not counted: every contender is measured warm (compiled
    // code, connections), as a long-running service meets a stampede.
    await run(`${key}-warm-up`, produce)
    calls = 0
    await new Promise((r) => setTimeout(r, 50))
    const before = await commandStats(admin)
    const started = performance.now()
    await run(key, produce)
    const millis = performance.now() - started
    // Writes that land after the callers return are still part of the stampede's cost.
    await new Promise((r) => setTimeout(r, 50))
    rows.push({ name, calls, millis, commands: describeCommands(delta(before, await commandStats(admin))) })
  }

  const Stamped = Keyspace.make({ name: "stamped", key: CacheKey.string, value: User, ttl: "1 minute" })
  const oursMemory = ManagedRuntime.make(Cache.layerMemory())
  const oursRedis = ManagedRuntime.make(Cache.layerRedis({ url, namespace: "stampede" }))
  await oursRedis.runPromise(Effect.void)
  const bentoMemory = new BentoCache({ default: "m", stores: { m: bentostore().useL1Layer(memoryDriver({ maxItems: 1_000 })) } })
  const bentoRedis = new BentoCache({
    default: "r",
    stores: { r: bentostore().useL2Layer(redisDriver({ connection: { host: "127.0.0.1", port } })) }
  })
  const manager = createCache({ ttl: 60_000 })
  const lru = new LRUCache<string, CacheEntry>({ max: 1_000 })
  const cachifiedCache: CachifiedCache = {
    get: (k) => lru.get(k),
    set: (k, v) => void lru.set(k, v),
    delete: (k) => void lru.delete(k)
  }

  const many = <A>(f: () => Promise<A>) => Promise.all(Array.from({ length: CALLERS }, f))
  await measureOne("effect-cachekit (memory)", (key, produce) =>
    oursMemory.runPromise(Effect.all(Array.from({ length: CALLERS }, () => Stamped.getOrSet(key, Effect.promise(produce))), { concurrency: "unbounded" })))
  await measureOne("effect-cachekit (Redis, with lock)", (key, produce) =>
    oursRedis.runPromise(Effect.all(Array.from({ length: CALLERS }, () => Stamped.getOrSet(key, Effect.promise(produce))), { concurrency: "unbounded" })))
  // What Effect itself costs here: 1,000 fibers waiting on one Deferred, completed after the producer.
  await measureOne("floor: 1,000 Effect fibers awaiting one Deferred (no cache)", (_key, produce) =>
    Effect.runPromise(Effect.flatMap(Deferred.make<unknown>(), (done) =>
      Effect.zipRight(
        Effect.forkDaemon(Effect.flatMap(Effect.promise(produce), (v) => Deferred.succeed(done, v))),
        Effect.all(Array.from({ length: CALLERS }, () => Deferred.await(done)), { concurrency: "unbounded" })
      ))))
  await measureOne("bentocache (memory)", (key, produce) => many(() => bentoMemory.getOrSet({ key, factory: produce, ttl: "1m" })))
  await measureOne("bentocache (redis)", (key, produce) => many(() => bentoRedis.getOrSet({ key, factory: produce, ttl: "1m" })))
  await measureOne("cache-manager 7 wrap (memory)", (key, produce) => many(() => manager.wrap(key, produce, 60_000)))
  await measureOne("@epic-web/cachified (lru-cache)", (key, produce) =>
    many(() => cachified({ key, cache: cachifiedCache, ttl: 60_000, getFreshValue: produce })))

  await oursMemory.dispose()
  await oursRedis.dispose()
  await bentoMemory.disconnect()
  await bentoRedis.disconnect()
  const title = "Stampede in one process: 1,000 concurrent getOrSet on one cold key, 50 ms producer (each after one warm-up stampede on another key)"
  const lines = stampedeLines(title, rows)
  console.log(lines.join("\n"))
  return { title, reference: "", rows: [], lines }
}

// ---------------------------------------------------------------------------------------------------
// Stampede across 4 processes × 250 callers on one Redis.

const stampedeAcrossProcesses = async (admin: IORedis, url: string): Promise<Result> => {
  const rows: Array<StampedeRow> = []
  {
    // Counted from the start signal: each worker's warm-up stampede (on another key) is not.
    let before: Record<string, number> = {}
    const fleet = await runFleet(
      4,
      { url, namespace: "fleet", key: `cold-${Date.now()}`, callers: 250, producerMillis: 50, leaseMillis: 10_000 },
      async () => void (before = await commandStats(admin))
    )
    rows.push({
      name: "effect-cachekit (Redis lock)",
      calls: fleet.runs,
      millis: fleet.wallMillis,
      commands: describeCommands(delta(before, await commandStats(admin))),
      lastWaiter: `${fleet.lastWaiterMillis} ms`
    })
  }
  for (const peer of ["bentocache", "cache-manager", "cachified"] as const) {
    let before: Record<string, number> = {}
    const fleet = await peerStampede(peer, { url, processes: 4, callers: 250, producerMillis: 50 }, async () => void (before = await commandStats(admin)))
    rows.push({
      name: `${peer} (redis)`,
      calls: fleet.runs,
      millis: fleet.wallMillis,
      commands: describeCommands(delta(before, await commandStats(admin))),
      lastWaiter: `${fleet.lastWaiterMillis} ms`
    })
  }
  const title = "Stampede across 4 processes × 250 callers on one Redis, 50 ms producer (wall time from the start signal; each process after one warm-up stampede on another key)"
  const lines = stampedeLines(title, rows, true)
  console.log(lines.join("\n"))
  return { title, reference: "", rows: [], lines }
}
