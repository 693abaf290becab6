/**
 * Redis Cluster faults: a master failing over to its replica in the middle of a stampede, a master
 * down (frozen or killed) with no replica to take over, and the slot of a hot key migrating (ASK, then
 * MOVED) while its callers wait on the lock. Real redis-server processes (a cluster of their own per
 * case), real signals, real time.
 */
import { assert, describe, it } from "@effect/vitest"
import calculateSlot from "cluster-key-slot"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Cause, type Context, Effect, Either, Exit, Layer, Option, Schedule, Schema } from "effect"
import { Redis as IORedis } from "ioredis"
import { Cache, CacheKey, Keyspace } from "../../src/index.js"
import { freeClusterPort, stopRedis, waitForRedis } from "../setup/servers.js"
import * as Harness from "./harness.js"

const Items = Keyspace.make({ name: "items", key: CacheKey.number, value: Schema.String, ttl: "10 minutes" })

// ---------------------------------------------------------------------------------------------------
// A cluster of its own for each case: 3 masters, with or without one replica each.
// ---------------------------------------------------------------------------------------------------

interface Node {
  readonly port: number
  readonly process: ChildProcess
  /** A plain connection straight to the node (no cluster routing), for setup and checks. */
  readonly admin: IORedis
  readonly id: string
  /** Set by the helpers below: a paused or killed node is not asked anything. */
  state: "up" | "paused" | "killed"
}

interface Topology {
  readonly masters: ReadonlyArray<{ readonly node: Node; readonly ranges: ReadonlyArray<readonly [number, number]> }>
  /** master id → its replica */
  readonly replicaOf: ReadonlyMap<string, Node>
}

interface FaultCluster {
  readonly dir: string
  readonly nodes: ReadonlyArray<Node>
  /** Start-up nodes for a cluster client. */
  readonly startup: Array<{ host: string; port: number }>
  /** The topology as one live node sees it. */
  readonly topology: (from?: Node) => Promise<Topology>
  /** The master serving a slot, as a live node sees it. */
  readonly ownerOf: (slot: number, from?: Node) => Promise<Node>
  readonly pause: (node: Node) => void
  readonly resume: (node: Node) => void
  readonly kill: (node: Node) => Promise<void>
  /** Every key containing "::lock:" on every live master. */
  readonly lockKeys: () => Promise<Array<string>>
}

const run = (args: ReadonlyArray<string>, timeout = 30_000): Promise<string> =>
  new Promise((resolve, reject) =>
    execFile("redis-cli", [...args], { timeout }, (error, stdout, stderr) =>
      error ? reject(new Error(`redis-cli ${args.join(" ")}: ${stderr || error.message}`)) : resolve(String(stdout)))
  )

const pause = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

interface NodeLine {
  readonly id: string
  readonly port: number
  readonly flags: ReadonlyArray<string>
  readonly masterId: string
  readonly link: string
  readonly ranges: ReadonlyArray<readonly [number, number]>
}

const parseNodes = (text: string): Array<NodeLine> =>
  text.trim().split("\n").filter((line) => line.length > 0).map((line) => {
    const [id, address, flags, masterId, , , , link, ...slots] = line.split(" ")
    return {
      id: id!,
      port: Number(address!.split("@")[0]!.split(":")[1]),
      flags: flags!.split(","),
      masterId: masterId!,
      link: link!,
      ranges: slots.filter((s) => !s.startsWith("[")).map((s) => {
        const [from, to] = s.split("-")
        return [Number(from), Number(to ?? from)] as const
      })
    }
  })

/**
 * Starts 3 masters (and `replicas` replicas each) with `redis-cli --cluster create` on free loopback
 * ports, waits until every node agrees (state ok, every link up, every replica in sync), and stops
 * them with the scope.
 */
