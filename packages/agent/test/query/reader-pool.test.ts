/**
 * Goal: read queries run off the main thread (a multi-second query does not hold up a write),
 * stream their rows in batches with pull-based backpressure, keep every value's storage class,
 * refuse statements that write or touch Patina's internals, and never leave a reader stuck:
 * an early stop, an abort or a timeout frees (or kills and replaces) the reader, and the pool keeps
 * answering.
 *
 * Method: a real database written by Replica (the single writer, WAL mode) and a ReaderPool
 * on the same file, exercised through its public API only; the few internal figures the
 * assertions need (batches received, readers replaced) come from `stats()`.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, describe, it } from 'node:test'
import { READER_BATCHES_IN_FLIGHT_MAX } from '../../src/config/defaults.ts'
import { Replica } from '../../src/crdt/replica.ts'
import type { SqlValue } from '../../src/crdt/values.ts'
import {
  QueryError,
  ReaderPool,
  type QueryErrorCode,
  type QueryEvent,
  type QueryParams,
  type QueryStream,
  type ReaderPoolOptions,
} from '../../src/query/reader-pool.ts'

/** Rows 1..SEEDED: id, v = 'v<id>', r = id + 0.5, b = null. */
const SEEDED = 1000
/** About 2 s of SQLite work here (one step, no row until the end). */
const LONG_COUNT = 12_000_000n
const LONG_SQL = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${LONG_COUNT}) SELECT count(*) FROM c`
/** Runs far longer than any test: it only ends by cancellation. */
const ENDLESS_SQL =
  'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000000) SELECT count(*) FROM c'

const dir = mkdtempSync(join(tmpdir(), 'patina-reader-pool-'))
const path = join(dir, 'state.db')
const replica = Replica.open(path)
replica.applySchema([
  {
    path: 'schema.sql',
    sql: 'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT, r REAL, b BLOB);',
  },
])
replica.transaction(
  Array.from({ length: SEEDED }, (_, i) => ({
    sql: 'INSERT INTO t (id, v, r, b) VALUES (?, ?, ?, NULL)',
    params: [BigInt(i + 1), `v${i + 1}`, i + 1.5],
  })),
)

const pools: ReaderPool[] = []

async function openPool(options: Omit<ReaderPoolOptions, 'path'> = {}): Promise<ReaderPool> {
  const pool = await ReaderPool.open({ path, ...options })
  pools.push(pool)
  return pool
}

after(async () => {
  for (const pool of pools) await pool.close()
  replica.close()
  rmSync(dir, { recursive: true, force: true })
})

interface Result {
  readonly columns: readonly string[]
  readonly rows: (readonly SqlValue[])[]
  readonly batchSizes: number[]
  readonly kinds: QueryEvent['kind'][]
}

async function collect(stream: QueryStream): Promise<Result> {
  let columns: readonly string[] = []
  const rows: (readonly SqlValue[])[] = []
  const batchSizes: number[] = []
  const kinds: QueryEvent['kind'][] = []
  for await (const event of stream) {
    kinds.push(event.kind)
    if (event.kind === 'columns') columns = event.columns
    if (event.kind === 'rows') {
      rows.push(...event.rows)
      batchSizes.push(event.rows.length)
    }
  }
  return { columns, rows, batchSizes, kinds }
}

async function rows(pool: ReaderPool, sql: string, params?: QueryParams): Promise<SqlValue[][]> {
  return (await collect(pool.query(sql, params))).rows.map((r) => [...r])
}

function isQueryError(code: QueryErrorCode, message?: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof QueryError, `expected a QueryError, got ${String(err)}`)
    assert.equal(err.code, code, err.message)
    if (message !== undefined) assert.match(err.message, message)
    return true
  }
}

async function nextEvent(stream: QueryStream): Promise<QueryEvent> {
  const result = await stream.next()
  assert.ok(result.done !== true, 'expected an event, the stream ended')
  return result.value
}

function tableSnapshot(): unknown {
  return replica.query('SELECT * FROM t ORDER BY id')
}

describe('query - reader pool', () => {
  it('query - streams columns, then rows in batches, then end, with exact values', async () => {
    const big = 2n ** 53n + 1n
    const blob = new Uint8Array([0, 1, 127, 128, 255])
    replica.transaction([
      {
        sql: 'INSERT INTO t (id, v, r, b) VALUES (?, ?, ?, ?)',
        params: [big, 'text', 1.0, blob],
      },
      {
        sql: 'INSERT INTO t (id, v, r, b) VALUES (?, ?, ?, ?)',
        params: [2n ** 63n - 1n, null, -0.25, new Uint8Array(0)],
      },
      {
        sql: 'INSERT INTO t (id, v, r, b) VALUES (?, ?, ?, ?)',
        params: [-(2n ** 63n), '', 1e300, null],
      },
    ])
    const pool = await openPool({ batchRows: 2 })
    const result = await collect(
      pool.query('SELECT id, v, r, b FROM t WHERE id > ? OR id < 0 ORDER BY id', [BigInt(SEEDED)]),
    )
    assert.deepEqual(result.kinds, ['columns', 'rows', 'rows', 'end'])
    assert.deepEqual(result.columns, ['id', 'v', 'r', 'b'])
    assert.deepEqual(result.batchSizes, [2, 1])
    assert.deepEqual(result.rows, [
      [-(2n ** 63n), '', 1e300, null],
      [big, 'text', 1, blob],
      [2n ** 63n - 1n, null, -0.25, new Uint8Array(0)],
    ])
    const [, second] = result.rows
    assert.equal(typeof second?.[0], 'bigint', 'INTEGER arrives as bigint')
    assert.equal(typeof second?.[2], 'number', 'REAL 1.0 stays a number')
    assert.ok(second?.[3] instanceof Uint8Array, 'BLOB arrives as Uint8Array')

    // Parameters keep their classes too: a BLOB parameter, a named INTEGER beyond 2^53.
    assert.deepEqual(await rows(pool, 'SELECT id FROM t WHERE b = ?', [blob]), [[big]])
    assert.deepEqual(await rows(pool, 'SELECT v FROM t WHERE id = :id', { id: big }), [['text']])
    assert.deepEqual(await rows(pool, 'SELECT typeof(?), typeof(?)', [1.0, 1n]), [
      ['real', 'integer'],
    ])

    // Every seeded row arrives once, in order, in full batches.
    const all = await collect(
      pool.query('SELECT id FROM t WHERE id BETWEEN 1 AND ? ORDER BY id', [BigInt(SEEDED)]),
    )
    assert.deepEqual(
      all.rows.map((r) => r[0]),
      Array.from({ length: SEEDED }, (_, i) => BigInt(i + 1)),
    )
    assert.ok(all.batchSizes.every((n) => n === 2))
  })

  it('query - a multi-second query does not hold up a write on the main thread', async () => {
    const pool = await openPool()
    const order: string[] = []
    const stream = pool.query(LONG_SQL)
    assert.deepEqual(await nextEvent(stream), { kind: 'columns', columns: ['count(*)'] })
    // The reader is now inside the query. The write runs on the main thread's event loop, as
    // the agent's writes do: were the query on this thread, the timer could not fire before it.
    const write = new Promise<void>((resolve) => {
      setTimeout(() => {
        replica.transaction([
          { sql: "INSERT INTO t (id, v) VALUES (?, 'during the query')", params: [5001n] },
        ])
        order.push('write committed')
        resolve()
      }, 50)
    })
    let count: SqlValue | undefined
    const read = (async () => {
      for await (const event of stream) {
        if (event.kind === 'rows') count = event.rows[0]?.[0]
        if (event.kind === 'end') order.push('query ended')
      }
    })()
    await Promise.all([write, read])
    assert.deepEqual(order, ['write committed', 'query ended'])
    assert.equal(count, LONG_COUNT)
  })

  it('query - refuses writes and internal tables; reports SQL errors with SQLite message', async () => {
    const pool = await openPool({ processes: 1 })
    const before = tableSnapshot()
    const writes = [
      "INSERT INTO t (id, v) VALUES (7001, 'x')",
      "UPDATE t SET v = 'x' WHERE id = 1",
      'DELETE FROM t WHERE id = 2',
      "INSERT INTO t (id, v) VALUES (7002, 'x') RETURNING id",
    ]
    for (const sql of writes) {
      await assert.rejects(
        pool.query(sql).next(),
        isQueryError(
          'NOT_READ_ONLY',
          /^statement is not read-only: \/v1\/queries only reads; write with \/v1\/transactions$/,
        ),
        sql,
      )
    }
    assert.deepEqual(tableSnapshot(), before, 'the refused writes changed nothing')

    for (const sql of ['SELECT * FROM t__patina_clock', 'DELETE FROM "t__patina_clock"']) {
      await assert.rejects(
        pool.query(sql).next(),
        isQueryError('NOT_ALLOWED', /"t__patina_clock" is one of Patina's internal tables/),
        sql,
      )
    }
    await assert.rejects(
      pool.query('WITH x AS (SELECT head FROM __patina_heads) SELECT * FROM x').next(),
      isQueryError('NOT_ALLOWED', /internal tables/),
    )
    await assert.rejects(
      pool.query("ATTACH ':memory:' AS other").next(),
      isQueryError('NOT_ALLOWED', /ATTACH/),
    )
    await assert.rejects(
      pool.query('SELEC id FROM t').next(),
      isQueryError('SQL_ERROR', /^near "SELEC": syntax error$/),
    )
    await assert.rejects(
      pool.query('SELECT * FROM nope').next(),
      isQueryError('SQL_ERROR', /^no such table: nope$/),
    )
    await assert.rejects(
      pool.query('SELECT nope FROM t').next(),
      isQueryError('SQL_ERROR', /^no such column: nope$/),
    )
    await assert.rejects(
      pool.query('SELECT id FROM t WHERE id = ?').next(),
      isQueryError('SQL_ERROR', /parameter/),
    )

    // An error met while stepping through rows rejects a later next(), after the columns.
    const failing = pool.query(
      'SELECT CASE WHEN id < 3 THEN id ELSE abs(-9223372036854775807 - 1 + (id - id)) END FROM t WHERE id BETWEEN 1 AND 5 ORDER BY id',
    )
    assert.equal((await nextEvent(failing)).kind, 'columns')
    await assert.rejects(failing.next(), isQueryError('SQL_ERROR', /integer overflow/))
    assert.deepEqual(await failing.next(), { done: true, value: undefined })

    // The reader is free again.
    assert.deepEqual(await rows(pool, 'SELECT count(*) FROM t WHERE id BETWEEN 1 AND ?', [3n]), [
      [3n],
    ])
  })

  it('query - backpressure: a consumer that stops reading stops the reader', async () => {
    const pool = await openPool({ processes: 1, batchRows: 10 })
    const before = pool.stats().batches
    const stream = pool.query('SELECT id FROM t WHERE id BETWEEN 1 AND ? ORDER BY id', [
      BigInt(SEEDED),
    ])
    assert.equal((await nextEvent(stream)).kind, 'columns')
    const first = await nextEvent(stream)
    assert.ok(first.kind === 'rows')
    await sleep(300)
    // One batch taken: the reader may be READER_BATCHES_IN_FLIGHT_MAX batches ahead of it.
    assert.equal(pool.stats().batches - before, READER_BATCHES_IN_FLIGHT_MAX + 1)
    assert.equal(pool.stats().busy, 1, 'the query holds its reader while paused')

    const rest = await collect(stream)
    const ids = [...first.rows, ...rest.rows].map((r) => r[0])
    assert.deepEqual(
      ids,
      Array.from({ length: SEEDED }, (_, i) => BigInt(i + 1)),
    )
    assert.equal(pool.stats().batches - before, SEEDED / 10)
  })

  it('query - leaving a for-await loop early frees the reader', async () => {
    const pool = await openPool({ processes: 1, batchRows: 10 })
    for await (const event of pool.query('SELECT id FROM t ORDER BY id')) {
      if (event.kind === 'rows') break
    }
    // On a single thread, this query only runs once the first one is cancelled.
    assert.deepEqual(await rows(pool, 'SELECT count(*) FROM t WHERE id = 1'), [[1n]])
    assert.equal(pool.stats().busy, 0)

    const early = pool.query('SELECT id FROM t ORDER BY id')
    await early.next()
    assert.deepEqual(await early.return?.(), { done: true, value: undefined })
    assert.deepEqual(await early.next(), { done: true, value: undefined })
    assert.deepEqual(await rows(pool, 'SELECT 1'), [[1n]])
    assert.equal(pool.stats().replaced, 0, 'a paused query is cancelled without terminating')
  })

  it('query - a timeout kills the stuck reader and a fresh one takes its place', async () => {
    const pool = await openPool({ processes: 1, timeoutMs: 300 })
    const stream = pool.query(ENDLESS_SQL)
    assert.equal((await nextEvent(stream)).kind, 'columns')
    await assert.rejects(stream.next(), isQueryError('TIMEOUT'))
    assert.deepEqual(await stream.next(), { done: true, value: undefined })
    assert.deepEqual(await rows(pool, 'SELECT count(*) FROM t WHERE id BETWEEN 1 AND 10'), [[10n]])
    assert.equal(pool.stats().replaced, 1)
  })

  it('query - an AbortSignal cancels a query, stuck in SQLite or paused', async () => {
    const pool = await openPool({ processes: 1, batchRows: 10 })

    const stuck = new AbortController()
    const stream = pool.query(ENDLESS_SQL, undefined, stuck.signal)
    assert.equal((await nextEvent(stream)).kind, 'columns')
    setTimeout(() => {
      stuck.abort()
    }, 100)
    await assert.rejects(stream.next(), { name: 'AbortError' })
    assert.deepEqual(await rows(pool, 'SELECT 2'), [[2n]])
    assert.equal(pool.stats().replaced, 1, 'the stuck reader was replaced')

    const paused = new AbortController()
    const slow = pool.query('SELECT id FROM t ORDER BY id', [], paused.signal)
    assert.equal((await nextEvent(slow)).kind, 'columns')
    paused.abort(new Error('client went away'))
    await assert.rejects(slow.next(), /client went away/)
    assert.deepEqual(await rows(pool, 'SELECT 3'), [[3n]])
    assert.equal(pool.stats().replaced, 1, 'a paused query stops without terminating')

    const already = pool.query('SELECT 4', [], AbortSignal.abort())
    await assert.rejects(already.next(), { name: 'AbortError' })
    assert.equal(pool.stats().queued, 0)
  })

  it('query - more than maxConcurrent queries is OVERLOADED at once; close fails the rest', async () => {
    const pool = await ReaderPool.open({ path, processes: 1, maxConcurrent: 2 })
    try {
      const running = pool.query(ENDLESS_SQL)
      const queued = pool.query(ENDLESS_SQL)
      assert.throws(() => pool.query('SELECT 1'), isQueryError('OVERLOADED'))
      assert.equal((await nextEvent(running)).kind, 'columns')
      assert.deepEqual(pool.stats(), {
        processes: 1,
        busy: 1,
        queued: 1,
        replaced: 0,
        batches: 0,
        rowsTooLarge: 0,
        recycled: 0,
      })

      // A queued query that is dropped frees its place at once.
      await queued.return?.()
      assert.equal(pool.stats().queued, 0)
      const third = pool.query('SELECT 1')
      assert.throws(() => pool.query('SELECT 1'), isQueryError('OVERLOADED'))

      // Returns although `running` is inside an endless SQLite step: its reader is killed.
      await pool.close()
      await assert.rejects(running.next(), isQueryError('CLOSED'))
      await assert.rejects(third.next(), isQueryError('CLOSED'))
      assert.throws(() => pool.query('SELECT 1'), isQueryError('CLOSED'))
    } finally {
      await pool.close()
    }
  })

  it('query - readers see writes committed after the pool opened', async () => {
    const pool = await openPool({ processes: 1 })
    assert.deepEqual(await rows(pool, 'SELECT v FROM t WHERE id = 6001'), [])
    replica.transaction([{ sql: "INSERT INTO t (id, v) VALUES (6001, 'fresh')" }])
    assert.deepEqual(await rows(pool, 'SELECT v FROM t WHERE id = 6001'), [['fresh']])
    replica.transaction([{ sql: "UPDATE t SET v = 'fresher' WHERE id = 6001" }])
    assert.deepEqual(await rows(pool, 'SELECT v FROM t WHERE id = :id', { id: 6001n }), [
      ['fresher'],
    ])
  })
})
