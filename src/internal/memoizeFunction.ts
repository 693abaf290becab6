/**
 * Memoized functions of several arguments and memoized methods: `getOrSet` keyed by what `key` makes of
 * the arguments (the receiver first, for a method), each entry tagged with the function's name so that
 * `invalidateAll` drops what it wrote, and nothing else, in one tag invalidation.
 */
import * as Effect from "effect/Effect"
import { isInvalidKeyError, type InvalidKeyError, type StoreError } from "../CacheError.js"
import { validateName } from "./keyspace.js"
import type { CallOptions, Definition, MemoizeFunction, MemoizeMethod } from "./model.js"
import { accessors, getOrSetAccessor } from "./operations.js"
import * as Tags from "./tags.js"

/** The tag of the entries a memoized function named `name` writes in `keyspace`. */
const functionTag = (keyspace: string, name: string): string => `memoize:${keyspace}:${validateName("memoized function name", name)}`

/** What a memoized function or method shares: its tag, its call options and its invalidations. */
const controlsOf = <K, A, Id>(
  keyspace: Definition<K, A, Id, unknown>,
  options: CallOptions<A> & { readonly name: string; readonly key: unknown }
) => {
  const tag = functionTag(keyspace.name, options.name)
  const checked = Tags.validate("set", [tag])
  if (isInvalidKeyError(checked)) throw new TypeError(`effect-cachekit: the memoized function name ${JSON.stringify(options.name)} makes no valid tag`)
  // The call's own tags, read once (an iterator is not read twice), then the function's.
  const { key: _key, name: _name, ...rest } = options
  const callOptions: CallOptions<A> = { ...rest, tags: options.tags === undefined ? [tag] : [...Array.from(options.tags), tag] }
  const invalidateKey = (key: K): Effect.Effect<void, InvalidKeyError | StoreError, Id> => accessors.invalidate(keyspace, key)
  // The tag is valid by construction: `invalidateTags` cannot refuse it.
  const invalidateAll: Effect.Effect<void, StoreError, Id> = Effect.catchIf(
    Effect.flatMap(keyspace.cache, (cache) => cache.invalidateTags([tag])),
    isInvalidKeyError,
    Effect.die
  )
  const invalidateWhere = (where: Partial<K>): Effect.Effect<void, InvalidKeyError | StoreError, Id> => accessors.invalidateWhere(keyspace, where)
  return { tag, callOptions, invalidateKey, invalidateAll, invalidateWhere }
}

/** `memoizeFunction` on a keyspace: each call is `getOrSet(key(...args), f(...args))`. */
export const memoizeFunction = <K, A, Id, X>(keyspace: Definition<K, A, Id, X>): MemoizeFunction<K, A, Id, X> =>
  (<Args extends ReadonlyArray<unknown>, E, R>(
    f: (...args: Args) => Effect.Effect<A, E, R>,
    options: CallOptions<A> & { readonly name: string; readonly key: (...args: Args) => K }
  ) => {
    const controls = controlsOf(keyspace, options)
    const key = options.key
    const memoized = (...args: Args) => Effect.suspend(() => getOrSetAccessor(keyspace, key(...args), f(...args), controls.callOptions))
    return Object.assign(memoized, {
      tag: controls.tag,
      invalidate: (...args: Args) => Effect.suspend(() => controls.invalidateKey(key(...args))),
      invalidateAll: controls.invalidateAll,
      invalidateWhere: controls.invalidateWhere
    })
  }) as MemoizeFunction<K, A, Id, X>

/** `memoizeMethod` on a keyspace: each call is `getOrSet(key(this, ...args), method.call(this, ...args))`. */
export const memoizeMethod = <K, A, Id, X>(keyspace: Definition<K, A, Id, X>): MemoizeMethod<K, A, Id, X> =>
  (<Self, Args extends ReadonlyArray<unknown>, E, R>(
    method: (this: Self, ...args: Args) => Effect.Effect<A, E, R>,
    options: CallOptions<A> & { readonly name: string; readonly key: (self: Self, ...args: Args) => K }
  ) => {
    const controls = controlsOf(keyspace, options)
    const key = options.key
    const memoized = function(this: Self, ...args: Args) {
      const self = this
      return Effect.suspend(() => getOrSetAccessor(keyspace, key(self, ...args), method.call(self, ...args), controls.callOptions))
    }
    return Object.assign(memoized, {
      tag: controls.tag,
      invalidate: (self: Self, ...args: Args) => Effect.suspend(() => controls.invalidateKey(key(self, ...args))),
      invalidateAll: controls.invalidateAll,
      invalidateWhere: controls.invalidateWhere
    })
  }) as MemoizeMethod<K, A, Id, X>
