/**
 * Goal: every bad request gets the right 4xx status and a JSON body whose `error` names the
 * problem (never a bare "Bad Request"), a failed transaction also carries `results` and
 * `version: null`, and no bad request changes anything: not the rows, not the version head,
 * not Patina's bookkeeping, not the schema, not the writer connection's PRAGMAs.
 *
 * Method: a table of requests run one by one with inject() against an API holding a few rows
 * and two views over internal tables (created directly on the writer connection, as an
 * operator with the file could). Before and after each request `state()` (harness.ts) takes a
 * snapshot, and the two must be equal. Limits (body size, statement count) and the bearer
 * token need their own config, so they run in their own APIs with their own tables. After the
 * tables, a normal request must still work (a refused request leaves the API usable).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { isDeepStrictEqual } from 'node:util'
import type { HTTPMethods, InjectOptions } from 'fastify'
import { statusOf, type ErrorCode } from '@patina/protocol'
import { inject, openApi, state, tx, type ApiHarness } from './harness.ts'

interface Case {
  readonly name: string
  readonly method?: HTTPMethods
  readonly url: string
  /** The body as text; absent: no body. */
  readonly payload?: string
  /** Content type; absent: application/json (when there is a body); null: none. */
  readonly contentType?: string | null
  readonly headers?: Record<string, string>
  readonly status: number
  /** The body's `code` (@patina/protocol's table, whose status must be `status`). */
  readonly code: ErrorCode
  /** What the error message must say. */
  readonly error: RegExp
  /** A failed transaction: the body is `{error, results: [{error}], version: null}`. */
  readonly failedTx?: boolean
}

const TX = '/v1/transactions'
const QUERY = '/v1/queries'

/** A statement list for /v1/transactions, as JSON text. */
const txBody = (...statements: unknown[]): string => JSON.stringify(statements)

function txCase(
  name: string,
  sql: string,
  error: RegExp,
  params?: unknown[],
  code: ErrorCode = 'SQL_ERROR',
): Case {
  return {
    name: `transaction: ${name}`,
    url: TX,
    payload: txBody(params === undefined ? sql : [sql, params]),
    status: 400,
    code,
    error,
    failedTx: true,
  }
}

function queryCase(name: string, sql: string, error: RegExp, code: ErrorCode = 'SQL_ERROR'): Case {
  return {
    name: `query: ${name}`,
    url: QUERY,
    payload: JSON.stringify(sql),
    status: 400,
    code,
    error,
  }
}

/** A statement the guard refuses (internal tables, schema, PRAGMA, ATTACH, BEGIN...). */
const na = (c: Case): Case => ({ ...c, code: 'STATEMENT_NOT_ALLOWED' })

const INTERNAL = /internal table/

