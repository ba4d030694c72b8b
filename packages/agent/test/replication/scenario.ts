/**
 * The replication simulation scenario: a cluster of real replicas on a faulty simulated network,
 * random writes everywhere, faults, then quiescence, checking caps at every step.
 */
import { actorIdHex } from '../../src/runtime/actor-id.ts'
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import type { LinkProfile } from '../../src/sim/network.ts'
import { ReplicationCluster } from '../../src/sim/replication-cluster.ts'
import { Sim } from '../../src/sim/sim.ts'
import type { ReplicationOptions } from '../../src/replication/options.ts'
import { snapshot } from '../crdt/helpers.ts'
import { withSeed } from '../sim/seeds.ts'

export const SCHEMA = `
CREATE TABLE machines (id INTEGER NOT NULL PRIMARY KEY, app TEXT, state TEXT, cpus INTEGER, mem REAL);
CREATE TABLE services (name TEXT NOT NULL, port INTEGER NOT NULL, machine INTEGER, PRIMARY KEY (name, port));
`

export interface ScenarioOptions {
  readonly seed: number
  readonly nodes: number
  readonly link: Partial<LinkProfile>
  /** Write transactions over the write phase (all nodes together). */
  readonly writes: number
  readonly writePhaseMs: number
  /** Rows of the one large transaction (0: none). */
  readonly largeRows: number
  readonly partition: boolean
  readonly crashes: number
  readonly replication?: Partial<ReplicationOptions>
  /** Virtual time allowed for convergence after the faults end. */
  readonly settleMs: number
}

export interface ScenarioResult {
  readonly converged: boolean
  /** Virtual ms from the end of faults until every replica was identical (or -1). */
  readonly settleMs: number
  readonly capViolations: string[]
  readonly writesDone: number
}

/** True when every running node holds the same versions of every origin and nothing pending. */
function booksAgree(cluster: ReplicationCluster): boolean {
  const nodes = cluster.nodes()
  const key = (n: (typeof nodes)[number]): string => {
    const s = n.replicator.stats()
    if (s.apply.queued > 0 || s.bufferedCells > 0) return 'busy'
    return n.replica
      .originStates()
      .map((o) => `${actorIdHex(o.actorId)}:${o.head}:${o.gaps.length}`)
      .sort()
      .join(',')
  }
  const first = nodes[0]
  if (first === undefined) return true
  const k = key(first)
  if (k === 'busy') return false
  return nodes.every((n) => key(n) === k)
}

export function identical(cluster: ReplicationCluster): boolean {
  const nodes = cluster.nodes()
  const first = nodes[0]
  if (first === undefined) return true
  const want = JSON.stringify(snapshot(first.replica))
  return nodes.every((n) => JSON.stringify(snapshot(n.replica)) === want)
}

function capViolations(cluster: ReplicationCluster): string[] {
  const o = cluster.options
  const out: string[] = []
  for (const addr of cluster.addrs()) {
    const n = cluster.node(addr)
    if (n === undefined) continue
    const s = n.replicator.stats()
    if (s.broadcast.queued > o.broadcastQueueMax)
      out.push(`${addr} broadcast queue ${s.broadcast.queued}`)
    if (s.broadcast.queuedBytes > o.broadcastQueueBytesMax)
      out.push(`${addr} broadcast bytes ${s.broadcast.queuedBytes}`)
    if (s.apply.queuedBytes > o.applyQueueBytesMax)
      out.push(`${addr} apply bytes ${s.apply.queuedBytes}`)
    if (s.syncServer.sessions > o.syncServerSessionsMax)
      out.push(`${addr} sync sessions ${s.syncServer.sessions}`)
    if (s.syncClient.sessions > o.syncClientSessionsMax)
      out.push(`${addr} sync client sessions ${s.syncClient.sessions}`)
  }
  return out
}

function debugLine(cluster: ReplicationCluster, t: number): void {
  const cells = cluster.nodes().map((n) => {
    const st = n.replicator.stats()
    return `${n.replicator.health().gaps}/${st.apply.queued}/${st.bufferedCells}`
  })
  process.stderr.write(`${Math.round(t)} ${cells.join(' ')}\n`)
}

