/**
 * Cluster benchmark: convergence after a network partition with writes on both sides.
 *
 * Method. Four real `patina agent` processes, each in its own network namespace (bench/lib/netns.ts):
 * agents 1-2 on side A, 3-4 on side B, gossip on a data network whose two halves are joined by
 * one veth pair, the HTTP API on a separate management network. A driver process runs in the
 * hub namespace (where it reaches every API); it forms the cluster, writes a few rows and waits
 * until all four databases are identical, then cuts the link between the sides (frames silently
 * lost: a partition, not a pause) for 60 s (10 s with BENCH_QUICK=1). During the partition one
 * writer per side (agent 1 on A, agent 3 on B) writes 20 transactions/s: every other one is an
 * upsert of one of 50 ids both sides write (conflicts for the CRDT merge to settle), the others
 * inserts of ids only that side writes. Then the writers stop, the link comes back, and the
 * driver reads all four SQLite files (read-only) every 25 ms until they hold identical rows
 * (same row count and same digest of every column of every row of `t`). Reported: writes per
 * side, time from the heal until every agent lists every agent alive again (`/v1/members`),
 * and until the rows are identical everywhere.
 *
 * Two configurations: the defaults, and fast settings (stated in the output) that shorten
 * membership's reconnect probe and the anti-entropy interval. Needs root and iproute2 (network
 * namespaces, veth, bridges); where they are missing the benchmark says so and measures nothing.
 */
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type Database from 'better-sqlite3'
import {
  describeSettings,
  machineLine,
  members,
  metricDelta,
  openReader,
  scrape,
  sleep,
  startCluster,
  statementBody,
  stopAll,
  tableDigest,
  transact,
  waitAllAlive,
  type Agent,
  type AgentSpec,
  type TomlSections,
} from './lib/agents.ts'
import { QUICK, type BenchContext, type BenchModule, type BenchReport } from './lib/common.ts'
import { UPSERT_SQL, localRow, remoteRow } from './lib/fixture.ts'
import { clientMain, HttpClient } from './lib/http.ts'
import {
  cut,
  heal,
  netnsUnavailable,
  PartitionNet,
  runInNetns,
  type NetLayout,
} from './lib/netns.ts'

const FILE = fileURLToPath(import.meta.url)
const AGENTS = 4
const PARTITION_MS = QUICK ? 10_000 : 60_000
/** Transactions per second per side during the partition. */
const RATE_PER_SIDE = 20
/** Ids both sides upsert (conflicts). */
const SHARED_IDS = 50
/** Rows written before the partition, on agent 1. */
const WARM_ROWS = 20
const CONVERGE_TIMEOUT_MS = 300_000
const POLL_MS = 25
const API_PORT = 8080
const GOSSIP_PORT = 8787

const side = (i: number): 0 | 1 => (i < AGENTS / 2 ? 0 : 1)

/** The configurations measured. */
const VARIANTS: readonly { readonly name: string; readonly settings: TomlSections }[] = [
  { name: 'defaults', settings: {} },
  {
    name: 'fast',
    settings: {
      gossip: { reconnect_interval_ms: 1000 },
      perf: { min_sync_backoff: 0.25, max_sync_backoff: 1 },
    },
  },
]

interface Job {
  readonly dir: string
  readonly layout: NetLayout
}

interface VariantResult {
  readonly name: string
  readonly settings: string
  readonly formationMs: number
  readonly writesA: number
  readonly writesB: number
  /** ms from the cut until every agent listed every agent of the other side down. */
  readonly downMs: number | null
  /** Rows identical within each side when the writers stopped. */
  readonly sidesConvergedAtHeal: boolean
  /** ms from the heal until every agent listed all four alive. */
  readonly aliveMs: number | null
  /** ms from the heal until all four databases held identical rows. */
  readonly convergedMs: number | null
  readonly rows: number
  /** Per agent: ms from the heal until it first held the final rows. */
  readonly agentFinalMs: readonly (number | null)[]
  readonly metrics: Record<string, number>
}

