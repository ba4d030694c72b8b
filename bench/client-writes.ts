/**
 * Client benchmark, writes: how fast one Node process can write to one agent through
 * @patina/client, against raw keep-alive HTTP from the same process to the same agent.
 *
 * Single-statement upsert transactions (`POST /v1/transactions`), 32 in flight (throughput)
 * and one in flight (latency), over four paths measured back to back in each repeat:
 *   (a) a raw `node:http` loop over a keep-alive http.Agent: the baseline;
 *   (b) raw `undici` request() over an undici Pool;
 *   (c) @patina/client with `fetch: globalThis.fetch`: the fetch transport (the client's only
 *       one before it had a Node transport);
 *   (d) @patina/client as created by default in Node (`createClient({ url })`);
 *   (e) raw undici request() over one HTTP/2 connection (h2c, prior knowledge: the agent
 *       serves it on the API port), all calls as streams of it: is HTTP/2 the better transport?
 * The client is imported as a program would import it (`@patina/client`, the compiled package,
 * through its package.json "node" condition).
 *
 * The agent runs as its own process; the load generator is a second child process (this file
 * run with the client flag, bench/lib/http.ts), so the paths share that process as a user's
 * program would and nothing else. Besides the rates it reports the load generator's CPU per
 * transaction, which is what the transport costs independently of the agent.
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createClient } from '@patina/client'
import { H2CClient, Pool, request } from 'undici'
import { startAgent, statementBody } from './lib/agents.ts'
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
  type ResultTable,
  type Stats,
  type SummaryLine,
} from './lib/common.ts'
import { localRow, UPSERT_SQL } from './lib/fixture.ts'
import {
  clientMain,
  clientProgress,
  HttpClient,
  httpAgentSpec,
  loadAverage,
  percentile,
  runClientProcess,
} from './lib/http.ts'

/** Transactions of the one-in-flight run, per path and repeat: 2,000 (200 quick). */
const SEQUENTIAL = scaled(2_000)
/** Transactions of the concurrent run, per path and repeat: 10,000 (1,000 quick). */
const CONCURRENT = scaled(10_000)
/** Transactions in flight in the concurrent run. */
const IN_FLIGHT = 32
/** Untimed transactions before each path's timed ones (JIT, connections). */
const WARMUP = scaled(1_000)
/** The upserts cycle over this many ids, so the table stays the same size. */
const KEYS = 10_000
/** The goal: the client's 32-in-flight rate at least this share of raw node:http. */
const GOAL_RATIO = 0.9

const FILE = fileURLToPath(import.meta.url)

/** One transaction; resolves once it is applied (throws otherwise). */
type Write = (id: number) => Promise<void>

interface Path {
  readonly key: string
  readonly label: string
  /** `inFlight`: the most transactions the caller will have in flight. */
  open(url: URL, inFlight: number): { write: Write; close(): Promise<void> }
  /** Left out of the run (with a progress line) when its first write fails: h2c needs an agent that serves it. */
  readonly optional?: true
}

const PROBE_MS = 5000

/** null when one write over `path` succeeds within PROBE_MS; else why not. */
async function works(path: Path, url: URL): Promise<string | null> {
  const probe = path.open(url, 1)
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      probe.write(0),
      new Promise((_, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`no answer within ${PROBE_MS} ms`))
        }, PROBE_MS)
      }),
    ])
    return null
  } catch (err) {
    return err instanceof Error ? err.message : String(err)
  } finally {
    clearTimeout(timer)
    await probe.close().catch(() => undefined)
  }
}

function upsertParams(id: number): [number, string, number, number, string] {
  const [, a, b, c, d] = localRow(id)
  return [id, a, Number(b), c, d]
}

function checkAnswer(status: number, text: string): void {
  if (status !== 200 || !text.includes('"version"')) {
    throw new Error(`transaction answered ${status}: ${text.slice(0, 300)}`)
  }
}

