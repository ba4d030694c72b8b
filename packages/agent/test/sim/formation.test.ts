/**
 * Goal: nodes that know one bootstrap address form one view, even when they start before the
 * bootstrap node (they retry with backoff); in the same 50-node cluster a crashed node is then
 * declared down by every other node within the bound computed from the parameters.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Sim } from '../../src/sim/sim.ts'
import { addrOf, SwimCluster } from '../../src/sim/swim-cluster.ts'
import { LAN_LINK } from './scenario.ts'
import { seeds, withSeed } from './seeds.ts'

describe('sim - formation', () => {
  for (const seed of seeds(100, 2, 20)) {
    it(`50 nodes form one view from a single bootstrap address (seed ${seed})`, async (t) => {
      await withSeed(seed, async () => {
        const n = 50
        const sim = new Sim({ seed, link: LAN_LINK })
        const cluster = new SwimCluster(sim)
        const bootstrap = [addrOf(0)]
        // Node 0 (the bootstrap) comes up at 2 s; the others at random times in the first 5 s,
        // some of them before it, so that their first join attempts fail.
        let lastStartMs = 2000
        sim.scheduler.at(2000, () => cluster.add({ index: 0, bootstrap }))
        for (let i = 1; i < n; i++) {
          const at = sim.random.float() * 5000
          lastStartMs = Math.max(lastStartMs, at)
          sim.scheduler.at(at, () => cluster.add({ index: i, bootstrap }))
        }
        await sim.runFor(5000)
        const ok = await sim.runUntil(() => cluster.converged(), {
          timeoutMs: 60_000,
          checkEveryMs: 50,
        })
        assert.ok(ok, 'one view')
        const fullViewMs = sim.now() - lastStartMs
        t.diagnostic(`full view ${fullViewMs.toFixed(0)} ms after the last node started`)
        assert.ok(fullViewMs < 15_000, `full view took ${fullViewMs} ms`)
        for (const addr of cluster.addrs()) {
          const members = cluster.swim(addr)?.members() ?? []
          assert.equal(members.length, n)
          assert.equal(new Set(members.map((m) => m.actorId)).size, n)
        }
        assert.equal(cluster.downs.length, 0)

        // The same cluster: crash one node, every other one must declare it down in time.
        const victim = addrOf(1 + sim.random.int(n - 1))
        const crashedAt = sim.now()
        cluster.host(victim).crash()
        const bound = cluster.detectionBoundMs(n)
        const others = cluster.live()
        const actor = cluster.actorOf(victim)
        const allDown = await sim.runUntil(
          () => others.every((a) => cluster.swim(a)?.member(actor)?.state === 'down'),
          { timeoutMs: bound, checkEveryMs: 100 },
        )
        const times = cluster.downsOf(victim).map((e) => e.atMs - crashedAt)
        t.diagnostic(
          `crash of ${victim}: first down after ${Math.min(...times).toFixed(0)} ms, ` +
            `all ${others.length} after ${Math.max(...times).toFixed(0)} ms (bound ${bound} ms)`,
        )
        assert.ok(allDown, `not every node declared ${victim} down within ${bound} ms`)
        assert.equal(cluster.downs.filter((e) => e.member.actorId !== actor).length, 0)
      })
    })
  }
})
