/**
 * Architecture rules for src/, checked on the import graph that `ts.preProcessFile` reads from each
 * file (imports, `import type`, re-exports, dynamic imports):
 *
 * 1. No import cycle among src/**\/*.ts (type-only imports count too).
 * 2. Files under src/internal/ import none of `ioredis`, `cluster-key-slot`, `lru-cache`,
 *    `memcache-client`, nor any module under src/CacheStore/, src/CacheLock/, src/CacheBus/, nor
 *    src/Redis.ts.
 * 3. Nothing src/index.ts reaches imports an optional peer dependency (`memcache-client`): an
 *    application without it imports the main module. Such a backend is its own subpath module.
 * 4. Runtime neutrality: every file src/portable.ts reaches (the engine, the envelope, key codecs,
 *    serializers, the store port, the memory store, ...) imports no Node built-in (`node:*`, or a bare
 *    built-in name such as `crypto`), only packages known to run anywhere, and names no Node global
 *    (`Buffer`, `process`, `require`, `__dirname`, `__filename`, `setImmediate`, `global`) as a
 *    value or a type. So Bun, Deno, browsers and Workers load `effect-cachekit/portable`.
 *
 * Exits non-zero with each violation listed.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import { isBuiltin } from "node:module"
import { dirname, join, relative, resolve, sep } from "node:path"
import ts from "typescript"

const root = join(import.meta.dirname, "..")
const srcDir = join(root, "src")

const rel = (file: string): string => relative(root, file).split(sep).join("/")

const walk = (dir: string): Array<string> =>
  readdirSync(dir).sort().flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return walk(path)
    return name.endsWith(".ts") && !name.endsWith(".d.ts") ? [path] : []
  })

/** The source file a relative specifier names (NodeNext style: `./x.js` is `./x.ts`), if any. */
const resolveRelative = (from: string, specifier: string): string | undefined => {
  const base = resolve(dirname(from), specifier)
  const candidates = [
    base.replace(/\.(m|c)?js$/, ".$1ts"),
    base,
    `${base}.ts`,
    join(base, "index.ts")
  ]
  return candidates.find((candidate) => candidate.endsWith(".ts") && existsSync(candidate) && statSync(candidate).isFile())
}

interface Import {
  readonly specifier: string
  readonly line: number
  /** The src file it resolves to, for a relative specifier that names one. */
  readonly target: string | undefined
}

const files = walk(srcDir)
const imports = new Map<string, Array<Import>>()
for (const file of files) {
  const text = readFileSync(file, "utf8")
  const info = ts.preProcessFile(text, true, true)
  const lineOf = (pos: number) => text.slice(0, pos).split("\n").length
  const found = info.importedFiles.map(({ fileName, pos }) => ({ fileName, pos }))
  // ts.preProcessFile leaves out `export * as X from "..."` (the barrel's every line): read those from the syntax tree.
  const sourceFile = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false)
  for (const statement of sourceFile.statements) {
    if (!ts.isExportDeclaration(statement) || statement.moduleSpecifier === undefined) continue
    if (!ts.isStringLiteral(statement.moduleSpecifier)) continue
    const pos = statement.moduleSpecifier.getStart(sourceFile) + 1
    if (!found.some((f) => f.pos === pos)) found.push({ fileName: statement.moduleSpecifier.text, pos })
  }
  imports.set(
    file,
    found.map(({ fileName, pos }) => ({
      specifier: fileName,
      line: lineOf(pos),
      target: fileName.startsWith(".") ? resolveRelative(file, fileName) : undefined
    }))
  )
}

const problems: Array<string> = []

// 1. Cycles: depth-first search over the graph; a back edge closes a cycle, printed from its start.
const state = new Map<string, "visiting" | "done">()
const stack: Array<string> = []
const seenCycles = new Set<string>()
const visit = (file: string): void => {
  state.set(file, "visiting")
  stack.push(file)
  for (const { target } of imports.get(file) ?? []) {
    if (target === undefined || !imports.has(target)) continue
    const s = state.get(target)
    if (s === "visiting") {
      const cycle = stack.slice(stack.indexOf(target)).map(rel)
      // One report per cycle, whichever file the search entered it from.
      const start = cycle.indexOf([...cycle].sort()[0]!)
      const canonical = [...cycle.slice(start), ...cycle.slice(0, start)]
      const key = canonical.join(" -> ")
      if (!seenCycles.has(key)) {
        seenCycles.add(key)
        problems.push(`import cycle: ${[...canonical, canonical[0]].join(" -> ")}`)
      }
    } else if (s === undefined) {
      visit(target)
    }
  }
  stack.pop()
  state.set(file, "done")
}
for (const file of files) if (!state.has(file)) visit(file)

