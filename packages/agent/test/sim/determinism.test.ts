/**
 * Goal: a membership simulation is a pure function of its seed. Two runs of the same faulty
 * scenario (loss, duplication, reordering, a pause, a crash and restart, a partition and its heal)
 * produce the same network trace hash and the same member tables bit for bit; another seed
 * produces another trace.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Sim } from '../../src/sim/sim.ts'
import { addrOf, SwimCluster } from '../../src/sim/swim-cluster.ts'
import { seeds, withSeed } from './seeds.ts'

async function scenario(seed: number): Promise<{ hash: string; tables: string }> {
  const sim = new Sim({
    seed,
    link: { latencyMs: 1, jitterMs: 5, loss: 0.05, duplicate: 0.02, reorder: 0.05 },
  })
  const cluster = new SwimCluster(sim)
  cluster.addMany(12)
  await sim.runFor(10_000)
  cluster.host(addrOf(3)).pause()
  await sim.runFor(4000)
  cluster.host(addrOf(3)).resume()
  cluster.host(addrOf(5)).crash()
  await sim.runFor(20_000)
  cluster.host(addrOf(5)).start()
  sim.network.partition(cluster.addrs().slice(0, 4), cluster.addrs().slice(4))
  await sim.runFor(40_000)
  sim.network.heal()
  await sim.runFor(60_000)
  const tables = cluster
    .addrs()
    .map((a) => JSON.stringify([a, cluster.swim(a)?.members(), cluster.swim(a)?.stats()]))
    .join('\n')
  return { hash: sim.traceHash(), tables }
}

describe('sim - determinism', () => {
  for (const seed of seeds(8000, 5, 50)) {
    it(`same seed, same run bit for bit; another seed, another run (seed ${seed})`, async () => {
      await withSeed(seed, async () => {
        const a = await scenario(seed)
        const b = await scenario(seed)
        assert.equal(a.hash, b.hash)
        assert.equal(a.tables, b.tables)
        const c = await scenario(seed + 1_000_000)
        assert.notEqual(c.hash, a.hash)
      })
    })
  }
})
