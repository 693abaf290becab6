import { KeyValueStore } from "@effect/platform"
import * as FileSystem from "@effect/platform/FileSystem"
import * as PlatformError from "@effect/platform/Error"
import { NodeFileSystem, NodePath } from "@effect/platform-node"
import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Schema, TestClock } from "effect"
import type * as ParseResult from "effect/ParseResult"
import { Cache, CacheEntry, CacheError, CacheKey, CacheStore, KeyValue, Keyspace, MemoryStore, RedisStore } from "../src/index.js"
import { storeSuite } from "../src/testing.js"
import { layerSerializing, redisOn } from "./utils.js"

/** A KeyValueStore in a fresh temporary directory, removed when the layer's scope closes. */
const layerFiles = Layer.unwrapScoped(
  Effect.map(Effect.flatMap(FileSystem.FileSystem, (fs) => fs.makeTempDirectoryScoped({ prefix: "cachekit-kvs-" })), (directory) =>
    KeyValueStore.layerFileSystem(directory))
).pipe(Layer.provide(NodeFileSystem.layer), Layer.provide(NodePath.layer))

const overKeyValue = { capabilities: { clearByPrefix: false } } as const
storeSuite("CacheStore.fromKeyValueStore over KeyValueStore.layerMemory", KeyValue.layerStore().pipe(Layer.provide(KeyValueStore.layerMemory)), overKeyValue)
storeSuite("CacheStore.fromKeyValueStore over KeyValueStore.layerFileSystem", KeyValue.layerStore().pipe(Layer.provide(layerFiles)), overKeyValue)

const bytes = (text: string) => new TextEncoder().encode(text)
const text = (found: Option.Option<CacheEntry.Stored>) =>
  Option.isNone(found) ? undefined : new TextDecoder().decode(found.value as Uint8Array)

/** A KeyValueStore whose every operation fails with `error`. */
const failing = (error: PlatformError.PlatformError): KeyValueStore.KeyValueStore =>
  KeyValueStore.make({
    get: () => Effect.fail(error),
    getUint8Array: () => Effect.fail(error),
    set: () => Effect.fail(error),
    remove: () => Effect.fail(error),
    clear: Effect.fail(error),
    size: Effect.fail(error)
  })

const systemError = (reason: PlatformError.SystemErrorReason) =>
  new PlatformError.SystemError({ reason, module: "KeyValueStore", method: "get", description: "refused" })

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User, ttl: "1 minute", grace: "1 minute" })