// 2. What src/internal/ may not depend on.
const forbiddenPackages = ["ioredis", "cluster-key-slot", "lru-cache", "memcache-client"]
const forbiddenDirs = ["src/CacheStore/", "src/CacheLock/", "src/CacheBus/"]
const forbiddenFiles = ["src/Redis.ts"]
const internalDir = join(srcDir, "internal") + sep
for (const file of files) {
  if (!file.startsWith(internalDir)) continue
  for (const { line, specifier, target } of imports.get(file) ?? []) {
    const where = `${rel(file)}:${line}`
    const pkg = forbiddenPackages.find((name) => specifier === name || specifier.startsWith(`${name}/`))
    if (pkg !== undefined) {
      problems.push(`${where}: src/internal/ must not import "${pkg}" (imports "${specifier}")`)
      continue
    }
    if (!specifier.startsWith(".")) continue
    // Judge the path the specifier names even when no file is there (yet).
    const named = target ?? resolve(dirname(file), specifier).replace(/\.(m|c)?js$/, ".$1ts")
    const path = rel(named)
    if (forbiddenFiles.includes(path) || forbiddenDirs.some((dir) => path.startsWith(dir))) {
      problems.push(`${where}: src/internal/ must not import ${path} (imports "${specifier}")`)
    }
  }
}

// 3. The main module's reach: every file it imports, directly or not, and the packages they import.
const optionalPeers = ["memcache-client"]
const barrel = join(srcDir, "index.ts")
const reached = new Map<string, string>([[barrel, rel(barrel)]]) // file -> the import path that reaches it
const queue = [barrel]
while (queue.length > 0) {
  const file = queue.shift()!
  for (const { line, specifier, target } of imports.get(file) ?? []) {
    const pkg = optionalPeers.find((name) => specifier === name || specifier.startsWith(`${name}/`))
    if (pkg !== undefined) {
      problems.push(`${rel(file)}:${line}: "${pkg}" is an optional peer dependency, yet src/index.ts reaches this file (${reached.get(file)})`)
    }
    if (target !== undefined && imports.has(target) && !reached.has(target)) {
      reached.set(target, `${reached.get(file)} -> ${rel(target)}`)
      queue.push(target)
    }
  }
}

// 4. Runtime neutrality of what src/portable.ts reaches.
const portable = join(srcDir, "portable.ts")
const neutralPackages = ["effect", "@effect/platform", "lru-cache", "@noble/hashes"]
const nodeGlobals = new Set(["Buffer", "process", "require", "__dirname", "__filename", "setImmediate", "global"])
const neutral = new Set<string>([portable])
const neutralQueue = [portable]
while (neutralQueue.length > 0) {
  const file = neutralQueue.shift()!
  for (const { target } of imports.get(file) ?? []) {
    if (target !== undefined && imports.has(target) && !neutral.has(target)) {
      neutral.add(target)
      neutralQueue.push(target)
    }
  }
}
/** Whether `node` is a name that does not refer to a binding in scope: a property or member name. */
const isMemberName = (node: ts.Identifier): boolean => {
  const parent = node.parent
  return (ts.isPropertyAccessExpression(parent) && parent.name === node) ||
    (ts.isQualifiedName(parent) && parent.right === node) ||
    ((ts.isPropertyAssignment(parent) || ts.isPropertySignature(parent) || ts.isPropertyDeclaration(parent) ||
      ts.isMethodDeclaration(parent) || ts.isMethodSignature(parent) || ts.isGetAccessor(parent) || ts.isSetAccessor(parent) ||
      ts.isEnumMember(parent)) && parent.name === node)
}
for (const file of [...neutral].sort()) {
  for (const { line, specifier } of imports.get(file) ?? []) {
    if (specifier.startsWith(".")) continue
    const where = `${rel(file)}:${line}`
    if (specifier.startsWith("node:") || isBuiltin(specifier)) {
      problems.push(`${where}: runtime-neutral (reached from src/portable.ts) yet imports the Node built-in "${specifier}"`)
    } else if (!neutralPackages.some((name) => specifier === name || specifier.startsWith(`${name}/`))) {
      problems.push(`${where}: runtime-neutral (reached from src/portable.ts) yet imports "${specifier}", not one of ${neutralPackages.join(", ")}`)
    }
  }
  const text = readFileSync(file, "utf8")
  const sourceFile = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true)
  const visit = (node: ts.Node): void => {
    if (ts.isIdentifier(node) && nodeGlobals.has(node.text) && !isMemberName(node)) {
      const { line } = sourceFile.getLineAndCharacterOfPosition(node.getStart(sourceFile))
      problems.push(`${rel(file)}:${line + 1}: runtime-neutral (reached from src/portable.ts) yet names the Node global "${node.text}"`)
    }
    ts.forEachChild(node, visit)
  }
  visit(sourceFile)
}

if (problems.length > 0) {
  console.error(`architecture: ${problems.length} violation(s) in src/`)
  for (const problem of problems) console.error(`  ${problem}`)
  process.exit(1)
}
const edges = [...imports.values()].reduce((n, list) => n + list.filter((i) => i.target !== undefined).length, 0)
console.log(
  `architecture: ${files.length} files, ${edges} local imports: no cycle; src/internal/ stays free of backends; ` +
    `src/index.ts reaches ${reached.size} files, none importing ${optionalPeers.join(", ")}; ` +
    `src/portable.ts reaches ${neutral.size} files, none importing a Node built-in or naming a Node global`
)
