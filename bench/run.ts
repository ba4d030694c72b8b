/**
 * Runs Patina's benchmarks: `npm run bench [-- filter…]`.
 *
 * Prints a header naming the machine, runs every module whose name contains one of the filter
 * arguments (all modules without one), prints each module's tables as it finishes and writes
 * them to bench/results/<name>.json, then prints a summary against the stated goals.
 * `BENCH_QUICK=1` divides every size by 10 for a smoke run.
 */
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import {
  QUICK,
  renderTable,
  REPEATS,
  type BenchContext,
  type BenchModule,
  type BigFixture,
  type Machine,
  type ResultTable,
  type SummaryLine,
} from './lib/common.ts'
import { engineAddColumn } from './engine-add-column.ts'
import { engineApply } from './engine-apply.ts'
import { engineSize } from './engine-size.ts'
import { engineWrites } from './engine-writes.ts'
import { clientWrites } from './client-writes.ts'
import { clusterDetection } from './cluster-detection.ts'
import { beginEventLoopWatch, eventLoopLine, eventLoopSummary } from './lib/event-loop.ts'
import { buildFixture } from './lib/fixture.ts'
import { httpQueries } from './http-queries.ts'
import { httpWrites } from './http-writes.ts'
import { measureMembership } from './membership-sim.ts'
import { replicationBytes } from './replication-bytes.ts'
import { replicationCatchup } from './replication-catchup.ts'
import { replicationPartition } from './replication-partition.ts'
import { replicationPropagation } from './replication-propagation.ts'
import { subsFanout } from './subs-fanout.ts'
import { subsIncremental } from './subs-incremental.ts'
import { subsPropagation } from './subs-propagation.ts'

/** Every benchmark module, in run order. Later benchmarks (HTTP, cluster) are added here. */
const MODULES: readonly BenchModule[] = [
  engineWrites,
  engineApply,
  engineAddColumn,
  engineSize,
  httpWrites,
  httpQueries,
  clientWrites,
  {
    name: 'membership-sim',
    title: 'SWIM + Lifeguard in the simulator: full view, crash detection, false positives',
    run: async (ctx) =>
      measureMembership((line) => {
        ctx.progress(line)
      }),
  },
  clusterDetection,
  replicationPropagation,
  replicationPartition,
  replicationCatchup,
  replicationBytes,
  subsPropagation,
  subsFanout,
  subsIncremental,
]

const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url))
const ENGINE_SOURCES = fileURLToPath(new URL('../packages/agent/src/', import.meta.url))

/** A short hash of every .ts file under packages/agent/src: which engine code was measured. */
function sourcesHash(dir: string): string {
  const hash = createHash('sha256')
  const files = readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .sort()
  for (const f of files) {
    hash.update(f)
    hash.update(readFileSync(join(dir, f)))
  }
  return `${hash.digest('hex').slice(0, 12)} (${files.length} files)`
}

const TEMP_PREFIX = 'patina-bench-'

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Removes temp directories of earlier runs whose process is gone (interrupted runs). */
function removeStaleDirs(): void {
  for (const name of readdirSync(os.tmpdir())) {
    const match = new RegExp(`^${TEMP_PREFIX}(\\d+)-`).exec(name)
    if (match === null || isAlive(Number(match[1]))) continue
    rmSync(join(os.tmpdir(), name), { recursive: true, force: true })
    process.stderr.write(`removed ${name}, left by an interrupted run\n`)
  }
}

/** The 1, 5 and 15 minute load averages: other work on the machine skews every figure. */
function load(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')
}

function machine(): Machine {
  const require = createRequire(import.meta.url)
  const pkg = require('better-sqlite3/package.json') as { version: string }
  const db = new Database(':memory:')
  const sqlite = db.prepare('SELECT sqlite_version()').pluck().get() as string
  db.close()
  const cpus = os.cpus()
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    totalMemoryBytes: os.totalmem(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    betterSqlite3: pkg.version,
    sqlite,
    tmpdir: os.tmpdir(),
    engineSources: sourcesHash(ENGINE_SOURCES),
  }
}