describe("CacheStore.fromKeyValueStore", () => {
  it.effect("an expired entry reads as absent and is removed from the KeyValueStore", () =>
    Effect.gen(function*() {
      const kvs = yield* KeyValueStore.KeyValueStore
      const store = CacheStore.fromKeyValueStore(kvs)
      yield* store.set("t:short", bytes("v"), Duration.seconds(2))
      yield* store.set("t:long", bytes("w"), Duration.seconds(20))
      assert.isTrue(yield* kvs.has("t:short"))
      yield* TestClock.adjust(Duration.seconds(3))
      assert.isTrue(yield* kvs.has("t:short"), "not read yet: still on the KeyValueStore")
      assert.isTrue(Option.isNone(yield* store.get("t:short")))
      assert.isFalse(yield* kvs.has("t:short"), "removed by the read")
      assert.strictEqual(text(yield* store.get("t:long")), "w")
    }).pipe(Effect.provide(KeyValueStore.layerMemory)))

  it.effect("bytes some other program wrote are handed to the cache as they are, which heals them", () =>
    Effect.gen(function*() {
      const kvs = yield* KeyValueStore.KeyValueStore
      const store = CacheStore.fromKeyValueStore(kvs, { name: "files" })
      yield* kvs.set("t:foreign", "hello")
      assert.strictEqual(text(yield* store.get("t:foreign")), "hello")
      assert.strictEqual(store.name, "files")
      const cache = yield* Cache.make({ namespace: "ns" }).pipe(Effect.provideService(CacheStore.CacheStore, store))
      yield* kvs.set("ns:users:1", "not an envelope")
      const got = yield* Users.getOrSet(1, Effect.succeed(new User({ id: 1, name: "Ada" }))).pipe(Effect.provideService(Cache.Cache, cache))
      assert.strictEqual(got.name, "Ada")
      assert.strictEqual(Option.getOrThrow(yield* Users.get(1).pipe(Effect.provideService(Cache.Cache, cache))).name, "Ada")
    }).pipe(Effect.scoped, Effect.provide(KeyValueStore.layerMemory)))

  it.effect("a PlatformError becomes a StoreError with the nearest reason and the platform's error as cause", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [PlatformError.PlatformError, CacheError.StoreError["reason"]]> = [
        [systemError("TimedOut"), "Timeout"],
        [systemError("PermissionDenied"), "Auth"],
        [systemError("Busy"), "Unavailable"],
        [systemError("WriteZero"), "TooLarge"],
        [systemError("InvalidData"), "Backend"],
        [new PlatformError.BadArgument({ module: "KeyValueStore", method: "get" }), "Backend"]
      ]
      for (const [platform, reason] of cases) {
        const store = CacheStore.fromKeyValueStore(failing(platform))
        for (const operation of [store.get("t:k"), store.set("t:k", bytes("v"), undefined), store.delete("t:k"), store.has("t:k")]) {
          const error = yield* Effect.flip(operation)
          assert.strictEqual(error._tag, "StoreError")
          assert.strictEqual(error.reason, reason)
          assert.strictEqual(error.key, "t:k")
          assert.strictEqual(error.store, "keyvalue")
          assert.strictEqual(error.cause, platform)
        }
      }
      const store = CacheStore.fromKeyValueStore(failing(systemError("Unknown")))
      expectTypeOf(store.get).returns.toEqualTypeOf<Effect.Effect<Option.Option<CacheEntry.Stored>, CacheError.StoreError>>()
    }))

  it.effect("a cache over the file system: expiry and grace on the Clock, invalidation, tags", () =>
    Effect.gen(function*() {
      const Tagged = Keyspace.make({ name: "tagged", key: CacheKey.string, value: Schema.String, tags: (key) => [`t:${key}`] })
      yield* Users.set(1, new User({ id: 1, name: "Ada" }))
      yield* Tagged.set("a", "x")
      assert.strictEqual(Option.getOrThrow(yield* Users.get(1)).name, "Ada")
      yield* TestClock.adjust(Duration.seconds(90))
      assert.isTrue(Option.isNone(yield* Users.get(1)), "stale: a miss for get")
      const stale = yield* Users.getOrSet(1, Effect.fail("source down"))
      assert.strictEqual(stale.name, "Ada", "within grace, getOrSet serves the stale value")
      yield* TestClock.adjust(Duration.seconds(60))
      assert.isTrue(Option.isNone(yield* Users.getStale(1)), "past grace: gone")
      yield* Cache.invalidateTags(["t:a"])
      assert.isTrue(Option.isNone(yield* Tagged.get("a")))
      yield* Users.set(2, new User({ id: 2, name: "Bob" }))
      yield* Users.invalidate(2)
      assert.isFalse(yield* Users.has(2))
      const cleared = yield* Effect.flip(Users.clear)
      assert.strictEqual(cleared.reason, "Unsupported")
    }).pipe(
      Effect.provide(Cache.layer({ namespace: "fs" }).pipe(Layer.provide(KeyValue.layerStore()), Layer.provide(layerFiles)))
    ))
})

