/**
 * Goal: every family of API errors carries its stable `code` next to `error`, with the status
 * @patina/protocol's table gives it (Retry-After on OVERLOADED and AGENT_CLOSING), before a
 * stream starts and inside one; user strings are never taken for the JSON writer's numbers
 * (`table_stats` with a table named "__bigint__7" used to answer `invalid_tables: [7]`); engine
 * errors of a class the mapping knows but with a code it does not (a new capture error) are
 * 400s.
 *
 * Method: the real API through inject() (harness.ts), with the real reader pool where a real
 * condition can be made (a query timeout), and a QueryRunner that fails on demand where it
 * cannot (an I/O error, an overloaded pool, a failure after the first rows); subscription
 * routes on a loopback port (../subs/harness.ts), including the error event a stream ends with
 * when the agent closes.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import { ERROR_CODES, statusOf, type ErrorCode } from '@patina/protocol'
import { pino } from 'pino'
import { codeOf } from '../../src/api/errors.ts'
import { buildApi, type QueryEvent, type QueryRunner } from '../../src/api/server.ts'
import { ReplicaError, type ReplicaErrorCode } from '../../src/crdt/errors.ts'
import { createAgentMetrics } from '../../src/metrics/agent-metrics.ts'
import { QueryError, ReaderPool } from '../../src/query/reader-pool.ts'
import { isObj, openStream, openSubsApi, readUntil, StreamState } from '../subs/harness.ts'
import { inject, openApi, postJson, postText, type ApiHarness } from './harness.ts'

function expectCode(
  res: { statusCode: number; body: string; headers: Record<string, unknown> },
  code: ErrorCode,
): Record<string, unknown> {
  const where = `${res.statusCode} ${res.body}`
  assert.equal(res.statusCode, statusOf(code), where)
  const body = JSON.parse(res.body) as Record<string, unknown>
  assert.equal(body.code, code, where)
  assert.equal(typeof body.error, 'string', where)
  const retry = code === 'OVERLOADED' || code === 'AGENT_CLOSING'
  assert.equal(res.headers['retry-after'], retry ? '1' : undefined, where)
  return body
}

const LONG_QUERY =
  'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) ' +
  'SELECT count(*) FROM c'

describe('api - error codes', () => {
  let h: ApiHarness
  before(async () => {
    h = await openApi()
  })
  after(async () => {
    await h.close()
  })

  it('api - table_stats keeps a table named like the old bigint marker as it is', async () => {
    const res = await postText(
      h,
      '/v1/table_stats',
      '{"tables":["__bigint__7","t","\\"__bigint__8\\""]}',
    )
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(
      res.body,
      '{"total_row_count":0,"invalid_tables":["__bigint__7","\\"__bigint__8\\""]}',
    )
  })

  it('api - routing, methods and parameters have their codes', async () => {
    expectCode(await inject(h, { method: 'GET', url: '/v1/nope' }), 'ROUTE_NOT_FOUND')
    const wrong = await inject(h, { method: 'GET', url: '/v1/transactions' })
    expectCode(wrong, 'METHOD_NOT_ALLOWED')
    assert.equal(wrong.headers.allow, 'POST')
    expectCode(await inject(h, { method: 'GET', url: '/v1/health?gaps=-1' }), 'INVALID_PARAMETER')
    expectCode(await postJson(h, '/v1/table_stats', { tables: 't' }), 'INVALID_BODY')
  })

  it("api - a failed transaction has Corrosion's shape plus the code of its cause", async () => {
    const body = expectCode(
      await postJson(h, '/v1/transactions', ['INSERT INTO nope (id) VALUES (1)']),
      'SQL_ERROR',
    )
    assert.deepEqual(body.results, [{ error: body.error }])
    assert.equal(body.version, null)
    expectCode(
      await postJson(h, '/v1/transactions', ['DELETE FROM __patina_heads']),
      'STATEMENT_NOT_ALLOWED',
    )
    expectCode(await postJson(h, '/v1/transactions', ['SELECT 1', 2]), 'INVALID_BODY')
  })

  it('api - a query that is not read-only, or ran too long, has its code', async () => {
    expectCode(await postJson(h, '/v1/queries', 'DELETE FROM t'), 'NOT_READ_ONLY')
    const readers = await ReaderPool.open({ path: h.file, processes: 1, timeoutMs: 50 })
    const app = buildApi({
      replica: h.replica,
      readers,
      config: h.config,
      metrics: createAgentMetrics(),
      logger: pino({ level: 'silent' }),
    })
    try {
      // The columns go out at once: the timeout ends the stream with an error line.
      const res = await app.inject({
        method: 'POST',
        url: '/v1/queries',
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify(LONG_QUERY),
      })
      assert.equal(res.statusCode, 200)
      const last = JSON.parse(res.body.trimEnd().split('\n').at(-1) ?? '') as Record<
        string,
        unknown
      >
      assert.equal(last.code, 'QUERY_TIMEOUT', res.body)
      assert.match(String(last.error), /longer than 50 ms/)
    } finally {
      await app.close()
      await readers.close()
    }
  })

  /** An API whose reader pool fails as `fail` says, after `columns` when `afterColumns`. */
  async function failingApi(error: Error, afterColumns: boolean) {
    const readers: QueryRunner = {
      query() {
        async function* events(): AsyncGenerator<QueryEvent> {
          if (afterColumns) yield { kind: 'columns', columns: ['x'] }
          await Promise.resolve()
          throw error
        }
        return events()
      },
    }
    const app = buildApi({
      replica: h.replica,
      readers,
      config: h.config,
      metrics: createAgentMetrics(),
      logger: pino({ level: 'silent' }),
    })
    await app.ready()
    return app
  }

  it("api - the reader pool's refusals and the agent's own faults have their codes", async () => {
    const cases: [Error, ErrorCode][] = [
      [new QueryError('OVERLOADED', 'too many queries'), 'OVERLOADED'],
      [new QueryError('CLOSED', 'the reader pool is closed'), 'AGENT_CLOSING'],
      [
        new QueryError('SQL_ERROR', 'disk I/O error', { sqliteCode: 'SQLITE_IOERR_READ' }),
        'AGENT_ERROR',
      ],
      [new QueryError('NOT_ALLOWED', 'internal table'), 'STATEMENT_NOT_ALLOWED'],
    ]
    for (const [error, code] of cases) {
      const app = await failingApi(error, false)
      try {
        const res = await app.inject({
          method: 'POST',
          url: '/v1/queries',
          headers: { 'content-type': 'application/json' },
          payload: '"SELECT 1"',
        })
        expectCode(res, code)
        assert.equal((JSON.parse(res.body) as { error: unknown }).error, error.message)
      } finally {
        await app.close()
      }
    }
  })

  it('api - a query that fails after its first event ends with a coded error line', async () => {
    const app = await failingApi(new QueryError('TIMEOUT', 'query took longer than 5 ms'), true)
    try {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/queries',
        headers: { 'content-type': 'application/json' },
        payload: '"SELECT 1"',
      })
      assert.equal(res.statusCode, 200)
      assert.equal(
        res.body,
        '{"columns":["x"]}\n{"error":"query took longer than 5 ms","code":"QUERY_TIMEOUT"}\n',
      )
    } finally {
      await app.close()
    }
  })

  it('api - engine errors map by class and code, unknown codes of a known class to 400', () => {
    const replica = (code: string): ReplicaError =>
      new ReplicaError(code as ReplicaErrorCode, 'refused')
    assert.equal(codeOf(replica('STATEMENT_NOT_ALLOWED')), 'STATEMENT_NOT_ALLOWED')
    assert.equal(codeOf(replica('WRITE_OUTSIDE_PATINA')), 'STATEMENT_NOT_ALLOWED')
    assert.equal(codeOf(replica('INVALID_TEXT')), 'INVALID_TEXT')
    assert.equal(codeOf(replica('INVALID_UTF8')), 'INVALID_TEXT')
    assert.equal(codeOf(replica('SOMETHING_NEW')), 'SQL_ERROR')
    assert.equal(statusOf(codeOf(replica('SOMETHING_NEW'))), 400)
    assert.equal(ERROR_CODES.INVALID_TEXT.status, 400)
    // A plain error is the agent's fault unless the caller says only user input can raise it.
    assert.equal(codeOf(new TypeError('x')), 'AGENT_ERROR')
    assert.equal(codeOf(new RangeError('too big'), 'SQL_ERROR'), 'SQL_ERROR')
    // A full disk has a code of its own (507): the operator's to fix, and reads still work.
    assert.equal(codeOf(Object.assign(new Error('full'), { code: 'SQLITE_FULL' })), 'STORAGE_FULL')
    assert.equal(statusOf('STORAGE_FULL'), 507)
    assert.equal(codeOf(Object.assign(new Error('io'), { code: 'SQLITE_IOERR' })), 'AGENT_ERROR')
  })
})

