/**
 * Goal: subscriptions and update streams follow the resume rules of src/subscription.ts over
 * real sockets: a dropped connection resumes on the same agent from the last change id seen,
 * with nothing repeated or skipped; waits back off with jitter within their caps; after the
 * bound it gives up with an actionable ResumeError; a vanished history, a 404 or a skipped
 * change id is SubscriptionGoneError; close(), `await using`, client.close() and abort end it.
 *
 * Method: a real node:http server (helpers/http-server.ts) speaks the agent's subscription
 * protocol (corro-query-id header, NDJSON columns/row/eoq/change, GET
 * /v1/subscriptions/:id?from=N) as the contract in DESIGN.md section 5 and Corrosion define it;
 * each test scripts its answers and cuts connections or closes the port. The client under
 * test is the real one; only the agent is replaced. Delays are scaled down (resume base 10 ms).
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import {
  AbortError,
  ConnectionError,
  createClient,
  PatinaHttpError,
  ProtocolError,
  QueryError,
  ResumeError,
  SubscriptionGoneError,
  type ClientEvent,
  type ClientOptions,
  type PatinaClient,
  type SubscriptionEvent,
} from '../src/index.ts'
import {
  drain,
  json,
  lines,
  ndjson,
  testServer,
  until,
  type TestServer,
} from './helpers/http-server.ts'

const ID = '4e6f3d2c-0000-4000-8000-000000000001'
const COLUMNS = '{"columns":["id","v"]}'
const FAST = { resume: { attempts: 4, baseDelayMs: 10, maxDelayMs: 40 } } as const

const servers: TestServer[] = []
const clients: PatinaClient[] = []

after(async () => {
  await Promise.all(clients.map((c) => c.close()))
  await Promise.all(servers.map((s) => s.close()))
})

async function server(handler: Parameters<typeof testServer>[0]): Promise<TestServer> {
  const s = await testServer(handler)
  servers.push(s)
  return s
}

function client(options: ClientOptions): PatinaClient {
  const c = createClient(options)
  clients.push(c)
  return c
}

function change(type: string, rowid: number, id: number, v: string, changeId: number): string {
  return `{"change":["${type}",${rowid},[${id},"${v}"],${changeId}]}`
}

/** Collects events until `stop(events)` holds, then leaves the loop. */
async function take<R>(
  iterable: AsyncIterable<SubscriptionEvent<R>>,
  stop: (events: SubscriptionEvent<R>[]) => boolean,
): Promise<SubscriptionEvent<R>[]> {
  const events: SubscriptionEvent<R>[] = []
  for await (const e of iterable) {
    events.push(e)
    if (stop(events)) break
  }
  return events
}

function changeIds<R>(events: SubscriptionEvent<R>[]): number[] {
  return events.flatMap((e) => (e.type === 'change' ? [e.changeId] : []))
}

