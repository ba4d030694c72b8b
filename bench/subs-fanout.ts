/**
 * Benchmark: one agent, SUBSCRIBERS clients of the same query (one subscription, one matcher,
 * many listeners): the highest write rate at which every client still gets every change event
 * quickly, and what each client costs the agent in memory.
 *
 * Method. A real `patina agent` on loopback (bench/lib/agents.ts), `[subscriptions] max_listeners`
 * raised above SUBSCRIBERS. This process opens SUBSCRIBERS streams `POST
 * /v1/subscriptions?skip_rows=true` for `SELECT id, a FROM t` (node:http, an agent without a
 * socket cap; one connection per stream), OPEN_AT_ONCE at a time. Then, for each rate of RATES
 * (writes/s, STEP_MS each, open loop, single-row INSERTs through `POST /v1/transactions` on the
 * same agent; an untimed WARMUP_STEP_MS step at the first rate before them): the time from sending a write until its `insert` event arrives is taken on
 * SAMPLED evenly spread clients (each line parsed, change ids checked contiguous); every other
 * client counts its lines. A step delivers when every client received every event (within
 * DRAIN_TIMEOUT_MS after the last write), none got an error event and the rate was reached
 * (90%); it meets the goal when it delivers with the sampled p99 under P99_GOAL_MS. Steps go
 * on while they deliver with p99 under P99_STOP_MS, so both the highest rate meeting the goal
 * and the highest rate still delivered (with its p99) are found.
 *
 * Baseline, same run: the same steps on a fresh agent with a single client. The ratio (p99 with
 * SUBSCRIBERS clients / p99 with one) shows what the fanout costs.
 *
 * Memory: the agent's VmRSS (/proc/<pid>/status, median of RSS_SAMPLES) with no client, with
 * one (the subscription exists), and with SUBSCRIBERS idle clients. Per client: (with all -
 * with none) / SUBSCRIBERS, and the marginal (with all - with one) / (SUBSCRIBERS - 1), against
 * etcd's stated ~18 KB per watch stream. RSS is not compacted (no GC is forced in the agent):
 * a rough figure.
 *
 * The agent and this process (which reads every stream) share the machine's cores: at the high
 * rates either can be the bottleneck; their CPU use per step is printed.
 */
import { readFileSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import { LineSplitter } from '@patina/protocol'
import {
  clusterSpecs,
  describeSettings,
  machineLine,
  startCluster,
  statementBody,
  stopAll,
  transact,
  type Agent,
  type TomlSections,
} from './lib/agents.ts'
import { QUICK, type BenchContext, type BenchModule, type BenchReport } from './lib/common.ts'
import { INSERT_SQL, localRow } from './lib/fixture.ts'
import { HttpClient, percentile } from './lib/http.ts'

const SUBSCRIBERS = QUICK ? 100 : 1000
const SAMPLED = QUICK ? 20 : 50
const RATES = QUICK ? [10, 25, 50, 100, 200] : [10, 25, 50, 100, 200, 400, 800]
/** An untimed step first, at the first rate (JIT of the stream path, connections). */
const WARMUP_STEP_MS = 1000
const STEP_MS = QUICK ? 1500 : 3000
const P99_GOAL_MS = 50
/** Steps go on while every event is delivered and p99 stays under this (then: collapsed). */
const P99_STOP_MS = 1000
/** Streams being opened at once. */
const OPEN_AT_ONCE = 50
/** Writes in flight at once (keep-alive sockets). */
const SOCKETS = 16
const DRAIN_TIMEOUT_MS = 20_000
const WARMUP_WRITES = 20
const RSS_SAMPLES = 5
const RSS_SAMPLE_GAP_MS = 200
/** Settling time before an RSS reading (the agent finishes what opening the streams started). */
const SETTLE_MS = 2000
/** etcd, as stated for this comparison: memory per watch stream. */
const ETCD_BYTES_PER_WATCH = 18 * 1024
const SQL = 'SELECT id, a FROM t'
const SETTINGS: TomlSections = {
  subscriptions: { max_listeners: SUBSCRIBERS + 100 },
}
/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100

/** One client's stream. Sampled ones time each event; the others count lines. */
class Client {
  /** Lines received: `columns` and `eoq` first, then one per change. */
  lines = 0
  error: string | null = null
  lastChange: number | null = null
  readonly arrivals: Map<number, number> | null
  /** Splits the stream of a sampled client (the others only count newlines). */
  private readonly splitter = new LineSplitter()
  private req: http.ClientRequest | null = null

  constructor(sampled: boolean) {
    this.arrivals = sampled ? new Map() : null
  }

  get changes(): number {
    return Math.max(0, this.lines - 2)
  }

  open(agent: Agent, httpAgent: http.Agent): Promise<void> {
    const url = new URL(`${agent.api}/v1/subscriptions?skip_rows=true`)
    const body = JSON.stringify(SQL)
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: url.hostname,
          port: url.port,
          path: `${url.pathname}${url.search}`,
          method: 'POST',
          agent: httpAgent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume()
            reject(new Error(`POST /v1/subscriptions answered ${res.statusCode}`))
            return
          }
          res.on('data', (chunk: Buffer) => {
            const at = performance.now()
            let i = -1
            while ((i = chunk.indexOf(10, i + 1)) !== -1) this.lines++
            if (this.lines >= 2) resolve()
            if (this.error === null && chunk.includes('"error"')) {
              this.error = chunk.toString('utf8').slice(0, 300)
            }
            if (this.arrivals !== null) this.parse(chunk, at)
          })
          res.once('error', (err) => {
            this.error ??= String(err)
          })
          res.once('close', () => {
            this.error ??= 'the stream ended'
            reject(new Error('the stream ended before eoq'))
          })
        },
      )
      req.once('error', (err) => {
        this.error ??= String(err)
        reject(err)
      })
      req.end(body)
      this.req = req
    })
  }

  private parse(chunk: Buffer, at: number): void {
    for (const line of this.splitter.push(chunk)) {
      const e = JSON.parse(line) as {
        eoq?: { change_id: number }
        change?: [string, number, [number, string], number]
      }
      if (e.eoq !== undefined) this.lastChange = e.eoq.change_id
      if (e.change === undefined) continue
      const [, , values, id] = e.change
      if (this.lastChange !== null && id !== this.lastChange + 1) {
        this.error ??= `change id ${id} after ${this.lastChange}`
      }
      this.lastChange = id
      this.arrivals?.set(values[0], at)
    }
  }

  close(): void {
    this.req?.destroy()
  }
}

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]
  if (kb === undefined) throw new Error(`no VmRSS for ${pid}`)
  return Number(kb) * 1024
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may hold spaces) start at ") ".
  const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
}

const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    setTimeout(resolve, Math.max(0, ms))
  })

async function medianRss(pid: number): Promise<number> {
  const xs: number[] = []
  for (let i = 0; i < RSS_SAMPLES; i++) {
    if (i > 0) await sleep(RSS_SAMPLE_GAP_MS)
    xs.push(rssBytes(pid))
  }
  return xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN
}

interface Step {
  readonly rate: number
  readonly writes: number
  readonly writesPerS: number
  /** Send to event, ms, over every (write, sampled client) pair; sorted. */
  readonly eventMs: readonly number[]
  readonly ackP50Ms: number
  /** Clients that had not received every event when the step ended. */
  readonly incomplete: number
  readonly errors: number
  readonly firstError: string | null
  readonly drainMs: number
  readonly agentCpu: number
  readonly benchCpu: number
  /** Every client got every event, no error, the rate reached. */
  readonly delivered: boolean
  /** Delivered, and p99 < P99_GOAL_MS. */
  readonly passed: boolean
}

