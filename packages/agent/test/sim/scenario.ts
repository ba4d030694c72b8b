/** Shared set-up of membership simulations: a LAN-like network and a converged cluster. */
import assert from 'node:assert/strict'
import type { SwimOptions } from '../../src/membership/defaults.ts'
import type { LinkProfile } from '../../src/sim/network.ts'
import { Sim } from '../../src/sim/sim.ts'
import { SwimCluster } from '../../src/sim/swim-cluster.ts'

/** A LAN: 0.5-2.5 ms one way. */
export const LAN_LINK: Partial<LinkProfile> = { latencyMs: 0.5, jitterMs: 2 }

export interface Formed {
  readonly sim: Sim
  readonly cluster: SwimCluster
  /** Virtual time at which every node saw every node alive. */
  readonly convergedAtMs: number
}

/** n nodes joining through node 0, run until they all see each other alive. */
export async function formCluster(
  seed: number,
  n: number,
  options: { swim?: Partial<SwimOptions>; link?: Partial<LinkProfile>; timeoutMs?: number } = {},
): Promise<Formed> {
  const sim = new Sim({ seed, link: { ...LAN_LINK, ...options.link } })
  const cluster = new SwimCluster(sim, options.swim === undefined ? {} : { swim: options.swim })
  cluster.addMany(n)
  const ok = await sim.runUntil(() => cluster.converged(), {
    timeoutMs: options.timeoutMs ?? 60_000,
    checkEveryMs: 50,
  })
  assert.ok(ok, `${n} nodes did not converge`)
  return { sim, cluster, convergedAtMs: sim.now() }
}

/** Calls `fn` every `everyMs` of virtual time (for sampling gauges during a run). */
export function every(sim: Sim, everyMs: number, fn: () => void): void {
  const tick = (): void => {
    fn()
    sim.scheduler.after(everyMs, tick)
  }
  sim.scheduler.after(everyMs, tick)
}
