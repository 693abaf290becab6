/**
 * One run at a time per key: the first caller of a key starts the work in a fiber of its own, every
 * caller of that key meanwhile awaits the same outcome. Callers get the outcome as soon as the work
 * has it; the key stays in flight while `after` (e.g. the cache write) finishes, so a caller arriving
 * then shares the outcome instead of starting the work again. The work survives the interruption of any
 * caller as long as one caller still waits; when the last one leaves, the work is interrupted. A key
 * leaves the map as soon as its work ends, so idle keys cost nothing.
 *
 * A batch (`runMany`) is one run that owns several keys: each of its keys is in flight as a key of its
 * own (a caller of one of them joins it), the keys already in flight are joined instead of run again,
 * and its work lives while anyone waits for any of its keys.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import type * as Scope from "effect/Scope"

/** A run: the fiber doing the work, and how many callers wait for one of its keys. */
interface Owner {
  waiters: number
  /** Its callers have their answers: from then on it only finishes its `then` (writes, releases). */
  answered: boolean
  fiber: Fiber.RuntimeFiber<void> | undefined
  /** The keys it holds in the map, with their flights. */
  readonly keys: Map<string, Flight>
}

interface Flight {
  readonly deferred: Deferred.Deferred<unknown, unknown>
  readonly owner: Owner
}

/** What a batch's work answers for each key it owns: the outcome, and whether the key stays in flight until `then` is done. */
export interface Outcome<A, E> {
  readonly exit: Exit.Exit<A, E>
  /** `false`: nothing is left to do for the key (nothing to write), so it leaves the map with the answer. */
  readonly stays: boolean
}

/** What a batch's work gives: one outcome per owned key (in the order given), and what to do once they are answered. */
export interface Batch<A, E> {
  readonly outcomes: ReadonlyArray<Outcome<A, E>>
  readonly then: Effect.Effect<void>
}

export interface SingleFlight {
  /** Runs `work` for `key` unless a run is under way, in which case its outcome is shared. */
  readonly run: <A, E, R, R2 = never>(
    key: string,
    work: Effect.Effect<A, E, R>,
    after?: (value: A) => Effect.Effect<void, never, R2>
  ) => Effect.Effect<A, E, R | R2>
  /**
   * Runs `work` once for the keys (distinct) that no run has under way, and joins the runs of the
   * others; `wait` is handed one deferred outcome per key, in the order of `keys`, and waits for them
   * as it likes (all of them, or up to a timeout). A failure of `work` is every owned key's outcome.
   * `work` is not run when every key is joined.
   */
  readonly runMany: <A, E, R, B, E2, R2>(
    keys: ReadonlyArray<string>,
    work: (owned: ReadonlyArray<string>) => Effect.Effect<Batch<A, E>, E, R>,
    wait: (outcomes: ReadonlyArray<Deferred.Deferred<A, E>>) => Effect.Effect<B, E2, R2>
  ) => Effect.Effect<B, E2, R | R2>
  /**
   * Starts `work` in a fiber of the runs' scope for the keys (distinct) that no run has under way and
   * `skip` does not refuse, checked and registered in one step (so two callers never both start a run
   * of a key, and a key is never joined: it is left out), and returns the keys it owns (none: nothing
   * runs). Nobody waits for it: it lives until it ends or the scope closes. `done` gets its exit once
   * its keys are answered, before its `then`.
   */
  readonly startMany: <A, E, R>(
    keys: ReadonlyArray<string>,
    skip: (key: string) => boolean,
    work: (owned: ReadonlyArray<string>) => Effect.Effect<Batch<A, E>, E, R>,
    done: (owned: ReadonlyArray<string>, exit: Exit.Exit<Batch<A, E>, E>) => Effect.Effect<void>
  ) => Effect.Effect<ReadonlyArray<string>, never, R>
  /** Whether a run for `key` is under way. */
  readonly has: (key: string) => boolean
  /** Keys with a run under way. */
  readonly size: () => number
  /**
   * Waits until no run is under way, or `millis` of real time: before the scope closes, so writes and
   * lock releases in flight land instead of being interrupted, without waiting on a dead server.
   */
  readonly settle: (millis: number) => Effect.Effect<void>
  /**
   * Runs `effect` in a fiber of the runs' scope (interruptible): background work that outlives its
   * caller (an eager refresh, a run finishing after a soft timeout) and stops when the cache closes.
   */
  readonly background: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<Fiber.RuntimeFiber<A, E>, never, R>
}

