/**
 * Cluster benchmark: how long a write on one agent takes to be readable on every other agent,
 * on loopback, against etcd and NATS clusters measured the same way in the same run.
 *
 * Method. A fresh cluster of real `patina agent` processes per scenario (bench/lib/agents.ts,
 * default settings). One HTTP client in this process writes single-row INSERTs of table `t`
 * through agent 1's `POST /v1/transactions` (one keep-alive connection per write in flight);
 * the clock starts just before a write is sent. "Readable" is detected the way Patina's users
 * read: a read-only better-sqlite3 connection per other agent on that agent's database file.
 * A poll is `PRAGMA data_version` (it changes when the agent commits) and, when it changed, a
 * range query of the ids not seen yet. By default a reader is polled when inotify reports a
 * write to its agent's WAL file (and a few times more with setImmediate until the commit is
 * visible), with a 1 ms timer poll as a safety net. BENCH_POLL=spin polls every reader back to
 * back with setImmediate instead: as precise, but it costs a whole core while writes are in
 * flight, which on a 2-core machine the agents feel (in a quick run it raised agent 1's write
 * answer p50 from 2.7 to 5.3 ms).
 *
 * Scenarios: 3 agents and 10 agents at a steady 50 writes/s (open loop: writes start on
 * schedule whether or not the previous one has answered) for 15 s, and 3 agents at the maximum
 * rate (closed loop: one write at a time, the next as soon as the previous one answers) for
 * 10 s. BENCH_QUICK=1: 3 s and 2 s. The figure per write is the time until the *last* other
 * agent has it; per-agent arrivals are in the JSON.
 *
 * Peers, same harness: etcd 3.4 (3 members; put on member 1, `/v3/watch` streams on members 2
 * and 3), NATS 2.9 core pub/sub (3 servers; publish on 1, subscribers on 2 and 3) and NATS
 * JetStream KV with 3 replicas (put on 1, KV watches on 2 and 3), all on loopback, started by
 * this benchmark in its temp dir. Patina's percentiles are printed as ratios against them.
 */
import { watch, type FSWatcher } from 'node:fs'
import { join } from 'node:path'
import type Database from 'better-sqlite3'
import { DEFAULT_REPLICATION } from '../packages/agent/src/replication/options.ts'
import {
  clusterSpecs,
  machineLine,
  metricDelta,
  openReader,
  scrape,
  startCluster,
  statementBody,
  stopAll,
  transact,
  waitAllAlive,
  type Agent,
  type Metrics,
} from './lib/agents.ts'
import { QUICK, type BenchContext, type BenchModule, type BenchReport } from './lib/common.ts'
import { INSERT_SQL, localRow } from './lib/fixture.ts'
import { HttpClient, percentile } from './lib/http.ts'
import {
  peersInstalled,
  startEtcd,
  startNatsKv,
  startNatsPubSub,
  type PropagationTarget,
} from './lib/peers.ts'

const RATE_PER_S = 50
const STEADY_MS = QUICK ? 3_000 : 15_000
const CLOSED_MS = QUICK ? 2_000 : 10_000
/** Untimed writes first (JIT, connections, page cache), each waited for everywhere. */
const WARMUP_WRITES = QUICK ? 20 : 100
/** A write not seen everywhere this long after the last one was sent counts as missing. */
const DRAIN_TIMEOUT_MS = 30_000
const FORMATION_TIMEOUT_MS = 30_000
/** A write seen everywhere only this late was carried by a retransmission (90% of the interval). */
const LATE_MS = Math.round(0.9 * DEFAULT_REPLICATION.retransmitIntervalMs)
/** Writes in flight at once in the open-loop runs (HTTP keep-alive sockets). */
const SOCKETS = 8

/** Figures stated by the issue for this machine, and Patina's goals. */
const STATED = {
  nats: { p50: 1.5, p99: 17 },
  etcd: { p50: 8, p99: 38 },
  goal3: { p50: 2, p99: 15 },
  goal10: { p99: 50 },
}

type Schedule =
  | { readonly kind: 'rate'; readonly perS: number; readonly ms: number }
  | { readonly kind: 'closed'; readonly ms: number }

