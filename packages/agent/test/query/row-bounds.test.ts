/**
 * Goal: a row larger than `maxRowBytes` as JSON (`[api] max_row_bytes`) is refused in the reader
 * process, so it never crosses to the agent: the rows before it arrive, then the query fails
 * with ROW_TOO_LARGE naming the row, its size and the key; a row of exactly the limit passes.
 * The size is exact (the API's encoding, measured without encoding); batches are bounded in
 * bytes as well as rows; a reader left large after a query is replaced and the pool goes on.
 *
 * Method: a real database written by Replica and ReaderPools on it with a 64 KiB limit; the
 * rows are built by SQL (substr of hex(zeroblob(n)), zeroblob(n)) to sizes at and one byte over
 * the limit. Sizes are checked against Buffer.byteLength of @patina/protocol's encodeCells.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { encodeCells } from '@patina/protocol'
import { Replica } from '../../src/crdt/replica.ts'
import type { SqlValue } from '../../src/crdt/values.ts'
import { READER_BATCH_BYTES } from '../../src/query/reader-limits.ts'
import { QueryError, ReaderPool, type ReaderPoolOptions } from '../../src/query/reader-pool.ts'
import { rowBytesBound, rowJsonBytes, rowOverLimit } from '../../src/query/row-size.ts'

const LIMIT = 64 * 1024
const SEEDED = 300

const dir = mkdtempSync(join(tmpdir(), 'patina-row-bounds-'))
const path = join(dir, 'state.db')
const replica = Replica.open(path)
replica.applySchema([
  { path: 'schema.sql', sql: 'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT);' },
])
replica.transaction(
  Array.from({ length: SEEDED }, (_, i) => ({
    sql: 'INSERT INTO t (id, v) VALUES (?, ?)',
    params: [BigInt(i + 1), `v${i + 1}`],
  })),
)

const pools: ReaderPool[] = []

async function openPool(options: Omit<ReaderPoolOptions, 'path'> = {}): Promise<ReaderPool> {
  const pool = await ReaderPool.open({ path, processes: 1, maxRowBytes: LIMIT, ...options })
  pools.push(pool)
  return pool
}

after(async () => {
  for (const pool of pools) await pool.close()
  replica.close()
  rmSync(dir, { recursive: true, force: true })
})

const wireBytes = (row: readonly SqlValue[]): number => Buffer.byteLength(encodeCells(row))

/** A text whose row `[text]` is `bytes` bytes of JSON: the text, two quotes, two brackets. */
const textRowSql = (bytes: number): string => `substr(hex(zeroblob(${bytes})), 1, ${bytes - 4})`
/** A blob whose row `[[0,0,...]]` is `bytes` (odd) bytes: n zeros, n-1 commas, four brackets. */
const blobRowSql = (bytes: number): string => `zeroblob(${(bytes - 3) / 2})`

interface Outcome {
  readonly rows: (readonly SqlValue[])[]
  readonly batches: number
  readonly error: QueryError | null
}

async function run(pool: ReaderPool, sql: string): Promise<Outcome> {
  const rows: (readonly SqlValue[])[] = []
  let batches = 0
  try {
    for await (const e of pool.query(sql)) {
      if (e.kind === 'rows') {
        batches++
        rows.push(...e.rows)
      }
    }
  } catch (err) {
    assert.ok(err instanceof QueryError, String(err))
    return { rows, batches, error: err }
  }
  return { rows, batches, error: null }
}

