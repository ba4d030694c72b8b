/**
 * Cluster benchmark: how long a write on one agent takes to reach a subscriber on another, and
 * how much of that the subscription layer adds to replication.
 *
 * Method. 3 real `patina agent` processes on loopback (bench/lib/agents.ts). One HTTP client in this
 * process writes single-row INSERTs of table `t` through agent 1's `POST /v1/transactions`, on
 * a steady schedule (RATE_PER_S writes/s, open loop, up to SOCKETS in flight); the clock starts
 * just before a write is sent. Two observers of agent 2 watch the same writes at once:
 *   - the subscriber: `POST /v1/subscriptions?skip_rows=true` on agent 2 for `SELECT id, a FROM
 *     t`, read as NDJSON; a write arrives with its `insert` change event (change ids checked
 *     contiguous);
 *   - the baseline, replication alone: a read-only better-sqlite3 connection on agent 2's file,
 *     polled when inotify reports a write to its WAL (and every POLL_FALLBACK_MS while writes
 *     are unseen): `PRAGMA data_version`, then the ids above the last one seen.
 * The ratio subscriber / file shows what matching and streaming add on top of replication.
 * Two clusters, one after the other: default settings (`[subscriptions] batch_ms`, the
 * batching wait, SUBS_BATCH_MS) and `batch_ms = 0`.
 */
import { watch, type FSWatcher } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import { LineSplitter } from '@patina/protocol'
import type Database from 'better-sqlite3'
import {
  clusterSpecs,
  describeSettings,
  machineLine,
  openReader,
  startCluster,
  statementBody,
  stopAll,
  transact,
  waitAllAlive,
  type Agent,
  type TomlSections,
} from './lib/agents.ts'
import { QUICK, type BenchContext, type BenchModule, type BenchReport } from './lib/common.ts'
import { INSERT_SQL, localRow } from './lib/fixture.ts'
import { HttpClient, percentile } from './lib/http.ts'
import { SUBS_BATCH_MS } from '../packages/agent/src/config/defaults.ts'

const NODES = 3
const RATE_PER_S = 50
/** Timed writes per configuration (10 s at 50/s; BENCH_QUICK=1: 2 s). */
const WRITES = QUICK ? 100 : 500
/** Untimed writes first (JIT, connections, page cache), each waited for by both observers. */
const WARMUP_WRITES = QUICK ? 10 : 50
/** Writes in flight at once (keep-alive sockets to agent 1). */
const SOCKETS = 8
/** A write not seen by an observer this long after the last one was sent counts as missing. */
const DRAIN_TIMEOUT_MS = 15_000
const FORMATION_TIMEOUT_MS = 30_000
const POLL_FALLBACK_MS = 1
const SUBSCRIBED_SQL = 'SELECT id, a FROM t'

const CONFIGS: readonly { readonly label: string; readonly settings: TomlSections }[] = [
  { label: `defaults (batch_ms = ${SUBS_BATCH_MS})`, settings: {} },
  { label: 'batch_ms = 0', settings: { subscriptions: { batch_ms: 0 } } },
]

interface Run {
  readonly label: string
  readonly settings: string
  readonly writes: number
  readonly writesPerS: number
  /** ms from send until the change event, per write seen (sorted). */
  readonly subMs: readonly number[]
  /** ms from send until the row was in agent 2's file, per write seen (sorted). */
  readonly fileMs: readonly number[]
  /** Per write seen by both: event time minus file time (sorted). */
  readonly addedMs: readonly number[]
  readonly ackMs: readonly number[]
  readonly missingSub: number
  readonly missingFile: number
}

/** Change events of one subscription stream: `onInsert(id)` for each, change ids checked. */
function subscribe(
  agent: Agent,
  onInsert: (id: number, at: number) => void,
): Promise<{ close(): void; errors: string[] }> {
  const url = new URL(`${agent.api}/v1/subscriptions?skip_rows=true`)
  const body = JSON.stringify(SUBSCRIBED_SQL)
  const errors: string[] = []
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: `${url.pathname}${url.search}`,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`${agent.name}: POST /v1/subscriptions answered ${res.statusCode}`))
          res.resume()
          return
        }
        const splitter = new LineSplitter()
        let lastChange: number | null = null
        let resolved = false
        res.on('data', (chunk: Buffer) => {
          const at = performance.now()
          for (const line of splitter.push(chunk)) {
            const e = JSON.parse(line) as {
              eoq?: { change_id: number }
              change?: [string, number, [number, string], number]
              error?: string
            }
            if (e.eoq !== undefined) {
              lastChange = e.eoq.change_id
              if (!resolved) {
                resolved = true
                resolve({ close: () => req.destroy(), errors })
              }
            } else if (e.change !== undefined) {
              const [kind, , values, id] = e.change
              if (lastChange !== null && id !== lastChange + 1) {
                errors.push(`change id ${id} after ${lastChange}`)
              }
              lastChange = id
              if (kind === 'insert') onInsert(values[0], at)
            } else if (e.error !== undefined) {
              errors.push(e.error)
            }
          }
        })
        res.once('error', (err) => errors.push(String(err)))
      },
    )
    req.once('error', reject)
    req.end(body)
  })
}

