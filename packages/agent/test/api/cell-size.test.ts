/**
 * Goal: a transaction that stores a value larger than `[perf] max_cell_bytes` is refused with
 * 413 CELL_TOO_LARGE naming the table and column, rolls back and consumes no version, whatever
 * made the value: a TEXT parameter, a BLOB parameter, or SQL (zeroblob, randomblob, replace(),
 * an UPDATE). A value of exactly the limit is stored; TEXT counts in UTF-8 bytes, not
 * characters. (Replication sends a cell whole in one stream frame; a larger cell could never
 * reach a peer.)
 *
 * Method: one in-process API (harness.ts) with max_cell_bytes = 1024, driven with inject();
 * every refusal is checked against `state()`, the snapshot of rows and bookkeeping.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'

import { openApi, postJson, state, tx, type ApiHarness } from './harness.ts'

const LIMIT = 1024

let h: ApiHarness
before(async () => {
  h = await openApi(`[perf]\nmax_cell_bytes = ${LIMIT}\n`)
})
after(async () => {
  await h.close()
})

async function refused(body: unknown, column: string, size: number): Promise<void> {
  const before = state(h)
  const res = await postJson(h, '/v1/transactions', body)
  assert.equal(res.statusCode, 413, res.body)
  const json = res.json<{ error: string; code: string }>()
  assert.equal(json.code, 'CELL_TOO_LARGE')
  assert.equal(
    json.error,
    `t.${column}: a value of ${size.toLocaleString('en-US')} bytes is over [perf] max_cell_bytes (1,024)`,
  )
  assert.deepEqual(state(h), before, 'a refused write changes nothing and consumes no version')
}

describe('api - cell size', () => {
  it('api - cell size: a TEXT, a BLOB and an SQL-built value over max_cell_bytes get 413 CELL_TOO_LARGE', async () => {
    await refused([['INSERT INTO t (id, v) VALUES (?, ?)', [1, 'a'.repeat(LIMIT + 1)]]], 'v', 1025)
    const blob = Array.from({ length: 2000 }, (_, i) => i % 256)
    await refused([['INSERT INTO t (id, b) VALUES (?, ?)', [2, blob]]], 'b', 2000)
    await refused(['INSERT INTO t (id, b) VALUES (3, zeroblob(10000000))'], 'b', 10_000_000)
    await refused(['INSERT INTO t (id, x) VALUES (4, randomblob(4096))'], 'x', 4096)
    await refused(
      ["INSERT INTO t (id, v) VALUES (5, replace(printf('%.1100c', '-'), '-', 'ab'))"],
      'v',
      2200,
    )
    // Earlier statements of the transaction roll back with it.
    await refused(
      [
        "INSERT INTO t (id, v) VALUES (6, 'fine')",
        'INSERT INTO t (id, x) VALUES (7, zeroblob(1025))',
      ],
      'x',
      1025,
    )
  })

  it('api - cell size: an UPDATE or an upsert that grows a cell over the limit is refused', async () => {
    await tx(h, [['INSERT INTO t (id, v, b) VALUES (?, ?, ?)', [20, 'small', [1, 2, 3]]]])
    await refused(["UPDATE t SET v = v || printf('%.1020c', 'x') WHERE id = 20"], 'v', 1025)
    await refused(['UPDATE t SET b = zeroblob(5000) WHERE id = 20'], 'b', 5000)
    await refused(
      [
        "INSERT INTO t (id, b) VALUES (20, x'00') ON CONFLICT (id) DO UPDATE SET b = zeroblob(1100)",
      ],
      'b',
      1100,
    )
    assert.deepEqual(h.replica.query('SELECT v, length(b) AS n FROM t WHERE id = 20'), [
      { v: 'small', n: 3n },
    ])
  })

  it('api - cell size: a value of exactly max_cell_bytes is stored, and a later smaller write wins', async () => {
    const headBefore = h.replica.headOf(h.replica.actorId)
    const ok = await tx(h, [
      ['INSERT INTO t (id, v) VALUES (?, ?)', [30, 'z'.repeat(LIMIT)]],
      'INSERT INTO t (id, b) VALUES (31, zeroblob(1024))',
      // Over the limit first, overwritten in the same transaction: what is stored counts.
      'INSERT INTO t (id, x) VALUES (32, zeroblob(2048))',
      "UPDATE t SET x = 'short' WHERE id = 32",
    ])
    assert.equal(ok.version, headBefore + 1)
    assert.deepEqual(
      h.replica.query(
        'SELECT id, length(CAST(v AS BLOB)) AS v, length(b) AS b, x FROM t WHERE id >= 30 ORDER BY id',
      ),
      [
        { id: 30n, v: 1024n, b: null, x: null },
        { id: 31n, v: null, b: 1024n, x: null },
        { id: 32n, v: null, b: null, x: 'short' },
      ],
    )
  })

  it('api - cell size: TEXT is counted in UTF-8 bytes, not characters', async () => {
    // 'é' is 2 bytes, '🦀' 4 (2 UTF-16 units): 513 × 2 = 1026 bytes in 513 characters.
    await refused([['INSERT INTO t (id, v) VALUES (?, ?)', [40, 'é'.repeat(513)]]], 'v', 1026)
    await refused([['INSERT INTO t (id, v) VALUES (?, ?)', [41, '🦀'.repeat(257)]]], 'v', 1028)
    await tx(h, [['INSERT INTO t (id, v) VALUES (?, ?)', [42, 'é'.repeat(512)]]])
    await tx(h, [['INSERT INTO t (id, v) VALUES (?, ?)', [43, '🦀'.repeat(256)]]])
  })
})