const PATHS: readonly Path[] = [
  {
    key: 'node-http',
    label: '(a) raw node:http, keep-alive http.Agent (baseline)',
    open(url, inFlight) {
      const client = new HttpClient(url, inFlight)
      return {
        write: async (id) => {
          const { status, text } = await client.post(
            '/v1/transactions',
            statementBody(UPSERT_SQL, upsertParams(id)),
          )
          checkAnswer(status, text)
        },
        close: () => {
          client.close()
          return Promise.resolve()
        },
      }
    },
  },
  {
    key: 'undici',
    label: '(b) raw undici request(), Pool',
    open(url, inFlight) {
      const pool = new Pool(url.origin, { connections: inFlight })
      const target = new URL('/v1/transactions', url).href
      return {
        write: async (id) => {
          const res = await request(target, {
            method: 'POST',
            dispatcher: pool,
            headers: { 'content-type': 'application/json' },
            body: statementBody(UPSERT_SQL, upsertParams(id)),
          })
          checkAnswer(res.statusCode, await res.body.text())
        },
        close: () => pool.close(),
      }
    },
  },
  {
    key: 'client-fetch',
    label: '(c) @patina/client, fetch transport',
    open(url) {
      const client = createClient({ url: url.origin, fetch: globalThis.fetch })
      return {
        write: async (id) => {
          await client.transaction([[UPSERT_SQL, upsertParams(id)]])
        },
        close: () => client.close(),
      }
    },
  },
  {
    key: 'client',
    label: '(d) @patina/client, default in Node',
    open(url) {
      const client = createClient({ url: url.origin })
      return {
        write: async (id) => {
          await client.transaction([[UPSERT_SQL, upsertParams(id)]])
        },
        close: () => client.close(),
      }
    },
  },
  {
    key: 'undici-h2c',
    label: '(e) raw undici request(), HTTP/2 (h2c), one connection',
    optional: true,
    open(url, inFlight) {
      const h2 = new H2CClient(url.origin, { maxConcurrentStreams: inFlight, pipelining: inFlight })
      const target = new URL('/v1/transactions', url).href
      return {
        write: async (id) => {
          const res = await request(target, {
            method: 'POST',
            dispatcher: h2,
            headers: { 'content-type': 'application/json' },
            body: statementBody(UPSERT_SQL, upsertParams(id)),
          })
          checkAnswer(res.statusCode, await res.body.text())
        },
        close: () => h2.close(),
      }
    },
  },
]

// ------------------------------------------------------------------------------ measurement

interface Run {
  readonly p50Ms: number
  readonly p99Ms: number
  readonly txPerS: number
  /** CPU time of the load-generator process per transaction (user + system), microseconds. */
  readonly cpuUsPerTx: number
}

interface PathPass {
  readonly path: string
  readonly repeat: number
  readonly sequential: Run
  readonly concurrent: Run
  readonly loadAverage: string
}

interface Job {
  readonly dir: string
}

let nextId = 0
const id = (): number => (nextId++ % KEYS) + 1

/** `count` transactions, `inFlight` loops each sending its next one when the last answered. */
async function timedRun(write: Write, count: number, inFlight: number): Promise<Run> {
  const latencies: number[] = []
  let left = count
  const loop = async (): Promise<void> => {
    while (left > 0) {
      left--
      const t = performance.now()
      await write(id())
      latencies.push(performance.now() - t)
    }
  }
  const cpu = process.cpuUsage()
  const start = performance.now()
  await Promise.all(Array.from({ length: inFlight }, loop))
  const totalMs = performance.now() - start
  const used = process.cpuUsage(cpu)
  const sorted = latencies.sort((a, b) => a - b)
  return {
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    txPerS: (count / totalMs) * 1000,
    cpuUsPerTx: (used.user + used.system) / count,
  }
}

async function pathPass(path: Path, url: URL, repeat: number): Promise<PathPass> {
  const one = path.open(url, 1)
  let sequential: Run
  try {
    await timedRun(one.write, WARMUP, 1)
    sequential = await timedRun(one.write, SEQUENTIAL, 1)
  } finally {
    await one.close()
  }
  const many = path.open(url, IN_FLIGHT)
  try {
    await timedRun(many.write, WARMUP, IN_FLIGHT)
    const concurrent = await timedRun(many.write, CONCURRENT, IN_FLIGHT)
    return { path: path.key, repeat, sequential, concurrent, loadAverage: loadAverage() }
  } finally {
    await many.close()
  }
}

/**
 * The load-generator process: one agent; each repeat runs every path, starting with a
 * different one each time (so no path always runs on the freshest agent).
 */
async function measure(job: unknown): Promise<PathPass[]> {
  const { dir } = job as Job
  const agentDir = join(dir, 'client-writes-agent')
  const agent = await startAgent(await httpAgentSpec(agentDir, 'normal'))
  const passes: PathPass[] = []
  try {
    const paths: Path[] = []
    for (const path of PATHS) {
      const failed = path.optional === true ? await works(path, agent.url) : null
      if (failed === null) paths.push(path)
      else clientProgress(`client-writes: ${path.key} left out, its first write failed: ${failed}`)
    }
    for (let r = 0; r < REPEATS; r++) {
      for (let k = 0; k < paths.length; k++) {
        const path = paths[(r + k) % paths.length] as Path
        const pass = await pathPass(path, agent.url, r)
        passes.push(pass)
        clientProgress(
          `client-writes ${r + 1}/${REPEATS} ${path.key}: 1 in flight p50 ` +
            `${pass.sequential.p50Ms.toFixed(3)} ms; ${IN_FLIGHT} in flight ` +
            `${fmtInt(pass.concurrent.txPerS)} tx/s, ${fmtInt(pass.concurrent.cpuUsPerTx)} µs CPU/tx ` +
            `(load ${loadAverage()})`,
        )
      }
    }
  } finally {
    await agent.stop()
    rmSync(agentDir, { recursive: true, force: true })
  }
  return passes
}

// ------------------------------------------------------------------------------ report