// ------------------------------------------------------------------------------ driver

function upsertBody(id: number, s: 0 | 1, n: number): string {
  const [, a, b, c, d] = s === 0 ? localRow(n) : remoteRow(n)
  return statementBody(UPSERT_SQL, [id, a, Number(b), c, d])
}

async function variant(
  job: Job,
  v: (typeof VARIANTS)[number],
  progress: (line: string) => void,
): Promise<VariantResult> {
  const specs: AgentSpec[] = job.layout.agents.map((a, i) => ({
    name: `agent-${i + 1}`,
    dir: join(job.dir, v.name, `agent-${i + 1}`),
    apiAddr: `${a.mgmt}:${API_PORT}`,
    gossipAddr: `${a.data}:${GOSSIP_PORT}`,
    bootstrap: i === 0 ? [] : [`${job.layout.agents[0]?.data ?? ''}:${GOSSIP_PORT}`],
    settings: v.settings,
    netns: a.netns,
  }))
  const agents = await startCluster(specs)
  const readers: Database.Database[] = []
  const clients: HttpClient[] = []
  try {
    const formationMs = await waitAllAlive(agents, 30_000)
    for (const a of agents) readers.push(openReader(a.dbPath))
    const [a1, , b1] = agents as [Agent, Agent, Agent, Agent]
    const clientA = new HttpClient(new URL(a1.api), 4)
    const clientB = new HttpClient(new URL(b1.api), 4)
    clients.push(clientA, clientB)
    for (let i = 1; i <= WARM_ROWS; i++) await transact(clientA, upsertBody(i, 0, i))
    const digests = (): { rows: number; digest: string }[] => readers.map((r) => tableDigest(r))
    const same = (ds: readonly { rows: number; digest: string }[]): boolean =>
      ds.every((d) => d.digest === ds[0]?.digest && d.rows === ds[0].rows)
    const warmStart = performance.now()
    while (!same(digests())) {
      if (performance.now() - warmStart > 30_000) throw new Error('no convergence before the cut')
      await sleep(POLL_MS)
    }
    const before = await Promise.all(agents.map(scrape))
    progress(`partition (${v.name}): cut for ${PARTITION_MS / 1000} s, writes on both sides`)
    cut(job.layout.hub)
    const cutAt = performance.now()
    let writesA = 0
    let writesB = 0
    let failures = 0
    const writer = async (s: 0 | 1, client: HttpClient): Promise<void> => {
      const interval = 1000 / RATE_PER_SIDE
      const count = Math.floor((PARTITION_MS / 1000) * RATE_PER_SIDE)
      for (let k = 0; k < count; k++) {
        await sleep(cutAt + k * interval - performance.now())
        // Even k: a shared id (conflict); odd k: an id only this side writes.
        const id = k % 2 === 0 ? 1 + ((k / 2) % SHARED_IDS) : (s + 1) * 1_000_000 + k
        try {
          await transact(client, upsertBody(id, s, k + s * 7))
          if (s === 0) writesA++
          else writesB++
        } catch {
          // Counted: a write the agent refused is reported, and it is not in the rows.
          failures++
        }
      }
    }
    // Meanwhile: when has every agent seen the other side down?
    let downMs: number | null = null
    const watchDown = async (): Promise<void> => {
      while (performance.now() - cutAt < PARTITION_MS && downMs === null) {
        const views = await Promise.all(agents.map((a) => members(a).catch(() => [])))
        const allDown = views.every((ms, i) =>
          agents
            .filter((_, j) => side(j) !== side(i))
            .every((o) => ms.find((m) => m.addr === o.gossip)?.state === 'down'),
        )
        if (allDown) downMs = performance.now() - cutAt
        await sleep(250)
      }
    }
    await Promise.all([writer(0, clientA), writer(1, clientB), watchDown()])
    if (failures > 0) progress(`partition (${v.name}): ${failures} writes failed`)
    await sleep(cutAt + PARTITION_MS - performance.now())
    // Let each side settle (its own broadcasts) before judging it, bounded.
    const sideSame = (): boolean => {
      const ds = digests()
      return same(ds.filter((_, i) => side(i) === 0)) && same(ds.filter((_, i) => side(i) === 1))
    }
    const settleStart = performance.now()
    while (!sideSame() && performance.now() - settleStart < 2000) await sleep(POLL_MS)
    const sidesConvergedAtHeal = sideSame()
    progress(`partition (${v.name}): heal; ${writesA} writes on A, ${writesB} on B`)
    heal(job.layout.hub)
    const healAt = performance.now()
    let aliveMs: number | null = null
    let convergedMs: number | null = null
    let rows = 0
    const watchAlive = async (): Promise<void> => {
      while (aliveMs === null && performance.now() - healAt < CONVERGE_TIMEOUT_MS) {
        const views = await Promise.all(agents.map((a) => members(a).catch(() => [])))
        if (
          views.every((ms) =>
            agents.every((o) => ms.find((m) => m.addr === o.gossip)?.state === 'alive'),
          )
        ) {
          aliveMs = performance.now() - healAt
        }
        await sleep(100)
      }
    }
    const polls: { at: number; digests: string[] }[] = []
    const watchRows = async (): Promise<void> => {
      while (convergedMs === null && performance.now() - healAt < CONVERGE_TIMEOUT_MS) {
        const ds = digests()
        polls.push({ at: performance.now() - healAt, digests: ds.map((x) => x.digest) })
        if (same(ds)) {
          convergedMs = performance.now() - healAt
          rows = ds[0]?.rows ?? 0
        } else await sleep(POLL_MS)
      }
    }
    await Promise.all([watchAlive(), watchRows()])
    // Per agent: when it first held the final rows (the others were still catching up).
    const final = polls.at(-1)?.digests[0]
    const agentFinalMs = agents.map((_, i) => {
      const hit = polls.find((p) => p.digests[i] === final)
      return convergedMs === null || hit === undefined ? null : hit.at
    })
    const after = await Promise.all(agents.map(scrape))
    const d = (name: string, labels: Record<string, string> = {}): number =>
      metricDelta(before, after, name, labels)
    return {
      name: v.name,
      settings: describeSettings(v.settings),
      formationMs,
      writesA,
      writesB,
      downMs,
      sidesConvergedAtHeal,
      aliveMs,
      convergedMs,
      rows,
      agentFinalMs,
      metrics: {
        syncRounds: d('patina_sync_rounds_total'),
        syncFailed: d('patina_sync_failed_total'),
        syncChunks: d('patina_sync_chunks_received_total'),
        broadcastNew: d('patina_broadcast_received_total', { outcome: 'new' }),
        broadcastDropped: d('patina_queue_dropped_total', { queue: 'link' }),
        syncBytes: d('patina_gossip_bytes_sent_total', { kind: 'sync' }),
        broadcastBytes: d('patina_gossip_bytes_sent_total', { kind: 'broadcast' }),
      },
    }
  } finally {
    heal(job.layout.hub)
    for (const c of clients) c.close()
    for (const r of readers) r.close()
    await stopAll(agents)
  }
}