/** The ids of new rows in one agent's file, polled on WAL writes and on a fallback timer. */
class FileObserver {
  private readonly db: Database.Database
  private readonly version: Database.Statement
  private readonly rows: Database.Statement
  private readonly watcher: FSWatcher | null
  private dataVersion = -1
  private lastId = 0
  private pending = 0
  private timer: NodeJS.Timeout | null = null
  private readonly onRow: (id: number, at: number) => void

  constructor(path: string, onRow: (id: number, at: number) => void) {
    this.onRow = onRow
    this.db = openReader(path)
    this.version = this.db.prepare('PRAGMA data_version').pluck()
    this.rows = this.db.prepare('SELECT id FROM t WHERE id > ? ORDER BY id').pluck()
    let watcher: FSWatcher | null = null
    try {
      watcher = watch(`${path}-wal`, () => {
        this.poll()
      })
    } catch {
      // No WAL file to watch (yet): the fallback timer polls instead.
    }
    this.watcher = watcher
  }

  /** A write was issued: poll until it is seen. */
  issued(): void {
    this.pending++
    this.timer ??= setTimeout(this.tick, POLL_FALLBACK_MS)
  }

  private readonly tick = (): void => {
    this.timer = null
    this.poll()
    if (this.pending > 0) this.timer = setTimeout(this.tick, POLL_FALLBACK_MS)
  }

  private poll(): void {
    const v = this.version.get() as number
    if (v === this.dataVersion) return
    this.dataVersion = v
    const at = performance.now()
    for (const id of this.rows.all(this.lastId) as number[]) {
      this.lastId = id
      this.pending = Math.max(0, this.pending - 1)
      this.onRow(id, at)
    }
  }

  close(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.watcher?.close()
    this.db.close()
  }
}

const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    setTimeout(resolve, Math.max(0, ms))
  })

const sorted = (xs: number[]): number[] => xs.sort((a, b) => a - b)

async function measure(
  dir: string,
  label: string,
  settings: TomlSections,
  progress: (line: string) => void,
): Promise<Run> {
  const agents = await startCluster(await clusterSpecs({ dir, count: NODES, settings }))
  try {
    await waitAllAlive(agents, FORMATION_TIMEOUT_MS)
    const [writer, observed] = agents
    if (writer === undefined || observed === undefined) throw new Error('no agents')
    const sent = new Map<number, number>()
    const acked = new Map<number, number>()
    const bySub = new Map<number, number>()
    const byFile = new Map<number, number>()
    const sub = await subscribe(observed, (id, at) => {
      if (!bySub.has(id)) bySub.set(id, at)
    })
    const file = new FileObserver(observed.dbPath, (id, at) => {
      if (!byFile.has(id)) byFile.set(id, at)
    })
    const client = new HttpClient(new URL(writer.api), SOCKETS)
    try {
      const write = async (id: number): Promise<void> => {
        const [, a, b, c, d] = localRow(id)
        const body = statementBody(INSERT_SQL, [id, a, Number(b), c, d])
        sent.set(id, performance.now())
        file.issued()
        await transact(client, body)
        acked.set(id, performance.now())
      }
      const seenBoth = (id: number): boolean => bySub.has(id) && byFile.has(id)
      const waitSeen = async (ids: readonly number[], what: string): Promise<void> => {
        const deadline = performance.now() + DRAIN_TIMEOUT_MS
        while (!ids.every(seenBoth)) {
          if (performance.now() > deadline) {
            progress(`${label}: ${what} not all seen within ${DRAIN_TIMEOUT_MS / 1000} s`)
            return
          }
          await sleep(5)
        }
      }
      for (let id = 1; id <= WARMUP_WRITES; id++) await write(id)
      await waitSeen([WARMUP_WRITES], 'warm-up')
      const first = WARMUP_WRITES + 1
      const ids = Array.from({ length: WRITES }, (_, i) => first + i)
      const interval = 1000 / RATE_PER_S
      const start = performance.now()
      const inFlight: Promise<void>[] = []
      for (const [i, id] of ids.entries()) {
        await sleep(start + i * interval - performance.now())
        inFlight.push(write(id))
      }
      const issuedMs = performance.now() - start
      await Promise.all(inFlight)
      await waitSeen(ids, 'timed writes')
      if (sub.errors.length > 0) throw new Error(`${label}: subscription: ${sub.errors[0] ?? ''}`)
      const subMs: number[] = []
      const fileMs: number[] = []
      const addedMs: number[] = []
      const ackMs: number[] = []
      for (const id of ids) {
        const t0 = sent.get(id) ?? 0
        const s = bySub.get(id)
        const f = byFile.get(id)
        const a = acked.get(id)
        if (s !== undefined) subMs.push(s - t0)
        if (f !== undefined) fileMs.push(f - t0)
        if (s !== undefined && f !== undefined) addedMs.push(s - f)
        if (a !== undefined) ackMs.push(a - t0)
      }
      const run: Run = {
        label,
        settings: describeSettings(settings),
        writes: ids.length,
        writesPerS: (ids.length / issuedMs) * 1000,
        subMs: sorted(subMs),
        fileMs: sorted(fileMs),
        addedMs: sorted(addedMs),
        ackMs: sorted(ackMs),
        missingSub: ids.length - subMs.length,
        missingFile: ids.length - fileMs.length,
      }
      progress(
        `${label}: subscriber p50 ${fmt(pct(run.subMs, 0.5))} ms, p99 ${fmt(pct(run.subMs, 0.99))} ms; ` +
          `file p50 ${fmt(pct(run.fileMs, 0.5))} ms, p99 ${fmt(pct(run.fileMs, 0.99))} ms`,
      )
      return run
    } finally {
      sub.close()
      file.close()
      client.close()
    }
  } finally {
    await stopAll(agents)
  }
}

