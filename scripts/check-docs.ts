/**
 * Typechecks every ```ts example in the JSDoc of src/: each becomes a module under .docs-check/ where
 * "effect-cachekit" resolves to src/index.ts, then tsc checks them all. Exits non-zero on any error.
 */
import { execFileSync } from "node:child_process"
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"

const root = join(import.meta.dirname, "..")
const out = join(root, ".docs-check")
rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })

const sources = readdirSync(join(root, "src")).filter((file) => file.endsWith(".ts"))
let count = 0
for (const file of sources) {
  const text = readFileSync(join(root, "src", file), "utf8")
  const blocks = text.matchAll(/```ts\n([\s\S]*?)```/g)
  for (const block of blocks) {
    const code = block[1]!.split("\n").map((line) => line.replace(/^\s*\* ?/, "")).join("\n")
    const name = `${file.replace(/\.ts$/, "")}_${++count}.ts`
    writeFileSync(join(out, name), `${code}\nexport {}\n`)
  }
}
writeFileSync(
  join(out, "tsconfig.json"),
  JSON.stringify({
    extends: "../tsconfig.json",
    compilerOptions: {
      noUnusedLocals: false,
      noUnusedParameters: false,
      baseUrl: "..",
      paths: { "effect-cachekit": ["./src/index.ts"], "effect-cachekit/*": ["./src/*.ts"] }
    },
    include: ["./*.ts"]
  })
)
try {
  execFileSync(join(root, "node_modules", ".bin", "tsc"), ["--noEmit", "-p", out], { stdio: "inherit" })
  console.log(`docs: ${count} examples typecheck`)
} catch {
  console.error(`docs: examples in src/ fail to typecheck (generated files are in .docs-check/)`)
  process.exit(1)
}