const faultCluster = (options: { readonly replicas: 0 | 1; readonly nodeTimeout: number; readonly fullCoverage: boolean }) =>
  Effect.acquireRelease(
    Effect.promise(async (): Promise<FaultCluster> => {
      const dir = mkdtempSync(join(tmpdir(), "cachekit-cluster-faults-"))
      const count = 3 * (1 + options.replicas)
      const taken = new Set<number>()
      const ports: Array<number> = []
      for (let i = 0; i < count; i++) ports.push(await freeClusterPort(taken))
      const processes = ports.map((port) =>
        spawn("redis-server", [
          "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
          "--cluster-enabled", "yes", "--cluster-config-file", join(dir, `nodes-${port}.conf`),
          "--cluster-node-timeout", String(options.nodeTimeout),
          "--cluster-require-full-coverage", options.fullCoverage ? "yes" : "no",
          "--dir", dir
        ], { stdio: "ignore" })
      )
      await Promise.all(ports.map((port) => waitForRedis(port)))
      await run([
        "--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`),
        "--cluster-replicas", String(options.replicas), "--cluster-yes"
      ])
      const admins = ports.map((port) => {
        const admin = new IORedis(port, "127.0.0.1", { maxRetriesPerRequest: null, lazyConnect: false })
        admin.on("error", () => {})
        return admin
      })
      const ids = await Promise.all(admins.map((admin) => admin.call("CLUSTER", "MYID") as Promise<string>))
      const nodes: Array<Node> = ports.map((port, i) => ({ port, process: processes[i]!, admin: admins[i]!, id: ids[i]!, state: "up" }))
      const byId = new Map(nodes.map((node) => [node.id, node]))
      const live = () => nodes.filter((node) => node.state === "up")
      const view = async (from?: Node) => parseNodes(await (from ?? live()[0]!).admin.call("CLUSTER", "NODES") as string)
      const topology = async (from?: Node): Promise<Topology> => {
        const lines = await view(from)
        const masters = lines
          .filter((line) => line.flags.includes("master") && !line.flags.includes("fail") && line.ranges.length > 0)
          .map((line) => ({ node: byId.get(line.id)!, ranges: line.ranges }))
        const replicaOf = new Map<string, Node>()
        for (const line of lines) if (line.flags.includes("slave")) replicaOf.set(line.masterId, byId.get(line.id)!)
        return { masters, replicaOf }
      }
      // Every node sees every other, connected, in its final role; every replica is in sync.
      const deadline = Date.now() + 30_000
      for (;;) {
        const views = await Promise.all(nodes.map((node) => view(node)))
        const infos = await Promise.all(nodes.map((node) => node.admin.call("CLUSTER", "INFO") as Promise<string>))
        const replication = await Promise.all(nodes.map((node) => node.admin.info("replication")))
        const agreed = views.every((lines) =>
          lines.length === count &&
          lines.every((line) => line.link === "connected" && !line.flags.some((f) => /fail|handshake|noaddr/.test(f))) &&
          lines.filter((line) => line.flags.includes("slave")).length === 3 * options.replicas
        )
        const ok = infos.every((info) => info.includes("cluster_state:ok"))
        const synced = replication.every((info) => !info.includes("role:slave") || info.includes("master_link_status:up"))
        if (agreed && ok && synced) break
        if (Date.now() > deadline) throw new Error("the fault cluster did not come up")
        await pause(100)
      }
      return {
        dir,
        nodes,
        startup: nodes.map((node) => ({ host: "127.0.0.1", port: node.port })),
        topology,
        ownerOf: async (slot, from) => {
          const { masters } = await topology(from)
          const owner = masters.find(({ ranges }) => ranges.some(([a, b]) => a <= slot && slot <= b))
          if (owner === undefined) throw new Error(`no master serves slot ${slot}`)
          return owner.node
        },
        pause: (node) => {
          node.state = "paused"
          node.process.kill("SIGSTOP")
        },
        resume: (node) => {
          node.process.kill("SIGCONT")
          node.state = "up"
        },
        kill: async (node) => {
          node.state = "killed"
          node.admin.disconnect()
          node.process.kill("SIGKILL")
          await new Promise((resolve) => node.process.exitCode !== null || node.process.signalCode !== null ? resolve(undefined) : node.process.once("exit", resolve))
        },
        lockKeys: async () => {
          const { masters } = await topology()
          const found: Array<string> = []
          for (const { node } of masters) {
            let cursor = "0"
            do {
              const [next, keys] = await node.admin.scan(cursor, "MATCH", "*::lock:*", "COUNT", 1000)
              found.push(...keys)
              cursor = next
            } while (cursor !== "0")
          }
          return found
        }
      }
    }),
    (cluster) =>
      Effect.promise(async () => {
        for (const node of cluster.nodes) node.admin.disconnect()
        await Promise.all(cluster.nodes.map((node) => stopRedis(node.process)))
        rmSync(cluster.dir, { recursive: true, force: true })
      })
  )

// ---------------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------------

/** Builds a cache layer for the life of the scope and returns its context, so calls start at once. */
const instance = (options: Cache.RedisOptions) => Layer.build(Cache.layerRedis(options))

type Instance = Context.Context<Cache.Cache>

const slotOfItem = (namespace: string, key: number) => calculateSlot(`${namespace}:items:${key}`)