interface PathFigures {
  readonly path: string
  readonly label: string
  readonly sequential: Record<keyof Run, Stats>
  readonly concurrent: Record<keyof Run, Stats>
  /** Per repeat, against (a) of the same repeat. */
  readonly concurrentRateRatio: Stats
  readonly sequentialP50Ratio: Stats
}

function statsOf(runs: readonly Run[]): Record<keyof Run, Stats> {
  const keys: (keyof Run)[] = ['p50Ms', 'p99Ms', 'txPerS', 'cpuUsPerTx']
  return Object.fromEntries(keys.map((k) => [k, stats(runs.map((r) => r[k]))])) as Record<
    keyof Run,
    Stats
  >
}

function figures(passes: readonly PathPass[]): PathFigures[] {
  const byRepeat = (key: string): PathPass[] =>
    passes.filter((p) => p.path === key).sort((a, b) => a.repeat - b.repeat)
  const base = byRepeat('node-http')
  return PATHS.flatMap((path) => {
    const mine = byRepeat(path.key)
    if (mine.length === 0) return []
    return {
      path: path.key,
      label: path.label,
      sequential: statsOf(mine.map((p) => p.sequential)),
      concurrent: statsOf(mine.map((p) => p.concurrent)),
      concurrentRateRatio: pairedRatios(
        mine.map((p) => p.concurrent.txPerS),
        base.map((p) => p.concurrent.txPerS),
      ),
      sequentialP50Ratio: pairedRatios(
        mine.map((p) => p.sequential.p50Ms),
        base.map((p) => p.sequential.p50Ms),
      ),
    }
  })
}

const us = (s: Stats): string => fmtStats(s, (n) => n.toFixed(0))

function run(ctx: BenchContext): BenchReport {
  const passes = runClientProcess(FILE, { dir: ctx.dir } satisfies Job) as PathPass[]
  const rows = figures(passes)
  const concurrentTable: ResultTable = {
    title: `Client writes, ${IN_FLIGHT} in flight from one process: single-statement upserts, one agent`,
    headers: ['path', 'tx/s', 'tx/s vs (a)', 'p50 ms', 'p99 ms', 'client CPU µs/tx'],
    rows: rows.map((f) => [
      f.label,
      fmtStats(f.concurrent.txPerS),
      fmtRatio(f.concurrentRateRatio),
      fmtMs(f.concurrent.p50Ms),
      fmtMs(f.concurrent.p99Ms),
      us(f.concurrent.cpuUsPerTx),
    ]),
    notes: [
      `${fmtInt(CONCURRENT)} upserts per path and repeat (after ${fmtInt(WARMUP)} untimed), ${IN_FLIGHT} loops`,
      'each sending its next transaction when its last one answered; ids cycle over',
      `${fmtInt(KEYS)} keys. The agent runs in its own process (synchronous=normal); every path runs in one`,
      'load-generator process, back to back per repeat, the first path rotating between repeats.',
      'tx/s vs (a): per repeat against the raw node:http loop of the same repeat, median [min-max].',
      'client CPU: user + system time of the load-generator process per transaction (what the',
      'transport costs, whatever the agent can take).',
    ],
  }
  const sequentialTable: ResultTable = {
    title: 'Client writes, one in flight: latency of single-statement upserts',
    headers: ['path', 'p50 ms', 'p99 ms', 'p50 vs (a)', 'tx/s', 'client CPU µs/tx'],
    rows: rows.map((f) => [
      f.label,
      fmtMs(f.sequential.p50Ms),
      fmtMs(f.sequential.p99Ms),
      fmtRatio(f.sequentialP50Ratio),
      fmtStats(f.sequential.txPerS),
      us(f.sequential.cpuUsPerTx),
    ]),
    notes: [`${fmtInt(SEQUENTIAL)} upserts per path and repeat, one at a time, one connection.`],
  }
  const client = rows.find((f) => f.path === 'client')
  const summary: SummaryLine[] =
    client === undefined
      ? []
      : [
          {
            metric: `@patina/client tx/s, ${IN_FLIGHT} in flight, vs raw node:http`,
            value:
              `${fmtInt(client.concurrent.txPerS.median)} tx/s, ` +
              `${client.concurrentRateRatio.median.toFixed(2)}×`,
            goal: `≥ ${GOAL_RATIO}×`,
            met: client.concurrentRateRatio.median >= GOAL_RATIO,
          },
          {
            metric: '@patina/client 1-in-flight p50',
            value: `${client.sequential.p50Ms.median.toFixed(3)} ms (${client.sequentialP50Ratio.median.toFixed(2)}× raw)`,
          },
        ]
  return {
    tables: [concurrentTable, sequentialTable],
    summary,
    data: {
      sequential: SEQUENTIAL,
      concurrent: CONCURRENT,
      inFlight: IN_FLIGHT,
      warmup: WARMUP,
      keys: KEYS,
      goalRatio: GOAL_RATIO,
      figures: rows,
      passes,
    },
  }
}

export const clientWrites: BenchModule = {
  name: 'client-writes',
  title: '@patina/client write throughput and latency from one process, against raw HTTP',
  run,
}

clientMain(FILE, measure)
