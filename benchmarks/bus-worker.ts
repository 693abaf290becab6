/**
 * The far side of the invalidation-latency case: one instance of a two-layer cache (ours, or
 * bentocache's memory + Redis + bus) that reads one key in a loop and reports each new value it sees,
 * with the moment it saw it (epoch milliseconds, sub-millisecond: `performance.timeOrigin + now()`).
 *
 * argv: contender url key. Prints "ready" once it serves the key's first value from memory, then one
 * line `<value> <at>` per change; exits when standard input closes.
 */
import { Effect, ManagedRuntime, Option, Schema } from "effect"
import { Cache, CacheKey, Keyspace } from "../src/index.js"
import { bentoTiered, connectionOf } from "./bento.js"

const [contender, url, key] = process.argv.slice(2) as [string, string, string]
const Counters = Keyspace.make({ name: "latency", key: CacheKey.string, value: Schema.Number, ttl: "1 hour" })

const reader = (): (() => Promise<number | undefined>) => {
  if (contender === "ours") {
    const runtime = ManagedRuntime.make(Cache.layerTiered({ namespace: "latency", redis: { url } }))
    const read = Effect.map(Counters.get(key), Option.getOrUndefined)
    return () => runtime.runPromise(read)
  }
  const bento = bentoTiered(connectionOf(url), 1_000)
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
