/**
 * Goal: each Lifeguard mechanism that can be switched off is shown to matter: the scenario runs
 * with it off and the bad outcome it exists to prevent is observed, then with it on and the
 * outcome is good.
 * - Nacks: when members crash, healthy members probing them must not conclude that they
 *   themselves are degraded. Without nacks every failed probe costs +1 local health, so nearly
 *   every healthy member slows its probing (LHM > 0); with nacks the helpers vouch for the
 *   prober and only those that happened to pick a crashed helper move.
 * - Buddy system: a member that is suspected while the gossip about it does not reach it
 *   (a datagram filter drops every non-ping packet to it that carries its suspicion) learns it
 *   only from pings. Without the buddy system, pings carry the suspicion only while it is still
 *   being retransmitted, and the live member is declared down in some runs; with it, never.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { decodePacket } from '../../src/membership/codec.ts'
import { addrOf } from '../../src/sim/swim-cluster.ts'
import { formCluster } from './scenario.ts'
import { seeds, withSeed } from './seeds.ts'

/** Share of healthy members whose local health rose while 4 of 20 members crashed. */
async function nackScenario(seed: number, nacks: boolean): Promise<number> {
  const n = 20
  const { sim, cluster } = await formCluster(seed, n, { swim: { nacks } })
  const crashed = [1, 5, 9, 13].map(addrOf)
  for (const a of crashed) cluster.host(a).crash()
  const healthy = cluster.live()
  const crashedActors = crashed.map((a) => cluster.actorOf(a))
  const ok = await sim.runUntil(
    () =>
      healthy.every((a) =>
        crashedActors.every((c) => cluster.swim(a)?.member(c)?.state === 'down'),
      ),
    { timeoutMs: 120_000 },
  )
  assert.ok(ok, 'crashed members declared down')
  assert.deepEqual(
    cluster.downs.filter((e) => !crashedActors.includes(e.member.actorId)),
    [],
    'no healthy member declared down',
  )
  const raised = healthy.filter((a) => (cluster.swim(a)?.stats().localHealthRaises ?? 0) > 0)
  return raised.length / healthy.length
}

/** Whether the suspected live member was declared down (a false positive). */
async function buddyScenario(seed: number, buddySystem: boolean): Promise<boolean> {
  const n = 6
  const { sim, cluster } = await formCluster(seed, n, {
    swim: { buddySystem, pushPullIntervalMs: 0 },
  })
  const m = addrOf(1 + sim.random.int(n - 1))
  const actor = cluster.actorOf(m)
  sim.network.setFilter((_from, to, bytes) => {
    if (to !== m) return true
    const d = decodePacket(bytes)
    if (!d.ok || d.packet.body.type === 'ping') return true
    return !d.packet.updates.some((u) => u.actorId === actor && u.state === 'suspect')
  })
  // A 3 s stall gets it suspected by whoever probes it meanwhile.
  cluster.host(m).pause()
  await sim.runFor(3000)
  cluster.host(m).resume()
  await sim.runFor(60_000)
  assert.deepEqual(
    cluster.downs.filter((e) => e.member.actorId !== actor),
    [],
    'nobody else declared down',
  )
  return cluster.downsOf(m).length > 0
}

describe('sim - Lifeguard mechanisms', () => {
  it('nacks: without them healthy members probing crashed ones lower their own health; with them they do not', async (t) => {
    const runs = seeds(6000, 10, 100)
    let off = 0
    let on = 0
    for (const seed of runs) {
      off += await withSeed(seed, (s) => nackScenario(s, false))
      on += await withSeed(seed, (s) => nackScenario(s, true))
    }
    off /= runs.length
    on /= runs.length
    t.diagnostic(
      `healthy members whose LHM rose: nacks off ${(off * 100).toFixed(0)}%, on ${(on * 100).toFixed(0)}%`,
    )
    assert.ok(off >= 0.7, `nacks off: the bad outcome (most healthy members degrade) ${off}`)
    assert.ok(on <= 0.35, `nacks on: few healthy members degrade ${on}`)
  })

  it('buddy system: without it a suspected live member that misses the gossip is declared down; with it, never', async (t) => {
    const runs = seeds(7000, 40, 400)
    let falseDownsOff = 0
    let falseDownsOn = 0
    for (const seed of runs) {
      if (await withSeed(seed, (s) => buddyScenario(s, false))) falseDownsOff++
      if (await withSeed(seed, (s) => buddyScenario(s, true))) falseDownsOn++
    }
    t.diagnostic(
      `live member declared down: buddy off in ${falseDownsOff}/${runs.length} runs, on in ${falseDownsOn}`,
    )
    if (runs.length >= 10) assert.ok(falseDownsOff >= 2, 'buddy off: the bad outcome is observed')
    assert.equal(falseDownsOn, 0, 'buddy on: never')
  })
})
