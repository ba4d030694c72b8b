/**
 * Goal: the client against real agents: transactions round-trip every SQLite type exactly
 * (64-bit integers, 1.0 as REAL, text, blobs, null); SQL errors come back as typed errors with
 * the agent's message; queries stream many rows and stop on abort; calls fail over from a dead
 * or hung agent (transactions only when they certainly did not run) and spread over live ones.
 *
 * Method: two `patina agent` processes from the built bin (helpers/agent.ts), each its own
 * cluster with the same schema, so where a write landed is visible by asking each agent alone.
 * "Down" is a port nothing listens on; "hung" is a TCP server that accepts and never answers;
 * "busy" and "failing" are small HTTP servers answering 503 + Retry-After, 500 or 502 as the
 * agent or a proxy would. A counting wrapper around fetch shows what was (not) sent.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import {
  AbortError,
  ConnectionError,
  createClient,
  InvalidStatementError,
  OutcomeUnknownError,
  PatinaHttpError,
  real,
  TransactionError,
  type ClientEvent,
  type PatinaClient,
} from '../src/index.ts'
import { freePort } from '../../agent/test/e2e/ports.ts'
import { blackhole, startAgent, type Agent } from './helpers/agent.ts'
import { drain, json, lines, ndjson, testServer } from './helpers/http-server.ts'

const CHILD = fileURLToPath(new URL('fixtures/close-child.ts', import.meta.url))
/** How soon after close() the child must have exited on its own. */
const EXIT_BOUND_MS = 3000

/** Rows the streaming test reads (about 0.5 s at the agent's measured 150k rows/s). */
const MANY_ROWS = 50_000
const MANY_ROWS_SQL =
  `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${MANY_ROWS}) ` +
  "SELECT x, 'row ' || x AS label FROM c"

let a: Agent
let b: Agent
const clients: PatinaClient[] = []

function client(...args: Parameters<typeof createClient>): PatinaClient {
  const c = createClient(...args)
  clients.push(c)
  return c
}

async function count(url: string, table: string): Promise<number> {
  const c = client({ url })
  for await (const row of c.query<{ n: number }>(`SELECT count(*) AS n FROM ${table}`)) {
    return row.n
  }
  throw new Error('no row')
}

before(async () => {
  ;[a, b] = await Promise.all([startAgent('a'), startAgent('b')])
})

after(async () => {
  await Promise.all(clients.map((c) => c.close()))
  await Promise.all([a.stop(), b.stop()])
})

