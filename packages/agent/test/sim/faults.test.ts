/**
 * Goal: the failure detector stays accurate under the faults SWIM + Lifeguard are meant for:
 * a paused node that resumes refutes and is alive again (a short pause) or renews its identity
 * and rejoins (a pause long enough to be declared down); a healed partition merges into one
 * view; 10% packet loss declares no live node down; a node whose event loop stalls raises its
 * local health and causes no false downs of others.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { decodePacket } from '../../src/membership/codec.ts'
import { addrOf } from '../../src/sim/swim-cluster.ts'
import { every, formCluster } from './scenario.ts'
import { seeds, withSeed } from './seeds.ts'

describe('sim - pause', () => {
  for (const seed of seeds(2000, 100, 1000)) {
    it(`a node paused for 3 s refutes when it resumes and is alive again, never down (seed ${seed})`, async () => {
      await withSeed(seed, async () => {
        const n = 10
        const { sim, cluster } = await formCluster(seed, n)
        const victim = addrOf(sim.random.int(n))
        const actor = cluster.actorOf(victim)
        const host = cluster.host(victim)
        host.pause()
        await sim.runFor(3000)
        const suspectedBy = cluster
          .live()
          .filter((a) => a !== victim && cluster.swim(a)?.member(actor)?.state === 'suspect')
        host.resume()
        const live = cluster.live()
        const ok = await sim.runUntil(() => cluster.allSeeAlive(live, live), {
          timeoutMs: 10_000,
          checkEveryMs: 50,
        })
        assert.ok(ok, 'alive again everywhere')
        const me = cluster.swim(victim)?.stats()
        assert.ok(me !== undefined, 'running')
        if (suspectedBy.length > 0) {
          assert.ok(me.falseSuspicionRefutations >= 1, 'it refuted')
          assert.ok(me.incarnation >= 1, 'incarnation went up')
        }
        assert.equal(me.epochRenewals, 0)
        assert.deepEqual(cluster.downs, [], 'nobody declared down')
      })
    })
  }

  for (const seed of seeds(2100, 30, 300)) {
    it(`a node paused past the suspicion timeout is declared down, then renews its identity and rejoins (seed ${seed})`, async () => {
      await withSeed(seed, async () => {
        const n = 10
        const { sim, cluster } = await formCluster(seed, n)
        const victim = addrOf(sim.random.int(n))
        const actor = cluster.actorOf(victim)
        const oldEpoch = cluster.swim(victim)?.identity().epoch
        const host = cluster.host(victim)
        host.pause()
        const others = cluster.live().filter((a) => a !== victim)
        const down = await sim.runUntil(
          () => others.every((a) => cluster.swim(a)?.member(actor)?.state === 'down'),
          { timeoutMs: 60_000, checkEveryMs: 100 },
        )
        assert.ok(down, 'declared down while paused')
        await sim.runFor(sim.random.float() * 40_000)
        host.resume()
        const live = cluster.live()
        const ok = await sim.runUntil(() => cluster.allSeeAlive(live, live), {
          timeoutMs: 40_000,
          checkEveryMs: 50,
        })
        assert.ok(ok, 'alive again everywhere, at its new epoch')
        const me = cluster.swim(victim)?.identity()
        assert.ok(me !== undefined && oldEpoch !== undefined && me.epoch > oldEpoch, 'new epoch')
        assert.deepEqual(
          cluster.downs.filter((e) => e.member.actorId !== actor),
          [],
          'only the paused node was declared down',
        )
      })
    })
  }
})

describe('sim - partition', () => {
  for (const seed of seeds(3000, 60, 600)) {
    it(`a partition that lasted past the suspicion timeouts heals into one view (seed ${seed})`, async (t) => {
      await withSeed(seed, async () => {
        const n = 10
        const { sim, cluster } = await formCluster(seed, n)
        const addrs = cluster.addrs()
        const cut = 1 + sim.random.int(n - 1)
        const left = addrs.slice(0, cut)
        const right = addrs.slice(cut)
        sim.network.partition(left, right)
        const split = await sim.runUntil(
          () =>
            left.every((a) =>
              right.every((b) => cluster.swim(a)?.member(cluster.actorOf(b))?.state === 'down'),
            ),
          { timeoutMs: 120_000, checkEveryMs: 200 },
        )
        assert.ok(split, 'each side declared the other down')
        // Stay split long enough that gossip to the dead has stopped (30 s) in half the runs.
        await sim.runFor(sim.random.float() * 60_000)
        sim.network.heal()
        const healedAt = sim.now()
        const ok = await sim.runUntil(() => cluster.converged(), {
          timeoutMs: 120_000,
          checkEveryMs: 100,
        })
        assert.ok(ok, 'one view after the heal')
        t.diagnostic(`${cut}/${n - cut} split healed in ${(sim.now() - healedAt).toFixed(0)} ms`)
        for (const a of addrs) assert.equal(cluster.swim(a)?.members().length, n)
      })
    })
  }

  for (const seed of seeds(3100, 30, 300)) {
    it(`a one-way partition (A cannot reach B) flaps no node down for good (seed ${seed})`, async () => {
      await withSeed(seed, async () => {
        const n = 8
        const { sim, cluster } = await formCluster(seed, n)
        const [a, b] = [addrOf(0), addrOf(1)]
        sim.network.blockOneWay([a], [b])
        await sim.runFor(60_000)
        sim.network.heal()
        const ok = await sim.runUntil(() => cluster.converged(), {
          timeoutMs: 60_000,
          checkEveryMs: 100,
        })
        assert.ok(ok, 'one view after the heal')
      })
    })
  }
})

describe('sim - loss', () => {
  it('with 10% loss on every link no live node is declared down (many seeds)', async (t) => {
    let suspicions = 0
    let refuted = 0
    const runs = seeds(4000, 100, 1000)
    for (const seed of runs) {
      await withSeed(seed, async () => {
        const n = 10
        const { sim, cluster } = await formCluster(seed, n, { link: { loss: 0.1 } })
        await sim.runFor(120_000)
        assert.deepEqual(cluster.downs, [], 'no live node declared down')
        // A suspicion may be under way at any moment; it must clear.
        const settled = await sim.runUntil(() => cluster.converged(), { timeoutMs: 30_000 })
        assert.ok(settled, 'one view')
        for (const addr of cluster.addrs()) {
          const s = cluster.swim(addr)?.stats()
          suspicions += s?.suspicionsRaised ?? 0
          refuted += s?.falseSuspicionRefutations ?? 0
        }
      })
    }
    t.diagnostic(
      `${runs.length} runs of 10 nodes x 120 s at 10% loss: ${suspicions} suspicions raised, ` +
        `${refuted} refuted, 0 downs`,
    )
  })
})

describe('sim - stalled event loop', () => {
  for (const seed of seeds(5000, 60, 600)) {
    it(`a node that stalls for several probe periods raises its local health and causes no false downs (seed ${seed})`, async () => {
      await withSeed(seed, async () => {
        const n = 10
        const { sim, cluster } = await formCluster(seed, n)
        const slow = addrOf(sim.random.int(n))
        const host = cluster.host(slow)
        let maxHealth = 0
        every(sim, 100, () => {
          maxHealth = Math.max(maxHealth, cluster.swim(slow)?.localHealth() ?? 0)
        })
        // Each stall starts right after the node sent a ping (as a long synchronous call made
        // just after it would), lasts 2.5 to 4.5 s, and the stalls are 4 to 8 s apart. On
        // resume its overdue timers run before the ack that waited: its own probe fails.
        let stallsLeft = 5
        let armed = false
        sim.network.setFilter((from, _to, bytes) => {
          if (armed && from === slow && isPing(bytes)) {
            armed = false
            sim.scheduler.after(0, () => {
              host.pause()
              sim.scheduler.after(2500 + sim.random.float() * 2000, () => {
                host.resume()
                if (--stallsLeft > 0) {
                  sim.scheduler.after(4000 + sim.random.float() * 4000, () => {
                    armed = true
                  })
                }
              })
            })
          }
          return true
        })
        armed = true
        const done = await sim.runUntil(() => stallsLeft === 0, { timeoutMs: 180_000 })
        assert.ok(done, 'five stalls')
        await sim.runFor(30_000)
        const stats = cluster.swim(slow)?.stats()
        assert.ok(stats !== undefined, 'running')
        assert.ok(maxHealth >= 3, `local health rose (max ${maxHealth})`)
        assert.ok(stats.probesFailed >= 1, `its probes failed (${stats.probesFailed})`)
        assert.deepEqual(
          cluster.downs.filter((e) => e.member.actorId !== cluster.actorOf(slow)),
          [],
          'no other node declared down',
        )
        assert.ok(cluster.converged(), 'one view at the end')
      })
    })
  }
})

function isPing(bytes: Uint8Array): boolean {
  const d = decodePacket(bytes)
  return d.ok && d.packet.body.type === 'ping'
}