async function drive(raw: unknown): Promise<VariantResult[]> {
  const job = raw as Job
  const progress = (line: string): void => {
    process.stderr.write(`  · ${line}\n`)
  }
  const out: VariantResult[] = []
  for (const v of VARIANTS) out.push(await variant(job, v, progress))
  return out
}

clientMain(FILE, drive)

// ------------------------------------------------------------------------------ runner side

const secs = (ms: number | null): string => (ms === null ? 'never' : (ms / 1000).toFixed(2))

async function run(ctx: BenchContext): Promise<BenchReport> {
  const why = netnsUnavailable()
  if (why !== null) {
    ctx.progress(`partition: network namespaces unavailable (${why}); skipped`)
    return {
      tables: [
        {
          title: 'Partition: skipped',
          headers: ['reason'],
          rows: [[`network namespaces unavailable: ${why}`]],
          notes: [
            'the scenario needs root and iproute2 (netns, veth, bridge); nothing was measured',
            machineLine(ctx.machine),
          ],
        },
      ],
      summary: [],
      data: { skipped: why },
    }
  }
  const net = new PartitionNet(AGENTS, side)
  let driverPid: number | undefined
  let results: VariantResult[]
  try {
    results = (await runInNetns(
      net.layout.hub,
      FILE,
      { dir: join(ctx.dir, 'replication-partition'), layout: net.layout } satisfies Job,
      (pid) => {
        driverPid = pid
      },
    )) as VariantResult[]
  } finally {
    if (driverPid !== undefined) {
      try {
        process.kill(driverPid, 'SIGTERM')
      } catch {
        // Already exited: the normal case.
      }
    }
    net.destroy()
  }
  const rows = results.map((r) => [
    r.name,
    String(r.writesA),
    String(r.writesB),
    secs(r.downMs),
    r.sidesConvergedAtHeal ? 'yes' : 'NO',
    secs(r.aliveMs),
    secs(r.convergedMs),
    String(r.rows),
    r.agentFinalMs.map(secs).join(' '),
  ])
  const mrows = results.map((r) => [
    r.name,
    String(r.metrics['syncRounds'] ?? 0),
    String(r.metrics['syncFailed'] ?? 0),
    String(r.metrics['syncChunks'] ?? 0),
    String(r.metrics['broadcastNew'] ?? 0),
    String(r.metrics['broadcastDropped'] ?? 0),
  ])
  return {
    tables: [
      {
        title: `Partition of ${AGENTS} agents (2 | 2) for ${PARTITION_MS / 1000} s with writes on both sides`,
        headers: [
          'settings',
          'writes A',
          'writes B',
          'other side down s',
          'sides equal at heal',
          'all alive s',
          'identical rows s',
          'rows',
          'per agent s',
        ],
        rows,
        notes: [
          'real agents in network namespaces; the link between the sides cut (frames lost, no',
          '  RST/ICMP), HTTP API on a separate management network; times from the cut / the heal',
          `writes: ${RATE_PER_SIDE}/s per side, half upserts of ${SHARED_IDS} ids both sides write`,
          '  (conflicts), half inserts of ids only that side writes; writers stop at the heal',
          'identical rows: row count and a digest of every column of every row, read from each',
          `  agent's SQLite file every ${POLL_MS} ms; per agent: when agents 1..4 first held`,
          '  the final rows (agents 1-2 on side A, 3-4 on side B)',
          ...results.map((r) => `${r.name}: ${r.settings}`),
          machineLine(ctx.machine),
          'one run per configuration; the machine is shared, so timings are noisy',
        ],
      },
      {
        title: 'Partition: replication activity from the cut to convergence (all agents)',
        headers: [
          'settings',
          'sync rounds',
          'sync failed',
          'sync chunks',
          'bcast new',
          'link drops',
        ],
        rows: mrows,
        notes: [
          'GET /metrics deltas: patina_sync_rounds_total, patina_sync_failed_total,',
          '  patina_sync_chunks_received_total, patina_broadcast_received_total{outcome="new"},',
          '  patina_queue_dropped_total{queue="link"}',
        ],
      },
    ],
    summary: results.map((r) => ({
      metric: `partition ${PARTITION_MS / 1000} s, ${r.name}: heal to identical rows (s)`,
      value: secs(r.convergedMs),
    })),
    data: { agents: AGENTS, partitionMs: PARTITION_MS, ratePerSide: RATE_PER_SIDE, results },
  }
}

export const replicationPartition: BenchModule = {
  name: 'replication-partition',
  title: `Network namespaces: convergence after a ${PARTITION_MS / 1000} s partition with writes on both sides`,
  run,
}
