/**
 * Faults about processes, time and load: a process that receives SIGTERM as its large write lands, a
 * wall clock that jumps while a lock is held, 10,000 keys in flight while Redis freezes, and an evicting
 * Redis (allkeys-lru) under two processes. Real redis-server per case, real signals, real time.
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Option } from "effect"
import { Cache } from "../../src/index.js"
import * as Harness from "./harness.js"
import { Blobs, largeValueBounds } from "./process-worker.js"

const workerPath = fileURLToPath(new URL("./process-worker.ts", import.meta.url))

/** Milliseconds on the monotonic clock (the clock-jump case swaps `Date.now`). */
const now = () => performance.now()

interface Child {
  readonly ready: Promise<void>
  readonly start: () => void
  /** Resolves once the child printed `line`. */
  readonly printed: (line: string) => Promise<void>
  readonly kill: (signal: NodeJS.Signals) => void
  readonly exit: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly stdout: string; readonly stderr: string }>
}

/** The fleet worker's pattern (examples/fleet.ts `spawnScript`), with each line of standard output observable. */
const spawnChild = (args: ReadonlyArray<string>): Child => {
  const child = spawn(process.execPath, ["--import", "tsx", workerPath, ...args], { stdio: ["pipe", "pipe", "pipe"] })
  let stdout = ""
  let stderr = ""
  const waiting: Array<{ line: string; resolve: () => void }> = []
  const check = () => {
    const lines = stdout.split("\n")
    for (const wait of waiting.splice(0)) {
      if (lines.includes(wait.line)) wait.resolve()
      else waiting.push(wait)
    }
  }
  child.stdout.on("data", (chunk) => {
    stdout += chunk
    check()
  })
  child.stderr.on("data", (chunk) => stderr += chunk)
  const printed = (line: string) =>
    new Promise<void>((resolve) => {
      waiting.push({ line, resolve })
      check()
    })
  return {
    ready: printed("ready"),
    start: () => void child.stdin.write("go\n"),
    printed,
    kill: (signal) => void child.kill(signal),
    exit: new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal, stdout, stderr })))
  }
}

/** A child for the life of the scope: SIGKILLed at the end if it still runs. */
const scopedChild = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(Effect.sync(() => spawnChild(args)), (child) => Effect.sync(() => child.kill("SIGKILL")))

/** Polls until the namespace has no lock key left; how long that took (ms), or `Infinity` past `limitMillis`. */
const lockGoneWithin = (server: Harness.Server, namespace: string, limitMillis: number) =>
  Effect.promise(async () => {
    const started = now()
    for (;;) {
      if ((await server.lockKeys(namespace)).length === 0) return now() - started
      if (now() - started > limitMillis) return Infinity
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  })

const defaultLeaseMillis = 3_000

describe("process, time and load faults", () => {
  it.live("SIGTERM as a large value is written: no torn entry, no lock past one lease, the next getOrSet is not held up", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const unhandled = yield* Harness.unhandledRejections
      const logs = yield* Harness.captureLogs
      const namespace = "sigterm"
      const bytes = 2_000_000
      const producerMillis = 100
      const variants = [
        { key: "getorset-runmain-0", kind: "getOrSet", handler: "runMain", delay: 0 },
        { key: "getorset-runmain-2", kind: "getOrSet", handler: "runMain", delay: 2 },
        { key: "getorset-runmain-8", kind: "getOrSet", handler: "runMain", delay: 8 },
        { key: "set-runmain-0", kind: "set", handler: "runMain", delay: 0 },
        { key: "getorset-default-0", kind: "getOrSet", handler: "default", delay: 0 },
        { key: "set-default-0", kind: "set", handler: "default", delay: 0 }
      ] as const
      const old = (key: string) => `old:${key}:${"o".repeat(bytes)}`
      const children = yield* Effect.forEach(variants, (v) =>
        scopedChild(["sigterm", server.url, namespace, v.key, v.kind, v.handler, String(bytes), String(producerMillis)]))
      const outcomes = yield* Effect.gen(function*() {
        // Once every child is up (their start costs the CPU), the old values, then the writes.
        yield* Effect.promise(() => Promise.all(children.map((child) => child.ready)))
        yield* Effect.forEach(variants, (v) => Blobs.set(v.key, old(v.key)), { discard: true })
        return yield* Effect.forEach(variants, (v, i) =>
          Effect.gen(function*() {
            const child = children[i]!
            child.start()
            yield* Effect.promise(() => child.printed(v.kind === "set" ? "writing" : "produced"))
            if (v.delay > 0) yield* Harness.sleep(v.delay)
            child.kill("SIGTERM")
            const killedAt = now()
            const exit = yield* Effect.promise(() => child.exit)
            const exitedAfter = now() - killedAt
            // What is under the key: the old value, the new one, or nothing; never bytes that do not decode.
            const raw = yield* Effect.promise(() => server.admin.getBuffer(`${namespace}:blobs:${v.key}`))
            const read = yield* Effect.either(Blobs.get(v.key))
            const found = Either.isRight(read) ? Option.getOrUndefined(read.right) : undefined
            const outcome = raw === null
              ? "nothing"
              : found === old(v.key)
              ? "old"
              : found !== undefined && found.startsWith("new:") && found.length === bytes + `new::`.length + found.split(":")[1]!.length
              ? "new"
              : "torn"
            // The next getOrSet from this process: a hit, or its producer after at most the lock's lapse.
            const next = yield* Harness.timed(Blobs.getOrSet(v.key, Effect.as(Effect.sleep(`${producerMillis} millis`), "fresh")))
            const lockGone = yield* lockGoneWithin(server, namespace, defaultLeaseMillis + 1_000)
            return {
              ...v,
              exit: exit.signal ?? `code ${exit.code}`,
              completedBeforeSignal: exit.stdout.includes("\"completed\":true"),
              exitedAfter: Math.round(exitedAfter),
              outcome,
              readFailed: Either.isLeft(read),
              nextMillis: next.millis,
              lockGoneAfter: Math.round(exitedAfter + next.millis + lockGone)
            }
          }), { concurrency: "unbounded" })
      }).pipe(Effect.provide(Cache.layerRedis({ url: server.url, namespace, ...largeValueBounds })), Effect.provide(logs.layer))
      console.log(`SIGTERM mid-write:\n${outcomes.map((o) => `  ${JSON.stringify(o)}`).join("\n")}`)
      for (const o of outcomes) {
        assert.notStrictEqual(o.outcome, "torn", `${o.key}: the entry decodes to the old or the new value`)
        assert.isFalse(o.readFailed, `${o.key}: the read did not fail`)
        if (o.handler === "runMain") {
          // Interrupted, the run releases its lock before the process exits.
          assert.isBelow(o.nextMillis, producerMillis + 1_000, `${o.key}: the next getOrSet took ${o.nextMillis} ms`)
        } else {
          // Killed at once: a lock it held lapses within one lease.
          assert.isBelow(o.nextMillis, defaultLeaseMillis + producerMillis + 1_000, `${o.key}: the next getOrSet took ${o.nextMillis} ms`)
        }
        assert.isBelow(o.lockGoneAfter, defaultLeaseMillis + 1_000, `${o.key}: no lock left after one lease`)
      }
      assert.deepStrictEqual(logs.messages().filter((m) => /decode/i.test(m)), [], "no entry failed to decode")
      assert.deepStrictEqual(yield* Effect.promise(() => server.lockKeys(namespace)), [])
      assert.deepStrictEqual(unhandled, [])
    }).pipe(Effect.scoped), 30_000)
})