const describeSchedule = (s: Schedule): string =>
  s.kind === 'rate'
    ? `${s.perS} writes/s for ${s.ms / 1000} s`
    : `max rate (closed loop) for ${s.ms / 1000} s`

interface PropagationRun {
  readonly system: string
  readonly nodes: number
  readonly schedule: string
  readonly writes: number
  readonly writesPerS: number
  /** ms from send until the last observer saw it; one per write seen everywhere. */
  readonly allMs: readonly number[]
  /** ms from send until each observer saw it; one per (write, observer). */
  readonly eachMs: readonly number[]
  /** ms from send until member 1 acknowledged. */
  readonly ackMs: readonly number[]
  readonly missing: number
  readonly semantics: string
  readonly extra?: Record<string, number>
}

// ------------------------------------------------------------------------------ Patina target

/**
 * How the readers look for new rows: `watch` (default) polls a reader when inotify reports a
 * write to its agent's WAL file (then spins a few times with setImmediate in case the commit is
 * not visible yet), with a timer poll every POLL_FALLBACK_MS as a safety net; `spin`
 * (BENCH_POLL=spin) polls every reader back to back with setImmediate while any write is unseen,
 * which costs a whole core. Either way a poll is `PRAGMA data_version` and, when it changed, one
 * range query.
 */
const POLL_MODE = process.env['BENCH_POLL'] === 'spin' ? 'spin' : 'watch'
const POLL_FALLBACK_MS = 1
const POLL_DESCRIPTION =
  POLL_MODE === 'watch'
    ? 'polled on each inotify write event of its WAL file and every 1 ms'
    : 'polled back to back, BENCH_POLL=spin'
/** Polls right after a WAL write event before waiting for the next event. */
const SPINS_AFTER_EVENT = 20

interface Reader {
  readonly db: Database.Database
  readonly version: Database.Statement
  readonly range: Database.Statement
  readonly pending: Set<number>
  readonly watcher: FSWatcher | null
  lastVersion: number
}

/** Readers on agents 2..N: each reports the ids it finds while they are unseen. */
class FileObservers {
  private readonly readers: Reader[]
  private onSeen: (observer: number, id: number) => void = () => undefined
  private spinning = false
  private timer: NodeJS.Timeout | null = null
  polls = 0

  constructor(paths: readonly string[]) {
    this.readers = paths.map((path, o) => {
      const db = openReader(path)
      const watcher =
        POLL_MODE === 'watch'
          ? watch(`${path}-wal`, () => {
              this.burst(o, SPINS_AFTER_EVENT)
            })
          : null
      return {
        db,
        version: db.prepare('PRAGMA data_version').pluck(),
        range: db.prepare('SELECT id FROM t WHERE id >= ? AND id <= ?').pluck().safeIntegers(false),
        pending: new Set<number>(),
        watcher,
        lastVersion: -1,
      }
    })
  }

  observe(cb: (observer: number, id: number) => void): void {
    this.onSeen = cb
  }

  issued(id: number): void {
    for (const r of this.readers) r.pending.add(id)
    if (POLL_MODE === 'spin') {
      if (!this.spinning) {
        this.spinning = true
        setImmediate(this.spin)
      }
    } else {
      this.timer ??= setTimeout(this.tick, POLL_FALLBACK_MS)
    }
  }

  /** Polls reader `o`; true when it found something new or has nothing pending. */
  private poll(o: number): boolean {
    const r = this.readers[o]
    if (r === undefined || r.pending.size === 0) return true
    this.polls++
    const v = r.version.get() as number
    if (v === r.lastVersion) return false
    r.lastVersion = v
    let lo = Infinity
    let hi = -Infinity
    for (const id of r.pending) {
      if (id < lo) lo = id
      if (id > hi) hi = id
    }
    for (const id of r.range.all(lo, hi) as number[]) {
      if (r.pending.delete(id)) this.onSeen(o, id)
    }
    return true
  }

  private pendingAny(): boolean {
    return this.readers.some((r) => r.pending.size > 0)
  }

