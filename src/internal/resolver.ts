/**
 * A keyspace's cache in front of a `RequestResolver`: each batch of requests that Effect hands the
 * wrapper goes through `getOrSetMany`, keyed by the requests' keys, whose producer runs the inner
 * resolver on the requests of the missing keys (through `Effect.request`, batched, so the inner
 * resolver sees them as one batch). What the inner resolver completes with a value is stored; a
 * request it fails is failed with its error and nothing is stored.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Request from "effect/Request"
import * as RequestResolver from "effect/RequestResolver"
import type { Definition, ResolverOptions } from "./model.js"
import { refusedBy } from "./getOrSetMany.js"
import { getOrSetManyAccessor } from "./operations.js"

/** Runs `inner` on `requests` as one batch, with Effect's request caching off (the outer requests are pending). */
const runInner = <Req extends Request.Request<any, any>, R>(
  inner: RequestResolver.RequestResolver<Req, R>,
  requests: ReadonlyArray<Req>
): Effect.Effect<Array<Exit.Exit<Request.Request.Success<Req>, Request.Request.Error<Req>>>, never, R> =>
  Effect.flatMap(RequestResolver.contextFromEffect(inner), (provided) =>
    Effect.forEach(requests, (request) => Effect.exit(Effect.request(request, provided)), { batching: true })).pipe(
      Effect.withRequestBatching(true),
      Effect.withRequestCaching(false)
    )

/** The wrapped resolver of a keyspace (`Keyspace.resolver`). */
export const resolver = <K, A, Id, X>(keyspace: Definition<K, A, Id, X>) =>
<Req extends Request.Request<A, any>, R>(
  inner: RequestResolver.RequestResolver<Req, R>,
  options: ResolverOptions<K, A, Req>
): RequestResolver.RequestResolver<Req, R | Id> => {
  const { key: keyOf, ...batchOptions } = options
  type Outcome = Exit.Exit<A, Request.Request.Error<Req>>
  const complete = (request: Req, exit: Outcome) => Request.complete(request, exit as Request.Request.Result<Req>)

  const resolveBlock = (entries: ReadonlyArray<Request.Entry<Req>>): Effect.Effect<void, never, R | Id> =>
    Effect.suspend(() => {
      const requests = entries.filter((entry) => !entry.state.completed).map((entry) => entry.request)
      if (requests.length === 0) return Effect.void
      let keys: Array<K>
      try {
        keys = requests.map(keyOf)
      } catch (defect) {
        return Effect.forEach(requests, (request) => complete(request, Exit.die(defect)), { discard: true })
      }
      // Requests of one key share it: the first is sent to the inner resolver, the others get its outcome.
      const identityOf = (key: K, i: number): string => {
        const segment = keyspace.encodeKey(key)
        return segment._tag === "Right" ? segment.right : `\u0000${i}`
      }
      const identities = keys.map(identityOf)
      const firstRequest = new Map<K, Req>()
      const identityOfKey = new Map<K, string>()
      keys.forEach((key, i) => {
        if (!identityOfKey.has(key)) {
          identityOfKey.set(key, identities[i]!)
          firstRequest.set(key, requests[i]!)
        }
      })
      // What the inner resolver answered, by key identity: failures are not cached, but they are the answer.
      const answered = new Map<string, Outcome>()
      const produce = (missing: ReadonlyArray<K>) =>
        Effect.map(runInner(inner, missing.map((key) => firstRequest.get(key)!)), (exits) => {
          const pairs: Array<readonly [K, A]> = []
          missing.forEach((key, i) => {
            const exit = exits[i]! as Outcome
            answered.set(identityOfKey.get(key)!, exit)
            if (Exit.isSuccess(exit)) pairs.push([key, exit.value])
          })
          return pairs
        })
      // A request the inner resolver failed during an eager refresh counts as a failed refresh of its key.
      const refused = (key: K): Cause.Cause<unknown> | undefined => {
        const exit = answered.get(identityOfKey.get(key)!)
        return exit !== undefined && Exit.isFailure(exit) ? exit.cause : undefined
      }
      const withRefusals = { ...batchOptions, [refusedBy]: refused }
      return Effect.matchCauseEffect(getOrSetManyAccessor(keyspace, keys, produce, withRefusals), {
        // The batch failed (a hard timeout, a key's cached failure, a run it joined that failed): every request with it.
        onFailure: (cause) => Effect.forEach(requests, (request) => complete(request, Exit.failCause(cause as Cause.Cause<any>)), { discard: true }),
        onSuccess: (found) => {
          const unanswered: Array<number> = []
          const completions: Array<Effect.Effect<void>> = []
          found.forEach((value, i) => {
            if (Option.isSome(value)) return completions.push(complete(requests[i]!, Exit.succeed(value.value)))
            const exit = answered.get(identities[i]!)
            if (exit !== undefined) return completions.push(complete(requests[i]!, exit))
            unanswered.push(i)
          })
          if (unanswered.length === 0) return Effect.all(completions, { discard: true })
          // Keys another run was asked for and did not produce: these requests go to the inner resolver, uncached.
          return Effect.zipRight(
            Effect.all(completions, { discard: true }),
            Effect.flatMap(runInner(inner, unanswered.map((i) => requests[i]!)), (exits) =>
              Effect.forEach(unanswered, (i, j) => complete(requests[i]!, exits[j]! as Outcome), { discard: true }))
          )
        }
      })
    })

  return RequestResolver.makeWithEntry((blocks: Array<Array<Request.Entry<Req>>>) =>
    Effect.forEach(blocks, resolveBlock, { discard: true })
  ).identified("effect-cachekit/Keyspace.resolver", keyspace.name, inner)
}
