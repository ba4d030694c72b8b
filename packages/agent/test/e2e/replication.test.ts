/**
 * Goal: real `patina agent` processes replicate every acknowledged write to every agent: 5 agents
 * written concurrently (inserts, and upserts and deletes of the same rows from every agent) end
 * with identical tables; an agent `kill -9`ed in the middle of a write loop loses none of the
 * writes it acknowledged, including the ones it had not broadcast yet (the others get those from
 * it by anti-entropy once it is restarted); an agent started after 10,000 writes catches up, and
 * /v1/health reports its gaps while it does and answers 200 to `?gaps=0` once it has.
 *
 * Method: as cluster.test.ts: `npx tsc -b` first, then agents as child processes of the built
 * bin on 127.0.0.1, each with a config in a temporary directory (API and gossip ports free a
 * moment before; the 2nd..Nth bootstrap from the first) and fast anti-entropy (`[perf]
 * min_sync_backoff = 0.5`, `max_sync_backoff = 2`). The kill test uses a 6th agent, the writer,
 * whose broadcasts are capped at WRITER_RATE_BYTES_PER_SEC: at the rate it acknowledges writes,
 * most of them are still queued for broadcast when it is killed, so what the others miss can only
 * come from the restarted writer through sync (checked: some acknowledged writes are missing
 * everywhere else before the restart). The catch-up test starts a 7th agent. Every condition is
 * polled over HTTP with a bounded wait; children are killed by their PIDs in `after`.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  writeAgent,
  queryRows,
  buildAgent,
  startAgent,
  stopAgent,
  waitExit,
  waitFor,
  type AgentProcess,
} from './agents.ts'
import { freePorts } from './ports.ts'

/** Agents of the convergence test; the writer and the late agent come on top. */
const NODES = 5
/** Transactions each agent gets in the convergence test, and how many are in flight at once. */
const WRITES_PER_AGENT = 200
const WRITES_IN_FLIGHT = 4
/** Rows every agent upserts (and sometimes deletes) concurrently in the convergence test. */
const SHARED_ROWS = 10
/** Acknowledged writes after which the writer is killed. */
const KILL_AFTER_ACKS = 150
/**
 * The writer's broadcast cap (and its burst). A change message here is about 70 bytes and goes to
 * at least one peer: at this rate the writer broadcasts a few dozen writes a second, while it
 * acknowledges hundreds, so most acknowledged writes are queued when it dies.
 */
const WRITER_RATE_BYTES_PER_SEC = 4096
const WRITER_BURST_BYTES = 4096
/** The bulk load before the late agent starts: transactions of rows, over BULK_AGENTS agents. */
const BULK_TRANSACTIONS = 100
const BULK_ROWS = 100
const BULK_AGENTS = 3
/** The late agent's health is polled this often while it catches up; changes shown at most. */
const HEALTH_POLL_MS = 20
const TIMELINE_SHOWN = 12

const FORMATION_TIMEOUT_MS = 20_000
const CONVERGE_TIMEOUT_MS = 15_000
const WRITE_LOOP_TIMEOUT_MS = 20_000
const RECOVER_TIMEOUT_MS = 30_000
const CATCH_UP_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 10_000
const HTTP_TIMEOUT_MS = 10_000

const SCHEMA = [
  'CREATE TABLE kv (id INTEGER NOT NULL PRIMARY KEY, v TEXT, n INTEGER);',
  'CREATE TABLE acked (id INTEGER NOT NULL PRIMARY KEY, v TEXT);',
  'CREATE TABLE bulk (id INTEGER NOT NULL PRIMARY KEY, origin TEXT, payload TEXT);',
  '',
].join('\n')

type Statement = string | [string, unknown[]]

interface Health {
  gaps: number
  members: number
  p99_lag: number
  queue_size: number
}

interface HealthSample {
  atMs: number
  status: number
  body: { response?: Health; error?: string }
}

let dir = ''
/** Distinct ports, free a moment before, for every agent this file starts (API and gossip). */
let ports: number[] = []
/** Every agent this file starts (the cluster, the writer, the late agent), for `after`. */
const all: AgentProcess[] = []
const cluster: AgentProcess[] = []
let late: AgentProcess | null = null
/** /v1/health?gaps=0 answers of the late agent while it caught up (test 3, read by test 4). */
const catchUpSamples: HealthSample[] = []