const CASES: Case[] = [
  // The body itself.
  {
    name: 'malformed JSON',
    url: TX,
    payload: '[["INSERT',
    status: 400,
    code: 'MALFORMED_JSON',
    error: /malformed JSON/,
  },
  {
    name: 'JSON with trailing junk',
    url: TX,
    payload: '["SELECT 1"] x',
    status: 400,
    code: 'MALFORMED_JSON',
    error: /JSON/,
  },
  {
    name: 'malformed JSON on queries',
    url: QUERY,
    payload: '{"query":',
    status: 400,
    code: 'MALFORMED_JSON',
    error: /JSON/,
  },
  {
    name: 'wrong content type',
    url: TX,
    payload: '["SELECT 1"]',
    contentType: 'text/plain',
    status: 415,
    code: 'UNSUPPORTED_CONTENT_TYPE',
    error: /content type "text\/plain".*application\/json/,
  },
  {
    name: 'form content type on queries',
    url: QUERY,
    payload: 'q=SELECT+1',
    contentType: 'application/x-www-form-urlencoded',
    status: 415,
    code: 'UNSUPPORTED_CONTENT_TYPE',
    error: /content type/,
  },
  {
    name: 'a body without a content type',
    url: TX,
    payload: '["SELECT 1"]',
    contentType: null,
    status: 415,
    code: 'UNSUPPORTED_CONTENT_TYPE',
    error: /content type/,
  },
  {
    name: 'missing body',
    url: TX,
    contentType: null,
    status: 400,
    code: 'INVALID_BODY',
    error: /body/,
    failedTx: true,
  },
  {
    name: 'empty JSON body',
    url: TX,
    payload: '',
    status: 400,
    code: 'MALFORMED_JSON',
    error: /empty|JSON/,
  },
  {
    name: 'missing body on queries',
    url: QUERY,
    contentType: null,
    status: 400,
    code: 'INVALID_BODY',
    error: /statement/,
  },
  {
    name: 'body is an object',
    url: TX,
    payload: '{"query": "SELECT 1"}',
    status: 400,
    code: 'INVALID_BODY',
    error: /array of statements/,
    failedTx: true,
  },
  {
    name: 'body is a string',
    url: TX,
    payload: '"SELECT 1"',
    status: 400,
    code: 'INVALID_BODY',
    error: /array of statements/,
    failedTx: true,
  },
  {
    name: 'empty statement list',
    url: TX,
    payload: '[]',
    status: 400,
    code: 'INVALID_BODY',
    error: /statement list is empty/,
    failedTx: true,
  },
  {
    name: 'JSON nested too deeply to parse',
    url: TX,
    payload: `[["SELECT ?", [${'['.repeat(100_000)}${']'.repeat(100_000)}]]]`,
    status: 400,
    code: 'MALFORMED_JSON',
    error: /JSON/,
  },
  // Statement shapes.
  {
    name: 'statement is a number',
    url: TX,
    payload: '[1]',
    status: 400,
    code: 'INVALID_BODY',
    error: /statement 1/,
    failedTx: true,
  },
  {
    name: 'statement is null',
    url: TX,
    payload: '[null]',
    status: 400,
    code: 'INVALID_BODY',
    error: /statement 1/,
    failedTx: true,
  },
  {
    name: 'array without SQL',
    url: TX,
    payload: '[[]]',
    status: 400,
    code: 'INVALID_BODY',
    error: /expected \["SQL"\] or \["SQL", params\], an array of 1 or 2 elements \(got 0\)/,
    failedTx: true,
  },
  {
    name: 'array with three elements',
    url: TX,
    payload: '[["SELECT ?", [1], 2]]',
    status: 400,
    code: 'INVALID_BODY',
    error: /2 elements/,
    failedTx: true,
  },
  {
    name: 'object with an unknown field',
    url: TX,
    payload: '[{"sql": "x"}]',
    status: 400,
    code: 'INVALID_BODY',
    error: /unknown field "sql"/,
    failedTx: true,
  },
  {
    name: 'object without query',
    url: TX,
    payload: '[{"params": []}]',
    status: 400,
    code: 'INVALID_BODY',
    error: /missing "query"/,
    failedTx: true,
  },
  {
    name: 'SQL is not a string',
    url: TX,
    payload: '[[1, []]]',
    status: 400,
    code: 'INVALID_BODY',
    error: /SQL must be a string/,
    failedTx: true,
  },
  {
    name: 'empty SQL',
    url: TX,
    payload: '["  "]',
    status: 400,
    code: 'INVALID_BODY',
    error: /SQL is empty/,
    failedTx: true,
  },
  {
    name: 'params are a number',
    url: TX,
    payload: '[["SELECT ?", 5]]',
    status: 400,
    code: 'INVALID_BODY',
    error: /params must be an array or an object/,
    failedTx: true,
  },
  {
    name: 'params and named_params both',
    url: TX,
    payload: '[{"query": "SELECT ?", "params": [1], "named_params": {"a": 1}}]',
    status: 400,
    code: 'INVALID_BODY',
    error: /not both/,
    failedTx: true,
  },
  {
    name: 'empty parameter name',
    url: TX,
    payload: '[["SELECT :a", {":": 1}]]',
    status: 400,
    code: 'INVALID_BODY',
    error: /empty parameter name/,
    failedTx: true,
  },
  {
    name: 'second statement malformed',
    url: TX,
    payload: '["INSERT INTO t (id) VALUES (500)", 7]',
    status: 400,
    code: 'INVALID_BODY',
    error: /statement 2/,
    failedTx: true,
  },
  {
    name: 'query body is an array of statements',
    url: QUERY,
    payload: '["SELECT 1", "SELECT 2"]',
    status: 400,
    code: 'INVALID_BODY',
    error: /statement/,
  },
  {
    name: 'query body is a number',
    url: QUERY,
    payload: '42',
    status: 400,
    code: 'INVALID_BODY',
    error: /statement/,
  },
  // SQL errors: SQLite's own message.
  txCase('syntax error', 'INSRT INTO t (id) VALUES (1)', /near "INSRT": syntax error/),
  txCase('unknown table', 'INSERT INTO nope (id) VALUES (1)', /no such table: nope/),
  txCase('unknown column', 'INSERT INTO t (id, nope) VALUES (1, 2)', /has no column named nope/),
  txCase('unknown column in UPDATE', 'UPDATE t SET nope = 1', /no such column: nope/),
  txCase('duplicate key', 'INSERT INTO t (id) VALUES (1)', /UNIQUE constraint failed: t\.id/),
  txCase('too few parameters', 'INSERT INTO t (id, v) VALUES (?, ?)', /parameter/i, [900]),
  txCase('too many parameters', 'INSERT INTO t (id) VALUES (?)', /parameter/i, [900, 901]),
  {
    name: 'transaction: integer beyond 64 bits',
    url: TX,
    // Written by hand: JSON.stringify cannot write an integer beyond 2^53 exactly.
    payload: '[["INSERT INTO t (id, x) VALUES (900, ?)", [9223372036854775808]]]',
    status: 400,
    code: 'SQL_ERROR',
    error: /too big|64-bit|range/i,
    failedTx: true,
  },
  txCase(
    'two statements in one string',
    'INSERT INTO t (id) VALUES (900); DELETE FROM t',
    /more than one statement/,
  ),
  txCase('a missing named parameter', 'INSERT INTO t (id, v) VALUES (:id, :v)', /parameter/i, []),
  queryCase('syntax error', 'SELEC 1', /near "SELEC": syntax error/),
  queryCase('unknown table', 'SELECT * FROM nope', /no such table: nope/),
  queryCase('unknown column', 'SELECT nope FROM t', /no such column: nope/),
  queryCase('two statements in one string', 'SELECT 1; DELETE FROM t', /more than one statement/),
  // Writes where only reads are allowed.
  queryCase('INSERT', "INSERT INTO t (id, v) VALUES (900, 'q')", /not read-only/, 'NOT_READ_ONLY'),
  queryCase('DELETE', 'DELETE FROM t', /not read-only/, 'NOT_READ_ONLY'),
  queryCase(
    'UPDATE with RETURNING',
    "UPDATE t SET v = 'q' RETURNING id",
    /not read-only/,
    'NOT_READ_ONLY',
  ),
  // Patina's internal tables, however they are named or reached.
  na(txCase('write a clock table, double quotes', 'DELETE FROM "t__patina_clock"', INTERNAL)),
  na(txCase('read a version index, brackets', 'SELECT * FROM [t__patina_vidx]', INTERNAL)),
  na(txCase('write heads, backticks', 'UPDATE `__patina_heads` SET head = 100', INTERNAL)),
  na(txCase('write sites, schema-qualified', 'DELETE FROM main.__patina_sites', INTERNAL)),
  na(txCase('other case', 'DELETE FROM T__PATINA_CLOCK', INTERNAL)),
  na(
    txCase(
      'a CTE over an internal table feeding a write',
      'WITH c AS (SELECT head FROM __patina_heads) UPDATE t SET v = (SELECT head FROM c)',
      INTERNAL,
    ),
  ),
  na(
    txCase(
      'a subquery over an internal table',
      'UPDATE t SET v = (SELECT count(*) FROM "t__patina_clock")',
      INTERNAL,
    ),
  ),
  na(
    txCase(
      'a view over an internal table',
      'INSERT INTO t (id, v) SELECT 900 + site, head FROM heads_view',
      INTERNAL,
    ),
  ),
  na(queryCase('read a clock table, double quotes', 'SELECT * FROM "t__patina_clock"', INTERNAL)),
  na(queryCase('read a version index, brackets', 'SELECT * FROM [t__patina_vidx]', INTERNAL)),
  na(queryCase('read heads, backticks', 'SELECT * FROM `__patina_heads`', INTERNAL)),
  na(
    queryCase(
      'a CTE over an internal table',
      'WITH c AS (SELECT * FROM __patina_sites) SELECT count(*) FROM c',
      INTERNAL,
    ),
  ),
  na(queryCase('a view over heads', 'SELECT * FROM heads_view', INTERNAL)),
  na(queryCase('a view over a clock table', 'SELECT count(*) FROM clock_view', INTERNAL)),
  na(
    queryCase(
      'a join with an internal table',
      'SELECT t.id FROM t JOIN __patina_tables ON 1',
      INTERNAL,
    ),
  ),
  // Connection state, schema, transaction control.
  na(txCase('ATTACH', "ATTACH DATABASE ':memory:' AS x", /ATTACH/)),
  na(queryCase('ATTACH', "ATTACH DATABASE ':memory:' AS x", /ATTACH/)),
  na(txCase('PRAGMA journal_mode=DELETE', 'PRAGMA journal_mode=DELETE', /PRAGMA/)),
  na(txCase('PRAGMA user_version=5', 'PRAGMA user_version=5', /PRAGMA|schema/)),
  na(queryCase('PRAGMA journal_mode=DELETE', 'PRAGMA journal_mode=DELETE', /PRAGMA|read-only/)),
  na(queryCase('PRAGMA user_version=5', 'PRAGMA user_version=5', /PRAGMA|read-only|schema/)),
  na(txCase('PRAGMA after a comment', '/* c */ PRAGMA recursive_triggers = ON', /PRAGMA/)),
  na(txCase('PRAGMA after a line comment', '-- c\nPRAGMA wal_autocheckpoint = 0', /PRAGMA/)),
  na(txCase('PRAGMA with a quoted name', "PRAGMA 'busy_timeout' = 1", /PRAGMA/)),
  na(txCase('PRAGMA with a bracketed name', 'PRAGMA [cache_size] = 10', /PRAGMA/)),
  na(txCase('PRAGMA call form', 'PRAGMA user_version(9)', /PRAGMA/)),
  na(queryCase('PRAGMA after a comment', '/* c */ PRAGMA cache_size = 1', /PRAGMA/)),
  na(queryCase('PRAGMA with a quoted name', "PRAGMA 'busy_timeout' = 1", /PRAGMA/)),
  na(txCase('BEGIN', 'BEGIN', /transaction control/)),
  na(txCase('COMMIT', 'COMMIT', /transaction control|no transaction/)),
  na(txCase('SAVEPOINT', 'SAVEPOINT s', /transaction control/)),
  na(txCase('CREATE TABLE', 'CREATE TABLE u (a)', /schema/)),
  na(txCase('DROP TABLE', 'DROP TABLE t', /schema/)),
  na(txCase('ALTER TABLE', 'ALTER TABLE t ADD COLUMN w TEXT', /schema/)),
  na(txCase('CREATE INDEX', 'CREATE INDEX t_v ON t (v)', /schema/)),
  na(txCase('VACUUM', 'VACUUM', /schema|VACUUM/)),
  // Table stats.
  {
    name: 'table_stats: tables not a list',
    url: '/v1/table_stats',
    payload: '{"tables": "t"}',
    status: 400,
    code: 'INVALID_BODY',
    error: /tables/,
  },
  // Routes and methods.
  {
    name: 'unknown route',
    method: 'GET',
    url: '/v1/nope',
    status: 404,
    code: 'ROUTE_NOT_FOUND',
    error: /no such route: GET \/v1\/nope/,
  },
  {
    name: 'unknown version',
    url: '/v2/transactions',
    payload: '["SELECT 1"]',
    status: 404,
    code: 'ROUTE_NOT_FOUND',
    error: /no such route/,
  },
  {
    name: 'root',
    method: 'GET',
    url: '/',
    status: 404,
    code: 'ROUTE_NOT_FOUND',
    error: /no such route/,
  },
]

