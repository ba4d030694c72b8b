/**
 * Goal: POST /v1/transactions with a statement that runs past `[perf] sql_tx_timeout` answers
 * 408 TRANSACTION_TIMEOUT in Corrosion's transaction-error shape, promptly, having changed
 * nothing; the agent answers /v1/health right after, the next transaction commits, and
 * /metrics says the deadline is on (patina_sql_deadline_enabled 1). Without the key the timeout
 * is SQL_TX_TIMEOUT_MS.
 *
 * Method: an in-process agent (harness.ts openApi) with `sql_tx_timeout = 0.5`, driven through
 * inject(). The long statement is a recursive CTE bounded at some seconds of work (before
 * deadlines existed this test failed after those seconds instead of hanging; the unbounded CTE
 * against a real process is test/e2e/tx-timeout.test.ts).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { SQL_TX_TIMEOUT_MS } from '../../src/config/defaults.ts'
import { parseConfig } from '../../src/config/load-config.ts'
import { inject, openApi, postJson, state, tx, type ApiHarness } from './harness.ts'

const TIMEOUT_S = 0.5
/** How late past the deadline the answer may come (a shared, loaded machine). */
const MARGIN_MS = 500
const LONG_CTE =
  'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000000) ' +
  'SELECT count(*) FROM c'

describe('api - [perf] sql_tx_timeout', () => {
  let h: ApiHarness
  before(async () => {
    h = await openApi(`[perf]\nsql_tx_timeout = ${TIMEOUT_S}\n`)
  })
  after(async () => {
    await h.close()
  })

  it('api - a transaction past the timeout answers 408 TRANSACTION_TIMEOUT and changes nothing', async () => {
    await tx(h, [["INSERT INTO t (id, v) VALUES (1, 'kept')"]])
    const before = state(h)
    const started = performance.now()
    const res = await postJson(h, '/v1/transactions', [
      "INSERT INTO t (id, v) VALUES (2, 'rolled back')",
      [LONG_CTE],
    ])
    const ms = performance.now() - started
    assert.equal(res.statusCode, 408, res.body)
    const message = `transaction ran past [perf] sql_tx_timeout (${TIMEOUT_S} s) and was rolled back`
    assert.deepEqual(res.json(), {
      error: message,
      code: 'TRANSACTION_TIMEOUT',
      results: [{ error: message }],
      version: null,
    })
    assert.ok(ms < TIMEOUT_S * 1000 + MARGIN_MS, `answered after ${ms.toFixed(0)} ms`)
    assert.deepEqual(state(h), before)

    const health = await inject(h, { method: 'GET', url: '/v1/health' })
    assert.equal(health.statusCode, 200, health.body)
    const next = await tx(h, [["INSERT INTO t (id, v) VALUES (3, 'next')"]])
    assert.equal(next.version, 2)
  })

  it('api - the default is SQL_TX_TIMEOUT_MS (3 s), read as seconds', () => {
    const { config } = parseConfig('[db]\npath = "state.db"\n', h.dir, 'test config')
    assert.equal(config.write.txTimeoutMs, SQL_TX_TIMEOUT_MS)
    assert.equal(h.config.write.txTimeoutMs, TIMEOUT_S * 1000)
  })

  it('api - /metrics shows the deadline is on', async () => {
    const res = await inject(h, { method: 'GET', url: '/metrics' })
    assert.match(res.body, /^patina_sql_deadline_enabled 1$/m)
  })
})