const pct = (xs: readonly number[], p: number): number =>
  xs.length === 0 ? NaN : percentile(xs, p)
const fmt = (ms: number): string => (Number.isNaN(ms) ? '-' : ms.toFixed(ms < 10 ? 2 : 1))
const ratio = (a: number, b: number): string =>
  Number.isNaN(a) || Number.isNaN(b) || b === 0 ? '-' : (a / b).toFixed(2)

async function run(ctx: BenchContext): Promise<BenchReport> {
  const progress = (line: string): void => {
    ctx.progress(line)
  }
  const runs: Run[] = []
  for (const [i, c] of CONFIGS.entries()) {
    progress(`${NODES} agents, ${c.label}: ${WRITES} writes at ${RATE_PER_S}/s`)
    runs.push(
      await measure(join(ctx.dir, 'subs-propagation', `c${i}`), c.label, c.settings, progress),
    )
  }
  const rows: string[][] = []
  for (const r of runs) {
    for (const [what, xs] of [
      ['subscriber on agent 2', r.subMs],
      ['file of agent 2 (baseline)', r.fileMs],
    ] as const) {
      rows.push([
        r.label,
        what,
        String(xs.length),
        fmt(pct(xs, 0.5)),
        fmt(pct(xs, 0.95)),
        fmt(pct(xs, 0.99)),
        fmt(xs.at(-1) ?? NaN),
      ])
    }
    rows.push([
      r.label,
      'ratio subscriber / file',
      '',
      ratio(pct(r.subMs, 0.5), pct(r.fileMs, 0.5)),
      ratio(pct(r.subMs, 0.95), pct(r.fileMs, 0.95)),
      ratio(pct(r.subMs, 0.99), pct(r.fileMs, 0.99)),
      ratio(r.subMs.at(-1) ?? NaN, r.fileMs.at(-1) ?? NaN),
    ])
    rows.push([
      r.label,
      'added per write (event - file)',
      String(r.addedMs.length),
      fmt(pct(r.addedMs, 0.5)),
      fmt(pct(r.addedMs, 0.95)),
      fmt(pct(r.addedMs, 0.99)),
      fmt(r.addedMs.at(-1) ?? NaN),
    ])
  }
  const [def] = runs as [Run]
  return {
    tables: [
      {
        title: `Write on agent 1 until a subscriber on agent 2 has its change event, vs until agent 2's file has the row (ms from sending the write; ${NODES} agents, loopback)`,
        headers: ['settings', 'observer', 'writes', 'p50', 'p95', 'p99', 'max'],
        rows,
        notes: [
          `${WRITES} single-row INSERTs at ${RATE_PER_S}/s (open loop, up to ${SOCKETS} in flight) after ${WARMUP_WRITES} untimed;`,
          `  both observers watch the same writes at the same time; subscription: ${SUBSCRIBED_SQL}`,
          '  file: read-only connection on the WAL-mode file, polled on inotify WAL events and every 1 ms',
          `achieved: ${runs.map((r) => `${r.label} ${r.writesPerS.toFixed(0)} w/s, ack p50 ${fmt(pct(r.ackMs, 0.5))} ms, missing sub ${r.missingSub} / file ${r.missingFile}`).join('; ')}`,
          'added per write: subscriber arrival minus file arrival of the same write (negative: the event',
          '  came before the file poll saw the row)',
          machineLine(ctx.machine),
          '  the agents, this process and other engineers share the 2 cores: tails are noisy',
        ],
      },
    ],
    summary: [
      {
        metric: `write to subscriber event, ${NODES} agents, ${RATE_PER_S} w/s, defaults: p50 / p99 (ms)`,
        value: `${fmt(pct(def.subMs, 0.5))} / ${fmt(pct(def.subMs, 0.99))}`,
      },
      {
        metric: 'same, ratio to replication alone (file): p50 / p99',
        value: `${ratio(pct(def.subMs, 0.5), pct(def.fileMs, 0.5))} / ${ratio(pct(def.subMs, 0.99), pct(def.fileMs, 0.99))}`,
      },
    ],
    data: { runs },
  }
}

export const subsPropagation: BenchModule = {
  name: 'subs-propagation',
  title:
    'Subscriptions on loopback: write on agent 1 until the change event on agent 2, vs replication',
  run,
}
