import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { createHash } from "node:crypto"
import { Config, ConfigProvider, Duration, Effect, Layer, Option, Ref, Schedule, Schema, type Scope } from "effect"
import type { ConfigError } from "effect/ConfigError"
import { inject } from "vitest"
import * as MemcachedStore from "../src/CacheStore/Memcached.js"
import { Cache, CacheEntry, CacheError, CacheKey, CacheSerializer, CacheStore, Keyspace } from "../src/index.js"
import { storeSuite } from "../src/testing.js"
import { memcachedCommand, memcachedRemaining, memcachedStat, startMemcached, stopMemcached } from "./setup/memcached.js"

const server = inject("memcachedServer")
const port = Number(server.split(":")[1])

const sleep = (duration: Duration.Duration) =>
  Effect.promise(() => new Promise((resolve) => setTimeout(resolve, Duration.toMillis(duration))))

// memcached expires entries on its own clock, in whole seconds: the suite waits for real, in seconds.
storeSuite("MemcachedStore", MemcachedStore.layer({ server }), {
  unit: "1 second",
  advance: sleep,
  live: true,
  clearCounts: false,
  capabilities: { assignsVersions: true, conditionalWrites: true, expire: true, increment: true, raw: "memcached" }
})

const bytes = (text: string) => new TextEncoder().encode(text)
const text = (found: Option.Option<CacheEntry.Stored>) =>
  Option.isNone(found) ? undefined : new TextDecoder().decode(found.value as Uint8Array)

/** An envelope of `text` with version 0: the store stamps its own. */
const envelope = (text: string) =>
  CacheEntry.encode({ fingerprint: "mc0000000000", version: 0, freshUntil: Infinity, staleUntil: Infinity, tags: [], isFailure: false }, text)
/** The body of the envelope read back, if any. */
const body = (found: Option.Option<CacheEntry.Stored>) =>
  Option.isNone(found) ? undefined : new TextDecoder().decode(CacheEntry.decode(found.value as Uint8Array)!.body)

/** A store of its own over the run's memcached (another process, as far as memcached can tell). */
const storeWith = (options: MemcachedStore.Options = {}): Effect.Effect<CacheStore.CacheStore, never, Scope.Scope> =>
  MemcachedStore.make({ server, ...options })

/** A raw command to the run's memcached, around the store. */
const raw = (command: string) => Effect.promise(() => memcachedCommand(port, command))
/** Whether memcached holds `physical` (whatever the store would make of it). */
const held = (physical: string) => Effect.map(raw(`get ${physical}\r\n`), (lines) => lines[0]!.startsWith(`VALUE ${physical} `))
/** The seconds the run's memcached will keep `physical` for, or `undefined` when it holds nothing. */
const remaining = (physical: string) => Effect.promise(() => memcachedRemaining(port, physical))

const sha = (key: string) => "#" + createHash("sha256").update(key, "utf8").digest("base64url")

