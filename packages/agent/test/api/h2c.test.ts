/**
 * Goal: the API serves HTTP/2 with prior knowledge (h2c, what Corrosion's corro-client speaks)
 * and HTTP/1.1 on the same port: every route answers over h2 with the same JSON and codes,
 * streams stream, HTTP/2 flow control holds a query answer's buffer at its cap, idle sessions
 * are closed, and stopping the agent sends GOAWAY and does not wait on open sessions.
 *
 * Method: one agent from startAgent (test/api/harness.ts) on a loopback port, with short
 * headers/keep-alive timeouts; Node's `http2.connect()` as the h2 client, `fetch` (HTTP/1.1) on
 * the same port, and `curl --http2-prior-knowledge` when curl is installed. Waits are on events
 * or bounded polls, never fixed sleeps as assertions.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { statusOf } from '@patina/protocol'
import { openApi, type ApiHarness } from './harness.ts'

const HEADERS_TIMEOUT_MS = 1000
const KEEP_ALIVE_TIMEOUT_MS = 400
const BUFFER_CAP = 256 * 1024

let h: ApiHarness
let base: string
before(async () => {
  h = await openApi(
    `[api]\nheaders_timeout_ms = ${HEADERS_TIMEOUT_MS}\nrequest_timeout_ms = ${HEADERS_TIMEOUT_MS}\nkeep_alive_timeout_ms = ${KEEP_ALIVE_TIMEOUT_MS}\n` +
      `max_response_buffer_bytes = ${BUFFER_CAP}`,
  )
  base = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`
})
after(async () => {
  await h.close()
})

function session(): ClientHttp2Session {
  const s = connect(base)
  s.on('error', () => undefined)
  return s
}

interface Answer {
  status: number
  headers: Record<string, unknown>
  body: string
  /** DATA chunks the client received. */
  chunks: number
}

function send(
  s: ClientHttp2Session,
  method: string,
  path: string,
  body?: unknown,
): ClientHttp2Stream {
  const headers: Record<string, string> = { ':method': method, ':path': path }
  if (body !== undefined) headers['content-type'] = 'application/json'
  const stream = s.request(headers, { endStream: body === undefined })
  if (body !== undefined) stream.end(JSON.stringify(body))
  return stream
}

function answer(stream: ClientHttp2Stream): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let status = 0
    let headers: Record<string, unknown> = {}
    let body = ''
    let chunks = 0
    stream.on('response', (hs) => {
      status = Number(hs[':status'])
      headers = hs
    })
    stream.setEncoding('utf8')
    stream.on('data', (d: string) => {
      chunks++
      body += d
    })
    stream.on('end', () => {
      resolve({ status, headers, body, chunks })
    })
    stream.on('error', reject)
  })
}

async function request(
  s: ClientHttp2Session,
  method: string,
  path: string,
  body?: unknown,
): Promise<Answer> {
  return answer(send(s, method, path, body))
}

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = h.metrics.registry.getSingleMetric(name)
  assert.ok(m !== undefined, name)
  const values = (await m.get()).values
  const v = values.find((x) =>
    Object.entries(labels).every(([k, want]) => String(x.labels[k]) === want),
  )
  return v?.value ?? 0
}

/** Waits (bounded) until `check` holds. */
async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5000
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

