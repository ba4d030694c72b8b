/**
 * HTTP benchmark 1, writes: latency and throughput of single-statement transactions through
 * `POST /v1/transactions`, from one client (sequential, one keep-alive connection) and from 32
 * concurrent clients (32 keep-alive connections), against the same INSERTs through
 * better-sqlite3 directly (one per BEGIN IMMEDIATE/COMMIT), in both durability modes.
 *
 * The agent runs as its own process (`node packages/agent/bin/patina.js agent`, the compiled
 * package) so that it does not share an event loop with the load generator. The load
 * generator is a second child process (this file run with CLIENT_FLAG) because the benchmark
 * runner is synchronous: `run()` waits for it with spawnSync and turns its JSON into tables.
 * The harness for both is bench/lib/http.ts; the agent and the floor server are started by
 * bench/lib/agents.ts.
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { openDb, type Synchronous } from '../packages/agent/src/store/open-db.ts'
import { startAgent, startServerProcess, type ServerProcess } from './lib/agents.ts'
import {
  fmtInt,
  fmtMs,
  fmtRatio,
  fmtStats,
  pairedRatios,
  pragmas,
  REPEATS,
  removeDb,
  scaled,
  stats,
  type BenchContext,
  type BenchModule,
  type BenchReport,
  type ResultTable,
  type Stats,
  type SummaryLine,
} from './lib/common.ts'
import { INSERT_SQL, localRow, TABLE_SQL } from './lib/fixture.ts'
import {
  clientMain,
  clientProgress,
  HttpClient,
  loadAverage,
  percentile,
  httpAgentSpec,
  runClientProcess,
} from './lib/http.ts'

/** Transactions of the single-client run: 5,000 (500 with BENCH_QUICK=1). */
const SEQUENTIAL = scaled(5_000)
/** Transactions of the concurrent run: 20,000 (2,000 with BENCH_QUICK=1). */
const CONCURRENT = scaled(20_000)
/** Concurrent clients, each with its own keep-alive connection. */
const CLIENTS = 32
/** Untimed transactions before the timed ones (JIT, page cache, WAL), on both paths. */
const WARMUP = scaled(1_000)
const MODES: readonly Synchronous[] = ['normal', 'full']
/** The goal stated by the issue: single-statement transaction p50 on loopback, default mode. */
const GOAL_P50_MS = 0.5

const FILE = fileURLToPath(import.meta.url)

/**
 * The floor: a bare node:http server in its own process that reads each request body and
 * answers with a fixed body shaped like the agent's answer to a one-statement transaction.
 */
async function startFloorServer(dir: string): Promise<ServerProcess> {
  const answer = JSON.stringify({
    results: [{ rows_affected: 1, time: 0.000021 }],
    time: 0.00009,
    version: 1,
    actor_id: '0123456789abcdef0123456789abcdef',
  })
  const code = `
    import http from 'node:http'
    const answer = ${JSON.stringify(answer)}
    const server = http.createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        res.writeHead(200, {
          'content-type': 'application/json; charset=utf-8',
          'content-length': Buffer.byteLength(answer),
        })
        res.end(answer)
      })
    })
    server.listen(0, '127.0.0.1', () => {
      process.stdout.write('API at http://127.0.0.1:' + server.address().port + '\\n')
    })
    process.on('SIGTERM', () => { server.close(); server.closeAllConnections() })
  `
  return startServerProcess('the node:http floor server', ['--input-type=module', '-e', code], {
    cwd: dir,
  })
}

// ------------------------------------------------------------------------------ measurement

/** Latency percentiles (ms) and throughput of one timed run. */
interface Run {
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
  readonly txPerS: number
}

interface HttpRun extends Run {
  /** Median of the `time` the agent reports: its route handler (body already parsed). */
  readonly handlerP50Ms: number
  readonly sockets: number
}

interface Pass {
  readonly synchronous: Synchronous
  readonly repeat: number
  readonly direct: Run
  readonly directPragmas: Record<string, string>
  readonly sequential: HttpRun
  readonly concurrent: HttpRun
  readonly loadAverage: string
}

