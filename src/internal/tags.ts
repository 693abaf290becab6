/**
 * Tags: invalidating every entry that carries a tag in O(1) round trips, and checking an entry's tags
 * on read.
 *
 * `invalidateTags` writes one marker per tag under an internal key (`<namespace>::tag:<tag>`; a tag
 * derived from key fields, `<namespace>::where:<keyspace>:<fields>`). The store assigns the marker a
 * version, as it does every write (a store that does not gets the cache's version, as its entries do),
 * so the tag's version is on the same scale as the versions of the entries: an entry carrying the tag
 * is valid only if it was written after the tag's last invalidation (its version is above the
 * marker's). Nothing scans or touches the entries themselves.
 *
 * A store in the process (memory) keeps no markers: the versions live in a table beside it (bounded:
 * past 100,000 tags the oldest fold into a floor that invalidates more than needed, never less), read
 * on every check, exact, no window. Any other store's markers are read with one batch read (one `MGET` per hash slot on Redis: each tag's key has a
 * slot of its own, and no command crosses slots), and the versions read are trusted for `window` (on
 * the Clock); an invalidation made by this process is seen by it at once. On a two-layer store the bus
 * shortens the window: a marker written elsewhere is heard at once, and a gap in the bus ends every
 * trusted version.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as CacheEntry from "../CacheEntry.js"
import { InvalidKeyError, type StoreError } from "../CacheError.js"
import * as CacheStore from "../CacheStore.js"

/** What a read asks of an entry's tags: valid, invalidated, or not known yet (the versions must be read). */
export type Verdict = boolean | undefined

export interface Tags {
  /** Whether an entry of `version` carrying `tags` is still valid at `now`, if known without I/O. */
  readonly check: (tags: ReadonlyArray<string>, version: number, now: number) => Verdict
  /** Reads the versions of `tags` from the store; then `check` knows them (the returned checker too). */
  readonly load: (tags: ReadonlyArray<string>) => Effect.Effect<(version: number) => boolean, StoreError>
  /**
   * Whether one of `tags` was invalidated after version `since` (read from the store, not trusted):
   * `getOrSet` asks after storing a value whose producer started at `since`, and drops the value if so.
   */
  readonly changedSince: (tags: ReadonlyArray<string>, since: number) => Effect.Effect<boolean, StoreError>
  /** Writes a new version for each tag: every entry carrying one of them, written before, is invalid. */
  readonly invalidate: (tags: ReadonlyArray<string>, wait: Duration.Duration) => Effect.Effect<void, StoreError>
}

/** The prefix of a tag derived from key fields (`Keyspace.invalidateWhere`): no user tag can start with it. */
export const wherePrefix = "\u0000"

/** C0 and C1 control characters and DEL: never in a user's tag (nor in a log line that shows it). */
const controlCharacter = /[\u0000-\u001f\u007f-\u009f]/

/** The longest tag accepted, in characters. */
const maxTagLength = 1024

/** Checks a user's tags: non-empty strings, at most 1,024 characters, no control characters. */
export const validate = (operation: InvalidKeyError["operation"], tags: Iterable<string>): Array<string> | InvalidKeyError => {
  const out: Array<string> = []
  const seen = new Set<string>()
  for (const tag of tags) {
    if (typeof tag !== "string" || tag.length === 0) {
      return new InvalidKeyError({ reason: "Encode", operation, cause: `a tag is a non-empty string, got ${JSON.stringify(tag)}` })
    }
    if (tag.length > maxTagLength) {
      return new InvalidKeyError({ reason: "TooLong", operation, key: tag.slice(0, 64), cause: `a tag is at most ${maxTagLength} characters` })
    }
    if (controlCharacter.test(tag)) return new InvalidKeyError({ reason: "ControlCharacter", operation, key: tag })
    if (!seen.has(tag)) {
      seen.add(tag)
      out.push(tag)
    }
  }
  return out
}

/** The internal key of a tag's marker. */
const keyOf = (namespace: string, tag: string): string =>
  tag.startsWith(wherePrefix)
    ? CacheStore.internalKey(namespace, "where", tag.slice(wherePrefix.length))
    : CacheStore.internalKey(namespace, "tag", tag)

/**
 * A marker's bytes: an empty envelope whose version the store assigns, or, for a store that does not
 * (memcached), the version the cache gives its writes (as it gives the entries': the same scale).
 */
const marker = (version: number): Uint8Array =>
  CacheEntry.encode({ fingerprint: "tag000000000", version, freshUntil: Infinity, staleUntil: Infinity, tags: [], isFailure: false }, "")

const versionOfStored = (stored: CacheEntry.Stored): number =>
  CacheStore.isLive(stored) ? stored.version : CacheEntry.versionOf(stored)


/** Whether one of the tags' versions is above `since` (an invalidation after it). */
const movedSince = (versions: ReadonlyArray<number>, since: number): boolean => versions.some((version) => version > since)

/** Whether an entry of `version` was written after every one of `tags`' versions. */
const after = (versions: ReadonlyArray<number>, version: number): boolean => {
  for (const tagVersion of versions) if (version <= tagVersion) return false
  return true
}

/** The tag versions of stores in the process, by store. */
const inProcess = new WeakMap<CacheStore.CacheStore, { readonly versions: Map<string, number>; floor: number }>()
const maxInProcess = 100_000

interface Trusted {
  readonly version: number
  readonly until: number
  readonly mark: number
}