/** One call, its exit (a defect or an error stays visible) and how long it took. */
const timedExit = <A, E>(effect: Effect.Effect<A, E, Cache.Cache>, on: Instance) =>
  Harness.timed(Effect.exit(effect)).pipe(Effect.provide(on))

const describeExit = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isSuccess(exit) ? `success ${String(exit.value)}` : Cause.pretty(exit.cause)

const stats = (millis: ReadonlyArray<number>) => {
  const sorted = [...millis].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
  return { p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1]! }
}

/** Producer runs per key, shared by every instance (they are all in this process). */
const counter = () => {
  const runs = new Map<number, number>()
  return {
    runs,
    produce: (key: number, millis: number, value: string) =>
      Effect.sync(() => void runs.set(key, (runs.get(key) ?? 0) + 1)).pipe(
        Effect.zipRight(Harness.sleep(millis)),
        Effect.as(value)
      )
  }
}

const margin = 150

/** The first `count` item keys (1, 2, …) whose entries share one hash slot: a hot slot. */
const sameSlotItems = (namespace: string, count: number): Array<number> => {
  const bySlot = new Map<number, Array<number>>()
  for (let key = 1;; key++) {
    const slot = slotOfItem(namespace, key)
    const group = [...(bySlot.get(slot) ?? []), key]
    if (group.length === count) return group
    bySlot.set(slot, group)
  }
}

/**
 * What a node refused since its last `CONFIG RESETSTAT`: errors by kind (ASK, MOVED, TRYAGAIN, …, from
 * `INFO errorstats`; the few ERR are ioredis's CLIENT SETINFO on each new connection, which Redis 7.0
 * does not know) and, per command, the calls it redirected or refused (`rejected_calls`), and the
 * ASKING calls it served.
 */
const refusals = async (node: Node) => {
  const errors: Record<string, number> = {}
  for (const [, kind, count] of (await node.admin.info("errorstats")).matchAll(/^errorstat_(\w+):count=(\d+)/gm)) {
    errors[kind!] = Number(count)
  }
  const rejected: Record<string, number> = {}
  let asking = 0
  for (const [, command, calls, refused] of (await node.admin.info("commandstats")).matchAll(/^cmdstat_([\w|]+):calls=(\d+),.*rejected_calls=(\d+)/gm)) {
    if (Number(refused) > 0) rejected[command!] = Number(refused)
    if (command === "asking") asking = Number(calls)
  }
  return { errors, rejected, asking }
}

