/**
 * effect-cachekit/portable runs outside Node: its modules bundle for a platform-neutral target (no
 * Node built-in can resolve), and the bundle runs a memory cache in a bare V8 context that has only
 * Web globals (no `process`, `Buffer`, `require`), as a Worker would.
 */
import { assert, describe, it } from "@effect/vitest"
import * as esbuild from "esbuild"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import * as vm from "node:vm"
import { Effect, Layer, Option, Schema } from "effect"
import { Cache, CacheKey, Keyspace, KeyValue, MemoryStore } from "../src/portable.js"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")

/** A program using the portable entry: a keyspace, getOrSet, tags, expiry and the KeyValueStore bridge. */
const program = `
import { Effect, Option, Schema, TestClock, TestContext, Duration, Layer } from "effect"
import { KeyValueStore } from "@effect/platform"
import { Cache, CacheKey, CacheSerializer, Keyspace, KeyValue } from "./src/portable.ts"

class User extends Schema.Class("User")({ id: Schema.Number, name: Schema.String, avatar: Schema.Uint8ArrayFromSelf }) {}
const Users = Keyspace.make({ name: "users", key: CacheKey.hashed(Schema.Struct({ id: Schema.Number })), value: User, ttl: "1 minute", tags: (_k, u) => ["org:" + u.id] })
const Packed = Keyspace.make({ name: "packed", key: CacheKey.string, value: Schema.String, serializer: CacheSerializer.msgpack })
let runs = 0
const run = Effect.gen(function* () {
  const produce = Effect.sync(() => (runs++, new User({ id: 1, name: "Ada ☃", avatar: new Uint8Array([1, 2, 255]) })))
  const first = yield* Users.getOrSet({ id: 1 }, produce)
  const again = yield* Users.getOrSet({ id: 1 }, produce)
  yield* Packed.set("p", "\\uFEFFbom kept")
  const packed = yield* Packed.get("p")
  yield* Cache.invalidateTags(["org:1"])
  const afterTag = yield* Users.get({ id: 1 })
  yield* Users.set({ id: 2 }, first)
  yield* TestClock.adjust(Duration.minutes(2))
  const expired = yield* Users.get({ id: 2 })
  const kv = yield* KeyValue.make({ keyspace: "kv" })
  yield* kv.set("k", new Uint8Array([104, 105]))
  const text = yield* kv.get("k")
  return {
    runs, name: again.name, avatar: Array.from(again.avatar), packed: Option.getOrNull(packed),
    afterTag: Option.isNone(afterTag), expired: Option.isNone(expired), text: Option.getOrNull(text)
  }
})
// On the memory store (live values) and on a store that keeps envelope bytes (a KeyValueStore).
const onBytes = Cache.layer({ namespace: "portable" }).pipe(Layer.provide(KeyValue.layerStore()), Layer.provide(KeyValueStore.layerMemory))
export const result = Effect.runPromise(Effect.all([
  run.pipe(Effect.provide(Cache.layerMemory({ namespace: "portable", capacity: 100 }))),
  Effect.sync(() => { runs = 0 }).pipe(Effect.zipRight(run), Effect.provide(onBytes))
]).pipe(Effect.provide(TestContext.TestContext)))
`

describe("effect-cachekit/portable", () => {
  it.live("bundles for a platform-neutral target and runs a memory cache with Web globals only", () =>
    Effect.gen(function*() {
      const built = yield* Effect.promise(() =>
        esbuild.build({
          stdin: { contents: program, resolveDir: root, sourcefile: "portable-program.ts", loader: "ts" },
          bundle: true,
          platform: "neutral",
          mainFields: ["module", "main"],
          format: "iife",
          globalName: "portable",
          write: false,
          logLevel: "silent"
        })
      )
      assert.deepStrictEqual(built.errors, [])
      const code = built.outputFiles[0]!.text
      assert.notMatch(code, /\brequire\(["']node:/, "no Node built-in in the bundle")
      // A bare context: V8's own globals plus the Web APIs a Worker has. No process, Buffer or require.
      const context = vm.createContext({
        TextEncoder,
        TextDecoder,
        URL,
        URLSearchParams,
        setTimeout,
        clearTimeout,
        setInterval,
        clearInterval,
        queueMicrotask,
        structuredClone,
        performance,
        console
      })
      const portable = vm.runInContext(`${code}; portable`, context) as { readonly result: Promise<unknown> }
      assert.isUndefined(vm.runInContext("typeof process === 'undefined' && typeof Buffer === 'undefined' ? undefined : 'node'", context))
      const result = yield* Effect.promise(() => portable.result)
      const expected = { runs: 1, name: "Ada ☃", avatar: [1, 2, 255], packed: "\uFEFFbom kept", afterTag: true, expired: true, text: "hi" }
      assert.deepStrictEqual(JSON.parse(JSON.stringify(result)), [expected, expected])
    }), 60_000)

  class Greeting extends Schema.Class<Greeting>("Greeting")({ text: Schema.String }) {}
  const Greetings = Keyspace.make({ name: "greetings", key: CacheKey.string, value: Greeting })

  it.effect("its Cache is the main Cache's service: the same tag, layers and accessors", () =>
    Effect.gen(function*() {
      yield* Greetings.set("en", new Greeting({ text: "hello" }))
      assert.deepStrictEqual(yield* Cache.get(Greetings, "en"), Option.some(new Greeting({ text: "hello" })))
      const kv = yield* KeyValue.make()
      yield* kv.set("a", "b")
      assert.deepStrictEqual(yield* kv.get("a"), Option.some("b"))
      const stats = yield* Effect.flatMap(MemoryStore.MemoryStore, (store) => store.stats)
      assert.strictEqual(stats.entries, 2)
    }).pipe(Effect.provide(Cache.layer({ namespace: "p" }).pipe(Layer.provideMerge(MemoryStore.layer())))))
})
