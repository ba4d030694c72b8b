/**
 * Goal: the client turns the agent's error codes back into its error classes and decides by
 * code alone: an answer's `code` is kept as `agentCode` on PatinaHttpError and
 * TransactionError; an error event is resumed when its code is resumable whatever its message
 * says, and thrown as QueryError when it is not (even if its message says "resume with
 * from="); a gone code is SubscriptionGoneError whatever the message; an event without a code
 * (Corrosion) is never taken for gone or resumable from its words.
 *
 * Method: the real client against a node:http server (helpers/http-server.ts) that answers
 * with chosen bodies and events; resume delays scaled down.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import {
  createClient,
  PatinaHttpError,
  QueryError,
  SubscriptionGoneError,
  TransactionError,
  type PatinaClient,
  type SubscriptionEvent,
} from '../src/index.ts'
import {
  json,
  lines,
  ndjson,
  testServer,
  type Handler,
  type TestServer,
} from './helpers/http-server.ts'

const ID = '4e6f3d2c-0000-4000-8000-0000000000c0'
const COLUMNS = '{"columns":["id","v"]}'
const FAST = { resume: { attempts: 3, baseDelayMs: 5, maxDelayMs: 10 } } as const

const servers: TestServer[] = []
const clients: PatinaClient[] = []
after(async () => {
  await Promise.all(clients.map((c) => c.close()))
  await Promise.all(servers.map((s) => s.close()))
})

async function setup(handler: Handler): Promise<{ s: TestServer; c: PatinaClient }> {
  const s = await testServer(handler)
  servers.push(s)
  const c = createClient({ url: s.url, retry: { attempts: 1 }, ...FAST })
  clients.push(c)
  return { s, c }
}

async function events<R>(sub: AsyncIterable<SubscriptionEvent<R>>, n: number) {
  const got: SubscriptionEvent<R>[] = []
  for await (const e of sub) {
    got.push(e)
    if (got.length === n) break
  }
  return got
}

describe('client - error codes', () => {
  it("client - an answer's code is kept as agentCode, the class chosen by status and call", async () => {
    const { c } = await setup((req, res) => {
      if (req.path === '/v1/transactions') {
        json(
          res,
          400,
          '{"error":"no such table: x","code":"SQL_ERROR","results":[{"error":"no such table: x"}],"version":null}',
        )
      } else {
        json(res, 400, '{"error":"near \\"SELEC\\": syntax error","code":"SQL_ERROR"}')
      }
    })
    await assert.rejects(c.transaction(['INSERT INTO x VALUES (1)']), (err: unknown) => {
      assert.ok(err instanceof TransactionError, String(err))
      assert.equal(err.agentCode, 'SQL_ERROR')
      assert.equal(err.code, 'TRANSACTION_FAILED')
      return true
    })
    await assert.rejects(c.query('SELEC 1').next(), (err: unknown) => {
      assert.ok(err instanceof PatinaHttpError && !(err instanceof TransactionError), String(err))
      assert.equal(err.agentCode, 'SQL_ERROR')
      assert.equal(err.code, 'BAD_REQUEST')
      return true
    })
  })

  it('client - an error event resumes by its code, never by its message', async () => {
    const { s, c } = await setup((req, res) => {
      ndjson(res, ID)
      if (req.method === 'POST') {
        lines(
          res,
          COLUMNS,
          '{"eoq":{"time":0.0,"change_id":1}}',
          '{"error":"bye","code":"AGENT_CLOSING"}',
        )
        res.end()
      } else {
        lines(res, '{"change":["insert",1,[1,"a"],2]}')
        lines(res, '{"error":"resume with from=2 (but it failed)","code":"SUBSCRIPTION_FAILED"}')
        res.end()
      }
    })
    const sub = await c.subscribe('SELECT id, v FROM t')
    const seen: string[] = []
    await assert.rejects(
      (async () => {
        for await (const e of sub) seen.push(e.type)
      })(),
      (err: unknown) => {
        assert.ok(err instanceof QueryError, String(err))
        assert.equal(err.agentCode, 'SUBSCRIPTION_FAILED')
        return true
      },
    )
    assert.deepEqual(seen, ['columns', 'eoq', 'change'])
    assert.deepEqual(
      s.requests.map((r) => r.method),
      ['POST', 'GET'],
      'resumed once after AGENT_CLOSING, not after SUBSCRIPTION_FAILED',
    )
  })

  it('client - a gone code is SubscriptionGoneError; without a code, words decide nothing', async () => {
    for (const [line, gone] of [
      ['{"error":"whatever the text","code":"RESUME_GONE"}', true],
      ['{"error":"the subscription was dropped","code":"SUBSCRIPTION_NOT_FOUND"}', true],
      ['{"error":"the changes after change id 1 are no longer kept"}', false],
      ['{"error":"listener fell behind; resume with from=1"}', false],
    ] as const) {
      const { s, c } = await setup((_req, res) => {
        ndjson(res, ID)
        lines(res, COLUMNS, '{"eoq":{"time":0.0,"change_id":1}}', line)
        res.end()
      })
      const sub = await c.subscribe('SELECT id, v FROM t')
      await assert.rejects(events(sub, 10), (err: unknown) => {
        if (gone) {
          assert.ok(err instanceof SubscriptionGoneError, `${line}: ${String(err)}`)
          assert.equal(err.lastChangeId, 1)
          assert.equal(err.agentCode, (JSON.parse(line) as { code: string }).code)
        } else {
          assert.ok(err instanceof QueryError && !(err instanceof SubscriptionGoneError), line)
          assert.equal(err.agentCode, null)
        }
        return true
      })
      assert.equal(s.requests.length, 1, `${line}: no resume attempt`)
    }
  })

  it('client - an answer with a gone code to a resume is SubscriptionGoneError', async () => {
    const { c } = await setup((req, res) => {
      if (req.method === 'POST') {
        ndjson(res, ID)
        lines(
          res,
          COLUMNS,
          '{"eoq":{"time":0.0,"change_id":1}}',
          '{"error":"x","code":"AGENT_CLOSING"}',
        )
        res.end()
      } else {
        // A proxy might rewrite the status; the code still says what happened.
        json(res, 400, '{"error":"changes gone","code":"RESUME_GONE"}')
      }
    })
    const sub = await c.subscribe('SELECT id, v FROM t')
    await assert.rejects(events(sub, 10), (err: unknown) => {
      assert.ok(err instanceof SubscriptionGoneError, String(err))
      assert.equal(err.agentCode, 'RESUME_GONE')
      return true
    })
  })
})
