/**
 * Faults about processes, time and load: a process that receives SIGTERM as its large write lands, a
 * wall clock that jumps while a lock is held, 10,000 keys in flight while Redis freezes, and an evicting
 * Redis (allkeys-lru) under two processes. Real redis-server per case, real signals, real time.
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Layer, Option } from "effect"
import { Cache } from "../../src/index.js"
import * as Harness from "./harness.js"
import { Blobs, largeValueBounds, type RoundsReport, Values } from "./process-worker.js"
import { assertSame } from "../utils.js"

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

/** Runs `effect` and returns its result with the time it took on the monotonic clock (not `Date.now`). */
const timedNow = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.sync(now), (started) => Effect.map(effect, (value) => ({ value, millis: Math.round(now() - started) })))

const hourMillis = 3_600_000

/**
 * The heap in use after a full collection (`--expose-gc` set at run time, as the test runner starts
 * workers without it): what is retained, not garbage not yet collected.
 */
const heapAfterGc = (): number => {
  v8.setFlagsFromString("--expose-gc")
  const gc = vm.runInNewContext("gc") as () => void
  gc()
  return process.memoryUsage().heapUsed
}

/**
 * One run of the clock-jump case: cache 0 takes the lock and produces for `producerMillis`; caches 1–3
 * (other instances on the same Redis, as other processes would be) wait for it with 5 callers each,
 * and one more caller waits at most `lockTimeoutMillis`; while they wait, the wall clock of this
 * process jumps by `jumpMillis`. Every bound of the lock is on real time (the lease on Redis's clock,
 * the watchdog and the waits on timers), so none of it may move with the jump.
 */
