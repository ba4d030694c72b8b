/**
 * Benchmark: what one change costs a subscription over a big table, maintained incrementally
 * versus re-running its query, in-process.
 *
 * Method. A replicated table `big` of BIG_ROWS rows (1,000,000; BENCH_QUICK=1: 100,000), filled
 * through the engine (Replica). The subscriptions manager runs in this process as main.ts builds
 * it (packages/agent/test/subs/harness.ts does the same): a Replica, a ReaderPool of its own for
 * evaluations (one reader process, as `[subscriptions] reader_threads = 1`) and `Subscriptions`,
 * with `batch_ms = 0` (no batching delay: the cost, not the wait) and `full_eval_interval_ms =
 * 0`. A listener is opened with `Subscriptions.subscribe()` (the same async generator of NDJSON
 * chunks the HTTP route pipes to the socket), so no HTTP is involved.
 *
 * Two query shapes, one at a time (the other dropped, so each change is matched by one
 * subscription):
 *   - incremental: `SELECT * FROM big WHERE n % 10 = 0` (a tenth of the rows, no index): a
 *     change re-runs the query restricted to the changed primary key and diffs those rows;
 *   - full re-evaluation: `SELECT grp, count(*), sum(n) FROM big GROUP BY grp` (100 groups): a
 *     change re-runs the whole query and diffs its result.
 * Each change is one single-row UPDATE committed through the Replica, then the clock runs until
 * the listener has the change events (one `update`; for GROUP BY a `delete` and an `insert`).
 * CHANGES changes per shape, one at a time. Reported per change: commit to event (the whole
 * cost a writer's change puts on a subscription, commit included), the commit alone, and the
 * evaluation alone (`patina_subs_evaluation_duration_seconds`, kind `keys` or `full`).
 *
 * Baseline, same run, same file: the same query run in full with better-sqlite3 (a read-only
 * connection in this process, warm cache, every row read), REPEATS + 1 times (the first not
 * counted). The ratio (commit to event / full query) shows what maintaining the result
 * incrementally saves over re-running it; for GROUP BY it is above 1, as that shape re-runs
 * the query and diffs on every change.
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { LineSplitter } from '@patina/protocol'
import { pino } from 'pino'
import { parseConfig } from '../packages/agent/src/config/load-config.ts'
import { Replica } from '../packages/agent/src/crdt/replica.ts'
import { createAgentMetrics } from '../packages/agent/src/metrics/agent-metrics.ts'
import { createSubsMetrics } from '../packages/agent/src/metrics/subs-metrics.ts'
import { ReaderPool } from '../packages/agent/src/query/reader-pool.ts'
import { Subscriptions, type Connection } from '../packages/agent/src/subs/subscriptions.ts'
import { machineLine } from './lib/agents.ts'
import {
  fmtInt,
  QUICK,
  REPEATS,
  stats,
  type BenchContext,
  type BenchModule,
  type BenchReport,
  type Stats,
} from './lib/common.ts'
import { percentile } from './lib/http.ts'

const BIG_ROWS = QUICK ? 100_000 : 1_000_000
const FILL_CHUNK = 100_000
/** Changes measured per shape, one at a time. */
const CHANGES = QUICK ? 20 : 100
/** Untimed changes first (JIT, the reader's statement cache). */
const WARMUP_CHANGES = 3
/** A change whose events have not arrived after this fails the run. */
const EVENT_TIMEOUT_MS = 60_000
/** A dropped subscription (no listener) is gone after this; keeps the shapes apart. */
const IDLE_TIMEOUT_MS = 100
const GROUPS = 100

const SCHEMA = 'CREATE TABLE big (id INTEGER NOT NULL PRIMARY KEY, grp INTEGER, v TEXT, n INTEGER);'

interface Shape {
  readonly name: string
  readonly mode: 'incremental' | 'full'
  readonly sql: string
  /** Change events one UPDATE produces. */
  readonly eventsPerChange: number
}

