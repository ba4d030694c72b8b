/**
 * Goal: GET /v1/health answers Corrosion's shape and honours its thresholds (200 within them,
 * 503 beyond, 400 for a threshold that is not a number); POST /v1/table_stats counts the rows of
 * replicated tables and lists the names that are not one (internal tables included); GET
 * /metrics serves Prometheus text with the API's counters and caps; GET /v1/members without a
 * membership callback lists the agent itself, alive.
 *
 * Method: one in-process API (harness.ts) driven with inject(). Gaps are made without a peer:
 * an empty changeset for version 3 of a made-up origin leaves versions 1..2 of that origin
 * missing (2 gaps) without touching any row. Bodies are compared exactly, as text where the
 * byte layout matters.
 */
import { actorIdHex } from '../../src/runtime/actor-id.ts'
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'

import { inject, openApi, postJson, postText, tx, type ApiHarness } from './harness.ts'

let h: ApiHarness
before(async () => {
  h = await openApi()
  await tx(h, ["INSERT INTO t (id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c')"])
})
after(async () => {
  await h.close()
})

function get(url: string) {
  return inject(h, { method: 'GET', url })
}

describe('api - health', () => {
  it('api - health answers the Corrosion shape for a single healthy node', async () => {
    const res = await get('/v1/health')
    assert.equal(res.statusCode, 200)
    assert.match(String(res.headers['content-type']), /^application\/json/)
    assert.deepEqual(res.json(), {
      response: { gaps: 0, members: 1, p99_lag: 0, queue_size: 0 },
    })
    assert.equal(res.body, '{"response":{"gaps":0,"members":1,"p99_lag":0,"queue_size":0}}')
  })

  it('api - health thresholds that are met still answer 200', async () => {
    for (const url of [
      '/v1/health?gaps=0&p99_lag=1&max_queue=0',
      '/v1/health?gaps=0',
      '/v1/health?p99_lag=0',
      '/v1/health?max_queue=10&gaps=5',
      '/v1/health?p99_lag=0.5',
    ]) {
      const res = await get(url)
      assert.equal(res.statusCode, 200, `${url}: ${res.body}`)
      assert.deepEqual(res.json(), {
        response: { gaps: 0, members: 1, p99_lag: 0, queue_size: 0 },
      })
    }
  })

  it('api - a bad threshold value is a 400 that names the parameter', async () => {
    for (const [url, name] of [
      ['/v1/health?gaps=abc', 'gaps'],
      ['/v1/health?p99_lag=-1', 'p99_lag'],
      ['/v1/health?max_queue=', 'max_queue'],
      ['/v1/health?gaps=1&gaps=2', 'gaps'],
      ['/v1/health?p99_lag=NaN', 'p99_lag'],
    ] as const) {
      const res = await get(url)
      assert.equal(res.statusCode, 400, `${url}: ${res.body}`)
      assert.match(String(res.headers['content-type']), /^application\/json/)
      const body = res.json<{ error: unknown }>()
      assert.equal(typeof body.error, 'string')
      assert.ok(String(body.error).includes(name), `${url}: ${String(body.error)}`)
    }
  })
})

describe('api - members', () => {
  it('api - members of a lone agent lists this agent alone, alive', async () => {
    const res = await get('/v1/members')
    assert.equal(res.statusCode, 200)
    assert.match(String(res.headers['content-type']), /^application\/json/)
    assert.deepEqual(res.json(), [
      {
        actor_id: actorIdHex(h.replica.actorId),
        addr: h.gossipAddr,
        state: 'alive',
        incarnation: 0,
        rtt_ms: null,
      },
    ])
  })

  it('api - members answers 405 to POST', async () => {
    const res = await inject(h, { method: 'POST', url: '/v1/members' })
    assert.equal(res.statusCode, 405)
    assert.equal(res.headers.allow, 'GET')
  })
})