describe('subscribe - protocol', () => {
  it('subscribe - yields columns, typed rows, eoq and changes in order', async () => {
    const s = await server((req, res) => {
      assert.equal(req.method, 'POST')
      assert.equal(req.path, '/v1/subscriptions')
      assert.equal(req.body, '["SELECT id, v FROM t WHERE id > ?",[0]]')
      ndjson(res, ID)
      lines(
        res,
        COLUMNS,
        '{"row":[1,[1,"a"]]}',
        '{"row":[2,[9223372036854775807,"b"]]}',
        '{"eoq":{"time":0.001,"change_id":3}}',
        change('insert', 3, 3, 'c', 4),
        change('delete', 1, 1, 'a', 5),
      )
    })
    const c = client({ url: s.url })
    await using sub = await c.subscribe<{ id: number | bigint; v: string }>([
      'SELECT id, v FROM t WHERE id > ?',
      [0],
    ])
    assert.equal(sub.id, ID)
    assert.equal(sub.agent, s.url)
    const events = await take(sub, (es) => es.length === 6)
    assert.deepEqual(events, [
      { type: 'columns', columns: ['id', 'v'] },
      { type: 'row', rowId: 1, row: { id: 1, v: 'a' } },
      { type: 'row', rowId: 2, row: { id: 9223372036854775807n, v: 'b' } },
      { type: 'eoq', time: 0.001, changeId: 3 },
      { type: 'change', changeType: 'insert', rowId: 3, row: { id: 3, v: 'c' }, changeId: 4 },
      { type: 'change', changeType: 'delete', rowId: 1, row: { id: 1, v: 'a' }, changeId: 5 },
    ])
    assert.equal(sub.lastChangeId, 5)
    assert.deepEqual(sub.columns, ['id', 'v'])
  })

  it('subscribe - resumes on the same agent from the last change id, without repeats', async () => {
    const s = await server((req, res) => {
      if (req.method === 'POST') {
        ndjson(res, ID)
        lines(res, COLUMNS, '{"row":[1,[1,"a"]]}', '{"eoq":{"time":0,"change_id":5}}')
        lines(res, change('update', 1, 1, 'b', 6), change('update', 1, 1, 'c', 7))
        setTimeout(() => res.destroy(), 20)
      } else if (req.path === `/v1/subscriptions/${ID}` && req.query.get('from') === '7') {
        ndjson(res, ID)
        // An agent may replay the last change; the client must not deliver it twice.
        lines(res, change('update', 1, 1, 'c', 7), change('update', 1, 1, 'd', 8))
        lines(res, change('insert', 2, 2, 'e', 9))
      } else {
        json(res, 400, `{"error":"unexpected ${req.method} ${req.path}?${req.query.toString()}"}`)
      }
    })
    const events: ClientEvent[] = []
    const c = client({ url: s.url, ...FAST, onEvent: (e) => events.push(e) })
    const sub = await c.subscribe('SELECT id, v FROM t')
    const got = await take(sub, (es) => changeIds(es).includes(9))
    assert.deepEqual(changeIds(got), [6, 7, 8, 9])
    assert.deepEqual(
      got.filter((e) => e.type !== 'change').map((e) => e.type),
      ['columns', 'row', 'eoq'],
    )
    assert.deepEqual(
      s.requests.map(
        (r) => `${r.method} ${r.path}${r.query.size > 0 ? `?${r.query.toString()}` : ''}`,
      ),
      ['POST /v1/subscriptions', `GET /v1/subscriptions/${ID}?from=7`],
    )
    assert.deepEqual(
      events.map((e) => e.type),
      ['subscription-retry', 'subscription-resumed'],
    )
    assert.equal(sub.lastChangeId, 9)
  })

  it('subscribe - backs off with jitter within its caps and gives up with ResumeError', async () => {
    const s = await server((req, res) => {
      if (req.method === 'POST') {
        ndjson(res, ID)
        lines(res, COLUMNS, '{"eoq":{"time":0,"change_id":12}}')
        setTimeout(() => res.destroy(), 20)
      } else {
        json(res, 503, '{"error":"shutting down"}')
      }
    })
    const delays: number[] = []
    const resume = { attempts: 5, baseDelayMs: 20, maxDelayMs: 60 }
    const c = client({
      url: s.url,
      resume,
      onEvent: (e) => {
        if (e.type === 'subscription-retry') delays.push(e.delayMs)
      },
    })
    const sub = await c.subscribe('SELECT id, v FROM t')
    const started = performance.now()
    await assert.rejects(
      take(sub, () => false),
      (err: unknown) => {
        assert.ok(err instanceof ResumeError, String(err))
        assert.equal(err.code, 'RESUME_FAILED')
        assert.equal(err.attempts, 5)
        assert.equal(err.id, ID)
        assert.equal(err.agent, s.url)
        assert.equal(err.lastChangeId, 12)
        assert.match(err.message, /after 5 attempts \(last: shutting down\)/)
        assert.match(err.message, new RegExp(`\\{ from: 12, agent: '${s.url}' \\}`))
        assert.ok(err.cause instanceof PatinaHttpError && err.cause.status === 503)
        return true
      },
    )
    const elapsed = performance.now() - started
    assert.equal(s.requests.filter((r) => r.method === 'GET').length, 5)
    assert.equal(delays.length, 5)
    delays.forEach((d, i) => {
      const cap = Math.min(resume.maxDelayMs, resume.baseDelayMs * 2 ** i)
      assert.ok(d >= 0 && d <= cap, `delay ${i + 1}: ${d} ms over its cap ${cap} ms`)
    })
    assert.ok(new Set(delays).size > 1, `jittered delays differ: ${delays.join(', ')}`)
    assert.ok(elapsed < 2000, `gave up within the bound (${Math.round(elapsed)} ms)`)
  })

  it('subscribe - an agent that stays down: ResumeError whose cause is the refused connection', async () => {
    const s = await server((_req, res) => {
      ndjson(res, ID)
      lines(res, COLUMNS, '{"eoq":{"time":0,"change_id":1}}')
      setTimeout(() => void s.close(), 20)
    })
    const c = client({ url: s.url, ...FAST })
    const sub = await c.subscribe('SELECT id, v FROM t')
    await assert.rejects(
      take(sub, () => false),
      (err: unknown) =>
        err instanceof ResumeError &&
        err.cause instanceof ConnectionError &&
        /ECONNREFUSED/.test(err.cause.message),
    )
  })

  it('subscribe - the attempt count starts over once a resumed stream delivers', async () => {
    let next = 2
    const s = await server((req, res) => {
      ndjson(res, ID)
      if (req.method === 'POST') lines(res, COLUMNS, '{"eoq":{"time":0,"change_id":1}}')
      else lines(res, change('insert', next, next, 'x', next++))
      setTimeout(() => res.destroy(), 5)
    })
    const c = client({ url: s.url, resume: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 } })
    const sub = await c.subscribe('SELECT id, v FROM t')
    const got = await take(sub, (es) => changeIds(es).length === 6)
    assert.deepEqual(changeIds(got), [2, 3, 4, 5, 6, 7])
  })

  it('subscribe - 404 on resume, or history gone, is SubscriptionGoneError', async () => {
    for (const answer of ['404', 'purged'] as const) {
      const s = await server((req, res) => {
        if (req.method === 'POST') {
          ndjson(res, ID)
          lines(res, COLUMNS, '{"eoq":{"time":0,"change_id":3}}')
          setTimeout(() => res.destroy(), 10)
        } else if (answer === '404') {
          json(res, 404, `{"error":"could not find subscription with id ${ID}"}`)
        } else {
          ndjson(res, ID)
          lines(
            res,
            '{"error":"subscription already deleted older changes, min change id: 40","code":"RESUME_GONE"}',
          )
          res.end()
        }
      })
      const c = client({ url: s.url, ...FAST })
      const sub = await c.subscribe('SELECT id, v FROM t')
      await assert.rejects(
        take(sub, () => false),
        (err: unknown) => {
          assert.ok(err instanceof SubscriptionGoneError, `${answer}: ${String(err)}`)
          assert.equal(err.code, 'SUBSCRIPTION_GONE')
          assert.equal(err.id, ID)
          assert.equal(err.lastChangeId, 3)
          assert.match(err.message, /subscribe again without `from`/)
          return true
        },
      )
    }
  })

  it('subscribe - a skipped change id is SubscriptionGoneError, never a silent gap', async () => {
    const s = await server((_req, res) => {
      ndjson(res, ID)
      lines(res, COLUMNS, '{"eoq":{"time":0,"change_id":3}}', change('insert', 1, 1, 'a', 5))
    })
    const c = client({ url: s.url })
    const sub = await c.subscribe('SELECT id, v FROM t')
    await assert.rejects(
      take(sub, () => false),
      (err: unknown) =>
        err instanceof SubscriptionGoneError && /skipped from change 3 to 5/.test(err.message),
    )
  })

  it('subscribe - a drop during the initial rows restarts them only if none was delivered', async () => {
    // No row delivered yet: the rows start over (GET without from), columns not repeated.
    const s1 = await server((req, res) => {
      ndjson(res, ID)
      if (req.method === 'POST') {
        lines(res, COLUMNS)
        setTimeout(() => res.destroy(), 10)
      } else {
        assert.equal(req.query.get('from'), null)
        lines(res, COLUMNS, '{"row":[1,[1,"a"]]}', '{"eoq":{"time":0,"change_id":1}}')
      }
    })
    const c1 = client({ url: s1.url, ...FAST })
    const got = await take(await c1.subscribe('SELECT id, v FROM t'), (es) => es.length === 3)
    assert.deepEqual(
      got.map((e) => e.type),
      ['columns', 'row', 'eoq'],
    )
    // A row delivered, no change id yet: resuming would repeat or lose rows.
    const s2 = await server((_req, res) => {
      ndjson(res, ID)
      lines(res, COLUMNS, '{"row":[1,[1,"a"]]}')
      setTimeout(() => res.destroy(), 10)
    })
    const c2 = client({ url: s2.url, ...FAST })
    await assert.rejects(
      take(await c2.subscribe('SELECT id, v FROM t'), () => false),
      (err: unknown) =>
        err instanceof ResumeError && /during the initial rows \(after 1,/.test(err.message),
    )
  })

  it('subscribe - an error before the rows end is QueryError; bad answers are typed', async () => {
    const s = await server((req, res) => {
      if (req.body === '"SELECT bad"') {
        json(res, 400, '{"error":"no such column: bad"}')
      } else if (req.body === '"SELECT noheader"') {
        ndjson(res)
        lines(res, COLUMNS)
      } else {
        ndjson(res, ID)
        lines(res, COLUMNS, '{"error":"interrupted"}')
        res.end()
      }
    })
    const c = client({ url: s.url, ...FAST })
    await assert.rejects(
      c.subscribe('SELECT bad'),
      (err: unknown) =>
        err instanceof PatinaHttpError &&
        err.status === 400 &&
        err.message === 'no such column: bad',
    )
    await assert.rejects(
      c.subscribe('SELECT noheader'),
      (err: unknown) => err instanceof ProtocolError && /corro-query-id/.test(err.message),
    )
    const sub = await c.subscribe('SELECT id, v FROM t')
    await assert.rejects(
      take(sub, () => false),
      (err: unknown) => err instanceof QueryError && err.message === 'interrupted',
    )
    assert.throws(() => sub[Symbol.asyncIterator](), /only once/)
  })

  it('subscribe - from resumes after a change id, with the columns asked for or given', async () => {
    const s = await server((req, res) => {
      if (req.query.get('from') === '40') {
        json(res, 410, '{"error":"the changes after change id 40 are no longer kept"}')
        return
      }
      ndjson(res, ID)
      if (req.query.get('skip_rows') === 'true') {
        // As the agent does: columns and the current change id, no rows; then changes.
        lines(res, COLUMNS, '{"eoq":{"time":0,"change_id":42}}')
      } else if (req.query.get('from') === '41') {
        // A stream resumed with from has no columns event (as Corrosion).
        lines(res, change('insert', 7, 7, 'x', 42), change('delete', 7, 7, 'x', 43))
      }
    })
    const c = client({ url: s.url })
    const sub = await c.subscribe('SELECT id, v FROM t', { from: 41 })
    assert.equal(sub.lastChangeId, 41)
    assert.deepEqual(sub.columns, ['id', 'v'])
    const got = await take(sub, (es) => es.length === 2)
    assert.deepEqual(got[0], {
      type: 'change',
      changeType: 'insert',
      rowId: 7,
      row: { id: 7, v: 'x' },
      changeId: 42,
    })
    assert.deepEqual(
      s.requests.map((r) => r.query.toString()),
      ['skip_rows=true', 'from=41'],
    )
    // Columns given (sub.columns of the earlier subscription): no extra request.
    const again = await c.subscribe('SELECT id, v FROM t', { from: 41, columns: ['id', 'v'] })
    assert.deepEqual(changeIds(await take(again, (es) => es.length === 2)), [42, 43])
    assert.equal(s.requests.length, 3)
    // The changes after from are gone: SubscriptionGoneError at once.
    await assert.rejects(
      c.subscribe('SELECT id, v FROM t', { from: 40, columns: ['id', 'v'] }),
      (err: unknown) =>
        err instanceof SubscriptionGoneError && err.lastChangeId === 40 && err.id === null,
    )

    const two = client({ urls: [s.url, 'http://127.0.0.1:9'] })
    await assert.rejects(two.subscribe('SELECT 1', { from: 1 }), /also give `agent`/)
    await assert.rejects(two.subscribe('SELECT 1', { from: -1, agent: s.url }), /from must be/)
  })

  it('subscribe - close(), await using, client.close() end it quietly; signal aborts it', async () => {
    const open = new Set<string>()
    const s = await server((req, res, raw) => {
      ndjson(res, ID)
      lines(res, COLUMNS, '{"eoq":{"time":0,"change_id":1}}')
      open.add(req.body)
      raw.socket.on('close', () => open.delete(req.body))
    })
    const c = client({ url: s.url })

    // close() while the consumer waits for the next event.
    const sub = await c.subscribe('"close"')
    const loop = take(sub, () => false)
    await until('the first events', () => sub.lastChangeId === 1)
    await sub.close()
    assert.equal((await loop).length, 2)

    // await using: disposed at the end of the block, iterated or not.
    {
      await using unused = await c.subscribe('"using"')
      assert.equal(unused.id, ID)
    }

    // The call's signal: AbortError with the reason.
    const controller = new AbortController()
    const aborted = await c.subscribe('"abort"', { signal: controller.signal })
    const abortedLoop = take(aborted, () => false)
    await until('the first events', () => aborted.lastChangeId === 1)
    controller.abort(new Error('stop now'))
    await assert.rejects(
      abortedLoop,
      (err: unknown) => err instanceof AbortError && /stop now/.test(err.message),
    )

    // client.close() ends every open subscription, and waiting in a backoff too.
    const c2 = createClient({ url: s.url, resume: { attempts: 5, baseDelayMs: 10_000 } })
    const last = await c2.subscribe('"client close"')
    const lastLoop = take(last, () => false)
    await until('the first events', () => last.lastChangeId === 1)
    s.cut()
    await new Promise((resolve) => setTimeout(resolve, 50))
    await c2.close()
    assert.equal((await lastLoop).length, 2)
    await assert.rejects(c2.subscribe('SELECT 1'), /the client is closed/)
    await until('every connection closed', () => open.size === 0)
  })
})