const WRONG_METHOD: [HTTPMethods, string, string][] = [
  ['GET', TX, 'POST'],
  ['PUT', TX, 'POST'],
  ['GET', QUERY, 'POST'],
  ['DELETE', QUERY, 'POST'],
  ['POST', '/v1/health', 'GET'],
  ['GET', '/v1/table_stats', 'POST'],
  ['POST', '/metrics', 'GET'],
]

async function send(
  h: ApiHarness,
  c: Pick<Case, 'method' | 'url' | 'payload' | 'contentType' | 'headers'>,
) {
  const headers: Record<string, string> = { ...c.headers }
  if (c.contentType !== null && (c.payload !== undefined || c.contentType !== undefined)) {
    headers['content-type'] = c.contentType ?? 'application/json'
  }
  const options: InjectOptions = { method: c.method ?? 'POST', url: c.url, headers }
  if (c.payload !== undefined) options.payload = c.payload
  return inject(h, options)
}

/** The checks every bad request gets. Returns the parsed body. */
async function expectRefused(h: ApiHarness, c: Case): Promise<Record<string, unknown>> {
  const stateBefore = state(h)
  const res = await send(h, c)
  const stateAfter = state(h)
  const changed = isDeepStrictEqual(stateAfter, stateBefore)
    ? ''
    : ' (and the request changed state)'
  const where = `${c.name}: ${res.statusCode} ${res.body}${changed}`
  assert.equal(res.statusCode, c.status, where)
  assert.match(String(res.headers['content-type']), /^application\/json/, where)
  const body = JSON.parse(res.body) as Record<string, unknown>
  assert.equal(typeof body.error, 'string', where)
  const error = body.error as string
  assert.doesNotMatch(
    error,
    /^(Bad Request|Not Found|Internal Server Error|Unsupported Media Type)$/,
  )
  assert.match(error, c.error, where)
  assert.equal(body.code, c.code, where)
  assert.equal(statusOf(c.code), c.status, where)
  if (c.failedTx === true) {
    assert.deepEqual(Object.keys(body).sort(), ['code', 'error', 'results', 'version'], where)
    assert.deepEqual(body.results, [{ error }], where)
    assert.equal(body.version, null, where)
  }
  assert.deepEqual(stateAfter, stateBefore, `${c.name}: the request changed state`)
  return body
}

