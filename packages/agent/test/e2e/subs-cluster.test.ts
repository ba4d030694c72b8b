/**
 * Goal: a subscription on one agent of a cluster sees the writes made on the other agents: with
 * 3 real `patina agent` processes (A, B, C), a subscriber on C gets a change event for every
 * insert, update and delete made on A and on B (including an update that moves a row out of
 * the query's WHERE), with contiguous change ids, and the result rebuilt from its rows and
 * changes equals the same query run on C at the end; an update stream on C sees writes made
 * on A.
 *
 * Method: as replication.test.ts: `npx tsc -b` first, then the agents as child processes of the
 * built bin on 127.0.0.1 (API and gossip ports free a moment before; B and C bootstrap from A),
 * fast anti-entropy. The subscription (`POST /v1/subscriptions`) and the update stream (`POST
 * /v1/updates/kv`) are read with fetch as NDJSON in the background; writes go through `POST
 * /v1/transactions` on A and B. The rows each agent touches are disjoint, and a row written
 * by both is only changed by the second one after it has replicated there, so the final state
 * is known without relying on last-writer-wins. Every wait is bounded (WAIT_MS); children are
 * killed by their PIDs in `after`.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { LineSplitter } from '@patina/protocol'
import {
  writeAgent,
  buildAgent,
  queryRows,
  startAgent,
  stopAgent,
  type AgentProcess,
} from './agents.ts'
import { freePorts } from './ports.ts'

/** Every wait of this file (formation, replication, an event) fails after this long. */
const WAIT_MS = 15_000
const POLL_MS = 20
const STOP_TIMEOUT_MS = 10_000
const HTTP_TIMEOUT_MS = 10_000

const SCHEMA = 'CREATE TABLE kv (id INTEGER NOT NULL PRIMARY KEY, v TEXT, n INTEGER);\n'
/** The subscribed query: the WHERE lets an update move a row out of the result. */
const SQL = 'SELECT id, v, n FROM kv WHERE n >= 0'

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type Statement = string | [string, (string | number)[]]

let dir = ''
const nodes: AgentProcess[] = []
const streams: NdjsonStream[] = []

function node(i: number): AgentProcess {
  const n = nodes[i]
  assert.ok(n !== undefined)
  return n
}

/** An NDJSON answer read in the background: every line parsed, in order. */
interface NdjsonStream {
  readonly status: number
  readonly headers: Headers
  readonly events: Json[]
  /** Set once the body ended or failed. */
  ended: string | null
  close(): void
}

async function openStream(url: string, body: string | undefined): Promise<NdjsonStream> {
  const controller = new AbortController()
  const init: RequestInit = { method: 'POST', signal: controller.signal }
  if (body !== undefined) {
    init.body = body
    init.headers = { 'content-type': 'application/json' }
  }
  const res = await fetch(url, init)
  const s: NdjsonStream = {
    status: res.status,
    headers: res.headers,
    events: [],
    ended: null,
    close: () => {
      controller.abort()
    },
  }
  streams.push(s)
  if (res.body === null) {
    s.ended = 'no body'
    return s
  }
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  void (async () => {
    const splitter = new LineSplitter()
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        for (const line of splitter.push(value)) s.events.push(JSON.parse(line) as Json)
      }
      s.ended = 'the stream ended'
    } catch (err) {
      s.ended = `the stream failed: ${String(err)}`
    }
  })()
  return s
}

/** Polls `check` until it holds; fails after WAIT_MS with `describe()`. */
async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  describe: () => string | Promise<string>,
): Promise<number> {
  const started = performance.now()
  for (;;) {
    if (await check()) return performance.now() - started
    if (performance.now() - started > WAIT_MS) {
      assert.fail(`${what}: not within ${WAIT_MS} ms\n${await describe()}`)
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS))
  }
}

