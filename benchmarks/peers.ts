/**
 * The peers' cross-process stampede: `processes` workers of benchmarks/peer-worker.ts started together
 * on one cold key.
 */
import { fileURLToPath } from "node:url"
import { type FleetReport, runWorkers, spawnScript } from "../examples/fleet.js"

const script = fileURLToPath(
  new URL(import.meta.url.endsWith(".js") ? "./peer-worker.js" : "./peer-worker.ts", import.meta.url)
)

export const peerStampede = (
  peer: "bentocache" | "cache-manager" | "cachified",
  options: { readonly url: string; readonly processes: number; readonly callers: number; readonly producerMillis: number },
  beforeStart?: () => Promise<void>
): Promise<FleetReport> => {
  const key = `peer-${peer}-${Date.now()}`
  return runWorkers(
    Array.from({ length: options.processes }, () =>
      spawnScript(script, [peer, options.url, key, String(options.callers), String(options.producerMillis)])),
    beforeStart
  )
}