describe('api - bad input', () => {
  let h: ApiHarness
  before(async () => {
    h = await openApi()
    await tx(h, ["INSERT INTO t (id, v, b) VALUES (1, 'one', x'01'), (2, 'two', NULL)"])
    h.replica.db.exec('CREATE VIEW heads_view AS SELECT site, head FROM __patina_heads')
    h.replica.db.exec('CREATE VIEW clock_view AS SELECT * FROM "t__patina_clock"')
  })
  after(async () => {
    await h.close()
  })

  for (const c of CASES) {
    it(`api - bad input refused: ${c.name}`, async () => {
      await expectRefused(h, c)
    })
  }

  for (const [method, url, allowed] of WRONG_METHOD) {
    it(`api - bad input refused: ${method} ${url} is 405 with Allow`, async () => {
      const before = state(h)
      const res = await inject(h, { method, url })
      assert.equal(res.statusCode, 405, res.body)
      assert.equal(res.headers.allow, allowed)
      assert.match(String(res.headers['content-type']), /^application\/json/)
      const body = res.json<{ error: unknown }>()
      assert.equal(typeof body.error, 'string')
      assert.match(String(body.error), new RegExp(`${method} not allowed.*${allowed}`))
      assert.deepEqual(state(h), before)
    })
  }

  it('api - bad input leaves the API working', async () => {
    const head = h.replica.headOf(h.replica.actorId)
    const body = await tx(h, ["INSERT INTO t (id, v) VALUES (3, 'three')"])
    assert.equal(body.version, head + 1)
    const res = await inject(h, {
      method: 'POST',
      url: QUERY,
      headers: { 'content-type': 'application/json' },
      payload: '"SELECT count(*) FROM t"',
    })
    assert.equal(res.statusCode, 200)
    assert.match(res.body, /\{"row":\[1,\[3\]\]\}/)
  })
})

