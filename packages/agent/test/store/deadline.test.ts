/**
 * Goal: a local transaction that runs past `txTimeoutMs` (`[perf] sql_tx_timeout`) is
 * interrupted and rolled back with TRANSACTION_TIMEOUT, promptly, changing nothing and
 * consuming no version; the replica stays usable; a transaction under the deadline is
 * unaffected; a deadline never outlives its transaction; SQL sent by users cannot clear it.
 *
 * Method: file-backed replicas (Replica.open with txTimeoutMs) with the native extension built
 * at install (native/build, scripts/build-native.mjs). The long statements are recursive CTEs
 * bounded at LONG_ROWS rows, which take seconds without a deadline (so that, before deadlines
 * existed, these tests failed in bounded time rather than hanging; the unbounded CTE is the
 * e2e test's). Durations for the leak test are calibrated on this machine first.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import Database from 'better-sqlite3'
import { ReplicaError } from '../../src/crdt/errors.ts'
import { Replica } from '../../src/crdt/replica.ts'
import { StatementDeadline } from '../../src/store/deadline.ts'

/** Rows of the long CTE: several seconds without a deadline. */
const LONG_ROWS = 30_000_000
const DEADLINE_MS = 200
/** How late past the deadline the interrupt may surface (a shared, loaded machine). */
const MARGIN_MS = 300

const count = (rows: number): string =>
  `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${rows}) ` +
  'SELECT count(*) FROM c'

const dir = mkdtempSync(join(tmpdir(), 'patina-deadline-'))
const opened: Replica[] = []
after(() => {
  for (const r of opened) if (r.db.open) r.close()
  rmSync(dir, { recursive: true, force: true })
})

function open(txTimeoutMs: number): Replica {
  const r = Replica.open(join(dir, `db${opened.length}.db`), { txTimeoutMs })
  opened.push(r)
  r.applySchema([
    { path: 'schema.sql', sql: 'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT);' },
  ])
  return r
}

function rows(r: Replica): unknown[] {
  return r.query('SELECT id, v FROM t ORDER BY id').map((row) => [row.id, row.v])
}

/** Runs `fn`, which must throw TRANSACTION_TIMEOUT; returns how long it took. */
function timesOut(fn: () => unknown): number {
  const started = performance.now()
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ReplicaError, String(err))
    assert.equal(err.code, 'TRANSACTION_TIMEOUT')
    assert.match(err.message, /\[perf\] sql_tx_timeout \(0\.2 s\)/)
    return true
  })
  return performance.now() - started
}