describe('api over HTTP/2 with prior knowledge (h2c)', () => {
  it('h2c - a transaction and a query that streams its rows; HTTP/1.1 on the same port', async () => {
    const h1Before = await metric('patina_api_connections_total', { protocol: 'http1' })
    const h2Before = await metric('patina_api_connections_total', { protocol: 'h2c' })
    const s = session()
    try {
      const t = await request(s, 'POST', '/v1/transactions', [
        ['INSERT INTO t (id, v) VALUES (?, ?)', [1, 'one']],
        ['INSERT INTO t (id, v) VALUES (?, ?)', [2, 'two']],
      ])
      assert.equal(t.status, 200, t.body)
      assert.match(String(t.headers['content-type']), /^application\/json/)
      const tx = JSON.parse(t.body) as { results: { rows_affected: number }[]; version: number }
      assert.deepEqual(
        tx.results.map((r) => r.rows_affected),
        [1, 1],
      )
      assert.equal(tx.version, 1)

      const q = await request(s, 'POST', '/v1/queries', 'SELECT id, v FROM t ORDER BY id')
      assert.equal(q.status, 200, q.body)
      assert.match(String(q.headers['content-type']), /^application\/x-ndjson/)
      const lines = q.body.trimEnd().split('\n')
      assert.equal(lines[0], '{"columns":["id","v"]}')
      assert.equal(lines[1], '{"row":[1,[1,"one"]]}')
      assert.equal(lines[2], '{"row":[2,[2,"two"]]}')
      assert.match(lines[3] ?? '', /^\{"eoq":\{"time":/)

      // A result of several MB arrives in many DATA frames, as it is produced.
      const big = await request(
        s,
        'POST',
        '/v1/queries',
        'WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20000) ' +
          "SELECT i, printf('%.200c', 'x') FROM c",
      )
      assert.equal(big.status, 200)
      assert.equal(big.body.trimEnd().split('\n').length, 20002)
      assert.ok(big.chunks > 10, `the rows came in ${big.chunks} chunks`)

      const health = await request(s, 'GET', '/v1/health')
      assert.equal(health.status, 200)
      assert.deepEqual(Object.keys((JSON.parse(health.body) as { response: object }).response), [
        'gaps',
        'members',
        'p99_lag',
        'queue_size',
      ])
      const members = await request(s, 'GET', '/v1/members')
      assert.equal(members.status, 200)
      assert.equal((JSON.parse(members.body) as unknown[]).length, 1)
      const metrics = await request(s, 'GET', '/metrics')
      assert.equal(metrics.status, 200)
      assert.match(metrics.body, /patina_api_connections_total\{protocol="h2c"\} [1-9]/)

      // HTTP/1.1 on the same port, while the h2 session is open.
      const res = await fetch(`${base}/v1/queries`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify('SELECT v FROM t WHERE id = 2'),
      })
      assert.equal(res.status, 200)
      assert.equal((await res.text()).split('\n')[1], '{"row":[1,["two"]]}')
    } finally {
      s.close()
    }
    assert.equal(await metric('patina_api_connections_total', { protocol: 'h2c' }), h2Before + 1)
    assert.ok((await metric('patina_api_connections_total', { protocol: 'http1' })) > h1Before)
  })

  it('h2c - errors answer with their status and JSON code', async () => {
    const s = session()
    try {
      const bad = await request(s, 'POST', '/v1/queries', 'SELECT * FROM no_such_table')
      assert.equal(bad.status, statusOf('SQL_ERROR'))
      assert.equal((JSON.parse(bad.body) as { code: string }).code, 'SQL_ERROR')
      const missing = await request(s, 'GET', '/v1/nope')
      assert.equal(missing.status, 404)
      assert.equal((JSON.parse(missing.body) as { code: string }).code, 'ROUTE_NOT_FOUND')
      const method = await request(s, 'GET', '/v1/transactions')
      assert.equal(method.status, statusOf('METHOD_NOT_ALLOWED'))
      assert.equal(method.headers.allow, 'POST')
      const tx = await request(s, 'POST', '/v1/transactions', [['INSERT INTO nope VALUES (1)']])
      assert.equal(tx.status, statusOf('SQL_ERROR'))
      assert.equal((JSON.parse(tx.body) as { code: string }).code, 'SQL_ERROR')
    } finally {
      s.close()
    }
  })

  it('h2c - a subscription receives a change made after it started', async () => {
    const s = session()
    try {
      const stream = send(s, 'POST', '/v1/subscriptions', 'SELECT id, v FROM t')
      const headers = await new Promise<Record<string, unknown>>((resolve) => {
        stream.once('response', resolve)
      })
      assert.equal(headers[':status'], 200)
      assert.equal(typeof headers['corro-query-id'], 'string')
      assert.equal(headers.connection, undefined)
      let text = ''
      stream.setEncoding('utf8')
      stream.on('data', (d: string) => {
        text += d
      })
      await until('the initial rows', () => text.includes('"eoq"'))
      const u = await fetch(`${base}/v1/transactions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify([['INSERT INTO t (id, v) VALUES (3, ?)', ['three']]]),
      })
      assert.equal(u.status, 200)
      await until('the change', () => text.includes('"change"'))
      assert.match(text, /\{"change":\["insert",\d+,\[3,"three"\],\d+\]\}/)
      stream.close()
    } finally {
      s.close()
    }
  })

  it('h2c - a client that does not read stalls its query answer at the buffer cap', async (t) => {
    const pausesBefore = await metric('patina_api_response_pauses_total')
    const s = session()
    try {
      // About 100 MB if it were all produced.
      const stream = send(
        s,
        'POST',
        '/v1/queries',
        'WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 100000) ' +
          "SELECT i, printf('%.1000c', 'x') FROM c",
      )
      await new Promise((resolve) => stream.once('response', resolve))
      stream.pause()
      await until('the answer to pause', async () => {
        return (await metric('patina_api_response_pauses_total')) > pausesBefore
      })
      // Settled: held there, not growing.
      let max = 0
      for (let i = 0; i < 20; i++) {
        max = Math.max(max, await metric('patina_api_response_buffered_bytes'))
        await sleep(20)
      }
      // The cap + a 64 KiB chunk in the body, the stream's 16 KiB buffer + a chunk, one row.
      const bound = BUFFER_CAP + 3 * 64 * 1024 + 16 * 1024 + 2048
      t.diagnostic(`buffered at most ${max} bytes (cap ${BUFFER_CAP}, bound ${bound})`)
      assert.ok(max > 0, 'the answer holds bytes')
      assert.ok(max <= bound, `buffered ${max} bytes, bound ${bound}`)
      // A paused client stream never closes on its own (its data is unread): cut it.
      stream.destroy()
    } finally {
      s.destroy()
    }
    await until('the answer to let go', async () => {
      return (await metric('patina_api_response_buffered_bytes')) === 0
    })
  })

  it('h2c - curl --http2-prior-knowledge: health and a query', async (t) => {
    // Asynchronously: the agent answers on this process's event loop.
    const curl = (...args: string[]): Promise<{ code: number | null; out: string; err: string }> =>
      new Promise((resolve) => {
        const child = spawn('curl', args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 })
        let out = ''
        let err = ''
        child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
        child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d))
        child.on('error', (e) => {
          resolve({ code: null, out, err: e.message })
        })
        child.on('close', (code) => {
          resolve({ code, out, err })
        })
      })
    const version = await curl('--version')
    if (version.code !== 0 || !/nghttp2/.test(version.out)) {
      t.skip(`curl with HTTP/2 (nghttp2) is not available: ${version.err || version.out}`)
      return
    }
    const h2 = async (...args: string[]): Promise<string> => {
      const r = await curl('-sS', '-i', '--http2-prior-knowledge', ...args)
      assert.equal(r.code, 0, r.err)
      return r.out
    }
    const health = await h2(`${base}/v1/health`)
    assert.match(health, /^HTTP\/2 200/)
    assert.match(health, /"response":\{"gaps":0,/)
    const query = await h2(
      '-H',
      'content-type: application/json',
      '--data',
      '"SELECT v FROM t WHERE id = 1"',
      `${base}/v1/queries`,
    )
    assert.match(query, /^HTTP\/2 200/)
    assert.match(query, /\{"row":\[1,\["one"\]\]\}/)
  })

  it('h2c - a request whose body does not arrive within request_timeout_ms gets 408 REQUEST_TIMEOUT', async () => {
    const s = session()
    try {
      const stream = s.request({
        ':method': 'POST',
        ':path': '/v1/transactions',
        'content-type': 'application/json',
        'content-length': '100',
      })
      stream.write('[["INSERT')
      const started = Date.now()
      const r = await Promise.race([
        answer(stream),
        sleep(HEADERS_TIMEOUT_MS + 3000).then(() =>
          assert.fail('no answer to the stalled request'),
        ),
      ])
      const ms = Date.now() - started
      assert.equal(r.status, 408, r.body)
      assert.equal((JSON.parse(r.body) as { code: string }).code, 'REQUEST_TIMEOUT')
      assert.ok(ms < HEADERS_TIMEOUT_MS + 2000, `answered after ${ms} ms`)
      await until(
        'its stream closed on the agent',
        async () => (await metric('patina_api_h2_streams')) === 0,
      )
    } finally {
      s.close()
    }
  })

  it('h2c - idle sessions are closed: none opened after headers_timeout_ms, none open after keep_alive_timeout_ms', async () => {
    const silent = session()
    const idle = session()
    try {
      const goaway = (s: ClientHttp2Session) =>
        new Promise<number>((resolve) => {
          const started = Date.now()
          s.once('close', () => {
            resolve(Date.now() - started)
          })
        })
      const silentClosed = goaway(silent)
      const r = await request(idle, 'GET', '/v1/health')
      assert.equal(r.status, 200)
      const idleClosed = goaway(idle)
      const [silentMs, idleMs] = await Promise.all([silentClosed, idleClosed])
      assert.ok(silentMs < HEADERS_TIMEOUT_MS + 2000, `silent session closed after ${silentMs} ms`)
      assert.ok(idleMs < KEEP_ALIVE_TIMEOUT_MS + 2000, `idle session closed after ${idleMs} ms`)
    } finally {
      silent.destroy()
      idle.destroy()
    }
    await until('no h2 session open', async () => (await metric('patina_api_h2_sessions')) === 0)
  })

  it('h2c - stopping the agent sends GOAWAY and ends an open subscription stream', async () => {
    const s = session()
    const gotGoaway = new Promise<void>((resolve) =>
      s.once('goaway', () => {
        resolve()
      }),
    )
    const stream = send(s, 'POST', '/v1/subscriptions', 'SELECT id FROM t')
    await new Promise((resolve) => stream.once('response', resolve))
    stream.resume()
    const ended = new Promise<void>((resolve) =>
      stream.once('close', () => {
        resolve()
      }),
    )
    const started = Date.now()
    await h.close()
    const ms = Date.now() - started
    await Promise.all([gotGoaway, ended])
    s.destroy()
    assert.ok(ms < 5000, `the agent stopped in ${ms} ms`)
  })
})