export async function runScenario(options: ScenarioOptions): Promise<ScenarioResult> {
  const dir = mkdtempSync(join(tmpdir(), 'patina-repl-sim-'))
  const sim = new Sim({ seed: options.seed, link: options.link, trace: false })
  const cluster = new ReplicationCluster(sim, {
    dir,
    schema: SCHEMA,
    ...(options.replication === undefined ? {} : { replication: options.replication }),
  })
  const violations: string[] = []
  try {
    cluster.addMany(options.nodes)
    const addrs = cluster.addrs()
    const rnd = sim.random
    await sim.runFor(3_000)

    // Faults and writes interleaved on a schedule drawn from the seed.
    const step = options.writePhaseMs / options.writes
    const partitionAt = options.partition ? Math.floor(options.writes * 0.3) : -1
    const healAt = options.partition ? Math.floor(options.writes * 0.7) : -1
    const crashAt = new Map<number, string>()
    for (let c = 0; c < options.crashes; c++) {
      crashAt.set(1 + rnd.int(options.writes - 2), addrs[1 + rnd.int(addrs.length - 1)] as string)
    }
    const largeAt = options.largeRows > 0 ? rnd.int(options.writes) : -1
    const down = new Map<string, number>()
    let writesDone = 0
    for (let w = 0; w < options.writes; w++) {
      if (w === partitionAt) {
        const half = addrs.slice(0, addrs.length >> 1)
        sim.network.partition(half, addrs.slice(addrs.length >> 1))
      }
      if (w === healAt) sim.network.heal()
      const victim = crashAt.get(w)
      if (victim !== undefined && cluster.node(victim) !== undefined) {
        cluster.crash(victim)
        down.set(victim, w + Math.max(3, Math.floor(options.writes / 10)))
      }
      for (const [addr, at] of down) {
        if (at === w) {
          cluster.restart(addr)
          down.delete(addr)
        }
      }
      const running = addrs.filter((a) => cluster.node(a) !== undefined)
      const at = running[rnd.int(running.length)] as string
      const id = BigInt(rnd.int(40))
      const kind = rnd.int(10)
      const statements =
        w === largeAt
          ? Array.from({ length: options.largeRows }, (_, i) => ({
              sql: 'INSERT OR REPLACE INTO machines (id, app, state, cpus, mem) VALUES (?, ?, ?, ?, ?)',
              params: [BigInt(1000 + i), `bulk-${w}`, 'started', BigInt(i % 8), i / 4],
            }))
          : kind < 4
            ? [
                {
                  sql: 'INSERT INTO machines (id, app, state, cpus, mem) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET app = excluded.app, state = excluded.state',
                  params: [
                    id,
                    `app-${rnd.int(5)}`,
                    'started',
                    BigInt(rnd.int(16)),
                    rnd.float() * 8,
                  ],
                },
              ]
            : kind < 7
              ? [
                  {
                    sql: 'UPDATE machines SET state = ?, cpus = ? WHERE id = ?',
                    params: [`s${w}`, BigInt(w), id],
                  },
                ]
              : kind < 9
                ? [{ sql: 'DELETE FROM machines WHERE id = ?', params: [id] }]
                : [
                    {
                      sql: 'INSERT OR REPLACE INTO services (name, port, machine) VALUES (?, ?, ?)',
                      params: [`svc-${rnd.int(5)}`, BigInt(8000 + rnd.int(3)), id],
                    },
                  ]
      cluster.write(at, statements)
      writesDone++
      // Run to the next write, checking caps on the way.
      const until = sim.now() + step
      while (sim.now() < until) {
        await sim.runFor(Math.min(100, until - sim.now()))
        violations.push(...capViolations(cluster))
      }
    }
    sim.network.heal()
    for (const addr of down.keys()) cluster.restart(addr)
    // Faults end here: the network becomes clean so the cluster can settle.
    const faultsEnd = sim.now()
    sim.network.setDefaultLink({ loss: 0, duplicate: 0, reorder: 0, reset: 0 })
    const converged = await sim.runUntil(
      () => {
        // SIM_DEBUG=1: per node, known-missing versions / queued chunks / buffered cells.
        if (process.env['SIM_DEBUG'] === '1') debugLine(cluster, sim.now() - faultsEnd)
        violations.push(...capViolations(cluster))
        return booksAgree(cluster) && identical(cluster)
      },
      { timeoutMs: options.settleMs, checkEveryMs: 500 },
    )
    return {
      converged,
      settleMs: converged ? sim.now() - faultsEnd : -1,
      capViolations: violations,
      writesDone,
    }
  } finally {
    cluster.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

export function assertConverged(result: ScenarioResult): void {
  assert.deepStrictEqual(result.capViolations.slice(0, 5), [], 'no queue exceeded its cap')
  assert.ok(result.converged, 'every replica holds identical rows and clocks')
}

/** The faulty-network scenario of the convergence tests. */
export const FAULTY: Omit<ScenarioOptions, 'seed'> = {
  nodes: 20,
  link: { latencyMs: 0.5, jitterMs: 2, loss: 0.2, duplicate: 0.05, reorder: 0.1, reset: 0.01 },
  writes: 100,
  writePhaseMs: 15_000,
  largeRows: 300,
  partition: true,
  crashes: 2,
  settleMs: 120_000,
  replication: { chunkBytes: 4 * 1024 },
}

/** Seeds that once failed, kept forever (with what they found). None yet. */
export const REGRESSION_SEEDS: readonly number[] = []

export function convergenceSuite(name: string, list: readonly number[]): void {
  describe(name, () => {
    for (const seed of list) {
      it(`seed ${seed}`, async () => {
        await withSeed(seed, async () => {
          assertConverged(await runScenario({ seed, ...FAULTY }))
        })
      })
    }
  })
}