function get<T>(list: readonly T[], i: number): T {
  const v = list[i]
  assert.ok(v !== undefined)
  return v
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** POST /v1/transactions; the HTTP status and the version it acknowledged (null if none). */
async function transact(
  n: AgentProcess,
  statements: readonly Statement[],
): Promise<{ status: number; version: number | null; text: string }> {
  const res = await fetch(`${n.api}/v1/transactions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(statements),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  })
  const text = await res.text()
  const version = (JSON.parse(text) as { version?: unknown }).version
  return { status: res.status, version: typeof version === 'number' ? version : null, text }
}

/** POST /v1/queries: each row as the JSON text of its values, in order. */
function rows(n: AgentProcess, sql: string): Promise<string[]> {
  return queryRows(n, sql, HTTP_TIMEOUT_MS)
}

/** The ids of a table's rows. */
async function ids(n: AgentProcess, table: string): Promise<Set<number>> {
  const out = new Set<number>()
  for (const r of await rows(n, `SELECT id FROM ${table}`)) {
    out.add(get(JSON.parse(r) as number[], 0))
  }
  return out
}

async function count(n: AgentProcess, table: string): Promise<number> {
  return Number(JSON.parse(get(await rows(n, `SELECT count(*) FROM ${table}`), 0)))
}

async function health(
  n: AgentProcess,
  query = '',
): Promise<HealthSample['body'] & { status: number }> {
  const res = await fetch(`${n.api}/v1/health${query}`, {
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  })
  return { status: res.status, ...((await res.json()) as HealthSample['body']) }
}

/** One line per agent: what `describe` shows when a wait times out. */
async function states(list: readonly AgentProcess[], tables: readonly string[]): Promise<string> {
  const lines = await Promise.all(
    list.map(async (n) => {
      const counts = await Promise.all(
        tables.map((t) =>
          count(n, t).then(
            (c) => `${t}=${c}`,
            () => `${t}=?`,
          ),
        ),
      )
      const h = await health(n).catch(() => null)
      return `${n.name}: ${counts.join(' ')} health=${JSON.stringify(h?.response ?? null)}`
    }),
  )
  return lines.join('\n')
}

async function allAlive(list: readonly AgentProcess[]): Promise<boolean> {
  const addrs = new Set(list.map((n) => `127.0.0.1:${n.gossipPort}`))
  for (const n of list) {
    const res = await fetch(`${n.api}/v1/members`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) })
    const members = (await res.json()) as { addr: string; state: string }[]
    const alive = new Set(members.filter((m) => m.state === 'alive').map((m) => m.addr))
    for (const a of addrs) if (!alive.has(a)) return false
  }
  return true
}

function waitAlive(list: readonly AgentProcess[]): Promise<number> {
  return waitFor(
    'every agent lists every agent alive',
    FORMATION_TIMEOUT_MS,
    () => allAlive(list),
    () => Promise.resolve(list.map((n) => n.name).join(', ')),
  )
}

/** Writes the config of a new agent (not started); the first one is everyone's bootstrap. */
function makeAgent(name: string, extra: readonly string[] = []): AgentProcess {
  const apiPort = ports.pop()
  const gossipPort = ports.pop()
  assert.ok(apiPort !== undefined && gossipPort !== undefined, 'out of reserved ports')
  const seed = cluster[0]
  const n: AgentProcess = writeAgent(dir, {
    name,
    apiPort,
    gossipPort,
    bootstrap: seed === undefined ? [] : [seed.gossipPort],
    schema: true,
    extra: [...extra, '[perf]', 'min_sync_backoff = 0.5', 'max_sync_backoff = 2'],
  })
  all.push(n)
  return n
}

before(async () => {
  buildAgent()
  dir = mkdtempSync(join(tmpdir(), 'patina-replication-'))
  writeFileSync(join(dir, 'schema.sql'), SCHEMA)
  // The cluster, the writer and the late agent.
  ports = await freePorts(2 * (NODES + 2))
  for (let i = 0; i < NODES; i++) cluster.push(makeAgent(`node-${i + 1}`))
  await Promise.all(cluster.map(startAgent))
  await waitAlive(cluster)
})

after(async () => {
  for (const n of all) await stopAgent(n, 'SIGKILL', STOP_TIMEOUT_MS).catch(() => undefined)
  if (dir !== '') rmSync(dir, { recursive: true, force: true })
})

describe('e2e - replication between patina agents', () => {
  it(`e2e - ${NODES} agents written concurrently end with identical tables`, async (t) => {
    const started = performance.now()
    await Promise.all(
      cluster.map(async (n, i) => {
        let next = 0
        const worker = async (): Promise<void> => {
          for (let k = next++; k < WRITES_PER_AGENT; k = next++) {
            const shared = 1 + ((k >> 1) % SHARED_ROWS)
            const tag = `${n.name}#${k}`
            let statement: Statement
            if (k % 2 === 0) {
              statement = ['INSERT INTO kv (id, v, n) VALUES (?, ?, 0)', [(i + 1) * 1000 + k, tag]]
            } else if (k % 40 === 39) {
              statement = ['DELETE FROM kv WHERE id = ?', [shared]]
            } else {
              statement = [
                'INSERT INTO kv (id, v, n) VALUES (?, ?, 1) ' +
                  'ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = kv.n + 1',
                [shared, tag],
              ]
            }
            const r = await transact(n, [statement])
            assert.equal(r.status, 200, `${tag}: ${r.text}`)
            // A delete of a row already deleted changes nothing: no version.
            if (k % 40 !== 39) assert.notEqual(r.version, null, `${tag}: ${r.text}`)
          }
        }
        await Promise.all(Array.from({ length: WRITES_IN_FLIGHT }, worker))
      }),
    )
    const wrote = performance.now()
    const ownRows = (NODES * WRITES_PER_AGENT) / 2
    const ms = await waitFor(
      `identical kv tables on all ${NODES} agents`,
      CONVERGE_TIMEOUT_MS,
      async () => {
        const views = await Promise.all(cluster.map((n) => rows(n, 'SELECT * FROM kv ORDER BY id')))
        const first = get(views, 0)
        const own = first.filter((r) => Number((JSON.parse(r) as number[])[0]) > SHARED_ROWS)
        return own.length === ownRows && views.every((v) => v.join('\n') === first.join('\n'))
      },
      () => states(cluster, ['kv']),
    )
    t.diagnostic(
      `${NODES * WRITES_PER_AGENT} transactions in ${Math.round(wrote - started)} ms; ` +
        `identical on all ${NODES} agents ${Math.round(ms)} ms after the last acknowledgement`,
    )
    const shared = await rows(get(cluster, 0), `SELECT id FROM kv WHERE id <= ${SHARED_ROWS}`)
    t.diagnostic(`shared rows left after the concurrent upserts and deletes: ${shared.length}`)
  })

  it('e2e - a writer killed with -9 loses no acknowledged write, even unbroadcast ones', async (t) => {
    const w = makeAgent('writer', [
      `rate_limit_bytes_per_sec = ${WRITER_RATE_BYTES_PER_SEC}`,
      `rate_limit_burst_bytes = ${WRITER_BURST_BYTES}`,
    ])
    await startAgent(w)
    await waitAlive([...cluster, w])

    const acked: number[] = []
    let next = 1
    let failures = 0
    let broadcastQueue = '?'
    const killed = new AbortController()
    const loopStarted = performance.now()
    const inTime = (): void => {
      assert.ok(
        performance.now() - loopStarted < WRITE_LOOP_TIMEOUT_MS,
        `only ${acked.length} writes acknowledged in ${WRITE_LOOP_TIMEOUT_MS} ms`,
      )
    }
    const worker = async (): Promise<void> => {
      while (!killed.signal.aborted) {
        inTime()
        const id = next++
        try {
          const r = await transact(w, [['INSERT INTO acked (id, v) VALUES (?, ?)', [id, `w${id}`]]])
          if (r.status === 200 && r.version !== null) acked.push(id)
          else failures++
        } catch {
          // No answer (the agent died with the request in flight): not acknowledged.
          failures++
        }
      }
    }
    const killer = async (): Promise<void> => {
      while (acked.length < KILL_AFTER_ACKS) {
        inTime()
        await sleep(5)
      }
      // The writers keep going while the metrics are read: the kill lands mid-loop.
      const metrics = await fetch(`${w.api}/metrics`, {
        signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
      }).then((r) => r.text())
      broadcastQueue = /^patina_queue_size\{queue="broadcast"\} (\d+)$/m.exec(metrics)?.[1] ?? '?'
      const pid = w.child?.pid
      assert.ok(pid !== undefined)
      process.kill(pid, 'SIGKILL')
      killed.abort()
    }
    await Promise.all([killer(), ...Array.from({ length: WRITES_IN_FLIGHT }, worker)])
    const child = w.child
    assert.ok(child !== null)
    await waitExit(child, STOP_TIMEOUT_MS)
    assert.equal(child.signalCode, 'SIGKILL')

    // Before the restart: which acknowledged writes no other agent has (only sync can bring them).
    const present = await Promise.all(cluster.map((n) => ids(n, 'acked')))
    const nowhere = acked.filter((id) => present.every((p) => !p.has(id)))
    const everywhere = acked.filter((id) => present.every((p) => p.has(id)))
    t.diagnostic(
      `killed after ${acked.length} acknowledged writes (${failures} unanswered); its ` +
        `broadcast queue held ${broadcastQueue}; before the restart ${everywhere.length} were on ` +
        `every other agent and ${nowhere.length} on none`,
    )
    assert.ok(
      nowhere.length > 0,
      'every acknowledged write was broadcast before the kill: the rate cap did not hold any back',
    )

    await startAgent(w)
    // Durable: the restarted writer has every write it acknowledged, at once.
    const own = await ids(w, 'acked')
    const lost = acked.filter((id) => !own.has(id))
    assert.deepEqual(lost, [], 'acknowledged writes missing on the restarted writer')

    const everyone = [...cluster, w]
    const ms = await waitFor(
      'every acknowledged write on every agent',
      RECOVER_TIMEOUT_MS,
      async () => {
        for (const n of everyone) {
          const held = await ids(n, 'acked')
          for (const id of acked) if (!held.has(id)) return false
        }
        return true
      },
      () => states(everyone, ['acked']),
    )
    t.diagnostic(
      `every acknowledged write on all ${everyone.length} agents ${Math.round(ms)} ms after the restart`,
    )
    let busy = 0
    for (const a of everyone) {
      const metrics = await (await fetch(`${a.api}/metrics`)).text()
      busy += Number(/^patina_sync_rejected_total\{reason="busy"\} (\d+)$/m.exec(metrics)?.[1] ?? 0)
    }
    t.diagnostic(`sync sessions refused as busy so far, all agents: ${busy}`)
    // Its job is done; stopped so that its rate cap does not slow the catch-up measured next.
    await stopAgent(w, 'SIGTERM', STOP_TIMEOUT_MS)
  })

  it(`e2e - an agent started after ${BULK_TRANSACTIONS * BULK_ROWS} writes catches up`, async (t) => {
    const writers = cluster.slice(0, BULK_AGENTS)
    const started = performance.now()
    await Promise.all(
      writers.map(async (n, i) => {
        for (let j = i; j < BULK_TRANSACTIONS; j += BULK_AGENTS) {
          const statements: Statement[] = []
          for (let r = 0; r < BULK_ROWS; r++) {
            const id = j * BULK_ROWS + r + 1
            statements.push([
              'INSERT INTO bulk (id, origin, payload) VALUES (?, ?, ?)',
              [id, n.name, `row ${id} ${'x'.repeat(40)}`],
            ])
          }
          const res = await transact(n, statements)
          assert.equal(res.status, 200, res.text)
          assert.notEqual(res.version, null, res.text)
        }
      }),
    )
    const total = BULK_TRANSACTIONS * BULK_ROWS
    const spread = await waitFor(
      `${total} bulk rows on all ${NODES} agents`,
      CONVERGE_TIMEOUT_MS,
      async () =>
        (await Promise.all(cluster.map((n) => count(n, 'bulk')))).every((c) => c === total),
      () => states(cluster, ['bulk']),
    )
    t.diagnostic(
      `${total} rows in ${BULK_TRANSACTIONS} transactions: ${Math.round(performance.now() - started - spread)} ms, ` +
        `on all ${NODES} agents ${Math.round(spread)} ms later`,
    )

    const n = makeAgent('late')
    late = n
    await startAgent(n)
    const t0 = performance.now()
    const caughtUp = new AbortController()
    const poll = (async () => {
      while (!caughtUp.signal.aborted && performance.now() - t0 < CATCH_UP_TIMEOUT_MS) {
        const atMs = performance.now() - t0
        try {
          const { status, ...body } = await health(n, '?gaps=0')
          catchUpSamples.push({ atMs, status, body })
        } catch (err) {
          // Recorded, not thrown here: the health test fails on an answer without a response.
          catchUpSamples.push({ atMs, status: 0, body: { error: String(err) } })
        }
        await sleep(HEALTH_POLL_MS)
      }
    })()
    let ms: number
    try {
      ms = await waitFor(
        `${total} bulk rows on the late agent, and gaps 0`,
        CATCH_UP_TIMEOUT_MS,
        async () => (await count(n, 'bulk')) === total && (await health(n)).response?.gaps === 0,
        () => states([n], ['bulk']),
      )
    } finally {
      caughtUp.abort()
      await poll
    }
    // The rest of its tables match too.
    for (const table of ['kv', 'acked', 'bulk']) {
      const sql = `SELECT * FROM ${table} ORDER BY id`
      const [mine, theirs] = await Promise.all([rows(n, sql), rows(get(cluster, 0), sql)])
      assert.ok(mine.join('\n') === theirs.join('\n'), `${table} differs on the late agent`)
    }
    const behind = catchUpSamples.filter((s) => (s.body.response?.gaps ?? 0) > 0)
    const maxGaps = Math.max(0, ...behind.map((s) => s.body.response?.gaps ?? 0))
    const timeline = catchUpSamples
      .filter(
        (s, i) => i === 0 || s.body.response?.gaps !== catchUpSamples[i - 1]?.body.response?.gaps,
      )
      .map((s) => `${Math.round(s.atMs)}ms:${s.status}/gaps=${s.body.response?.gaps ?? '?'}`)
    t.diagnostic(
      `late agent caught up in ${Math.round(ms)} ms; /v1/health?gaps=0 polled ` +
        `${catchUpSamples.length} times, ${behind.length} with gaps > 0 (max ${maxGaps})`,
    )
    const shown =
      timeline.length <= TIMELINE_SHOWN
        ? timeline
        : [...timeline.slice(0, TIMELINE_SHOWN - 3), '...', ...timeline.slice(-3)]
    t.diagnostic(`health while catching up (ms since start: status/gaps): ${shown.join(' ')}`)
  })

  it('e2e - /v1/health?gaps=0 is 503 while an agent is behind and 200 once caught up', async (t) => {
    assert.ok(catchUpSamples.length > 0, 'the catch-up test recorded no health answers')
    for (const s of catchUpSamples) {
      const r = s.body.response
      assert.ok(r !== undefined, JSON.stringify(s))
      for (const key of ['gaps', 'members', 'p99_lag', 'queue_size'] as const) {
        assert.equal(typeof r[key], 'number', JSON.stringify(s))
      }
      if (r.gaps > 0) {
        assert.equal(s.status, 503, JSON.stringify(s))
        assert.match(s.body.error ?? '', /^unhealthy: gaps \d+ > 0/, JSON.stringify(s))
      } else {
        assert.equal(s.status, 200, JSON.stringify(s))
      }
    }
    // The late agent learns what exists from its first sync, then applies every version written
    // so far (about 1,300) in batches, the event loop free in between: polled every
    // HEALTH_POLL_MS, it is seen behind.
    const behind = catchUpSamples.filter((s) => s.status === 503).length
    t.diagnostic(`${behind} of ${catchUpSamples.length} answers were 503 while it caught up`)
    assert.ok(behind > 0, 'the late agent was never seen behind (gaps > 0) while catching up')
    const n = late
    assert.ok(n !== null)
    for (const a of [...cluster, n]) {
      const h = await health(a, '?gaps=0')
      assert.equal(h.status, 200, `${a.name}: ${JSON.stringify(h)}`)
      assert.equal(h.response?.gaps, 0)
    }
  })
})
