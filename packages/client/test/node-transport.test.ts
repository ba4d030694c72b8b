/**
 * Goal: in Node the client sends over a keep-alive connection pool of its own (undici), not
 * fetch (docs/client.md, "Transport"): concurrent calls reuse a bounded set of connections,
 * many calls in flight raise no listener-leak warning, a streamed answer is read as the caller
 * asks (backpressure), and `close()` closes the pool.
 *
 * Method: a real node:http server on 127.0.0.1 (helpers/http-server.ts) that records which
 * socket each request came on. The global fetch is replaced for the duration of each test by
 * one that throws, so a request that still went through fetch fails the test.
 */
import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import { afterEach, beforeEach, describe, it } from 'node:test'
import { createClient } from '../src/index.ts'
import { json, lines, ndjson, testServer, until, type TestServer } from './helpers/http-server.ts'

const TX_ANSWER = JSON.stringify({
  results: [{ rows_affected: 1, time: 0.00001 }],
  time: 0.00002,
  version: 7,
  actor_id: '00',
})

let server: TestServer | undefined
const sockets = new Set<Socket>()
const realFetch = globalThis.fetch
let fetchCalls = 0

beforeEach(async () => {
  sockets.clear()
  fetchCalls = 0
  globalThis.fetch = () => {
    fetchCalls++
    return Promise.reject(new Error('the Node entry must not call fetch'))
  }
  server = await testServer((req, res, raw) => {
    sockets.add(raw.socket)
    if (req.path === '/v1/transactions') json(res, 200, TX_ANSWER)
    else json(res, 404, '{"error":"no such route","code":"NOT_FOUND"}')
  })
})

afterEach(async () => {
  globalThis.fetch = realFetch
  await server?.close()
})

describe('the Node transport', () => {
  it('sends over a keep-alive pool: rounds of concurrent calls reuse the same connections', async () => {
    const s = server as TestServer
    const client = createClient({ url: s.url })
    const CONCURRENT = 16
    const ROUNDS = 5
    try {
      for (let r = 0; r < ROUNDS; r++) {
        const answers = await Promise.all(
          Array.from({ length: CONCURRENT }, (_, i) =>
            client.transaction([['INSERT INTO t (id) VALUES (?)', [r * CONCURRENT + i]]]),
          ),
        )
        assert.deepEqual(
          answers.map((a) => a.version),
          Array.from({ length: CONCURRENT }, () => 7),
        )
        // undici sees a connection free again one tick after its answer; a round sent in the
        // same tick opens new ones (docs/client.md, "Transport").
        await new Promise((resolve) => setImmediate(resolve))
      }
    } finally {
      await client.close()
    }
    assert.equal(fetchCalls, 0)
    assert.equal(s.requests.length, CONCURRENT * ROUNDS)
    assert.ok(
      sockets.size <= CONCURRENT,
      `${CONCURRENT * ROUNDS} requests came on ${sockets.size} connections, ` +
        `more than the ${CONCURRENT} in flight`,
    )
    // close() closed the pool's connections.
    await until('the pool connections close', () => [...sockets].every((k) => k.destroyed), 2000)
  })

  it('raises no listener-leak warning with 32 calls in flight (pool, or a fetch option)', async () => {
    const warnings: Error[] = []
    const onWarning = (w: Error): void => {
      warnings.push(w)
    }
    process.on('warning', onWarning)
    const url = (server as TestServer).url
    const clients = [createClient({ url }), createClient({ url, fetch: realFetch })]
    try {
      for (const client of clients) {
        await Promise.all(
          Array.from({ length: 32 }, (_, i) =>
            client.transaction([['INSERT INTO t (id) VALUES (?)', [i]]]),
          ),
        )
      }
      // Warnings are emitted on a later tick.
      await new Promise((resolve) => setImmediate(resolve))
    } finally {
      process.off('warning', onWarning)
      await Promise.all(clients.map((c) => c.close()))
    }
    assert.deepEqual(
      warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message),
      [],
    )
  })

  it('reads a streamed answer as the caller asks (backpressure), then stops it on break', async () => {
    const s = server as TestServer
    const ROW = `{"row":[1,["${'x'.repeat(1000)}"]]}`
    const CAP_BYTES = 64 * 2 ** 20
    let written = 0
    let ended = false
    s.handler = (_req, res) => {
      ndjson(res)
      lines(res, '{"columns":["v"]}')
      // Writes while the connection takes it, up to CAP_BYTES; resumes on 'drain'.
      const pump = (): void => {
        while (written < CAP_BYTES && !res.destroyed) {
          written += ROW.length + 1
          if (!res.write(`${ROW}\n`)) {
            res.once('drain', pump)
            return
          }
        }
      }
      res.on('close', () => (ended = true))
      pump()
    }
    const client = createClient({ url: s.url })
    try {
      let rows = 0
      for await (const row of client.query<{ v: string }>('SELECT v FROM t')) {
        assert.equal(row.v.length, 1000)
        rows++
        if (rows === 1) {
          // The caller is busy: the server must be held back by the connection, far below the cap.
          await new Promise((resolve) => setTimeout(resolve, 300))
          assert.ok(
            written < CAP_BYTES / 4,
            `the server wrote ${written} bytes ahead of the reader`,
          )
        }
        if (rows === 2000) break
      }
      assert.equal(rows, 2000)
      await until('the server sees the stream end', () => ended, 2000)
      assert.ok(written < CAP_BYTES, 'the stream was stopped before the server ran out')
    } finally {
      await client.close()
    }
    assert.equal(fetchCalls, 0)
  })
})
