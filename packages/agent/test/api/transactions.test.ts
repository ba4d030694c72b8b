/**
 * Goal: POST /v1/transactions accepts Corrosion's four statement forms and every kind of
 * parameter, answers with Corrosion's exact JSON shape, gives this agent's writes dense
 * versions (null when nothing changed), and is atomic: a failing statement rolls back the whole
 * request, consumes no version, and answers 400 with the error both at the top and in
 * `results`.
 *
 * Method: one in-process API (harness.ts) driven with inject(). Each test writes under its own
 * ids and checks the stored values with typeof() through replica.query() (typed: bigint for
 * INTEGER, number for REAL, Buffer for BLOB). Versions are checked relative to the head read
 * before the test, so tests do not depend on each other's writes.
 */
import { actorIdHex } from '../../src/runtime/actor-id.ts'
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'

import { openApi, postJson, postText, state, tx, type ApiHarness } from './harness.ts'

let h: ApiHarness
before(async () => {
  h = await openApi()
})
after(async () => {
  await h.close()
})

const head = (): number => h.replica.headOf(h.replica.actorId)

function row(id: number): Record<string, unknown> | undefined {
  return h.replica.query(
    'SELECT id, v, typeof(v) AS tv, r, typeof(r) AS tr, b, typeof(b) AS tb, x, typeof(x) AS tx ' +
      'FROM t WHERE id = ?',
    [BigInt(id)],
  )[0]
}

