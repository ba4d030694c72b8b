/**
 * Goal: a version that no peer can take (one of its changes is bigger than a stream frame
 * carries) costs bounded bytes: it is not broadcast, sync does not serve it, it is reported once
 * (one warn line, a counter) and measured again only with backoff (1 min doubling to 1 h), while
 * the versions written before and after it replicate. Before, every sync round (about every
 * 2 s, the peer being behind) built a reply holding it, charged it to the byte-rate bucket and
 * `patina_gossip_bytes_sent_total{kind="sync"}`, and failed to send it (FRAME_TOO_LARGE): about
 * one version's size every 2 s, for ever.
 *
 * Method: two simulated nodes whose streams and replication carry frames of at most 64 KiB. A
 * writes three small rows, one 96 KiB blob (allowed by its max_cell_bytes, too big for a
 * frame), three more small rows; one simulated hour runs. Then the blob's row is overwritten
 * with a small value: the held version carries nothing big any more, and goes (as an empty
 * version) at its next retry.
 */
import { actorIdHex } from '../../src/runtime/actor-id.ts'
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { pino } from 'pino'
import { DEFAULT_REPLICATION } from '../../src/replication/options.ts'
import { DEFAULT_UNDELIVERABLE, retryDelayMs } from '../../src/sync/undeliverable.ts'
import { FRAME_BYTES_MAX } from '../../src/transport/defaults.ts'
import { nodeAt, testCluster } from './harness.ts'

const FRAME = 64 * 1024
const BLOB = 96 * 1024
const HOUR_MS = 3_600_000
const STEP_MS = 60_000
const SCHEMA = 'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, b BLOB);'

/** Measurements again of a held version within `ms` of holding it (the backoff schedule). */
function retriesWithin(ms: number): number {
  let at = 0
  let n = 0
  for (let tries = 1; ; tries++) {
    at += retryDelayMs(DEFAULT_UNDELIVERABLE, tries)
    if (at > ms) return n
    n++
  }
}

