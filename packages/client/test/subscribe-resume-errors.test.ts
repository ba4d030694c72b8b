/**
 * Goal: a subscription resumes by itself, with its usual backoff, when the agent ends the stream
 * with one of its resumable error events (a listener cut off for falling behind, the agent
 * shutting down: both say "resume with from=N"), from the last change id it delivered and with
 * nothing repeated or skipped; an agent that keeps ending the stream that way without sending
 * anything else does not reset the attempt count, so the resume gives up within its bound; a
 * history that is gone (the error event or a 410) is still SubscriptionGoneError; any other
 * error event (a failed subscription) is QueryError at once, without a resume.
 *
 * Method: the real client against a real node:http server (helpers/http-server.ts) that speaks
 * the agent's subscription protocol and writes the agent's exact error texts and codes
 * (packages/agent/src/subs/subscriptions.ts and streams.ts). Delays are scaled down (resume
 * base 10 ms).
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import {
  createClient,
  QueryError,
  ResumeError,
  SubscriptionGoneError,
  type ClientEvent,
  type ClientOptions,
  type PatinaClient,
  type SubscriptionEvent,
} from '../src/index.ts'
import { json, lines, ndjson, testServer, type TestServer } from './helpers/http-server.ts'

const ID = '4e6f3d2c-0000-4000-8000-0000000000e1'
const COLUMNS = '{"columns":["id","v"]}'
const FAST = { resume: { attempts: 4, baseDelayMs: 10, maxDelayMs: 40 } } as const

/** The agent's own texts (subscriptions.ts: publish() and shutdownMessage(); streams.ts). */
const SHUTTING_DOWN = (from: number): string =>
  `the agent is shutting down; resume with from=${from}`
const FELL_BEHIND =
  'listener fell behind by more than 5000 changes ([subscriptions] max_listener_lag); ' +
  'resume with from=<the last change id you received>'
const HISTORY_GONE = (after: number, first: number): string =>
  `the changes after change id ${after} are no longer kept (oldest kept: ${first}, ` +
  '[subscriptions] max_history): subscribe again without from to start over'

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

/** An error event as the agent writes it: its message and its code. */
const error = (message: string, code: string): string => JSON.stringify({ error: message, code })

