/**
 * Cluster benchmark: replication bytes per change per receiving node, against the encoded size
 * of the change: the broadcast redundancy factor.
 *
 * Method. For 3 and for 10 real agents on loopback (default settings): agent 1 takes 1,000
 * single-row INSERTs (100 with BENCH_QUICK=1), and once every agent's SQLite file holds them
 * and the broadcast queues are empty, every agent is scraped (`GET /metrics`). Then agent 1
 * takes 1,000 single-row UPDATEs (100 with BENCH_QUICK=1; two columns of a different row each)
 * at 100 transactions/s. Once every agent holds identical rows and every broadcast queue is empty
 * again (plus 2 s for retransmissions due), every agent is scraped again. Totals over all
 * agents: `patina_gossip_bytes_sent_total{kind="broadcast"}` and `{kind="sync"}` deltas,
 * `patina_broadcast_sends_total`, and received messages by outcome.
 *
 * The reference size is agent 1's update versions read back from a copy of its database after
 * the agents stop, each encoded as the `change` message a broadcast carries (`encodeMessage`,
 * with a current timestamp). The ideal is each of the N - 1 other nodes receiving each change
 * once: bytes sent / (changes × (N - 1) × encoded size) = 1. More is redundancy (a change sent
 * to a node that already has it); the count of duplicates received says how much.
 */
import { join } from 'node:path'
import {
  clusterSpecs,
  encodedSize,
  machineLine,
  metric,
  metricDelta,
  openReader,
  ownHead,
  scrape,
  sleep,
  startCluster,
  statementBody,
  stopAll,
  tableDigest,
  transact,
  waitAllAlive,
  type Agent,
  type Metrics,
} from './lib/agents.ts'
import {
  fmtInt,
  QUICK,
  type BenchContext,
  type BenchModule,
  type BenchReport,
} from './lib/common.ts'
import { INSERT_SQL, localRow, remoteRow } from './lib/fixture.ts'
import { HttpClient } from './lib/http.ts'

const SIZES = [3, 10] as const
const UPDATES = QUICK ? 100 : 1_000
/** One row per update: an update never overwrites the cells of an earlier one, so each update
 * version still holds its cells when its size is measured afterwards. */
const ROWS = UPDATES
const RATE_PER_S = 100
const SETTLE_MS = 2_000
const TIMEOUT_MS = 120_000
const UPDATE_SQL = 'UPDATE t SET a = ?, b = ? WHERE id = ?'

interface SizeResult {
  readonly nodes: number
  readonly updates: number
  readonly broadcastBytes: number
  readonly syncBytes: number
  readonly sends: number
  readonly receivedNew: number
  readonly receivedDuplicate: number
  readonly syncChunks: number
  /** Mean encoded `change` message of one update, bytes. */
  readonly messageBytes: number
  readonly changesPerUpdate: number
  readonly convergeMs: number
}

async function until(what: string, ok: () => boolean | Promise<boolean>): Promise<number> {
  const start = performance.now()
  while (!(await ok())) {
    if (performance.now() - start > TIMEOUT_MS)
      throw new Error(`${what}: not within ${TIMEOUT_MS} ms`)
    await sleep(20)
  }
  return performance.now() - start
}

async function queuesEmpty(agents: readonly Agent[]): Promise<boolean> {
  const ms = await Promise.all(agents.map(scrape))
  return ms.every(
    (m) =>
      metric(m, 'patina_queue_size', { queue: 'broadcast' }) === 0 &&
      metric(m, 'patina_queue_size', { queue: 'apply' }) === 0,
  )
}

