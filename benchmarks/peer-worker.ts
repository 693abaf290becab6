/**
 * One process of a peer's fleet for the cross-process stampede: `callers` concurrent getOrSet-shaped
 * calls on one cold key through the peer, against one Redis. Same protocol and output as
 * examples/fleet-worker.ts (prints "ready", starts on a line of standard input, prints one JSON line).
 *
 * argv: peer url key callers producerMillis
 */
import { cachified, type Cache as CachifiedCache, type CacheEntry } from "@epic-web/cachified"
import { createCache } from "cache-manager"
import { Redis as IORedis } from "ioredis"
import { Keyv } from "keyv"
import { bentoTiered, connectionOf } from "./bento.js"

const [peer, url, key, callers, producerMillis] = process.argv.slice(2) as [string, string, string, string, string]
const redis = new IORedis(url)

const producing = (counted: string) => async () => {
  await redis.incr(`runs:${counted}`)
  await new Promise((resolve) => setTimeout(resolve, Number(producerMillis)))
  return { by: process.pid, finishedAt: Date.now() }
}
type Produced = Awaited<ReturnType<ReturnType<typeof producing>>>

/** The peer's client, made once; `getOrSet(key)` calls it for one key. */
const peerCall = (): ((key: string) => Promise<Produced>) => {
  switch (peer) {
    case "bentocache": {
      const bento = bentoTiered(connectionOf(url), 1_000)
      return (key) => bento.getOrSet({ key, factory: producing(key), ttl: "1m" })
    }
    case "cache-manager": {
      // Keyv over the same ioredis: a Map-like store.
      const store = {
        get: async (k: string) => (await redis.get(k)) ?? undefined,
        set: async (k: string, v: string, ttl?: number) => void (ttl ? await redis.set(k, v, "PX", ttl) : await redis.set(k, v)),
        delete: async (k: string) => (await redis.del(k)) > 0,
        clear: async () => undefined
      }
      const manager = createCache({ stores: [new Keyv({ store: store as never })], ttl: 60_000 })
      return (key) => manager.wrap(key, producing(key), 60_000)
    }
    case "cachified": {
      const cache: CachifiedCache = {
        get: async (k) => {
          const raw = await redis.get(k)
          return raw === null ? null : (JSON.parse(raw) as CacheEntry)
        },
        set: async (k, entry) => void (await redis.set(k, JSON.stringify(entry), "PX", 60_000)),
        delete: async (k) => void (await redis.del(k))
      }
      return (key) => cachified({ key, cache, ttl: 60_000, getFreshValue: producing(key) })
    }
    default:
      throw new Error(`unknown peer ${peer}`)
  }
}
const client = peerCall()
const getOrSet = (key: string) => () => client(key)

const call = getOrSet(key)
// One stampede on another key first, as examples/fleet-worker.ts does: every contender meets the
// measured stampede warm.
const warmUp = getOrSet(`${key}-warm-up`)
process.stdin.once("data", async () => {
  const startedAt = Date.now()
  const results = await Promise.all(
    Array.from({ length: Number(callers) }, async () => ({ value: await call(), returnedAt: Date.now() }))
  )
  const runs = Number(await redis.get(`runs:${key}`))
  process.stdout.write(`${JSON.stringify({ pid: process.pid, startedAt, runs, results })}\n`)
  process.exit(0)
})
redis.once("ready", async () => {
  await Promise.all(Array.from({ length: Number(callers) }, () => warmUp()))
  process.stdout.write("ready\n")
})
