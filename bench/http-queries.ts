/**
 * HTTP benchmark 2, reads: rows/s and time to first row of a 100,000-row `SELECT * FROM t`
 * streamed as NDJSON from `POST /v1/queries` and read to the end, against the same SELECT
 * through better-sqlite3 directly on the agent's database file (read-only connection, raw rows,
 * safe integers: what the agent's reader processes do).
 *
 * Each repeat starts a fresh agent in its own process and fills the table with one
 * transaction through the API; the load generator is another process (see http-writes.ts).
 */
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { READER_CACHE_SIZE_KIB } from '../packages/agent/src/config/defaults.ts'
import { openDb } from '../packages/agent/src/store/open-db.ts'
import { startAgent } from './lib/agents.ts'
import {
  fmtInt,
  fmtMs,
  fmtRatio,
  fmtStats,
  pairedRatios,
  REPEATS,
  scaled,
  stats,
  type BenchContext,
  type BenchModule,
  type BenchReport,
} from './lib/common.ts'
import {
  clientMain,
  clientProgress,
  HttpClient,
  loadAverage,
  httpAgentSpec,
  runClientProcess,
} from './lib/http.ts'

/** Rows of the result: 100,000 (10,000 with BENCH_QUICK=1). */
const ROWS = scaled(100_000)
const QUERY_SQL = 'SELECT * FROM t'
/** Untimed runs of the query before the timed one, on both paths (JIT, page caches). */
const WARMUP_RUNS = 1

const FILE = fileURLToPath(import.meta.url)

/** One INSERT … SELECT of rows 1..ROWS with localRow's values (bench/lib/fixture.ts). */
const SEED_SQL =
  `WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < ${ROWS}) ` +
  `INSERT INTO t (id, a, b, c, d) SELECT x, 'a-' || x || '-abcdefghij', x * 7, x * 0.5 + 0.25, ` +
  `printf('d-%033d', x) FROM s`

interface Read {
  readonly rows: number
  /** From sending the request (preparing the statement) to the first complete row. */
  readonly firstRowMs: number
  readonly totalMs: number
  readonly rowsPerS: number
}

interface HttpRead extends Read {
  readonly bytes: number
}

interface Pass {
  readonly repeat: number
  readonly seedMs: number
  readonly http: HttpRead
  readonly direct: Read
  readonly loadAverage: string
}

interface QueriesJob {
  readonly dir: string
}

/** Reads the whole NDJSON answer, counting lines; checks the columns, row count and eoq lines. */
async function readOverHttp(client: HttpClient): Promise<HttpRead> {
  let lines = 0
  let bytes = 0
  let firstRowAt = 0
  let head = ''
  let tail = Buffer.alloc(0)
  const start = performance.now()
  const status = await client.stream('/v1/queries', JSON.stringify(QUERY_SQL), (chunk: Buffer) => {
    if (head.length < 64) head += chunk.subarray(0, 64).toString('utf8')
    bytes += chunk.length
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) {
      lines++
      // Line 1 is {"columns": ...}; line 2 is the first row.
      if (lines === 2) firstRowAt = performance.now()
    }
    tail = Buffer.concat([tail, chunk.subarray(-256)]).subarray(-256)
  })
  const totalMs = performance.now() - start
  const last = tail.toString('utf8').trimEnd().split('\n').at(-1) ?? ''
  if (status !== 200 || !head.startsWith('{"columns":') || !last.startsWith('{"eoq":')) {
    throw new Error(`query answered ${status}: ${head} … ${last}`)
  }
  const rows = lines - 2
  if (rows !== ROWS) throw new Error(`query streamed ${rows} rows, not ${ROWS}`)
  return { rows, firstRowMs: firstRowAt - start, totalMs, rowsPerS: (rows / totalMs) * 1000, bytes }
}

/** The same SELECT on a read-only connection opened as the agent's readers open theirs. */
function readDirect(dbPath: string): Read {
  const db = openDb(dbPath, { readonly: true, cacheSizeKib: READER_CACHE_SIZE_KIB })
  try {
    const once = (): Read => {
      let rows = 0
      let firstRowAt = 0
      const start = performance.now()
      const stmt = db.prepare(QUERY_SQL).raw(true)
      for (const row of stmt.iterate() as IterableIterator<unknown[]>) {
        if (rows === 0) firstRowAt = performance.now()
        if (row.length !== 5) throw new Error('unexpected row shape')
        rows++
      }
      const totalMs = performance.now() - start
      if (rows !== ROWS) throw new Error(`direct read ${rows} rows, not ${ROWS}`)
      return { rows, firstRowMs: firstRowAt - start, totalMs, rowsPerS: (rows / totalMs) * 1000 }
    }
    for (let i = 0; i < WARMUP_RUNS; i++) once()
    return once()
  } finally {
    db.close()
  }
}

