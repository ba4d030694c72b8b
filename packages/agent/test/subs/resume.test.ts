/**
 * Goal: resuming never skips or repeats. `from=N` yields exactly the changes after N, in order,
 * once each: after a client disconnect, after an agent restart (including changes committed
 * while it was down, and a crash between a commit and its matching), and an explicit 410 when
 * the changes after N are gone (history cap) or never existed.
 *
 * Method: in-process agents (harness.ts) on one directory, closed and reopened (`keep`) to
 * restart; writes while "down" go straight into the database file through a Replica, as a
 * crash or replication before restore would leave them. Streams are rebuilt with StreamState,
 * whose contiguity checks fail on any gap or repeat, and compared with the query's rows.
 */
import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { Replica } from '../../src/crdt/replica.ts'
import {
  expected,
  isObj,
  metric,
  openStream,
  openSubsApi,
  readUntil,
  StreamState,
  write,
  type EventStream,
  type SubsHarness,
} from './harness.ts'

const SQL = 'SELECT t.id, t.v, u.w FROM t LEFT JOIN u ON u.t_id = t.id WHERE t.n IS NOT 0'

async function changesAfter(
  h: SubsHarness,
  path: string,
  method: 'GET' | 'POST',
  from: number,
  upTo: number,
  state: StreamState,
): Promise<EventStream> {
  const s = await openStream(
    h.base,
    method,
    `${path}?from=${from}`,
    method === 'POST' ? SQL : undefined,
  )
  assert.equal(s.status, 200, s.raw.join('\n'))
  state.changeId = from
  state.eoq = true
  await readUntil(s, state, upTo)
  return s
}

