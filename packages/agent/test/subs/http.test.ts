/**
 * Goal: the subscription and update routes answer with Corrosion's exact shapes and headers,
 * share one subscription between clients of the same query, list what is live, and refuse
 * what they cannot serve with the right status and a message naming the problem.
 *
 * Method: an in-process agent API with subscriptions on a loopback port (harness.ts); streams
 * read over real sockets; writes made on the replica (local) or merged from a second replica
 * with replica.apply (remote, as replication will deliver them).
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { writeTyped } from '../../src/api/json.ts'
import { Replica } from '../../src/crdt/replica.ts'
import {
  expected,
  isObj,
  metric,
  openStream,
  openSubsApi,
  readUntil,
  StreamState,
  SUBS_SCHEMA,
  write,
  type SubsHarness,
} from './harness.ts'

let h: SubsHarness

before(async () => {
  h = await openSubsApi()
})

after(async () => {
  await h.close()
})

const json = async (path: string): Promise<unknown> => (await fetch(`${h.base}${path}`)).json()

describe('subs - HTTP routes', () => {
  it('subs - POST /v1/subscriptions streams columns, rows, eoq, then changes in Corrosion shapes', async () => {
    write(h, "INSERT INTO t (id, v, n, b) VALUES (1, 'a', 9007199254740993, x'0102')")
    const s = await openStream(h.base, 'POST', '/v1/subscriptions', [
      'SELECT id, v, n, b, n * 0.5 AS half FROM t WHERE id < ?',
      [100],
    ])
    assert.equal(s.status, 200)
    assert.match(String(s.headers['content-type']), /^application\/x-ndjson/)
    const id = String(s.headers['corro-query-id'])
    assert.match(id, /^[0-9a-f-]{36}$/)
    const state = new StreamState()
    await readUntil(s, state, 0)
    assert.deepEqual(s.raw.slice(0, 2), [
      '{"columns":["id","v","n","b","half"]}',
      '{"row":[1,[1,"a",9007199254740993,[1,2],4503599627370496.0]]}',
    ])
    assert.match(s.raw[2] ?? '', /^\{"eoq":\{"time":\d+(\.\d+)?(e-?\d+)?,"change_id":0\}\}$/)

    // Matched one at a time (writes within one batch are matched as their net effect).
    for (const sql of [
      "INSERT INTO t (id, v) VALUES (2, 'b')",
      "UPDATE t SET v = 'aa' WHERE id = 1",
      'DELETE FROM t WHERE id = 2',
      'INSERT INTO t (id) VALUES (500)', // outside the WHERE: no event
    ]) {
      write(h, sql)
      await h.subs.flush()
    }
    await readUntil(s, state, 3)
    assert.deepEqual(s.raw.slice(3), [
      '{"change":["insert",2,[2,"b",null,null,null],1]}',
      '{"change":["update",1,[1,"aa",9007199254740993,[1,2],4503599627370496.0],2]}',
      '{"change":["delete",2,[2,"b",null,null,null],3]}',
    ])
    s.close()
  })

  it('subs - the same query from two clients shares one subscription (list and metrics show it)', async () => {
    const before = (await json('/v1/subscriptions')) as unknown[]
    const a = await openStream(
      h.base,
      'POST',
      '/v1/subscriptions',
      'SELECT id, v FROM t WHERE v IS NOT NULL',
    )
    const b = await openStream(h.base, 'POST', '/v1/subscriptions', {
      query: 'select id,v\n  from T where v is not null -- the same query',
    })
    const id = String(a.headers['corro-query-id'])
    assert.equal(b.headers['corro-query-id'], id)
    const sa = new StreamState()
    const sb = new StreamState()
    await readUntil(a, sa, 0)
    await readUntil(b, sb, 0)
    const list = (await json('/v1/subscriptions')) as Record<string, unknown>[]
    assert.equal(list.length, before.length + 1)
    const entry = list.find((e) => e.id === id)
    assert.deepEqual(
      { ...entry, created: typeof entry?.created },
      {
        id,
        sql: 'SELECT id, v FROM t WHERE v IS NOT NULL',
        mode: 'incremental',
        state: 'live',
        listeners: 2,
        change_id: 0,
        rows: sa.rows.size,
        created: 'string',
      },
    )
    assert.ok(!Number.isNaN(Date.parse(String(entry?.created))))
    assert.equal(await metric(h, 'patina_subs_listeners', 'kind="subscription"'), 2)

    // A third client attaches by id and sees the same result; all three get the change.
    const c = await openStream(h.base, 'GET', `/v1/subscriptions/${id}`)
    assert.equal(c.status, 200)
    assert.equal(c.headers['corro-query-id'], id)
    const sc = new StreamState()
    await readUntil(c, sc, 0)
    assert.deepEqual(sc.sorted(), sa.sorted())
    write(h, "INSERT INTO t (id, v) VALUES (3, 'c')")
    await h.subs.flush()
    for (const [s, st] of [
      [a, sa],
      [b, sb],
      [c, sc],
    ] as const) {
      await readUntil(s, st, 1)
      assert.deepEqual(st.sorted(), expected(h, 'SELECT id, v FROM t WHERE v IS NOT NULL'))
      s.close()
    }
  })

  it('subs - skip_rows=true sends columns and eoq without the rows, then changes', async () => {
    const s = await openStream(
      h.base,
      'POST',
      '/v1/subscriptions?skip_rows=true',
      'SELECT id FROM t',
    )
    assert.equal(s.status, 200)
    assert.deepEqual(await s.next(), { columns: ['id'] })
    const eoq = await s.next()
    assert.ok(isObj(eoq) && isObj(eoq.eoq ?? null), writeTyped(eoq))
    write(h, 'INSERT INTO t (id) VALUES (4)')
    await h.subs.flush()
    const change = await s.next()
    assert.ok(isObj(change) && Array.isArray(change.change))
    assert.equal(change.change[0], 'insert')
    s.close()
  })

  it('subs - refusals answer 4xx with a JSON error naming the problem', async () => {
    const cases: [string, string, unknown, number, RegExp][] = [
      ['POST', '/v1/subscriptions', 'SELECT random() FROM t', 400, /random\(\)/],
      ['POST', '/v1/subscriptions', 'DELETE FROM t', 400, /needs a SELECT statement/],
      ['POST', '/v1/subscriptions', 'SELECT * FROM nope', 400, /no such table: nope/],
      ['POST', '/v1/subscriptions', ['SELECT ?', []], 400, /has no value/],
      ['POST', '/v1/subscriptions', 42, 400, /a statement is "SQL"/],
      ['POST', '/v1/subscriptions?from=abc', 'SELECT id FROM t', 400, /"from" must be a change id/],
      ['POST', '/v1/subscriptions?skip_rows=maybe', 'SELECT id FROM t', 400, /"skip_rows"/],
      [
        'POST',
        '/v1/subscriptions?from=3',
        'SELECT v FROM t WHERE id = 77',
        410,
        /no subscription to this query/,
      ],
      ['GET', '/v1/subscriptions/nope', undefined, 404, /no subscription with id nope/],
      ['POST', '/v1/updates/nope', undefined, 404, /no replicated table named "nope"/],
      ['POST', '/v1/updates/__patina_sites', undefined, 404, /no replicated table/],
      ['DELETE', '/v1/subscriptions', undefined, 405, /use GET, POST/],
    ]
    for (const [method, path, body, status, message] of cases) {
      const res = await fetch(`${h.base}${path}`, {
        method,
        ...(body === undefined
          ? {}
          : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
      })
      const text = await res.text()
      assert.equal(res.status, status, `${method} ${path}: ${text}`)
      assert.match(String(res.headers.get('content-type')), /application\/json/)
      const parsed = JSON.parse(text) as { error?: unknown }
      assert.match(String(parsed.error), message, `${method} ${path}`)
    }
  })

  it('subs - POST /v1/updates/:table notifies local and remote changes, latest state per key', async () => {
    // Empty body, with and without a JSON content type.
    const plain = await openStream(h.base, 'POST', '/v1/updates/u')
    const typed = await openStream(h.base, 'POST', '/v1/updates/U', undefined, {
      'content-type': 'application/json',
    })
    assert.equal(plain.status, 200)
    assert.equal(typed.status, 200)
    assert.match(String(plain.headers['corro-query-id']), /^[0-9a-f-]{36}$/)
    write(h, "INSERT INTO u (k, j, w) VALUES ('p', 1, 'x'), ('q', 2, 'y')")
    write(h, 'INSERT INTO t (id) VALUES (40)') // another table: not notified
    await h.subs.flush()
    write(h, "DELETE FROM u WHERE k = 'p'")
    await h.subs.flush()

    // A change merged from another replica arrives through the same commit events.
    const dir = mkdtempSync(join(tmpdir(), 'patina-subs-remote-'))
    const other = Replica.open(join(dir, 'b.db'))
    try {
      other.applySchema([{ path: 'schema.sql', sql: SUBS_SCHEMA }])
      const v = other.transaction([
        { sql: "INSERT INTO u (k, j, w) VALUES ('r', 3, 'remote')" },
      ]).version
      assert.ok(v !== null)
      const cs = other.changesFor(other.actorId, v)
      assert.ok(cs !== null)
      h.replica.apply([cs])
    } finally {
      other.close()
      rmSync(dir, { recursive: true, force: true })
    }
    await h.subs.flush()
    const want = [
      { notify: ['update', ['p', 1n]] },
      { notify: ['update', ['q', 2n]] },
      { notify: ['delete', ['p', 1n]] },
      { notify: ['update', ['r', 3n]] },
    ]
    for (const s of [plain, typed]) {
      const got = [await s.next(), await s.next(), await s.next(), await s.next()]
      assert.deepEqual(got, want)
      assert.equal(s.raw[0], '{"notify":["update",["p",1]]}')
      s.close()
    }

    // Changed twice before a tick: sent once, with the latest state.
    const s = await openStream(h.base, 'POST', '/v1/updates/g')
    h.replica.transaction([{ sql: "INSERT INTO g (id, name) VALUES (1, 'a')" }])
    h.replica.transaction([{ sql: 'DELETE FROM g WHERE id = 1' }])
    await h.subs.flush()
    assert.deepEqual(await s.next(), { notify: ['delete', [1n]] })
    await h.subs.flush()
    assert.equal(s.pending.length, 0)
    s.close()
  })

  it('subs - GET /v1/subscriptions lists every live subscription', async () => {
    const s = await openStream(
      h.base,
      'POST',
      '/v1/subscriptions',
      'SELECT n, count(*) FROM t GROUP BY n',
    )
    const id = String(s.headers['corro-query-id'])
    await readUntil(s, new StreamState(), 0)
    const list = (await json('/v1/subscriptions')) as Record<string, unknown>[]
    const entry = list.find((e) => e.id === id)
    assert.ok(entry !== undefined)
    assert.equal(entry.mode, 'full')
    assert.equal(entry.listeners, 1)
    assert.equal(await metric(h, 'patina_subs_subscriptions', 'mode="full"'), 1)
    s.close()
  })
})

describe('subs - caps and idle subscriptions', () => {
  it('subs - max_subscriptions and max_listeners answer 503 with Retry-After; each cap has a metric', async () => {
    const c = await openSubsApi({ subs: { max_subscriptions: 1, max_listeners: 2 } })
    try {
      const a = await openStream(c.base, 'POST', '/v1/subscriptions', 'SELECT id FROM t')
      assert.equal(a.status, 200)
      const second = await fetch(`${c.base}/v1/subscriptions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify('SELECT v FROM t'),
      })
      assert.equal(second.status, 503)
      assert.equal(second.headers.get('retry-after'), '1')
      assert.match(
        ((await second.json()) as { error: string }).error,
        /too many subscriptions \(1, \[subscriptions\] max_subscriptions\)/,
      )
      const b = await openStream(c.base, 'POST', '/v1/updates/t')
      assert.equal(b.status, 200)
      const third = await fetch(`${c.base}/v1/updates/t`, { method: 'POST' })
      assert.equal(third.status, 503)
      assert.match(
        ((await third.json()) as { error: string }).error,
        /too many open streams \(2, \[subscriptions\] max_listeners\)/,
      )
      assert.equal(await metric(c, 'patina_subs_rejected_total', 'reason="subscriptions"'), 1)
      assert.equal(await metric(c, 'patina_subs_rejected_total', 'reason="listeners"'), 1)
      assert.equal(await metric(c, 'patina_subs_subscriptions_max'), 1)
      assert.equal(await metric(c, 'patina_subs_listeners_max'), 2)
      for (const name of [
        'patina_subs_listener_lag_changes_max',
        'patina_subs_history_changes_max',
        'patina_subs_pending_keys_max',
      ]) {
        assert.ok((await metric(c, name)) !== undefined, name)
      }
      a.close()
      b.close()
    } finally {
      await c.close()
    }
  })

  it('subs - a subscription without listeners is dropped after idle_timeout_ms', async () => {
    const c = await openSubsApi({ subs: { idle_timeout_ms: 100 } })
    try {
      const s = await openStream(c.base, 'POST', '/v1/subscriptions', 'SELECT id FROM t')
      const id = String(s.headers['corro-query-id'])
      await readUntil(s, new StreamState(), 0)
      s.close()
      const deadline = Date.now() + 5000
      while (c.subs.list().length > 0) {
        assert.ok(Date.now() < deadline, 'dropped within 5 s')
        await new Promise((r) => setTimeout(r, 20))
      }
      const res = await fetch(`${c.base}/v1/subscriptions/${id}`)
      assert.equal(res.status, 404)
      assert.match(
        ((await res.json()) as { error: string }).error,
        /dropped after 100 ms without a listener/,
      )
      assert.equal(await metric(c, 'patina_subs_dropped_total', 'reason="idle"'), 1)
    } finally {
      await c.close()
    }
  })
})