describe('write transactions under [perf] sql_tx_timeout', () => {
  let r: Replica
  before(() => {
    r = open(DEADLINE_MS)
    r.transaction([{ sql: "INSERT INTO t VALUES (1, 'one')" }])
  })

  it('loads the extension', () => {
    assert.equal(r.deadlineEnabled, true, r.deadlineProblem ?? '')
    assert.equal(r.deadlineProblem, null)
  })

  it('interrupts a long SELECT, rolls back the writes before it and consumes no version', () => {
    const before = { rows: rows(r), head: r.headOf(r.actorId) }
    const ms = timesOut(() =>
      r.transaction([
        { sql: "INSERT INTO t VALUES (2, 'two')" },
        { sql: "UPDATE t SET v = 'changed' WHERE id = 1" },
        { sql: count(LONG_ROWS) },
      ]),
    )
    assert.ok(ms < DEADLINE_MS + MARGIN_MS, `interrupted after ${ms.toFixed(0)} ms`)
    assert.deepEqual({ rows: rows(r), head: r.headOf(r.actorId) }, before)
    assert.equal(r.db.inTransaction, false)
    assert.equal(r.changesFor(r.actorId, before.head + 1), null)
  })

  it('interrupts a long write (SQLite rolls it back itself) the same way', () => {
    const before = { rows: rows(r), head: r.headOf(r.actorId) }
    const sql = `INSERT INTO t (id, v) SELECT max(x), 'late' FROM (${count(LONG_ROWS).replace('count(*)', 'x')})`
    timesOut(() => r.transaction([{ sql }]))
    assert.deepEqual({ rows: rows(r), head: r.headOf(r.actorId) }, before)
  })

  it('works normally after a timeout: the next version is the next dense one', () => {
    const head = r.headOf(r.actorId)
    timesOut(() => r.transaction([{ sql: count(LONG_ROWS) }]))
    // The same (cached) statement again, then a write.
    timesOut(() => r.transaction([{ sql: count(LONG_ROWS) }]))
    const { version } = r.transaction([{ sql: "INSERT INTO t VALUES (3, 'three')" }])
    assert.equal(version, head + 1)
    assert.deepEqual(rows(r).at(-1), [3n, 'three'])
  })

  it('leaves a transaction under the deadline alone', () => {
    const { results, version } = r.transaction([
      { sql: "INSERT INTO t VALUES (4, 'four')" },
      { sql: count(10_000) },
    ])
    assert.equal(results.length, 2)
    assert.equal(version, r.headOf(r.actorId))
  })

  it('cannot be cleared or re-armed by SQL inside a transaction', () => {
    for (const sql of ['SELECT patina_deadline(0, 0)', 'SELECT patina_deadline(1, 100000)']) {
      assert.throws(
        () => r.transaction([{ sql }]),
        (err: unknown) => err instanceof Error && /reserved for the agent/.test(err.message),
      )
    }
    timesOut(() => r.transaction([{ sql: count(LONG_ROWS) }]))
  })
})

describe('a deadline ends with its transaction', () => {
  /** Rows the CTE counts per millisecond on this machine, measured without a deadline. */
  let rowsPerMs = 0
  before(() => {
    const probe = open(0)
    assert.equal(probe.deadlineEnabled, false, 'no txTimeoutMs: no deadline')
    const started = performance.now()
    probe.query(count(500_000))
    rowsPerMs = 500_000 / Math.max(1, performance.now() - started)
  })

  it('does not interrupt what runs on the connection after the transaction', () => {
    const r = open(DEADLINE_MS)
    r.transaction([{ sql: "INSERT INTO t VALUES (1, 'one')" }])
    // Right after it, a statement outside transaction() (merges and reads have no deadline)
    // runs across the time the transaction's deadline was set for, to its end: about 3
    // deadlines long. (A deadline passing while nothing runs interrupts nothing.)
    const n = Math.round(rowsPerMs * DEADLINE_MS * 3)
    const started = performance.now()
    assert.deepEqual(r.query(count(n)), [{ 'count(*)': BigInt(n) }])
    const took = performance.now() - started
    assert.ok(took > DEADLINE_MS, `calibration: the query took only ${took.toFixed(0)} ms`)
  })

  it('does not fire in the next transaction at the time of the previous one', async () => {
    const deadline = 1000
    const r = open(deadline)
    r.transaction([{ sql: "INSERT INTO t VALUES (1, 'one')" }]) // its deadline: t0 + 1000 ms
    await new Promise((resolve) => setTimeout(resolve, 400))
    // Runs ~700 ms from t0 + 400: past t0 + 1000, well before its own deadline at t0 + 1400.
    const started = performance.now()
    const { version } = r.transaction([
      { sql: count(Math.round(rowsPerMs * 700)) },
      { sql: "INSERT INTO t VALUES (2, 'two')" },
    ])
    const took = performance.now() - started
    assert.equal(version, 2)
    assert.ok(took > 600, `calibration: the transaction took only ${took.toFixed(0)} ms`)
  })
})

describe('StatementDeadline.load', () => {
  it('says why when the extension is missing', () => {
    const db = new Database(':memory:')
    try {
      const missing = StatementDeadline.load(db, join(dir, 'nothing.so'))
      assert.ok(typeof missing === 'string')
      assert.match(missing, /nothing\.so is not built/)
    } finally {
      db.close()
    }
  })
})
