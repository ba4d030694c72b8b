/**
 * Cluster benchmark: a node that missed 100,000 changes (10,000 with BENCH_QUICK=1) catches up.
 *
 * Method. Three real agents on loopback (default settings). Once they list each other alive,
 * agent 3 is stopped (SIGTERM by PID). Agent 1 then takes 100,000 single-row INSERT
 * transactions through `POST /v1/transactions` (16 keep-alive connections), so it has 100,000
 * versions of one change-row each that agent 3 lacks; agent 2 receives them as usual. Once
 * agent 2's SQLite file holds every row and the broadcast queues are empty, agents 1 and 2 are
 * scraped (`GET /metrics`), agent 3 is started again on its old data, and its SQLite file is
 * read every 20 ms until it holds every row. Reported: the time from the restart (spawn) until
 * then, and the bytes agents 1 and 2 sent meanwhile: the deltas of
 * `patina_gossip_bytes_sent_total{kind="sync"}` and `{kind="broadcast"}` (no writes happen
 * during the catch-up, and agents 1 and 2 lack nothing from each other, so that is what agent 3
 * was sent).
 *
 * The size of what agent 3 lacked is measured with the wire codec after the agents stop: agent
 * 1's versions, read back from a copy of its database (`Replica.changesFor`), cut into chunks
 * as the sync server cuts them (`chunkVersion`), and summed with `chunkEncodedBytes` (chunks as
 * `sync-chunks` carries them). The ideal ratio of bytes sent to that size is 1. The sync byte
 * counter adds up the encoded bytes of the `sync-chunks` answers; the queue-accounting estimate
 * (`chunkBytes()`) is printed too.
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
  startAgent,
  startCluster,
  statementBody,
  stopAll,
  transact,
  waitAllAlive,
  type Agent,
  type Metrics,
} from './lib/agents.ts'
import {
  fmtInt,
  fmtMB,
  QUICK,
  type BenchContext,
  type BenchModule,
  type BenchReport,
} from './lib/common.ts'
import { INSERT_SQL, localRow } from './lib/fixture.ts'
import { HttpClient } from './lib/http.ts'

const CHANGES = QUICK ? 10_000 : 100_000
const CONNECTIONS = 16
const CATCHUP_TIMEOUT_MS = 15 * 60_000
const SETTLE_TIMEOUT_MS = 120_000
const POLL_MS = 20

function insertBody(id: number): string {
  const [, a, b, c, d] = localRow(id)
  return statementBody(INSERT_SQL, [id, a, Number(b), c, d])
}

function rowCount(path: string): number {
  const db = openReader(path)
  try {
    return db.prepare('SELECT count(*) FROM t').pluck().safeIntegers(false).get() as number
  } finally {
    db.close()
  }
}

async function until(
  what: string,
  timeoutMs: number,
  ok: () => boolean | Promise<boolean>,
): Promise<number> {
  const start = performance.now()
  while (!(await ok())) {
    if (performance.now() - start > timeoutMs)
      throw new Error(`${what}: not within ${timeoutMs} ms`)
    await sleep(POLL_MS)
  }
  return performance.now() - start
}

async function run(ctx: BenchContext): Promise<BenchReport> {
  const dir = join(ctx.dir, 'replication-catchup')
  const specs = await clusterSpecs({ dir, count: 3 })
  let agents: Agent[] = await startCluster(specs)
  try {
    await waitAllAlive(agents, 30_000)
    const [a1, a2, a3] = agents as [Agent, Agent, Agent]
    const lateSpec = a3.spec
    await a3.stop()
    ctx.progress(`catch-up: agent 3 stopped; writing ${fmtInt(CHANGES)} transactions on agent 1`)
    const client = new HttpClient(new URL(a1.api), CONNECTIONS)
    const writeStart = performance.now()
    let next = 1
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        while (next <= CHANGES) await transact(client, insertBody(next++))
      }),
    )
    client.close()
    const writeMs = performance.now() - writeStart
    ctx.progress(`catch-up: written in ${(writeMs / 1000).toFixed(1)} s; waiting for agent 2`)
    await until('agent 2 has every row', SETTLE_TIMEOUT_MS, () => rowCount(a2.dbPath) === CHANGES)
    const queuesEmpty = async (): Promise<boolean> => {
      const ms = await Promise.all([a1, a2].map(scrape))
      return ms.every(
        (m) =>
          metric(m, 'patina_queue_size', { queue: 'broadcast' }) === 0 &&
          metric(m, 'patina_queue_size', { queue: 'apply' }) === 0,
      )
    }
    await until('broadcast queues empty', SETTLE_TIMEOUT_MS, queuesEmpty)
    const lacked = ownHead(a1.dbPath)
    const before: Metrics[] = await Promise.all([a1, a2].map(scrape))
    ctx.progress(`catch-up: restarting agent 3 (lacks ${fmtInt(lacked)} versions)`)
    const restartAt = performance.now()
    const late = await startAgent(lateSpec)
    agents = [a1, a2, late]
    const readyMs = performance.now() - restartAt
    const at: { firstRowMs: number | null; aliveMs: number | null } = {
      firstRowMs: null,
      aliveMs: null,
    }
    const watchAlive = async (): Promise<void> => {
      await waitAllAlive(agents, CATCHUP_TIMEOUT_MS)
      at.aliveMs = performance.now() - restartAt
    }
    const reader = openReader(late.dbPath)
    const count = reader.prepare('SELECT count(*) FROM t').pluck().safeIntegers(false)
    const progressEvery = 5000
    let lastProgress = performance.now()
    const catchUp = until('agent 3 caught up', CATCHUP_TIMEOUT_MS, () => {
      const n = count.get() as number
      if (n > 0 && at.firstRowMs === null) at.firstRowMs = performance.now() - restartAt
      if (performance.now() - lastProgress > progressEvery) {
        lastProgress = performance.now()
        ctx.progress(`catch-up: agent 3 has ${fmtInt(n)} of ${fmtInt(CHANGES)} rows`)
      }
      return n === CHANGES
    })
    await Promise.all([catchUp, watchAlive()])
    const caughtUpMs = performance.now() - restartAt
    reader.close()
    const after: Metrics[] = await Promise.all([a1, a2].map(scrape))
    const lateMetrics = await scrape(late)
    const d = (name: string, labels: Record<string, string> = {}): number =>
      metricDelta(before, after, name, labels)
    const syncBytes = d('patina_gossip_bytes_sent_total', { kind: 'sync' })
    const broadcastBytes = d('patina_gossip_bytes_sent_total', { kind: 'broadcast' })
    await stopAll(agents)
    const size = encodedSize(a1.dbPath, join(dir, 'size'), 1, lacked, 0)
    const sent = syncBytes + broadcastBytes
    const aliveS = at.aliveMs === null ? '-' : (at.aliveMs / 1000).toFixed(2)
    const firstS = at.firstRowMs === null ? '-' : (at.firstRowMs / 1000).toFixed(2)
    return {
      tables: [
        {
          title: `Catch-up of a node that missed ${fmtInt(CHANGES)} single-row transactions (3 agents, loopback)`,
          headers: [
            'versions lacked',
            'process ready s',
            'all alive s',
            'first row s',
            'caught up s',
            'rows/s',
            'sent: sync',
            'sent: broadcast',
          ],
          rows: [
            [
              fmtInt(lacked),
              (readyMs / 1000).toFixed(2),
              aliveS,
              firstS,
              (caughtUpMs / 1000).toFixed(2),
              fmtInt(CHANGES / (caughtUpMs / 1000)),
              fmtMB(syncBytes),
              fmtMB(broadcastBytes),
            ],
          ],
          notes: [
            'times from spawning agent 3 again on its old data; caught up = its SQLite file holds',
            `  every row (read every ${POLL_MS} ms); sent = deltas of patina_gossip_bytes_sent_total on`,
            '  agents 1 and 2 between just before the restart and the catch-up',
            `the ${fmtInt(CHANGES)} writes took ${(writeMs / 1000).toFixed(1)} s through HTTP ` +
              `(${CONNECTIONS} connections) while agent 2 replicated them`,
            `agent 3 itself: ${fmtInt(metric(lateMetrics, 'patina_sync_rounds_total'))} sync ` +
              `sessions, ${fmtInt(metric(lateMetrics, 'patina_sync_chunks_received_total'))} chunks ` +
              `received by sync, ${fmtInt(metric(lateMetrics, 'patina_apply_batches_total'))} apply ` +
              'transactions',
            'default settings (sync every 2 s ±50%, doubling to 15 s while idle; 1 MiB per reply)',
            machineLine(ctx.machine),
            'one run; the machine is shared, so timings are noisy',
          ],
        },
        {
          title: 'Bytes sent to the late node against the size of what it lacked',
          headers: ['unit of the size', 'size', 'bytes sent', 'sent / size'],
          rows: [
            [
              'wire codec: chunkEncodedBytes (as in sync-chunks)',
              fmtMB(size.chunkBytes),
              fmtMB(sent),
              (sent / size.chunkBytes).toFixed(2),
            ],
            [
              'wire codec: one change message per chunk (as broadcast)',
              fmtMB(size.messageBytes),
              fmtMB(sent),
              (sent / size.messageBytes).toFixed(2),
            ],
            [
              'chunkBytes() estimate (queue accounting, not the wire)',
              fmtMB(size.accountingBytes),
              fmtMB(sent),
              (sent / size.accountingBytes).toFixed(2),
            ],
          ],
          notes: [
            `lacked: ${fmtInt(size.versions)} versions, ${fmtInt(size.changes)} changes (cells), ` +
              `${fmtInt(size.chunks)} chunks; ${(size.chunkBytes / size.changes).toFixed(1)} ` +
              'encoded bytes per change',
            'bytes sent counts what the agents count: encoded sync-chunks answers and broadcast',
            '  messages; frame headers, sync-state/sync-needs messages and TCP/IP are not in it.',
            '  1.00 against the wire size means each version was sent once',
          ],
        },
      ],
      summary: [
        {
          metric: `catch-up of ${fmtInt(CHANGES)} changes: seconds`,
          value: (caughtUpMs / 1000).toFixed(2),
        },
        {
          metric: 'catch-up: bytes sent / encoded size of the lacked versions',
          value: (sent / size.chunkBytes).toFixed(2),
          goal: '1 (each version once)',
        },
      ],
      data: {
        changes: CHANGES,
        lacked,
        writeMs,
        readyMs,
        aliveMs: at.aliveMs,
        firstRowMs: at.firstRowMs,
        caughtUpMs,
        syncBytes,
        broadcastBytes,
        size,
        lateMetrics: Object.fromEntries(
          [...lateMetrics].filter(
            ([k]) => k.startsWith('patina_sync') || k.startsWith('patina_apply'),
          ),
        ),
      },
    }
  } finally {
    await stopAll(agents)
  }
}

export const replicationCatchup: BenchModule = {
  name: 'replication-catchup',
  title: `On loopback: a node that missed ${fmtInt(CHANGES)} changes catches up: time and bytes`,
  run,
}