describe('replication - undeliverable versions', () => {
  it('replication keeps its messages to the frames the transport reads', () => {
    assert.equal(DEFAULT_REPLICATION.frameBytesMax, FRAME_BYTES_MAX)
  })

  it('a single undeliverable version costs bounded bytes per hour; the versions around it replicate', async () => {
    const lines: Record<string, unknown>[] = []
    const logger = pino(
      { level: 'warn' },
      {
        write(line: string) {
          lines.push(JSON.parse(line) as Record<string, unknown>)
        },
      },
    )
    const { sim, cluster, close } = testCluster(
      { seed: 4711, trace: false },
      { schema: SCHEMA, replication: { frameBytesMax: FRAME }, logger },
    )
    try {
      cluster.addMany(2)
      await sim.runFor(3_000)
      const [a, b] = cluster.addrs() as [string, string]
      const writer = nodeAt(cluster, a)
      const origin = actorIdHex(writer.replica.actorId)
      // What the writer sends for replication (what patina_gossip_bytes_sent_total counts),
      // and what its streams put on the wire, from its first write to an hour later.
      const sent = (): { replication: number; wire: number } => {
        const st = writer.replicator.stats()
        return {
          replication: st.broadcast.bytesSent + st.syncServer.bytesServed,
          wire: writer.node.streamStats().bytesSent,
        }
      }
      const start = sent()
      const insert = (id: number, sql: string): void => {
        cluster.write(a, [{ sql: `INSERT INTO t (id, b) VALUES (?, ${sql})`, params: [id] }])
      }
      for (const id of [1, 2, 3]) insert(id, 'randomblob(100)')
      insert(4, `zeroblob(${BLOB})`)
      for (const id of [5, 6, 7]) insert(id, 'randomblob(100)')
      const big = 4 // its version: one per transaction

      // Bound: the seven small versions (well under a frame), plus one frame for each time the
      // held version is measured again within the hour (nothing is sent then; the bound would
      // hold even if each retry cost a frame).
      const retries = retriesWithin(HOUR_MS)
      const bound = FRAME + retries * FRAME
      for (let t = 0; t < HOUR_MS; t += STEP_MS) {
        await sim.runFor(STEP_MS)
        const spent = sent().replication - start.replication
        // Stops early when over (before the fix: about 48 KiB/s, over the bound in seconds).
        assert.ok(spent <= bound, `after ${(t + STEP_MS) / 60_000} min: ${spent} bytes > ${bound}`)
      }
      const hour = sent()
      const perHour = {
        replication: hour.replication - start.replication,
        wire: hour.wire - start.wire,
      }
      console.log(`undeliverable: bytes per hour ${JSON.stringify(perHour)}, bound ${bound}`)

      // The peer has every version but that one.
      const peer = nodeAt(cluster, b)
      const fromA = peer.replica.originStates().find((o) => actorIdHex(o.actorId) === origin)
      assert.ok(fromA !== undefined)
      assert.equal(fromA.head, 7)
      assert.deepEqual(fromA.gaps, [[big, big]])
      assert.deepEqual(
        peer.replica.query('SELECT id FROM t ORDER BY id').map((r) => Number(r['id'])),
        [1, 2, 3, 5, 6, 7],
      )

      // Reported once: one warn line, one count, held; measured again on the backoff schedule.
      const warned = lines.filter((l) => String(l['msg']).startsWith('version not sent'))
      assert.equal(warned.length, 1, JSON.stringify(warned))
      const [warning] = warned as [Record<string, unknown>]
      assert.equal(warning['origin'], origin)
      assert.equal(warning['version'], big)
      assert.ok((warning['bytes'] as number) > BLOB)
      const u = writer.replicator.stats().undeliverable
      assert.equal(u.reported, 1)
      assert.equal(u.held, 1)
      assert.ok(u.retries <= retries, `${u.retries} retries in an hour, schedule ${retries}`)

      // Its big cell overwritten, the version carries nothing big: it goes at its next retry
      // (within the longest backoff), and the peer has no gap left.
      cluster.write(a, [{ sql: "UPDATE t SET b = x'00' WHERE id = 4" }])
      const healed = await sim.runUntil(
        () => {
          const s = peer.replica.originStates().find((o) => actorIdHex(o.actorId) === origin)
          return s !== undefined && s.head === 8 && s.gaps.length === 0
        },
        { timeoutMs: DEFAULT_UNDELIVERABLE.retryMaxMs + 60_000, checkEveryMs: 10_000 },
      )
      assert.ok(healed, 'the overwritten version reached the peer at its next retry')
      assert.equal(writer.replicator.stats().undeliverable.held, 0)
      assert.deepEqual(peer.replica.query('SELECT b FROM t WHERE id = 4'), [
        { b: Buffer.from([0]) },
      ])
    } finally {
      close()
    }
  })
  it("a reply over the reader's frame cap costs bounded bytes per hour; the versions around it replicate", async () => {
    // The writer frames up to 1 MiB (another limit, another version), the reader reads 64 KiB:
    // the writer serves the blob's version, and the reader's stream closes on it.
    const { sim, cluster, close } = testCluster(
      { seed: 4712, trace: false },
      {
        schema: SCHEMA,
        replication: { frameBytesMax: FRAME },
        replicationFor: (i) => (i === 0 ? { frameBytesMax: 1024 * 1024 } : {}),
      },
    )
    try {
      cluster.addMany(2)
      await sim.runFor(3_000)
      const [a, b] = cluster.addrs() as [string, string]
      const writer = nodeAt(cluster, a)
      const reader = nodeAt(cluster, b)
      const origin = actorIdHex(writer.replica.actorId)
      const spent = (): number => {
        const st = writer.replicator.stats()
        return st.broadcast.bytesSent + st.syncServer.bytesServed
      }
      const start = spent()
      const insert = (id: number, sql: string): void => {
        cluster.write(a, [{ sql: `INSERT INTO t (id, b) VALUES (?, ${sql})`, params: [id] }])
      }
      for (const id of [1, 2, 3]) insert(id, 'randomblob(100)')
      insert(4, `zeroblob(${BLOB})`)
      for (const id of [5, 6, 7]) insert(id, 'randomblob(100)')
      // Bound: the blob broadcast once, one whole reply that fails, one careful exchange that
      // fails and finds the version, then one failing exchange per retry of the backoff
      // schedule; each at most the blob and a frame of the reader's other versions.
      const retries = retriesWithin(HOUR_MS)
      const bound = (3 + retries) * (BLOB + FRAME)
      for (let t = 0; t < HOUR_MS; t += STEP_MS) {
        await sim.runFor(STEP_MS)
        const n = spent() - start
        assert.ok(n <= bound, `after ${(t + STEP_MS) / 60_000} min: ${n} bytes > ${bound}`)
      }
      console.log(`reader cap: writer bytes per hour ${spent() - start}, bound ${bound}`)
      const fromA = reader.replica.originStates().find((o) => actorIdHex(o.actorId) === origin)
      assert.ok(fromA !== undefined)
      assert.equal(fromA.head, 7)
      assert.deepEqual(fromA.gaps, [[4, 4]])
      assert.deepEqual(
        reader.replica.query('SELECT id FROM t ORDER BY id').map((r) => Number(r['id'])),
        [1, 2, 3, 5, 6, 7],
      )
      const st = reader.replicator.stats().syncClient
      assert.ok(
        st.framesTooLarge >= 1 && st.framesTooLarge <= 2 + retries,
        String(st.framesTooLarge),
      )
      assert.equal(st.heldBack, 1)
    } finally {
      close()
    }
  })
})