describe("KeyValue: a cache as a KeyValueStore", () => {
  const onMemory = KeyValue.layer().pipe(Layer.provideMerge(Cache.layerMemory({ namespace: "app" })))

  it("the layers' types say what they need and that building them cannot fail", () => {
    expectTypeOf(KeyValue.layer()).toEqualTypeOf<Layer.Layer<KeyValueStore.KeyValueStore, never, Cache.Cache>>()
    expectTypeOf(KeyValue.layerStore()).toEqualTypeOf<Layer.Layer<CacheStore.CacheStore, never, KeyValueStore.KeyValueStore>>()
    expectTypeOf(KeyValue.make()).toEqualTypeOf<Effect.Effect<KeyValueStore.KeyValueStore, never, Cache.Cache>>()
    expectTypeOf(CacheStore.fromKeyValueStore).returns.toEqualTypeOf<CacheStore.CacheStore>()
  })

  it.effect("get, getUint8Array, set, has, remove and modify behave as the platform's own stores", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore.KeyValueStore
      const reference = yield* KeyValueStore.KeyValueStore.pipe(Effect.provide(KeyValueStore.layerMemory))
      for (const store of [kv, reference]) {
        assert.isTrue(Option.isNone(yield* store.get("missing")))
        assert.isFalse(yield* store.has("missing"))
        yield* store.set("text", "héllo")
        yield* store.set("bytes", new Uint8Array([104, 105]))
        assert.deepStrictEqual(yield* store.get("text"), Option.some("héllo"))
        assert.deepStrictEqual(Option.map(yield* store.getUint8Array("text"), Array.from), Option.some(Array.from(bytes("héllo"))))
        // Bytes read as text: the cache, as the platform's file-system store, decodes UTF-8 (the
        // platform's string-only memory store answers base64).
        if (store === kv) assert.deepStrictEqual(yield* store.get("bytes"), Option.some("hi"))
        assert.deepStrictEqual(Option.map(yield* store.getUint8Array("bytes"), Array.from), Option.some([104, 105]))
        assert.isTrue(yield* store.has("text"))
        assert.deepStrictEqual(yield* store.modify("text", (v) => v.toUpperCase()), Option.some("HÉLLO"))
        assert.deepStrictEqual(yield* store.get("text"), Option.some("HÉLLO"))
        assert.isTrue(Option.isNone(yield* store.modify("missing", (v) => v)))
        yield* store.set("text", "again")
        assert.deepStrictEqual(yield* store.get("text"), Option.some("again"), "set overwrites")
        yield* store.remove("text")
        yield* store.remove("never there")
        assert.isFalse(yield* store.has("text"))
        yield* store.set("", "the empty key")
        assert.deepStrictEqual(yield* store.get(""), Option.some("the empty key"))
      }
    }).pipe(Effect.provide(onMemory)))

  it.effect("keys live in a keyspace of their own: clear removes them and nothing else", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore.KeyValueStore
      const Other = Keyspace.make({ name: "other", key: CacheKey.string, value: Schema.String })
      yield* kv.set("a", "1")
      yield* Other.set("a", "kept")
      const store = yield* CacheStore.CacheStore
      assert.isTrue(yield* store.has("app:kv:a"), "stored as <namespace>:<keyspace>:<key>")
      yield* kv.clear
      assert.isFalse(yield* kv.has("a"))
      assert.deepStrictEqual(yield* Other.get("a"), Option.some("kept"))
    }).pipe(Effect.provide(KeyValue.layer().pipe(Layer.provideMerge(Cache.layer({ namespace: "app" })), Layer.provideMerge(layerSerializing())))))

  it.effect("size and isEmpty fail with a BadArgument rather than guess", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore.KeyValueStore
      yield* kv.set("a", "1")
      for (const count of [kv.size, kv.isEmpty] as ReadonlyArray<Effect.Effect<unknown, PlatformError.PlatformError>>) {
        const error = yield* Effect.flip(count)
        assert.strictEqual(error._tag, "BadArgument")
        assert.strictEqual(error.method, "size")
        assert.match(error.message, /cannot count/)
      }
      expectTypeOf(kv.size).toEqualTypeOf<Effect.Effect<number, PlatformError.PlatformError>>()
    }).pipe(Effect.provide(onMemory)))

  it.effect("entries take the store's ttl on the Clock", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore.KeyValueStore
      yield* kv.set("s", "session")
      yield* TestClock.adjust(Duration.seconds(29))
      assert.isTrue(yield* kv.has("s"))
      yield* TestClock.adjust(Duration.seconds(2))
      assert.isTrue(Option.isNone(yield* kv.get("s")))
    }).pipe(Effect.provide(KeyValue.layer({ keyspace: "sessions", ttl: "30 seconds" }).pipe(Layer.provide(Cache.layerMemory())))))

  it.effect("cache failures become PlatformErrors: a store's refusal a SystemError with the cache's error as cause", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore.KeyValueStore
      const error = yield* Effect.flip(kv.clear)
      assert.strictEqual(error._tag, "SystemError")
      assert.strictEqual(error._tag === "SystemError" && error.reason, "Unknown")
      assert.isTrue(CacheError.isCacheError(error.cause))
      const tooLong = yield* Effect.flip(kv.set("k".repeat(600), "v"))
      assert.strictEqual(tooLong._tag, "BadArgument", "a key the cache refuses is a bad argument")
      assert.isTrue(CacheError.isCacheError(tooLong.cause))
    }).pipe(
      Effect.provide(KeyValue.layer().pipe(Layer.provide(Cache.layer({ namespace: "kvs", maxKeyLength: 256 })), Layer.provide(KeyValue.layerStore()), Layer.provide(KeyValueStore.layerMemory)))
    ))

  it.effect("forSchema works over it as over any KeyValueStore", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore.KeyValueStore
      const users = kv.forSchema(User)
      yield* users.set("u1", new User({ id: 1, name: "Ada" }))
      assert.deepStrictEqual(yield* users.get("u1"), Option.some(new User({ id: 1, name: "Ada" })))
    }).pipe(Effect.provide(onMemory)))

  it.effect("on Redis: the same behaviour, values as bytes on the wire", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore.KeyValueStore
      yield* kv.set("text", "héllo")
      yield* kv.set("bytes", new Uint8Array([0, 255]))
      assert.deepStrictEqual(yield* kv.get("text"), Option.some("héllo"))
      assert.deepStrictEqual(Option.map(yield* kv.getUint8Array("bytes"), Array.from), Option.some([0, 255]))
      yield* kv.remove("text")
      assert.isFalse(yield* kv.has("text"))
      yield* kv.clear
      assert.isFalse(yield* kv.has("bytes"))
    }).pipe(Effect.provide(
      KeyValue.layer().pipe(Layer.provide(Cache.layer({ namespace: "kvredis" })), Layer.provide(RedisStore.layer()), Layer.provide(redisOn(13)))
    )))
})