/** The node:http floor of one repeat: the same requests to a bare server. */
interface FloorPass {
  readonly sequential: HttpRun
  readonly concurrent: HttpRun
}

interface WritesResult {
  readonly passes: readonly Pass[]
  readonly floors: readonly FloorPass[]
}

interface WritesJob {
  readonly dir: string
}

function summarize(latenciesMs: number[], totalMs: number): Run {
  const sorted = latenciesMs.sort((a, b) => a - b)
  return {
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted.at(-1) ?? 0,
    txPerS: (sorted.length / totalMs) * 1000,
  }
}

/** Ids 1..WARMUP warm up, then SEQUENTIAL timed ones, then CONCURRENT ones (HTTP only). */
const range = (from: number, count: number): number[] =>
  Array.from({ length: count }, (_, i) => from + i)
const WARMUP_IDS = range(1, WARMUP)
const SEQUENTIAL_IDS = range(WARMUP + 1, SEQUENTIAL)
const CONCURRENT_IDS = range(WARMUP + SEQUENTIAL + 1, CONCURRENT)

/** The `/v1/transactions` body inserting localRow(id). */
function insertBody(id: number): string {
  const [, a, b, c, d] = localRow(id)
  // c always has a fraction (.25 or .75), so JSON writes a decimal point: it binds as REAL.
  const params = `[${id},${JSON.stringify(a)},${b},${c},${JSON.stringify(d)}]`
  return `[[${JSON.stringify(INSERT_SQL)},${params}]]`
}

/** Sends one transaction; returns the handler time the agent reports (ms). */
async function insertOverHttp(client: HttpClient, id: number): Promise<number> {
  const { status, text } = await client.post('/v1/transactions', insertBody(id))
  const answer = JSON.parse(text) as { version?: unknown; time?: unknown; error?: unknown }
  if (status !== 200 || typeof answer.version !== 'number' || typeof answer.time !== 'number') {
    throw new Error(`transaction ${id} answered ${status}: ${text}`)
  }
  return answer.time * 1000
}

function directPass(
  path: string,
  synchronous: Synchronous,
): Run & { pragmas: Record<string, string> } {
  const db = openDb(path, { synchronous })
  try {
    db.exec(TABLE_SQL)
    const insert = db.prepare(INSERT_SQL)
    const begin = db.prepare('BEGIN IMMEDIATE')
    const commit = db.prepare('COMMIT')
    const transaction = (id: number): void => {
      begin.run()
      if (insert.run(localRow(id)).changes !== 1) throw new Error(`insert ${id} changed nothing`)
      commit.run()
    }
    for (const id of WARMUP_IDS) transaction(id)
    const latencies: number[] = []
    const start = performance.now()
    for (const id of SEQUENTIAL_IDS) {
      const t = performance.now()
      transaction(id)
      latencies.push(performance.now() - t)
    }
    const totalMs = performance.now() - start
    return { ...summarize(latencies, totalMs), pragmas: pragmas(db) }
  } finally {
    db.close()
    removeDb(path)
  }
}

async function sequentialOverHttp(client: HttpClient): Promise<HttpRun> {
  const latencies: number[] = []
  const handler: number[] = []
  const start = performance.now()
  for (const id of SEQUENTIAL_IDS) {
    const t = performance.now()
    handler.push(await insertOverHttp(client, id))
    latencies.push(performance.now() - t)
  }
  const totalMs = performance.now() - start
  return {
    ...summarize(latencies, totalMs),
    handlerP50Ms: percentile(
      handler.sort((a, b) => a - b),
      0.5,
    ),
    sockets: client.sockets(),
  }
}

/** CLIENTS loops, each sending its next transaction when its previous one has answered. */
async function concurrentOverHttp(client: HttpClient): Promise<HttpRun> {
  const latencies: number[] = []
  const handler: number[] = []
  let next = 0
  let sockets = 0
  const loop = async (): Promise<void> => {
    while (next < CONCURRENT_IDS.length) {
      const id = CONCURRENT_IDS[next++] as number
      const t = performance.now()
      handler.push(await insertOverHttp(client, id))
      latencies.push(performance.now() - t)
      sockets = Math.max(sockets, client.sockets())
    }
  }
  const start = performance.now()
  await Promise.all(Array.from({ length: CLIENTS }, loop))
  const totalMs = performance.now() - start
  return {
    ...summarize(latencies, totalMs),
    handlerP50Ms: percentile(
      handler.sort((a, b) => a - b),
      0.5,
    ),
    sockets,
  }
}

