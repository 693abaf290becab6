/**
 * What every fault test uses: a redis-server of its own (so a pause or a kill touches no other test),
 * a proxy in front of it, an admin connection that goes around the proxy, and the checks each case
 * ends with: no lock left behind, which commands ran, no unhandled rejection.
 */
import type { ChildProcess } from "node:child_process"
import { Effect, Fiber, HashMap, Logger } from "effect"
import { Redis as IORedis } from "ioredis"
import { commandDelta, commandStats, startRedis, stopRedis } from "../setup/servers.js"
import * as Proxy from "./proxy.js"

export interface Server {
  readonly port: number
  /** The proxy the cache under test connects through. */
  readonly proxy: Proxy.Proxy
  /** `redis://` URL through the proxy. */
  readonly url: string
  /** A connection straight to the server, for setup and checks. */
  readonly admin: IORedis
  readonly process: () => ChildProcess
  readonly pause: () => void
  readonly resume: () => void
  /** SIGKILL, then the same port again after `downMillis` (empty: no persistence). */
  readonly restart: (downMillis: number) => Promise<void>
  /** Calls per command since the last {@link Server.resetStats}. */
  readonly commands: (ignore?: ReadonlyArray<string>) => Promise<Record<string, number>>
  readonly resetStats: () => Promise<void>
  /** The lock keys left on the server for a namespace. */
  readonly lockKeys: (namespace: string) => Promise<Array<string>>
}

/** A server with its proxy for the life of the scope. */
export const server = (extra: ReadonlyArray<string> = []) =>
  Effect.acquireRelease(
    Effect.promise(async (): Promise<Server> => {
      const started = await startRedis(extra)
      const port = started.port
      let child = started.process
      const proxy = await Proxy.start(port)
      const password = extra.includes("--requirepass") ? extra[extra.indexOf("--requirepass") + 1] : undefined
      const admin = new IORedis(port, "127.0.0.1", { maxRetriesPerRequest: null, ...(password === undefined ? {} : { password }) })
      admin.on("error", () => {})
      let baseline: Record<string, number> = {}
      return {
        port,
        proxy,
        url: `redis://127.0.0.1:${proxy.port}`,
        admin,
        process: () => child,
        pause: () => void child.kill("SIGSTOP"),
        resume: () => void child.kill("SIGCONT"),
        restart: async (downMillis) => {
          child.kill("SIGKILL")
          await new Promise((resolve) => child.once("exit", resolve))
          await new Promise((resolve) => setTimeout(resolve, downMillis))
          child = (await startRedis(extra, port)).process
        },
        commands: async (ignore = []) =>
          commandDelta(baseline, await commandStats(admin), ["info", "ping", "client|setinfo", "config|get", ...ignore]),
        resetStats: async () => {
          baseline = await commandStats(admin)
        },
        lockKeys: async (namespace) => {
          const found: Array<string> = []
          let cursor = "0"
          do {
            const [next, keys] = await admin.scan(cursor, "MATCH", `${namespace}::lock:*`, "COUNT", 1000)
            found.push(...keys)
            cursor = next
          } while (cursor !== "0")
          return found
        }
      }
    }),
    (server) =>
      Effect.promise(async () => {
        server.admin.disconnect()
        await server.proxy.close()
        await stopRedis(server.process())
      })
  )

/** Collects unhandled rejections for the scope: each case asserts there were none. */
export const unhandledRejections = Effect.acquireRelease(
  Effect.sync(() => {
    const seen: Array<unknown> = []
    const listener = (reason: unknown) => void seen.push(reason)
    process.on("unhandledRejection", listener)
    return { seen, listener }
  }),
  ({ listener }) => Effect.sync(() => void process.off("unhandledRejection", listener))
).pipe(Effect.map(({ seen }) => seen as ReadonlyArray<unknown>))

/** Runs `effect` and returns its result with the real time it took, in milliseconds. */
export const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.sync(() => Date.now()), (started) =>
    Effect.map(effect, (value) => ({ value, millis: Date.now() - started })))

/** Real-time sleep (the fault tests run on real time). */
export const sleep = (millis: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, millis)))

/**
 * A write whose reply is lost: `arm` blackholes the link's replies (at once, or once a given command
 * goes by), the write starts, and 100 ms later the link passes again and its connection is reset. The
 * write's exit (the caller must be told the outcome is unknown).
 */
export const lostReply = <A, E, R>(proxy: Proxy.Proxy, arm: () => void, write: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    arm()
    const fiber = yield* Effect.fork(write)
    yield* sleep(100)
    proxy.set(Proxy.pass)
    proxy.reset()
    return yield* Fiber.await(fiber)
  })

export interface LogLine {
  readonly message: string
  readonly annotations: Record<string, unknown>
}

/** A logger that keeps every line with its annotations, to check what a fault prints. */
export const captureLogs = Effect.sync(() => {
  const lines: Array<LogLine> = []
  return {
    lines,
    messages: (): Array<string> => lines.map((line) => line.message),
    layer: Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ annotations, message }) =>
        void lines.push({
          message: Array.isArray(message) ? message.join(" ") : String(message),
          annotations: Object.fromEntries(HashMap.toEntries(annotations))
        })
      )
    )
  }
})

/**
 * `Date.now` swapped for the scope: the real wall clock plus an offset that `jump` moves, as an NTP
 * step or an operator's `date -s` moves it. Timers (`setTimeout`) and `performance.now` are not
 * touched, as they are not when a real wall clock jumps. Restored when the scope closes.
 */
export const jumpingWallClock = Effect.acquireRelease(
  Effect.sync(() => {
    const real = Date.now
    let offset = 0
    Date.now = () => real.call(Date) + offset
    return { real, jump: (millis: number) => void (offset += millis) }
  }),
  ({ real }) => Effect.sync(() => void (Date.now = real))
)
