/**
 * Setup of `npm run test:bun`: refuses to run the suites anywhere but on Bun, so a pass there means
 * they passed on Bun.
 */
const bun = (process.versions as Record<string, string | undefined>).bun
if (bun === undefined) throw new Error("vitest.bun.config.ts runs under Bun only: npm run test:bun")