export const make = (options: {
  readonly namespace: string
  readonly store: CacheStore.CacheStore
  /** How long versions read from a store outside the process are trusted (on the Clock). */
  readonly window: Duration.Duration
  /** Bounds a store call (the engine's `bound`). */
  readonly bound: <A>(key: string | undefined, effect: Effect.Effect<A, StoreError>) => Effect.Effect<A, StoreError>
  readonly boundWrite: <A>(key: string | undefined, effect: Effect.Effect<A, StoreError>) => Effect.Effect<A, StoreError>
  /** The version the cache gives a write at `now` (for a store in the process that cannot say its own). */
  readonly nextVersion: (now: number) => number
}): Tags => {
  const { namespace, store } = options
  const local = store.local
  /** Tag versions read from a store outside the process, trusted for a while (bounded). */
  const trusted = new Map<string, Trusted>()
  const maxTrusted = 100_000
  /** Bumped by each invalidation of this instance: a read of markers under way across one trusts nothing. */
  let generation = 0
  const keys = new Map<string, string>()
  const keyFor = (tag: string): string => {
    let key = keys.get(tag)
    if (key === undefined) {
      if (keys.size >= 10_000) keys.clear()
      keys.set(tag, key = keyOf(namespace, tag))
    }
    return key
  }

  // A store in the process keeps no markers (its LRU could evict one, and bring its entries back): the
  // tags' versions live beside it, one table per store (by marker key, so namespaces stay apart),
  // shared by every cache over it.
  if (store.capabilities.inProcess && local === undefined) {
    let table = inProcess.get(store)
    if (table === undefined) inProcess.set(store, table = { versions: new Map(), floor: 0 })
    const { versions } = table
    const versionNow = (tag: string) => versions.get(keyFor(tag)) ?? table.floor
    const versionsNow = (tags: ReadonlyArray<string>) => tags.map(versionNow)
    return {
      check: (tags, version) => {
        for (const tag of tags) if (version <= versionNow(tag)) return false
        return true
      },
      load: (tags) => Effect.sync(() => {
        const known = versionsNow(tags)
        return (version: number) => after(known, version)
      }),
      changedSince: (tags, since) => Effect.sync(() => movedSince(versionsNow(tags), since)),
      // The store's version now: every entry written before has one at most equal to it, every later
      // write one above it.
      invalidate: (tags) =>
        Effect.flatMap(store.currentVersion ?? Effect.succeed(undefined), (current) =>
          Effect.clockWith((clock) => {
            const version = current ?? options.nextVersion(clock.unsafeCurrentTimeMillis())
            for (const tag of tags) {
              const key = keyFor(tag)
              versions.delete(key)
              versions.set(key, version)
            }
            // Past the bound the oldest invalidations are folded into a floor: an entry with a tag written
            // before it counts as invalidated (more than needed, never less).
            while (versions.size > maxInProcess) {
              const [oldest, oldestVersion] = versions.entries().next().value!
              versions.delete(oldest)
              table.floor = Math.max(table.floor, oldestVersion)
            }
            return Effect.void
          }))
    }
  }

  // Any other store: versions read are trusted for the window, and on a two-layer store only while
  // the bus has neither moved the epoch nor brought a newer marker.
  const windowMillis = Duration.toMillis(options.window)
  const versionOf = (tag: string, now: number): number | undefined => {
    const known = trusted.get(tag)
    if (known === undefined) return undefined
    if (known.until <= now || (local !== undefined && (local.mark() !== known.mark || (local.heard?.(keyFor(tag)) ?? 0) > known.version))) {
      trusted.delete(tag)
      return undefined
    }
    return known.version
  }

  /** Reads the markers of `tags` from the store, and trusts what it read unless this instance invalidated meanwhile. */
  const read = (tags: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<number>, StoreError> =>
    Effect.suspend(() => {
      const mark = local?.mark() ?? 0
      const since = generation
      const tagKeys = tags.map(keyFor)
      return Effect.flatMap(options.bound(tagKeys[0], store.getMany(tagKeys)), (found) =>
        Effect.clockWith((clock) => {
          const versions = found.map((stored) => Option.isNone(stored) ? 0 : versionOfStored(stored.value))
          if (since === generation) {
            const until = clock.unsafeCurrentTimeMillis() + windowMillis
            if (trusted.size + tags.length > maxTrusted) trusted.clear()
            for (let i = 0; i < tags.length; i++) trusted.set(tags[i]!, { version: versions[i]!, until, mark })
          }
          return Effect.succeed(versions)
        }))
    })

  return {
    check: (tags, version, now) => {
      let verdict: Verdict = true
      for (const tag of tags) {
        const tagVersion = versionOf(tag, now)
        if (tagVersion === undefined) verdict = undefined
        else if (version <= tagVersion) return false
      }
      return verdict
    },
    load: (tags) =>
      Effect.clockWith((clock) => {
        // Another read may have just loaded them.
        const now = clock.unsafeCurrentTimeMillis()
        const known = tags.map((tag) => versionOf(tag, now))
        if (known.every((version) => version !== undefined)) {
          return Effect.succeed((version: number) => after(known as ReadonlyArray<number>, version))
        }
        return Effect.map(read(tags), (versions) => (version: number) => after(versions, version))
      }),
    // Always from the store: a write checks the markers that may have moved while its producer ran.
    changedSince: (tags, since) => Effect.map(read(tags), (versions) => movedSince(versions, since)),
    invalidate: (tags, wait) =>
      Effect.clockWith((clock) => {
        generation++
        const version = store.capabilities.assignsVersions ? 0 : options.nextVersion(clock.unsafeCurrentTimeMillis())
        const entries = tags.map((tag): CacheStore.Entry => ({ key: keyFor(tag), value: marker(version), ttl: undefined }))
        return Effect.ensuring(
          options.boundWrite(undefined, store.setMany(entries, wait)),
          Effect.sync(() => {
            generation++
            for (const tag of tags) trusted.delete(tag)
          })
        )
      })
  }
}
