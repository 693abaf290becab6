import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option, Ref, Schema, TestClock } from "effect"
import { Cache, CacheError, CacheKey, Keyspace } from "../src/index.js"
import { assertSame, emptiedDatabase } from "./utils.js"

class FetchError extends Schema.TaggedError<FetchError>()("FetchError", {}) {}
interface Logger {
  readonly lines: Array<string>
}
const logger = (): Logger => ({ lines: [] })

/** Until the cache's runs have stored their values (a write lands after the callers have the value). */
const pause = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 2)))
const settled = Effect.flatMap(Cache.Cache, (cache) =>
  Effect.gen(function*() {
    yield* pause
    for (let i = 0; i < 200 && (yield* cache.inFlight) > 0; i++) yield* pause
  }))

const MemberKey = CacheKey.struct({ org: CacheKey.string, id: CacheKey.number })
const Members = Keyspace.make({ name: "members", key: MemberKey, value: Schema.String, ttl: "1 minute", keyTags: ["org"] })

/** A producer that counts its runs. */
const counting = Effect.gen(function*() {
  const runs = yield* Ref.make(0)
  const member = (org: string, id: number, log: Logger) =>
    Effect.gen(function*() {
      log.lines.push(`fetch ${org}/${id}`)
      const n = yield* Ref.updateAndGet(runs, (n) => n + 1)
      return `${org}/${id} #${n}`
    })
  return { runs: Ref.get(runs), member }
})

