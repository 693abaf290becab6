/**
 * A child process for `process.test.ts`, in the pattern of `examples/fleet-worker.ts`: it prints
 * "ready" once connected, starts when a line arrives on standard input, and ends by printing one JSON
 * line. Two modes:
 *
 * - `sigterm <url> <namespace> <key> <getOrSet|set> <runMain|default> <bytes> <producerMillis>`: one
 *   write of a large value (a forced-refresh getOrSet, or a set), printing "produced" (getOrSet, as
 *   its producer returns) or "writing" (set, just before it) so that the test can send SIGTERM at that
 *   moment. With `runMain` the program runs as `NodeRuntime.runMain` runs one (SIGINT/SIGTERM
 *   interrupt the main fiber, its finalizers run, then the process exits); with `default` Node's
 *   default disposition applies (the process dies at once).
 * - `evict <url> <namespace> <keys> <rounds> <producerMillis> <lockMode>`: {@link rounds}.
 *
 * The module also exports what the test process runs on its side, so both sides share one code path
 * and one keyspace definition (one fingerprint).
 */
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { makeRunMain } from "@effect/platform/Runtime"
import { Effect, Either, Schema } from "effect"
import { Cache, CacheKey, Keyspace } from "../../src/index.js"

export const Blobs = Keyspace.make({ name: "blobs", key: CacheKey.string, value: Schema.String, ttl: "10 minutes" })
/** The bounds the large-value case runs with, on both sides (a 2 MB write through the proxy takes tens of ms). */
export const largeValueBounds = { timeout: "2 seconds", commandTimeout: "2 seconds" } as const

export const Values = Keyspace.make({ name: "vals", key: CacheKey.number, value: Schema.String, ttl: "10 minutes" })

/** One producer run: which process, which key, and when it ran (epoch ms, shared by the processes of one machine). */
export interface Run {
  readonly pid: number
  readonly key: number
  readonly start: number
  readonly end: number
}

export interface RoundsReport {
  readonly pid: number
  readonly calls: number
  readonly runs: ReadonlyArray<Run>
  /** Calls that failed, by error tag and reason. */
  readonly failures: ReadonlyArray<string>
  /** Calls whose value was another process's (a hit, or a wait for its holder). */
  readonly fromOthers: number
  /** Calls whose value was not a value of their key: none, ever. */
  readonly wrong: ReadonlyArray<string>
}

/**
 * `rounds` rounds; in each, one getOrSet per key, all keys at once, with a producer of
 * `producerMillis` that records its run. Each value is checked: its key's, and whose.
 */
export const rounds = (options: {
  readonly keys: number
  readonly rounds: number
  readonly producerMillis: number
  readonly lockMode: "at-least-once" | "at-most-once"
}): Effect.Effect<RoundsReport, never, Cache.Cache> =>
  Effect.gen(function*() {
    const runs: Array<Run> = []
    const failures: Array<string> = []
    const wrong: Array<string> = []
    let calls = 0
    let fromOthers = 0
    const produce = (key: number) =>
      Effect.suspend(() => {
        const start = Date.now()
        return Effect.as(Effect.sleep(options.producerMillis), undefined).pipe(
          Effect.map(() => {
            runs.push({ pid: process.pid, key, start, end: Date.now() })
            return `value ${key} from ${process.pid}`
          })
        )
      })
    for (let round = 0; round < options.rounds; round++) {
      yield* Effect.forEach(
        Array.from({ length: options.keys }, (_, i) => i),
        (key) =>
          Effect.either(Values.getOrSet(key, produce(key), { lockMode: options.lockMode })).pipe(
            Effect.map((result) => {
              calls++
              if (Either.isLeft(result)) {
                const error = result.left as { _tag?: string; reason?: string }
                failures.push(`${error._tag}:${error.reason}`)
              } else if (!result.right.startsWith(`value ${key} from `)) {
                wrong.push(`key ${key}: ${result.right}`)
              } else if (result.right !== `value ${key} from ${process.pid}`) {
                fromOthers++
              }
            })
          ),
        { concurrency: "unbounded", discard: true }
      )
    }
    return { pid: process.pid, calls, runs, failures, fromOthers, wrong }
  })

/** What `NodeRuntime.runMain` does (`@effect/platform-node`), on `@effect/platform`'s `makeRunMain`. */
const runMain = makeRunMain(({ fiber, teardown }) => {
  const keepAlive = setInterval(() => {}, 2 ** 31 - 1)
  let receivedSignal = false
  const onSignal = () => {
    receivedSignal = true
    process.removeListener("SIGINT", onSignal)
    process.removeListener("SIGTERM", onSignal)
    fiber.unsafeInterruptAsFork(fiber.id())
  }
  fiber.addObserver((exit) => {
    if (!receivedSignal) {
      process.removeListener("SIGINT", onSignal)
      process.removeListener("SIGTERM", onSignal)
    }
    clearInterval(keepAlive)
    teardown(exit, (code) => {
      if (receivedSignal || code !== 0) process.exit(code)
    })
  })
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
})

const go = Effect.async<void>((resume) => {
  process.stdin.once("data", () => resume(Effect.void))
  process.stdout.write("ready\n")
})

const say = (line: string) => Effect.sync(() => void process.stdout.write(`${line}\n`))

const main = () => {
  const [mode, url, namespace, ...rest] = process.argv.slice(2)
  if (mode === "sigterm") {
    const [key, kind, handler, bytes, producerMillis] = rest
    const value = `new:${process.pid}:${"n".repeat(Number(bytes))}`
    const program = Effect.gen(function*() {
      yield* Blobs.get(key!) // connected, scripts loaded
      yield* go
      if (kind === "set") {
        yield* say("writing")
        yield* Blobs.set(key!, value)
      } else {
        const produce = Effect.sleep(Number(producerMillis)).pipe(Effect.zipRight(say("produced")), Effect.as(value))
        yield* Blobs.getOrSet(key!, produce, { cacheRead: false })
      }
      yield* say(JSON.stringify({ pid: process.pid, completed: true }))
    }).pipe(Effect.provide(Cache.layerRedis({ url: url!, namespace: namespace!, ...largeValueBounds })))
    if (handler === "runMain") {
      // With runMain the exit code is the program's (0 when it was interrupted by the signal).
      runMain(program, { disablePrettyLogger: true })
    } else {
      Effect.runPromise(program).then(() => process.exit(0), (error) => {
        console.error(error)
        process.exit(1)
      })
    }
    return
  }
  if (mode === "evict") {
    const [keys, count, producerMillis, lockMode] = rest
    const program = Effect.gen(function*() {
      yield* Values.get(-1) // connected, scripts loaded
      yield* go
      const report = yield* rounds({
        keys: Number(keys),
        rounds: Number(count),
        producerMillis: Number(producerMillis),
        lockMode: lockMode === "at-most-once" ? "at-most-once" : "at-least-once"
      })
      yield* say(JSON.stringify(report))
    }).pipe(Effect.provide(Cache.layerRedis({ url: url!, namespace: namespace! })))
    Effect.runPromise(program).then(() => process.exit(0), (error) => {
      console.error(error)
      process.exit(1)
    })
    return
  }
  console.error(`unknown mode ${mode}`)
  process.exit(2)
}

// Run only as a script: the test process imports this module for `rounds` and the keyspaces.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main()