const clockJump = (jumpMillis: number) =>
  Effect.gen(function*() {
    const server = yield* Harness.server()
    const unhandled = yield* Harness.unhandledRejections
    const logs = yield* Harness.captureLogs
    const namespace = jumpMillis > 0 ? "clock-forward" : "clock-backward"
    const producerMillis = 1_000
    const lockTimeoutMillis = 600
    const key = 1
    const result = yield* Effect.gen(function*() {
      const caches = yield* Effect.forEach([0, 1, 2, 3], () => Layer.build(Cache.layerRedis({ url: server.url, namespace })))
      // Connected and scripts loaded before the clock is touched.
      yield* Effect.forEach(caches, (cache) => Effect.provide(Values.get(-1), cache), { discard: true })
      const clock = yield* Harness.jumpingWallClock
      const runs: Array<number> = []
      const started = yield* Deferred.make<void>()
      let producing = false
      const produce = (by: number) =>
        Effect.gen(function*() {
          runs.push(by)
          if (by === 0) {
            producing = true
            yield* Deferred.succeed(started, undefined)
          }
          yield* Harness.sleep(producerMillis)
          if (by === 0) producing = false
          return `value from cache ${by}`
        })
      const holder = yield* Effect.fork(timedNow(Effect.provide(Values.getOrSet(key, produce(0)), caches[0]!)))
      yield* Deferred.await(started)
      const lockKeys = yield* Effect.promise(() => server.lockKeys(namespace))
      assert.lengthOf(lockKeys, 1, "the holder took the lock")
      // The lock key's time to live, sampled while the producer runs (a sample counts only if its reply
      // came before the producer returned, so a release cannot be mistaken for a lost lease).
      const pttls: Array<number> = []
      const sampler = yield* Effect.fork(Effect.promise(async () => {
        while (producing) {
          const pttl = await server.admin.pttl(lockKeys[0]!)
          if (producing) pttls.push(pttl)
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
      }))
      const waiters = yield* Effect.fork(Effect.forEach(
        [1, 2, 3].flatMap((cache) => Array.from({ length: 5 }, () => cache)),
        (cache) => timedNow(Effect.provide(Values.getOrSet(key, produce(cache)), caches[cache]!)),
        { concurrency: "unbounded" }
      ))
      // One more waiter whose lockTimeout ends while the producer still runs: at most once, it fails
      // with a LockError once that time has passed (real time), whatever the wall clock says.
      const impatient = yield* Effect.fork(timedNow(Effect.either(Effect.provide(
        Values.getOrSet(key, produce(1), { lockMode: "at-most-once", lockTimeout: `${lockTimeoutMillis} millis` }),
        caches[1]!
      ))))
      // The waiters found the lock taken and wait for its release; then the wall clock jumps.
      yield* Harness.sleep(300)
      clock.jump(jumpMillis)
      const held = yield* Fiber.join(holder)
      yield* Fiber.join(sampler)
      const waited = yield* Fiber.join(waiters)
      const gaveUp = yield* Fiber.join(impatient)
      const lockGone = yield* lockGoneWithin(server, namespace, defaultLeaseMillis + 1_000)
      const stored = yield* Effect.provide(Values.get(key), caches[0]!)
      return { runs, held, waited, gaveUp, pttls, lockGone, stored }
    }).pipe(Effect.provide(logs.layer))
    const { gaveUp, held, lockGone, pttls, runs, stored, waited } = result
    const gaveUpWith = Either.isLeft(gaveUp.value) ? `${gaveUp.value.left._tag}:${gaveUp.value.left.reason}` : gaveUp.value.right
    const report = {
      jump: `${jumpMillis > 0 ? "+" : "-"}1 h`,
      producerRuns: runs.length,
      runsBy: runs,
      holderMillis: held.millis,
      waiterMillis: [Math.min(...waited.map((w) => w.millis)), Math.max(...waited.map((w) => w.millis))],
      waiterValues: [...new Set(waited.map((w) => w.value))],
      lockTimeoutWaiter: { outcome: gaveUpWith, millis: gaveUp.millis },
      pttl: [Math.min(...pttls), Math.max(...pttls)],
      pttlSamples: pttls.length,
      lockGoneAfter: Math.round(lockGone),
      lockWarnings: [...new Set(logs.messages().filter((m) => /lock/i.test(m)))]
    }
    console.log(`wall clock jump: ${JSON.stringify(report)}`)
    assert.strictEqual(held.value, "value from cache 0")
    assert.deepStrictEqual(runs, [0], `the producer ran once, in the holder (runs by cache: ${runs.join(", ")})`)
    assert.deepStrictEqual(report.waiterValues, ["value from cache 0"], "every waiter got the holder's value")
    // Woken by the release: the producer's time plus a margin, not a lock timeout nor an hour.
    assert.isBelow(report.waiterMillis[1]!, producerMillis + 2_000, "the waiters had the value soon after the producer")
    // The lock timeout runs on real time: neither cut short by a jump forward nor stretched by a jump back.
    assert.strictEqual(gaveUpWith, "LockError:Timeout", `the waiter with a ${lockTimeoutMillis} ms lockTimeout gave up`)
    assert.isAtLeast(gaveUp.millis, lockTimeoutMillis - 50, "it waited its lockTimeout")
    assert.isBelow(gaveUp.millis, lockTimeoutMillis + 1_000, "it waited its lockTimeout, not more")
    // The lease was neither lost (a sample of -2: no key) nor stretched by the jump (over one lease).
    assert.isAtLeast(pttls.length, 5, "the lock was sampled while the producer ran")
    for (const pttl of pttls) {
      assert.isTrue(pttl > 0 && pttl <= defaultLeaseMillis, `the lock's time to live was ${pttl} ms while the producer ran`)
    }
    assert.deepStrictEqual(logs.messages().filter((m) => m.includes("lapsed")), [], "the lease did not lapse")
    assertSame(stored, Option.some("value from cache 0"), "the holder's value was written through its lock")
    assert.isBelow(lockGone, defaultLeaseMillis, "the lock was released, not left to lapse")
    assert.deepStrictEqual(yield* Effect.promise(() => server.lockKeys(namespace)), [])
    assert.deepStrictEqual(unhandled, [])
  }).pipe(Effect.scoped)

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

  it.live("the wall clock jumps 1 hour forward while a lock is held: one producer run, the waiters get its value, the lease holds", () =>
    clockJump(hourMillis), 15_000)

  it.live("the wall clock jumps 1 hour backward while a lock is held: one producer run, the waiters get its value, the lease holds", () =>
    clockJump(-hourMillis), 15_000)

  it.live("10,000 distinct keys in flight while Redis freezes for 1 s: every call has its value, no lock left, the next wave works", () =>
    Effect.gen(function*() {
      const server = yield* Harness.server()
      const unhandled = yield* Harness.unhandledRejections
      const logs = yield* Harness.captureLogs
      const namespace = "freeze-10k"
      const count = 10_000
      const producerMillis = 50
      const timeoutMillis = 400
      const pauseMillis = 1_000
      const keys = Array.from({ length: count }, (_, i) => i)
      // Every 10th key again after the resume: each call a hit or its producer.
      const secondKeys = keys.filter((key) => key % 10 === 0)
      const cache = Cache.layerRedis({ url: server.url, namespace, timeout: `${timeoutMillis} millis`, commandTimeout: "300 millis" })
      const outcome = yield* Effect.gen(function*() {
        yield* Values.get(-1) // connected, scripts loaded
        const heapBefore = heapAfterGc()
        let produced = 0
        const firstRun = yield* Deferred.make<void>()
        const produce = (key: number) =>
          Effect.gen(function*() {
            produced++
            yield* Deferred.succeed(firstRun, undefined)
            yield* Harness.sleep(producerMillis)
            return `value ${key}`
          })
        const wave = (keys: ReadonlyArray<number>) =>
          timedNow(Effect.forEach(keys, (key) => timedNow(Values.getOrSet(key, produce(key))), { concurrency: "unbounded" }))
        const first = yield* Effect.fork(wave(keys))
        // Redis freezes once the calls are under way: reads sent, locks taken, producers running.
        yield* Deferred.await(firstRun)
        server.pause()
        yield* Harness.sleep(pauseMillis)
        server.resume()
        const resumedAt = now()
        const during = yield* Fiber.join(first)
        const producedDuring = produced
        const heapPeak = process.memoryUsage().heapUsed
        const lockGone = yield* lockGoneWithin(server, namespace, defaultLeaseMillis + 2_000)
        const lockGoneAfterResume = Number.isFinite(lockGone) ? Math.round(now() - resumedAt) : Infinity
        produced = 0
        const after = yield* wave(secondKeys)
        // The runs' writes and lock releases come after their callers have the value (each bounded by
        // the timeout): what is measured is what is left once they are done too.
        const service = yield* Cache.Cache
        for (let i = 0; i < 500 && (yield* service.inFlight) > 0; i++) yield* Harness.sleep(10)
        return { during, producedDuring, heapBefore, heapPeak, heapAfter: heapAfterGc(), lockGoneAfterResume, after, producedAfter: produced }
      }).pipe(Effect.provide(cache), Effect.provide(logs.layer))
      const { after, during } = outcome
      const slowest = (wave: typeof during) => Math.max(...wave.value.map((call) => call.millis))
      const mb = (bytes: number) => Math.round(bytes / 1e6)
      const report = {
        calls: count,
        firstWaveMillis: during.millis,
        slowestCallMillis: slowest(during),
        produced: outcome.producedDuring,
        lockGoneAfterResume: outcome.lockGoneAfterResume,
        heapMb: { before: mb(outcome.heapBefore), peak: mb(outcome.heapPeak), afterGc: mb(outcome.heapAfter) },
        secondWave: { calls: secondKeys.length, millis: after.millis, slowestCall: slowest(after), produced: outcome.producedAfter },
        logLines: logs.lines.length
      }
      console.log(`10,000 keys, Redis frozen for ${pauseMillis} ms: ${JSON.stringify(report)}`)
      // getOrSet survives the store's failure: every call has its own key's value.
      assert.deepStrictEqual(during.value.map((call) => call.value), keys.map((key) => `value ${key}`))
      assert.strictEqual(outcome.producedDuring, count, "each key's producer ran once (one call per key)")
      // A call waits at most one read and one acquire (each cut at the timeout; once the circuit opens,
      // not at all), then its producer; the write and the release come after it has its value. The
      // margin is CPU: the 10,000 calls share 2 cores with Redis, the proxy and other test runs, and a
      // wave of 10,000 takes 5-6 s with no freeze at all on such a machine (measured), so a call may
      // wait behind the others for seconds (slowest call measured: 3.8-5.1 s; 7 s on a busier run).
      // A call hung on the frozen Redis would wait a lock timeout (10 s) more, or for ever.
      const callBound = timeoutMillis + timeoutMillis + producerMillis + 10_000
      assert.isBelow(report.slowestCallMillis, callBound, "every call settled within its bound")
      // A lock taken before the freeze lapses one lease after it was taken (Redis's clock ran on while it
      // was stopped); a release that reached Redis frees it at once. The margin covers the polling.
      assert.isBelow(outcome.lockGoneAfterResume, defaultLeaseMillis + 500, "no lock key left one lease after the resume")
      // After the resume: every call has its value, from the cache or from its producer.
      assert.deepStrictEqual(after.value.map((call) => call.value), secondKeys.map((key) => `value ${key}`))
      assert.isBelow(slowest(after), callBound, "the second wave was not held up by the first")
      // Memory: what the 10,000 calls leave behind once they are done (after a collection) is small;
      // measured: 6-16 MB (the peak, garbage included: 470-810 MB). 100 MB is 10 KB per call: a leak
      // of the calls' state (fibers, waiters, unsettled acquires) would pass it.
      assert.isBelow(outcome.heapAfter - outcome.heapBefore, 100e6, "the calls left no state behind")
      assert.isBelow(outcome.heapPeak, 2e9, "the heap did not explode while the calls ran")
      assert.deepStrictEqual(yield* Effect.promise(() => server.lockKeys(namespace)), [])
      assert.deepStrictEqual(unhandled, [])
    }).pipe(Effect.scoped), 30_000)

  it.live("an evicting Redis (maxmemory, allkeys-lru) under two processes: a warning at start, every call has its value, producer runs bounded", () =>
    Effect.gen(function*() {
      // 4 MB, the LRU over every key, and a notification for each key evicted (`Ee`), to count lost locks.
      const server = yield* Harness.server(["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru", "--notify-keyspace-events", "Ee"])
      const unhandled = yield* Harness.unhandledRejections
      const namespace = "evict"
      const keys = 200
      const roundCount = 10
      const producerMillis = 50
      const calls = keys * roundCount
      // One process in each lock mode: at least once (the default) answers every call; at most once may
      // fail a call, with a LockError only.
      const modes = ["at-least-once", "at-most-once"] as const
      const evicted = { locks: 0, values: 0, other: 0 }
      yield* Effect.acquireRelease(
        Effect.promise(async () => {
          const connection = server.admin.duplicate()
          connection.on("error", () => {})
          connection.on("message", (_channel: string, key: string) => {
            if (key.startsWith(`${namespace}::lock:`)) evicted.locks++
            else if (key.startsWith(`${namespace}:vals:`)) evicted.values++
            else evicted.other++
          })
          await connection.subscribe("__keyevent@0__:evicted")
          return connection
        }),
        (connection) => Effect.sync(() => connection.disconnect())
      )
      // Memory at its limit before the children start (5 MB of filler for 4 MB).
      const filler = "f".repeat(2_000)
      yield* Effect.promise(async () => {
        for (let batch = 0; batch < 5; batch++) {
          const pipeline = server.admin.pipeline()
          for (let i = 0; i < 500; i++) pipeline.set(`filler:${batch}:${i}`, filler)
          await pipeline.exec()
        }
      })
      const children = yield* Effect.forEach(modes, (mode) =>
        scopedChild(["evict", server.url, namespace, String(keys), String(roundCount), String(producerMillis), mode]))
      yield* Effect.promise(() => Promise.all(children.map((child) => child.ready)))
      // New filler all along (20 × 2 KB every 2 ms at most, ≈ 4 MB/s measured): the old filler is gone
      // within the first second, and then the keys the children write are as recent as any other, so
      // the LRU evicts their locks (held ~50 ms) and values too. A faster churn evicts nearly every lock.
      let churning = true
      const churn = yield* Effect.fork(Effect.promise(async () => {
        let written = 0
        while (churning) {
          const pipeline = server.admin.pipeline()
          for (let i = 0; i < 20; i++) pipeline.set(`churn:${written++}`, filler)
          await pipeline.exec()
          await new Promise((resolve) => setTimeout(resolve, 2))
        }
        return written
      }))
      const started = now()
      for (const child of children) child.start()
      const exits = yield* Effect.promise(() => Promise.all(children.map((child) => child.exit)))
      const millis = Math.round(now() - started)
      churning = false
      const churned = yield* Fiber.join(churn)
      const reports = exits.map((exit) => {
        const line = exit.stdout.split("\n").find((line) => line.startsWith("{\"pid\""))
        return line === undefined ? undefined : JSON.parse(line) as RoundsReport
      })
      const runs = reports.flatMap((report) => report?.runs ?? [])
      // Runs of one key at the same time in the two processes: only a lost (evicted) lock lets a second
      // producer start while the first runs.
      const byKey = new Map<number, Array<(typeof runs)[number]>>()
      for (const run of runs) byKey.set(run.key, [...(byKey.get(run.key) ?? []), run])
      let overlapping = 0
      for (const same of byKey.values()) {
        for (const a of same) for (const b of same) if (a.pid < b.pid && a.start < b.end && b.start < a.end) overlapping++
      }
      const warnings = exits.map((exit) => exit.stdout.split("\n").filter((line) => line.includes("may evict a held lock")).length)
      const lockGone = yield* lockGoneWithin(server, namespace, defaultLeaseMillis + 1_000)
      const summary = {
        millis,
        calls: reports.map((report) => report?.calls),
        producerRuns: runs.length,
        runsByProcess: reports.map((report) => report?.runs.length),
        overlapping,
        failures: reports.map((report) => report?.failures),
        fromOtherProcess: reports.map((report) => report?.fromOthers),
        evicted,
        churned,
        warnings
      }
      console.log(`evicting Redis, 2 processes × ${keys} keys × ${roundCount} rounds: ${JSON.stringify(summary)}`)
      for (const [i, exit] of exits.entries()) {
        // No defect, no unhandled rejection (Node exits with 1 on either), a report printed.
        assert.strictEqual(exit.code, 0, `${modes[i]}: exit ${exit.signal ?? exit.code}: ${exit.stderr}`)
        const report = reports[i]
        assert.isDefined(report, `${modes[i]}: no report in ${exit.stdout}`)
        assert.strictEqual(report!.calls, calls, `${modes[i]}: every call returned`)
        assert.deepStrictEqual(report!.wrong, [], `${modes[i]}: every value was a value of its key`)
        // The warning the Redis lock logs at start, once per cache.
        assert.strictEqual(warnings[i], 1, `${modes[i]}: one eviction warning at start`)
      }
      // At least once: every call has its value. At most once: a value, or a LockError (typed) only.
      assert.deepStrictEqual(reports[0]!.failures, [], "at least once: every call has a value")
      for (const failure of reports[1]!.failures) assert.match(failure, /^LockError:(Timeout|Unavailable)$/, "at most once: typed errors only")
      // The case did what it says: Redis evicted locks while they were held, or just after.
      assert.isAbove(evicted.locks, 0, "Redis evicted locks")
      // Producer runs. Without eviction: 200 (one per key). Never more than one per call: 4,000 (the
      // in-process guard runs a key once per process at a time, and each round has one call per key
      // per process). Measured at this churn (2 cores shared with other test runs, eleven runs): 888–1,313,
      // with 277–566 locks and 500–717 values evicted; twice the churn: 1,772–1,836; no pause in the
      // churn (nearly every lock evicted): 1,237–2,801. The bound, about twice the measurement at this
      // churn, says that a lost lock costs runs of its key and round, not a fleet without coordination.
      assert.isAtMost(runs.length, 2_500, `producer runs: ${runs.length}`)
      assert.isAtLeast(runs.length, keys, "each key was produced")
      assert.isBelow(lockGone, defaultLeaseMillis + 1_000, "no lock left after one lease")
      assert.deepStrictEqual(unhandled, [])
    }).pipe(Effect.scoped), 30_000)
})