function header(m: Machine, started: Date): string {
  const gib = (m.totalMemoryBytes / 2 ** 30).toFixed(1)
  const busy = (os.loadavg()[0] ?? 0) > m.cores / 2
  return [
    ...(busy
      ? [`WARNING: the machine is busy (load above ${m.cores / 2}): figures will be low and noisy`]
      : []),
    `Patina benchmarks, ${started.toISOString()}${QUICK ? ', BENCH_QUICK=1 (sizes / 10)' : ''}`,
    `machine: ${m.cpu}, ${m.cores} cores, ${gib} GiB RAM, ${m.os}`,
    `software: Node ${m.node}, better-sqlite3 ${m.betterSqlite3}, SQLite ${m.sqlite}`,
    `engine: packages/agent/src via tsx, sources sha256 ${m.engineSources}`,
    `files: in ${m.tmpdir}; engine and baselines both WAL, synchronous=NORMAL, cache_size=-65536`,
    `load average at start: ${load()} (1/5/15 min)`,
    `each configuration runs ${REPEATS} times: median [min-max]`,
  ].join('\n')
}

/** JSON with bigints as numbers (strings when they do not fit a double exactly). */
function toJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v: unknown) => {
      if (typeof v !== 'bigint') return v
      return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString()
    },
    2,
  )
}

function summaryTable(lines: readonly { module: string; line: SummaryLine }[]): ResultTable {
  return {
    title: 'Summary',
    headers: ['benchmark', 'metric', 'value', 'goal', 'met'],
    rows: lines.map(({ module, line }) => [
      module,
      line.metric,
      line.value,
      line.goal ?? '',
      line.met === undefined ? '' : line.met ? 'yes' : 'NO',
    ]),
  }
}

async function main(): Promise<number> {
  const filters = process.argv.slice(2).filter((a) => a !== '--')
  const selected = MODULES.filter(
    (m) => filters.length === 0 || filters.some((f) => m.name.includes(f)),
  )
  if (selected.length === 0) {
    process.stderr.write(
      `no benchmark matches ${filters.join(', ')}; modules: ${MODULES.map((m) => m.name).join(', ')}\n`,
    )
    return 2
  }
  const started = new Date()
  const m = machine()
  // The run is synchronous, so Ctrl-C kills it without cleanup: sweep what such runs left.
  removeStaleDirs()
  const dir = mkdtempSync(join(os.tmpdir(), `${TEMP_PREFIX}${process.pid}-`))
  const cleanup = (): void => {
    rmSync(dir, { recursive: true, force: true })
  }
  let fixture: BigFixture | undefined
  const progress = (line: string): void => {
    process.stderr.write(`  · ${line}\n`)
  }
  const ctx: BenchContext = {
    dir,
    machine: m,
    fixture: () => (fixture ??= buildFixture(dir, progress)),
    progress,
  }
  const out = (text: string): void => {
    process.stdout.write(`${text}\n`)
  }
  const summary: { module: string; line: SummaryLine }[] = []
  try {
    out(header(m, started))
    out(`benchmarks: ${selected.map((s) => s.name).join(', ')}\n`)
    mkdirSync(RESULTS_DIR, { recursive: true })
    for (const module of selected) {
      out(`=== ${module.name}: ${module.title}\n`)
      const loadBefore = load()
      const moduleStart = performance.now()
      const watch = beginEventLoopWatch()
      const report = await module.run(ctx)
      const eventLoop = watch.end()
      const seconds = (performance.now() - moduleStart) / 1000
      for (const table of report.tables) out(`${renderTable(table)}\n`)
      const loopLine = eventLoopLine(eventLoop)
      if (loopLine !== null) out(`${loopLine}\n`)
      const loadAfter = load()
      out(`(${module.name} took ${seconds.toFixed(1)} s; load average after: ${loadAfter})\n`)
      const loopSummary = eventLoopSummary(eventLoop)
      const moduleSummary = [...report.summary, ...(loopSummary === null ? [] : [loopSummary])]
      for (const line of moduleSummary) summary.push({ module: module.name, line })
      const file = join(RESULTS_DIR, `${module.name}.json`)
      writeFileSync(
        file,
        `${toJson({
          name: module.name,
          title: module.title,
          started: started.toISOString(),
          seconds,
          loadAverageBefore: loadBefore,
          loadAverageAfter: loadAfter,
          quick: QUICK,
          repeats: REPEATS,
          machine: m,
          tables: report.tables,
          summary: moduleSummary,
          eventLoop,
          data: report.data,
        })}\n`,
      )
    }
    out(renderTable(summaryTable(summary)))
    const total = (Date.now() - started.getTime()) / 1000
    out(`\ntotal ${total.toFixed(1)} s; JSON in ${RESULTS_DIR}`)
    return 0
  } finally {
    cleanup()
  }
}

process.exitCode = await main()