describe('updates - protocol', () => {
  it('updates - yields typed primary keys; a broken stream throws ConnectionError', async () => {
    const s = await server((req, res) => {
      assert.equal(req.method, 'POST')
      assert.equal(req.path, '/v1/updates/machine%20s')
      assert.equal(req.body, '')
      ndjson(res, ID)
      lines(res, '{"notify":["update",["m1",9007199254740993]]}', '{"notify":["delete",["m2",2]]}')
      setTimeout(() => res.destroy(), 20)
    })
    const c = client({ url: s.url })
    const updates = await c.updates<[string, number | bigint]>('machine s')
    assert.equal(updates.agent, s.url)
    const got: unknown[] = []
    await assert.rejects(
      (async () => {
        for await (const u of updates) got.push(u)
      })(),
      (err: unknown) =>
        err instanceof ConnectionError &&
        /re-read the table, then call updates\(\) again/.test(err.message),
    )
    assert.deepEqual(got, [
      { type: 'update', pk: ['m1', 9007199254740993n] },
      { type: 'delete', pk: ['m2', 2] },
    ])
  })

  it('updates - close() ends the loop quietly; an error event is QueryError', async () => {
    const s = await server((req, res) => {
      ndjson(res)
      if (req.path.endsWith('/bad')) {
        lines(res, '{"error":"no such table: bad"}')
        res.end()
      } else {
        lines(res, '{"notify":["update",[1]]}')
      }
    })
    const c = client({ url: s.url })
    const updates = await c.updates('t')
    const got: unknown[] = []
    const loop = (async () => {
      for await (const u of updates) got.push(u)
    })()
    await until('the first update', () => got.length === 1)
    await updates.close()
    await loop
    const bad = await c.updates('bad')
    await assert.rejects(
      drain(bad),
      (err: unknown) => err instanceof QueryError && err.message === 'no such table: bad',
    )
  })
})