describe('api - error codes of subscriptions and update streams', () => {
  it('api - refusals before a stream and the error event a closing agent ends it with', async () => {
    const s = await openSubsApi()
    try {
      const cases: ['GET' | 'POST', string, unknown, ErrorCode][] = [
        ['POST', '/v1/subscriptions', 'SELECT random() FROM t', 'SUBSCRIPTION_REFUSED'],
        ['POST', '/v1/subscriptions', 'SELECT * FROM nope', 'SQL_ERROR'],
        ['POST', '/v1/subscriptions', 42, 'INVALID_BODY'],
        ['POST', '/v1/subscriptions?from=abc', 'SELECT id FROM t', 'INVALID_PARAMETER'],
        ['POST', '/v1/subscriptions?from=3', 'SELECT v FROM t WHERE id = 77', 'RESUME_GONE'],
        ['GET', '/v1/subscriptions/nope', undefined, 'SUBSCRIPTION_NOT_FOUND'],
        ['POST', '/v1/updates/nope', undefined, 'TABLE_NOT_FOUND'],
      ]
      for (const [method, path, body, code] of cases) {
        const res = await fetch(`${s.base}${path}`, {
          method,
          ...(body === undefined
            ? {}
            : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
        })
        expectCode(
          {
            statusCode: res.status,
            body: await res.text(),
            headers: Object.fromEntries(res.headers),
          },
          code,
        )
      }
      const stream = await openStream(s.base, 'POST', '/v1/subscriptions', 'SELECT id FROM t')
      await readUntil(stream, new StreamState(), 0, 15_000)
      const closed = s.app.close()
      const events = await stream.rest(15_000)
      await closed
      const last = events.at(-1) ?? null
      assert.ok(isObj(last), stream.raw.join('\n'))
      assert.equal(last.code, 'AGENT_CLOSING')
      assert.equal(last.error, 'the agent is shutting down; resume with from=0')
    } finally {
      await s.close()
    }
  })
})

describe('api - a closing agent', () => {
  it('api - a request that arrives while the API closes gets 503 AGENT_CLOSING with its code', async () => {
    const h = await openApi()
    try {
      const address = h.app.server.address()
      assert.ok(address !== null && typeof address === 'object')
      const socket = connect(address.port, '127.0.0.1')
      await once(socket, 'connect')
      // Half a request before the close starts (so the connection is not idle), the rest after.
      socket.write('POST /v1/transactions HTTP/1.1\r\nHost: patina\r\n')
      await sleep(50)
      const closed = h.app.close()
      const body = '["INSERT INTO t (id) VALUES (1)"]'
      socket.write(
        `content-type: application/json\r\ncontent-length: ${String(body.length)}\r\n\r\n${body}`,
      )
      let text = ''
      socket.setEncoding('utf8')
      socket.on('data', (chunk: string) => {
        text += chunk
      })
      await once(socket, 'close')
      await closed
      const [head = '', payload = ''] = text.split('\r\n\r\n')
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1])
      const retryAfter = /\r\nretry-after: (\d+)/i.exec(head)?.[1]
      expectCode(
        { statusCode: status, body: payload, headers: { 'retry-after': retryAfter } },
        'AGENT_CLOSING',
      )
      assert.deepEqual(
        h.replica.query('SELECT count(*) AS n FROM t'),
        [{ n: 0n }],
        'nothing was written',
      )
    } finally {
      await h.close()
    }
  })
})
