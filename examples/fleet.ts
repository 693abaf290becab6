/**
 * Runs a fleet of `fleet-worker.ts` processes against one Redis and reports what happened: how many
 * times the producer ran in total, how many distinct values the callers got, and how long after the
 * producer finished the last caller returned. Used by the tour and by the cross-process tests.
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

export interface WorkerOptions {
  readonly url: string
  readonly namespace: string
  readonly key: string
  readonly callers: number
  readonly producerMillis: number
  readonly leaseMillis: number
  /** `"tiered"`: the workers use `Cache.layerTiered`. Default `"redis"`. */
  readonly tier?: "redis" | "tiered" | undefined
}

export interface WorkerOutput {
  readonly pid: number
  readonly startedAt: number
  /** Producer runs in the whole fleet when this worker finished. */
  readonly runs: number
  readonly results: ReadonlyArray<{
    readonly value: { readonly by: number; readonly finishedAt: number }
    readonly returnedAt: number
  }>
  /** Whether the value ended in the worker's memory tier (a two-layer cache; `false` otherwise). */
  readonly inMemory?: boolean | undefined
}

export interface Worker {
  readonly pid: number | undefined
  /** Resolves once the worker is connected and waiting for the start signal. */
  readonly ready: Promise<void>
  readonly start: () => void
  readonly kill: (signal: NodeJS.Signals) => void
  /** The worker's report, or `undefined` when it was killed by a signal. */
  readonly done: Promise<WorkerOutput | undefined>
}

/** Compiled, this module spawns the compiled worker with plain node; from source, the source with tsx. */
const compiled = import.meta.url.endsWith(".js")
const workerPath = fileURLToPath(new URL(compiled ? "./fleet-worker.js" : "./fleet-worker.ts", import.meta.url))

export const spawnWorker = (options: WorkerOptions): Worker =>
  spawnScript(workerPath, [
    options.url,
    options.namespace,
    options.key,
    String(options.callers),
    String(options.producerMillis),
    String(options.leaseMillis),
    options.tier ?? "redis"
  ])

/**
 * Spawns a worker script (a .ts one through tsx) that prints "ready", waits for a line on standard input, and
 * ends by printing a {@link WorkerOutput} as one JSON line.
 */
export const spawnScript = (script: string, args: ReadonlyArray<string>): Worker => {
  const loader = script.endsWith(".ts") ? ["--import", "tsx"] : []
  const child = spawn(process.execPath, [...loader, script, ...args], { stdio: ["pipe", "pipe", "pipe"] })
  let stdout = ""
  let stderr = ""
  let markReady: () => void = () => {}
  const ready = new Promise<void>((resolve) => markReady = resolve)
  child.stdout.on("data", (chunk) => {
    stdout += chunk
    if (stdout.startsWith("ready\n")) markReady()
  })
  child.stderr.on("data", (chunk) => stderr += chunk)
  const done = new Promise<WorkerOutput | undefined>((resolve, reject) => {
    child.once("exit", (code, signal) => {
      if (signal !== null) return resolve(undefined)
      if (code !== 0) return reject(new Error(`worker exited with ${code}: ${stderr}`))
      resolve(JSON.parse(stdout.trim().split("\n").pop()!) as WorkerOutput)
    })
  })
  return {
    pid: child.pid,
    ready,
    start: () => void child.stdin.write("go\n"),
    kill: (signal) => void child.kill(signal),
    done
  }
}

/**
 * Starts workers together, once every one of them is connected (and has run its warm-up), after
 * `beforeStart` (e.g. a snapshot of the server's command counts).
 */
export const startTogether = async (workers: ReadonlyArray<Worker>, beforeStart?: () => Promise<void>): Promise<void> => {
  await Promise.all(workers.map((worker) => worker.ready))
  await beforeStart?.()
  for (const worker of workers) worker.start()
}

export interface FleetReport {
  readonly outputs: ReadonlyArray<WorkerOutput>
  /** Producer runs in the whole fleet. */
  readonly runs: number
  readonly distinctValues: number
  readonly callers: number
  /** How far apart the processes started, in ms. */
  readonly startSpread: number
  /** From the first process's start to the last caller's return, in ms. */
  readonly wallMillis: number
  /** The last caller's return, in ms after the producer finished. */
  readonly lastWaiterMillis: number
  /** For each process that did not produce, its first caller's return, in ms after the producer finished. */
  readonly firstReturnPerWaitingProcess: ReadonlyArray<number>
  readonly producedAt: number
}

export const report = (outputs: ReadonlyArray<WorkerOutput>): FleetReport => {
  const results = outputs.flatMap((output) => output.results)
  const producedAt = results[0]!.value.finishedAt
  return {
    outputs,
    runs: Math.max(...outputs.map((o) => o.runs)),
    distinctValues: new Set(results.map((r) => `${r.value.by}@${r.value.finishedAt}`)).size,
    callers: results.length,
    startSpread: Math.max(...outputs.map((o) => o.startedAt)) - Math.min(...outputs.map((o) => o.startedAt)),
    wallMillis: Math.max(...results.map((r) => r.returnedAt)) - Math.min(...outputs.map((o) => o.startedAt)),
    lastWaiterMillis: Math.max(...results.map((r) => r.returnedAt)) - producedAt,
    firstReturnPerWaitingProcess: outputs
      .filter((o) => o.pid !== results[0]!.value.by)
      .map((o) => Math.min(...o.results.map((r) => r.returnedAt)) - producedAt),
    producedAt
  }
}

/** Runs workers together and reports. */
export const runWorkers = async (workers: ReadonlyArray<Worker>, beforeStart?: () => Promise<void>): Promise<FleetReport> => {
  await startTogether(workers, beforeStart)
  const outputs = await Promise.all(workers.map((worker) => worker.done))
  return report(outputs as ReadonlyArray<WorkerOutput>)
}

/** Runs `processes` workers together on one cold key and reports. */
export const runFleet = (processes: number, options: WorkerOptions, beforeStart?: () => Promise<void>): Promise<FleetReport> =>
  runWorkers(Array.from({ length: processes }, () => spawnWorker(options)), beforeStart)
