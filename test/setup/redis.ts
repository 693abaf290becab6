/**
 * Starts a real redis-server on a free loopback port for the test run and stops it afterwards. Tests
 * read its URL with `inject("redisUrl")`; each test file uses a database of its own.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { createServer, Socket } from "node:net"
import type { TestProject } from "vitest/node"

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string
    redisPort: number
  }
}

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

/** Resolves once the server answers PING, or rejects after `timeoutMs`. */
export const waitForRedis = async (port: number, timeoutMs = 10_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const answered = await new Promise<boolean>((resolve) => {
      const socket = new Socket()
      socket.setTimeout(500)
      socket.once("data", (data) => {
        socket.destroy()
        resolve(data.toString().startsWith("+PONG"))
      })
      socket.once("error", () => resolve(false))
      socket.once("timeout", () => {
        socket.destroy()
        resolve(false)
      })
      socket.connect(port, "127.0.0.1", () => socket.write("PING\r\n"))
    })
    if (answered) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`redis-server on port ${port} did not answer within ${timeoutMs} ms`)
}

/** Starts redis-server on a free loopback port, without persistence. */
export const startRedis = async (extra: ReadonlyArray<string> = []): Promise<{ port: number; process: ChildProcess }> => {
  const port = await freePort()
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--databases", "32", ...extra],
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

export default async function setup(project: TestProject) {
  const { port, process } = await startRedis()
  project.provide("redisUrl", `redis://127.0.0.1:${port}`)
  project.provide("redisPort", port)
  return () => stopRedis(process)
}
