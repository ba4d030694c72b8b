/**
 * Goal: a node that comes back after missing a large backlog catches up without ever going
 * over its caps (apply queue bytes, broadcast queue, version buffer), its peers never send
 * faster than their byte-rate cap, and it gets the newest versions of each origin first.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { BUFFER_CELLS_MAX } from '../../src/crdt/replica.ts'
import { LONG, seeds, withSeed } from '../sim/seeds.ts'
import { books, nodeAt, testCluster } from './harness.ts'
import { identical, SCHEMA } from './scenario.ts'

const MIB = 1024 * 1024

/** Rows written by A and B together while C is down. */
const ROWS = LONG ? 200_000 : 20_000
/** Rows per write transaction: uniform in [TX_ROWS_MIN, TX_ROWS_MAX]. */
const TX_ROWS_MIN = 100
const TX_ROWS_MAX = 200
/** Virtual time between two write transactions. */
const WRITE_GAP_MS = 20
/** Virtual time between two checks of the caps while C catches up. */
const CHECK_MS = 50
/** Window over which the peak send rate is reported. */
const RATE_WINDOW_MS = 1_000

const UPSERT =
  'INSERT INTO machines (id, app, state, cpus, mem) VALUES (?, ?, ?, ?, ?) ' +
  'ON CONFLICT (id) DO UPDATE SET state = excluded.state, cpus = excluded.cpus'

/**
 * Fraction of the pairs of versions of one origin applied in different commits where the
 * older one came first: 0 is strictly newest first, 0.5 is no order at all.
 */
function inversions(rank: ReadonlyMap<number, number>): number {
  const entries = [...rank.entries()].sort((x, y) => x[0] - y[0])
  let inverted = 0
  let ordered = 0
  for (let i = 0; i < entries.length; i++) {
    const ri = (entries[i] as [number, number])[1]
    for (let j = i + 1; j < entries.length; j++) {
      const rj = (entries[j] as [number, number])[1]
      if (ri < rj) inverted++
      else if (ri > rj) ordered++
    }
  }
  return inverted + ordered === 0 ? 0 : inverted / (inverted + ordered)
}