/** Warm-up, the one-client run, then the concurrent run, against one server process. */
async function httpPass(
  server: ServerProcess,
): Promise<{ sequential: HttpRun; concurrent: HttpRun }> {
  const single = new HttpClient(server.url, 1)
  let sequential: HttpRun
  try {
    for (const id of WARMUP_IDS) await insertOverHttp(single, id)
    sequential = await sequentialOverHttp(single)
  } finally {
    single.close()
  }
  const many = new HttpClient(server.url, CLIENTS)
  try {
    const concurrent = await concurrentOverHttp(many)
    return { sequential, concurrent }
  } finally {
    many.close()
  }
}

async function agentPass(
  dir: string,
  synchronous: Synchronous,
): Promise<{ sequential: HttpRun; concurrent: HttpRun }> {
  const agent = await startAgent(await httpAgentSpec(dir, synchronous))
  try {
    return await httpPass(agent)
  } finally {
    await agent.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

async function floorPass(dir: string): Promise<FloorPass> {
  const server = await startFloorServer(dir)
  try {
    return await httpPass(server)
  } finally {
    await server.stop()
  }
}

const ms3 = (n: number): string => n.toFixed(3)

/**
 * The load-generator process. Each repeat: the node:http floor, then per mode the direct
 * baseline and the agent, back to back.
 */
async function measure(job: unknown): Promise<WritesResult> {
  const { dir } = job as WritesJob
  const passes: Pass[] = []
  const floors: FloorPass[] = []
  for (let r = 0; r < REPEATS; r++) {
    const floor = await floorPass(dir)
    floors.push(floor)
    clientProgress(
      `http-writes ${r + 1}/${REPEATS} node:http floor: 1 client p50 ${ms3(floor.sequential.p50Ms)} ms ` +
        `${fmtInt(floor.sequential.txPerS)} req/s; ${CLIENTS} clients ${fmtInt(floor.concurrent.txPerS)} req/s ` +
        `(load ${loadAverage()})`,
    )
    for (const synchronous of MODES) {
      const direct = directPass(join(dir, `http-writes-direct-${synchronous}-${r}.db`), synchronous)
      const { sequential, concurrent } = await agentPass(
        join(dir, `http-writes-agent-${synchronous}-${r}`),
        synchronous,
      )
      const { pragmas: directPragmas, ...directRun } = direct
      passes.push({
        synchronous,
        repeat: r,
        direct: directRun,
        directPragmas,
        sequential,
        concurrent,
        loadAverage: loadAverage(),
      })
      clientProgress(
        `http-writes ${r + 1}/${REPEATS} synchronous=${synchronous}: ` +
          `direct p50 ${ms3(direct.p50Ms)} ms ${fmtInt(direct.txPerS)} tx/s; ` +
          `HTTP 1 client p50 ${ms3(sequential.p50Ms)} ms ${fmtInt(sequential.txPerS)} tx/s; ` +
          `${CLIENTS} clients p50 ${ms3(concurrent.p50Ms)} ms ${fmtInt(concurrent.txPerS)} tx/s ` +
          `(load ${loadAverage()})`,
      )
    }
  }
  return { passes, floors }
}

// ------------------------------------------------------------------------------ report

interface ModeFigures {
  readonly synchronous: Synchronous
  readonly direct: Record<keyof Run, Stats>
  readonly sequential: Record<keyof HttpRun, Stats>
  readonly concurrent: Record<keyof HttpRun, Stats>
  readonly sequentialP50Ratio: Stats
  readonly sequentialRateRatio: Stats
  readonly concurrentRateRatio: Stats
}

function statsOf<T extends object>(runs: readonly T[]): Record<keyof T, Stats> {
  const first = runs[0]
  if (first === undefined) throw new Error('no runs')
  const out = {} as Record<keyof T, Stats>
  for (const key of Object.keys(first) as (keyof T)[]) {
    out[key] = stats(runs.map((run) => run[key] as number))
  }
  return out
}

const pick = (runs: readonly Run[], key: keyof Run): number[] => runs.map((run) => run[key])

function figures(passes: readonly Pass[], synchronous: Synchronous): ModeFigures {
  const mine = passes.filter((p) => p.synchronous === synchronous)
  const direct = mine.map((p) => p.direct)
  const sequential = mine.map((p) => p.sequential)
  const concurrent = mine.map((p) => p.concurrent)
  return {
    synchronous,
    direct: statsOf(direct),
    sequential: statsOf(sequential),
    concurrent: statsOf(concurrent),
    sequentialP50Ratio: pairedRatios(pick(sequential, 'p50Ms'), pick(direct, 'p50Ms')),
    sequentialRateRatio: pairedRatios(pick(sequential, 'txPerS'), pick(direct, 'txPerS')),
    concurrentRateRatio: pairedRatios(pick(concurrent, 'txPerS'), pick(direct, 'txPerS')),
  }
}

function run(ctx: BenchContext): BenchReport {
  const job: WritesJob = { dir: ctx.dir }
  const { passes, floors } = runClientProcess(FILE, job) as WritesResult
  const modes = MODES.map((m) => figures(passes, m))
  const floor = {
    sequential: statsOf(floors.map((f) => f.sequential)),
    concurrent: statsOf(floors.map((f) => f.concurrent)),
  }
  const blank = ['', '', '']
  const sequentialTable: ResultTable = {
    title: 'HTTP writes, one client: single-statement transactions, sequential',
    headers: [
      'path',
      'p50 ms',
      'p99 ms',
      'max ms',
      'tx/s',
      'handler p50 ms',
      'p50 HTTP/direct',
      'tx/s HTTP/direct',
    ],
    rows: [
      [
        'node:http floor (no agent)',
        fmtMs(floor.sequential.p50Ms),
        fmtMs(floor.sequential.p99Ms),
        fmtMs(floor.sequential.maxMs),
        fmtStats(floor.sequential.txPerS),
        ...blank,
      ],
      ...modes.flatMap((m) => [
        [
          `direct, synchronous=${m.synchronous}`,
          fmtMs(m.direct.p50Ms),
          fmtMs(m.direct.p99Ms),
          fmtMs(m.direct.maxMs),
          fmtStats(m.direct.txPerS),
          ...blank,
        ],
        [
          `HTTP, synchronous=${m.synchronous}`,
          fmtMs(m.sequential.p50Ms),
          fmtMs(m.sequential.p99Ms),
          fmtMs(m.sequential.maxMs),
          fmtStats(m.sequential.txPerS),
          fmtMs(m.sequential.handlerP50Ms),
          fmtRatio(m.sequentialP50Ratio),
          fmtRatio(m.sequentialRateRatio),
        ],
      ]),
    ],
    notes: [
      `${fmtInt(SEQUENTIAL)} transactions of one INSERT each, after ${fmtInt(WARMUP)} untimed ones; latency per transaction.`,
      'HTTP: POST /v1/transactions [["INSERT INTO t ... VALUES (?, ?, ?, ?, ?)", [...]]] over one',
      'keep-alive connection (node:http), to an agent in its own process (packages/agent/bin/patina.js,',
      'compiled dist/, [log] format = "json"); the load generator is another process.',
      'handler: the `time` the agent reports (its route handler: reading the statements, the transaction).',
      'node:http floor: the same requests to a bare node:http server process that reads the body and',
      'sends a fixed answer of the same shape: what HTTP on loopback costs here without the agent.',
      'direct: the same INSERT through better-sqlite3 on a plain table (openDb, same synchronous),',
      'BEGIN IMMEDIATE / run / COMMIT per transaction, in the load-generator process.',
      'ratios: per repeat (direct then HTTP, fresh files each), median [min-max].',
    ],
  }
  const concurrentTable: ResultTable = {
    title: `HTTP writes, ${CLIENTS} concurrent clients: single-statement transactions`,
    headers: ['path', 'tx/s', 'p50 ms', 'p99 ms', 'max ms', 'handler p50 ms', 'tx/s HTTP/direct'],
    rows: [
      [
        'node:http floor (no agent)',
        fmtStats(floor.concurrent.txPerS),
        fmtMs(floor.concurrent.p50Ms),
        fmtMs(floor.concurrent.p99Ms),
        fmtMs(floor.concurrent.maxMs),
        '',
        '',
      ],
      ...modes.map((m) => [
        `HTTP, synchronous=${m.synchronous}`,
        fmtStats(m.concurrent.txPerS),
        fmtMs(m.concurrent.p50Ms),
        fmtMs(m.concurrent.p99Ms),
        fmtMs(m.concurrent.maxMs),
        fmtMs(m.concurrent.handlerP50Ms),
        fmtRatio(m.concurrentRateRatio),
      ]),
    ],
    notes: [
      `${fmtInt(CONCURRENT)} transactions from ${CLIENTS} loops, each on its own keep-alive connection (sockets`,
      `open: ${fmtStats(stats(passes.map((p) => p.concurrent.sockets)))}), each sending its next request when the`,
      'previous one has answered; the same agent, right after the one-client run.',
      'tx/s HTTP/direct: against the direct sequential rate of the same repeat and mode (SQLite has',
      'one writer, so the direct rate is the ceiling for any number of clients).',
    ],
  }
  const normal = modes.find((m) => m.synchronous === 'normal')
  const goalMet = normal !== undefined && normal.sequential.p50Ms.median < GOAL_P50_MS
  // Per repeat: the agent's p50 minus the floor's p50 (same repeat) minus the handler's p50.
  const rest = stats(
    passes
      .filter((p) => p.synchronous === 'normal')
      .map(
        (p) =>
          p.sequential.p50Ms -
          (floors[p.repeat]?.sequential.p50Ms ?? NaN) -
          p.sequential.handlerP50Ms,
      ),
  )
  const goalNotes =
    normal === undefined
      ? []
      : [
          `goal (issue): one-statement transaction p50 < ${GOAL_P50_MS} ms on loopback, synchronous=normal: ` +
            `${ms3(normal.sequential.p50Ms.median)} ms, ${goalMet ? 'met' : 'NOT met'}.`,
          `where it goes (p50, synchronous=normal): node:http round trip without the agent ${fmtStats(floor.sequential.p50Ms, ms3)} ms,`,
          `agent handler ${fmtStats(normal.sequential.handlerP50Ms, ms3)} ms, the rest (fastify, body parsing, hooks, metrics;`,
          `HTTP p50 - floor p50 - handler p50 per repeat) ${fmtStats(rest, ms3)} ms.`,
        ]
  const summary: SummaryLine[] = modes.flatMap((m): SummaryLine[] => [
    {
      metric: `HTTP 1-statement tx p50, 1 client, ${m.synchronous}`,
      value: `${ms3(m.sequential.p50Ms.median)} ms (direct ${ms3(m.direct.p50Ms.median)} ms)`,
      ...(m === normal ? { goal: `< ${GOAL_P50_MS} ms`, met: goalMet } : {}),
    },
    {
      metric: `HTTP tx/s, 1 client, ${m.synchronous}`,
      value: `${fmtInt(m.sequential.txPerS.median)} (${m.sequentialRateRatio.median.toFixed(2)} of direct)`,
    },
    {
      metric: `HTTP tx/s, ${CLIENTS} clients, ${m.synchronous}`,
      value: `${fmtInt(m.concurrent.txPerS.median)} (${m.concurrentRateRatio.median.toFixed(2)} of direct)`,
    },
  ])
  return {
    tables: [
      { ...sequentialTable, notes: [...(sequentialTable.notes ?? []), ...goalNotes] },
      concurrentTable,
    ],
    summary,
    data: {
      sequential: SEQUENTIAL,
      concurrent: CONCURRENT,
      clients: CLIENTS,
      warmup: WARMUP,
      goalP50Ms: GOAL_P50_MS,
      floor,
      restP50Ms: rest,
      modes,
      floors,
      passes,
    },
  }
}

export const httpWrites: BenchModule = {
  name: 'http-writes',
  title: 'HTTP write latency and throughput',
  run,
}

clientMain(FILE, measure)