function change(type: string, id: number, v: string, changeId: number): string {
  return `{"change":["${type}",${id},[${id},"${v}"],${changeId}]}`
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

function requestsOf(s: TestServer): string[] {
  return s.requests.map(
    (r) => `${r.method} ${r.path}${r.query.size > 0 ? `?${r.query.toString()}` : ''}`,
  )
}

describe('subscribe - resumable error events', () => {
  it('subscribe - "shutting down" and "fell behind" events resume from the last change id', async () => {
    const s = await server((req, res) => {
      ndjson(res, ID)
      const from = req.query.get('from')
      if (req.method === 'POST') {
        lines(res, COLUMNS, '{"row":[1,[1,"a"]]}', '{"eoq":{"time":0,"change_id":3}}')
        lines(res, change('insert', 2, 'b', 4), error(SHUTTING_DOWN(4), 'AGENT_CLOSING'))
        res.end()
      } else if (from === '4') {
        // The agent may repeat the last change; it must not be delivered twice.
        lines(
          res,
          change('insert', 2, 'b', 4),
          change('update', 1, 'c', 5),
          error(FELL_BEHIND, 'LISTENER_TOO_SLOW'),
        )
        res.end()
      } else if (from === '5') {
        lines(res, change('delete', 2, 'b', 6))
      } else {
        json(res, 400, `{"error":"unexpected ${req.method} ${req.path}?${req.query.toString()}"}`)
      }
    })
    const events: ClientEvent[] = []
    const c = client({ url: s.url, ...FAST, onEvent: (e) => events.push(e) })
    const sub = await c.subscribe('SELECT id, v FROM t')
    const got = await take(sub, (es) => changeIds(es).includes(6))
    assert.deepEqual(changeIds(got), [4, 5, 6])
    assert.deepEqual(
      got.map((e) => e.type),
      ['columns', 'row', 'eoq', 'change', 'change', 'change'],
    )
    assert.deepEqual(requestsOf(s), [
      'POST /v1/subscriptions',
      `GET /v1/subscriptions/${ID}?from=4`,
      `GET /v1/subscriptions/${ID}?from=5`,
    ])
    const retries = events.filter((e) => e.type === 'subscription-retry')
    assert.deepEqual(
      retries.map((e) => [e.attempt, e.error instanceof QueryError, e.error.message]),
      [
        [1, true, SHUTTING_DOWN(4)],
        [1, true, FELL_BEHIND],
      ],
    )
    for (const e of retries) {
      assert.ok(e.delayMs >= 0 && e.delayMs <= FAST.resume.baseDelayMs, `delay ${e.delayMs} ms`)
    }
    assert.deepEqual(
      events.flatMap((e) => (e.type === 'subscription-resumed' ? [e.from] : [])),
      [4, 5],
    )
    assert.equal(sub.lastChangeId, 6)
  })

  it('subscribe - an agent that only ever says "shutting down" is given up on after the bound', async () => {
    const s = await server((req, res) => {
      ndjson(res, ID)
      if (req.method === 'POST') lines(res, COLUMNS, '{"eoq":{"time":0,"change_id":7}}')
      // The error event alone must not count as progress: the attempts add up.
      lines(res, error(SHUTTING_DOWN(7), 'AGENT_CLOSING'))
      res.end()
    })
    const delays: number[] = []
    const c = client({
      url: s.url,
      ...FAST,
      onEvent: (e) => {
        if (e.type === 'subscription-retry') delays.push(e.delayMs)
      },
    })
    const sub = await c.subscribe('SELECT id, v FROM t')
    await assert.rejects(
      take(sub, () => false),
      (err: unknown) => {
        assert.ok(err instanceof ResumeError, String(err))
        assert.equal(err.attempts, FAST.resume.attempts)
        assert.equal(err.lastChangeId, 7)
        assert.ok(err.cause instanceof QueryError, String(err.cause))
        assert.equal(err.cause.message, SHUTTING_DOWN(7))
        assert.match(err.message, /\{ from: 7, agent: /)
        return true
      },
    )
    assert.equal(s.requests.filter((r) => r.method === 'GET').length, FAST.resume.attempts)
    delays.forEach((d, i) => {
      const cap = Math.min(FAST.resume.maxDelayMs, FAST.resume.baseDelayMs * 2 ** i)
      assert.ok(d >= 0 && d <= cap, `delay ${i + 1}: ${d} ms over its cap ${cap} ms`)
    })
  })

  it('subscribe - "shutting down" during the initial rows restarts them only if none was delivered', async () => {
    // Before any row: the rows start over (GET without from).
    const s1 = await server((req, res) => {
      ndjson(res, ID)
      if (req.method === 'POST') {
        lines(res, COLUMNS, error(SHUTTING_DOWN(2), 'AGENT_CLOSING'))
        res.end()
      } else {
        assert.equal(req.query.get('from'), null)
        lines(res, COLUMNS, '{"row":[1,[1,"a"]]}', '{"eoq":{"time":0,"change_id":2}}')
      }
    })
    const c1 = client({ url: s1.url, ...FAST })
    const got = await take(await c1.subscribe('SELECT id, v FROM t'), (es) => es.length === 3)
    assert.deepEqual(
      got.map((e) => e.type),
      ['columns', 'row', 'eoq'],
    )
    // After a row: no position to resume from without repeating or losing rows.
    const s2 = await server((_req, res) => {
      ndjson(res, ID)
      lines(res, COLUMNS, '{"row":[1,[1,"a"]]}', error(SHUTTING_DOWN(2), 'AGENT_CLOSING'))
      res.end()
    })
    const c2 = client({ url: s2.url, ...FAST })
    await assert.rejects(
      take(await c2.subscribe('SELECT id, v FROM t'), () => false),
      (err: unknown) =>
        err instanceof ResumeError &&
        /during the initial rows \(after 1,/.test(err.message) &&
        err.cause instanceof QueryError,
    )
    assert.equal(s2.requests.length, 1)
  })

  it('subscribe - history gone (event or 410) is SubscriptionGoneError; a failed subscription is QueryError', async () => {
    for (const answer of ['event', '410'] as const) {
      const s = await server((req, res) => {
        if (req.method === 'POST') {
          ndjson(res, ID)
          lines(
            res,
            COLUMNS,
            '{"eoq":{"time":0,"change_id":3}}',
            error(SHUTTING_DOWN(3), 'AGENT_CLOSING'),
          )
          res.end()
        } else if (answer === '410') {
          json(res, 410, JSON.stringify({ error: HISTORY_GONE(3, 40), code: 'RESUME_GONE' }))
        } else {
          ndjson(res, ID)
          lines(res, error(HISTORY_GONE(3, 40), 'RESUME_GONE'))
          res.end()
        }
      })
      const c = client({ url: s.url, ...FAST })
      const sub = await c.subscribe('SELECT id, v FROM t')
      await assert.rejects(
        take(sub, () => false),
        (err: unknown) => {
          assert.ok(err instanceof SubscriptionGoneError, `${answer}: ${String(err)}`)
          assert.equal(err.lastChangeId, 3)
          assert.match(err.message, /no longer kept/)
          return true
        },
      )
      assert.equal(s.requests.length, 2, answer)
    }

    // The subscription failed on the agent: resuming cannot help, the agent's reason is thrown.
    const failed = 'subscription failed: malformed JSON'
    const s = await server((_req, res) => {
      ndjson(res, ID)
      lines(res, COLUMNS, '{"eoq":{"time":0,"change_id":3}}', change('insert', 1, 'a', 4))
      lines(res, error(failed, 'SUBSCRIPTION_FAILED'))
      res.end()
    })
    const c = client({ url: s.url, ...FAST })
    const sub = await c.subscribe('SELECT id, v FROM t')
    const seen: number[] = []
    await assert.rejects(
      (async () => {
        for await (const e of sub) if (e.type === 'change') seen.push(e.changeId)
      })(),
      (err: unknown) => err instanceof QueryError && err.message === failed,
    )
    assert.deepEqual(seen, [4])
    assert.equal(s.requests.length, 1, 'no resume attempt')
  })
})