describe('api - bad input against limits', () => {
  let h: ApiHarness
  before(async () => {
    h = await openApi('[api]\nmax_body_bytes = 1024\nmax_statements = 2')
  })
  after(async () => {
    await h.close()
  })

  const big = (bytes: number): string => {
    const filler = 'a'.repeat(bytes)
    return JSON.stringify([['INSERT INTO t (id, v) VALUES (1, ?)', [filler]]])
  }

  it('api - bad input refused: a body over max_body_bytes is 413', async () => {
    const body = await expectRefused(h, {
      name: 'body over the limit',
      url: TX,
      payload: big(2000),
      status: 413,
      code: 'BODY_TOO_LARGE',
      error: /too large.*1024.*max_body_bytes/,
    })
    assert.ok(typeof body.error === 'string')
    await expectRefused(h, {
      name: 'query over the limit',
      url: QUERY,
      payload: JSON.stringify(`SELECT '${'b'.repeat(2000)}'`),
      status: 413,
      code: 'BODY_TOO_LARGE',
      error: /too large/,
    })
  })

  it('api - bad input refused: more statements than max_statements', async () => {
    await expectRefused(h, {
      name: 'three statements',
      url: TX,
      payload: txBody('SELECT 1', 'SELECT 2', 'SELECT 3'),
      status: 400,
      code: 'TOO_MANY_STATEMENTS',
      error: /too many statements: 3.*2.*max_statements/,
      failedTx: true,
    })
  })

  it('api - requests within the limits pass', async () => {
    const payload = big(900)
    assert.ok(Buffer.byteLength(payload) <= 1024)
    const res = await inject(h, {
      method: 'POST',
      url: TX,
      headers: { 'content-type': 'application/json' },
      payload,
    })
    assert.equal(res.statusCode, 200, res.body)
    const two = await tx(h, ['SELECT 1', "UPDATE t SET v = 'x' WHERE id = 1"])
    assert.equal(two.results.length, 2)
  })
})