describe('api - transactions', () => {
  it('api - the four statement forms run in one transaction and answer in Corrosion shape', async () => {
    const start = head()
    const res = await postJson(h, '/v1/transactions', [
      "INSERT INTO t (id, v) VALUES (1, 'plain string')",
      ['INSERT INTO t (id, v) VALUES (?, ?)', [2, 'positional']],
      ['INSERT INTO t (id, v) VALUES (:id, :v)', { id: 3, v: 'named' }],
      { query: 'INSERT INTO t (id, v) VALUES (?, ?)', params: [4, 'object positional'] },
      {
        query: 'INSERT INTO t (id, v) VALUES (:id, :v)',
        named_params: { id: 5, v: 'object named' },
      },
      { query: "INSERT INTO t (id, v) VALUES (6, 'object, no params')" },
    ])
    assert.equal(res.statusCode, 200, res.body)
    assert.match(String(res.headers['content-type']), /^application\/json/)
    const body = res.json<Record<string, unknown>>()
    assert.deepEqual(Object.keys(body), ['results', 'time', 'version', 'actor_id'])
    assert.equal(body.version, start + 1)
    assert.equal(body.actor_id, actorIdHex(h.replica.actorId))
    assert.match(body.actor_id, /^[0-9a-f]{32}$/)
    assert.equal(typeof body.time, 'number')
    assert.ok((body.time as number) >= 0)
    const results = body.results as Record<string, unknown>[]
    assert.equal(results.length, 6)
    for (const r of results) {
      assert.deepEqual(Object.keys(r), ['rows_affected', 'time'])
      assert.equal(r.rows_affected, 1)
      assert.equal(typeof r.time, 'number')
      assert.ok((r.time as number) >= 0)
    }
    assert.deepEqual(h.replica.query('SELECT id, v FROM t WHERE id BETWEEN 1 AND 6 ORDER BY id'), [
      { id: 1n, v: 'plain string' },
      { id: 2n, v: 'positional' },
      { id: 3n, v: 'named' },
      { id: 4n, v: 'object positional' },
      { id: 5n, v: 'object named' },
      { id: 6n, v: 'object, no params' },
    ])
  })

  it('api - rows_affected counts each statement separately', async () => {
    await tx(h, [
      "INSERT INTO t (id, v) VALUES (10, 'a'), (11, 'a'), (12, 'a')",
      "INSERT INTO t (id, v) VALUES (13, 'b')",
    ])
    const body = await tx(h, [
      "UPDATE t SET v = 'c' WHERE id BETWEEN 10 AND 12",
      'DELETE FROM t WHERE id = 13',
      'SELECT * FROM t',
      'UPDATE t SET v = v WHERE id = -1',
    ])
    assert.deepEqual(
      body.results.map((r) => r.rows_affected),
      [3, 1, 0, 0],
    )
  })

  it('api - named parameters bind with or without their sigil', async () => {
    const cases: [string, Record<string, unknown>][] = [
      ['INSERT INTO t (id, v) VALUES (:id, :v)', { ':id': 20, ':v': 'colon key' }],
      ['INSERT INTO t (id, v) VALUES (@id, @v)', { '@id': 21, '@v': 'at key' }],
      ['INSERT INTO t (id, v) VALUES ($id, $v)', { $id: 22, $v: 'dollar key' }],
      ['INSERT INTO t (id, v) VALUES (:id, :v)', { id: 23, v: 'bare key, colon sql' }],
      ['INSERT INTO t (id, v) VALUES (@id, @v)', { id: 24, v: 'bare key, at sql' }],
      ['INSERT INTO t (id, v) VALUES ($id, $v)', { id: 25, v: 'bare key, dollar sql' }],
      ['INSERT INTO t (id, v) VALUES (:id, :v)', { ':id': 26, v: 'mixed keys' }],
    ]
    for (const [sql, params] of cases) {
      await tx(h, [[sql, params]])
      await tx(h, [{ query: sql.replace('INSERT', 'INSERT OR REPLACE'), named_params: params }])
    }
    assert.deepEqual(
      h.replica.query('SELECT id, v FROM t WHERE id BETWEEN 20 AND 29 ORDER BY id'),
      cases.map(([, p]) => ({
        id: BigInt(Object.entries(p).find(([k]) => k.endsWith('id'))?.[1] as number),
        v: Object.entries(p).find(([k]) => k.endsWith('v'))?.[1],
      })),
    )
  })

  it('api - parameter values keep their SQLite types', async () => {
    await tx(h, [
      ['INSERT INTO t (id, v, r, b, x) VALUES (?, ?, ?, ?, ?)', [30, 'text', 2.5, [0, 1, 255], 7]],
      ['INSERT INTO t (id, x) VALUES (?, ?)', [31, true]],
      ['INSERT INTO t (id, x) VALUES (?, ?)', [32, false]],
      ['INSERT INTO t (id, x) VALUES (?, ?)', [33, null]],
      ['INSERT INTO t (id, x) VALUES (?, ?)', [34, { a: 1, b: [1, 2], c: 'x' }]],
      ['INSERT INTO t (id, x) VALUES (?, ?)', [35, [1, 2, 300]]],
      ['INSERT INTO t (id, x) VALUES (?, ?)', [36, ['a', 'b']]],
      ['INSERT INTO t (id, b) VALUES (:id, :b)', { id: 37, b: [104, 105] }],
      ['INSERT INTO t (id, x) VALUES (?, ?)', [38, 1.5]],
    ])
    assert.deepEqual(row(30), {
      id: 30n,
      v: 'text',
      tv: 'text',
      r: 2.5,
      tr: 'real',
      b: Buffer.from([0, 1, 255]),
      tb: 'blob',
      x: 7n,
      tx: 'integer',
    })
    assert.deepEqual([row(31)?.x, row(31)?.tx], [1n, 'integer'])
    assert.deepEqual([row(32)?.x, row(32)?.tx], [0n, 'integer'])
    assert.deepEqual([row(33)?.x, row(33)?.tx], [null, 'null'])
    // A JSON object (or an array that is not bytes) is stored as its JSON text.
    assert.equal(row(34)?.tx, 'text')
    assert.deepEqual(JSON.parse(row(34)?.x as string), { a: 1, b: [1, 2], c: 'x' })
    assert.deepEqual([row(35)?.x, row(35)?.tx], ['[1,2,300]', 'text'])
    assert.deepEqual([row(36)?.x, row(36)?.tx], ['["a","b"]', 'text'])
    assert.deepEqual([row(37)?.b, row(37)?.tb], [Buffer.from('hi'), 'blob'])
    assert.deepEqual([row(38)?.x, row(38)?.tx], [1.5, 'real'])
  })

  it('api - a JSON object parameter keeps big integers exactly in its JSON text', async () => {
    await postText(
      h,
      '/v1/transactions',
      '[["INSERT INTO t (id, x) VALUES (39, ?)", [{"n": 9007199254740993, "f": 1.0}]]]',
    )
    const x = row(39)?.x
    assert.equal(typeof x, 'string')
    assert.match(x as string, /"n":9007199254740993\b/)
  })

  it('api - versions are consecutive, and null when nothing changed', async () => {
    const start = head()
    const versions: (number | null)[] = []
    versions.push((await tx(h, ["INSERT INTO t (id, v) VALUES (40, 'a')"])).version)
    versions.push((await tx(h, ["UPDATE t SET v = 'b' WHERE id = 40"])).version)
    versions.push((await tx(h, ["UPDATE t SET v = 'c' WHERE id = -1"])).version)
    versions.push((await tx(h, ['SELECT * FROM t'])).version)
    versions.push((await tx(h, ['DELETE FROM t WHERE id = -5'])).version)
    versions.push((await tx(h, ['DELETE FROM t WHERE id = 40'])).version)
    versions.push((await tx(h, [["INSERT INTO t (id, v) VALUES (?, 'd')", [40]]])).version)
    assert.deepEqual(versions, [start + 1, start + 2, null, null, null, start + 3, start + 4])
    assert.equal(head(), start + 4)
    const noop = await postJson(h, '/v1/transactions', ["UPDATE t SET v = 'c' WHERE id = -1"])
    assert.match(noop.body, /"version":null/)
  })

  it('api - a failing statement rolls back the transaction and consumes no version', async () => {
    const start = head()
    const before = state(h)
    const res = await postJson(h, '/v1/transactions', [
      "INSERT INTO t (id, v) VALUES (50, 'rolled back')",
      'INSERT INTO nope (id) VALUES (1)',
    ])
    assert.equal(res.statusCode, 400)
    assert.match(String(res.headers['content-type']), /^application\/json/)
    const body = res.json<Record<string, unknown>>()
    assert.deepEqual(Object.keys(body).sort(), ['code', 'error', 'results', 'version'])
    assert.equal(body.code, 'SQL_ERROR')
    assert.match(String(body.error), /no such table: nope/)
    assert.deepEqual(body.results, [{ error: body.error }])
    assert.equal(body.version, null)
    assert.deepEqual(state(h), before)
    assert.deepEqual(h.replica.query('SELECT * FROM t WHERE id = 50'), [])

    // A constraint failure in the middle of three statements.
    const dup = await postJson(h, '/v1/transactions', [
      "INSERT INTO t (id, v) VALUES (51, 'rolled back')",
      "INSERT INTO t (id, v) VALUES (51, 'duplicate')",
      "INSERT INTO t (id, v) VALUES (52, 'never run')",
    ])
    assert.equal(dup.statusCode, 400)
    const dupBody = dup.json<{
      error: string
      code: string
      results: { error: string }[]
      version: null
    }>()
    assert.match(dupBody.error, /UNIQUE constraint failed: t\.id/)
    assert.equal(dupBody.code, 'SQL_ERROR')
    assert.deepEqual(dupBody.results, [{ error: dupBody.error }])
    assert.equal(dupBody.version, null)
    assert.deepEqual(state(h), before)

    // The next successful transaction gets the very next version.
    const next = await tx(h, ["INSERT INTO t (id, v) VALUES (50, 'committed')"])
    assert.equal(next.version, start + 1)
    assert.deepEqual(h.replica.query('SELECT v FROM t WHERE id = 50'), [{ v: 'committed' }])
  })

  it('api - a failed transaction does not disturb later ones on the same statements', async () => {
    // The statement cache must not keep a half-run statement from a rolled-back transaction.
    const sql = 'INSERT INTO t (id, v) VALUES (?, ?)'
    const bad = await postJson(h, '/v1/transactions', [
      [sql, [60, 'first']],
      [sql, [60, 'duplicate']],
    ])
    assert.equal(bad.statusCode, 400)
    const good = await tx(h, [
      [sql, [60, 'first']],
      [sql, [61, 'second']],
    ])
    assert.deepEqual(
      good.results.map((r) => r.rows_affected),
      [1, 1],
    )
    assert.equal(h.replica.query('SELECT count(*) AS n FROM t WHERE id IN (60, 61)')[0]?.n, 2n)
  })

  it('api - a content type with a charset parameter is accepted', async () => {
    const res = await postText(h, '/v1/transactions', '["INSERT INTO t (id) VALUES (70)"]', {
      'content-type': 'application/json; charset=utf-8',
    })
    assert.equal(res.statusCode, 200, res.body)
  })
})
