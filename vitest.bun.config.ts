/**
 * `npm run test:bun`: the memory suites under Bun (`bun --bun vitest`): the memory store and its
 * conformance suite, the engine over it (getOrSet, batches, tags, background refresh, locks), key
 * codecs, serializers, events and the portable entry. Some of these files also hold Redis cases, so the Redis
 * server of the test setup is started too. A setup file refuses to run anywhere but on Bun.
 */
import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: [
      "test/Background.test.ts",
      "test/Batch.test.ts",
      "test/Cache.test.ts",
      "test/CacheKey.test.ts",
      "test/CacheLock.test.ts",
      "test/CacheSerializer.test.ts",
      "test/Events.test.ts",
      "test/Keyspace.test.ts",
      "test/MemoryStore.test.ts",
      "test/Portable.test.ts",
      "test/Tags.test.ts",
      "test/internal.test.ts"
    ],
    globalSetup: ["test/setup/redis.ts"],
    setupFiles: ["test/setup/onBun.ts"],
    testTimeout: 30_000
  }
})