describe('api - bearer token', () => {
  const TOKEN = 's3cret-token'
  let h: ApiHarness
  before(async () => {
    h = await openApi(`[api.authz]\nbearer-token = "${TOKEN}"`)
  })
  after(async () => {
    await h.close()
  })

  const WRONG: [string, Record<string, string>][] = [
    ['no Authorization header', {}],
    ['a wrong token', { authorization: 'Bearer wrong-token' }],
    ['a prefix of the token', { authorization: 'Bearer s3cret' }],
    ['the token with more after it', { authorization: `Bearer ${TOKEN}x` }],
    ['the token without the scheme', { authorization: TOKEN }],
    ['Basic auth', { authorization: `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}` }],
  ]
  const REQUESTS: Omit<Case, 'name' | 'status' | 'code' | 'error'>[] = [
    { url: TX, payload: txBody("INSERT INTO t (id, v) VALUES (1, 'x')") },
    { url: QUERY, payload: '"SELECT 1"' },
    { url: '/v1/table_stats', payload: '{"tables": ["t"]}' },
    { method: 'GET', url: '/v1/health' },
  ]

  for (const [what, headers] of WRONG) {
    it(`api - bad input refused: ${what} is 401`, async () => {
      for (const r of REQUESTS) {
        await expectRefused(h, {
          ...r,
          name: `${r.method ?? 'POST'} ${r.url} with ${what}`,
          headers,
          status: 401,
          code: 'UNAUTHORIZED',
          error: /bearer token/,
        })
      }
    })
  }

  it('api - the right bearer token works', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` }
    for (const r of REQUESTS) {
      const res = await send(h, { ...r, headers: auth })
      assert.equal(res.statusCode, 200, `${r.url}: ${res.body}`)
    }
    assert.deepEqual(h.replica.query('SELECT id, v FROM t'), [{ id: 1n, v: 'x' }])
  })

  it('api - a 401 says which scheme it wants', async () => {
    const res = await inject(h, { method: 'GET', url: '/v1/health' })
    assert.equal(res.statusCode, 401)
    assert.equal(res.headers['www-authenticate'], 'Bearer')
  })
})
