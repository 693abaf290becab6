/**
 * The subscribers of one cache's events (`Cache.events`): a bounded queue each. Telling an event is a
 * field check while nobody listens; a subscriber whose queue is full loses the event (counted), so a
 * slow listener never holds the cache up.
 */
import * as Effect from "effect/Effect"
import * as MetricLabel from "effect/MetricLabel"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type { CacheEvent } from "../CacheEvent.js"
import * as Metrics from "./metrics.js"

/** Events a subscriber's queue holds, unless it asks for another size. */
export const defaultBufferSize = 4_096

export interface Hub {
  /** Whether anybody listens: the callers check it before they build an event. */
  listening: boolean
  /** Offers `event` to every subscriber. */
  readonly tell: (event: CacheEvent) => void
  /** A subscriber's queue, registered now, unregistered and shut down with the scope. */
  readonly subscribe: (bufferSize: number) => Effect.Effect<Queue.Dequeue<CacheEvent>, never, Scope.Scope>
}

export const make = (cache: string): Hub => {
  let queues: ReadonlyArray<Queue.Queue<CacheEvent>> = []
  const droppedLabels = [MetricLabel.make("cache", cache)]
  const hub: Hub = {
    listening: false,
    tell: (event) => {
      for (const queue of queues) {
        if (!queue.unsafeOffer(event)) Metrics.eventsDropped.unsafeUpdate(1, droppedLabels)
      }
    },
    subscribe: (bufferSize) =>
      Effect.acquireRelease(
        Effect.map(Queue.dropping<CacheEvent>(Number.isFinite(bufferSize) ? Math.max(1, Math.floor(bufferSize)) : defaultBufferSize), (queue) => {
          queues = [...queues, queue]
          hub.listening = true
          return queue
        }),
        (queue) =>
          Effect.suspend(() => {
            queues = queues.filter((other) => other !== queue)
            hub.listening = queues.length > 0
            return Queue.shutdown(queue)
          })
      )
  }
  return hub
}
