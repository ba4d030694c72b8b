/**
 * Goal: an unbounded write transaction cannot freeze a real agent: with `[perf] sql_tx_timeout`
 * each one is answered 408 TRANSACTION_TIMEOUT after the timeout, the agent answers /v1/health
 * within the timeout + 1 s of a request's start, its peer never marks it down while it is sent
 * such transactions back to back, and SIGTERM during one stops it within a few seconds.
 *
 * Method: two `patina agent` processes (agents.ts) on free ports, `sql_tx_timeout = 1` on the
 * target; the statement is `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)
 * SELECT count(*) FROM c`, which never ends by itself. While ROUNDS of them run one after the
 * other, the test polls the peer's /v1/members (the target must never be `down`; a frozen
 * agent is down after about 5 s with two members) and, during each, the target's /v1/health.
 * Then one more, and SIGTERM (by PID) while it runs.
 */
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  writeAgent,
  buildAgent,
  startAgent,
  stopAgent,
  waitFor,
  type AgentProcess,
} from './agents.ts'
import { freePorts } from './ports.ts'

const TIMEOUT_S = 1
const ROUNDS = 4
const UNBOUNDED =
  'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c'
/** A shutdown that waits for one transaction, then stops the agent. */
const SIGTERM_EXIT_MS = 5000

interface Member {
  addr: string
  state: string
}

let dir = ''
const agents: AgentProcess[] = []

function agent(i: number): AgentProcess {
  const n = agents[i]
  assert.ok(n !== undefined)
  return n
}

before(async () => {
  buildAgent()
  dir = mkdtempSync(join(tmpdir(), 'patina-e2e-txtimeout-'))
  writeFileSync(
    join(dir, 'schema.sql'),
    'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT);\n',
  )
  const ports = await freePorts(4)
  for (const [i, name] of ['target', 'peer'].entries()) {
    mkdirSync(join(dir, name))
    const [apiPort, gossipPort] = [ports[2 * i] ?? 0, ports[2 * i + 1] ?? 0]
    const extra = i === 0 ? ['[perf]', `sql_tx_timeout = ${TIMEOUT_S}`] : []
    const bootstrap = i === 0 ? [] : [ports[1] ?? 0]
    agents.push(writeAgent(dir, { name, apiPort, gossipPort, bootstrap, schema: true, extra }))
  }
  await Promise.all(agents.map(startAgent))
})

after(async () => {
  for (const n of agents) await stopAgent(n, 'SIGKILL').catch(() => undefined)
  if (dir !== '') rmSync(dir, { recursive: true, force: true })
})

async function stateOfTarget(): Promise<string> {
  const res = await fetch(`${agent(1).api}/v1/members`, { signal: AbortSignal.timeout(2000) })
  const list = (await res.json()) as Member[]
  return list.find((m) => m.addr === `127.0.0.1:${agent(0).gossipPort}`)?.state ?? 'absent'
}

function postUnbounded(): Promise<Response> {
  return fetch(`${agent(0).api}/v1/transactions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify([[UNBOUNDED]]),
    signal: AbortSignal.timeout(30_000),
  })
}

describe('e2e - [perf] sql_tx_timeout on a real agent', () => {
  it('e2e - unbounded transactions time out; health answers; the peer never marks it down', async () => {
    await waitFor(
      'the peer lists the target alive',
      15_000,
      async () => (await stateOfTarget()) === 'alive',
      stateOfTarget,
    )
    const seen = new Set<string>()
    let polling = true
    const poller = (async () => {
      while (polling) {
        seen.add(await stateOfTarget().catch((err: unknown) => `unanswered: ${String(err)}`))
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    })()
    try {
      for (let i = 0; i < ROUNDS; i++) {
        const started = performance.now()
        const tx = postUnbounded()
        // Issued while the transaction runs: answered once it is interrupted.
        const health = await fetch(`${agent(0).api}/v1/health`, {
          signal: AbortSignal.timeout(TIMEOUT_S * 1000 + 1000),
        })
        const healthMs = performance.now() - started
        assert.equal(health.status, 200)
        const res = await tx
        const body = (await res.json()) as { code?: string }
        assert.equal(res.status, 408, JSON.stringify(body))
        assert.equal(body.code, 'TRANSACTION_TIMEOUT')
        assert.ok(healthMs < TIMEOUT_S * 1000 + 1000, `health after ${healthMs.toFixed(0)} ms`)
      }
      await new Promise((resolve) => setTimeout(resolve, 500))
    } finally {
      polling = false
      await poller
    }
    assert.ok(!seen.has('down'), `the peer saw the target as: ${[...seen].join(', ')}`)
    assert.equal(await stateOfTarget(), 'alive')
    process.stdout.write(`# target as the peer saw it: ${[...seen].join(', ')}\n`)
  })

  it('e2e - SIGTERM during an unbounded transaction stops the agent', async () => {
    const target = agent(0)
    const tx = postUnbounded().catch((err: unknown) => err)
    await new Promise((resolve) => setTimeout(resolve, 300))
    const started = performance.now()
    await stopAgent(target, 'SIGTERM', SIGTERM_EXIT_MS)
    process.stdout.write(`# exit after SIGTERM: ${Math.round(performance.now() - started)} ms\n`)
    assert.equal(target.child?.exitCode, 0, target.output)
    await tx
  })
})
