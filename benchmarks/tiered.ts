/**
 * The two-layer cases, on the benchmark's Redis: hits served from memory by a two-layer cache (ours:
 * `Cache.layerTiered`; bentocache: memory L1 + Redis L2 + its Redis bus), and how long a write on one
 * process takes to reach a reader in another (from the write's acknowledgement to the first read that
 * returns the new value), p50 and p99, from the write's call and from its acknowledgement.
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Effect, ManagedRuntime, Schema } from "effect"
import { do_not_optimize } from "mitata"
import { Cache, CacheKey, Keyspace } from "../src/index.js"
import { bentoTiered } from "./bento.js"
import { type Result, runCase, value } from "./harness.js"

const User = Schema.Struct({ id: Schema.Number, name: Schema.String })
const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User, ttl: "1 hour" })
const Counters = Keyspace.make({ name: "latency", key: CacheKey.string, value: Schema.Number, ttl: "1 hour" })

export const tieredCases = async (url: string, port: number): Promise<Array<Result>> => {
  const results: Array<Result> = []
  const ours = ManagedRuntime.make(Cache.layerTiered({ namespace: "bench-tiered", l1: { capacity: 10_000 }, redis: { url } }))
  const bento = bentoTiered({ host: "127.0.0.1", port }, 10_000)
  const ids = Array.from({ length: 1_000 }, (_, i) => i)
  await ours.runPromise(Effect.forEach(ids, (i) => Users.set(i, value(i)), { discard: true }))
  for (const i of ids) await bento.set({ key: `t${i}`, value: value(i), ttl: "1h" })
  const keys = Array.from({ length: 1_000 }, (_, i) => (i * 7919) % 1_000)
  const never = Effect.die("a hit never produces")

  results.push(await runCase("Two-layer cache, hit served from memory (get)", "bentocache get (memory + redis + bus)", [
    { name: "effect-cachekit get, layerTiered, in one Effect program", batch: () => ours.runPromise(Effect.forEach(keys, (k) => Users.get(k), { discard: true })) },
    { name: "bentocache get (memory + redis + bus)", batch: async () => { for (const k of keys) do_not_optimize(await bento.get({ key: `t${k}` })) } }
  ]))
  results.push(await runCase("Two-layer cache, getOrSet hit served from memory", "bentocache getOrSet (memory + redis + bus)", [
    {
      name: "effect-cachekit getOrSet, layerTiered, in one Effect program",
      batch: () => ours.runPromise(Effect.forEach(keys, (k) => Users.getOrSet(k, never), { discard: true }))
    },
    {
      name: "bentocache getOrSet (memory + redis + bus)",
      batch: async () => { for (const k of keys) do_not_optimize(await bento.getOrSet({ key: `t${k}`, factory: () => value(k), ttl: "1h" })) }
    }
  ]))
  await ours.dispose()
  await bento.disconnect()

  results.push(await invalidationLatency(url, port))
  return results
}

const workerPath = fileURLToPath(new URL(import.meta.url.endsWith(".js") ? "./bus-worker.js" : "./bus-worker.ts", import.meta.url))

const percentile = (sorted: ReadonlyArray<number>, p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

/**
 * A writer here, a reader in another process polling one key: each of `WRITES` writes (5 ms apart)
 * is timed from its acknowledgement to the reader's first read of the new value.
 */
const invalidationLatency = async (url: string, port: number): Promise<Result> => {
  const WRITES = 200
  const rows: Array<{ name: string; p50: number; p99: number; startP50: number; startP99: number; seen: number }> = []
  for (const contender of ["ours", "bentocache"] as const) {
    const key = `k-${contender}-${Date.now()}`
    let write: (n: number) => Promise<unknown>
    let close: () => Promise<unknown>
    if (contender === "ours") {
      const runtime = ManagedRuntime.make(Cache.layerTiered({ namespace: "latency", redis: { url } }))
      write = (n) => runtime.runPromise(Counters.set(key, n))
      close = () => runtime.dispose()
    } else {
      const bento = bentoTiered({ host: "127.0.0.1", port }, 10_000)
      write = (n) => bento.set({ key, value: n, ttl: "1h" })
      close = () => bento.disconnect()
    }
    await write(0)
    const child = spawn(process.execPath, [...(workerPath.endsWith(".ts") ? ["--import", "tsx"] : []), workerPath, contender, url, key], {
      stdio: ["pipe", "pipe", "inherit"]
    })
    const seen = new Map<number, number>()
    let buffer = ""
    let ready: () => void = () => {}
    const isReady = new Promise<void>((resolve) => ready = resolve)
    child.stdout.on("data", (chunk) => {
      buffer += chunk
      const lines = buffer.split("\n")
      buffer = lines.pop()!
      for (const line of lines) {
        if (line === "ready") ready()
        else {
          const [n, at] = line.split(" ").map(Number)
          seen.set(n!, at!)
        }
      }
    })
    await isReady
    const started = new Map<number, number>()
    const written = new Map<number, number>()
    for (let n = 1; n <= WRITES; n++) {
      started.set(n, performance.timeOrigin + performance.now())
      await write(n)
      written.set(n, performance.timeOrigin + performance.now())
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    await new Promise((resolve) => setTimeout(resolve, 200))
    child.stdin.end()
    await new Promise((resolve) => child.once("exit", resolve))
    await close()
    const since = (from: Map<number, number>) =>
      Array.from(from, ([n, at]) => seen.has(n) ? Math.max(0, seen.get(n)! - at) : undefined)
        .filter((x): x is number => x !== undefined)
        .sort((a, b) => a - b)
    const fromAck = since(written)
    const fromStart = since(started)
    rows.push({
      name: contender === "ours" ? "effect-cachekit layerTiered (Redis bus)" : "bentocache (memory + redis + bus)",
      p50: percentile(fromAck, 0.5),
      p99: percentile(fromAck, 0.99),
      startP50: percentile(fromStart, 0.5),
      startP99: percentile(fromStart, 0.99),
      seen: fromAck.length
    })
  }
  const title = "Invalidation across 2 processes: from a write to the other process's first read of the new value"
  const lines = [
    `### ${title}`,
    "",
    "From the write's call (what a user waits for: ours is one script that writes and publishes; bentocache",
    "sets, then publishes) and from its acknowledgement. A reader may skip a value overtaken by the next.",
    "",
    "| contender | from the call, p50 | p99 | from the acknowledgement, p50 | p99 | writes seen (of 200) |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
    ...rows.map((r) =>
      `| ${r.name} | ${r.startP50.toFixed(2)} ms | ${r.startP99.toFixed(2)} ms | ${r.p50.toFixed(2)} ms | ${r.p99.toFixed(2)} ms | ${r.seen} |`
    ),
    ""
  ]
  console.log(lines.join("\n"))
  return { title, reference: "", rows: [], lines }
}