/** Writes the schedule of steps against clients already open; stops once one collapses. */
async function steps(
  agent: Agent,
  clients: readonly Client[],
  firstId: number,
  progress: (line: string) => void,
  label: string,
): Promise<Step[]> {
  const writer = new HttpClient(new URL(agent.api), SOCKETS)
  const out: Step[] = []
  let nextId = firstId
  let total = Math.min(...clients.map((c) => c.changes))
  try {
    for (const [i, rate] of [RATES[0] ?? 10, ...RATES].entries()) {
      const warmup = i === 0
      const count = Math.round((rate * (warmup ? WARMUP_STEP_MS : STEP_MS)) / 1000)
      const ids = Array.from({ length: count }, (_, i) => nextId + i)
      nextId += count
      const sent = new Map<number, number>()
      const acks: number[] = []
      const cpu0 = cpuSeconds(agent.pid)
      const bench0 = process.cpuUsage()
      const interval = 1000 / rate
      const start = performance.now()
      const inFlight: Promise<void>[] = []
      for (const [i, id] of ids.entries()) {
        await sleep(start + i * interval - performance.now())
        const [, a, b, c, d] = localRow(id)
        const t0 = performance.now()
        sent.set(id, t0)
        inFlight.push(
          transact(writer, statementBody(INSERT_SQL, [id, a, Number(b), c, d])).then(() => {
            acks.push(performance.now() - t0)
          }),
        )
      }
      const issuedMs = performance.now() - start
      await Promise.all(inFlight)
      total += count
      const drainStart = performance.now()
      while (clients.some((c) => c.changes < total && c.error === null)) {
        if (performance.now() - drainStart > DRAIN_TIMEOUT_MS) break
        await sleep(10)
      }
      const drainMs = performance.now() - drainStart
      const wallS = (performance.now() - start) / 1000
      const agentCpu = (cpuSeconds(agent.pid) - cpu0) / wallS
      const bench = process.cpuUsage(bench0)
      const benchCpu = (bench.user + bench.system) / 1e6 / wallS
      const eventMs: number[] = []
      for (const c of clients) {
        if (c.arrivals === null) continue
        for (const id of ids) {
          const at = c.arrivals.get(id)
          const t0 = sent.get(id)
          if (at !== undefined && t0 !== undefined) eventMs.push(at - t0)
        }
      }
      eventMs.sort((x, y) => x - y)
      acks.sort((x, y) => x - y)
      const incomplete = clients.filter((c) => c.changes < total).length
      const withError = clients.filter((c) => c.error !== null)
      if (warmup) continue
      const writesPerS = (count / issuedMs) * 1000
      const p99 = eventMs.length === 0 ? NaN : percentile(eventMs, 0.99)
      const delivered = incomplete === 0 && withError.length === 0 && writesPerS >= 0.9 * rate
      const passed = delivered && p99 < P99_GOAL_MS
      const step: Step = {
        rate,
        writes: count,
        writesPerS,
        eventMs,
        ackP50Ms: acks.length === 0 ? NaN : percentile(acks, 0.5),
        incomplete,
        errors: withError.length,
        firstError: withError[0]?.error ?? null,
        drainMs,
        agentCpu,
        benchCpu,
        delivered,
        passed,
      }
      out.push(step)
      progress(
        `${label}, ${rate} w/s: p50 ${fmt(pct(eventMs, 0.5))} ms, p99 ${fmt(p99)} ms, ` +
          `incomplete ${incomplete}, errors ${withError.length}, agent CPU ${(agentCpu * 100).toFixed(0)}%, ` +
          `this process ${(benchCpu * 100).toFixed(0)}%`,
      )
      if (!delivered || !(p99 < P99_STOP_MS)) break
    }
    return out
  } finally {
    writer.close()
  }
}

async function openClients(
  agent: Agent,
  httpAgent: http.Agent,
  clients: readonly Client[],
): Promise<void> {
  for (let at = 0; at < clients.length; at += OPEN_AT_ONCE) {
    await Promise.all(clients.slice(at, at + OPEN_AT_ONCE).map((c) => c.open(agent, httpAgent)))
  }
}

async function warmUp(agent: Agent): Promise<number> {
  const writer = new HttpClient(new URL(agent.api), 1)
  try {
    for (let id = 1; id <= WARMUP_WRITES; id++) {
      const [, a, b, c, d] = localRow(id)
      await transact(writer, statementBody(INSERT_SQL, [id, a, Number(b), c, d]))
    }
  } finally {
    writer.close()
  }
  return WARMUP_WRITES + 1
}

const pct = (xs: readonly number[], p: number): number =>
  xs.length === 0 ? NaN : percentile(xs, p)