describe("MemcachedStore", () => {
  it("its constructors say what they need and how they fail", () => {
    expectTypeOf(MemcachedStore.layer({ server })).toEqualTypeOf<Layer.Layer<CacheStore.CacheStore>>()
    expectTypeOf(MemcachedStore.make()).toEqualTypeOf<Effect.Effect<CacheStore.CacheStore, never, Scope.Scope>>()
    expectTypeOf(MemcachedStore.layerConfig({ server: Config.string("S") })).toEqualTypeOf<Layer.Layer<CacheStore.CacheStore, ConfigError>>()
    expectTypeOf<CacheStore.CacheStore["get"]>().returns.toEqualTypeOf<
      Effect.Effect<Option.Option<CacheEntry.Stored>, CacheError.StoreError>
    >()
  })

  it.live("keys memcached takes go as they are; longer ones, spaces, non-ASCII, controls and a leading # are hashed, and never meet", () =>
    Effect.gen(function*() {
      const store = yield* storeWith()
      const long = `mk:long:${"x".repeat(300)}`
      const edge = `mk:e:${"y".repeat(245)}` // 250 characters: the longest key sent as it is
      const over = `${edge}z`
      const hostile = ["mk:s:a b", "mk:u:é😀", "mk:c:a\tb", long, over]
      const plain = ["mk:plain:1", edge, "mk:glob:*?[]"]
      for (const [i, key] of [...hostile, ...plain].entries()) yield* store.set(key, bytes(`v${i}`), undefined)
      for (const [i, key] of [...hostile, ...plain].entries()) assert.strictEqual(text(yield* store.get(key)), `v${i}`, key)
      for (const key of plain) assert.isTrue(yield* held(key), `${key} is stored under its own name`)
      for (const key of hostile) {
        assert.isTrue(yield* held(sha(key)), `${key} is stored under its hash`)
        assert.strictEqual(MemcachedStore.physicalKey(key), sha(key))
      }
      // A key that looks like a hashed one is hashed too: it cannot take the long key's place.
      const imposter = sha(long)
      yield* store.set(imposter, bytes("imposter"), undefined)
      assert.strictEqual(text(yield* store.get(long)), "v3")
      assert.strictEqual(text(yield* store.get(imposter)), "imposter")
      assert.notStrictEqual(MemcachedStore.physicalKey(imposter), imposter)
    }).pipe(Effect.scoped))

  it.live("a ttl goes in whole seconds, never as 'no expiry'; over 30 days as an absolute time; past 2038 capped", () =>
    Effect.gen(function*() {
      const store = yield* storeWith()
      yield* store.set("tt:a:sub", bytes("v"), Duration.millis(300))
      yield* store.set("tt:a:day", bytes("v"), Duration.days(1))
      yield* store.set("tt:a:month", bytes("v"), Duration.days(31))
      yield* store.set("tt:a:ages", bytes("v"), Duration.days(365 * 200))
      yield* store.set("tt:a:none", bytes("v"), undefined)
      assert.strictEqual(yield* remaining("tt:a:none"), Infinity)
      const day = (yield* remaining("tt:a:day"))!
      assert.isTrue(Math.abs(day - 86_400) <= 2, `1 day: ${day}`)
      // Sent as a relative 31 days, memcached would have read a time in 1970 and dropped the entry.
      const month = (yield* remaining("tt:a:month"))!
      assert.isTrue(Math.abs(month - 31 * 86_400) <= 5, `31 days: ${month}`)
      const ages = (yield* remaining("tt:a:ages"))!
      const cap = 2 ** 31 - 1 - Math.floor(Date.now() / 1000)
      assert.isTrue(Math.abs(ages - cap) <= 5, `200 years: ${ages}, cap ${cap}`)
      assert.strictEqual(text(yield* store.get("tt:a:sub")), "v")
      yield* sleep(Duration.millis(2_200))
      assert.isTrue(Option.isNone(yield* store.get("tt:a:sub")), "a 300 ms ttl expires (as 1 s)")
      assert.strictEqual(text(yield* store.get("tt:a:month")), "v")
    }).pipe(Effect.scoped), 15_000)

  it("the expiration of a ttl", () => {
    const now = 1_800_000_000_000
    assert.strictEqual(MemcachedStore.expirationOf(undefined, now), 0)
    assert.strictEqual(MemcachedStore.expirationOf(Duration.infinity, now), 0)
    assert.strictEqual(MemcachedStore.expirationOf(Duration.zero, now), "remove")
    assert.strictEqual(MemcachedStore.expirationOf(Duration.millis(1), now), 1)
    assert.strictEqual(MemcachedStore.expirationOf(Duration.millis(1_001), now), 2)
    assert.strictEqual(MemcachedStore.expirationOf(Duration.days(30), now), 2_592_000)
    assert.strictEqual(MemcachedStore.expirationOf(Duration.seconds(2_592_001), now), 1_800_000_000 + 2_592_001)
    assert.strictEqual(MemcachedStore.expirationOf(Duration.days(365 * 100), now), 2 ** 31 - 1)
  })

  it.live("a value over the limit (the server's item size less 512 bytes) is refused before it is sent; the old value goes", () =>
    Effect.gen(function*() {
      const store = yield* storeWith()
      const limit = (yield* Effect.promise(() => memcachedStat(port, "item_size_max", "settings"))) - 512
      // The longest key memcached takes and a value of exactly the limit: stored, byte for byte.
      const key = `sz:${"k".repeat(247)}`
      const fits = new Uint8Array(limit).map((_, i) => i % 251)
      yield* store.set(key, fits, undefined)
      assert.deepStrictEqual(Array.from(Option.getOrThrow(yield* store.get(key)) as Uint8Array), Array.from(fits))
      const setsBefore = yield* Effect.promise(() => memcachedStat(port, "cmd_set"))
      const refused = yield* Effect.flip(store.set(key, new Uint8Array(limit + 1), undefined))
      assert.strictEqual(refused.reason, "TooLarge")
      assert.include(refused.message, `${limit}-byte limit`)
      assert.strictEqual(yield* Effect.promise(() => memcachedStat(port, "cmd_set")), setsBefore, "nothing was sent")
      assert.isFalse(yield* store.has(key), "no old value outlives the refused write")
      // add: a key with a live entry answers false, as for any value; an empty one refuses.
      yield* store.set("sz:a:1", bytes("small"), undefined)
      assert.isFalse(yield* store.add("sz:a:1", new Uint8Array(limit + 1), undefined))
      assert.strictEqual((yield* Effect.flip(store.add("sz:a:2", new Uint8Array(limit + 1), undefined))).reason, "TooLarge")
      // setMany writes what fits and reports the refusal.
      const batch = yield* Effect.flip(store.setMany([
        { key: "sz:b:1", value: bytes("fits"), ttl: undefined },
        { key: "sz:b:2", value: new Uint8Array(limit + 1), ttl: undefined }
      ]))
      assert.strictEqual(batch.reason, "TooLarge")
      assert.strictEqual(batch.key, "sz:b:2")
      assert.strictEqual(text(yield* store.get("sz:b:1")), "fits")
    }).pipe(Effect.scoped))

  it.live("the limit follows a server's smaller item size; a value the server still refuses is TooLarge", () =>
    Effect.gen(function*() {
      const small = yield* Effect.acquireRelease(Effect.promise(() => startMemcached(["-I", "512k"])), (s) => Effect.promise(() => stopMemcached(s.process)))
      const store = yield* MemcachedStore.make({ server: `127.0.0.1:${small.port}` })
      const limit = 512 * 1024 - 512
      yield* store.set("is:a:1", new Uint8Array(limit), undefined)
      assert.strictEqual((yield* Effect.flip(store.set("is:a:2", new Uint8Array(limit + 1), undefined))).reason, "TooLarge")
      // Told a limit above the server's, the store sends the value and the server's refusal is typed.
      const trusting = yield* MemcachedStore.make({ server: `127.0.0.1:${small.port}`, maxValueBytes: 1024 * 1024 })
      yield* trusting.set("is:a:3", bytes("old"), undefined)
      const refused = yield* Effect.flip(trusting.set("is:a:3", new Uint8Array(600 * 1024), undefined))
      assert.strictEqual(refused.reason, "TooLarge")
      assert.include(refused.message, "too large")
      assert.isFalse(yield* trusting.has("is:a:3"), "memcached dropped the old value")
      // The refused value was swallowed by the server: the connection answers the next commands in step.
      yield* trusting.set("is:a:4", bytes("after"), undefined)
      assert.strictEqual(text(yield* trusting.get("is:a:4")), "after")
    }).pipe(Effect.scoped))

  it.live("a clear by one process is seen by another's reads at once; its writes follow within generationTtl", () =>
    Effect.gen(function*() {
      const a = yield* storeWith({ generationTtl: "1 minute" })
      const b = yield* storeWith()
      yield* a.set("gc:users:1", bytes("one"), undefined)
      assert.strictEqual(text(yield* b.get("gc:users:1")), "one")
      assert.strictEqual(yield* b.clear("gc:"), 0, "memcached cannot count what a clear removed")
      assert.isTrue(Option.isNone(yield* a.get("gc:users:1")), "A's read sees B's clear at once")
      // A learnt the new generation from that read: its writes are seen.
      yield* a.set("gc:users:2", bytes("two"), undefined)
      assert.strictEqual(text(yield* b.get("gc:users:2")), "two")
      // A write made before A reads again still carries the old generation: it is a miss, never a stale hit.
      yield* b.clear("gc:users:")
      yield* a.set("gc:users:3", bytes("three"), undefined)
      assert.isTrue(Option.isNone(yield* b.get("gc:users:3")))
      assert.isTrue(Option.isNone(yield* a.get("gc:users:3")))
      yield* a.set("gc:users:3", bytes("three again"), undefined)
      assert.strictEqual(text(yield* b.get("gc:users:3")), "three again")
      // With generationTtl 0 a writer reads the generations before every write.
      const eager = yield* storeWith({ generationTtl: 0 })
      yield* eager.get("gc:users:3")
      yield* b.clear("gc:")
      yield* eager.set("gc:users:4", bytes("four"), undefined)
      assert.strictEqual(text(yield* b.get("gc:users:4")), "four")
    }).pipe(Effect.scoped))

  it.live("clear: a keyspace or a namespace, internal keys never; other prefixes are refused", () =>
    Effect.gen(function*() {
      const store = yield* storeWith()
      const internal = CacheStore.internalKey("cl", "lock", "cl:a:1")
      const keys = ["cl:a:1", "cl:a:2", "cl:b:1", "cl:single", "clx:a:1", internal]
      for (const key of keys) yield* store.set(key, bytes(key), undefined)
      const present = () => Effect.forEach(keys, (key) => store.has(key))
      yield* store.clear("cl:a:")
      assert.deepStrictEqual(yield* present(), [false, false, true, true, true, true])
      yield* store.clear("cl:")
      assert.deepStrictEqual(yield* present(), [false, false, false, false, true, true])
      assert.strictEqual(yield* store.clear("cl::"), 0, "a prefix of internal keys only: nothing to clear")
      assert.isTrue(yield* store.has(internal))
      for (const prefix of ["cl:a:1", "cl:a:v2:", "", "cl"]) {
        const error = yield* Effect.flip(store.clear(prefix))
        assert.strictEqual(error.reason, "Unsupported", prefix)
      }
      // Written again after the clears: there.
      yield* store.set("cl:a:1", bytes("again"), undefined)
      assert.strictEqual(text(yield* store.get("cl:a:1")), "again")
    }).pipe(Effect.scoped))

  it.live("after a clear: delete and deleteMany remove nothing live, add takes the key", () =>
    Effect.gen(function*() {
      const store = yield* storeWith()
      for (const key of ["ac:a:1", "ac:a:2", "ac:a:3"]) yield* store.set(key, bytes("old"), undefined)
      yield* store.clear("ac:a:")
      assert.isFalse(yield* store.delete("ac:a:1"))
      assert.strictEqual(yield* store.deleteMany(["ac:a:2", "ac:a:2"]), 0)
      // memcached still holds ac:a:3 (of the old generation): add replaces it.
      assert.isTrue(yield* held("ac:a:3"))
      assert.isTrue(yield* store.add("ac:a:3", bytes("new"), undefined))
      assert.strictEqual(text(yield* store.get("ac:a:3")), "new")
      assert.isFalse(yield* store.add("ac:a:3", bytes("newer"), undefined))
      assert.isTrue(yield* store.delete("ac:a:3"))
      assert.strictEqual(yield* store.deleteMany(["ac:a:3"]), 0)
    }).pipe(Effect.scoped))

  it.live("a generation memcached evicted does not bring the old entries back", () =>
    Effect.gen(function*() {
      const store = yield* storeWith({ generationTtl: 0 })
      yield* store.set("ev:a:1", bytes("old"), undefined)
      const generation = MemcachedStore.physicalKey(MemcachedStore.generationKey("ev"))
      assert.deepStrictEqual(yield* raw(`delete ${generation}\r\n`), ["DELETED"])
      assert.isTrue(Option.isNone(yield* store.get("ev:a:1")), "no generation: nothing readable")
      yield* store.set("ev:a:2", bytes("new"), undefined)
      assert.strictEqual(text(yield* store.get("ev:a:2")), "new")
      assert.isTrue(Option.isNone(yield* store.get("ev:a:1")), "a new generation starts elsewhere")
    }).pipe(Effect.scoped))

  it.live("add is atomic across clients: one of two concurrent adds of a key wins", () =>
    Effect.gen(function*() {
      const a = yield* storeWith()
      const b = yield* storeWith()
      const keys = Array.from({ length: 30 }, (_, i) => `ad:a:${i}`)
      // Half the keys hold an entry a clear made unreachable: add must replace it exactly once too.
      for (const key of keys.slice(15)) yield* a.set(key, bytes("stale"), undefined)
      yield* a.clear("ad:a:")
      yield* Effect.all([a.get("ad:a:0"), b.get("ad:a:0")])
      const outcomes = yield* Effect.forEach(
        keys,
        (key) => Effect.all([a.add(key, bytes("a"), undefined), b.add(key, bytes("b"), undefined)], { concurrency: 2 }),
        { concurrency: "unbounded" }
      )
      for (const [i, [x, y]] of outcomes.entries()) {
        assert.isTrue(x !== y, `${keys[i]}: exactly one add won (${x}, ${y})`)
        assert.strictEqual(text(yield* a.get(keys[i]!)), x ? "a" : "b")
      }
    }).pipe(Effect.scoped))

  it.live("conditional writes across stores: versions come from memcached's counter, a delete leaves a tombstone", () =>
    Effect.gen(function*() {
      const a = yield* storeWith()
      const b = yield* storeWith()
      yield* a.set("cw:a:1", envelope("old"), undefined)
      const since = (yield* a.currentVersion!)!
      // Another process deletes the key, then a producer that read before it writes: skipped.
      assert.isTrue(yield* b.delete("cw:a:1"))
      assert.isTrue(yield* held("cw:a:1"), "memcached holds the tombstone")
      yield* a.set("cw:a:1", envelope("late"), undefined, undefined, since)
      assert.isUndefined(body(yield* b.get("cw:a:1")))
      // Another process writes it: the newer value stays.
      yield* b.set("cw:a:2", envelope("newer"), undefined)
      yield* a.set("cw:a:2", envelope("late"), undefined, undefined, since)
      assert.strictEqual(body(yield* a.get("cw:a:2")), "newer")
      // Having read the newer state, a conditional write lands (over the tombstone too).
      const later = (yield* a.currentVersion!)!
      assert.isAbove(later, since)
      yield* a.set("cw:a:1", envelope("fresh"), undefined, undefined, later)
      assert.strictEqual(body(yield* b.get("cw:a:1")), "fresh")
      // A counter deleted starts again from 0 (its tombstone is not a counter).
      assert.strictEqual(yield* a.increment("cw:a:n", 5, undefined), 5)
      yield* a.delete("cw:a:n")
      assert.isTrue(Option.isNone(yield* a.counter("cw:a:n")))
      assert.strictEqual(yield* b.increment("cw:a:n", 2, undefined), 2)
    }).pipe(Effect.scoped))

  it.live("every removal leaves a tombstone: a slow conditional write of an older version never brings a value back", () =>
    Effect.gen(function*() {
      const a = yield* storeWith()
      const b = yield* storeWith()
      // A conditional removal after a delete: it must not wipe the delete's tombstone. P1's producer
      // read before the delete; P2 read after it and removes the key (a ttl of zero) conditionally.
      yield* a.set("tb:a:1", envelope("before the delete"), undefined)
      const p1 = (yield* a.currentVersion!)!
      assert.isTrue(yield* b.delete("tb:a:1"))
      const p2 = (yield* b.currentVersion!)!
      yield* b.set("tb:a:1", envelope("removed"), Duration.zero, undefined, p2)
      assert.isTrue(yield* held("tb:a:1"), "a tombstone stays")
      yield* a.set("tb:a:1", envelope("stale"), undefined, undefined, p1)
      assert.isUndefined(body(yield* b.get("tb:a:1")), "the stale value stays out")
      // A plain removal (a set with a ttl of zero) leaves one too.
      yield* a.set("tb:a:2", envelope("before the removal"), undefined)
      const p3 = (yield* a.currentVersion!)!
      yield* b.set("tb:a:2", envelope("removed"), Duration.zero)
      assert.isTrue(yield* held("tb:a:2"), "a tombstone stays")
      assert.isTrue(Option.isNone(yield* b.get("tb:a:2")), "and reads as no entry")
      yield* a.set("tb:a:2", envelope("stale"), undefined, undefined, p3)
      assert.isUndefined(body(yield* b.get("tb:a:2")), "the stale value stays out")
      // A conditional removal of an absent key leaves one as well; a write that read after it lands.
      const p4 = (yield* a.currentVersion!)!
      yield* b.set("tb:a:3", envelope("removed"), Duration.zero, undefined, (yield* b.currentVersion!)!)
      yield* a.set("tb:a:3", envelope("stale"), undefined, undefined, p4)
      assert.isUndefined(body(yield* b.get("tb:a:3")))
      yield* a.get("tb:a:3")
      yield* a.set("tb:a:3", envelope("fresh"), undefined, undefined, (yield* a.currentVersion!)!)
      assert.strictEqual(body(yield* b.get("tb:a:3")), "fresh")
    }).pipe(Effect.scoped))

  it.live("a version counter made again lower than a process's floor: that process's next draw drops the floor", () =>
    Effect.gen(function*() {
      // A memcached of its own: the run's counter is shared by the other files.
      const own = yield* Effect.acquireRelease(Effect.promise(() => startMemcached()), (s) => Effect.promise(() => stopMemcached(s.process)))
      const a = yield* MemcachedStore.make({ server: `127.0.0.1:${own.port}` })
      const b = yield* MemcachedStore.make({ server: `127.0.0.1:${own.port}` })
      const raw = (command: string) => Effect.promise(() => memcachedCommand(own.port, command))
      const counter = MemcachedStore.physicalKey(MemcachedStore.versionKey)
      // The counter far ahead of every clock (as one made by a machine whose clock ran ahead), then lost.
      const ahead = Date.now() * 1000 + 1e12
      assert.deepStrictEqual(yield* raw(`set ${counter} 0 0 ${String(ahead).length}\r\n${ahead}\r\n`), ["STORED"])
      yield* a.set("vc:a:1", bytes("v"), undefined)
      assert.isAtLeast((yield* a.currentVersion!)!, ahead)
      assert.deepStrictEqual(yield* raw(`delete ${counter}\r\n`), ["DELETED"])
      // Another process makes it again, at its clock in microseconds.
      yield* b.set("vc:a:2", bytes("v"), undefined)
      const made = (yield* b.currentVersion!)!
      assert.isBelow(made, ahead)
      // A's next draw answers the counter: its floor is dropped to it.
      yield* a.set("vc:a:3", bytes("v"), undefined)
      const after = (yield* a.currentVersion!)!
      assert.isBelow(after, ahead, "a's currentVersion follows the counter down")
      yield* b.set("vc:a:4", bytes("v"), undefined)
      assert.isAbove((yield* b.currentVersion!)!, after, "later writes draw above it")
    }).pipe(Effect.scoped))

  it.live("concurrent conditional writes of one key from two stores: each lands or is skipped, none lost to a race", () =>
    Effect.gen(function*() {
      const a = yield* storeWith()
      const b = yield* storeWith()
      const keys = Array.from({ length: 20 }, (_, i) => `cr:a:${i}`)
      yield* Effect.forEach(keys, (key) => a.get(key), { discard: true })
      const [sa, sb] = [(yield* a.currentVersion!)!, (yield* b.currentVersion!)!]
      yield* Effect.forEach(
        keys,
        (key) => Effect.all([a.set(key, envelope("a"), undefined, undefined, sa), b.set(key, envelope("b"), undefined, undefined, sb)], { concurrency: 2 }),
        { concurrency: "unbounded", discard: true }
      )
      // Whichever landed first, the other saw a version above its own and stepped back (or replaced it
      // before: then the last write's version is above the first's).
      for (const key of keys) assert.isTrue(Option.isSome(yield* a.get(key)), key)
    }).pipe(Effect.scoped))

  it.live("getMany of more keys than one get carries answers in order", () =>
    Effect.gen(function*() {
      const store = yield* storeWith()
      const keys = Array.from({ length: 600 }, (_, i) => `gm:a:${i}`)
      yield* store.setMany(keys.filter((_, i) => i % 3 !== 0).map((key) => ({ key, value: bytes(key), ttl: undefined })))
      const got = yield* store.getMany(keys)
      assert.deepStrictEqual(got.map(text), keys.map((key, i) => i % 3 === 0 ? undefined : key))
      const concurrent = yield* Effect.forEach(keys, (key) => store.get(key), { concurrency: "unbounded" })
      assert.deepStrictEqual(concurrent.map(text), keys.map((key, i) => i % 3 === 0 ? undefined : key))
    }).pipe(Effect.scoped))

  it.live("a value this store did not write is a miss", () =>
    Effect.gen(function*() {
      const store = yield* storeWith()
      assert.deepStrictEqual(yield* raw("set fo:a:1 0 0 5\r\nhello\r\n"), ["STORED"])
      assert.deepStrictEqual(yield* raw("set fo::x 8 0 3\r\nabc\r\n"), ["STORED"])
      assert.isTrue(Option.isNone(yield* store.get("fo:a:1")))
      assert.isTrue(Option.isNone(yield* store.get("fo::x")))
    }).pipe(Effect.scoped))

  it.live("the layer's connection closes with its scope", () =>
    Effect.gen(function*() {
      const connections = () => Effect.promise(() => memcachedStat(port, "curr_connections"))
      const during = yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* storeWith()
        yield* store.set("lc:a:1", bytes("v"), undefined)
        return yield* connections()
      }))
      // The server notices the close a moment later.
      const after = yield* connections().pipe(
        Effect.repeat({ until: (n) => n < during, schedule: Schedule.spaced("20 millis") }),
        Effect.timeout("2 seconds")
      )
      assert.isBelow(after, during)
    }))

  it.live("layerConfig reads each option from a Config", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      yield* store.set("cf:a:1", bytes("configured"), undefined)
      assert.strictEqual(text(yield* store.get("cf:a:1")), "configured")
      assert.deepStrictEqual(store.capabilities.operationBound, Duration.millis(300))
    }).pipe(Effect.provide(
      MemcachedStore.layerConfig({
        server: Config.string("APP_MEMCACHED"),
        timeout: Config.duration("APP_MEMCACHED_TIMEOUT")
      }).pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromJson({ APP_MEMCACHED: server, APP_MEMCACHED_TIMEOUT: "300 millis" }))))
    )))
})

