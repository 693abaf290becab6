/**
 * Real Redis servers for the tests and the benchmarks: a standalone server, a 3-master cluster and a
 * master with a Sentinel, each on free loopback ports, without persistence.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { createServer, Socket } from "node:net"

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port")))
    })
  })

/**
 * Resolves once a server on `port` answers `request` with a reply `answered` accepts, or rejects
 * after `timeoutMs`, naming the server `name`.
 */
export const waitForServer = async (
  name: string,
  port: number,
  request: string,
  answered: (reply: string) => boolean,
  timeoutMs = 10_000
): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = new Socket()
      socket.setTimeout(500)
      socket.once("data", (data) => {
        socket.destroy()
        resolve(answered(data.toString()))
      })
      socket.once("error", () => resolve(false))
      socket.once("timeout", () => {
        socket.destroy()
        resolve(false)
      })
      socket.connect(port, "127.0.0.1", () => socket.write(request))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`${name} on port ${port} did not answer within ${timeoutMs} ms`)
}

/** Resolves once the server answers PING (a server with a password answers too), or rejects after `timeoutMs`. */
export const waitForRedis = (port: number, timeoutMs = 10_000): Promise<void> =>
  waitForServer("redis-server", port, "PING\r\n", (reply) => /^(\+PONG|-NOAUTH)/.test(reply), timeoutMs)

/** Starts redis-server on a free loopback port, without persistence. */
export const startRedis = async (
  extra: ReadonlyArray<string> = [],
  fixedPort?: number
): Promise<{ port: number; process: ChildProcess }> => {
  const port = fixedPort ?? await freePort()
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--databases", "64", ...extra],
    { stdio: "ignore" }
  )
  child.once("error", (error) => {
    throw new Error(`could not start redis-server (is it installed?): ${error.message}`)
  })
  await waitForRedis(port)
  return { port, process: child }
}

export const stopRedis = async (child: ChildProcess): Promise<void> => {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill("SIGCONT") // a test may have paused it
  child.kill("SIGTERM")
  await Promise.race([once(child, "exit"), new Promise((r) => setTimeout(r, 5_000))])
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
}


const isFree = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const server = createServer()
    server.unref()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })

/** A port that is free, and whose cluster bus port (port + 10000) is free too; both are added to `taken`. */
export const freeClusterPort = async (taken: Set<number>): Promise<number> => {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 20_000)
    if (taken.has(port) || taken.has(port + 10_000)) continue
    if (await isFree(port) && await isFree(port + 10_000)) {
      taken.add(port)
      taken.add(port + 10_000)
      return port
    }
  }
  throw new Error("no free port pair for a cluster node")
}

export interface TestCluster {
  readonly ports: ReadonlyArray<number>
  readonly processes: ReadonlyArray<ChildProcess>
  readonly dir: string
}

/** Starts a 3-master Redis Cluster on loopback ports, without replicas or persistence. */
export const startCluster = async (): Promise<TestCluster> => {
  const { mkdtempSync } = await import("node:fs")
  const { tmpdir } = await import("node:os")
  const { join } = await import("node:path")
  const { execFile } = await import("node:child_process")
  const dir = mkdtempSync(join(tmpdir(), "cachekit-cluster-"))
  const taken = new Set<number>()
  const ports: Array<number> = []
  for (let i = 0; i < 3; i++) {
    ports.push(await freeClusterPort(taken))
  }
  const processes = ports.map((port) =>
    spawn("redis-server", [
      "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
      "--cluster-enabled", "yes", "--cluster-config-file", join(dir, `nodes-${port}.conf`),
      "--cluster-node-timeout", "5000", "--dir", dir
    ], { stdio: "ignore" })
  )
  await Promise.all(ports.map((port) => waitForRedis(port)))
  await new Promise<void>((resolve, reject) =>
    execFile(
      "redis-cli",
      ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes"],
      { timeout: 30_000 },
      (error, _stdout, stderr) => error ? reject(new Error(`cluster create failed: ${stderr || error.message}`)) : resolve()
    )
  )
  // Wait until every node agrees the cluster is up.
  const deadline = Date.now() + 30_000
  for (;;) {
    const states = await Promise.all(ports.map((port) =>
      new Promise<string>((resolve) =>
        execFile("redis-cli", ["-p", String(port), "cluster", "info"], (_e, stdout) => resolve(String(stdout))))
    ))
    if (states.every((s) => s.includes("cluster_state:ok"))) break
    if (Date.now() > deadline) throw new Error("the test cluster did not come up")
    await new Promise((r) => setTimeout(r, 100))
  }
  return { ports, processes, dir }
}

export const stopCluster = async (cluster: TestCluster): Promise<void> => {
  const { rmSync } = await import("node:fs")
  await Promise.all(cluster.processes.map(stopRedis))
  rmSync(cluster.dir, { recursive: true, force: true })
}

export interface TestSentinel {
  readonly master: { port: number; process: ChildProcess }
  readonly sentinelPort: number
  readonly sentinel: ChildProcess
  readonly dir: string
}

/** Starts a master and one Sentinel watching it as "mymaster". */
export const startSentinel = async (): Promise<TestSentinel> => {
  const { mkdtempSync, writeFileSync } = await import("node:fs")
  const { tmpdir } = await import("node:os")
  const { join } = await import("node:path")
  const dir = mkdtempSync(join(tmpdir(), "cachekit-sentinel-"))
  const master = await startRedis()
  const sentinelPort = await freePort()
  const config = join(dir, "sentinel.conf")
  writeFileSync(
    config,
    [
      `port ${sentinelPort}`,
      "bind 127.0.0.1",
      `dir ${dir}`,
      `sentinel monitor mymaster 127.0.0.1 ${master.port} 1`,
      "sentinel down-after-milliseconds mymaster 5000"
    ].join("\n") + "\n"
  )
  const sentinel = spawn("redis-server", [config, "--sentinel"], { stdio: "ignore" })
  await waitForRedis(sentinelPort)
  return { master, sentinelPort, sentinel, dir }
}

export const stopSentinel = async (setup: TestSentinel): Promise<void> => {
  const { rmSync } = await import("node:fs")
  await stopRedis(setup.sentinel)
  await stopRedis(setup.master.process)
  rmSync(setup.dir, { recursive: true, force: true })
}

/** Calls per command since the server started, from `INFO commandstats`. */
export const commandStats = async (client: { info(section: string): Promise<string> }): Promise<Record<string, number>> => {
  const info = await client.info("commandstats")
  const calls: Record<string, number> = {}
  for (const match of info.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) calls[match[1]!] = Number(match[2])
  return calls
}

/** The commands issued between two readings of {@link commandStats}, leaving out `ignore`. */
export const commandDelta = (
  before: Record<string, number>,
  after: Record<string, number>,
  ignore: ReadonlyArray<string> = []
): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const [name, n] of Object.entries(after)) {
    const d = n - (before[name] ?? 0)
    if (d > 0 && !ignore.includes(name)) out[name] = d
  }
  return out
}