  /** After a WAL write event: poll now, and again a few times while the commit is not visible. */
  private burst(o: number, left: number): void {
    if (this.poll(o) || left <= 0) return
    setImmediate(() => {
      this.burst(o, left - 1)
    })
  }

  private readonly tick = (): void => {
    this.timer = null
    for (let o = 0; o < this.readers.length; o++) this.poll(o)
    if (this.pendingAny()) this.timer = setTimeout(this.tick, POLL_FALLBACK_MS)
  }

  private readonly spin = (): void => {
    for (let o = 0; o < this.readers.length; o++) this.poll(o)
    if (this.pendingAny()) setImmediate(this.spin)
    else this.spinning = false
  }

  close(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    for (const r of this.readers) {
      r.watcher?.close()
      r.db.close()
    }
  }
}

function insertBody(id: number): string {
  const [, a, b, c, d] = localRow(id)
  return statementBody(INSERT_SQL, [id, a, Number(b), c, d])
}

async function startPatina(
  dir: string,
  nodes: number,
): Promise<PropagationTarget & { agents: readonly Agent[]; formationMs: number }> {
  const agents = await startCluster(await clusterSpecs({ dir, count: nodes }))
  try {
    const formationMs = await waitAllAlive(agents, FORMATION_TIMEOUT_MS)
    const [writer, ...others] = agents
    if (writer === undefined) throw new Error('no agents')
    const client = new HttpClient(new URL(writer.api), SOCKETS)
    const observers = new FileObservers(others.map((a) => a.dbPath))
    return {
      name: `Patina, ${nodes} agents`,
      agents,
      formationMs,
      observers: others.length,
      semantics:
        'Patina: POST /v1/transactions (one INSERT) to agent 1, answered once committed there ' +
        "(synchronous=normal, no fsync per commit); seen = the row is in the agent's SQLite " +
        `file (a read-only connection per agent, ${POLL_DESCRIPTION})`,
      observe(cb) {
        observers.observe(cb)
      },
      issued(id) {
        observers.issued(id)
      },
      write: (id) => transact(client, insertBody(id)),
      async close() {
        observers.close()
        client.close()
        await stopAll(agents)
      },
    }
  } catch (err) {
    await stopAll(agents)
    throw err
  }
}

// ------------------------------------------------------------------------------ harness

const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    setTimeout(resolve, Math.max(0, ms))
  })

