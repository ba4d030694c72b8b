/**
 * Goal: a one-element array `["SQL"]` is a statement (the SQL without parameters) in every body
 * that takes statements (/v1/transactions, /v1/queries, /v1/subscriptions), while arrays that
 * are not `["SQL"]` or `["SQL", params]` (`[]`, `[1]`, three elements) are still refused with
 * 400 INVALID_BODY, changing nothing, with a message that lists the accepted forms.
 *
 * Method: toStatement() on its own for the parsed shapes; then one in-process API (harness.ts)
 * driven with inject() for transactions and queries, and a subscriptions harness on a loopback
 * port for /v1/subscriptions (its stream stays open, so it is read over a real socket).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { StatementShapeError, toStatement } from '../../src/api/statements.ts'
import { openStream, openSubsApi, write, type SubsHarness } from '../subs/harness.ts'
import { openApi, postJson, postText, queryText, state, type ApiHarness } from './harness.ts'

const FORMS = /"SQL", \["SQL"\], \["SQL", \[params\]\], \["SQL", \{named params\}\] or \{"query"/

let h: ApiHarness
before(async () => {
  h = await openApi()
})
after(async () => {
  await h.close()
})

const head = (): number => h.replica.headOf(h.replica.actorId)

describe('api - statement forms', () => {
  it('api - ["SQL"] parses as the SQL with no parameters, like "SQL"', () => {
    assert.deepEqual(toStatement(['SELECT 1'], 'statement 1'), { sql: 'SELECT 1' })
    assert.deepEqual(toStatement(['SELECT 1'], 'statement 1'), toStatement('SELECT 1', 'x'))
    assert.deepEqual(toStatement(['SELECT ?', [1n]], 'statement 1'), {
      sql: 'SELECT ?',
      params: [1n],
    })
  })

  it('api - other arrays are refused, naming the statement and listing the accepted forms', () => {
    const cases: [Parameters<typeof toStatement>[0], RegExp][] = [
      [
        [],
        /^statement 1: expected \["SQL"\] or \["SQL", params\], an array of 1 or 2 elements \(got 0\); /,
      ],
      [['SELECT ?', [1n], 2n], /^statement 1: .*1 or 2 elements \(got 3\); /],
      [[1n], /^statement 1: the SQL must be a string$/],
      [['  '], /^statement 1: the SQL is empty$/],
      [['SELECT 1', null], /^statement 1: params must be an array or an object; /],
    ]
    for (const [value, message] of cases) {
      assert.throws(
        () => toStatement(value, 'statement 1'),
        (err: unknown) =>
          err instanceof StatementShapeError &&
          err.code === 'INVALID_BODY' &&
          message.test(err.message),
        String(message),
      )
    }
    assert.throws(() => toStatement([], 'statement 1'), FORMS)
  })

  it('api - a transaction of [["INSERT ..."]] runs, alone and next to the other forms', async () => {
    const start = head()
    const res = await postJson(h, '/v1/transactions', [
      ["INSERT INTO t (id, v) VALUES (101, 'one')"],
    ])
    assert.equal(res.statusCode, 200, res.body)
    const body = res.json<{ results: { rows_affected: number }[]; version: number | null }>()
    assert.equal(body.version, start + 1)
    assert.deepEqual(
      body.results.map((r) => r.rows_affected),
      [1],
    )
    const mixed = await postJson(h, '/v1/transactions', [
      ["INSERT INTO t (id, v) VALUES (102, 'two')"],
      ['INSERT INTO t (id, v) VALUES (?, ?)', [103, 'three']],
      "UPDATE t SET v = 'uno' WHERE id = 101",
    ])
    assert.equal(mixed.statusCode, 200, mixed.body)
    assert.deepEqual(
      h.replica.query('SELECT id, v FROM t WHERE id BETWEEN 101 AND 103 ORDER BY id'),
      [
        { id: 101n, v: 'uno' },
        { id: 102n, v: 'two' },
        { id: 103n, v: 'three' },
      ],
    )
  })

  it('api - a query given as ["SQL"] answers as the same query given as "SQL"', async () => {
    await postJson(h, '/v1/transactions', ["INSERT INTO t (id, v) VALUES (201, 'q')"])
    const sql = 'SELECT id, v FROM t WHERE id = 201'
    const asArray = await queryText(h, [sql])
    const asString = await queryText(h, sql)
    const withoutTime = (text: string): string => text.replace(/"time":[0-9.e+-]+/, '"time":0')
    assert.equal(withoutTime(asArray), withoutTime(asString))
    assert.match(asArray, /^\{"columns":\["id","v"\]\}\n\{"row":\[1,\[201,"q"\]\]\}\n/)
  })

  it('api - [[]] and [[1]] are still refused with 400 INVALID_BODY, changing nothing', async () => {
    const cases: [string, string, RegExp][] = [
      [
        '/v1/transactions',
        '[[]]',
        /^statement 1: expected \["SQL"\] or \["SQL", params\], an array of 1 or 2 elements \(got 0\); /,
      ],
      ['/v1/transactions', '[[1]]', /^statement 1: the SQL must be a string$/],
      ['/v1/transactions', '[["SELECT 1", [], 2]]', /^statement 1: .*\(got 3\); /],
      ['/v1/queries', '[]', /^statement: expected \["SQL"\] or \["SQL", params\].*\(got 0\); /],
      ['/v1/queries', '[1]', /^statement: the SQL must be a string$/],
    ]
    for (const [url, payload, message] of cases) {
      const before = state(h)
      const res = await postText(h, url, payload)
      assert.equal(res.statusCode, 400, `${url} ${payload}: ${res.body}`)
      const body = res.json<{ error: string; code: string }>()
      assert.equal(body.code, 'INVALID_BODY', `${url} ${payload}`)
      assert.match(body.error, message, `${url} ${payload}`)
      assert.deepEqual(state(h), before, `${url} ${payload} changed nothing`)
    }
  })
})

describe('api - statement forms in subscriptions', () => {
  let s: SubsHarness
  before(async () => {
    s = await openSubsApi()
  })
  after(async () => {
    await s.close()
  })

  it('api - a subscription given as ["SQL"] streams its rows; [] is refused', async () => {
    write(s, "INSERT INTO t (id, v) VALUES (1, 'a')")
    const stream = await openStream(s.base, 'POST', '/v1/subscriptions', ['SELECT id, v FROM t'])
    try {
      assert.equal(stream.status, 200)
      assert.deepEqual(await stream.next(), { columns: ['id', 'v'] })
      assert.deepEqual(await stream.next(), { row: [1n, [1n, 'a']] })
    } finally {
      stream.close()
    }
    const refused = await openStream(s.base, 'POST', '/v1/subscriptions', [])
    assert.equal(refused.status, 400)
    const body = await refused.next()
    refused.close()
    assert.ok(typeof body === 'object' && body !== null && !Array.isArray(body))
    assert.equal(body.code, 'INVALID_BODY')
    const error = body.error
    assert.ok(typeof error === 'string', 'the refusal has an error message')
    assert.match(error, /1 or 2 elements \(got 0\)/)
  })
})