async function measure(job: unknown): Promise<Pass[]> {
  const { dir } = job as QueriesJob
  const passes: Pass[] = []
  for (let r = 0; r < REPEATS; r++) {
    const agent = await startAgent(
      await httpAgentSpec(join(dir, `http-queries-agent-${r}`), 'normal'),
    )
    const client = new HttpClient(agent.url, 1)
    try {
      const seedStart = performance.now()
      const seeded = await client.post('/v1/transactions', JSON.stringify([SEED_SQL]))
      const seedMs = performance.now() - seedStart
      const answer = JSON.parse(seeded.text) as { results?: { rows_affected?: unknown }[] }
      if (seeded.status !== 200 || answer.results?.[0]?.rows_affected !== ROWS) {
        throw new Error(`seeding answered ${seeded.status}: ${seeded.text}`)
      }
      for (let i = 0; i < WARMUP_RUNS; i++) await readOverHttp(client)
      const http = await readOverHttp(client)
      // The agent is idle now; the direct read uses its file as it stands (WAL included).
      const direct = readDirect(agent.dbPath)
      passes.push({ repeat: r, seedMs, http, direct, loadAverage: loadAverage() })
      clientProgress(
        `http-queries ${r + 1}/${REPEATS}: HTTP ${fmtInt(http.rowsPerS)} rows/s, first row ` +
          `${http.firstRowMs.toFixed(2)} ms; direct ${fmtInt(direct.rowsPerS)} rows/s, first row ` +
          `${direct.firstRowMs.toFixed(3)} ms (load ${loadAverage()})`,
      )
    } finally {
      client.close()
      await agent.stop()
    }
  }
  return passes
}

function run(ctx: BenchContext): BenchReport {
  const job: QueriesJob = { dir: ctx.dir }
  const passes = runClientProcess(FILE, job) as Pass[]
  const pick = (f: (p: Pass) => number): number[] => passes.map(f)
  const httpRate = pick((p) => p.http.rowsPerS)
  const directRate = pick((p) => p.direct.rowsPerS)
  const figures = {
    http: {
      rowsPerS: stats(httpRate),
      firstRowMs: stats(pick((p) => p.http.firstRowMs)),
      totalMs: stats(pick((p) => p.http.totalMs)),
      bytes: stats(pick((p) => p.http.bytes)),
    },
    direct: {
      rowsPerS: stats(directRate),
      firstRowMs: stats(pick((p) => p.direct.firstRowMs)),
      totalMs: stats(pick((p) => p.direct.totalMs)),
    },
    ratio: pairedRatios(httpRate, directRate),
    seedRowsPerS: stats(pick((p) => (ROWS / p.seedMs) * 1000)),
  }
  const mb = (n: number): string => (n / 1e6).toFixed(1)
  return {
    tables: [
      {
        title: `HTTP read: SELECT * FROM t, ${fmtInt(ROWS)} rows`,
        headers: ['path', 'rows/s', 'first row ms', 'total ms', 'HTTP/direct rows/s'],
        rows: [
          [
            'direct (better-sqlite3)',
            fmtStats(figures.direct.rowsPerS),
            fmtMs(figures.direct.firstRowMs),
            fmtMs(figures.direct.totalMs),
            '',
          ],
          [
            'HTTP POST /v1/queries',
            fmtStats(figures.http.rowsPerS),
            fmtMs(figures.http.firstRowMs),
            fmtMs(figures.http.totalMs),
            fmtRatio(figures.ratio),
          ],
        ],
        notes: [
          `HTTP: the NDJSON answer (${fmtStats(figures.http.bytes, mb)} MB) read to the end over one keep-alive`,
          'connection (node:http), lines counted; first row: request sent to the first complete row line.',
          'The agent runs in its own process (compiled dist/, synchronous=normal, default reader processes);',
          'the load generator is another process.',
          "direct: the same SELECT on a read-only connection to the agent's file (openDb as the readers",
          'open it: raw rows, safe integers), every row iterated, in the load-generator process.',
          `Each path runs the query ${WARMUP_RUNS} time(s) untimed first. Fresh agent per repeat, seeded with one`,
          `INSERT … SELECT of ${fmtInt(ROWS)} rows through POST /v1/transactions ` +
            `(${fmtStats(figures.seedRowsPerS)} rows/s).`,
          'ratio: per repeat (HTTP then direct on the same file), median [min-max].',
        ],
      },
    ],
    summary: [
      {
        metric: 'HTTP read rows/s',
        value: `${fmtInt(figures.http.rowsPerS.median)} (${figures.ratio.median.toFixed(2)} of direct ${fmtInt(figures.direct.rowsPerS.median)})`,
      },
      {
        metric: 'HTTP read time to first row',
        value: `${figures.http.firstRowMs.median.toFixed(2)} ms (direct ${figures.direct.firstRowMs.median.toFixed(3)} ms)`,
      },
    ],
    data: { rows: ROWS, warmupRuns: WARMUP_RUNS, figures, passes },
  }
}

export const httpQueries: BenchModule = {
  name: 'http-queries',
  title: 'HTTP read',
  run,
}

clientMain(FILE, measure)
