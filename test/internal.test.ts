/**
 * The internal concurrency helpers (nothing they keep may outlive an interruption), and the estimate
 * of a Redis server's clock that write deadlines are computed from.
 */
import { assert, describe, it } from "@effect/vitest"
import { EventEmitter } from "node:events"
import { Effect, Either, Exit, Fiber, FiberId, Option, Scheduler } from "effect"
import * as Redis from "../src/Redis.js"
import * as Coalesce from "../src/internal/coalesce.js"
import * as ReadBatch from "../src/internal/readBatch.js"
import * as Waiters from "../src/internal/waiters.js"

describe("coalesce", () => {
  it.live("a leader interrupted while reading leaves nothing behind; the next reader is not stuck", () =>
    Effect.gen(function*() {
      const coalesce = Coalesce.make()
      const leader = yield* Effect.fork(coalesce.share("k", Effect.never))
      const follower = yield* Effect.fork(coalesce.share("k", Effect.succeed(1)))
      while (coalesce.size() === 0) yield* Effect.yieldNow()
      yield* Fiber.interrupt(leader)
      // The follower was waiting on the leader: it reads again itself.
      assert.strictEqual(yield* Fiber.join(follower), 1)
      assert.strictEqual(coalesce.size(), 0)
      assert.strictEqual(yield* coalesce.share("k", Effect.succeed(2)).pipe(Effect.timeout("1 second")), 2)
    }))

  it.live("an interruption that lands right after the entry is published leaves nothing behind", () =>
    Effect.gen(function*() {
      // A fiber that yields every few operations is interrupted between the map insert and the point
      // where its completion was installed (the window the uninterruptible step closes).
      for (const [ops, depth] of [[12, 3], [10, 2], [20, 5]] as const) {
        const coalesce = Coalesce.make()
        let child: Effect.Effect<number> = coalesce.share("k", Effect.sleep("20 millis").pipe(Effect.as(1)))
        for (let i = 0; i < depth; i++) child = Effect.zipRight(Effect.void, child)
        const fiber = yield* Effect.fork(Effect.withMaxOpsBeforeYield(child, ops))
        for (let spins = 0; coalesce.size() === 0 && spins < 1_000; spins++) yield* Effect.yieldNow()
        yield* Fiber.interrupt(fiber)
        assert.strictEqual(coalesce.size(), 0, `ops ${ops}, depth ${depth}`)
        assert.strictEqual(yield* coalesce.share("k", Effect.succeed(2)).pipe(Effect.timeout("1 second")), 2)
      }
    }))
})

describe("read batch", () => {
  /** A batcher over a recorded read: keys per call; keys starting with "bad" fail their group's read. */
  const recorded = (groupOf: (key: string) => number = () => 0, maxKeys = 512) => {
    const calls: Array<ReadonlyArray<string>> = []
    const batch = ReadBatch.make<string, string>({
      maxKeys,
      groupOf,
      read: (keys) => {
        calls.push(keys)
        return keys.some((key) => key.startsWith("bad"))
          ? Promise.reject(new Error("the server refused"))
          : Promise.resolve(keys.map((key) => key === "big" ? Effect.fail("too large: big") : Effect.succeed(`value of ${key}`)))
      },
      failure: (key, cause) => Effect.fail(`${key}: ${(cause as Error).message}`)
    })
    return { batch, calls }
  }

  it.live("concurrent reads go out as one read per group, a key asked twice once, each caller with its own key's outcome", () =>
    Effect.gen(function*() {
      const { batch, calls } = recorded((key) => key.length)
      const keys = ["a", "b", "a", "cc", "dd", "big"]
      const exits = yield* Effect.all(keys.map((key) => Effect.exit(batch.get(key))), { concurrency: "unbounded" })
      assert.deepStrictEqual(calls.map((keys) => [...keys].sort()), [["a", "b"], ["cc", "dd"], ["big"]])
      assert.deepStrictEqual(exits.slice(0, 5).map((exit) => Exit.isSuccess(exit) ? exit.value : "failed"), [
        "value of a",
        "value of b",
        "value of a",
        "value of cc",
        "value of dd"
      ])
      assert.isTrue(Exit.isFailure(exits[5]!), "a key's own failure reaches its caller only")
    }))

  it.live("a failed group fails exactly its callers; a full batch goes out at once; reads after it form the next", () =>
    Effect.gen(function*() {
      const { batch, calls } = recorded((key) => key.startsWith("bad") ? 1 : 0, 3)
      const exits = yield* Effect.all(["x", "bad1", "y", "z", "bad2"].map((key) => Effect.exit(batch.get(key))), {
        concurrency: "unbounded"
      })
      assert.deepStrictEqual(exits.map(Exit.isSuccess), [true, false, true, true, false])
      assert.isTrue(calls.length >= 2, `a full batch went out: ${JSON.stringify(calls)}`)
      assert.isTrue(calls.every((keys) => keys.length <= 3))
      const second = yield* batch.get("x")
      assert.strictEqual(second, "value of x")
    }))

  it.live("a key whose every caller left before the batch went out is not read", () =>
    Effect.gen(function*() {
      const { batch, calls } = recorded()
      // Run on a scheduler flushed by hand: both callers join the open batch and one leaves, all before
      // the batch goes out at the end of this burst of work.
      const scheduler = new Scheduler.SyncScheduler()
      const staying = yield* Effect.sync(() => {
        const leaving = Effect.runFork(batch.get("gone"), { scheduler, immediate: true })
        const staying = Effect.runFork(batch.get("kept"), { scheduler, immediate: true })
        leaving.unsafeInterruptAsFork(FiberId.none)
        scheduler.flush()
        return staying
      })
      assert.strictEqual(yield* Fiber.join(staying), "value of kept")
      assert.deepStrictEqual(calls, [["kept"]])
    }))

  it.live("an interrupted caller leaves; the others of its batch, and of its key, still get their values", () =>
    Effect.gen(function*() {
      const { batch } = recorded()
      const leaving = yield* Effect.fork(batch.get("k"))
      const staying = yield* Effect.fork(batch.get("k"))
      const other = yield* Effect.fork(batch.get("j"))
      yield* Fiber.interrupt(leaving)
      assert.strictEqual(yield* Fiber.join(staying), "value of k")
      assert.strictEqual(yield* Fiber.join(other), "value of j")
      assert.isTrue(Exit.isInterrupted(yield* Fiber.await(leaving)))
    }))

  it.live("with a timeout, a caller whose read does not answer in time gets onTimeout; a late answer is dropped", () =>
    Effect.gen(function*() {
      // "slow" keys are answered 300 ms late, the others at once.
      let late: (() => void) | undefined
      const batch = ReadBatch.make<string, string>({
        maxKeys: 512,
        groupOf: (key) => key.startsWith("slow") ? 1 : 0,
        read: (keys) =>
          keys[0]!.startsWith("slow")
            ? new Promise((resolve) => {
              late = () => resolve(keys.map((key) => Effect.succeed(`late value of ${key}`)))
              setTimeout(late, 300)
            })
            : Promise.resolve(keys.map((key) => Effect.succeed(`value of ${key}`))),
        failure: (key) => Effect.fail(`${key}: failed`),
        timeout: { millis: 100, onTimeout: (key) => Effect.fail(`${key}: no answer in time`) }
      })
      const started = Date.now()
      const [slow, quick] = yield* Effect.all([Effect.either(batch.get("slow")), batch.get("quick")], { concurrency: "unbounded" })
      assert.deepStrictEqual(slow, Either.left("slow: no answer in time"))
      assert.strictEqual(quick, "value of quick")
      assert.isBelow(Date.now() - started, 250, "the slow caller left at its timeout, not at the answer")
      // The late answer arrives and is dropped; the batcher goes on.
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 300)))
      assert.isDefined(late)
      assert.strictEqual(yield* batch.get("quick"), "value of quick")
    }))
})

