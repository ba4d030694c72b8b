/**
 * Goal: three replication behaviours that random scenarios reach only by luck, each forced on
 * the simulator: a half-received large version survives a crash without showing half a
 * transaction; a change for a column the receiver lacks waits for the schema without blocking
 * anything; and the loss scenario really depends on anti-entropy.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { decodeMessage } from '../../src/wire/wire.ts'
import { KIND_BROADCAST, type ReplicationNode } from '../../src/sim/replication-cluster.ts'
import { seeds, withSeed } from '../sim/seeds.ts'
import { books, buffered, nodeAt, rowCount, testCluster } from './harness.ts'
import {
  assertConverged,
  identical,
  runScenario,
  SCHEMA,
  type ScenarioOptions,
} from './scenario.ts'

const INSERT_MACHINE = 'INSERT INTO machines (id, app, state, cpus, mem) VALUES (?, ?, ?, ?, ?)'

describe('replication - named cases', () => {
  it('a chunked version whose partial state survives a restart', async (t) => {
    for (const seed of seeds(7100, 1, 10)) {
      await withSeed(seed, async () => {
        const rows = 3_000
        const { sim, cluster, close } = testCluster(
          { seed, trace: false },
          {
            schema: SCHEMA,
            replication: {
              chunkBytes: 4096,
              // Anti-entropy runs rarely here (first round 30-90 s after a node starts), so the
              // partial state lasts through the crash; it is what completes the version later.
              syncIntervalMs: 60_000,
              syncIntervalMaxMs: 60_000,
            },
          },
        )
        try {
          cluster.addMany(3)
          await sim.runFor(3_000)
          const [a, b, c] = cluster.addrs() as [string, string, string]

          // Every third chunk of the version never reaches B, from its origin or from a relay.
          const keep = new Map<number, number>() // first seq of a chunk -> its cells, when kept
          const dropped = new Set<number>()
          sim.network.setFilter((_from, to, bytes) => {
            if (to !== b || bytes[0] !== KIND_BROADCAST) return true
            const decoded = decodeMessage(bytes.subarray(1))
            if (!decoded.ok || decoded.message.type !== 'change') return true
            const { chunk } = decoded.message
            if (chunk.kind !== 'full') return true
            const start = chunk.seqs[0]
            if (!keep.has(start) && !dropped.has(start)) {
              if ((keep.size + dropped.size) % 3 === 1) dropped.add(start)
              else keep.set(start, chunk.changes.length)
            }
            return !dropped.has(start)
          })

          const { version } = cluster.write(
            a,
            Array.from({ length: rows }, (_, i) => ({
              sql: INSERT_MACHINE,
              params: [BigInt(i + 1), `app-${i % 50}`, 'started', BigInt(i % 16), i / 8],
            })),
          )
          assert.ok(version !== null)
          const origin = cluster.actorOf(a)
          const originId = new Uint8Array(Buffer.from(origin, 'hex'))
          await sim.runFor(500)

          const expectBuffered = [...keep.values()].reduce((s, n) => s + n, 0)
          assert.ok(
            dropped.size > 0 && keep.size > 2,
            `chunks kept ${keep.size}, dropped ${dropped.size}`,
          )
          const nodeB = nodeAt(cluster, b)
          assert.equal(nodeB.replicator.stats().syncClient.rounds, 0, 'no sync round ran yet')
          const partial = buffered(nodeB.replica)
          assert.deepEqual(partial, [
            { origin, version, parked: false, reason: null, cells: expectBuffered },
          ])
          assert.equal(rowCount(nodeB.replica, 'machines'), 0, 'no row of a partial version shows')
          assert.equal(rowCount(nodeAt(cluster, c).replica, 'machines'), rows, 'C has it all')

          cluster.crash(b)
          await sim.runFor(200)
          const restarted = cluster.restart(b)
          assert.deepEqual(buffered(restarted.replica), partial, 'the partial state survived')
          assert.equal(restarted.replica.bufferedCells(), expectBuffered)
          assert.equal(rowCount(restarted.replica, 'machines'), 0)
          assert.equal(restarted.replica.holds(originId, version), false)
          await sim.runFor(1_000)
          assert.deepEqual(buffered(restarted.replica), partial, 'still partial after rejoining')
          assert.equal(rowCount(restarted.replica, 'machines'), 0)

          // Now let anti-entropy fetch the rest: the version shows all at once.
          sim.network.setFilter(null)
          const healedAt = sim.now()
          const commits: number[] = []
          restarted.replica.onCommit((e) => {
            if (e.source === 'remote') commits.push(e.rows.length)
          })
          const seen = new Set<number>()
          const done = await sim.runUntil(
            () => {
              seen.add(rowCount(restarted.replica, 'machines'))
              return restarted.replica.holds(originId, version)
            },
            { timeoutMs: 200_000, checkEveryMs: 50 },
          )
          assert.ok(done, 'sync completed the version')
          assert.deepEqual(
            [...seen].filter((n) => n !== 0 && n !== rows),
            [],
            'never half visible',
          )
          assert.deepEqual(commits, [rows], 'one commit brought every row')
          assert.equal(rowCount(restarted.replica, 'machines'), rows)
          assert.deepEqual(buffered(restarted.replica), [])
          assert.equal(restarted.replica.bufferedCells(), 0)
          assert.ok(identical(cluster), 'every replica holds identical rows and clocks')
          t.diagnostic(
            `seed ${seed}: ${keep.size + dropped.size} chunks, ${dropped.size} withheld from B, ` +
              `${expectBuffered} cells buffered across the restart; sync completed the version ` +
              `${Math.round(sim.now() - healedAt)} ms (virtual) after the filter went`,
          )
        } finally {
          close()
        }
      })
    }
  })

  it('a change for a column the receiver lacks is held and applied after its schema reload', async (t) => {
    for (const seed of seeds(7200, 1, 10)) {
      await withSeed(seed, async () => {
        const v2 = SCHEMA.replace('mem REAL)', 'mem REAL, region TEXT)')
        assert.notEqual(v2, SCHEMA)
        const { sim, cluster, close } = testCluster(
          { seed, trace: false },
          { schema: SCHEMA, schemaFor: (i) => (i === 0 ? v2 : SCHEMA) },
        )
        try {
          cluster.addMany(3)
          await sim.runFor(3_000)
          const [a, b, c] = cluster.addrs() as [string, string, string]
          const node = (addr: string): ReplicationNode => nodeAt(cluster, addr)
          const row1 = (addr: string): Record<string, unknown> | undefined =>
            node(addr).replica.query('SELECT * FROM machines WHERE id = 1')[0]

          // A, on V2, writes the new column: B and C (V1) hold that version.
          const first = cluster.write(a, [
            {
              sql: 'INSERT INTO machines (id, app, state, cpus, mem, region) VALUES (?, ?, ?, ?, ?, ?)',
              params: [1n, 'web', 'started', 2n, 1.5, 'ams'],
            },
          ]).version
          assert.ok(first !== null)
          const origin = cluster.actorOf(a)
          await sim.runFor(2_000)
          for (const addr of [b, c]) {
            const [entry, ...more] = buffered(node(addr).replica)
            assert.ok(entry !== undefined && more.length === 0, `${addr} holds one version`)
            assert.equal(entry.origin, origin)
            assert.equal(entry.version, first)
            assert.equal(entry.parked, true)
            assert.match(entry.reason ?? '', /region/, 'the reason names the column')
            assert.equal(row1(addr), undefined, 'nothing of the parked version shows')
          }

          // The row's other changes keep flowing: A changes another column of it, then C (which
          // now has the row, partly) changes a third; both reach every node.
          assert.ok(
            cluster.write(a, [{ sql: "UPDATE machines SET state = 'stopped' WHERE id = 1" }])
              .version !== null,
          )
          await sim.runFor(2_000)
          for (const addr of [b, c]) assert.equal(row1(addr)?.['state'], 'stopped', addr)
          assert.ok(
            cluster.write(c, [{ sql: 'UPDATE machines SET cpus = 8 WHERE id = 1' }]).version !==
              null,
          )
          // Unrelated writes keep replicating, on both tables, from the V1 nodes.
          cluster.write(b, [{ sql: INSERT_MACHINE, params: [2n, 'db', 'started', 4n, 8.0] }])
          cluster.write(c, [
            {
              sql: 'INSERT INTO services (name, port, machine) VALUES (?, ?, ?)',
              params: ['web', 443n, 1n],
            },
          ])
          const settled = await sim.runUntil(
            () =>
              [a, b, c].every(
                (addr) =>
                  row1(addr)?.['cpus'] === 8n &&
                  rowCount(node(addr).replica, 'machines') === 2 &&
                  rowCount(node(addr).replica, 'services') === 1,
              ),
            { timeoutMs: 10_000, checkEveryMs: 100 },
          )
          assert.ok(settled, 'the other changes reached every node')
          for (const addr of [b, c]) {
            assert.equal(buffered(node(addr).replica).length, 1, `${addr} still holds the version`)
            assert.equal(row1(addr)?.['app'], null, 'the parked cells are not applied')
          }
          assert.deepEqual(row1(a), {
            id: 1n,
            app: 'web',
            state: 'stopped',
            cpus: 8n,
            mem: 1.5,
            region: 'ams',
          })

          // Anti-entropy keeps running (the parked version counts as a gap) but never fetches the
          // parked version again, and nothing is applied or parked twice.
          const before = [b, c].map((addr) => node(addr).replicator.stats())
          await sim.runFor(30_000)
          const after = [b, c].map((addr) => node(addr).replicator.stats())
          for (let i = 0; i < 2; i++) {
            const x = before[i] as (typeof before)[number]
            const y = after[i] as (typeof after)[number]
            assert.ok(y.syncClient.rounds > x.syncClient.rounds, 'sync kept running')
            assert.equal(y.syncClient.versionsRequested, x.syncClient.versionsRequested)
            assert.equal(y.syncClient.chunksReceived, x.syncClient.chunksReceived)
            assert.deepEqual(y.applied, x.applied)
            assert.equal(y.applied['parked'], 1, 'parked once')
          }

          // The schema reload on B and C applies the parked version at once.
          for (const addr of [b, c]) {
            node(addr).replica.applySchema([{ path: 'schema.sql', sql: v2 }])
            assert.deepEqual(buffered(node(addr).replica), [], `${addr} applied the parked version`)
            assert.deepEqual(row1(addr), row1(a), addr)
          }
          await sim.runFor(3_000)
          assert.ok(identical(cluster), 'every replica holds identical rows and clocks')
          const want = books(node(a).replica)
          for (const addr of [b, c]) assert.equal(books(node(addr).replica), want, addr)
          t.diagnostic(
            `seed ${seed}: over 30 s of parked state B and C ran ` +
              `${after.map((s, i) => s.syncClient.rounds - (before[i]?.syncClient.rounds ?? 0)).join(' and ')} ` +
              'sync rounds that requested no version again',
          )
        } finally {
          close()
        }
      })
    }
  })

  it('disabling anti-entropy makes the loss simulation fail', async (t) => {
    // The loss scenario, small: 3 nodes, 20% datagram loss, and 5% of stream frames resetting
    // their connection (the frame and whatever else was in flight on it are lost, and sends
    // while the link reconnects are dropped), 200 one-statement writes (about half of them
    // change something and make a version). Broadcast goes over streams, which retransmit
    // lost packets, so it is the resets that lose changes: each of the ~200 (version,
    // receiver) frames resets its link with p = 0.05, so a run with no miss has p < 10^-4:
    // without sync every seed must fail, with it every seed must converge.
    const base: Omit<ScenarioOptions, 'seed'> = {
      nodes: 3,
      link: { loss: 0.2, reset: 0.05 },
      writes: 200,
      writePhaseMs: 20_000,
      largeRows: 0,
      partition: false,
      crashes: 0,
      settleMs: 120_000,
    }
    const runs = seeds(7300, 4, 40)
    const settle: number[] = []
    for (const seed of runs) {
      await withSeed(seed, async () => {
        const off = await runScenario({ ...base, seed, replication: { syncEnabled: false } })
        assert.deepEqual(off.capViolations, [])
        assert.equal(off.converged, false, 'without anti-entropy the replicas must not converge')
        const on = await runScenario({ ...base, seed })
        assertConverged(on)
        settle.push(on.settleMs)
      })
    }
    t.diagnostic(
      `${runs.length} seeds: none converged within ${base.settleMs / 1000} s without sync; ` +
        `with sync all did, settling in ${Math.min(...settle)}-${Math.max(...settle)} ms (virtual)`,
    )
  })
})