describe('client - against a real agent', () => {
  it('client - a transaction round-trips 64-bit integers, reals, text, blobs and null', async () => {
    const c = client({ url: a.url })
    const blob = new Uint8Array([0, 1, 127, 128, 255])
    const res = await c.transaction([
      [
        'INSERT INTO kv (k, n, r, s, b) VALUES (?, ?, ?, ?, ?)',
        ['max', 9223372036854775807n, real(1), 'héllo ✓ "quoted"', blob],
      ],
      [
        'INSERT INTO kv (k, n, r, s, b) VALUES (:k, :n, :r, :s, :b)',
        {
          ':k': 'min',
          n: -9223372036854775808n,
          '@r': 2.5e-7,
          $s: '',
          b: new Uint8Array([]),
        },
      ],
      {
        query: 'INSERT INTO kv (k, n, r, s, b) VALUES (?, ?, ?, ?, ?)',
        params: ['edge', 2n ** 53n + 1n, 1e300, null, null],
      },
      "INSERT INTO kv (k, n) VALUES ('small', 42)",
    ])
    assert.equal(typeof res.version, 'number')
    assert.ok(res.version !== null && res.version >= 1)
    assert.match(res.actorId, /^[0-9a-f]{32}$/)
    assert.deepEqual(
      res.results.map((r) => r.rowsAffected),
      [1, 1, 1, 1],
    )
    const rows: Record<string, unknown>[] = []
    for await (const row of c.query<{ k: string; n: number | bigint | null; r: number | null }>(
      'SELECT k, n, r, s, b, typeof(n) AS tn, typeof(r) AS tr FROM kv ORDER BY k',
    )) {
      rows.push(row)
    }
    assert.deepEqual(rows, [
      { k: 'edge', n: 9007199254740993n, r: 1e300, s: null, b: null, tn: 'integer', tr: 'real' },
      {
        k: 'max',
        n: 9223372036854775807n,
        r: 1,
        s: 'héllo ✓ "quoted"',
        b: blob,
        tn: 'integer',
        tr: 'real',
      },
      {
        k: 'min',
        n: -9223372036854775808n,
        r: 2.5e-7,
        s: '',
        b: new Uint8Array([]),
        tn: 'integer',
        tr: 'real',
      },
      { k: 'small', n: 42, r: null, s: null, b: null, tn: 'integer', tr: 'null' },
    ])
    // A transaction that changes nothing has no version.
    const noop = await c.transaction(["UPDATE kv SET n = 0 WHERE k = 'nope'"])
    assert.equal(noop.version, null)
    assert.deepEqual(
      noop.results.map((r) => r.rowsAffected),
      [0],
    )
  })

  it("client - ['SQL'] is a statement without parameters in transaction, query and subscribe", async () => {
    // docs/client.md's first example writes ["UPDATE ... WHERE id = 'h1'"] like this.
    const c = client({ url: a.url })
    const one = await c.transaction([["INSERT INTO t (id, v) VALUES (4242, 'one element')"]])
    assert.deepEqual(
      one.results.map((r) => r.rowsAffected),
      [1],
    )
    const mixed = await c.transaction([
      ['INSERT INTO t (id, v) VALUES (?, ?)', [4243, 'two elements']],
      ["UPDATE t SET v = 'updated' WHERE id = 4242"],
    ])
    assert.deepEqual(
      mixed.results.map((r) => r.rowsAffected),
      [1, 1],
    )
    const rows: unknown[] = []
    for await (const row of c.query(['SELECT id, v FROM t WHERE id IN (4242, 4243) ORDER BY id'])) {
      rows.push(row)
    }
    assert.deepEqual(rows, [
      { id: 4242, v: 'updated' },
      { id: 4243, v: 'two elements' },
    ])
    await using sub = await c.subscribe<{ id: number }>(['SELECT id FROM t WHERE id = 4242'])
    const events: string[] = []
    for await (const event of sub) {
      events.push(event.type === 'row' ? `row ${event.row.id}` : event.type)
      if (event.type === 'eoq') break
    }
    assert.deepEqual(events, ['columns', 'row 4242', 'eoq'])
  })

  it("client - integers: 'bigint' gives every INTEGER as a bigint and keeps REALs numbers", async () => {
    const c = client({ url: a.url, integers: 'bigint' })
    const rows = []
    for await (const row of c.query("SELECT n, r FROM kv WHERE k IN ('small', 'max') ORDER BY k")) {
      rows.push(row)
    }
    assert.deepEqual(rows, [
      { n: 9223372036854775807n, r: 1 },
      { n: 42n, r: null },
    ])
  })

  it("client - a failed statement throws TransactionError with the agent's message; nothing applies", async () => {
    const events: ClientEvent[] = []
    const c = client({ url: a.url, onEvent: (e) => events.push(e) })
    const err = await c
      .transaction([
        "INSERT INTO t (id, v) VALUES (1000, 'first')",
        "INSERT INTO kv (k) VALUES ('max')",
      ])
      .then(
        () => assert.fail('the transaction should fail'),
        (e: unknown) => e,
      )
    assert.ok(err instanceof TransactionError, String(err))
    assert.ok(err instanceof PatinaHttpError)
    assert.equal(err.code, 'TRANSACTION_FAILED')
    assert.equal(err.status, 400)
    assert.equal(err.url, a.url)
    assert.match(err.message, /UNIQUE constraint failed: kv\.k/)
    assert.equal(err.results[0]?.error, err.message)
    assert.deepEqual(
      events.map((e) => e.type === 'request-failed' && e.retrying),
      [false],
    )
    assert.equal(await count(a.url, 't WHERE id = 1000'), 0)
  })

  it("client - a bad query throws PatinaHttpError 400 with SQLite's message; a write is refused", async () => {
    const c = client({ url: a.url })
    const run = async (sql: string) => {
      await drain(c.query(sql))
    }
    await assert.rejects(
      run('SELECT nope FROM t'),
      (err: unknown) =>
        err instanceof PatinaHttpError &&
        err.status === 400 &&
        err.code === 'BAD_REQUEST' &&
        /no such column: nope/.test(err.message),
    )
    await assert.rejects(
      run('INSERT INTO t (id) VALUES (5)'),
      (err: unknown) => err instanceof PatinaHttpError && err.status === 400,
    )
  })

  it('client - an unencodable parameter is refused before anything is sent', async () => {
    let sent = 0
    const c = client({
      url: a.url,
      fetch: (input, init) => {
        sent++
        return fetch(input, init)
      },
    })
    await assert.rejects(
      c.transaction([['INSERT INTO t (id, v) VALUES (?, ?)', [1, undefined as unknown as null]]]),
      (err: unknown) =>
        err instanceof InvalidStatementError &&
        err.message === 'statement 1, parameter 2: undefined is not a SQL value; use null',
    )
    assert.throws(() => c.query(['SELECT ?', [2 ** 60]]), InvalidStatementError)
    await assert.rejects(c.subscribe(['SELECT ?', [{}]] as never), InvalidStatementError)
    assert.equal(sent, 0)
  })

  it(`client - a query streams ${MANY_ROWS} rows in order`, async () => {
    const c = client({ url: a.url })
    const started = performance.now()
    let n = 0
    for await (const row of c.query<{ x: number; label: string }>(MANY_ROWS_SQL)) {
      n++
      if (row.x !== n || row.label !== `row ${n}`) assert.fail(`row ${n}: ${JSON.stringify(row)}`)
    }
    assert.equal(n, MANY_ROWS)
    process.stdout.write(`# ${MANY_ROWS} rows in ${Math.round(performance.now() - started)} ms\n`)
  })

  it('client - aborting mid-query stops the stream with AbortError; breaking out releases it', async () => {
    const c = client({ url: a.url })
    const controller = new AbortController()
    let n = 0
    await assert.rejects(
      (async () => {
        for await (const row of c.query(MANY_ROWS_SQL, { signal: controller.signal })) {
          assert.equal(row.x, ++n)
          if (n === 1000) controller.abort(new Error('enough'))
        }
      })(),
      (err: unknown) => err instanceof AbortError && /enough/.test(err.message),
    )
    assert.equal(n, 1000)
    for await (const row of c.query(MANY_ROWS_SQL)) {
      assert.equal(row.x, 1)
      break
    }
    // An already aborted signal: nothing starts.
    await assert.rejects(c.transaction(['SELECT 1'], { signal: AbortSignal.abort() }), AbortError)
    assert.equal(await count(a.url, 't'), await count(a.url, 't'))
  })

  it('client - failover: with the first agent down every call succeeds on the second', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`
    const events: ClientEvent[] = []
    const c = client({ urls: [dead, b.url], onEvent: (e) => events.push(e) })
    for (let i = 0; i < 4; i++) {
      const res = await c.transaction([['INSERT INTO t (id, v) VALUES (?, ?)', [2000 + i, 'f']]])
      assert.equal(typeof res.version, 'number')
      let rows = 0
      for await (const row of c.query(['SELECT id FROM t WHERE id = ?', [2000 + i]])) {
        assert.deepEqual(row, { id: 2000 + i })
        rows++
      }
      assert.equal(rows, 1)
    }
    const failed = events.filter((e) => e.type === 'request-failed')
    assert.ok(failed.length >= 1, 'the dead agent was tried at least once')
    for (const e of failed) {
      assert.ok(e.url === dead && e.retrying)
      assert.match(
        e.error.message + String((e.error.cause as Error | undefined)?.message),
        /ECONNREFUSED/,
      )
    }
    assert.equal(await count(b.url, 't WHERE id >= 2000 AND id < 2004'), 4)

    // Nothing up: ConnectionError naming each agent and why, after the bounded attempts.
    const none = client({ urls: [dead], retry: { attempts: 2, baseDelayMs: 1 } })
    await assert.rejects(none.transaction(['SELECT 1']), (err: unknown) => {
      assert.ok(err instanceof ConnectionError, String(err))
      assert.equal(err.code, 'CONNECTION_FAILED')
      assert.equal(err.failures.length, 2)
      assert.match(err.message, new RegExp(`${dead}: connection refused \\(ECONNREFUSED\\)`))
      return true
    })
  })

  it('client - load spreads round robin over two live agents', async () => {
    const c = client({ urls: [a.url, b.url] })
    const before = [await count(a.url, 't'), await count(b.url, 't')]
    for (let i = 0; i < 20; i++) {
      await c.transaction([['INSERT INTO t (id, v) VALUES (?, ?)', [3000 + i, 'spread']]])
    }
    const gained = [
      (await count(a.url, 't')) - (before[0] ?? 0),
      (await count(b.url, 't')) - (before[1] ?? 0),
    ]
    assert.deepEqual(gained, [10, 10])
  })

  it('client - a hung agent: reads fail over after timeoutMs, a transaction is OutcomeUnknownError', async () => {
    const hung = await blackhole()
    try {
      const events: ClientEvent[] = []
      const c = client({ urls: [hung.url, a.url], timeoutMs: 300, onEvent: (e) => events.push(e) })
      for (let i = 0; i < 2; i++) {
        let rows = 0
        for await (const row of c.query('SELECT 1 AS one')) {
          assert.deepEqual(row, { one: 1 })
          rows++
        }
        assert.equal(rows, 1)
      }
      const timeouts = events.filter(
        (e) => e.type === 'request-failed' && e.url === hung.url && e.error.name === 'TimeoutError',
      )
      assert.equal(timeouts.length, 1, 'the hung agent was tried once, then passed over')

      const only = client({ urls: [hung.url], timeoutMs: 300 })
      await assert.rejects(
        only.transaction(['INSERT INTO t (id) VALUES (4000)']),
        (err: unknown) =>
          err instanceof OutcomeUnknownError &&
          err.url === hung.url &&
          /may or may not have been applied/.test(err.message),
      )
    } finally {
      await hung.close()
    }
  })

  it('client - 503 with Retry-After: the next agent takes the call, transactions included', async () => {
    const busy = await testServer((_req, res) => {
      json(res, 503, '{"error":"too many transactions in flight (64); retry later"}', {
        'retry-after': '2',
      })
    })
    try {
      const c = client({ urls: [busy.url, a.url] })
      for (let i = 0; i < 6; i++) {
        await c.transaction([['INSERT INTO t (id, v) VALUES (?, ?)', [5000 + i, 'busy']]])
      }
      assert.ok(busy.requests.length <= 1, `the busy agent got ${busy.requests.length} requests`)
      assert.equal(await count(a.url, 't WHERE id >= 5000 AND id < 5006'), 6)
      // Alone it answers with the agent's message once attempts run out.
      const alone = client({ urls: [busy.url], retry: { attempts: 2, maxDelayMs: 10 } })
      await assert.rejects(
        alone.transaction(['SELECT 1']),
        (err: unknown) =>
          err instanceof PatinaHttpError &&
          err.status === 503 &&
          err.code === 'UNAVAILABLE' &&
          err.retryAfterMs === 2000 &&
          /too many transactions in flight/.test(err.message),
      )
    } finally {
      await busy.close()
    }
  })

  it('client - a transaction answered 500 or 502 is not retried; a query is', async () => {
    let status = 500
    const failing = await testServer((_req, res) => {
      if (status === 500) {
        json(
          res,
          500,
          '{"error":"disk I/O error","results":[{"error":"disk I/O error"}],"version":null}',
        )
      } else {
        json(res, 502, '<html>bad gateway</html>')
      }
    })
    try {
      const c = client({ urls: [failing.url, a.url] })
      // Whichever agent the round robin starts with, a transaction sent to the failing one
      // throws; count how often that happens against how often it reached the failing agent.
      let thrown = 0
      for (let i = 0; i < 4; i++) {
        status = i % 2 === 0 ? 500 : 502
        const before = failing.requests.length
        try {
          await c.transaction([['INSERT INTO t (id) VALUES (?)', [6000 + i]]])
          assert.equal(failing.requests.length, before, 'a success never passed the failing agent')
        } catch (err) {
          thrown++
          assert.equal(failing.requests.length, before + 1)
          if (status === 500) {
            assert.ok(err instanceof TransactionError, String(err))
            assert.equal(err.status, 500)
            assert.equal(err.message, 'disk I/O error')
          } else {
            assert.ok(err instanceof OutcomeUnknownError, String(err))
            assert.ok(err.cause instanceof PatinaHttpError && err.cause.code === 'BAD_GATEWAY')
          }
        }
      }
      assert.equal(thrown, failing.requests.length)
      const before = failing.requests.length
      for (let i = 0; i < 4; i++) {
        for await (const row of c.query('SELECT 1 AS one')) assert.deepEqual(row, { one: 1 })
      }
      assert.ok(failing.requests.length - before <= 1)
    } finally {
      await failing.close()
    }
  })

  it('client - close() leaves no handles: a process that used a client exits by itself', async () => {
    const subs = await testServer((req, res) => {
      ndjson(res, 'child-sub')
      if (req.path === '/v1/subscriptions') {
        lines(res, '{"columns":["one"]}', '{"row":[1,[1]]}', '{"eoq":{"time":0,"change_id":1}}')
        // Cut it: the child's subscription then waits in its 60 s resume backoff.
        setTimeout(() => res.destroy(), 20)
      } else {
        lines(res, '{"notify":["update",[1]]}')
      }
    })
    try {
      const dead = `http://127.0.0.1:${await freePort()}`
      const child = spawn(process.execPath, ['--import', 'tsx', CHILD, a.url, subs.url, dead], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let out = ''
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
      let closedAt = 0
      child.stdout.on('data', () => {
        if (closedAt === 0 && out.includes('closed\n')) closedAt = performance.now()
      })
      const code = await new Promise<number | null>((resolve, reject) => {
        const timer = setTimeout(() => {
          if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
          reject(new Error(`the child did not exit by itself:\n${out}`))
        }, 20_000)
        child.once('exit', (c) => {
          clearTimeout(timer)
          resolve(c)
        })
      })
      assert.equal(code, 0, out)
      assert.ok(closedAt > 0, out)
      const lingered = performance.now() - closedAt
      assert.ok(lingered < EXIT_BOUND_MS, `exited ${Math.round(lingered)} ms after close()`)
    } finally {
      await subs.close()
    }
  })
})