/** Runs the schedule against `target`; ids from `firstId` on. */
async function measure(
  target: PropagationTarget,
  nodes: number,
  schedule: Schedule,
  progress: (line: string) => void,
): Promise<PropagationRun> {
  const sent = new Map<number, number>()
  const acked = new Map<number, number>()
  const seen = new Map<number, (number | undefined)[]>()
  let done = 0
  const allSeen: { resolve: (() => void) | null } = { resolve: null }
  let timedFrom = Infinity
  target.observe((o, id) => {
    const at = performance.now()
    let s = seen.get(id)
    if (s === undefined) {
      s = []
      seen.set(id, s)
    }
    if (s[o] !== undefined) return
    s[o] = at
    if (s.filter((x) => x !== undefined).length === target.observers && id >= timedFrom) {
      done++
      if (done === sent.size - (timedFrom - 1)) allSeen.resolve?.()
    }
  })
  const errors: unknown[] = []
  const write = (id: number): Promise<void> => {
    sent.set(id, performance.now())
    target.issued(id)
    return target.write(id).then(
      () => {
        acked.set(id, performance.now())
      },
      (err: unknown) => {
        errors.push(err)
      },
    )
  }
  // Warm-up: sequential, untimed; then wait until every observer has the last one.
  for (let id = 1; id <= WARMUP_WRITES; id++) await write(id)
  const warmDeadline = performance.now() + DRAIN_TIMEOUT_MS
  while ((seen.get(WARMUP_WRITES)?.filter((x) => x !== undefined).length ?? 0) < target.observers) {
    if (performance.now() > warmDeadline) throw new Error(`${target.name}: warm-up not seen`)
    await sleep(5)
  }
  if (errors.length > 0) throw errors[0] instanceof Error ? errors[0] : new Error('write failed')
  timedFrom = WARMUP_WRITES + 1
  let id = timedFrom
  const start = performance.now()
  const inFlight: Promise<void>[] = []
  if (schedule.kind === 'rate') {
    const interval = 1000 / schedule.perS
    const count = Math.round((schedule.perS * schedule.ms) / 1000)
    for (let i = 0; i < count; i++) {
      await sleep(start + i * interval - performance.now())
      inFlight.push(write(id++))
    }
  } else {
    while (performance.now() - start < schedule.ms) await write(id++)
  }
  const issuedMs = performance.now() - start
  await Promise.all(inFlight)
  const writes = id - timedFrom
  if (done < writes) {
    await Promise.race([
      new Promise<void>((resolve) => {
        allSeen.resolve = resolve
      }),
      sleep(DRAIN_TIMEOUT_MS),
    ])
  }
  if (errors.length > 0) throw errors[0] instanceof Error ? errors[0] : new Error('write failed')
  const allMs: number[] = []
  const eachMs: number[] = []
  const ackMs: number[] = []
  let missing = 0
  for (let w = timedFrom; w < id; w++) {
    const t0 = sent.get(w) ?? 0
    const s = seen.get(w) ?? []
    const got = s.filter((x): x is number => x !== undefined)
    for (const at of got) eachMs.push(at - t0)
    if (got.length === target.observers) allMs.push(Math.max(...got) - t0)
    else missing++
    const a = acked.get(w)
    if (a !== undefined) ackMs.push(a - t0)
  }
  const sortNum = (xs: number[]): number[] => xs.sort((x, y) => x - y)
  const run: PropagationRun = {
    system: target.name,
    nodes,
    schedule: describeSchedule(schedule),
    writes,
    writesPerS: (writes / issuedMs) * 1000,
    allMs: sortNum(allMs),
    eachMs: sortNum(eachMs),
    ackMs: sortNum(ackMs),
    missing,
    semantics: target.semantics,
  }
  progress(
    `${target.name}, ${run.schedule}: ${writes} writes, p50 ${fmt(pct(run.allMs, 0.5))} ms, ` +
      `p99 ${fmt(pct(run.allMs, 0.99))} ms, missing ${missing}`,
  )
  return run
}

const pct = (sorted: readonly number[], p: number): number =>
  sorted.length === 0 ? NaN : percentile(sorted, p)
const fmt = (ms: number): string => (Number.isNaN(ms) ? '-' : ms.toFixed(ms < 10 ? 2 : 1))

/** Starts a system, measures one schedule, stops it; null when the system could not start. */
async function runPeer(
  name: string,
  start: () => Promise<PropagationTarget>,
  schedules: readonly Schedule[],
  progress: (line: string) => void,
): Promise<PropagationRun[] | string> {
  let target: PropagationTarget
  try {
    target = await start()
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err)
    progress(`${name}: could not start (${why}); skipped`)
    return `${name}: could not start (${why.split('\n')[0] ?? ''}); skipped`
  }
  try {
    const out: PropagationRun[] = []
    for (const s of schedules) out.push(await measure(target, 3, s, progress))
    return out
  } finally {
    await target.close()
  }
}

async function runPatina(
  dir: string,
  nodes: number,
  schedule: Schedule,
  progress: (line: string) => void,
): Promise<PropagationRun> {
  progress(`Patina: ${nodes} agents, ${describeSchedule(schedule)}`)
  const target = await startPatina(dir, nodes)
  try {
    const before = await Promise.all(target.agents.map(scrape))
    const run = await measure(target, nodes, schedule, progress)
    const after: Metrics[] = await Promise.all(target.agents.map(scrape))
    const d = (name: string, labels: Record<string, string> = {}): number =>
      metricDelta(before, after, name, labels)
    return {
      ...run,
      extra: {
        formationMs: target.formationMs,
        broadcastNew: d('patina_broadcast_received_total', { outcome: 'new' }),
        broadcastDuplicate: d('patina_broadcast_received_total', { outcome: 'duplicate' }),
        broadcastDropped: d('patina_broadcast_received_total', { outcome: 'dropped' }),
        syncChunks: d('patina_sync_chunks_received_total'),
        applyBatches: d('patina_apply_batches_total'),
        applySeconds: d('patina_apply_seconds_total'),
        applied: d('patina_changesets_total', { status: 'applied' }),
      },
    }
  } finally {
    await target.close()
  }
}

