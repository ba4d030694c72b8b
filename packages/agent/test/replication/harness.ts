/**
 * Helpers for replication tests on the simulator: a cluster in a temporary directory that
 * cleans up after itself, row counts, and what a node has buffered in a comparable shape.
 */
import { actorIdHex } from '../../src/runtime/actor-id.ts'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Replica } from '../../src/crdt/replica.ts'
import assert from 'node:assert/strict'
import {
  ReplicationCluster,
  type ReplicationClusterOptions,
  type ReplicationNode,
} from '../../src/sim/replication-cluster.ts'
import { Sim, type SimOptions } from '../../src/sim/sim.ts'

export interface TestCluster {
  readonly sim: Sim
  readonly cluster: ReplicationCluster
  /** Stops every node and removes the databases. */
  readonly close: () => void
}

/** A simulated replication cluster whose database files live in a fresh temporary directory. */
export function testCluster(
  sim: SimOptions,
  options: Omit<ReplicationClusterOptions, 'dir'>,
): TestCluster {
  const dir = mkdtempSync(join(tmpdir(), 'patina-repl-test-'))
  const s = new Sim(sim)
  const cluster = new ReplicationCluster(s, { ...options, dir })
  return {
    sim: s,
    cluster,
    close: () => {
      cluster.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** The running node at `addr` (fails the test when it is down). */
export function nodeAt(cluster: ReplicationCluster, addr: string): ReplicationNode {
  const node = cluster.node(addr)
  assert.ok(node !== undefined, `${addr} is running`)
  return node
}

/** Rows of `table` visible on a replica. */
export function rowCount(replica: Replica, table: string): number {
  const [row] = replica.query(`SELECT count(*) AS n FROM ${table}`)
  return Number(row?.['n'])
}

export interface Buffered {
  readonly origin: string
  readonly version: number
  readonly parked: boolean
  readonly reason: string | null
  readonly cells: number
}

/** `replica.bufferedVersions()` with hex origins, sorted, for deepEqual. */
export function buffered(replica: Replica): Buffered[] {
  return replica
    .bufferedVersions()
    .map((b) => ({
      origin: actorIdHex(b.actorId),
      version: b.version,
      parked: b.parked,
      reason: b.reason,
      cells: b.cells,
    }))
    .sort((a, b) => a.origin.localeCompare(b.origin) || a.version - b.version)
}

/** Every origin's head and gaps on a replica, as one comparable string. */
export function books(replica: Replica): string {
  return replica
    .originStates()
    .map((o) => `${actorIdHex(o.actorId)}:${o.head}:${JSON.stringify(o.gaps)}`)
    .sort()
    .join(' ')
}
