import { writeSync } from "node:fs"
import type { Reporter, TestModule } from "vitest/node"
import { defineConfig } from "vitest/config"

/** Ends the run with one plain line, `tests: N passed, N failed`, for tools that read the last line. */
class SummaryLine implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>) {
    let passed = 0
    let failed = 0
    let skipped = 0
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state
        if (state === "passed") passed++
        else if (state === "failed") failed++
        else skipped++
      }
    }
    // Printed as the process ends, after every other reporter's summary.
    process.once("exit", () => writeSync(1, `\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`))
  }
}

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/setup/redis.ts", "test/setup/memcached.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    reporters: ["default", new SummaryLine()]
  }
})