async function measureSize(
  dir: string,
  nodes: number,
  progress: (l: string) => void,
): Promise<SizeResult> {
  const agents = await startCluster(await clusterSpecs({ dir, count: nodes }))
  try {
    await waitAllAlive(agents, 30_000)
    const writer = agents[0] as Agent
    const client = new HttpClient(new URL(writer.api), 8)
    const readers = agents.map((a) => openReader(a.dbPath))
    const converged = (): boolean => {
      const ds = readers.map((r) => tableDigest(r))
      return ds.every((d) => d.rows === ROWS && d.digest === ds[0]?.digest)
    }
    try {
      for (let id = 1; id <= ROWS; id++) {
        const [, a, b, c, d] = localRow(id)
        await transact(client, statementBody(INSERT_SQL, [id, a, Number(b), c, d]))
      }
      await until('inserts everywhere', converged)
      await until('queues empty', () => queuesEmpty(agents))
      await sleep(SETTLE_MS)
      const firstUpdate = ownHead(writer.dbPath) + 1
      const before: Metrics[] = await Promise.all(agents.map(scrape))
      progress(`bytes: ${nodes} agents, ${fmtInt(UPDATES)} updates at ${RATE_PER_S}/s`)
      const start = performance.now()
      const inFlight: Promise<void>[] = []
      for (let k = 0; k < UPDATES; k++) {
        await sleep(start + (k * 1000) / RATE_PER_S - performance.now())
        const id = 1 + k
        const [, a, b] = remoteRow(k + 1)
        inFlight.push(transact(client, statementBody(UPDATE_SQL, [a, Number(b), id])))
      }
      await Promise.all(inFlight)
      const convergeStart = performance.now()
      await until('updates everywhere', converged)
      const convergeMs = performance.now() - convergeStart
      await until('queues empty', () => queuesEmpty(agents))
      await sleep(SETTLE_MS)
      const after: Metrics[] = await Promise.all(agents.map(scrape))
      const lastUpdate = ownHead(writer.dbPath)
      const d = (name: string, labels: Record<string, string> = {}): number =>
        metricDelta(before, after, name, labels)
      client.close()
      for (const r of readers) r.close()
      readers.length = 0
      await stopAll(agents)
      const size = encodedSize(
        writer.dbPath,
        join(dir, 'size'),
        firstUpdate,
        lastUpdate,
        Date.now(),
      )
      if (size.versions !== UPDATES)
        throw new Error(`expected ${UPDATES} versions, found ${size.versions}`)
      return {
        nodes,
        updates: UPDATES,
        broadcastBytes: d('patina_gossip_bytes_sent_total', { kind: 'broadcast' }),
        syncBytes: d('patina_gossip_bytes_sent_total', { kind: 'sync' }),
        sends: d('patina_broadcast_sends_total'),
        receivedNew: d('patina_broadcast_received_total', { outcome: 'new' }),
        receivedDuplicate: d('patina_broadcast_received_total', { outcome: 'duplicate' }),
        syncChunks: d('patina_sync_chunks_received_total'),
        messageBytes: size.messageBytes / size.versions,
        changesPerUpdate: size.changes / size.versions,
        convergeMs,
      }
    } finally {
      for (const r of readers) r.close()
      client.close()
    }
  } finally {
    await stopAll(agents)
  }
}

async function run(ctx: BenchContext): Promise<BenchReport> {
  const results: SizeResult[] = []
  for (const n of SIZES) {
    results.push(
      await measureSize(join(ctx.dir, `replication-bytes-${n}`), n, (line) => {
        ctx.progress(line)
      }),
    )
  }
  const perChangePerNode = (r: SizeResult): number =>
    (r.broadcastBytes + r.syncBytes) / r.updates / (r.nodes - 1)
  const rows = results.map((r) => [
    String(r.nodes),
    fmtInt(r.updates),
    r.messageBytes.toFixed(1),
    fmtInt(r.broadcastBytes),
    fmtInt(r.syncBytes),
    perChangePerNode(r).toFixed(1),
    (perChangePerNode(r) / r.messageBytes).toFixed(2),
    (r.sends / r.updates).toFixed(2),
    (r.receivedDuplicate / r.updates).toFixed(2),
    String(r.syncChunks),
  ])
  return {
    tables: [
      {
        title: `Replication bytes per change per receiving node (${fmtInt(UPDATES)} single-row updates on agent 1)`,
        headers: [
          'agents',
          'changes',
          'change msg B',
          'broadcast B',
          'sync B',
          'B/change/node',
          'redundancy',
          'sends/change',
          'dup recv/change',
          'sync chunks',
        ],
        rows,
        notes: [
          'change msg B: mean encoded change message of one update (encodeMessage; ' +
            `${results[0]?.changesPerUpdate.toFixed(0) ?? '?'} cells each)`,
          'broadcast B, sync B: deltas of patina_gossip_bytes_sent_total summed over all agents',
          'B/change/node = (broadcast + sync) / changes / (agents - 1); redundancy = that /',
          '  change msg B (1.00: every other node got each change exactly once)',
          'sends/change: patina_broadcast_sends_total / changes (the ideal is agents - 1);',
          '  dup recv/change: messages received that the node already had',
          'not counted: stream frame headers, TCP/IP, SWIM, sync-state messages of idle rounds',
          `updates at ${RATE_PER_S}/s; counted until identical rows everywhere, empty queues, +${SETTLE_MS / 1000} s`,
          'default settings: fanout 3, transmissions ⌊4·log10(peers + 1)⌋ at least 2,',
          '  retransmit after 100, 200, ... ms',
          machineLine(ctx.machine),
        ],
      },
    ],
    summary: results.map((r) => ({
      metric: `${r.nodes} agents: replication bytes per change per node / change size`,
      value: (perChangePerNode(r) / r.messageBytes).toFixed(2),
      goal: '1 (no redundancy)',
    })),
    data: { results },
  }
}

export const replicationBytes: BenchModule = {
  name: 'replication-bytes',
  title: 'On loopback: replication bytes per change per node vs the change size (3, 10 agents)',
  run,
}
