/**
 * Starts a real redis-server on a free loopback port for the test run and stops it afterwards. Tests
 * read its URL with `inject("redisUrl")`; each test file uses a database of its own.
 */
import type { TestProject } from "vitest/node"
import { startRedis, stopRedis } from "./servers.js"

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string
    redisPort: number
  }
}

export default async function setup(project: TestProject) {
  const { port, process } = await startRedis()
  project.provide("redisUrl", `redis://127.0.0.1:${port}`)
  project.provide("redisPort", port)
  return () => stopRedis(process)
}
