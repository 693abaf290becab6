/**
 * @internal
 * Read coalescing for a store that talks to a server: every `get` issued while a batch is open joins
 * it, and the batch goes out as one multi-key read per group (one `MGET` per Cluster hash slot) when
 * the current burst of work is done (a microtask) or when it is full. A key asked twice in one batch
 * takes one place in it. Each caller hears of its own key only: its value, or its error; a caller that
 * stopped waiting hears nothing (a key whose every caller left before the batch went out is left out).
 *
 * Order: a batch goes out after the commands already sent on the connection, so a caller's own write
 * that completed before its read is seen by it.
 */
import * as Effect from "effect/Effect"

/** One caller waiting in a batch. */
interface Waiter<A, E> {
  readonly resume: (effect: Effect.Effect<A, E>) => void
  cancelled: boolean
}

export interface ReadBatch<A, E> {
  /** Reads one key as part of the open batch. */
  readonly get: (key: string) => Effect.Effect<A, E>
}

export const make = <A, E>(options: {
  /** Most keys in one batch; a full batch goes out at once. */
  readonly maxKeys: number
  /** The group a key is read with (its Cluster hash slot; one group on a single server). */
  readonly groupOf: (key: string) => number
  /**
   * Reads one group's keys with one command, answering each key (by position) with its own outcome;
   * a failure of the command fails every key of the group.
   */
  readonly read: (keys: ReadonlyArray<string>) => Promise<ReadonlyArray<Effect.Effect<A, E>>>
  /** The outcome every caller of a key gets when the group's read failed. */
  readonly failure: (key: string, cause: unknown) => Effect.Effect<A, E>
  /**
   * A bound on each caller's wait, in real time (a timer, not the Clock): past it the caller gets
   * `onTimeout(key)` and hears nothing more. Cheaper than racing each call against a timer fiber.
   */
  readonly timeout?: { readonly millis: number; readonly onTimeout: (key: string) => Effect.Effect<A, E> } | undefined
}): ReadBatch<A, E> => {
  const bound = options.timeout
  /** The open batch: key → its waiters, in the order the keys were first asked. */
  let open: Map<string, Array<Waiter<A, E>>> | undefined

  const answer = (waiters: ReadonlyArray<Waiter<A, E>>, outcome: Effect.Effect<A, E>) => {
    for (const waiter of waiters) if (!waiter.cancelled) waiter.resume(outcome)
  }

  const send = (batch: Map<string, Array<Waiter<A, E>>>) => {
    const groups = new Map<number, Array<string>>()
    for (const [key, waiters] of batch) {
      if (waiters.every((waiter) => waiter.cancelled)) continue
      const group = options.groupOf(key)
      const keys = groups.get(group)
      if (keys === undefined) groups.set(group, [key])
      else keys.push(key)
    }
    for (const keys of groups.values()) {
      let reading: Promise<ReadonlyArray<Effect.Effect<A, E>>>
      try {
        reading = options.read(keys)
      } catch (cause) {
        reading = Promise.reject(cause)
      }
      reading.then(
        (outcomes) => {
          for (let i = 0; i < keys.length; i++) answer(batch.get(keys[i]!)!, outcomes[i]!)
        },
        (cause: unknown) => {
          for (const key of keys) answer(batch.get(key)!, options.failure(key, cause))
        }
      )
    }
  }

  const flush = () => {
    const batch = open
    open = undefined
    if (batch !== undefined) send(batch)
  }

  const get = (key: string): Effect.Effect<A, E> =>
    Effect.async<A, E>((resume) => {
      let timer: ReturnType<typeof setTimeout> | undefined
      const waiter: Waiter<A, E> = {
        resume: bound === undefined ? resume : (outcome) => {
          clearTimeout(timer)
          resume(outcome)
        },
        cancelled: false
      }
      if (bound !== undefined) {
        timer = setTimeout(() => {
          if (waiter.cancelled) return
          waiter.cancelled = true
          resume(bound.onTimeout(key))
        }, bound.millis)
      }
      if (open === undefined) {
        open = new Map()
        queueMicrotask(flush)
      }
      const waiters = open.get(key)
      if (waiters === undefined) open.set(key, [waiter])
      else waiters.push(waiter)
      if (open.size >= options.maxKeys) flush()
      return Effect.sync(() => {
        waiter.cancelled = true
        clearTimeout(timer)
      })
    })

  return { get }
}
