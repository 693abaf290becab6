/**
 * Checks the JSDoc of the public modules: every .ts file under src/ and its subfolders (src/CacheStore/,
 * src/CacheLock/, src/testing.ts, ...) except src/internal/.
 *
 * 1. Every exported name (not marked `@internal`) has `@since` and, on one of its declarations, an
 *    `@example` with a ```ts block.
 * 2. Every ```ts example typechecks: each becomes a module under .docs-check/ where "effect-cachekit"
 *    resolves to src/index.ts and "effect-cachekit/<path>" to src/<path>.ts, then tsc checks them all.
 *
 * Exits non-zero on any missing doc or type error.
 */
import { execFileSync } from "node:child_process"
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { join, relative, sep } from "node:path"
import ts from "typescript"

const root = join(import.meta.dirname, "..")
const src = join(root, "src")
const out = join(root, ".docs-check")
rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })

/** The public sources: src/**\/*.ts but not src/internal/ nor declaration files. */
const walk = (dir: string): Array<string> =>
  readdirSync(dir).sort().flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return path === join(src, "internal") ? [] : walk(path)
    return name.endsWith(".ts") && !name.endsWith(".d.ts") ? [path] : []
  })
const sources = walk(src).map((path) => relative(src, path).split(sep).join("/"))

/** Each exported name of `file` lacking `@since`, or an `@example` with a ```ts block on any declaration. */
const missingDocs = (file: string, text: string): Array<string> => {
  const sourceFile = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true)
  const names = new Map<string, { since: boolean; example: boolean; internal: boolean }>()
  for (const statement of sourceFile.statements) {
    const modifiers = ts.canHaveModifiers(statement) ? ts.getModifiers(statement) : undefined
    if (!modifiers?.some((modifier) => modifier.kind === ts.SyntaxKind.ExportKeyword)) continue
    const declarations: Array<ts.Node> = ts.isVariableStatement(statement) ? [...statement.declarationList.declarations] : [statement]
    for (const declaration of declarations) {
      const name = (declaration as { name?: ts.Node }).name?.getText(sourceFile) ?? "default"
      const tags = ts.getJSDocTags(declaration)
      const has = (tag: string) => tags.some((t) => t.tagName.text === tag)
      const example = tags.some((t) => t.tagName.text === "example" && /```ts\b/.test(ts.getTextOfJSDocComment(t.comment) ?? ""))
      const entry = names.get(name) ?? { since: false, example: false, internal: false }
      names.set(name, { since: entry.since || has("since"), example: entry.example || example, internal: entry.internal || has("internal") })
    }
  }
  return [...names].flatMap(([name, { example, internal, since }]) => {
    if (internal || (since && example)) return []
    const lacks = [since ? [] : ["@since"], example ? [] : ["@example"]].flat()
    return [`${name} (no ${lacks.join(", no ")})`]
  })
}

let count = 0
const undocumented: Array<string> = []
for (const file of sources) {
  const text = readFileSync(join(src, file), "utf8")
  for (const missing of missingDocs(file, text)) undocumented.push(`src/${file}: ${missing}`)
  const blocks = text.matchAll(/```ts\n([\s\S]*?)```/g)
  for (const block of blocks) {
    const code = block[1]!.split("\n").map((line) => line.replace(/^\s*\* ?/, "")).join("\n")
    const name = `${file.replace(/\.ts$/, "").replaceAll("/", "_")}_${++count}.ts`
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
let failed = false
if (undocumented.length > 0) {
  console.error(`docs: ${undocumented.length} export(s) without @since or a \`\`\`ts @example:`)
  for (const line of undocumented) console.error(`  ${line}`)
  failed = true
}
try {
  execFileSync(join(root, "node_modules", ".bin", "tsc"), ["--noEmit", "-p", out], { stdio: "inherit" })
  console.log(`docs: ${count} examples in ${sources.length} files typecheck`)
} catch {
  console.error(`docs: examples in src/ fail to typecheck (generated files are in .docs-check/)`)
  failed = true
}
if (failed) process.exit(1)