describe("waiters", () => {
  it.live("a wait ends at its timeout or at a wake-up, and leaves nothing registered", () =>
    Effect.gen(function*() {
      const waiters = Waiters.make()
      const woken = yield* Effect.fork(waiters.wait("k", "10 seconds"))
      const interrupted = yield* Effect.fork(waiters.wait("k", "10 seconds"))
      yield* Effect.repeatN(Effect.yieldNow(), 5)
      assert.strictEqual(waiters.pending(), 2)
      yield* Fiber.interrupt(interrupted)
      assert.strictEqual(waiters.pending(), 1, "an interrupted wait unregisters itself")
      assert.isTrue(Option.isNone(yield* Fiber.poll(woken)), "still waiting before the wake-up")
      waiters.wake("k")
      // Fails with a TimeoutException unless the wake-up ended the 10 s wait.
      yield* Fiber.join(woken).pipe(Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => new Error("the wake-up did not end the wait") }))
      assert.strictEqual(waiters.pending(), 0)
      yield* waiters.wait("other", "10 millis")
      assert.strictEqual(waiters.pending(), 0, "and leaves nothing registered")
    }))
})

describe("server clock", () => {
  /** A stand-in for a client whose server's clock the test sets (only `TIME` and events are used). */
  const clientWithClock = () => {
    const events = new EventEmitter()
    let serverOffset = 1_000_000 // the server's clock runs this far ahead of performance.now()
    const client = Object.assign(events, {
      status: "ready",
      time: async () => {
        const micros = Math.round((performance.now() + serverOffset) * 1000)
        return [String(Math.floor(micros / 1e6)), String(micros % 1e6)]
      }
    })
    return { client: client as unknown as Redis.Client, setOffset: (offset: number) => void (serverOffset = offset) }
  }

  it.live("a deadline is the caller's give-up moment on the server's clock, never later", () =>
    Effect.gen(function*() {
      const { client } = clientWithClock()
      const clock = Redis.serverClock(client)
      yield* Effect.promise(clock.measure)
      const before = performance.now()
      const deadline = clock.deadline(300)!
      assert.isAtMost(deadline, before + 300 + 1_000_000 + 1, "not after the give-up moment in server time")
      assert.isAbove(deadline, before + 300 + 1_000_000 - 50, "and close to it")
    }))

  it.live("a sample showing the server's clock went back replaces the estimate at once; one that is merely slow does not", () =>
    Effect.gen(function*() {
      const { client, setOffset } = clientWithClock()
      const clock = Redis.serverClock(client)
      yield* Effect.promise(clock.measure)
      const first = clock.deadline(0)! - performance.now()
      // A slow reply (a lower lower bound, an upper bound still above the estimate) changes nothing.
      const sentAt = performance.now() - 200
      clock.observe(sentAt, (sentAt + 1_000_000 + 1) * 1000)
      assert.approximately(clock.deadline(0)! - performance.now(), first, 5)
      // The server's clock jumped back by 10 s: the next reply says so and the deadline follows.
      setOffset(990_000)
      const now = performance.now()
      clock.observe(now, (now + 990_000) * 1000)
      assert.approximately(clock.deadline(0)! - performance.now(), first - 10_000, 5)
    }))
})
