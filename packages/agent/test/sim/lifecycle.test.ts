/**
 * Goal: the rest of a member's life cycle across a whole cluster: a graceful leave is seen by
 * everyone as `left` (never suspect or down); a node of another cluster that bootstraps to this
 * one is refused and counted, and neither side learns of the other; the WAN profile detects a
 * crash within its own (longer) bound over WAN latencies.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { WAN_PROFILE } from '../../src/membership/defaults.ts'
import { Sim } from '../../src/sim/sim.ts'
import { actorIdOf, addrOf, SwimCluster } from '../../src/sim/swim-cluster.ts'
import { formCluster } from './scenario.ts'
import { seeds, withSeed } from './seeds.ts'

describe('sim - leave', () => {
  for (const seed of seeds(9000, 40, 400)) {
    it(`a node that leaves is listed as left everywhere, never suspect or down (seed ${seed})`, async () => {
      await withSeed(seed, async () => {
        const n = 10
        const { sim, cluster } = await formCluster(seed, n, { link: { loss: 0.05 } })
        const leaver = addrOf(sim.random.int(n))
        const actor = cluster.actorOf(leaver)
        const swim = cluster.swim(leaver)
        assert.ok(swim !== null, 'running')
        let stopped = false
        void swim.leave().then(() => {
          stopped = true
        })
        await sim.runFor(2000)
        assert.ok(stopped, 'leave() resolved after the linger time')
        cluster.host(leaver).crash() // the process exits
        const others = cluster.live()
        const ok = await sim.runUntil(
          () => others.every((a) => cluster.swim(a)?.member(actor)?.state === 'left'),
          { timeoutMs: 20_000 },
        )
        assert.ok(ok, 'everyone lists it as left')
        await sim.runFor(60_000)
        for (const a of others) assert.equal(cluster.swim(a)?.member(actor)?.state, 'left')
        const seenAs = cluster.changes
          .filter((e) => e.member.actorId === actor && e.observer !== leaver)
          .map((e) => e.member.state)
        assert.ok(!seenAs.includes('down'), 'never down')
        assert.deepEqual(cluster.downs, [])
      })
    })
  }
})

describe('sim - cluster id', () => {
  it('a node of another cluster is refused, counted, and learns nothing', async () => {
    const sim = new Sim({ seed: 9100, link: { latencyMs: 1, jitterMs: 1 } })
    const a = new SwimCluster(sim, { clusterId: 1 })
    const b = new SwimCluster(sim, { clusterId: 2 })
    a.addMany(5)
    // Node 10 belongs to cluster 2 but is pointed at cluster 1's bootstrap address.
    b.add({ index: 10, bootstrap: [addrOf(0)] })
    await sim.runFor(30_000)
    assert.ok(a.converged(), 'cluster 1 formed')
    const stranger = b.swim(addrOf(10))
    assert.ok(stranger !== null, 'running')
    assert.equal(stranger.members().length, 1, 'it knows only itself')
    const seed = a.swim(addrOf(0))?.stats()
    assert.ok(seed !== undefined, 'running')
    assert.ok(seed.packetsDropped.wrongCluster >= 1, 'the bootstrap node counted the refusals')
    for (const addr of a.addrs()) assert.equal(a.swim(addr)?.member(actorIdOf(10)), null)
    assert.ok(stranger.stats().joinAttempts >= 3, 'it keeps retrying with backoff')
  })
})

describe('sim - WAN profile', () => {
  for (const seed of seeds(9200, 20, 200)) {
    it(`over 50-150 ms links a crash is detected within the WAN bound (seed ${seed})`, async () => {
      await withSeed(seed, async () => {
        const n = 10
        const { sim, cluster } = await formCluster(seed, n, {
          swim: WAN_PROFILE,
          link: { latencyMs: 50, jitterMs: 100, loss: 0.01 },
          timeoutMs: 120_000,
        })
        const victim = addrOf(sim.random.int(n))
        const actor = cluster.actorOf(victim)
        cluster.host(victim).crash()
        const bound = cluster.detectionBoundMs(n)
        const others = cluster.live()
        const ok = await sim.runUntil(
          () => others.every((a) => cluster.swim(a)?.member(actor)?.state === 'down'),
          { timeoutMs: bound, checkEveryMs: 500 },
        )
        assert.ok(ok, `declared down by all within ${bound} ms`)
        assert.deepEqual(
          cluster.downs.filter((e) => e.member.actorId !== actor),
          [],
        )
      })
    })
  }
})
