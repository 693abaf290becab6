/**
 * Starts a real memcached on a free loopback port for the test run and stops it afterwards. Tests read
 * its address with `inject("memcachedServer")`; each test file keeps to key namespaces of its own.
 * The helpers start more servers (the fault tests pause and kill their own).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { Socket } from "node:net"
import type { TestProject } from "vitest/node"
import { freePort, waitForServer } from "./servers.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** `"127.0.0.1:<port>"` of the run's memcached. */
    memcachedServer: string
  }
}

/** Resolves once memcached answers `version`, or rejects after `timeoutMs`. */
export const waitForMemcached = (port: number, timeoutMs = 10_000): Promise<void> =>
  waitForServer("memcached", port, "version\r\n", (reply) => reply.startsWith("VERSION "), timeoutMs)

/**
 * Starts memcached on a free loopback port (or `fixedPort`), TCP only, 64 MB, with `extra` arguments
 * (e.g. `["-I", "2m"]`). As root it must be told whom to run as.
 */
export const startMemcached = async (
  extra: ReadonlyArray<string> = [],
  fixedPort?: number
): Promise<{ port: number; process: ChildProcess }> => {
  const port = fixedPort ?? await freePort()
  const asRoot = process.getuid?.() === 0 ? ["-u", "root"] : []
  const child = spawn("memcached", [...asRoot, "-l", "127.0.0.1", "-p", String(port), "-U", "0", "-m", "64", ...extra], {
    stdio: "ignore"
  })
  child.once("error", (error) => {
    throw new Error(`could not start memcached (is it installed?): ${error.message}`)
  })
  await waitForMemcached(port)
  return { port, process: child }
}

/** Stops a test memcached: at once (SIGKILL: it keeps nothing worth a graceful exit, which takes a second). */
export const stopMemcached = async (child: ChildProcess): Promise<void> => {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, "exit")
  child.kill("SIGKILL")
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))])
}

/**
 * One text-protocol command on a connection of its own, straight to the server (around the store
 * and its client): the lines of the reply up to and including the first that ends it (`END`,
 * `STORED`, `DELETED`, `ERROR`, ...).
 */
export const memcachedCommand = (port: number, command: string | Buffer): Promise<Array<string>> =>
  new Promise((resolve, reject) => {
    const socket = new Socket()
    let reply = ""
    const done = (lines: Array<string>) => {
      socket.destroy()
      resolve(lines)
    }
    socket.setTimeout(2_000, () => {
      socket.destroy()
      reject(new Error(`no full reply to ${String(command).slice(0, 40)}`))
    })
    socket.on("data", (chunk) => {
      reply += chunk.toString("latin1")
      const lines = reply.split("\r\n")
      lines.pop()
      const last = lines.at(-1)
      const single = /^(STORED|NOT_STORED|EXISTS|NOT_FOUND|DELETED|TOUCHED|OK|ERROR|CLIENT_ERROR.*|SERVER_ERROR.*|VERSION .*|ME .*|EN|\d+)$/
      if (last !== undefined && (last === "END" || (lines.length === 1 && single.test(last)))) done(lines)
    })
    socket.once("error", reject)
    socket.connect(port, "127.0.0.1", () => socket.write(command))
  })

/**
 * The seconds memcached will keep `physical` for (its `me` command prints the remaining time; -1: no
 * expiry, given as Infinity), or `undefined` when it holds nothing.
 */
export const memcachedRemaining = async (port: number, physical: string): Promise<number | undefined> => {
  const [line] = await memcachedCommand(port, `me ${physical}\r\n`)
  const match = /\bexp=(-?\d+)/.exec(line!)
  if (match === null) return undefined
  const exp = Number(match[1])
  return exp === -1 ? Infinity : Math.abs(exp)
}

/** One `STAT name value` of `stats` (or `stats settings`), as a number. */
export const memcachedStat = async (port: number, name: string, group = ""): Promise<number> => {
  const lines = await memcachedCommand(port, `stats${group === "" ? "" : ` ${group}`}\r\n`)
  const line = lines.find((line) => line.startsWith(`STAT ${name} `))
  if (line === undefined) throw new Error(`memcached has no stat ${name}`)
  return Number(line.split(" ")[2])
}

export default async function setup(project: TestProject) {
  const { port, process } = await startMemcached()
  project.provide("memcachedServer", `127.0.0.1:${port}`)
  return () => stopMemcached(process)
}