describe("Redis Cluster faults", () => {
  // -------------------------------------------------------------------------------------------------
  // 1. Failover mid-stampede
  // -------------------------------------------------------------------------------------------------
  it.live("failover mid-stampede: a master frozen, its replica promoted; every call settles with its value, within its bound", () =>
    Effect.gen(function*() {
      const logs = yield* Harness.captureLogs
      yield* Effect.gen(function*() {
        const cluster = yield* faultCluster({ replicas: 1, nodeTimeout: 2_000, fullCoverage: true })
        const unhandled = yield* Harness.unhandledRejections
        const namespace = "fo"
        const commandTimeout = 300
        const producerMillis = 300
        const lease = 1_000
        const pollInterval = 200
        const options: Cache.RedisOptions = {
          cluster: cluster.startup,
          namespace,
          timeout: "500 millis",
          commandTimeout: `${commandTimeout} millis`,
          lock: { lease: `${lease} millis`, pollInterval: `${pollInterval} millis` }
        }
        // Two instances, as two processes sharing the cluster: the lock is what keeps them to one run.
        const instances = [yield* instance(options), yield* instance(options)] as const
        const keys = Array.from({ length: 20 }, (_, i) => i + 1)
        const owners = yield* Effect.promise(() => Promise.all(keys.map((key) => cluster.ownerOf(slotOfItem(namespace, key)))))
        const { masters, replicaOf } = yield* Effect.promise(() => cluster.topology())
        assert.strictEqual(masters.length, 3)
        for (const { node } of masters) assert.isTrue(owners.includes(node), `some key on master ${node.port}`)
        // The victim: the master with the most keys of the stampede.
        const victim = masters.map(({ node }) => node)
          .sort((a, b) => owners.filter((o) => o === b).length - owners.filter((o) => o === a).length)[0]!
        const replica = replicaOf.get(victim.id)!
        assert.isDefined(replica, "the victim has a replica")
        const onVictim = new Set(keys.filter((_, i) => owners[i] === victim))
        // Connected to every master, scripts loaded, before the stampede.
        for (const on of instances) {
          yield* Effect.forEach(keys, (key) => Items.has(key), { concurrency: "unbounded", discard: true }).pipe(Effect.provide(on))
        }

        const { produce, runs } = counter()
        const calls = Array.from({ length: 200 }, (_, i) => ({ on: instances[i % 2]!, key: keys[(i >> 1) % keys.length]! }))
        const stampede = Effect.forEach(
          calls,
          ({ key, on }) => timedExit(Items.getOrSet(key, produce(key, producerMillis, `value ${key}`)), on),
          { concurrency: "unbounded" }
        )
        const failover = Effect.gen(function*() {
          // Every key's lock is held and its producer is running: freeze the victim, promote its replica.
          yield* Harness.sleep(150)
          cluster.pause(victim)
          const started = Date.now()
          yield* Effect.promise(() => replica.admin.call("CLUSTER", "FAILOVER", "FORCE"))
          for (;;) {
            const role = (yield* Effect.promise(() => replica.admin.call("ROLE") as Promise<Array<unknown>>))[0]
            if (role === "master") break
            if (Date.now() - started > 3_000) {
              // FORCE needs the votes of the other masters; TAKEOVER needs none.
              yield* Effect.promise(() => replica.admin.call("CLUSTER", "FAILOVER", "TAKEOVER"))
            }
            yield* Harness.sleep(20)
          }
          return Date.now() - started
        })
        const [results, failoverMillis] = yield* Effect.all([stampede, failover], { concurrency: "unbounded" })

        // Every call settled with its own value: at least once never fails a call, and nothing died.
        results.forEach(({ value: exit }, i) =>
          assert.isTrue(
            Exit.isSuccess(exit) && exit.value === `value ${calls[i]!.key}`,
            `call ${i} (key ${calls[i]!.key}): ${describeExit(exit)}`
          ))
        // The longest path a caller can take: wait for the holder's producer and a poll, read again
        // (a command timeout), try the lock (another), then produce itself.
        const bound = producerMillis + pollInterval + 2 * commandTimeout + producerMillis + margin
        const all = stats(results.map((r) => r.millis))
        const victimCalls = stats(results.filter((_, i) => onVictim.has(calls[i]!.key)).map((r) => r.millis))
        const others = stats(results.filter((_, i) => !onVictim.has(calls[i]!.key)).map((r) => r.millis))
        for (const [i, { millis }] of results.entries()) {
          assert.isBelow(millis, bound, `call ${i} (key ${calls[i]!.key}${onVictim.has(calls[i]!.key) ? ", on the failed master" : ""}) within its bound`)
        }
        const perKey = Object.fromEntries(keys.map((key) => [key, runs.get(key) ?? 0]))
        for (const key of keys) {
          const n = runs.get(key) ?? 0
          if (onVictim.has(key)) assert.isTrue(n >= 1 && n <= 2, `key ${key} on the failed master: ${n} producer runs`)
          else assert.strictEqual(n, 1, `key ${key} on a healthy master: one producer run`)
        }

        // The old master comes back (it finds itself demoted); the client finds the promoted replica.
        cluster.resume(victim)
        const recovery = yield* Effect.gen(function*() {
          const started = Date.now()
          const key = [...onVictim][0]!
          for (;;) {
            const read = yield* Effect.either(Items.get(key)).pipe(Effect.provide(instances[0]))
            if (Either.isRight(read)) return Date.now() - started
            if (Date.now() - started > 15_000) return Infinity
            yield* Harness.sleep(100)
          }
        })
        const again = yield* Effect.forEach(
          [...onVictim],
          (key) => timedExit(Items.getOrSet(key, Effect.succeed(`value ${key}`)), instances[1]),
          { concurrency: "unbounded" }
        )
        for (const { value: exit } of again) assert.isTrue(Exit.isSuccess(exit), describeExit(exit))

        // No lock outlives one lease, on any master (the promoted one included).
        yield* Harness.sleep(lease + 200)
        const locks = yield* Effect.promise(() => cluster.lockKeys())
        console.log(
          `failover mid-stampede: victim ${victim.port} (${onVictim.size} of ${keys.length} keys), failover took ${failoverMillis} ms; ` +
            `latency all ${JSON.stringify(all)}, failed master ${JSON.stringify(victimCalls)}, others ${JSON.stringify(others)}, bound ${bound} ms; ` +
            `producer runs per key ${JSON.stringify(perKey)}; client found the promoted replica ${recovery} ms after the stampede; ` +
            `locks left ${locks.length}; ${logs.lines.length} log lines`
        )
        assert.isBelow(recovery, 10_000, "the client reaches the promoted replica")
        assert.deepStrictEqual(locks, [], "no lock left after one lease")
        assert.deepStrictEqual(unhandled, [], "no unhandled rejection")
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
    }), 60_000)

  // -------------------------------------------------------------------------------------------------
  // 2. One master down, no replica
  // -------------------------------------------------------------------------------------------------
  it.live("one master down, no replica: its keys fail typed within 1.1× the timeout; the other masters answer fast", () =>
    Effect.gen(function*() {
      const logs = yield* Harness.captureLogs
      yield* Effect.gen(function*() {
        const cluster = yield* faultCluster({ replicas: 0, nodeTimeout: 2_000, fullCoverage: false })
        const unhandled = yield* Harness.unhandledRejections
        const namespace = "down"
        // Both ways the bound can be set: the cache's timeout shorter than the command's (the cache
        // races the call), and the command's shorter (the store bounds itself).
        const configs = [
          { name: "timeout 400 ms, commandTimeout 1 s", timeout: 400, commandTimeout: 1_000 },
          { name: "timeout 600 ms, commandTimeout 500 ms", timeout: 600, commandTimeout: 500 }
        ] as const
        const caches = yield* Effect.forEach(configs, (config) =>
          instance({
            cluster: cluster.startup,
            namespace,
            timeout: `${config.timeout} millis`,
            commandTimeout: `${config.commandTimeout} millis`,
            // Each call meets the dead master itself (an open circuit would answer for it at once).
            circuitBreaker: false
          }))
        const keys = Array.from({ length: 30 }, (_, i) => i + 1)
        const owners = yield* Effect.promise(() => Promise.all(keys.map((key) => cluster.ownerOf(slotOfItem(namespace, key)))))
        const victim = owners[0]!
        const dead = keys.filter((_, i) => owners[i] === victim).slice(0, 3)
        const alive = keys.filter((_, i) => owners[i] !== victim).slice(0, 6)
        assert.isTrue(new Set(alive.map((key) => owners[keys.indexOf(key)])).size === 2, "live keys on both other masters")
        for (const on of caches) {
          yield* Effect.forEach([...dead, ...alive], (key) => Items.set(key, "warm"), { discard: true }).pipe(Effect.provide(on))
        }

        const report: Record<string, unknown> = {}
        const problems: Array<string> = []
        const reasonOf = (exit: Exit.Exit<unknown, unknown>) => {
          if (Exit.isSuccess(exit)) return "success"
          const failure = Cause.failureOption(exit.cause)
          if (failure._tag === "None") return "defect"
          const error = failure.value as { readonly _tag?: string; readonly reason?: string }
          return `${error._tag}:${error.reason}`
        }
        const measure = (phase: string) =>
          Effect.forEach(configs, (config, c) =>
            Effect.gen(function*() {
              const on = caches[c]!
              const name = `${phase}, ${config.name}`
              const calls = (keys: ReadonlyArray<number>, value: string) =>
                keys.flatMap((key) => [
                  [`get ${key}`, Items.get(key) as Effect.Effect<unknown, unknown, Cache.Cache>],
                  [`set ${key}`, Items.set(key, value) as Effect.Effect<unknown, unknown, Cache.Cache>]
                ] as const)
              const deadCalls = calls(dead, "x")
              const aliveCalls = calls(alive, "y")
              // The calls on live masters are sent while the dead master's are pending.
              const [deadResults, aliveResults] = yield* Effect.all([
                Effect.forEach(deadCalls, ([, call]) => timedExit(call, on), { concurrency: "unbounded" }),
                Effect.zipRight(
                  Harness.sleep(20),
                  Effect.forEach(aliveCalls, ([, call]) => timedExit(call, on), { concurrency: "unbounded" })
                )
              ], { concurrency: "unbounded" })
              // One call alone (nothing else in its pipeline), then getOrSet: one bounded store wait and the producer.
              const alone = yield* timedExit(Items.get(dead[2]!) as Effect.Effect<unknown, unknown, Cache.Cache>, on)
              const produced = yield* timedExit(Items.getOrSet(dead[1]!, Effect.as(Harness.sleep(100), "v")), on)
              report[name] = {
                dead: stats(deadResults.map((r) => r.millis)),
                alive: stats(aliveResults.map((r) => r.millis)),
                reasons: [...new Set(deadResults.map(({ value }) => reasonOf(value)))],
                getAlone: `${alone.millis} ms, ${reasonOf(alone.value)}`,
                getOrSet: produced.millis
              }
              // Checked after every phase has run, so the report shows every number.
              const check = (ok: boolean, message: string) => void (ok || problems.push(message))
              const deadNamed = [
                ...deadResults.map((result, i) => [deadCalls[i]![0], result] as const),
                [`get ${dead[2]} alone`, alone] as const
              ]
              for (const [label, { millis, value }] of deadNamed) {
                const call = `${name}: ${label} (dead master)`
                const reason = reasonOf(value)
                check(
                  reason === "StoreError:Timeout" || reason === "StoreError:Unavailable",
                  `${call}: ${reason} (${Exit.isFailure(value) ? String(Cause.squash(value.cause)) : "success"})`
                )
                check(millis < 1.1 * config.timeout + margin, `${call}: ${millis} ms, over 1.1× the timeout + ${margin} ms`)
              }
              aliveResults.forEach(({ millis, value }, i) => {
                const call = `${name}: ${aliveCalls[i]![0]} (live master)`
                check(Exit.isSuccess(value), `${call}: ${describeExit(value)}`)
                check(millis < margin, `${call}: ${millis} ms, not fast`)
              })
              check(Exit.isSuccess(produced.value) && produced.value.value === "v", `${name}: getOrSet ${describeExit(produced.value)}`)
              const bound = Math.min(config.timeout, config.commandTimeout) + 100 + margin
              check(produced.millis < bound, `${name}: getOrSet took ${produced.millis} ms, over one store bound and the producer (${bound} ms)`)
            }), { discard: true })

        cluster.pause(victim)
        yield* measure("frozen (SIGSTOP)")
        cluster.resume(victim)
        // Back: every client answers on the victim's keys again before it is killed.
        for (const on of caches) {
          yield* Items.get(dead[0]!).pipe(
            Effect.provide(on),
            Effect.retry({ times: 100, schedule: Schedule.spaced("50 millis") }),
            Effect.orDie
          )
        }
        yield* Effect.promise(() => cluster.kill(victim))
        yield* measure("killed (SIGKILL)")
        yield* Harness.sleep(1_000)
        yield* measure("killed, 1 s later")
        console.log(`one master down: ${JSON.stringify(report, null, 1)}`)
        assert.deepStrictEqual(problems, [], "every call on the dead master typed and bounded, every other one fast")
        assert.deepStrictEqual(unhandled, [], "no unhandled rejection")
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
    }), 60_000)

  // -------------------------------------------------------------------------------------------------
  // 3. A hot slot migrating mid-stampede
  // -------------------------------------------------------------------------------------------------
  it.live("slot migration mid-stampede: a hot slot moves (ASK, then MOVED) while its callers wait on the lock; one run per key, every call served in time", () =>
    Effect.gen(function*() {
      const logs = yield* Harness.captureLogs
      yield* Effect.gen(function*() {
        const cluster = yield* faultCluster({ replicas: 0, nodeTimeout: 2_000, fullCoverage: true })
        const unhandled = yield* Harness.unhandledRejections
        const namespace = "mig"
        // The defaults: commandTimeout 500 ms, lease 3 s, poll interval 200 ms (and the cache's timeout, 1 s).
        const commandTimeout = 500
        const lease = 3_000
        const pollInterval = 200
        /** ioredis's `retryDelayOnTryAgain`: how long it waits before sending a command that met TRYAGAIN again. */
        const tryAgainDelay = 100
        const producerMillis = 400
        const options: Cache.RedisOptions = { cluster: cluster.startup, namespace }
        // Three instances, as three processes sharing the cluster; a fourth takes no part in the stampede:
        // its slot map is the one from before the migration (ioredis refreshes it on MOVED only), so its
        // first call after the migration meets MOVED.
        const instances = [yield* instance(options), yield* instance(options), yield* instance(options)] as const
        const late = yield* instance(options)
        const keys = sameSlotItems(namespace, 3)
        const slot = slotOfItem(namespace, keys[0]!)
        const source = yield* Effect.promise(() => cluster.ownerOf(slot))
        const { masters } = yield* Effect.promise(() => cluster.topology())
        assert.strictEqual(masters.length, 3)
        const target = masters.map(({ node }) => node).find((node) => node !== source)!
        const third = masters.map(({ node }) => node).find((node) => node !== source && node !== target)!
        // Nothing warmed: no entry, no script loaded on any connection, the counters from zero.
        yield* Effect.promise(() => Promise.all(cluster.nodes.map((node) => node.admin.config("RESETSTAT"))))

        const { produce, runs } = counter()
        const calls = Array.from({ length: 150 }, (_, i) => ({ on: instances[i % 3]!, key: keys[Math.floor(i / 3) % keys.length]! }))
        const stampede = Effect.forEach(
          calls,
          ({ key, on }) => timedExit(Items.getOrSet(key, produce(key, producerMillis, `value ${key}`)), on),
          { concurrency: "unbounded" }
        )
        const started = Date.now()
        const at: Record<string, number> = {}
        const mark = (step: string) => void (at[step] = Date.now() - started)
        // The standard way (as `redis-cli --cluster reshard` moves a slot), in three steps timed on the
        // producers, so that each kind of command meets each state of the slot.
        const migration = Effect.promise(async () => {
          // Every key's lock is held and its producer is running.
          while (runs.size < keys.length) await pause(5)
          mark("producers")
          // 1. The slot opens: the source still serves the keys it has (the held locks) and answers ASK
          //    for the others (the entries, not written yet): the waiters' re-reads meet ASK.
          await target.admin.call("CLUSTER", "SETSLOT", slot, "IMPORTING", source.id)
          await source.admin.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target.id)
          mark("open")
          await pause(150)
          // 2. The slot's keys (the locks) move: the waiters' acquisitions meet ASK; the producers finish
          //    and release while the slot is still open, so the release script (its keys all in the
          //    entry's slot) meets ASK, then TRYAGAIN on the target (the lock is there, the entry is not).
          let moved = 0
          for (;;) {
            const batch = await source.admin.call("CLUSTER", "GETKEYSINSLOT", slot, 100) as Array<string>
            if (batch.length === 0) break
            await source.admin.call("MIGRATE", "127.0.0.1", target.port, "", 0, 5_000, "REPLACE", "KEYS", ...batch)
            moved += batch.length
          }
          mark("keys moved")
          while (Date.now() - started < at["producers"]! + producerMillis + 200) await pause(5)
          // 3. The slot is the target's, on every master (the target first): MOVED from the others.
          for (const node of [target, source, third]) await node.admin.call("CLUSTER", "SETSLOT", slot, "NODE", target.id)
          mark("slot given")
          return moved
        })
        const [results, movedKeys] = yield* Effect.all([stampede, migration], { concurrency: "unbounded" })
        mark("stampede")
        const perKey = Object.fromEntries(keys.map((key) => [key, runs.get(key) ?? 0]))
        const during = yield* Effect.promise(() => Promise.all([refusals(source), refusals(target)]))

        // After the migration, at once: a plain get, set and getOrSet on the migrated keys, from every
        // instance (the fourth first: it still sends the slot's commands to the source).
        const afterCalls = yield* Effect.forEach([late, ...instances], (on) =>
          Effect.gen(function*() {
            const get = yield* timedExit(Effect.map(Items.get(keys[0]!), Option.getOrUndefined), on)
            const set = yield* timedExit(Items.set(keys[1]!, `set ${keys[1]}`), on)
            const reread = yield* timedExit(Effect.map(Items.get(keys[1]!), Option.getOrUndefined), on)
            const getOrSet = yield* timedExit(Items.getOrSet(keys[2]!, produce(keys[2]!, producerMillis, "produced again")), on)
            return { get, set, reread, getOrSet }
          }))
        const after = yield* Effect.promise(() => refusals(source))

        // No lock outlives one lease; the entries are on the target, nothing of the slot on the source.
        yield* Harness.sleep(lease + 200)
        const locks = yield* Effect.promise(() => cluster.lockKeys())
        const owner = yield* Effect.promise(() => cluster.ownerOf(slot, third))
        const left = yield* Effect.promise(() => source.admin.call("CLUSTER", "COUNTKEYSINSLOT", slot) as Promise<number>)
        const onTarget = yield* Effect.promise(() =>
          target.admin.exists(...keys.map((key) => `${namespace}:items:${key}`)) as Promise<number>)

        const latency = stats(results.map((r) => r.millis))
        // The longest path: the holder's release waits for the slot to be given (a TRYAGAIN is worth
        // sending again, as ioredis does every 100 ms), then a waiter that missed the wake-up polls,
        // re-reads and is redirected (two commands). Far below one lease: a lock kept to the end of its
        // lease cannot pass.
        const bound = at["slot given"]! + tryAgainDelay + pollInterval + 2 * commandTimeout + margin
        assert.isBelow(bound, lease, "the bound tells a lock kept for its lease apart")
        const messages = logs.messages()
        console.log(
          `slot migration mid-stampede: slot ${slot} (keys ${keys.join(", ")}) from ${source.port} to ${target.port}, ${movedKeys} keys moved; ` +
            `steps ${JSON.stringify(at)} ms; latency ${JSON.stringify(latency)}, bound ${bound} ms; producer runs per key ${JSON.stringify(perKey)}; ` +
            `refused during the stampede: source ${JSON.stringify(during[0])}, target ${JSON.stringify(during[1])}; ` +
            `after: ${JSON.stringify(afterCalls.map((calls) => Object.fromEntries(Object.entries(calls).map(([name, { millis }]) => [name, millis]))))} ms, ` +
            `MOVED on the source ${during[0].errors["MOVED"] ?? 0} → ${after.errors["MOVED"] ?? 0}; ` +
            `entries on the target ${onTarget}/${keys.length}, keys of the slot left on the source ${left}; locks left ${locks.length}; ` +
            `${messages.length} log lines ${JSON.stringify(messages.slice(0, 5))}`
        )

        // The migration did what it is here for: re-reads, acquisitions and the release script redirected
        // (ASK, TRYAGAIN), then MOVED.
        const [atSource, atTarget] = during
        assert.isAbove(atSource.errors["ASK"] ?? 0, 0, "the source answered ASK")
        assert.isAbove(atSource.rejected["get"] ?? 0, 0, "re-reads redirected")
        assert.isAbove(atSource.rejected["set"] ?? 0, 0, "lock acquisitions redirected")
        assert.isAbove(
          (atSource.rejected["eval"] ?? 0) + (atSource.rejected["evalsha"] ?? 0) + (atTarget.rejected["eval"] ?? 0) + (atTarget.rejected["evalsha"] ?? 0),
          0,
          "release scripts redirected"
        )
        assert.isAbove(atTarget.asking, 0, "ASK followed to the target")
        assert.isAbove(atSource.errors["MOVED"] ?? 0, 0, "the source answered MOVED once the slot was given")

        // Every caller got the produced value.
        results.forEach(({ value: exit }, i) =>
          assert.isTrue(
            Exit.isSuccess(exit) && exit.value === `value ${calls[i]!.key}`,
            `call ${i} (key ${calls[i]!.key}): ${describeExit(exit)}`
          ))
        // One run per key. A migration gives no lock twice: the source serves SET NX on a lock it holds
        // and answers ASK for one it does not (the target takes it then), and MIGRATE moves a key in one
        // step. A second run can only come from a lock whose release failed: kept to the end of its lease,
        // with no value stored.
        for (const key of keys) assert.strictEqual(runs.get(key) ?? 0, 1, `key ${key}: one producer run`)
        // A redirection or a TRYAGAIN is followed, never logged as a failure.
        assert.deepStrictEqual(messages.filter((message) => message.includes("CROSSSLOT")), [], "no CROSSSLOT")
        assert.deepStrictEqual(messages, [], "no error logged")
        results.forEach(({ millis }, i) => assert.isBelow(millis, bound, `call ${i} (key ${calls[i]!.key}) within its bound`))

        // After the migration: every call served at once (no command timed out first), MOVED followed.
        afterCalls.forEach(({ get, getOrSet, reread, set }, i) => {
          const name = i === 0 ? "the fourth instance" : `instance ${i}`
          const checks: ReadonlyArray<readonly [string, { readonly millis: number; readonly value: Exit.Exit<unknown, unknown> }, unknown]> = [
            ["get", get, `value ${keys[0]}`],
            ["set", set, undefined],
            ["get after set", reread, `set ${keys[1]}`],
            ["getOrSet", getOrSet, `value ${keys[2]}`]
          ]
          for (const [call, { millis, value: exit }, expected] of checks) {
            assert.isTrue(Exit.isSuccess(exit) && exit.value === expected, `${name}, ${call}: ${describeExit(exit)}`)
            assert.isBelow(millis, commandTimeout / 2, `${name}, ${call}: at once`)
          }
        })
        assert.isAbove(after.errors["MOVED"] ?? 0, atSource.errors["MOVED"] ?? 0, "after the migration, MOVED met (the fourth instance's slot map was stale) and followed")
        assert.strictEqual(runs.get(keys[2]!), perKey[keys[2]!], "getOrSet after the migration found the value")

        assert.strictEqual(owner, target, "the cluster gives the slot to the target")
        assert.strictEqual(onTarget, keys.length, "every entry on the target")
        assert.strictEqual(left, 0, "nothing of the slot left on the source")
        assert.deepStrictEqual(locks, [], "no lock left after one lease")
        assert.deepStrictEqual(unhandled, [], "no unhandled rejection")
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
    }), 60_000)
})
