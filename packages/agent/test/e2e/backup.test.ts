/**
 * Goal: `patina backup` of a running agent under writes, restored (`patina restore`) into a
 * stopped second agent of the same cluster, gives an agent that converges with the first: all
 * rows equal, no acknowledged write lost (what was written after the snapshot comes by sync).
 * `patina restore` refuses while the agent of its config runs.
 *
 * Method: two real agents (agents.ts) on 127.0.0.1 with fast anti-entropy; a sequential write
 * loop on the first records every acknowledged id; the backup runs (`--json --compress`) while
 * the loop goes on; the second agent is stopped, restored, started; the loop stops; both
 * agents' ids are polled until equal (bounded). Children are killed by their PIDs in `after`.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  writeAgent,
  buildAgent,
  queryRows,
  runPatina,
  startAgent,
  stopAgent,
  waitFor,
  type AgentProcess,
} from './agents.ts'
import { freePorts } from './ports.ts'

const FORMATION_TIMEOUT_MS = 20_000
const CONVERGE_TIMEOUT_MS = 20_000
const HTTP_TIMEOUT_MS = 10_000
/** Acknowledged writes before the backup starts. */
const WRITES_BEFORE = 200
const WRITES_MAX = 20_000

let dir = ''
const agents: AgentProcess[] = []

function makeAgent(name: string, apiPort: number, gossipPort: number, seed?: number): AgentProcess {
  const n: AgentProcess = writeAgent(dir, {
    name,
    apiPort,
    gossipPort,
    bootstrap: seed === undefined ? [] : [seed],
    schema: true,
    extra: ['[perf]', 'min_sync_backoff = 0.5', 'max_sync_backoff = 2'],
  })
  agents.push(n)
  return n
}

async function insert(n: AgentProcess, id: number): Promise<boolean> {
  const res = await fetch(`${n.api}/v1/transactions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify([['INSERT INTO kv (id, v) VALUES (?, ?)', [id, `v${id}`]]]),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  })
  await res.arrayBuffer()
  return res.status === 200
}

async function ids(n: AgentProcess): Promise<number[]> {
  const rows = await queryRows(n, 'SELECT id FROM kv ORDER BY id', HTTP_TIMEOUT_MS)
  return rows.map((r) => (JSON.parse(r) as number[])[0] as number)
}

before(async () => {
  buildAgent()
  dir = mkdtempSync(join(tmpdir(), 'patina-backup-'))
  writeFileSync(
    join(dir, 'schema.sql'),
    'CREATE TABLE kv (id INTEGER NOT NULL PRIMARY KEY, v TEXT);\n',
  )
  const [a1, g1, a2, g2] = await freePorts(4)
  assert.ok(a1 !== undefined && g1 !== undefined && a2 !== undefined && g2 !== undefined)
  makeAgent('a', a1, g1)
  makeAgent('b', a2, g2, g1)
  await Promise.all(agents.map(startAgent))
})

after(async () => {
  for (const n of agents) await stopAgent(n, 'SIGKILL').catch(() => undefined)
  if (dir !== '') rmSync(dir, { recursive: true, force: true })
})

describe('e2e - patina backup and restore', () => {
  it('e2e - a backup taken under writes, restored into another agent, converges with no acknowledged write lost', async () => {
    const [a, b] = agents as [AgentProcess, AgentProcess]
    await waitFor(
      'b has a first write of a',
      FORMATION_TIMEOUT_MS,
      async () => (await insert(a, 0)) && (await ids(b)).includes(0),
      async () => `${(await ids(b)).length} rows on b`,
    )
    const acked: number[] = [0]
    const state = { stop: false }
    const loop = (async () => {
      for (let id = 1; id <= WRITES_MAX && !state.stop; id++) {
        if (await insert(a, id)) acked.push(id)
      }
    })()
    await waitFor(
      `${WRITES_BEFORE} writes acknowledged`,
      CONVERGE_TIMEOUT_MS,
      () => Promise.resolve(acked.length >= WRITES_BEFORE),
      () => Promise.resolve(`${acked.length} acknowledged`),
    )
    const snap = join(dir, 'a.snapshot')
    const backedUpAt = acked.length
    const backup = await runPatina(dir, ['-c', a.cfg, 'backup', snap, '--json', '--compress'])
    assert.equal(backup.code, 0, backup.stderr)
    const lines = backup.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    const summary = lines.at(-1)
    assert.equal(summary?.type, 'summary')
    assert.ok(lines.some((l) => l.type === 'progress'))
    assert.ok(acked.length > backedUpAt, 'writes went on during the backup')

    const refused = await runPatina(dir, ['-c', b.cfg, 'restore', snap])
    assert.equal(refused.code, 1)
    assert.match(refused.stderr, /the agent is running/)

    await stopAgent(b, 'SIGTERM')
    const restored = await runPatina(dir, ['-c', b.cfg, 'restore', snap])
    assert.equal(restored.code, 0, restored.stderr)
    assert.match(restored.stdout, /actor id [0-9a-f]{32} \(kept\)/)
    await startAgent(b)
    // A few more writes after b is back, then the loop stops.
    const atRestart = acked.length
    await waitFor(
      'more writes after the restart',
      CONVERGE_TIMEOUT_MS,
      () => Promise.resolve(acked.length >= atRestart + 50),
      () => Promise.resolve(`${acked.length} acknowledged`),
    )
    state.stop = true
    await loop
    await waitFor(
      'b holds every row a holds',
      CONVERGE_TIMEOUT_MS,
      async () => JSON.stringify(await ids(a)) === JSON.stringify(await ids(b)),
      async () => `a=${(await ids(a)).length} b=${(await ids(b)).length} acked=${acked.length}`,
    )
    const onB = new Set(await ids(b))
    const lost = acked.filter((id) => !onB.has(id))
    assert.deepEqual(lost, [], 'no acknowledged write is lost')
  })
})
