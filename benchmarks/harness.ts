/**
 * The benchmark harness: every contender of a case is measured by mitata in several interleaved rounds;
 * a table gives the median and the ratio to the case's reference row.
 */
import { writeFileSync } from "node:fs"
import { cpus } from "node:os"
import { fileURLToPath } from "node:url"
import { measure } from "mitata"

export const quick = process.argv.includes("--quick")
export const rounds = quick ? 3 : 7
export const budget = quick ? 40e6 : 250e6 // mitata's min_cpu_time per measurement, in ns

/**
 * `--only=l1,getOrSet,heap,http,batch,redis` runs the named cases alone (to repeat a case and see its noise);
 * such a partial run prints its tables and leaves benchmarks/RESULTS.md as it is.
 */
const onlyArg = process.argv.find((arg) => arg.startsWith("--only="))
export const only: ReadonlySet<string> | undefined = onlyArg === undefined
  ? undefined
  : new Set(onlyArg.slice("--only=".length).split(",").filter((name) => name !== ""))
export const selected = (name: string): boolean => only === undefined || only.has(name)

export const KEYS = 1_000
export const BATCH = 1_000
export const value = (i: number) => ({ id: i, name: `user-${i}-${"x".repeat(80)}` }) // ~100 bytes as JSON

export interface Contender {
  readonly name: string
  /** Runs BATCH operations. */
  readonly batch: () => unknown
}

export interface Row {
  readonly name: string
  readonly opsPerSecond: number
}

const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

export const runCase = async (
  title: string,
  reference: string,
  contenders: ReadonlyArray<Contender>,
  batch: number = BATCH
): Promise<Result> => {
  const samples = new Map<string, Array<number>>(contenders.map((c) => [c.name, []]))
  for (let round = 0; round < rounds; round++) {
    // Rotate the order each round, so no contender always runs first or last.
    const order = contenders.map((_, i) => contenders[(i + round) % contenders.length]!)
    for (const contender of order) {
      const stats = await measure(contender.batch, { min_cpu_time: budget })
      samples.get(contender.name)!.push(batch / (stats.avg / 1e9))
    }
  }
  const rows: Array<Row> = contenders.map((c) => ({ name: c.name, opsPerSecond: median(samples.get(c.name)!) }))
  printTable(title, reference, rows)
  return { title, reference, rows }
}

export const format = (n: number) =>
  n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0)

export const tableLines = (title: string, reference: string, rows: ReadonlyArray<Row>, unit = "ops/s") => {
  const ref = rows.find((r) => r.name === reference)?.opsPerSecond ?? 1
  const width = Math.max(...rows.map((r) => r.name.length))
  return [
    `### ${title}`,
    "",
    `| contender${" ".repeat(Math.max(0, width - 9))} | ${unit} | vs ${reference} |`,
    `| ${"-".repeat(width)} | ---: | ---: |`,
    ...rows.map((r) => `| ${r.name.padEnd(width)} | ${format(r.opsPerSecond)} | ${(r.opsPerSecond / ref).toFixed(2)}× |`),
    ""
  ]
}

export const printTable = (title: string, reference: string, rows: ReadonlyArray<Row>, unit = "ops/s") =>
  console.log(tableLines(title, reference, rows, unit).join("\n"))

// ---------------------------------------------------------------------------------------------------
// Heap per entry (see benchmarks/index.ts for the method).

export const HEAP_ENTRIES = 100_000

export interface HeapRow {
  readonly name: string
  /** (full - released) / N: what the entries retain. */
  readonly retained: number
  /** (full - base) / N: the heap growth of the fill, including what outlives the structure. */
  readonly growth: number
}

export const heapTitle = `Heap per entry, ${HEAP_ENTRIES.toLocaleString("en-US")} entries (bytes; lower is better)`

export const heapLines = (rows: ReadonlyArray<HeapRow>, reference = "Map") => {
  const ref = rows.find((r) => r.name === reference)?.retained ?? 1
  const width = Math.max(9, ...rows.map((r) => r.name.length))
  return [
    `### ${heapTitle}`,
    "",
    "Method: after forced GCs, each contender is filled with the same prebuilt values (flat strings, held throughout, so not counted) through its public API, and bytes/entry is the heap freed when the filled structure is released (its runtime or scope closed, every reference dropped) divided by the entry count, so code, interned strings and globals the fill leaves behind are not charged to the entries; the heap growth of the fill (full − base) is given for reference.",
    "",
    `| contender${" ".repeat(width - 9)} | bytes/entry (full − released) | vs ${reference} | heap growth/entry (full − base) |`,
    `| ${"-".repeat(width)} | ---: | ---: | ---: |`,
    ...rows.map((r) =>
      `| ${r.name.padEnd(width)} | ${r.retained.toFixed(0)} | ${(r.retained / ref).toFixed(2)}× | ${r.growth.toFixed(0)} |`
    ),
    ""
  ]
}

const gcOrFail = (): (() => void) => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error("run with node --expose-gc (npm run bench does)")
  return gc
}

/** Several full collections, with a macrotask turn between them so pending callbacks and finalizers run. */
const collect = async (gc: () => void) => {
  for (let i = 0; i < 4; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  gc()
}

/**
 * Measures one contender: `fill` builds and fills a fresh structure and returns it; `release` closes
 * it (a runtime's dispose, a client's disconnect); then the last reference is dropped.
 */
export const measureHeap = async <H>(
  name: string,
  fill: () => Promise<H> | H,
  release: (held: H) => Promise<unknown> | unknown = () => undefined,
  entries: number = HEAP_ENTRIES
): Promise<HeapRow> => {
  const gc = gcOrFail()
  await collect(gc)
  const base = process.memoryUsage().heapUsed
  // The only reference to the structure lives in this box, so clearing it releases the structure.
  const box: { held: H | undefined } = { held: await fill() }
  await collect(gc)
  const full = process.memoryUsage().heapUsed
  await release(box.held!)
  box.held = undefined
  await collect(gc)
  const released = process.memoryUsage().heapUsed
  return { name, retained: (full - released) / entries, growth: (full - base) / entries }
}

export interface Result {
  readonly title: string
  readonly reference: string
  readonly rows: ReadonlyArray<Row>
  readonly unit?: string
  /** A table of its own shape (e.g. the stampede's), already formatted. */
  readonly lines?: ReadonlyArray<string>
}

export const writeResults = (cases: ReadonlyArray<Result>) => {
  if (only !== undefined) {
    console.log(`Partial run (--only=${[...only].join(",")}): benchmarks/RESULTS.md left as it is`)
    return
  }
  const lines = [
    "# Benchmark results",
    "",
    `Run ${new Date().toISOString().slice(0, 10)} with \`npm run bench${quick ? " -- --quick" : ""}\`; Node ${process.version}, ` +
    `${cpus().length} cores (${cpus()[0]?.model ?? "unknown CPU"}). Ratios are within one run; absolute numbers drift on shared machines.`,
    "",
    ...cases.flatMap((c) => c.lines ?? tableLines(c.title, c.reference, c.rows, c.unit ?? "ops/s"))
  ]
  // Compiled, this module runs from dist-bench/benchmarks/: the results belong in benchmarks/.
  const target = import.meta.url.includes("/dist-bench/") ? "../../benchmarks/RESULTS.md" : "./RESULTS.md"
  writeFileSync(fileURLToPath(new URL(target, import.meta.url)), lines.join("\n"))
  console.log("Wrote benchmarks/RESULTS.md")
}