class User extends Schema.Class<User>("User")({ id: Schema.String, name: Schema.String }) {}
const Users = Keyspace.make({ name: "users", key: CacheKey.string, value: User, ttl: "10 minutes" })
const Notes = Keyspace.make({ name: "notes", key: CacheKey.string, value: Schema.String })
const Blobs = Keyspace.make({ name: "blobs", key: CacheKey.string, value: Schema.Uint8ArrayFromSelf, serializer: CacheSerializer.bytes })

const cacheOnMemcached = (namespace: string) => Cache.layer({ namespace }).pipe(Layer.provide(MemcachedStore.layer({ server })))

describe("a Cache over memcached", () => {
  it.live("set, get, getOrSet, invalidate, clearKeyspace and clear, with hostile keys", () =>
    Effect.gen(function*() {
      const keys = ["plain", "x".repeat(400), "with  some spaces ", "ünïcødé 😀", "#looks-hashed", "a:b:c"]
      for (const key of keys) yield* Users.set(key, new User({ id: key, name: `name of ${key}` }))
      for (const key of keys) assert.strictEqual(Option.getOrThrow(yield* Users.get(key)).id, key)
      const calls = yield* Ref.make(0)
      const produce = (key: string) => Effect.as(Ref.update(calls, (n) => n + 1), new User({ id: key, name: "produced" }))
      for (const key of keys) assert.strictEqual((yield* Users.getOrSet(key, produce(key))).name, `name of ${key}`)
      assert.strictEqual(yield* Ref.get(calls), 0, "hits do not run the producer")
      yield* Users.invalidate(keys[1]!)
      assert.strictEqual((yield* Users.getOrSet(keys[1]!, produce(keys[1]!))).name, "produced")
      assert.strictEqual((yield* Users.getOrSet(keys[1]!, produce(keys[1]!))).name, "produced")
      assert.strictEqual(yield* Ref.get(calls), 1)
      yield* Notes.set("n", "a note")
      yield* Users.clear
      for (const key of keys) assert.isTrue(Option.isNone(yield* Users.get(key)), key)
      assert.deepStrictEqual(yield* Notes.get("n"), Option.some("a note"), "another keyspace stays")
      assert.strictEqual(yield* Effect.flatMap(Cache.Cache, (cache) => cache.clear), 0)
      assert.isTrue(Option.isNone(yield* Notes.get("n")))
    }).pipe(Effect.provide(cacheOnMemcached("mcache"))))

  it.live("tags: invalidateTags hides exactly the tagged entries (markers live under internal keys, which no clear touches)", () =>
    Effect.gen(function*() {
      const Tagged = Keyspace.make({
        name: "tagged",
        key: CacheKey.string,
        value: Schema.String,
        tags: (_key, value) => [`org:${value.split("/")[0]}`]
      })
      yield* Tagged.set("a", "acme/ada")
      yield* Tagged.set("b", "other/bob")
      yield* Cache.invalidateTags(["org:acme"])
      assert.isTrue(Option.isNone(yield* Tagged.get("a")))
      assert.deepStrictEqual(yield* Tagged.get("b"), Option.some("other/bob"))
      yield* Tagged.clear
      yield* Tagged.set("a", "acme/again")
      assert.deepStrictEqual(yield* Tagged.get("a"), Option.some("acme/again"), "written after the invalidation: there")
    }).pipe(Effect.provide(cacheOnMemcached("mtags"))))

  it.live("getOrSet's write is conditional: a key invalidated while its producer ran is not written", () =>
    Effect.gen(function*() {
      const produced = yield* Notes.getOrSet("k", Effect.zipRight(Notes.invalidate("k"), Effect.succeed("produced before the invalidation")))
      assert.strictEqual(produced, "produced before the invalidation")
      assert.isTrue(Option.isNone(yield* Notes.get("k")), "skipped: the invalidation came after the read")
      assert.strictEqual(yield* Notes.getOrSet("k", Effect.succeed("again")), "again")
      assert.deepStrictEqual(yield* Notes.get("k"), Option.some("again"))
    }).pipe(Effect.provide(cacheOnMemcached("mcond"))))

  it.live("a value too large for memcached: a typed TooLarge, nothing stored, and getOrSet still answers", () =>
    Effect.gen(function*() {
      const big = new Uint8Array(2 * 1024 * 1024).fill(7)
      yield* Blobs.set("b", new Uint8Array([1]))
      const error = yield* Effect.flip(Blobs.set("b", big))
      assert.isTrue(CacheError.isStoreError(error) && error.reason === "TooLarge", String(error))
      assert.isTrue(Option.isNone(yield* Blobs.get("b")), "nothing stored, the old value dropped")
      assert.isFalse(yield* held("mbig:blobs:b"))
      const produced = yield* Blobs.getOrSet("c", Effect.succeed(big))
      assert.strictEqual(produced.length, big.length)
      assert.isTrue(Option.isNone(yield* Blobs.get("c")))
    }).pipe(Effect.provide(cacheOnMemcached("mbig"))))
})
