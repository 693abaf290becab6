/**
 * A TCP proxy for network faults between a client and a server on loopback: per direction it passes
 * bytes, delays them (in order) or swallows them (a blackhole: the connection stays open, nothing
 * arrives); it can reset every connection (RST) and refuse new ones.
 */
import { createServer, type Server, Socket } from "node:net"

/** `up`: client to server; `down`: server to client. */
export type Direction = "up" | "down"

export type Mode =
  | { readonly _tag: "Pass" }
  | { readonly _tag: "Delay"; readonly millis: number }
  | { readonly _tag: "Blackhole" }

export const pass: Mode = { _tag: "Pass" }
export const delay = (millis: number): Mode => ({ _tag: "Delay", millis })
export const blackhole: Mode = { _tag: "Blackhole" }

export interface Proxy {
  readonly port: number
  /** Sets how bytes travel in one direction, or both, from now on (bytes already delayed keep their time). */
  readonly set: (mode: Mode, direction?: Direction | "both") => void
  /** Resets every open connection (each side sees an RST). */
  readonly reset: () => void
  /** Whether new connections are reset as soon as they are accepted. */
  readonly refuse: (refusing: boolean) => void
  /**
   * Runs `action` once, when bytes from the client containing `pattern` arrive (before they are
   * forwarded, so the action can decide the fate of that command's reply).
   */
  readonly when: (pattern: string, action: () => void) => void
  /**
   * Blackholes, in both directions and for good, every open connection whose client has sent bytes
   * containing `pattern` (e.g. `"subscribe"`: the pub/sub connections), leaving the others alone.
   */
  readonly blackholeWhere: (pattern: string) => void
  /** Bytes that went from the client to the server so far. */
  readonly bytesUp: () => number
  readonly close: () => Promise<void>
}

/** Starts a proxy on a free loopback port in front of `127.0.0.1:targetPort`. */
export const start = (targetPort: number): Promise<Proxy> => {
  const modes: Record<Direction, Mode> = { up: pass, down: pass }
  interface Pair {
    readonly client: Socket
    readonly server: Socket
    /** Everything the client sent (latin1), for `blackholeWhere`. */
    sent: string
    swallowed: boolean
  }
  const open = new Set<Pair>()
  let refusing = false
  let up = 0
  const triggers: Array<{ pattern: string; action: () => void }> = []

  const forward = (from: Socket, to: Socket, direction: Direction, pair: Pair) => {
    // Delayed chunks leave in the order they came, each no sooner than its own delay.
    let lastRelease = 0
    from.on("data", (chunk: Buffer) => {
      if (direction === "up") {
        const text = chunk.toString("latin1")
        if (pair.sent.length < 65_536) pair.sent += text
        for (const trigger of triggers.splice(0)) {
          if (text.includes(trigger.pattern)) trigger.action()
          else triggers.push(trigger)
        }
      }
      const mode = modes[direction]
      if (mode._tag === "Blackhole" || pair.swallowed) return
      if (direction === "up") up += chunk.length
      if (mode._tag === "Pass" && lastRelease <= Date.now()) {
        to.write(chunk)
        return
      }
      const millis = mode._tag === "Delay" ? mode.millis : 0
      const release = Math.max(Date.now() + millis, lastRelease)
      lastRelease = release
      setTimeout(() => {
        if (!to.destroyed) to.write(chunk)
      }, release - Date.now())
    })
  }

  const server: Server = createServer((client) => {
    if (refusing) {
      client.resetAndDestroy()
      return
    }
    const upstream = new Socket()
    const pair: Pair = { client, server: upstream, sent: "", swallowed: false }
    open.add(pair)
    const end = () => {
      open.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on("error", end)
    upstream.on("error", end)
    client.on("close", end)
    upstream.on("close", end)
    forward(client, upstream, "up", pair)
    forward(upstream, client, "down", pair)
    upstream.connect(targetPort, "127.0.0.1")
  })

  return new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      if (typeof address !== "object" || address === null) return reject(new Error("the proxy has no port"))
      resolve({
        port: address.port,
        set: (mode, direction = "both") => {
          if (direction !== "down") modes.up = mode
          if (direction !== "up") modes.down = mode
        },
        reset: () => {
          for (const pair of open) {
            open.delete(pair)
            pair.client.resetAndDestroy()
            pair.server.resetAndDestroy()
          }
        },
        refuse: (value) => {
          refusing = value
        },
        when: (pattern, action) => void triggers.push({ pattern, action }),
        blackholeWhere: (pattern) => {
          for (const pair of open) {
            if (pair.sent.includes(pattern)) pair.swallowed = true
          }
        },
        bytesUp: () => up,
        close: () =>
          new Promise<void>((done) => {
            for (const pair of open) {
              pair.client.destroy()
              pair.server.destroy()
            }
            open.clear()
            server.close(() => done())
          })
      })
    })
  })
}