describe('api - table stats', () => {
  it('api - table_stats counts rows and lists invalid tables', async () => {
    const res = await postJson(h, '/v1/table_stats', { tables: ['t', 'nope'] })
    assert.equal(res.statusCode, 200, res.body)
    assert.match(String(res.headers['content-type']), /^application\/json/)
    assert.equal(res.body, '{"total_row_count":3,"invalid_tables":["nope"]}')
  })

  it('api - table_stats sums repeated tables, and internal tables are not tables', async () => {
    const cases: [unknown, unknown][] = [
      [{ tables: [] }, { total_row_count: 0, invalid_tables: [] }],
      [{ tables: ['t', 't'] }, { total_row_count: 6, invalid_tables: [] }],
      [
        { tables: ['t__patina_clock', '__patina_heads', 'sqlite_schema'] },
        {
          total_row_count: 0,
          invalid_tables: ['t__patina_clock', '__patina_heads', 'sqlite_schema'],
        },
      ],
      [
        { tables: ['x"; DROP TABLE t; --'] },
        { total_row_count: 0, invalid_tables: ['x"; DROP TABLE t; --'] },
      ],
    ]
    for (const [body, want] of cases) {
      const res = await postJson(h, '/v1/table_stats', body)
      assert.equal(res.statusCode, 200, res.body)
      assert.deepEqual(res.json(), want, JSON.stringify(body))
    }
  })

  it('api - table_stats refuses a body without a list of names', async () => {
    for (const payload of ['{"tables":"t"}', '{}', '["t"]', '{"tables":[1]}', '{"tables":']) {
      const res = await postText(h, '/v1/table_stats', payload)
      assert.equal(res.statusCode, 400, `${payload}: ${res.body}`)
      const body = res.json<{ error: unknown }>()
      assert.equal(typeof body.error, 'string')
      assert.notEqual(body.error, 'Bad Request')
    }
  })
})

describe('api - metrics', () => {
  it('api - metrics are Prometheus text with the API counters and caps', async () => {
    await tx(h, ["INSERT INTO t (id, v) VALUES (100, 'm')"])
    await tx(h, ['UPDATE t SET v = v WHERE id = -1'])
    const failed = await postJson(h, '/v1/transactions', ['INSERT INTO nope VALUES (1)'])
    assert.equal(failed.statusCode, 400)
    const res = await get('/metrics')
    assert.equal(res.statusCode, 200)
    assert.match(String(res.headers['content-type']), /^text\/plain/)
    const text = res.body
    const value = (pattern: RegExp): number => {
      const m = pattern.exec(text)
      assert.ok(m !== null, `${String(pattern)} in\n${text}`)
      return Number(m[1])
    }
    assert.match(text, /^# TYPE patina_http_requests_total counter$/m)
    assert.ok(
      value(
        /^patina_http_requests_total\{route="\/v1\/transactions",method="POST",status="200"\} (\d+)$/m,
      ) >= 3,
    )
    assert.ok(
      value(
        /^patina_http_requests_total\{route="\/v1\/transactions",method="POST",status="400"\} (\d+)$/m,
      ) >= 1,
    )
    assert.match(text, /^# TYPE patina_transactions_total counter$/m)
    assert.ok(value(/^patina_transactions_total\{outcome="committed"\} (\d+)$/m) >= 2)
    assert.ok(value(/^patina_transactions_total\{outcome="noop"\} (\d+)$/m) >= 1)
    assert.ok(value(/^patina_transactions_total\{outcome="failed"\} (\d+)$/m) >= 1)
    assert.equal(value(/^patina_api_inflight_transactions_max (\d+)$/m), 64)
    assert.equal(value(/^patina_api_inflight_transactions (\d+)$/m), 0)
  })
})

describe('api - health with gaps', () => {
  it('api - missing versions of another origin count as gaps and trip the threshold', async () => {
    const other = new Uint8Array(16).fill(7)
    h.replica.apply([{ kind: 'empty', actorId: other, versions: [3, 3] }])
    const res = await get('/v1/health')
    assert.equal(res.statusCode, 200)
    assert.deepEqual(res.json(), {
      response: { gaps: 2, members: 1, p99_lag: 0, queue_size: 0 },
    })
    const within = await get('/v1/health?gaps=2')
    assert.equal(within.statusCode, 200, within.body)
    const beyond = await get('/v1/health?gaps=1')
    assert.equal(beyond.statusCode, 503, beyond.body)
    const body = beyond.json<{ error: string; response: unknown }>()
    assert.match(body.error, /gaps 2 > 1/)
    assert.deepEqual(body.response, { gaps: 2, members: 1, p99_lag: 0, queue_size: 0 })
  })
})