async function transact(n: AgentProcess, statements: readonly Statement[]): Promise<number> {
  const res = await fetch(`${n.api}/v1/transactions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(statements),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  })
  const text = await res.text()
  assert.equal(res.status, 200, `${n.name}: ${text}`)
  const version = (JSON.parse(text) as { version?: unknown }).version
  assert.equal(typeof version, 'number', `${n.name} committed a version: ${text}`)
  return version as number
}

/** POST /v1/queries: each row as the JSON text of its values, sorted. */
async function query(n: AgentProcess, sql: string): Promise<string[]> {
  return (await queryRows(n, sql, HTTP_TIMEOUT_MS)).sort()
}

async function allAlive(): Promise<boolean> {
  const want = nodes.map((n) => `127.0.0.1:${n.gossipPort}`)
  for (const n of nodes) {
    const res = await fetch(`${n.api}/v1/members`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) })
    const members = (await res.json()) as { addr: string; state: string }[]
    const alive = new Set(members.filter((m) => m.state === 'alive').map((m) => m.addr))
    if (!want.every((a) => alive.has(a))) return false
  }
  return true
}

/**
 * A subscription's result rebuilt from its events (rowid -> values as JSON text), checking on
 * the way that change ids are contiguous from the `eoq`'s and that each change fits the rows.
 */
class Rebuilt {
  readonly rows = new Map<number, string>()
  columns: string[] = []
  eoq = false
  changeId = 0
  readonly kinds = new Map<string, number>()
  private taken = 0

  /** Applies the events not applied yet. */
  take(events: readonly Json[]): void {
    for (; this.taken < events.length; this.taken++) this.apply(events[this.taken] ?? null)
  }

  private apply(e: Json): void {
    assert.ok(typeof e === 'object' && e !== null && !Array.isArray(e), JSON.stringify(e))
    if ('error' in e) assert.fail(`the subscription ended with an error: ${JSON.stringify(e)}`)
    if (Array.isArray(e.columns)) {
      this.columns = e.columns.map(String)
    } else if (Array.isArray(e.row)) {
      assert.ok(!this.eoq, 'no row after eoq')
      const [rowid, values] = e.row as [number, Json[]]
      this.rows.set(rowid, JSON.stringify(values))
    } else if (typeof e.eoq === 'object' && e.eoq !== null && !Array.isArray(e.eoq)) {
      this.eoq = true
      this.changeId = Number(e.eoq.change_id)
    } else if (Array.isArray(e.change)) {
      assert.ok(this.eoq, 'a change comes after eoq')
      const [kind, rowid, values, id] = e.change as [string, number, Json[], number]
      assert.equal(id, this.changeId + 1, `change ids are contiguous: ${JSON.stringify(e)}`)
      this.changeId = id
      this.kinds.set(kind, (this.kinds.get(kind) ?? 0) + 1)
      if (kind === 'insert') {
        assert.ok(!this.rows.has(rowid), `insert of an existing rowid: ${JSON.stringify(e)}`)
        this.rows.set(rowid, JSON.stringify(values))
      } else if (kind === 'update') {
        assert.ok(this.rows.has(rowid), `update of a missing rowid: ${JSON.stringify(e)}`)
        this.rows.set(rowid, JSON.stringify(values))
      } else {
        assert.equal(kind, 'delete', JSON.stringify(e))
        assert.equal(this.rows.get(rowid), JSON.stringify(values), 'a delete carries the row')
        this.rows.delete(rowid)
      }
    } else {
      assert.fail(`unexpected event ${JSON.stringify(e)}`)
    }
  }

  sorted(): string[] {
    return [...this.rows.values()].sort()
  }
}

const row = (id: number, v: string, n: number): string => JSON.stringify([id, v, n])

before(async () => {
  buildAgent()
  dir = mkdtempSync(join(tmpdir(), 'patina-subs-cluster-'))
  writeFileSync(join(dir, 'schema.sql'), SCHEMA)
  const ports = await freePorts(6)
  for (const [i, name] of ['A', 'B', 'C'].entries()) {
    const apiPort = ports[2 * i] ?? 0
    const gossipPort = ports[2 * i + 1] ?? 0
    nodes.push(
      writeAgent(dir, {
        name,
        apiPort,
        gossipPort,
        bootstrap: i === 0 ? [] : [ports[1] ?? 0],
        schema: true,
        extra: ['[perf]', 'min_sync_backoff = 0.5', 'max_sync_backoff = 2'],
      }),
    )
  }
  await Promise.all(nodes.map(startAgent))
  await until('every agent lists every agent alive', allAlive, () =>
    nodes.map((n) => n.name).join(', '),
  )
})

after(async () => {
  for (const s of streams) s.close()
  for (const n of nodes) await stopAgent(n, 'SIGKILL', STOP_TIMEOUT_MS).catch(() => undefined)
  if (dir !== '') rmSync(dir, { recursive: true, force: true })
})

describe('e2e - subscriptions in a cluster', () => {
  it('e2e - a subscriber on C sees inserts, updates and deletes made on A and B', async (t) => {
    const [a, b, c] = [node(0), node(1), node(2)]
    // A row that C has before the subscription starts: it comes as an initial row.
    await transact(a, [['INSERT INTO kv (id, v, n) VALUES (?, ?, ?)', [1, 'a-1', 0]]])
    await until(
      'row 1 on C',
      async () => (await query(c, 'SELECT id FROM kv')).length === 1,
      () => c.output.slice(-2000),
    )

    const sub = await openStream(`${c.api}/v1/subscriptions`, JSON.stringify(SQL))
    assert.equal(sub.status, 200)
    const subId = sub.headers.get('corro-query-id')
    assert.match(subId ?? '', /^[0-9a-f-]{36}$/)
    const state = new Rebuilt()
    const rebuilt = (): string =>
      `change id ${state.changeId}; rows:\n${state.sorted().join('\n')}\n${sub.ended ?? ''}`
    await until(
      'the initial rows',
      () => {
        state.take(sub.events)
        return state.eoq
      },
      rebuilt,
    )
    assert.deepEqual(state.columns, ['id', 'v', 'n'])
    assert.deepEqual(state.sorted(), [row(1, 'a-1', 0)])
    const firstChangeId = state.changeId

    const updates = await openStream(`${c.api}/v1/updates/kv`, undefined)
    assert.equal(updates.status, 200)
    assert.ok(updates.headers.get('corro-query-id') !== null)

    // Inserts on A and on B, concurrently, one transaction each.
    await Promise.all([
      ...[10, 11, 12, 13, 14].map((id) =>
        transact(a, [['INSERT INTO kv (id, v, n) VALUES (?, ?, ?)', [id, `a-${id}`, id]]]),
      ),
      ...[20, 21, 22, 23, 24].map((id) =>
        transact(b, [['INSERT INTO kv (id, v, n) VALUES (?, ?, ?)', [id, `b-${id}`, id]]]),
      ),
    ])
    const inserted = [row(1, 'a-1', 0)]
    for (const id of [10, 11, 12, 13, 14]) inserted.push(row(id, `a-${id}`, id))
    for (const id of [20, 21, 22, 23, 24]) inserted.push(row(id, `b-${id}`, id))
    inserted.sort()
    const insertMs = await until(
      'the inserts of A and B as change events on C',
      () => {
        state.take(sub.events)
        return state.sorted().join('\n') === inserted.join('\n')
      },
      rebuilt,
    )

    // The update stream on C saw A's inserts (notified as updates, as in Corrosion).
    const notified = (kind: string, id: number): boolean =>
      updates.events.some((e) => JSON.stringify(e) === JSON.stringify({ notify: [kind, [id]] }))
    await until(
      "A's insert of row 10 on C's update stream",
      () => notified('update', 10),
      () => JSON.stringify(updates.events),
    )

    // Each agent changes rows the other made, once they have replicated there.
    for (const [n, ids] of [
      [a, [20, 21, 22]],
      [b, [1, 10, 11, 12, 13]],
    ] as const) {
      await until(
        `rows ${ids.join(', ')} on ${n.name}`,
        async () =>
          (await query(n, `SELECT id FROM kv WHERE id IN (${ids.join(', ')})`)).length ===
          ids.length,
        () => n.output.slice(-2000),
      )
    }
    await Promise.all([
      transact(a, ["UPDATE kv SET v = 'a-upd' WHERE id IN (20, 21)"]),
      transact(a, ['DELETE FROM kv WHERE id = 22']),
      transact(b, ["UPDATE kv SET v = 'b-upd' WHERE id IN (10, 11)"]),
      transact(b, ['DELETE FROM kv WHERE id IN (1, 12)']),
      // Leaves the result (n >= 0) without being deleted: a delete event for the subscriber.
      transact(b, ['UPDATE kv SET n = -1 WHERE id = 13']),
      transact(b, [['INSERT INTO kv (id, v, n) VALUES (?, ?, ?)', [25, 'b-25', 25]]]),
    ])
    const final = [
      row(10, 'b-upd', 10),
      row(11, 'b-upd', 11),
      row(14, 'a-14', 14),
      row(20, 'a-upd', 20),
      row(21, 'a-upd', 21),
      row(23, 'b-23', 23),
      row(24, 'b-24', 24),
      row(25, 'b-25', 25),
    ].sort()
    const changeMs = await until(
      'the updates and deletes of A and B as change events on C',
      () => {
        state.take(sub.events)
        return state.sorted().join('\n') === final.join('\n')
      },
      rebuilt,
    )
    await until(
      "A's update and delete on C's update stream",
      () => notified('update', 20) && notified('delete', 22),
      () => JSON.stringify(updates.events),
    )

    // The rebuilt result is C's own answer to the query; every kind of change was seen.
    assert.deepEqual(await query(c, SQL), state.sorted())
    assert.deepEqual(state.sorted(), final)
    for (const kind of ['insert', 'update', 'delete']) {
      assert.ok(
        (state.kinds.get(kind) ?? 0) > 0,
        `a ${kind} event: ${JSON.stringify([...state.kinds])}`,
      )
    }
    const list = (await (await fetch(`${c.api}/v1/subscriptions`)).json()) as {
      id: string
      listeners: number
      change_id: number
      rows: number
    }[]
    assert.deepEqual(
      list.map((s) => [s.id, s.listeners, s.change_id, s.rows]),
      [[subId, 1, state.changeId, final.length]],
    )
    assert.equal(sub.ended, null, 'the subscription is still open')
    t.diagnostic(
      `change ids ${firstChangeId + 1}..${state.changeId} (${JSON.stringify(Object.fromEntries(state.kinds))}); ` +
        `inserts seen on C ${Math.round(insertMs)} ms after their acknowledgement, ` +
        `updates and deletes ${Math.round(changeMs)} ms after theirs`,
    )
  })
})