// ------------------------------------------------------------------------------ report

function row(r: PropagationRun): string[] {
  return [
    r.system,
    r.schedule,
    String(r.writes),
    r.writesPerS.toFixed(0),
    fmt(pct(r.allMs, 0.5)),
    fmt(pct(r.allMs, 0.95)),
    fmt(pct(r.allMs, 0.99)),
    fmt(r.allMs.at(-1) ?? NaN),
    fmt(pct(r.eachMs, 0.5)),
    fmt(pct(r.ackMs, 0.5)),
    String(r.missing),
  ]
}

const ratio = (a: number, b: number): string =>
  Number.isNaN(a) || Number.isNaN(b) || b === 0 ? '-' : (a / b).toFixed(2)

async function run(ctx: BenchContext): Promise<BenchReport> {
  const progress = (line: string): void => {
    ctx.progress(line)
  }
  const dir = join(ctx.dir, 'replication-propagation')
  const steady: Schedule = { kind: 'rate', perS: RATE_PER_S, ms: STEADY_MS }
  const closed: Schedule = { kind: 'closed', ms: CLOSED_MS }
  const patina: PropagationRun[] = []
  patina.push(await runPatina(join(dir, 'p3'), 3, steady, progress))
  patina.push(await runPatina(join(dir, 'p10'), 10, steady, progress))
  patina.push(await runPatina(join(dir, 'p3max'), 3, closed, progress))
  const installed = peersInstalled()
  const skipped: string[] = []
  const peers: PropagationRun[] = []
  const peerRuns: [string, boolean, () => Promise<PropagationTarget>][] = [
    ['etcd', installed.etcd, () => startEtcd(join(dir, 'etcd'))],
    ['NATS pub/sub', installed.nats, () => startNatsPubSub(join(dir, 'nats'))],
    ['NATS JetStream KV', installed.nats, () => startNatsKv(join(dir, 'nats'))],
  ]
  for (const [name, present, start] of peerRuns) {
    if (!present) {
      skipped.push(`${name}: binary not installed; skipped`)
      progress(`${name}: binary not installed; skipped`)
      continue
    }
    const result = await runPeer(name, start, [steady, closed], progress)
    if (typeof result === 'string') skipped.push(result)
    else peers.push(...result)
  }
  const headers = [
    'system',
    'load',
    'writes',
    'w/s',
    'p50',
    'p95',
    'p99',
    'max',
    'per-node p50',
    'ack p50',
    'missing',
  ]
  const [p3, p10, p3max] = patina as [PropagationRun, PropagationRun, PropagationRun]
  const ratioRows: string[][] = []
  for (const peer of peers) {
    const mine = peer.schedule === p3.schedule ? p3 : p3max
    ratioRows.push([
      `Patina 3 / ${peer.system}`,
      peer.schedule,
      ratio(pct(mine.allMs, 0.5), pct(peer.allMs, 0.5)),
      ratio(pct(mine.allMs, 0.95), pct(peer.allMs, 0.95)),
      ratio(pct(mine.allMs, 0.99), pct(peer.allMs, 0.99)),
      ratio(mine.allMs.at(-1) ?? NaN, peer.allMs.at(-1) ?? NaN),
      ratio(mine.writesPerS, peer.writesPerS),
    ])
  }
  const stated = [
    `stated for this machine: NATS 3-node p50 ${STATED.nats.p50} ms / p99 ${STATED.nats.p99} ms,`,
    `  etcd p50 ${STATED.etcd.p50} ms / p99 ${STATED.etcd.p99} ms; Patina goals: 3 agents p50 <`,
    `  ${STATED.goal3.p50} ms, p99 < ${STATED.goal3.p99} ms; 10 agents p99 < ${STATED.goal10.p99} ms`,
  ]
  const extraRows = patina.map((r) => {
    const e = r.extra ?? {}
    const n = (k: string): number => e[k] ?? 0
    return [
      `${r.nodes} agents, ${r.schedule}`,
      (n('formationMs') / 1000).toFixed(1),
      String(n('broadcastNew')),
      String(n('broadcastDuplicate')),
      String(n('broadcastDropped')),
      String(n('syncChunks')),
      String(n('applyBatches')),
      n('applyBatches') === 0 ? '-' : ((n('applySeconds') * 1000) / n('applyBatches')).toFixed(2),
      `${r.allMs.filter((ms) => ms >= LATE_MS).length} of ${r.allMs.length}`,
    ]
  })
  const p3p99 = pct(p3.allMs, 0.99)
  const p3p50 = pct(p3.allMs, 0.5)
  const p10p99 = pct(p10.allMs, 0.99)
  return {
    tables: [
      {
        title: 'Write on node 1 until readable on every other node (ms from sending the write)',
        headers,
        rows: [...patina.map(row), ...peers.map(row)],
        notes: [
          'p50..max: until the last other node has it; per-node p50: each (write, node) pair;',
          '  ack p50: until node 1 answered the write; missing: not everywhere within ' +
            `${DRAIN_TIMEOUT_MS / 1000} s`,
          `${WARMUP_WRITES} untimed writes first; open loop keeps up to ${SOCKETS} writes in ` +
            'flight; closed loop one at a time',
          ...[...new Set([...patina, ...peers].map((r) => r.semantics))],
          'Patina agents: default settings ([perf] and [gossip] untouched, LAN profile)',
          ...skipped,
          ...stated,
          machineLine(ctx.machine),
          'each configuration runs once: other engineers run tests on this 2-core machine, and',
          '  the agents, the peers and this process share it, so the tails are noisy',
        ],
      },
      {
        title: 'Patina / peer, same load, same run (above 1: Patina slower)',
        headers: ['comparison', 'load', 'p50', 'p95', 'p99', 'max', 'w/s'],
        rows: ratioRows,
        notes: skipped.length > 0 ? skipped : ['w/s: writes per second achieved by one writer'],
      },
      {
        title: 'Patina: how the changes arrived (deltas over the timed run, all agents)',
        headers: [
          'run',
          'formation s',
          'bcast new',
          'bcast dup',
          'bcast dropped',
          'sync chunks',
          'apply txs',
          'ms/apply',
          `writes >= ${LATE_MS} ms`,
        ],
        rows: extraRows,
        notes: [
          'from GET /metrics: patina_broadcast_received_total, patina_sync_chunks_received_total,',
          '  patina_apply_batches_total, patina_apply_seconds_total',
          `writes >= ${LATE_MS} ms: the first retransmission of a broadcast is due ` +
            `${DEFAULT_REPLICATION.retransmitIntervalMs} ms after the first send, so such a write`,
          '  reached its last node through a retransmission (or sync), not the first wave',
        ],
      },
    ],
    summary: [
      {
        metric: 'propagation, 3 agents, 50 w/s: p50 (ms)',
        value: fmt(p3p50),
        goal: `< ${STATED.goal3.p50}`,
        met: p3p50 < STATED.goal3.p50,
      },
      {
        metric: 'propagation, 3 agents, 50 w/s: p99 (ms)',
        value: fmt(p3p99),
        goal: `< ${STATED.goal3.p99}`,
        met: p3p99 < STATED.goal3.p99,
      },
      {
        metric: 'propagation, 10 agents, 50 w/s: p99 (ms)',
        value: fmt(p10p99),
        goal: `< ${STATED.goal10.p99}`,
        met: p10p99 < STATED.goal10.p99,
      },
    ],
    data: { patina, peers, skipped, stated: STATED },
  }
}

export const replicationPropagation: BenchModule = {
  name: 'replication-propagation',
  title:
    'On loopback: write on one agent until readable on all others (3, 10 agents) vs etcd, NATS',
  run,
}