export const make = (scope: Scope.Scope): SingleFlight => {
  const flights = new Map<string, Flight>()
  const onIdle = new Set<() => void>()

  const remove = (key: string, flight: Flight) => {
    flight.owner.keys.delete(key)
    if (flights.get(key) !== flight) return
    flights.delete(key)
    if (flights.size === 0) for (const notify of onIdle) notify()
  }

  /**
   * A batch's answer to every key it owned, in one step: each key's outcome (a batch that gave none
   * for a key answers it with a defect; a failed batch, with its failure); keys with nothing left to
   * do leave the map with their answer.
   */
  const answerAll = <A, E>(owner: Owner, owned: ReadonlyArray<string>, ownedFlights: ReadonlyArray<Flight>) => (exit: Exit.Exit<Batch<A, E>, E>) =>
    Effect.sync(() => {
      owner.answered = true
      ownedFlights.forEach((flight, i) => {
        const outcome = Exit.isSuccess(exit) ? exit.value.outcomes[i] : undefined
        Deferred.unsafeDone(
          flight.deferred,
          outcome === undefined ? (Exit.isSuccess(exit) ? Exit.die(new Error("a batch gave no outcome for a key")) : exit as Exit.Exit<never, E>) : outcome.exit
        )
        if (outcome !== undefined && !outcome.stays) remove(owned[i]!, flight)
      })
    })

  const leaveAll = (owner: Owner) =>
    Effect.sync(() => {
      for (const [key, flight] of Array.from(owner.keys)) remove(key, flight)
    })

  const settle = (millis: number): Effect.Effect<void> =>
    Effect.async<void>((resume) => {
      if (flights.size === 0) return resume(Effect.void)
      const done = () => {
        clearTimeout(timer)
        onIdle.delete(done)
        resume(Effect.void)
      }
      const timer = setTimeout(done, millis)
      onIdle.add(done)
      return Effect.sync(() => {
        clearTimeout(timer)
        onIdle.delete(done)
      })
    })

  /**
   * Waits (`waiting`, made interruptible by `restore`) as a waiter of each of `owners`: when the last
   * waiter of a run leaves before the run answered (interrupted, or a batch caller that stopped waiting
   * at its hard timeout), nobody waits for it any more: it is stopped, and its keys leave the map so
   * the next caller starts afresh. A run that has answered is never stopped: its `then` goes on.
   */
  const waitFor = <X, Y, Z>(
    owners: ReadonlyArray<Owner>,
    restore: <X1, Y1, Z1>(self: Effect.Effect<X1, Y1, Z1>) => Effect.Effect<X1, Y1, Z1>,
    waiting: Effect.Effect<X, Y, Z>
  ): Effect.Effect<X, Y, Z> => {
    for (const owner of owners) owner.waiters++
    return restore(waiting).pipe(
      Effect.ensuring(
        Effect.suspend(() => {
          const stop: Array<Effect.Effect<void>> = []
          for (const owner of owners) {
            owner.waiters--
            if (owner.waiters > 0 || owner.answered || owner.fiber === undefined) continue
            for (const [key, flight] of Array.from(owner.keys)) remove(key, flight)
            stop.push(Fiber.interruptFork(owner.fiber))
          }
          return stop.length === 0 ? Effect.void : Effect.all(stop, { discard: true })
        })
      )
    )
  }

  const newOwner = (): Owner => ({ waiters: 0, answered: false, fiber: undefined, keys: new Map() })

  const register = (owner: Owner, key: string): Flight => {
    const flight: Flight = { deferred: Deferred.unsafeMake(FiberId.none), owner }
    flights.set(key, flight)
    owner.keys.set(key, flight)
    return flight
  }

  const run = <A, E, R, R2 = never>(
    key: string,
    work: Effect.Effect<A, E, R>,
    after?: (value: A) => Effect.Effect<void, never, R2>
  ): Effect.Effect<A, E, R | R2> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        const existing = flights.get(key)
        if (existing !== undefined) {
          return waitFor([existing.owner], restore, Deferred.await(existing.deferred) as Effect.Effect<A, E>)
        }
        const owner = newOwner()
        const flight = register(owner, key)
        // Waiters are answered by a finalizer, so they hear even of an interruption; `after` runs
        // interruptibly, so that closing the scope (after `settle`) never waits on it.
        return Effect.interruptible(work).pipe(
          Effect.onExit((exit) =>
            Effect.suspend(() => {
              owner.answered = true
              return Deferred.done(flight.deferred, exit)
            })
          ),
          Effect.flatMap((value) => after === undefined ? Effect.void : Effect.interruptible(after(value))),
          Effect.ensuring(leaveAll(owner)),
          Effect.exit,
          Effect.forkIn(scope),
          Effect.flatMap((fiber) => {
            owner.fiber = fiber as Fiber.RuntimeFiber<void>
            return waitFor([owner], restore, Deferred.await(flight.deferred) as Effect.Effect<A, E>)
          })
        )
      })
    )

  const runMany = <A, E, R, B, E2, R2>(
    keys: ReadonlyArray<string>,
    work: (owned: ReadonlyArray<string>) => Effect.Effect<Batch<A, E>, E, R>,
    wait: (outcomes: ReadonlyArray<Deferred.Deferred<A, E>>) => Effect.Effect<B, E2, R2>
  ): Effect.Effect<B, E2, R | R2> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        const owners = new Set<Owner>()
        const deferreds: Array<Deferred.Deferred<A, E>> = []
        const owned: Array<string> = []
        const ownedFlights: Array<Flight> = []
        let owner: Owner | undefined
        for (const key of keys) {
          const existing = flights.get(key)
          if (existing !== undefined) {
            owners.add(existing.owner)
            deferreds.push(existing.deferred as Deferred.Deferred<A, E>)
            continue
          }
          if (owner === undefined) owners.add(owner = newOwner())
          const flight = register(owner, key)
          owned.push(key)
          ownedFlights.push(flight)
          deferreds.push(flight.deferred as Deferred.Deferred<A, E>)
        }
        const waiting = () => waitFor(Array.from(owners), restore, wait(deferreds))
        if (owner === undefined) return waiting()
        const batchOwner = owner
        // Every owned key is answered in one step, by a finalizer (so they hear even of an
        // interruption).
        return Effect.interruptible(work(owned)).pipe(
          Effect.onExit(answerAll(batchOwner, owned, ownedFlights)),
          Effect.flatMap((batch) => Effect.interruptible(batch.then)),
          Effect.ensuring(leaveAll(batchOwner)),
          Effect.exit,
          Effect.forkIn(scope),
          Effect.flatMap((fiber) => {
            batchOwner.fiber = fiber as Fiber.RuntimeFiber<void>
            return waiting()
          })
        )
      })
    )

  const startMany = <A, E, R>(
    keys: ReadonlyArray<string>,
    skip: (key: string) => boolean,
    work: (owned: ReadonlyArray<string>) => Effect.Effect<Batch<A, E>, E, R>,
    done: (owned: ReadonlyArray<string>, exit: Exit.Exit<Batch<A, E>, E>) => Effect.Effect<void>
  ): Effect.Effect<ReadonlyArray<string>, never, R> =>
    Effect.uninterruptible(Effect.suspend(() => {
      const owned = Array.from(new Set(keys)).filter((key) => !flights.has(key) && !skip(key))
      if (owned.length === 0) return Effect.succeed(owned)
      // Its own waiter: never stopped for want of one.
      const owner = newOwner()
      owner.waiters = 1
      const ownedFlights = owned.map((key) => register(owner, key))
      return Effect.interruptible(work(owned)).pipe(
        Effect.onExit(answerAll(owner, owned, ownedFlights)),
        Effect.exit,
        Effect.flatMap((exit) =>
          Effect.zipRight(done(owned, exit), Exit.isSuccess(exit) ? Effect.interruptible(exit.value.then) : Effect.void)
        ),
        Effect.ensuring(leaveAll(owner)),
        Effect.forkIn(scope),
        Effect.map((fiber) => {
          owner.fiber = fiber as Fiber.RuntimeFiber<void>
          return owned
        })
      )
    }))

  const background = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<Fiber.RuntimeFiber<A, E>, never, R> =>
    Effect.forkIn(Effect.interruptible(effect), scope)

  return { run, runMany, startMany, has: (key) => flights.has(key), size: () => flights.size, settle, background }
}