describe("memoizeFunction", () => {
  it.effect("the key is made of the arguments key reads: one producer run per key, whatever the ignored arguments", () =>
    Effect.gen(function*() {
      const { member, runs } = yield* counting
      const getMember = Members.memoizeFunction(member, { name: "member", key: (org, id) => ({ org, id }) })
      const a = logger()
      const b = logger()
      assert.strictEqual(yield* getMember("acme", 1, a), "acme/1 #1")
      assert.strictEqual(yield* getMember("acme", 1, b), "acme/1 #1", "another logger, the same key: a hit")
      assert.deepStrictEqual(b.lines, [])
      assert.strictEqual(yield* getMember("acme", 2, b), "acme/2 #2")
      assert.strictEqual(yield* getMember("globex", 1, b), "globex/1 #3")
      assert.strictEqual(yield* runs, 3)
      // Stored as the keyspace's own entries, under the key made of the arguments.
      assertSame(yield* Members.get({ org: "acme", id: 1 }), Option.some("acme/1 #1"))
      // Concurrent callers of one cold key share one run.
      const all = yield* Effect.all(Array.from({ length: 20 }, () => getMember("initech", 9, logger())), { concurrency: "unbounded" })
      assert.deepStrictEqual(new Set(all), new Set(["initech/9 #4"]))
      assert.strictEqual(yield* runs, 4)
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("getOrSet's options apply to every call; the ttl runs on the Clock", () =>
    Effect.gen(function*() {
      const { member, runs } = yield* counting
      const getMember = Members.memoizeFunction(member, { name: "member", key: (org, id) => ({ org, id }), ttl: "10 seconds" })
      yield* getMember("acme", 1, logger())
      yield* TestClock.adjust("9 seconds")
      assert.strictEqual(yield* getMember("acme", 1, logger()), "acme/1 #1")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* getMember("acme", 1, logger()), "acme/1 #2", "past its ttl: produced again")
      assert.strictEqual(yield* runs, 2)
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("a hard timeout (the keyspace's, on the Clock) fails the call with ProducerTimeoutError", () =>
    Effect.gen(function*() {
      const Bounded = Keyspace.make({ name: "bounded", key: CacheKey.string, value: Schema.Number, hardTimeout: "1 second" })
      const slow = Bounded.memoizeFunction((id: string, _log: Logger) => Effect.as(Effect.sleep("5 seconds"), id.length), {
        name: "slow",
        key: (id) => id
      })
      const call = yield* Effect.fork(Effect.flip(slow("abc", logger())))
      yield* TestClock.adjust("1 second")
      const error = yield* Fiber.join(call)
      assert.isTrue(CacheError.isProducerTimeoutError(error))
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("a receiver-first function is keyed by its receiver: two receivers, two entries", () =>
    Effect.gen(function*() {
      class Account {
        constructor(readonly id: string, readonly rates: Record<string, number>) {}
      }
      const Balances = Keyspace.make({ name: "balances", key: CacheKey.template("account", CacheKey.string, "currency", CacheKey.string), value: Schema.Number })
      let runs = 0
      const balance = Balances.memoizeFunction(
        (self: Account, currency: string) => Effect.sync(() => (runs++, self.rates[currency] ?? 0)),
        { name: "balance", key: (self, currency) => [self.id, currency] as const }
      )
      const alice = new Account("alice", { EUR: 10 })
      const bob = new Account("bob", { EUR: 20 })
      assert.strictEqual(yield* balance(alice, "EUR"), 10)
      assert.strictEqual(yield* balance(bob, "EUR"), 20)
      assert.strictEqual(yield* balance(new Account("alice", {}), "EUR"), 10, "keyed by the receiver's id, not its identity")
      assert.strictEqual(runs, 2)
      assertSame(yield* Balances.getMany([["alice", "EUR"], ["bob", "EUR"]]), [Option.some(10), Option.some(20)])
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("invalidate(...args) removes the entry of those arguments only", () =>
    Effect.gen(function*() {
      const { member, runs } = yield* counting
      const getMember = Members.memoizeFunction(member, { name: "member", key: (org, id) => ({ org, id }) })
      yield* getMember("acme", 1, logger())
      yield* getMember("acme", 2, logger())
      yield* getMember.invalidate("acme", 1, logger())
      assertSame(yield* Members.get({ org: "acme", id: 1 }), Option.none())
      assert.strictEqual(yield* getMember("acme", 2, logger()), "acme/2 #2", "the other entry is kept")
      assert.strictEqual(yield* getMember("acme", 1, logger()), "acme/1 #3")
      assert.strictEqual(yield* runs, 3)
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("invalidateAll drops this function's entries only, not another function's nor the keyspace's other entries", () =>
    Effect.gen(function*() {
      const { member, runs } = yield* counting
      const getMember = Members.memoizeFunction(member, { name: "member", key: (org, id) => ({ org, id }) })
      const getAdmin = Members.memoizeFunction((org: string) => Effect.succeed(`${org} admin`), { name: "admin", key: (org) => ({ org, id: 0 }) })
      assert.strictEqual(getMember.tag, "memoize:members:member")
      yield* getMember("acme", 1, logger())
      yield* getMember("globex", 2, logger())
      yield* getAdmin("acme")
      yield* Members.set({ org: "acme", id: 99 }, "written directly")
      yield* getMember.invalidateAll
      assertSame(yield* Members.getMany([{ org: "acme", id: 1 }, { org: "globex", id: 2 }]), [Option.none(), Option.none()])
      assertSame(yield* Members.get({ org: "acme", id: 0 }), Option.some("acme admin"))
      assertSame(yield* Members.get({ org: "acme", id: 99 }), Option.some("written directly"))
      // Produced again, and what is written after the invalidation is served.
      assert.strictEqual(yield* getMember("acme", 1, logger()), "acme/1 #3")
      assert.strictEqual(yield* getMember("acme", 1, logger()), "acme/1 #3")
      assert.strictEqual(yield* runs, 3)
      // The call's own tags are kept beside the function's (an iterator is read once, for every call).
      const tagged = Members.memoizeFunction((org: string, id: number) => Effect.succeed(`${org}/${id} tagged`), {
        name: "tagged",
        key: (org, id) => ({ org, id }),
        tags: new Set(["vip"]).values()
      })
      yield* tagged("acme", 5)
      yield* tagged("acme", 6)
      yield* Cache.invalidateTags(["vip"])
      assertSame(yield* Members.getMany([{ org: "acme", id: 5 }, { org: "acme", id: 6 }]), [Option.none(), Option.none()])
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("a cached failure it wrote carries its tag too: invalidateAll drops it", () =>
    Effect.gen(function*() {
      class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { id: Schema.Number }) {}
      const Lookups = Keyspace.make({ name: "lookups", key: CacheKey.number, value: Schema.String, cacheFailure: { schema: NotFound, ttl: "1 minute" } })
      let runs = 0
      const lookup = Lookups.memoizeFunction((id: number, _log: Logger) => Effect.suspend(() => (runs++, Effect.fail(new NotFound({ id })))), {
        name: "lookup",
        key: (id) => id
      })
      expectTypeOf(lookup).returns.toEqualTypeOf<Effect.Effect<string, NotFound, Cache.Cache>>()
      assert.strictEqual((yield* Effect.flip(lookup(1, logger())))._tag, "NotFound")
      assert.strictEqual((yield* Effect.flip(lookup(1, logger())))._tag, "NotFound")
      assert.strictEqual(runs, 1, "the failure was cached")
      yield* lookup.invalidateAll
      assert.strictEqual((yield* Effect.flip(lookup(1, logger())))._tag, "NotFound")
      assert.strictEqual(runs, 2, "invalidated: produced again")
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.effect("invalidateWhere invalidates the keyspace's entries whose key has these field values (keyTags)", () =>
    Effect.gen(function*() {
      const { member, runs } = yield* counting
      const getMember = Members.memoizeFunction(member, { name: "member", key: (org, id) => ({ org, id }) })
      yield* getMember("acme", 1, logger())
      yield* getMember("acme", 2, logger())
      yield* getMember("globex", 1, logger())
      yield* getMember.invalidateWhere({ org: "acme" })
      assertSame(yield* Members.getMany([{ org: "acme", id: 1 }, { org: "acme", id: 2 }, { org: "globex", id: 1 }]), [
        Option.none(),
        Option.none(),
        Option.some("globex/1 #3")
      ])
      assert.strictEqual(yield* getMember("acme", 2, logger()), "acme/2 #4")
      assert.strictEqual(yield* runs, 4)
      // A field the keyspace does not name in keyTags is refused, as Keyspace.invalidateWhere refuses it.
      const error = yield* Effect.flip(getMember.invalidateWhere({ id: 1 }))
      assert.isTrue(CacheError.isInvalidKeyError(error))
    }).pipe(Effect.provide(Cache.layerMemory())))

  it("a name that cannot be part of a tag is refused when the function is made", () => {
    assert.throws(() => Members.memoizeFunction((org: string) => Effect.succeed(org), { name: "no:colons", key: (org) => ({ org, id: 0 }) }), /no ":"/)
  })

  it("types: f's parameters, memoize's error channel, with and without a hard timeout", () => {
    class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
    const Users = Keyspace.make({ name: "users", key: CacheKey.number, value: User })
    const Bounded = Keyspace.make({ name: "bounded", key: CacheKey.number, value: User, hardTimeout: "1 second" })
    const fetchUser = (id: number, _log: Logger): Effect.Effect<User, FetchError> => id < 0 ? Effect.fail(new FetchError()) : Effect.succeed(new User({ id, name: "someone" }))

    const plain = Users.memoizeFunction(fetchUser, { name: "user", key: (id) => id })
    expectTypeOf(plain).parameters.toEqualTypeOf<[id: number, _log: Logger]>()
    expectTypeOf(plain).returns.toEqualTypeOf<Effect.Effect<User, FetchError, Cache.Cache>>()
    expectTypeOf(plain.invalidate).parameters.toEqualTypeOf<[id: number, _log: Logger]>()
    expectTypeOf(plain.invalidate).returns.toEqualTypeOf<Effect.Effect<void, CacheError.InvalidKeyError | CacheError.StoreError, Cache.Cache>>()
    expectTypeOf(plain.invalidateAll).toEqualTypeOf<Effect.Effect<void, CacheError.StoreError, Cache.Cache>>()
    // A number key has no fields: no invalidateWhere.
    expectTypeOf(plain).not.toHaveProperty("invalidateWhere")

    expectTypeOf(Bounded.memoizeFunction(fetchUser, { name: "user", key: (id) => id })).returns.toEqualTypeOf<
      Effect.Effect<User, FetchError | CacheError.ProducerTimeoutError, Cache.Cache>
    >()
    expectTypeOf(Users.memoizeFunction(fetchUser, { name: "user", key: (id) => id, hardTimeout: "1 second" })).returns.toEqualTypeOf<
      Effect.Effect<User, FetchError | CacheError.ProducerTimeoutError, Cache.Cache>
    >()
    expectTypeOf(Users.memoizeFunction(fetchUser, { name: "user", key: (id) => id, lockMode: "at-most-once" })).returns.toEqualTypeOf<
      Effect.Effect<User, FetchError | CacheError.LockError, Cache.Cache>
    >()
    class Gone extends Schema.TaggedError<Gone>()("Gone", {}) {}
    expectTypeOf(Users.memoizeFunction(fetchUser, { name: "user", key: (id) => id, cacheFailure: { schema: Gone, ttl: "1 minute" } })).returns.toEqualTypeOf<
      Effect.Effect<User, FetchError | Gone, Cache.Cache>
    >()
    // The producer's requirements stay in R.
    class Db extends Effect.Tag("Db")<Db, { readonly user: (id: number) => Effect.Effect<User> }>() {}
    const fromDb = Users.memoizeFunction((id: number) => Db.user(id), { name: "db", key: (id) => id })
    expectTypeOf(fromDb).returns.toEqualTypeOf<Effect.Effect<User, never, Db | Cache.Cache>>()

    // Struct keys: invalidateWhere takes part of the key.
    const getMember = Members.memoizeFunction((org: string, id: number) => Effect.succeed(`${org}/${id}`), { name: "m", key: (org, id) => ({ org, id }) })
    expectTypeOf(getMember.invalidateWhere).parameters.toEqualTypeOf<[where: Partial<{ readonly org: string; readonly id: number }>]>()

    // The key function gets f's arguments, typed.
    Users.memoizeFunction(fetchUser, {
      name: "user",
      key: (id, log) => {
        expectTypeOf(id).toEqualTypeOf<number>()
        expectTypeOf(log).toEqualTypeOf<Logger>()
        return id
      }
    })
    // @ts-expect-error the key must be the keyspace's key type
    Users.memoizeFunction(fetchUser, { name: "user", key: (id) => String(id) })
    // @ts-expect-error a name is required: invalidateAll needs a stable one
    Users.memoizeFunction(fetchUser, { key: (id) => id })
    // memoize is unchanged.
    expectTypeOf(Users.memoize((id: number) => fetchUser(id, logger()))).toEqualTypeOf<(key: number) => Effect.Effect<User, FetchError, Cache.Cache>>()
  })
})

describe("memoizeMethod", () => {
  class Account {
    constructor(readonly id: string, readonly balances: Record<string, number>) {}
    static runs = 0
    readonly balance = balance
  }
  const Balances = Keyspace.make({ name: "balances", key: CacheKey.struct({ account: CacheKey.string, currency: CacheKey.string }), value: Schema.Number, keyTags: ["account"] })
  const balance = Balances.memoizeMethod(function(this: Account, currency: string) {
    return Effect.sync(() => {
      Account.runs++
      return this.balances[currency] ?? 0
    })
  }, { name: "balance", key: (self, currency) => ({ account: self.id, currency }) })

  it.effect("a method keyed by its receiver: two receivers, two entries; invalidate takes the receiver first", () =>
    Effect.gen(function*() {
      Account.runs = 0
      const alice = new Account("alice", { EUR: 10, USD: 1 })
      const bob = new Account("bob", { EUR: 20 })
      assert.strictEqual(yield* alice.balance("EUR"), 10)
      assert.strictEqual(yield* bob.balance("EUR"), 20)
      assert.strictEqual(yield* alice.balance("EUR"), 10)
      assert.strictEqual(yield* alice.balance("USD"), 1)
      assert.strictEqual(Account.runs, 3)
      assertSame(yield* Balances.getMany([{ account: "alice", currency: "EUR" }, { account: "bob", currency: "EUR" }]), [Option.some(10), Option.some(20)])
      yield* balance.invalidate(alice, "EUR")
      assertSame(yield* Balances.get({ account: "alice", currency: "EUR" }), Option.none())
      assertSame(yield* Balances.get({ account: "bob", currency: "EUR" }), Option.some(20))
      yield* balance.invalidateWhere({ account: "alice" })
      assertSame(yield* Balances.get({ account: "alice", currency: "USD" }), Option.none())
      yield* Balances.set({ account: "carol", currency: "EUR" }, 5)
      yield* balance.invalidateAll
      assertSame(yield* Balances.getMany([{ account: "bob", currency: "EUR" }, { account: "carol", currency: "EUR" }]), [Option.none(), Option.some(5)])
    }).pipe(Effect.provide(Cache.layerMemory())))

  it("types: this-typed, the method's parameters, invalidate with the receiver first", () => {
    expectTypeOf(balance).thisParameter.toEqualTypeOf<Account>()
    expectTypeOf(balance).parameters.toEqualTypeOf<[currency: string]>()
    expectTypeOf(balance).returns.toEqualTypeOf<Effect.Effect<number, never, Cache.Cache>>()
    expectTypeOf(balance.invalidate).parameters.toEqualTypeOf<[self: Account, currency: string]>()
    const Bounded = Keyspace.make({ name: "bounded", key: CacheKey.string, value: Schema.Number, hardTimeout: "1 second" })
    const bounded = Bounded.memoizeMethod(function(this: Account, currency: string) {
      return Effect.succeed(this.balances[currency] ?? 0)
    }, { name: "balance", key: (self, currency) => `${self.id}/${currency}` })
    expectTypeOf(bounded).returns.toEqualTypeOf<Effect.Effect<number, CacheError.ProducerTimeoutError, Cache.Cache>>()
    expectTypeOf(bounded).not.toHaveProperty("invalidateWhere")
  })
})

describe("memoizeFunction on Redis", () => {
  it.live("two instances: one producer run, invalidate and invalidateAll from the other instance", () =>
    Effect.gen(function*() {
      const { url } = yield* emptiedDatabase(19)
      // A trusts the tag versions it read for its tagWindow (on the Clock), then reads them again.
      const a = yield* Layer.build(Cache.layerRedis({ url, namespace: "memo", tagWindow: "50 millis" }))
      const b = yield* Layer.build(Cache.layerRedis({ url, namespace: "memo" }))
      let runs = 0
      const getMember = Members.memoizeFunction((org: string, id: number, _log: Logger) => Effect.sync(() => `${org}/${id} #${++runs}`), {
        name: "member",
        key: (org, id) => ({ org, id })
      })
      const getAdmin = Members.memoizeFunction((org: string) => Effect.succeed(`${org} admin`), { name: "admin", key: (org) => ({ org, id: 0 }) })
      assert.strictEqual(yield* Effect.provide(getMember("acme", 1, logger()), a), "acme/1 #1")
      assert.strictEqual(yield* Effect.provide(getMember("acme", 1, logger()), b), "acme/1 #1", "the other instance reads it")
      yield* Effect.provide(getMember("acme", 2, logger()), a)
      yield* Effect.provide(getAdmin("acme"), a)
      yield* Effect.provide(settled, a)
      assert.strictEqual(runs, 2)

      yield* Effect.provide(getMember.invalidate("acme", 2, logger()), b)
      assertSame(yield* Effect.provide(Members.get({ org: "acme", id: 2 }), a), Option.none())

      yield* Effect.provide(getMember.invalidateAll, b)
      assertSame(yield* Effect.provide(Members.get({ org: "acme", id: 1 }), b), Option.none(), "B sees its own invalidation at once")
      yield* Effect.sleep("60 millis")
      assertSame(yield* Effect.provide(Members.get({ org: "acme", id: 1 }), a), Option.none(), "A, within its tagWindow")
      assertSame(yield* Effect.provide(Members.get({ org: "acme", id: 0 }), a), Option.some("acme admin"), "another function's entry is kept")
      assert.strictEqual(yield* Effect.provide(getMember("acme", 1, logger()), a), "acme/1 #3")
      assert.strictEqual(yield* Effect.provide(getMember("acme", 1, logger()), b), "acme/1 #3")
    }).pipe(Effect.scoped))
})

describe("the README's memoizeFunction example", () => {
  it.effect("compiles and behaves as written", () =>
    Effect.gen(function*() {
      const fetched: Array<string> = []
      // ---- as in the README (the declared functions defined) ----
      class Member extends Schema.Class<Member>("Member")({ org: Schema.String, id: Schema.Number, name: Schema.String }) {}
      class FetchError extends Schema.TaggedError<FetchError>()("FetchError", {}) {}
      interface Logger { readonly info: (line: string) => Effect.Effect<void> }
      const fetchMember = (org: string, id: number, logger: Logger): Effect.Effect<Member, FetchError> =>
        Effect.zipRight(logger.info(`fetch ${org}/${id}`), Effect.sync(() => (fetched.push(`${org}/${id}`), new Member({ org, id, name: `${org} ${id}` }))))
      const logger: Logger = { info: () => Effect.void }

      const Members = Keyspace.make({
        name: "members",
        key: CacheKey.struct({ org: CacheKey.string, id: CacheKey.number }),
        value: Member,
        ttl: "10 minutes",
        keyTags: ["org"]                                      // for invalidateWhere
      })

      // The key is made of the arguments that matter: the logger is left out of it.
      const getMember = Members.memoizeFunction(fetchMember, { name: "member", key: (org, id) => ({ org, id }) })
      // (org: string, id: number, logger: Logger) => Effect<Member, FetchError, Cache>

      // A method keyed by its receiver: `key` gets it first, as `self`.
      const teamMember = Members.memoizeMethod(
        function(this: Team, id: number) { return fetchMember(this.org, id, logger) },
        { name: "team-member", key: (self, id) => ({ org: self.org, id }) }
      )
      class Team {
        constructor(readonly org: string) {}
        readonly member = teamMember                          // team.member(7): Effect<Member, FetchError, Cache>
      }

      const program = Effect.gen(function* () {
        const ada = yield* getMember("acme", 1, logger)       // produced and stored
        yield* getMember("acme", 1, { info: () => Effect.void }) // a hit: the logger is not in the key
        const bob = yield* new Team("globex").member(2)       // keyed { org: "globex", id: 2 }
        yield* getMember.invalidate("acme", 1, logger)        // the entry of these arguments
        yield* teamMember.invalidate(new Team("globex"), 2)   // a method's: the receiver first
        yield* getMember.invalidateWhere({ org: "acme" })     // the keyspace's entries of org acme (keyTags)
        yield* getMember.invalidateAll                        // every entry getMember wrote, and no other
        return [ada, bob] as const
      }).pipe(Effect.provide(Cache.layerMemory()))
      // ---- end ----
      expectTypeOf(getMember).toMatchTypeOf<(org: string, id: number, logger: Logger) => Effect.Effect<Member, FetchError, Cache.Cache>>()
      expectTypeOf(new Team("x").member).returns.toEqualTypeOf<Effect.Effect<Member, FetchError, Cache.Cache>>()
      const [ada, bob] = yield* program
      assert.strictEqual(ada.name, "acme 1")
      assert.strictEqual(bob.name, "globex 2")
      assert.deepStrictEqual(fetched, ["acme/1", "globex/2"], "the second call with another logger was a hit")
    }))
})

describe("a cached failure and its tags (the read path)", () => {
  class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { id: Schema.Number }) {}
  const Lookups = Keyspace.make({ name: "lookups", key: CacheKey.number, value: Schema.String, cacheFailure: { schema: NotFound, ttl: "1 minute" } })
  const droppedByItsTag = Effect.gen(function*() {
    let runs = 0
    const call = Lookups.getOrSet(1, Effect.suspend(() => (runs++, Effect.fail(new NotFound({ id: 1 })))), { tags: ["lookup-1"] })
    yield* Effect.flip(call)
    yield* settled
    yield* Effect.flip(call)
    assert.strictEqual(runs, 1, "the failure was cached")
    yield* Cache.invalidateTags(["lookup-1"])
    assert.strictEqual((yield* Effect.flip(call))._tag, "NotFound")
    assert.strictEqual(runs, 2, "its tag invalidated: not served again")
  })

  it.effect("a cached failure written with tags is dropped by invalidateTags (memory)", () => droppedByItsTag.pipe(Effect.provide(Cache.layerMemory())))

  it.effect("a cacheAbsent marker written with tags is dropped by invalidateTags", () =>
    Effect.gen(function*() {
      const Names = Keyspace.make({ name: "absent-names", key: CacheKey.number, value: Schema.String })
      const asked: Array<ReadonlyArray<number>> = []
      const produce = (ids: ReadonlyArray<number>) => Effect.sync(() => (asked.push(ids), [] as Array<readonly [number, string]>))
      const batch = Names.getOrSetMany([1], produce, { cacheAbsent: { ttl: "1 minute" }, tags: ["absent"] })
      assertSame(yield* batch, [Option.none()])
      yield* settled
      assertSame(yield* batch, [Option.none()])
      assert.strictEqual(asked.length, 1, "the marker answered")
      yield* Cache.invalidateTags(["absent"])
      assertSame(yield* batch, [Option.none()])
      assert.strictEqual(asked.length, 2, "its tag invalidated: asked again")
    }).pipe(Effect.provide(Cache.layerMemory())))

  it.live("a cached failure written with tags is dropped by invalidateTags (Redis, the envelope read)", () =>
    Effect.gen(function*() {
      const { url } = yield* emptiedDatabase(19)
      yield* Effect.provide(droppedByItsTag, yield* Layer.build(Cache.layerRedis({ url, namespace: "memo-failures" })))
    }).pipe(Effect.scoped))
})
