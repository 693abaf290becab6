/**
 * bentocache as a two-layer cache, as its documentation sets one up: memory (L1) in front of Redis (L2)
 * with its Redis bus. The peer of `Cache.layerTiered` in the benchmarks and their worker processes.
 */
import { BentoCache, bentostore } from "bentocache"
import { memoryDriver } from "bentocache/drivers/memory"
import { redisBusDriver, redisDriver } from "bentocache/drivers/redis"

export const bentoTiered = (connection: { readonly host: string; readonly port: number }, maxItems: number) =>
  new BentoCache({
    default: "tiered",
    stores: {
      tiered: bentostore()
        .useL1Layer(memoryDriver({ maxItems }))
        .useL2Layer(redisDriver({ connection: { ...connection } }))
        .useBus(redisBusDriver({ connection: { ...connection } }))
    }
  })

/** The host and port of a `redis://` URL. */
export const connectionOf = (url: string) => {
  const { hostname, port } = new URL(url)
  return { host: hostname, port: Number(port) }
}