describe('query - row bounds', () => {
  it('measures a row exactly as the API encodes it', () => {
    const rows: SqlValue[][] = [
      [],
      [null, 0n, -9223372036854775808n, 1.5, -0.0, 1e300, Number.NaN, 3],
      ['', 'plain', 'quote " and \\ backslash', 'tab\tnew\nline\r\b\f', '\u0000\u001f\u007f'],
      ['é', '€', '😀', 'a\ud800b', '\udc00', 'x\ud83d', '\ud83d\ude00\ud83d'],
      [new Uint8Array([]), new Uint8Array([0, 9, 10, 99, 100, 255]), new Uint8Array(1000)],
    ]
    // And random texts over the whole UTF-16 range (surrogates included).
    let seed = 7
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed
    }
    for (let i = 0; i < 50; i++) {
      const units = Array.from({ length: random() % 40 }, () =>
        random() % 4 === 0 ? random() % 0x80 : random() % 0x10000,
      )
      rows.push([String.fromCharCode(...units)])
    }
    for (const row of rows) {
      assert.equal(rowJsonBytes(row), wireBytes(row), JSON.stringify(encodeCells(row)))
      assert.ok(rowBytesBound(row) >= wireBytes(row), encodeCells(row))
    }
    assert.equal(rowOverLimit(['x'.repeat(10)], 14), null)
    assert.equal(rowOverLimit(['x'.repeat(11)], 14), 15)
  })

  it('refuses a row one byte over the limit after the rows before it; the IPC never carries it', async () => {
    const pool = await openPool()
    const sql =
      `SELECT v FROM (SELECT id, v FROM t UNION ALL SELECT ${SEEDED + 1}, ${textRowSql(LIMIT + 1)}` +
      ` UNION ALL SELECT ${SEEDED + 2}, 'after') ORDER BY id`
    const out = await run(pool, sql)
    assert.ok(out.error !== null, 'the query failed')
    assert.equal(out.error.code, 'ROW_TOO_LARGE')
    assert.equal(
      out.error.message,
      `row ${SEEDED + 1} of the result is 65,537 bytes as JSON, over [api] max_row_bytes (65,536)`,
    )
    assert.equal(out.rows.length, SEEDED, 'every row before the large one arrived')
    assert.deepEqual(out.rows.at(-1), [`v${SEEDED}`])
    assert.ok(
      out.rows.every((r) => wireBytes(r) <= LIMIT),
      'no row over the limit crossed from the reader',
    )
    assert.equal(pool.stats().rowsTooLarge, 1)
    // The reader goes on with the next query; with the default bound it was not replaced.
    assert.deepEqual((await run(pool, 'SELECT 42')).rows, [[42n]])
    assert.equal(pool.stats().recycled, 0)
  })

  it('passes a row of exactly the limit, text or blob; refuses a blob one byte over', async () => {
    const pool = await openPool()
    const text = await run(pool, `SELECT ${textRowSql(LIMIT)}`)
    assert.equal(text.error, null)
    assert.equal(wireBytes(text.rows[0] ?? []), LIMIT)

    const blobUnder = await run(pool, `SELECT ${blobRowSql(LIMIT - 1)}`)
    assert.equal(blobUnder.error, null)
    assert.equal(wireBytes(blobUnder.rows[0] ?? []), LIMIT - 1)

    const blobOver = await run(pool, `SELECT 1 UNION ALL SELECT ${blobRowSql(LIMIT + 1)}`)
    assert.equal(blobOver.error?.code, 'ROW_TOO_LARGE')
    assert.match(blobOver.error.message, /^row 2 of the result is 65,537 bytes as JSON/)
    assert.deepEqual(blobOver.rows, [[1n]])
  })

  it('cuts batches at about READER_BATCH_BYTES, not only at batchRows', async () => {
    const pool = await openPool({ batchRows: 256 })
    // 200 rows of 10 KB: 256 rows a batch would be 2.5 MB.
    const out = await run(
      pool,
      'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200) ' +
        'SELECT x, substr(hex(zeroblob(5000)), 1, 10000) FROM c',
    )
    assert.equal(out.error, null)
    assert.equal(out.rows.length, 200)
    const perBatch = Math.ceil(READER_BATCH_BYTES / 10_000) + 1
    assert.ok(out.batches >= Math.floor(200 / perBatch), `${out.batches} batches`)
  })

  it('replaces a reader that stays large after its query, and goes on answering', async () => {
    // Every reader is above 1 byte: each query ends with a fresh reader.
    const pool = await openPool({ recycleRssBytes: 1 })
    const first = pool.query('SELECT 1')
    // Queued behind the first: it waits for the fresh reader.
    assert.deepEqual((await run(pool, 'SELECT 2')).rows, [[2n]])
    const got: unknown[] = []
    for await (const e of first) if (e.kind === 'rows') got.push(e.rows)
    assert.deepEqual(got, [[[1n]]])
    const stats = pool.stats()
    assert.equal(stats.recycled, 2)
    assert.equal(stats.replaced, 2)
    assert.equal(stats.processes, 1)
  })
})