const fmt = (ms: number): string => (Number.isNaN(ms) ? '-' : ms.toFixed(ms < 10 ? 2 : 1))
const kb = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KB`

async function run(ctx: BenchContext): Promise<BenchReport> {
  const progress = (line: string): void => {
    ctx.progress(line)
  }
  const httpAgent = new http.Agent({ keepAlive: true, maxSockets: Infinity })
  const dir = join(ctx.dir, 'subs-fanout')

  // Baseline: one client, a fresh agent.
  progress(`baseline: 1 client, rates ${RATES.join(', ')} w/s for ${STEP_MS / 1000} s each`)
  let baseline: Step[]
  {
    const [agent] = await startCluster(
      await clusterSpecs({ dir: join(dir, 'one'), count: 1, settings: SETTINGS }),
    )
    if (agent === undefined) throw new Error('no agent')
    const one = new Client(true)
    try {
      const first = await warmUp(agent)
      await openClients(agent, httpAgent, [one])
      baseline = await steps(agent, [one], first, progress, '1 client')
    } finally {
      one.close()
      await agent.stop()
    }
  }

  progress(`${SUBSCRIBERS} clients (${SAMPLED} timed): memory, then the same rates`)
  const [agent] = await startCluster(
    await clusterSpecs({ dir: join(dir, 'many'), count: 1, settings: SETTINGS }),
  )
  if (agent === undefined) throw new Error('no agent')
  const every = Math.max(1, Math.floor(SUBSCRIBERS / SAMPLED))
  const clients = Array.from(
    { length: SUBSCRIBERS },
    (_, i) => new Client(i % every === 0 && i / every < SAMPLED),
  )
  try {
    const first = await warmUp(agent)
    await sleep(SETTLE_MS)
    const rssNone = await medianRss(agent.pid)
    await openClients(agent, httpAgent, clients.slice(0, 1))
    await sleep(SETTLE_MS)
    const rssOne = await medianRss(agent.pid)
    const openStart = performance.now()
    await openClients(agent, httpAgent, clients.slice(1))
    const openMs = performance.now() - openStart
    await sleep(SETTLE_MS)
    const rssAll = await medianRss(agent.pid)
    const listed = (await (await fetch(`${agent.api}/v1/subscriptions`)).json()) as {
      listeners: number
    }[]
    if (listed.length !== 1 || listed[0]?.listeners !== SUBSCRIBERS) {
      throw new Error(
        `expected 1 subscription with ${SUBSCRIBERS} listeners: ${JSON.stringify(listed)}`,
      )
    }
    const perClient = (rssAll - rssNone) / SUBSCRIBERS
    const marginal = (rssAll - rssOne) / (SUBSCRIBERS - 1)
    progress(
      `RSS: none ${(rssNone / 2 ** 20).toFixed(1)} MiB, one ${(rssOne / 2 ** 20).toFixed(1)} MiB, ` +
        `${SUBSCRIBERS} ${(rssAll / 2 ** 20).toFixed(1)} MiB: ${kb(perClient)} per client ` +
        `(${kb(marginal)} marginal); opened in ${(openMs / 1000).toFixed(1)} s`,
    )
    const many = await steps(agent, clients, first, progress, `${SUBSCRIBERS} clients`)

    const best = (s: readonly Step[]): number =>
      s.filter((x) => x.passed).reduce((m, x) => Math.max(m, x.rate), 0)
    const delivered = many.filter((x) => x.delivered).at(-1)
    const stepRows = many.map((s) => {
      const b = baseline.find((x) => x.rate === s.rate)
      const p99 = pct(s.eventMs, 0.99)
      const b99 = b === undefined ? NaN : pct(b.eventMs, 0.99)
      return [
        String(s.rate),
        s.writesPerS.toFixed(0),
        fmt(pct(s.eventMs, 0.5)),
        fmt(p99),
        fmt(s.eventMs.at(-1) ?? NaN),
        b === undefined ? '-' : fmt(pct(b.eventMs, 0.5)),
        fmt(b99),
        Number.isNaN(b99) ? '-' : (p99 / b99).toFixed(2),
        `${SUBSCRIBERS - s.incomplete}/${SUBSCRIBERS}`,
        String(s.errors),
        `${(s.agentCpu * 100).toFixed(0)}%`,
        `${(s.benchCpu * 100).toFixed(0)}%`,
        s.passed ? 'yes' : 'no',
      ]
    })
    const firstError = many.find((s) => s.firstError !== null)?.firstError
    const settings = describeSettings(SETTINGS)
    return {
      tables: [
        {
          title: `${SUBSCRIBERS} clients of one subscription on one agent: send to event received (ms), stepping the write rate`,
          headers: [
            'w/s asked',
            'w/s done',
            'p50',
            'p99',
            'max',
            '1 client p50',
            '1 client p99',
            'p99 ratio',
            'got every event',
            'errors',
            'agent CPU',
            'bench CPU',
            `p99 < ${P99_GOAL_MS}`,
          ],
          rows: stepRows,
          notes: [
            `${STEP_MS / 1000} s per rate, single-row INSERTs on the same agent (open loop, up to ${SOCKETS} in flight);`,
            `  times from ${SAMPLED} evenly spread clients (every event of each); the others count their events;`,
            `  got every event: within ${DRAIN_TIMEOUT_MS / 1000} s of the last write; a rate meets the goal when all`,
            `  ${SUBSCRIBERS} got every event, no error event, the rate reached 90% and p99 < ${P99_GOAL_MS} ms;`,
            `  steps go on while every event is delivered and p99 < ${P99_STOP_MS} ms`,
            '1 client: the same steps on a fresh agent with one client (baseline, same run); p99 ratio: many / one',
            'CPU: the agent process (utime+stime, /proc) and this process (which reads every stream), per wall second',
            `settings: ${settings} (default [subscriptions] batch_ms = 5)`,
            ...(firstError === undefined || firstError === null
              ? []
              : [`first error: ${firstError}`]),
            machineLine(ctx.machine),
            "  the agent and this process share the 2 cores (with other engineers' work): at high rates",
            '  either may be the bottleneck',
          ],
        },
        {
          title: `Agent memory per client (${SUBSCRIBERS} idle clients of one subscription)`,
          headers: [
            'RSS, no client',
            'RSS, 1 client',
            `RSS, ${SUBSCRIBERS} clients`,
            'per client',
            'marginal',
            'etcd per watch',
            'ratio to etcd',
          ],
          rows: [
            [
              `${(rssNone / 2 ** 20).toFixed(1)} MiB`,
              `${(rssOne / 2 ** 20).toFixed(1)} MiB`,
              `${(rssAll / 2 ** 20).toFixed(1)} MiB`,
              kb(perClient),
              kb(marginal),
              kb(ETCD_BYTES_PER_WATCH),
              (perClient / ETCD_BYTES_PER_WATCH).toFixed(2),
            ],
          ],
          notes: [
            `VmRSS of the agent process, median of ${RSS_SAMPLES} readings ${RSS_SAMPLE_GAP_MS} ms apart, ${SETTLE_MS / 1000} s after opening;`,
            `  per client: (${SUBSCRIBERS} - none) / ${SUBSCRIBERS}; marginal: (${SUBSCRIBERS} - one) / ${SUBSCRIBERS - 1} (without the`,
            '  subscription itself); no GC forced in the agent, so a rough figure; evaluation reader',
            '  processes are separate and not counted',
            `etcd: ~18 KB per watch stream, as stated (not measured here); ${SUBSCRIBERS} streams opened in ${(openMs / 1000).toFixed(1)} s`,
          ],
        },
      ],
      summary: [
        {
          metric: `highest write rate with ${SUBSCRIBERS} clients, all served, p99 < ${P99_GOAL_MS} ms (w/s)`,
          value: `${best(many)} (1 client: ${best(baseline)})`,
        },
        {
          metric: `highest write rate with ${SUBSCRIBERS} clients, all served (w/s), its p99 (ms)`,
          value:
            delivered === undefined
              ? 'none'
              : `${delivered.rate}, p99 ${fmt(pct(delivered.eventMs, 0.99))}`,
        },
        {
          metric: 'agent memory per subscription client',
          value: `${kb(perClient)} (${(perClient / ETCD_BYTES_PER_WATCH).toFixed(2)} of etcd's 18 KB per watch)`,
        },
      ],
      data: {
        subscribers: SUBSCRIBERS,
        sampled: SAMPLED,
        rates: RATES,
        stepMs: STEP_MS,
        memory: { rssNone, rssOne, rssAll, perClient, marginal, openMs },
        many,
        baseline,
      },
    }
  } finally {
    for (const c of clients) c.close()
    await stopAll([agent])
    httpAgent.destroy()
  }
}

export const subsFanout: BenchModule = {
  name: 'subs-fanout',
  title:
    'Subscriptions: many clients of one query on one agent: write rate they keep up with, memory each',
  run,
}