const SHAPES: readonly Shape[] = [
  {
    name: 'SELECT * FROM big WHERE n % 10 = 0',
    mode: 'incremental',
    sql: 'SELECT * FROM big WHERE n % 10 = 0',
    eventsPerChange: 1,
  },
  {
    name: 'SELECT grp, count(*), sum(n) ... GROUP BY grp',
    mode: 'full',
    sql: 'SELECT grp, count(*) AS rows, sum(n) AS total FROM big GROUP BY grp',
    eventsPerChange: 2,
  },
]

interface ShapeResult {
  readonly shape: string
  readonly mode: string
  readonly resultRows: number
  readonly firstEvalMs: number
  /** Per change: commit to the last event of the change received, ms. */
  readonly changeMs: readonly number[]
  /** Per change: the Replica commit alone, ms. */
  readonly commitMs: readonly number[]
  /** Mean evaluation time per change, from the manager's histogram, ms. */
  readonly evalMeanMs: number
  /** The same query in full with better-sqlite3, ms per run. */
  readonly fullQueryMs: Stats
}

function bulkInsert(offset: number, count: number): string {
  // n = id for every row: a tenth of the rows have n % 10 = 0.
  return (
    `WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < ${count}) ` +
    `INSERT INTO big (id, grp, v, n) SELECT x + ${offset}, (x + ${offset}) % ${GROUPS}, ` +
    `'v-' || (x + ${offset}), x + ${offset} FROM s`
  )
}

