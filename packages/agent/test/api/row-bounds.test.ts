/**
 * Goal: `[api] max_row_bytes` and `[api] max_response_buffer_bytes` as clients see them.
 * - /v1/queries: a row over the limit ends the answer (200, streamed) with the error event
 *   ROW_TOO_LARGE naming the key, after the rows before it; the refusals are counted.
 * - Subscriptions: one whose initial rows hold a row over the limit is refused 413
 *   ROW_TOO_LARGE; a live one whose change brings such a row fails, and its listener's stream
 *   ends with an error event ROW_TOO_LARGE.
 * - A client that does not read: its answer holds at most about max_response_buffer_bytes plus
 *   a chunk or two in the agent (patina_api_response_buffered_bytes), the answer pauses
 *   (patina_api_response_pauses_total), and every row still arrives once the client reads.
 *
 * Method: an agent built by startAgent (harness.ts openApi) with a 64 KiB row limit and a
 * 256 KiB response buffer; queries through inject(), streams and the slow client over real
 * sockets on its loopback port (node:http; the slow client pauses its response).
 */
import assert from 'node:assert/strict'
import { request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { RESPONSE_CHUNK_BYTES } from '../../src/api/query-body.ts'
import { openStream } from '../subs/harness.ts'
import { ndjsonLines, openApi, postJson, tx, type ApiHarness } from './harness.ts'

const ROW_LIMIT = 64 * 1024
const BUFFER_LIMIT = 256 * 1024
/** A socket buffers up to its high-water mark (16 KiB) before a write says it is full. */
const SOCKET_HWM = 16 * 1024

let h: ApiHarness
let base: string
before(async () => {
  h = await openApi(
    `[api]\nmax_row_bytes = ${ROW_LIMIT}\nmax_response_buffer_bytes = ${BUFFER_LIMIT}\n` +
      '[subscriptions]\nbatch_ms = 1\n',
  )
  base = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`
})
after(async () => {
  await h.close()
})

/** A metric's value, summed over the samples whose labels include `labels`. */
async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = h.metrics.registry.getSingleMetric(name)
  assert.ok(m !== undefined, `metric ${name} exists`)
  const got = await m.get()
  return got.values
    .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))
    .reduce((n, v) => n + v.value, 0)
}

/** A text whose row `[text]` is `bytes` bytes of JSON. */
const text = (bytes: number): string => 'x'.repeat(bytes - 4)

describe('api - row and response bounds', () => {
  it('/v1/queries ends with ROW_TOO_LARGE after the rows before the large one', async () => {
    const refusedBefore = await metric('patina_api_rows_too_large_total').catch(() => 0)
    const res = await postJson(h, '/v1/queries', [
      'SELECT 1 UNION ALL SELECT ? UNION ALL SELECT 3',
      [text(ROW_LIMIT + 1)],
    ])
    assert.equal(res.statusCode, 200)
    const lines = ndjsonLines(res.body)
    assert.deepEqual(lines.slice(0, 2), ['{"columns":["1"]}', '{"row":[1,[1]]}'])
    assert.equal(lines.length, 3, 'no row after the large one, and no eoq')
    assert.deepEqual(JSON.parse(lines[2] ?? ''), {
      error: 'row 2 of the result is 65,537 bytes as JSON, over [api] max_row_bytes (65,536)',
      code: 'ROW_TOO_LARGE',
    })
    assert.equal(await metric('patina_api_rows_too_large_total'), refusedBefore + 1)
    assert.equal(await metric('patina_reader_rows_too_large_total', { pool: 'queries' }), 1)

    // A row of exactly the limit is sent.
    const ok = await postJson(h, '/v1/queries', ['SELECT ?', [text(ROW_LIMIT)]])
    const okLines = ndjsonLines(ok.body)
    assert.equal(okLines.length, 3)
    assert.match(okLines[2] ?? '', /^\{"eoq":/)
  })

  it('a subscription with a row over the limit is refused, or fails with ROW_TOO_LARGE', async () => {
    await tx(h, [['INSERT INTO t (id, v) VALUES (1, ?)', [text(ROW_LIMIT * 2)]]])
    // Over a socket: a subscription that is not refused streams on and never ends.
    const refused = await openStream(base, 'POST', '/v1/subscriptions', 'SELECT id, v FROM t')
    try {
      const body = (await refused.next(5000)) as { error?: string; code?: string }
      assert.equal(refused.status, 413, JSON.stringify(body))
      assert.equal(body.code, 'ROW_TOO_LARGE')
      assert.match(body.error ?? '', /over \[api\] max_row_bytes \(65,536\)/)
    } finally {
      refused.close()
      await tx(h, ['DELETE FROM t WHERE id = 1'])
    }

    // Live: a change brings a row over the limit.
    await tx(h, [["INSERT INTO t (id, v) VALUES (2, 'small')"]])
    const s = await openStream(base, 'POST', '/v1/subscriptions', 'SELECT id, v FROM t')
    try {
      assert.equal(s.status, 200)
      for (;;) {
        const e = (await s.next()) as Record<string, unknown>
        if (e.eoq !== undefined) break
      }
      await tx(h, [['UPDATE t SET v = ? WHERE id = 2', [text(ROW_LIMIT * 2)]]])
      const last = (await s.next(5000)) as { error?: string; code?: string }
      assert.equal(last.code, 'ROW_TOO_LARGE', JSON.stringify(last))
      assert.match(last.error ?? '', /^subscription failed: .*over \[api\] max_row_bytes/)
      assert.equal(await metric('patina_reader_rows_too_large_total', { pool: 'subscriptions' }), 2)
    } finally {
      s.close()
      await tx(h, ['DELETE FROM t WHERE id = 2'])
    }
  })

  it('a client that does not read holds about max_response_buffer_bytes in the agent', async (t) => {
    const rows = 20_000
    const rowText = 1000
    const sql =
      `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${rows}) ` +
      `SELECT x, substr(hex(zeroblob(${rowText / 2})), 1, ${rowText}) FROM c`
    const pausesBefore = await metric('patina_api_response_pauses_total').catch(() => 0)
    const payload = JSON.stringify(sql)
    const chunks: Buffer[] = []
    const slow: { resume: (() => void) | null } = { resume: null }
    const done = new Promise<void>((resolve, reject) => {
      const req = request(`${base}/v1/queries`, {
        method: 'POST',
        agent: false,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
        },
      })
      req.on('error', reject)
      req.on('response', (res) => {
        res.pause()
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', resolve)
        res.on('error', reject)
        slow.resume = () => res.resume()
      })
      req.end(payload)
    })
    // The agent fills the kernel's buffers, then its own, then stops: the gauge settles.
    let buffered = 0
    let peak = 0
    let stable = 0
    for (let i = 0; i < 100 && stable < 3; i++) {
      await sleep(100)
      const now = await metric('patina_api_response_buffered_bytes')
      peak = Math.max(peak, now)
      stable = now === buffered && now > 0 ? stable + 1 : 0
      buffered = now
    }
    assert.ok(stable >= 3, `the answer's buffer settled (${buffered} bytes)`)
    assert.ok(slow.resume !== null)
    const row = rowText + 20
    const bound = BUFFER_LIMIT + 2 * (RESPONSE_CHUNK_BYTES + row) + SOCKET_HWM
    t.diagnostic(`held ${buffered} bytes once settled, at most ${peak}; bound ${bound}`)
    assert.ok(peak <= bound, `held ${peak} bytes, bound ${bound}`)
    assert.ok(buffered >= BUFFER_LIMIT / 2, `held ${buffered} bytes: the client is really slow`)
    assert.ok((await metric('patina_api_response_pauses_total')) > pausesBefore)
    assert.equal(await metric('patina_api_response_buffer_bytes_max'), BUFFER_LIMIT)

    // Reading again, the client gets everything.
    slow.resume()
    await done
    const lines = ndjsonLines(Buffer.concat(chunks).toString())
    assert.equal(lines.length, rows + 2)
    assert.equal(lines[rows], `{"row":[${rows},[${rows},"${'0'.repeat(rowText)}"]]}`)
    assert.match(lines[rows + 1] ?? '', /^\{"eoq":/)
    assert.equal(await metric('patina_api_response_buffered_bytes'), 0)
  })
})
