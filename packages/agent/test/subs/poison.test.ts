/**
 * Goal: a change that breaks one subscription (the "poison update" that wedged every router)
 * or a query that runs too long affects that subscription alone: its listeners get an error
 * event and it is dropped, while the agent, its writes and every other subscription go on,
 * whether the change was written locally or merged from a peer. The commit path never throws.
 *
 * Method: an in-process agent with `eval_timeout_ms = 400` and one evaluation reader. Next to
 * a plain subscription, one whose query fails on a malformed JSON value (json_extract), and
 * one whose query becomes a multi-second computation once a certain row exists. Poison rows
 * arrive locally and through replica.apply from a second replica; after each, the plain
 * subscription still streams every change exactly, a new subscription still works, and the
 * poisoned query is refused at subscribe time with SQLite's message until the row is fixed.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
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
  type EventStream,
  type SubsHarness,
} from './harness.ts'

const PLAIN = 'SELECT id, v FROM t'
const JSON_SQL = "SELECT id, json_extract(v, '$.a') AS a FROM t WHERE v IS NOT NULL"
/** Cheap while g has no row 99; a count to 200 million (seconds) once it has. */
const SLOW_SQL =
  'SELECT (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c ' +
  'WHERE x < 200000000 AND EXISTS (SELECT 1 FROM g WHERE id = 99)) SELECT count(*) FROM c) AS n'

let h: SubsHarness
let other: Replica
let otherDir = ''

before(async () => {
  h = await openSubsApi({ subs: { eval_timeout_ms: 400 } })
  otherDir = mkdtempSync(join(tmpdir(), 'patina-poison-'))
  other = Replica.open(join(otherDir, 'b.db'))
  other.applySchema([{ path: 'schema.sql', sql: SUBS_SCHEMA }])
})

after(async () => {
  other.close()
  rmSync(otherDir, { recursive: true, force: true })
  await h.close()
})

/** Reads until the stream's last event is an error; returns its message. */
async function errorOf(s: EventStream): Promise<string> {
  for (;;) {
    const event = await s.next(10_000)
    if (isObj(event) && typeof event.error === 'string') return event.error
  }
}

async function post(sql: string): Promise<{ status: number; body: { error?: string } }> {
  const s = await openStream(h.base, 'POST', '/v1/subscriptions', sql)
  if (s.status === 200) {
    s.close()
    return { status: 200, body: {} }
  }
  const [body] = await s.rest()
  return { status: s.status, body: (isObj(body ?? null) ? body : {}) as { error?: string } }
}

describe('subs - poison', () => {
  it('subs - a change that makes one query fail fails that subscription alone (local and remote)', async () => {
    write(h, `INSERT INTO t (id, v) VALUES (1, '{"a": 1}')`)
    const plain = await openStream(h.base, 'POST', '/v1/subscriptions', PLAIN)
    const plainState = new StreamState()
    await readUntil(plain, plainState, 0)

    for (const via of ['local', 'remote'] as const) {
      const poisoned = await openStream(h.base, 'POST', '/v1/subscriptions', JSON_SQL)
      assert.equal(poisoned.status, 200)
      const id = String(poisoned.headers['corro-query-id'])
      await readUntil(poisoned, new StreamState(), 0)

      const bad = via === 'local' ? 2n : 3n
      if (via === 'local') {
        write(h, ['INSERT INTO t (id, v) VALUES (?, ?)', [bad, 'not json']])
      } else {
        const v = other.transaction([
          { sql: 'INSERT INTO t (id, v) VALUES (?, ?)', params: [bad, '{oops'] },
        ]).version
        assert.ok(v !== null)
        const cs = other.changesFor(other.actorId, v)
        assert.ok(cs !== null)
        h.replica.apply([cs])
      }
      write(h, ['INSERT INTO t (id, v) VALUES (?, ?)', [bad + 10n, '{"a": 2}']])
      await h.subs.flush()

      assert.match(await errorOf(poisoned), /^subscription failed: malformed JSON/)
      await poisoned.ended
      // The plain subscription saw every change, including the poison row itself.
      await readUntil(plain, plainState, h.subs.list().find((s) => s.sql === PLAIN)?.changeId ?? 0)
      assert.deepEqual(plainState.sorted(), expected(h, PLAIN))
      // The failed one is gone, and says why.
      const gone = await fetch(`${h.base}/v1/subscriptions/${id}`)
      assert.equal(gone.status, 410)
      assert.match(((await gone.json()) as { error: string }).error, /failed: malformed JSON/)
      assert.ok(!h.subs.list().some((s) => s.id === id))
      // Subscribing again is refused with SQLite's message while the row is there.
      const again = await post(JSON_SQL)
      assert.equal(again.status, 400)
      assert.match(String(again.body.error), /malformed JSON/)
      // Other subscriptions can still be created, and writes still work.
      assert.equal((await post('SELECT v FROM t WHERE id > 1')).status, 200)
      write(h, ['UPDATE t SET v = ? WHERE id = ?', ['{"a": 3}', bad]])
    }
    // Once the rows are fixed, the query can be subscribed to again.
    assert.equal((await post(JSON_SQL)).status, 200)
    // Two subscriptions failed on a poison row, two more at their first run (refused 400).
    assert.equal(await metric(h, 'patina_subs_dropped_total', 'reason="failed"'), 4)
    assert.equal(h.replica.listenerErrors, 0)
    assert.equal(await metric(h, 'patina_subs_commit_listener_errors_total'), 0)
    plain.close()
  })

  it('subs - a query that turns slow is cut at eval_timeout_ms; the others keep flowing', async () => {
    const plain = await openStream(h.base, 'POST', '/v1/subscriptions', PLAIN)
    const plainState = new StreamState()
    await readUntil(plain, plainState, 0)
    const slow = await openStream(h.base, 'POST', '/v1/subscriptions', SLOW_SQL)
    assert.equal(slow.status, 200)
    await readUntil(slow, new StreamState(), 0)

    write(h, 'INSERT INTO g (id) VALUES (99)', "INSERT INTO t (id, v) VALUES (50, 'during')")
    await h.subs.flush()
    assert.match(
      await errorOf(slow),
      /^subscription failed: evaluating the subscription took too long/,
    )
    write(h, "INSERT INTO t (id, v) VALUES (51, 'after')")
    await h.subs.flush()
    await readUntil(plain, plainState, h.subs.list().find((s) => s.sql === PLAIN)?.changeId ?? 0)
    assert.deepEqual(plainState.sorted(), expected(h, PLAIN))
    const health = await fetch(`${h.base}/v1/health`)
    assert.equal(health.status, 200)
    plain.close()
  })
})
