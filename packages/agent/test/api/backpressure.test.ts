/**
 * Goal: `[api] max_inflight_transactions` caps transaction requests that are accepted and not
 * yet answered: beyond the cap /v1/transactions answers 503 with Retry-After at once (no
 * queueing), other routes are not affected, and every slot comes back when its request ends,
 * whether it was answered or its client went away.
 *
 * Method: transactions run synchronously, so inject() cannot hold one in flight. The API
 * listens on 127.0.0.1 port 0 instead, and requests are sent with node:http: the headers and
 * half of the body are written, the rest is held, so the request sits between onRequest and its
 * handler. The test waits (by polling the patina_api_inflight_transactions gauge, not by
 * sleeping) until the held requests are counted, then sends more. Assertions are on statuses
 * and headers, never on timings.
 */
import assert from 'node:assert/strict'
import { request, type ClientRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { openApi, type ApiHarness } from './harness.ts'

let h: ApiHarness
let base: string
let port: number
before(async () => {
  h = await openApi('[api]\nmax_inflight_transactions = 2')
  port = (h.app.server.address() as AddressInfo).port
  base = `http://127.0.0.1:${port}`
})
after(async () => {
  await h.close()
})

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

interface Held {
  readonly req: ClientRequest
  /** Sends the rest of the body and waits for the answer. */
  finish(): Promise<Answer>
  /** Closes the connection without finishing the body. */
  abort(): void
}

/** Starts a transaction request and holds the second half of its body. */
function hold(statements: unknown[]): Held {
  const body = Buffer.from(JSON.stringify(statements))
  const half = Math.floor(body.length / 2)
  const req = request({
    host: '127.0.0.1',
    port,
    method: 'POST',
    path: '/v1/transactions',
    agent: false,
    headers: { 'content-type': 'application/json', 'content-length': String(body.length) },
  })
  const answer = new Promise<Answer>((resolve, reject) => {
    req.on('response', (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (text += chunk))
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
  })
  req.write(body.subarray(0, half))
  return {
    req,
    finish: async () => {
      req.end(body.subarray(half))
      return answer
    },
    abort: () => {
      answer.catch(() => undefined)
      req.destroy()
    },
  }
}

async function inflight(): Promise<number> {
  return (await h.metrics.inflightTransactions.get()).values[0]?.value ?? 0
}

/** Polls the in-flight gauge until it reads `n` (the requests have reached the server). */
async function waitInflight(n: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if ((await inflight()) === n) return
    await sleep(10)
  }
  assert.fail(`in-flight transactions never reached ${n} (now ${await inflight()})`)
}

async function post(path: string, body: unknown): Promise<Answer> {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() }
}

describe('api - backpressure', () => {
  it('api - transactions beyond max_inflight_transactions get 503 with Retry-After', async () => {
    const a = hold(["INSERT INTO t (id, v) VALUES (1, 'held a')"])
    const b = hold(["INSERT INTO t (id, v) VALUES (2, 'held b')"])
    await waitInflight(2)

    const extra = await Promise.all(
      [3, 4, 5].map((id) => post('/v1/transactions', [['INSERT INTO t (id) VALUES (?)', [id]]])),
    )
    for (const r of extra) {
      assert.equal(r.status, 503, r.body)
      assert.equal(r.headers['retry-after'], '1')
      assert.match(String(r.headers['content-type']), /^application\/json/)
      const body = JSON.parse(r.body) as { error: unknown; code: unknown }
      assert.match(String(body.error), /too many transactions in flight.*max_inflight_transactions/)
      assert.equal(body.code, 'OVERLOADED')
    }
    // Reads and health are not behind the transaction cap.
    const query = await post('/v1/queries', 'SELECT count(*) FROM t')
    assert.equal(query.status, 200, query.body)
    const health = await fetch(`${base}/v1/health`)
    assert.equal(health.status, 200)
    await health.text()

    const answers = await Promise.all([a.finish(), b.finish()])
    for (const r of answers) assert.equal(r.status, 200, r.body)
    const versions = answers.map((r) => (JSON.parse(r.body) as { version: number }).version)
    assert.deepEqual(versions.sort(), [1, 2])
    assert.deepEqual(h.replica.query('SELECT id FROM t ORDER BY id'), [{ id: 1n }, { id: 2n }])

    const metrics = await fetch(`${base}/metrics`)
    assert.match(
      await metrics.text(),
      /^patina_api_rejected_total\{reason="inflight_transactions"\} 3$/m,
    )
  })

  it('api - slots come back: many transactions in a row all pass', async () => {
    await waitInflight(0)
    for (let i = 0; i < 10; i++) {
      const r = await post('/v1/transactions', [['INSERT INTO t (id) VALUES (?)', [100 + i]]])
      assert.equal(r.status, 200, r.body)
    }
    await waitInflight(0)
  })

  it('api - a client that goes away mid-body frees its slot', async () => {
    const a = hold(["INSERT INTO t (id, v) VALUES (200, 'never')"])
    const b = hold(["INSERT INTO t (id, v) VALUES (201, 'held')"])
    await waitInflight(2)
    assert.equal((await post('/v1/transactions', ['SELECT 1'])).status, 503)
    a.abort()
    await waitInflight(1)
    const r = await post('/v1/transactions', ["INSERT INTO t (id, v) VALUES (202, 'after abort')"])
    assert.equal(r.status, 200, r.body)
    assert.equal((await b.finish()).status, 200)
    await waitInflight(0)
    assert.deepEqual(h.replica.query('SELECT id FROM t WHERE id >= 200 ORDER BY id'), [
      { id: 201n },
      { id: 202n },
    ])
  })
})
