/**
 * Goal: a crashed node is declared down by every other node within the bound computed from the
 * parameters, over many seeds, and no live node is declared down meanwhile; a restarted node
 * (same actor id, new epoch) is alive again quickly everywhere and listed once.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { addrOf } from '../../src/sim/swim-cluster.ts'
import { formCluster } from './scenario.ts'
import { quantile, seeds, withSeed } from './seeds.ts'

describe('sim - crash detection', () => {
  for (const [n, runs] of [
    [8, seeds(1000, 300, 3000)],
    [25, seeds(1300, 40, 400)],
  ] as const) {
    it(`every live node declares a crashed node down within the suspicion bound (n=${n}, ${runs.length} seeds)`, async (t) => {
      const first: number[] = []
      const all: number[] = []
      let bound = 0
      for (const seed of runs) {
        await withSeed(seed, async () => {
          const { sim, cluster } = await formCluster(seed, n)
          await sim.runFor(sim.random.float() * 5000)
          const victim = addrOf(sim.random.int(n))
          const crashedAt = sim.now()
          cluster.host(victim).crash()
          bound = cluster.detectionBoundMs(n)
          const actor = cluster.actorOf(victim)
          const others = cluster.live()
          const ok = await sim.runUntil(
            () => others.every((a) => cluster.swim(a)?.member(actor)?.state === 'down'),
            { timeoutMs: bound, checkEveryMs: 50 },
          )
          assert.ok(ok, `not declared down by all within ${bound} ms`)
          const times = cluster.downsOf(victim).map((e) => e.atMs - crashedAt)
          first.push(Math.min(...times))
          all.push(Math.max(...times))
          const falseDowns = cluster.downs.filter((e) => e.member.actorId !== actor)
          assert.deepEqual(falseDowns, [], 'no live node declared down')
        })
      }
      t.diagnostic(
        `n=${n}, ${all.length} seeds: first down p50 ${quantile(first, 0.5).toFixed(0)} ms, ` +
          `p99 ${quantile(first, 0.99).toFixed(0)} ms; all down p50 ${quantile(all, 0.5).toFixed(0)} ms, ` +
          `p99 ${quantile(all, 0.99).toFixed(0)} ms, max ${Math.max(...all).toFixed(0)} ms; bound ${bound} ms`,
      )
    })
  }
})

describe('sim - restart', () => {
  for (const seed of seeds(1500, 60, 600)) {
    it(`a restarted node (same actor id, new epoch) is alive again quickly and listed once (seed ${seed})`, async () => {
      await withSeed(seed, async () => {
        const n = 10
        const { sim, cluster } = await formCluster(seed, n)
        // Half of the runs restart the bootstrap node itself, which has nobody to join through.
        const victim = addrOf(seed % 2 === 0 ? 0 : 1 + sim.random.int(n - 1))
        const host = cluster.host(victim)
        const oldEpoch = cluster.swim(victim)?.identity().epoch
        host.crash()
        await sim.runFor(500 + sim.random.float() * 1500)
        const restartedAt = sim.now()
        host.start()
        const epoch = cluster.swim(victim)?.identity().epoch
        assert.ok(oldEpoch !== undefined && epoch !== undefined && epoch > oldEpoch, 'new epoch')
        const live = cluster.live()
        const ok = await sim.runUntil(() => cluster.allSeeAlive(live, live), {
          timeoutMs: 10_000,
          checkEveryMs: 20,
        })
        assert.ok(ok, 'restarted node alive everywhere')
        const tookMs = sim.now() - restartedAt
        assert.ok(tookMs <= 5000, `took ${tookMs} ms`)
        const actor = cluster.actorOf(victim)
        for (const a of live) {
          const entries = (cluster.swim(a)?.members() ?? []).filter((m) => m.actorId === actor)
          assert.equal(entries.length, 1)
          assert.equal(entries[0]?.epoch, epoch)
        }
        // It was never declared down at its new epoch, and nobody else was.
        assert.deepEqual(
          cluster.downs.filter((e) => e.member.actorId !== actor || e.member.epoch === epoch),
          [],
        )
      })
    })
  }
})
