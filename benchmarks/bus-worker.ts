/**
 * The far side of the invalidation-latency case: one instance of a two-layer cache (ours, or
 * bentocache's memory + Redis + bus) that reads one key in a loop and reports each new value it sees,
 * with the moment it saw it (epoch milliseconds, sub-millisecond: `performance.timeOrigin + now()`).
 *
 * argv: contender url key. Prints "ready" once it serves the key's first value from memory, then one
 * line `<value> <at>` per change; exits when standard input closes.
 */
import { BentoCache, bentostore } from "bentocache"
import { memoryDriver } from "bentocache/drivers/memory"
import { redisBusDriver, redisDriver } from "bentocache/drivers/redis"
import { Effect, ManagedRuntime, Option, Schema } from "effect"
import { Cache, CacheKey, Keyspace } from "../src/index.js"

const [contender, url, key] = process.argv.slice(2) as [string, string, string]
const Counters = Keyspace.make({ name: "latency", key: CacheKey.string, value: Schema.Number, ttl: "1 hour" })

const reader = (): (() => Promise<number | undefined>) => {
  if (contender === "ours") {
    const runtime = ManagedRuntime.make(Cache.layerTiered({ namespace: "latency", redis: { url } }))
    const read = Effect.map(Counters.get(key), Option.getOrUndefined)
    return () => runtime.runPromise(read)
  }
  const { hostname, port } = new URL(url)
  const connection = { host: hostname, port: Number(port) }
  const bento = new BentoCache({
    default: "tiered",
    stores: {
      tiered: bentostore()
        .useL1Layer(memoryDriver({ maxItems: 1_000 }))
        .useL2Layer(redisDriver({ connection }))
        .useBus(redisBusDriver({ connection }))
    }
  })
  return () => bento.get<number>({ key })
}

const read = reader()
let last: number | undefined
let running = true
process.stdin.on("end", () => {
  running = false
  process.exit(0)
})
process.stdin.resume()
const loop = async () => {
  let announced = false
  while (running) {
    const value = await read()
    if (value !== undefined && value !== last) {
      last = value
      if (!announced) {
        announced = true
        process.stdout.write("ready\n")
      } else {
        process.stdout.write(`${value} ${performance.timeOrigin + performance.now()}\n`)
      }
    }
    await new Promise((resolve) => setImmediate(resolve))
  }
}
void loop()