describe('subs - resume', () => {
  it('subs - after a disconnect, from=N by id or by query yields exactly the changes after N', async () => {
    const h = await openSubsApi()
    try {
      write(h, "INSERT INTO t (id, v) VALUES (1, 'a'), (2, 'b')")
      const s = await openStream(h.base, 'POST', '/v1/subscriptions', SQL)
      const id = String(s.headers['corro-query-id'])
      const state = new StreamState()
      await readUntil(s, state, 0)
      for (let i = 3; i <= 6; i++) {
        write(h, ['INSERT INTO t (id, v) VALUES (?, ?)', [BigInt(i), `v${i}`]])
        await h.subs.flush()
      }
      await readUntil(s, state, 2)
      s.close() // mid-stream: changes 3 and 4 were made but perhaps not read
      write(h, "INSERT INTO u (k, j, t_id, w) VALUES ('p', 1, 1, 'w')")
      write(h, 'DELETE FROM t WHERE id = 2')
      await h.subs.flush()
      const last = h.subs.list()[0]?.changeId ?? 0
      assert.ok(last >= 6, `changes were logged while disconnected (${last})`)

      const byId = structuredClone(state)
      Object.setPrototypeOf(byId, StreamState.prototype)
      const r1 = await changesAfter(h, `/v1/subscriptions/${id}`, 'GET', state.changeId, last, byId)
      assert.deepEqual(byId.sorted(), expected(h, SQL))
      assert.equal(r1.headers['corro-query-id'], id)
      const r2 = await changesAfter(h, '/v1/subscriptions', 'POST', state.changeId, last, state)
      assert.equal(r2.headers['corro-query-id'], id)
      assert.deepEqual(state.sorted(), expected(h, SQL))
      // from=N sends changes only: no columns, rows or eoq (as Corrosion).
      assert.ok(
        r2.raw.every((l) => l.startsWith('{"change":')),
        r2.raw.join('\n'),
      )
      // Nothing more, nothing repeated, and the live stream goes on.
      write(h, "INSERT INTO t (id, v) VALUES (9, 'z')")
      await h.subs.flush()
      await readUntil(r2, state, last + 1)
      assert.deepEqual(state.sorted(), expected(h, SQL))
      assert.equal(r2.pending.length, 0)
      r1.close()
      r2.close()
    } finally {
      await h.close()
    }
  })

  it('subs - from=N too old (history cap) or beyond the last change answers 410', async () => {
    const h = await openSubsApi({ subs: { max_history: 5 } })
    try {
      const s = await openStream(h.base, 'POST', '/v1/subscriptions', 'SELECT id, v FROM t')
      const id = String(s.headers['corro-query-id'])
      await readUntil(s, new StreamState(), 0)
      for (let i = 1; i <= 12; i++) {
        write(h, ['INSERT INTO t (id, v) VALUES (?, ?)', [BigInt(i), 'x']])
        await h.subs.flush()
      }
      s.close()
      const gone = await fetch(`${h.base}/v1/subscriptions/${id}?from=3`)
      assert.equal(gone.status, 410)
      assert.match(
        ((await gone.json()) as { error: string }).error,
        /changes after change id 3 are no longer kept \(oldest kept: 8, \[subscriptions\] max_history\): subscribe again without from/,
      )
      const ahead = await fetch(`${h.base}/v1/subscriptions/${id}?from=13`)
      assert.equal(ahead.status, 410)
      assert.match(
        ((await ahead.json()) as { error: string }).error,
        /beyond this subscription's last change id 12/,
      )
      // The oldest kept point still works: from=7 gives 8..12.
      const state = new StreamState()
      const ok = await changesAfter(h, `/v1/subscriptions/${id}`, 'GET', 7, 12, state)
      assert.equal(state.changeId, 12)
      ok.close()
      assert.equal(await metric(h, 'patina_subs_history_changes'), 5)
    } finally {
      await h.close()
    }
  })

  it('subs - after a restart, from=N yields the changes after N, including writes made while down', async () => {
    let h = await openSubsApi()
    const dir = h.dir
    try {
      write(h, "INSERT INTO t (id, v) VALUES (1, 'a')")
      const s = await openStream(h.base, 'POST', '/v1/subscriptions', SQL)
      const id = String(s.headers['corro-query-id'])
      const state = new StreamState()
      await readUntil(s, state, 0)
      write(h, "INSERT INTO t (id, v) VALUES (2, 'b')")
      await h.subs.flush()
      await readUntil(s, state, 1)
      const stream = s.ended
      await h.close({ keep: true })
      await stream
      // The agent's stop ended the stream with an error event telling where to resume.
      const last = s.pending.at(-1) ?? null
      assert.ok(
        isObj(last) &&
          typeof last.error === 'string' &&
          /shutting down; resume with from=1/.test(last.error),
      )

      // Written while no subscription was running (as replication or a crash would leave it).
      const offline = Replica.open(join(dir, 'state.db'))
      offline.transaction([
        { sql: "UPDATE t SET v = 'A' WHERE id = 1" },
        { sql: "INSERT INTO u (k, j, t_id, w) VALUES ('p', 1, 2, 'w')" },
        { sql: 'INSERT INTO t (id, n) VALUES (3, 0)' }, // filtered out by WHERE
      ])
      offline.close()

      h = await openSubsApi({ dir })
      await h.subs.flush() // restored subscriptions are reconciled with a full re-run
      const info = h.subs.list().find((x) => x.id === id)
      assert.ok(info !== undefined, 'the subscription was restored with its id')
      // Row 1 updated; row 2 gained a LEFT JOIN match: its identity (t.id, u.k, u.j) changed,
      // so the row with no match is deleted and the matched one inserted.
      assert.equal(info.changeId, 4)
      const r = await changesAfter(h, `/v1/subscriptions/${id}`, 'GET', 1, 4, state)
      assert.deepEqual(
        r.raw.map((l) => l.slice(0, 20)),
        ['{"change":["delete",', '{"change":["update",', '{"change":["insert",'],
      )
      assert.deepEqual(state.sorted(), expected(h, SQL))
      // And it keeps going after the restart.
      write(h, 'DELETE FROM t WHERE id = 1')
      await h.subs.flush()
      await readUntil(r, state, 5)
      assert.deepEqual(state.sorted(), expected(h, SQL))
      r.close()
    } finally {
      await h.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('subs - a crash between a commit and its matching loses no change', async () => {
    // batch_ms is long: the commit's keys are still queued, unmatched, when the agent stops.
    let h = await openSubsApi({ subs: { batch_ms: 60000 } })
    const dir = h.dir
    try {
      const s = await openStream(h.base, 'POST', '/v1/subscriptions', 'SELECT id, v FROM t')
      const id = String(s.headers['corro-query-id'])
      const state = new StreamState()
      await readUntil(s, state, 0)
      write(h, "INSERT INTO t (id, v) VALUES (7, 'committed, never matched')")
      assert.equal(h.subs.list()[0]?.changeId, 0)
      s.close()
      await h.close({ keep: true })
      h = await openSubsApi({ dir })
      await h.subs.flush()
      const r = await changesAfter(h, `/v1/subscriptions/${id}`, 'GET', 0, 1, state)
      assert.deepEqual(state.sorted(), ['[7,"committed, never matched"]'])
      r.close()
    } finally {
      await h.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