describe('replication - backlog', () => {
  it('a node that was offline catches up within its caps, newest first', async (t) => {
    const seed = seeds(7400, 1, 1)[0] as number
    await withSeed(seed, async () => {
      const wallStart = performance.now()
      const { sim, cluster, close } = testCluster(
        { seed, trace: false },
        {
          schema: SCHEMA,
          replication: {
            // The byte-rate cap paces catch-up: a sync reply is cut to what the bucket holds.
            rateBytesPerSec: MIB / 2,
            burstBytes: 128 * 1024,
            // Smaller than a sync reply (syncReplyBytes, 1 MiB): every reply is cut to what the
            // queue has room for.
            applyQueueBytesMax: 256 * 1024,
            // A version of 100-200 rows takes a few chunks: catch-up buffers partial ones.
            chunkBytes: 4 * 1024,
          },
        },
      )
      try {
        cluster.addMany(3)
        await sim.runFor(3_000)
        const [a, b, c] = cluster.addrs() as [string, string, string]
        const o = cluster.options
        const violations: string[] = []
        let peakApplyBytes = 0
        let peakBuffered = 0
        const checkCaps = (): void => {
          for (const addr of [a, b, c]) {
            const n = cluster.node(addr)
            if (n === undefined) continue
            const s = n.replicator.stats()
            const applyBytes = s.apply.queuedBytes + s.apply.reservedBytes
            if (addr === c) {
              peakApplyBytes = Math.max(peakApplyBytes, applyBytes)
              peakBuffered = Math.max(peakBuffered, s.bufferedCells)
            }
            if (applyBytes > o.applyQueueBytesMax) violations.push(`${addr} apply ${applyBytes}`)
            if (s.apply.queued > o.applyQueueMax)
              violations.push(`${addr} apply items ${s.apply.queued}`)
            if (s.broadcast.queued > o.broadcastQueueMax)
              violations.push(`${addr} broadcast ${s.broadcast.queued}`)
            if (s.broadcast.queuedBytes > o.broadcastQueueBytesMax)
              violations.push(`${addr} broadcast bytes ${s.broadcast.queuedBytes}`)
            if (s.bufferedCells > BUFFER_CELLS_MAX)
              violations.push(`${addr} buffered ${s.bufferedCells}`)
          }
        }

        cluster.crash(c)
        let written = 0
        let txs = 0
        while (written < ROWS) {
          const k = Math.min(
            ROWS - written,
            TX_ROWS_MIN + sim.random.int(TX_ROWS_MAX - TX_ROWS_MIN + 1),
          )
          const at = txs % 2 === 0 ? a : b
          cluster.write(
            at,
            Array.from({ length: k }, () => {
              const id = 1 + sim.random.int(ROWS)
              return {
                sql: UPSERT,
                params: [BigInt(id), `app-${id % 97}`, `s${txs}`, BigInt(txs % 64), id / 16],
              }
            }),
          )
          written += k
          txs++
          await sim.runFor(WRITE_GAP_MS)
          checkCaps()
        }
        const agreed = await sim.runUntil(
          () => {
            checkCaps()
            return books(nodeAt(cluster, a).replica) === books(nodeAt(cluster, b).replica)
          },
          { timeoutMs: 120_000, checkEveryMs: CHECK_MS },
        )
        assert.ok(agreed, 'A and B agree before C comes back')
        assert.deepEqual(violations, [], 'no cap exceeded while writing')

        // C comes back: record when each version of A and B becomes held there (by commit).
        const senders = [a, b].map((addr) => nodeAt(cluster, addr).replicator)
        const restartedAt = sim.now()
        const nodeC = cluster.restart(c)
        const origins = [a, b].map((addr) => {
          const n = nodeAt(cluster, addr)
          const pending = new Set<number>()
          for (let v = 1; v <= n.replica.headOf(n.replica.actorId); v++) pending.add(v)
          return { actorId: n.replica.actorId, pending, rank: new Map<number, number>() }
        })
        let commits = 0
        nodeC.replica.onCommit((e) => {
          if (e.source !== 'remote') return
          // Between two apply batches (the queue holds what the last reply brought).
          checkCaps()
          commits++
          for (const origin of origins) {
            for (const v of origin.pending) {
              if (!nodeC.replica.holds(origin.actorId, v)) continue
              origin.pending.delete(v)
              origin.rank.set(v, commits)
            }
          }
        })
        // Bytes each of A and B has been granted by its rate bucket (broadcast and sync).
        const samples: { at: number; bytes: number[] }[] = []
        const sample = (): void => {
          samples.push({ at: sim.now(), bytes: senders.map((r) => r.bucket.granted) })
        }
        const want = books(nodeAt(cluster, a).replica)
        const caughtUp = await sim.runUntil(
          () => {
            checkCaps()
            sample()
            return books(nodeC.replica) === want && nodeC.replicator.stats().bufferedCells === 0
          },
          { timeoutMs: LONG ? 1_200_000 : 300_000, checkEveryMs: CHECK_MS },
        )
        const catchUpMs = sim.now() - restartedAt
        assert.ok(caughtUp, `C caught up (after ${catchUpMs} ms)`)
        assert.deepEqual(violations.slice(0, 5), [], 'no cap exceeded while catching up')
        assert.ok(identical(cluster), 'every replica holds identical rows and clocks')

        // The token bucket's promise, checked between every two samples of each sender: over
        // t seconds at most rate·t + burst + one message (a sync reply may end one chunk past
        // its budget; a chunk's cost counts its changes at up to ~5x their encoded size).
        const messageMax = 8 * o.chunkBytes
        let peakWindowBytes = 0
        let overCap = ''
        for (let s = 0; s < senders.length; s++) {
          for (let i = 0; i < samples.length; i++) {
            const from = samples[i] as (typeof samples)[number]
            for (let j = i + 1; j < samples.length; j++) {
              const to = samples[j] as (typeof samples)[number]
              const sent = (to.bytes[s] as number) - (from.bytes[s] as number)
              const bound = (o.rateBytesPerSec * (to.at - from.at)) / 1000 + o.burstBytes
              if (sent > bound + messageMax && overCap === '') {
                overCap = `sender ${s}: ${sent} B in ${to.at - from.at} ms (bound ${bound})`
              }
              if (Math.abs(to.at - from.at - RATE_WINDOW_MS) < 1e-6)
                peakWindowBytes = Math.max(peakWindowBytes, sent)
            }
          }
        }
        assert.equal(overCap, '', 'A and B stay within their byte-rate caps')
        assert.ok(peakWindowBytes >= o.burstBytes, 'the cap binds: a sender emptied its bucket')
        const sentBytes = senders.map(
          (_, s) => (samples.at(-1)?.bytes[s] ?? 0) - (samples[0]?.bytes[s] ?? 0),
        )

        // Newest first, per origin.
        const orderReport: string[] = []
        for (const [i, origin] of origins.entries()) {
          assert.equal(origin.pending.size, 0, 'every version was seen applied')
          const inv = inversions(origin.rank)
          const byRank = [...origin.rank.entries()].sort((x, y) => x[1] - y[1] || y[0] - x[0])
          const n = byRank.length
          const quarter = Math.floor(n / 4)
          const newestHalf = byRank.slice(0, quarter).filter(([v]) => v > n / 2).length
          orderReport.push(
            `${i === 0 ? 'A' : 'B'}: ${n} versions, ${(inv * 100).toFixed(1)}% of pairs older-first, ` +
              `${newestHalf}/${quarter} of the first quarter applied from the newest half`,
          )
          assert.ok(inv <= 0.1, `versions of ${i === 0 ? 'A' : 'B'} came newest first (${inv})`)
          assert.ok(
            newestHalf >= quarter * 0.9,
            'the first quarter applied is from the newest half',
          )
        }

        const stats = nodeC.replicator.stats()
        t.diagnostic(
          `seed ${seed}: ${ROWS} rows in ${txs} transactions; C caught up in ${catchUpMs} ms virtual ` +
            `(${((performance.now() - wallStart) / 1000).toFixed(1)} s wall for the whole test), ` +
            `${stats.syncClient.rounds} sync sessions, ${stats.syncClient.chunksReceived} chunks, ` +
            `${stats.apply.batches} apply batches`,
        )
        const meanRate = sentBytes.reduce((x, y) => x + y, 0) / senders.length / (catchUpMs / 1000)
        t.diagnostic(
          `apply queue peak ${peakApplyBytes} B (cap ${o.applyQueueBytesMax}); buffered cells ` +
            `peak ${peakBuffered} (cap ${BUFFER_CELLS_MAX}); A and B sent ${sentBytes.join(' and ')} B ` +
            `while C caught up; peak per sender ${peakWindowBytes} B in ${RATE_WINDOW_MS} ms ` +
            `(cap ${o.rateBytesPerSec} B/s + burst ${o.burstBytes} B); mean per sender ` +
            `${Math.round(meanRate)} B/s (${((100 * meanRate) / o.rateBytesPerSec).toFixed(0)}% of the cap)`,
        )
        t.diagnostic(orderReport.join('; '))
      } finally {
        close()
      }
    })
  })
})