/** The sum and count of a histogram's samples with `labels`, from Prometheus text. */
async function histogram(
  registry: { metrics(): Promise<string> },
  name: string,
  labels: string,
): Promise<{ sum: number; count: number }> {
  const text = await registry.metrics()
  const read = (suffix: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}_${suffix}{${labels}} `))
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return { sum: read('sum'), count: read('count') }
}

/** A connection for `Subscriptions.subscribe()`: nothing is buffered, nothing to destroy. */
function connection(): Connection & { close(): void } {
  const closed = new AbortController()
  return {
    signal: closed.signal,
    closing: new AbortController().signal,
    destroy: () => {
      closed.abort()
    },
    bufferedBytes: () => 0,
    close: () => {
      closed.abort()
    },
  }
}

/** `promise`'s value, or null if `deadline` (performance.now() time) passes first. */
async function withDeadline<T>(promise: Promise<T>, deadline: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<null>((resolve) => {
        timer = setTimeout(() => {
          resolve(null)
        }, deadline - performance.now())
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

const encoder = new TextEncoder()

async function measureShape(
  shape: Shape,
  replica: Replica,
  subs: Subscriptions,
  registry: { metrics(): Promise<string> },
  plain: Database.Database,
  nextChange: () => number,
  progress: (line: string) => void,
): Promise<ShapeResult> {
  // Baseline first, on a warm cache: the same query, every row read.
  const stmt = plain.prepare(shape.sql).raw()
  let resultRows = 0
  const fullRuns: number[] = []
  for (let r = 0; r <= REPEATS; r++) {
    const started = performance.now()
    resultRows = stmt.all().length
    if (r > 0) fullRuns.push(performance.now() - started)
  }
  const conn = connection()
  const firstStarted = performance.now()
  const opened = await subs.subscribe({ sql: shape.sql }, { skipRows: true }, conn)
  const lines = opened.lines
  const firstEvalMs = performance.now() - firstStarted
  const mode = subs.list().find((s) => s.id === opened.id)?.mode ?? '?'
  if (mode !== shape.mode) throw new Error(`${shape.name}: planned ${mode}, not ${shape.mode}`)
  // The stream comes as text chunks; the splitter takes the bytes a socket would carry.
  const splitter = new LineSplitter()
  // columns, then eoq.
  let eoq = false
  while (!eoq) {
    const next = await lines.next()
    if (next.done === true) throw new Error(`${shape.name}: the stream ended before eoq`)
    eoq = splitter.push(encoder.encode(next.value)).some((line) => line.startsWith('{"eoq":'))
  }
  progress(
    `${shape.name}: ${fmtInt(resultRows)} result rows, first evaluation ${fmtInt(firstEvalMs)} ms`,
  )
  const kind = shape.mode === 'incremental' ? 'keys' : 'full'
  const changeMs: number[] = []
  const commitMs: number[] = []
  let evalBefore = { sum: 0, count: 0 }
  for (let i = 0; i < WARMUP_CHANGES + CHANGES; i++) {
    if (i === WARMUP_CHANGES)
      evalBefore = await histogram(
        registry,
        'patina_subs_evaluation_duration_seconds',
        `kind="${kind}"`,
      )
    const id = nextChange()
    const started = performance.now()
    // n moves by 10: the row stays in the WHERE, and its group's sum changes.
    replica.transaction([
      { sql: 'UPDATE big SET n = n + 10, v = ? WHERE id = ?', params: [`c-${i}`, id] },
    ])
    const committed = performance.now()
    let seen = 0
    const deadline = started + EVENT_TIMEOUT_MS
    while (seen < shape.eventsPerChange) {
      const next = await withDeadline(lines.next(), deadline)
      if (next === null) throw new Error(`${shape.name}: no event within ${EVENT_TIMEOUT_MS} ms`)
      if (next.done === true) throw new Error(`${shape.name}: the stream ended`)
      for (const line of splitter.push(encoder.encode(next.value))) {
        if (line.startsWith('{"error":')) throw new Error(`${shape.name}: ${line}`)
        if (line.startsWith('{"change":')) seen++
      }
    }
    if (seen !== shape.eventsPerChange) {
      throw new Error(
        `${shape.name}: ${seen} change events for one UPDATE, not ${shape.eventsPerChange}`,
      )
    }
    if (i >= WARMUP_CHANGES) {
      changeMs.push(performance.now() - started)
      commitMs.push(committed - started)
    }
  }
  const evalAfter = await histogram(
    registry,
    'patina_subs_evaluation_duration_seconds',
    `kind="${kind}"`,
  )
  const evals = evalAfter.count - evalBefore.count
  const evalMeanMs = evals === 0 ? NaN : ((evalAfter.sum - evalBefore.sum) / evals) * 1000
  conn.close()
  await lines.return(undefined)
  opened.close()
  // Let the idle sweep drop it, so that the next shape's changes are matched by one subscription.
  const dropDeadline = performance.now() + 30_000
  while (subs.list().length > 0) {
    if (performance.now() > dropDeadline) throw new Error(`${shape.name}: not dropped`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return {
    shape: shape.name,
    mode: shape.mode,
    resultRows,
    firstEvalMs,
    changeMs: [...changeMs].sort((a, b) => a - b),
    commitMs: [...commitMs].sort((a, b) => a - b),
    evalMeanMs,
    fullQueryMs: stats(fullRuns),
  }
}

const ms = (x: number): string => (Number.isNaN(x) ? '-' : x.toFixed(x < 10 ? 2 : 1))

async function run(ctx: BenchContext): Promise<BenchReport> {
  const progress = (line: string): void => {
    ctx.progress(line)
  }
  const dir = join(ctx.dir, 'subs-incremental')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, 'state.db')
  const replica = Replica.open(file)
  const cleanups: (() => Promise<void> | void)[] = [
    () => {
      replica.close()
    },
  ]
  try {
    replica.applySchema([{ path: 'schema.sql', sql: SCHEMA }])
    const fillStarted = performance.now()
    for (let offset = 0; offset < BIG_ROWS; offset += FILL_CHUNK) {
      replica.transaction([{ sql: bulkInsert(offset, Math.min(FILL_CHUNK, BIG_ROWS - offset)) }])
    }
    const fillS = (performance.now() - fillStarted) / 1000
    replica.db.pragma('wal_checkpoint(TRUNCATE)')
    progress(`big: ${fmtInt(BIG_ROWS)} rows filled through the engine in ${fillS.toFixed(1)} s`)

    const settings = {
      batch_ms: 0,
      full_eval_interval_ms: 0,
      idle_timeout_ms: IDLE_TIMEOUT_MS,
    }
    const section = Object.entries(settings)
      .map(([k, v]) => `${k} = ${String(v)}`)
      .join('\n')
    const { config } = parseConfig(
      `[db]\npath = "state.db"\n[subscriptions]\n${section}\n`,
      dir,
      'bench config',
    )
    const readers = await ReaderPool.open({
      path: file,
      processes: config.subscriptions.readerThreads,
      maxConcurrent: config.subscriptions.readerThreads * 4,
      timeoutMs: config.subscriptions.evalTimeoutMs,
    })
    cleanups.push(() => readers.close())
    const metrics = createAgentMetrics()
    const subs = Subscriptions.open({
      replica,
      dbPath: file,
      config: config.subscriptions,
      synchronous: config.db.synchronous,
      runner: readers,
      metrics: createSubsMetrics(metrics.registry, config.subscriptions),
      logger: pino({ level: 'silent' }),
    })
    cleanups.push(() => subs.stop())
    const plain = new Database(file, { readonly: true, fileMustExist: true })
    cleanups.push(() => {
      plain.close()
    })
    // Rows whose n % 10 = 0 (n = id at first; +10 per change keeps it), spread over the table.
    let k = 0
    const nextChange = (): number => {
      k++
      return ((k * 7919) % (BIG_ROWS / 10)) * 10 + 10
    }
    const results: ShapeResult[] = []
    for (const shape of SHAPES) {
      results.push(
        await measureShape(shape, replica, subs, metrics.registry, plain, nextChange, progress),
      )
    }
    const rows = results.map((r) => {
      const p50 = percentile(r.changeMs, 0.5)
      return [
        r.shape,
        r.mode,
        fmtInt(r.resultRows),
        ms(p50),
        ms(percentile(r.changeMs, 0.99)),
        ms(percentile(r.commitMs, 0.5)),
        ms(r.evalMeanMs),
        ms(r.fullQueryMs.median),
        (p50 / r.fullQueryMs.median).toFixed(3),
        `${(r.fullQueryMs.median / p50).toFixed(1)}x`,
      ]
    })
    const [inc, full] = results as [ShapeResult, ShapeResult]
    const incP50 = percentile(inc.changeMs, 0.5)
    const fullP50 = percentile(full.changeMs, 0.5)
    return {
      tables: [
        {
          title: `One single-row UPDATE on a ${fmtInt(BIG_ROWS)}-row table: cost to a subscription vs re-running its query (ms)`,
          headers: [
            'query',
            'mode',
            'result rows',
            'change p50',
            'change p99',
            'commit p50',
            'eval mean',
            'full query',
            'ratio',
            'full / change',
          ],
          rows,
          notes: [
            `change: commit of the UPDATE until its events reached the listener (commit included), ${CHANGES} changes one at a time after ${WARMUP_CHANGES} untimed`,
            'commit: the Replica transaction alone; eval mean: patina_subs_evaluation_duration_seconds (keys or full) per change',
            `full query: the same SELECT with better-sqlite3 in this process, every row read, median of ${REPEATS} (after 1 untimed)`,
            'ratio: change p50 / full query (below 1: cheaper than re-running the query)',
            'in-process: Replica + ReaderPool (1 reader process) + Subscriptions, as main.ts builds them;',
            '  [subscriptions] batch_ms = 0, full_eval_interval_ms = 0 (defaults 5 and 200 add that much wait)',
            `fill: ${fmtInt(BIG_ROWS)} rows through the engine in ${fillS.toFixed(1)} s`,
            machineLine(ctx.machine),
            '  the machine is shared with other engineers: figures are noisy',
          ],
        },
      ],
      summary: [
        {
          metric: `incremental change on ${fmtInt(BIG_ROWS)} rows, p50 (ms)`,
          value: `${ms(incP50)} (${(incP50 / inc.fullQueryMs.median).toFixed(3)} of a full query)`,
        },
        {
          metric: `GROUP BY change on ${fmtInt(BIG_ROWS)} rows, p50 (ms)`,
          value: `${ms(fullP50)} (${(fullP50 / full.fullQueryMs.median).toFixed(2)} of a full query)`,
        },
      ],
      data: { rows: BIG_ROWS, fillSeconds: fillS, changes: CHANGES, results },
    }
  } finally {
    for (const c of cleanups.reverse()) await c()
  }
}

export const subsIncremental: BenchModule = {
  name: 'subs-incremental',
  title: 'Subscriptions: one change on a big table, incremental vs re-running the query',
  run,
}