describe("KeyValue.schemaStore", () => {
  it.effect("keeps typed values with the keyspace's codec; modify, remove, has; size fails typed", () =>
    Effect.gen(function*() {
      const users = yield* KeyValue.schemaStore({ keyspace: "people", value: User })
      expectTypeOf(users).toEqualTypeOf<KeyValueStore.SchemaStore<User, never>>()
      expectTypeOf(users.get).returns.toEqualTypeOf<Effect.Effect<Option.Option<User>, PlatformError.PlatformError | ParseResult.ParseError>>()
      const ada = new User({ id: 1, name: "Ada" })
      yield* users.set("1", ada)
      const got = Option.getOrThrow(yield* users.get("1"))
      assert.strictEqual(got, ada, "the memory store keeps the decoded value itself")
      assert.deepStrictEqual(yield* users.modify("1", (u) => new User({ ...u, name: "Ada L." })), Option.some(new User({ id: 1, name: "Ada L." })))
      assert.strictEqual(Option.getOrThrow(yield* users.get("1")).name, "Ada L.")
      assert.isTrue(yield* users.has("1"))
      yield* users.remove("1")
      assert.isFalse(yield* users.has("1"))
      assert.strictEqual((yield* Effect.flip(users.size))._tag, "BadArgument")
      const store = yield* CacheStore.CacheStore
      yield* users.set("2", new User({ id: 2, name: "Bob" }))
      assert.isTrue(yield* store.has("app:people:2"))
      yield* users.clear
      assert.isFalse(yield* users.has("2"))
    }).pipe(Effect.provide(Cache.layer({ namespace: "app" }).pipe(Layer.provideMerge(MemoryStore.layer())))))
})
