/**
 * Goal: POST /v1/queries streams Corrosion's NDJSON (`columns`, one `row` per result row with
 * its 1-based position as rowid, then `eoq`), takes the same statement forms and parameters as
 * transactions, and refuses any statement that writes, changing nothing.
 *
 * Method: one in-process API (harness.ts) driven with inject(); rows are seeded through
 * /v1/transactions with ids that differ from their positions, so a rowid taken from SQLite
 * instead of the position shows. Answers are compared line by line as text, with the `time`
 * values of `eoq` checked for type only.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { ndjsonLines, openApi, postJson, queryText, state, tx, type ApiHarness } from './harness.ts'

let h: ApiHarness
before(async () => {
  h = await openApi()
  await tx(h, [
    "INSERT INTO t (id, v, b) VALUES (10, 'ten', x'0a'), (20, 'twenty', NULL), (30, 'thirty', x'1e00ff')",
  ])
})
after(async () => {
  await h.close()
})

/** Splits an answer into its lines and checks the last is `eoq` with a numeric time. */
function framed(text: string): string[] {
  const lines = ndjsonLines(text)
  const last = lines.pop() ?? ''
  assert.match(last, /^\{"eoq":\{"time":[0-9.e+-]+\}\}$/, last)
  const eoq = JSON.parse(last) as { eoq: { time: unknown } }
  assert.deepEqual(Object.keys(eoq.eoq), ['time'])
  assert.equal(typeof eoq.eoq.time, 'number')
  assert.ok((eoq.eoq.time as number) >= 0)
  return lines
}

describe('api - queries', () => {
  it('api - a query streams columns, rows with their 1-based position, then eoq', async () => {
    const res = await postJson(h, '/v1/queries', 'SELECT id, v, b FROM t ORDER BY id DESC')
    assert.equal(res.statusCode, 200, res.body)
    assert.match(String(res.headers['content-type']), /^application\/x-ndjson/)
    assert.deepEqual(framed(res.body), [
      '{"columns":["id","v","b"]}',
      '{"row":[1,[30,"thirty",[30,0,255]]]}',
      '{"row":[2,[20,"twenty",null]]}',
      '{"row":[3,[10,"ten",[10]]]}',
    ])
  })

  it('api - every statement form and parameter style works for queries', async () => {
    const want = ['{"columns":["v"]}', '{"row":[1,["twenty"]]}']
    const bodies: unknown[] = [
      'SELECT v FROM t WHERE id = 20',
      ['SELECT v FROM t WHERE id = ?', [20]],
      ['SELECT v FROM t WHERE id = :id', { id: 20 }],
      ['SELECT v FROM t WHERE id = @id', { '@id': 20 }],
      ['SELECT v FROM t WHERE id = $id', { $id: 20 }],
      ['SELECT v FROM t WHERE id = :id', { ':id': 20 }],
      { query: 'SELECT v FROM t WHERE id = ?', params: [20] },
      { query: 'SELECT v FROM t WHERE id = :id', named_params: { id: 20 } },
      { query: 'SELECT v FROM t WHERE id = 20' },
      ['SELECT v FROM t WHERE id = 20 AND ? IS NULL', [null]],
      ['SELECT v FROM t WHERE id = 20 AND ?', [true]],
    ]
    for (const body of bodies) {
      assert.deepEqual(framed(await queryText(h, body)), want, JSON.stringify(body))
    }
    assert.deepEqual(framed(await queryText(h, ['SELECT v FROM t WHERE b = ?', [[30, 0, 255]]])), [
      '{"columns":["v"]}',
      '{"row":[1,["thirty"]]}',
    ])
  })

  it('api - an empty result has columns and eoq only', async () => {
    assert.deepEqual(framed(await queryText(h, 'SELECT id, v AS value FROM t WHERE id < 0')), [
      '{"columns":["id","value"]}',
    ])
  })

  it('api - column names are as SQLite gives them', async () => {
    assert.deepEqual(
      framed(await queryText(h, 'SELECT count(*) AS n, 1 + 1, "v" FROM t')).slice(0, 1),
      ['{"columns":["n","1 + 1","v"]}'],
    )
  })

  it('api - rowids stay dense positions across many batches', async () => {
    const n = 1000
    const lines = framed(
      await queryText(h, [
        'WITH RECURSIVE c(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM c WHERE k < ?) SELECT k * 7 FROM c',
        [n],
      ]),
    )
    assert.equal(lines.shift(), '{"columns":["k * 7"]}')
    assert.equal(lines.length, n)
    lines.forEach((line, i) => {
      assert.equal(line, `{"row":[${i + 1},[${(i + 1) * 7}]]}`)
    })
  })

  it('api - a write statement is refused and changes nothing', async () => {
    const before = state(h)
    for (const sql of [
      "INSERT INTO t (id, v) VALUES (99, 'no')",
      "UPDATE t SET v = 'no'",
      'DELETE FROM t',
      "INSERT INTO t (id, v) VALUES (98, 'no') RETURNING id",
      "REPLACE INTO t (id, v) VALUES (10, 'no')",
    ]) {
      const res = await postJson(h, '/v1/queries', sql)
      assert.equal(res.statusCode, 400, `${sql}: ${res.body}`)
      assert.match(String(res.headers['content-type']), /^application\/json/)
      const body = res.json<Record<string, unknown>>()
      assert.equal(typeof body.error, 'string')
      assert.match(String(body.error), /not read-only/, sql)
    }
    assert.deepEqual(state(h), before)
  })

  it('api - a query can follow a refused one on the same reader', async () => {
    for (let i = 0; i < 6; i++) {
      const bad = await postJson(h, '/v1/queries', 'SELEC 1')
      assert.equal(bad.statusCode, 400)
      assert.match(bad.json<{ error: string }>().error, /syntax error/)
      assert.deepEqual(framed(await queryText(h, 'SELECT 1 AS one')), [
        '{"columns":["one"]}',
        '{"row":[1,[1]]}',
      ])
    }
  })

  it('api - a query sees the writes acknowledged before it', async () => {
    for (let i = 0; i < 5; i++) {
      await tx(h, [['INSERT INTO t (id, v) VALUES (?, ?)', [100 + i, `w${i}`]]])
      assert.deepEqual(framed(await queryText(h, 'SELECT count(*) FROM t WHERE id >= 100')), [
        '{"columns":["count(*)"]}',
        `{"row":[1,[${i + 1}]]}`,
      ])
    }
  })
})
