/**
 * SWIM nodes on a `Sim`: each host runs a real `Swim` wired to the simulated clock, randomness,
 * datagrams and streams, and every membership change is recorded so that tests can ask "did
 * anyone ever declare X down?" after the fact.
 */
import assert from 'node:assert/strict'
import { LAN_PROFILE, type SwimOptions } from '../membership/defaults.ts'
import type { MemberInfo } from '../membership/member.ts'
import { suspicionBounds } from '../membership/suspicion.ts'
import { Swim } from '../membership/swim.ts'
import { SIM_EPOCH_BASE } from './scheduler.ts'
import type { HostContext, HostHandlers, Sim, SimHost } from './sim.ts'

/** Epoch of a node started at virtual time t: this + t (like a start time in Unix ms). */

export interface SwimHost extends HostHandlers {
  readonly swim: Swim
}

/** A membership change seen by `observer`. */
export interface ChangeEvent {
  readonly atMs: number
  readonly observer: string
  readonly member: MemberInfo
}

export interface SwimClusterOptions {
  readonly clusterId?: number
  /** Options of every node (over LAN_PROFILE). */
  readonly swim?: Partial<SwimOptions>
  /** Keep every change event (default true; the 500-node benchmark turns it off). */
  readonly recordChanges?: boolean
}

/** Actor id of node i: 32 hex digits. */
export function actorIdOf(i: number): string {
  return (i + 1).toString(16).padStart(32, '0')
}

/** Address of node i. */
export function addrOf(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:7946`
}

export interface NodeSpec {
  readonly index: number
  readonly bootstrap: readonly string[]
  /** Options of this node only (over the cluster's). */
  readonly swim?: Partial<SwimOptions>
}

export class SwimCluster {
  readonly sim: Sim
  readonly clusterId: number
  readonly options: SwimOptions
  /** Every change, in order (when recorded). */
  readonly changes: ChangeEvent[] = []
  /** Actor ids that some node declared down, with who and when (always recorded). */
  readonly downs: ChangeEvent[] = []
  private readonly record: boolean
  private readonly hostsByAddr = new Map<string, SimHost<SwimHost>>()
  private readonly specs = new Map<string, NodeSpec>()
  private readonly actorByAddr = new Map<string, string>()
  private readonly lastEpoch = new Map<string, number>()

  constructor(sim: Sim, options: SwimClusterOptions = {}) {
    this.sim = sim
    this.clusterId = options.clusterId ?? 1
    this.options = { ...LAN_PROFILE, ...options.swim }
    this.record = options.recordChanges ?? true
  }

  /** Adds and starts node `spec.index`. */
  add(spec: NodeSpec): SimHost<SwimHost> {
    const addr = addrOf(spec.index)
    this.specs.set(addr, spec)
    this.actorByAddr.set(addr, actorIdOf(spec.index))
    const host = this.sim.addHost(addr, (ctx) => this.makeNode(ctx, spec))
    this.hostsByAddr.set(addr, host)
    return host
  }

  /** Adds nodes 0..n-1, all joining through node 0's address. */
  addMany(n: number, bootstrap: readonly string[] = [addrOf(0)]): void {
    for (let i = 0; i < n; i++) this.add({ index: i, bootstrap })
  }

  private makeNode(ctx: HostContext, spec: NodeSpec): SwimHost {
    const actorId = actorIdOf(spec.index)
    const epoch = SIM_EPOCH_BASE + Math.floor(ctx.startedAtMs)
    const last = this.lastEpoch.get(ctx.addr)
    assert.ok(last === undefined || epoch > last, 'restart within the same millisecond')
    const swim = new Swim(
      {
        clock: ctx.clock,
        random: ctx.random,
        send: (to, bytes) => {
          ctx.send(to, bytes)
        },
        pushPull: (to, state, signal) => ctx.request(to, state, signal),
      },
      {
        ...this.options,
        ...spec.swim,
        actorId,
        addr: ctx.addr,
        epoch,
        clusterId: this.clusterId,
        bootstrap: spec.bootstrap,
        onChange: (member) => {
          if (member.actorId === actorId) this.lastEpoch.set(ctx.addr, member.epoch)
          const event = { atMs: this.sim.now(), observer: ctx.addr, member }
          if (this.record) this.changes.push(event)
          if (member.state === 'down') this.downs.push(event)
        },
      },
    )
    this.lastEpoch.set(ctx.addr, epoch)
    swim.start()
    return {
      swim,
      onDatagram: (from, bytes) => {
        swim.receive(from, bytes)
      },
      onRequest: (from, bytes) => swim.handlePushPull(from, bytes),
    }
  }

  host(addr: string): SimHost<SwimHost> {
    const host = this.hostsByAddr.get(addr)
    assert.ok(host !== undefined, `no node at ${addr}`)
    return host
  }

  /** The Swim of the node at `addr`, null when crashed. */
  swim(addr: string): Swim | null {
    return this.host(addr).instance?.swim ?? null
  }

  addrs(): string[] {
    return [...this.hostsByAddr.keys()]
  }

  actorOf(addr: string): string {
    const id = this.actorByAddr.get(addr)
    assert.ok(id !== undefined)
    return id
  }

  /** Addresses of the nodes not crashed (paused ones included). */
  live(): string[] {
    return this.addrs().filter((a) => this.host(a).status !== 'crashed')
  }

  /**
   * Whether every node in `observers` lists every node in `subjects` alive at its current epoch
   * (and lists each exactly once, which a map by actor id guarantees).
   */
  allSeeAlive(observers: readonly string[], subjects: readonly string[]): boolean {
    const current = new Map<string, number>()
    for (const s of subjects) {
      const swim = this.swim(s)
      if (swim === null) return false
      current.set(this.actorOf(s), swim.identity().epoch)
    }
    for (const o of observers) {
      const swim = this.swim(o)
      if (swim === null) return false
      for (const [actorId, epoch] of current) {
        const m = swim.member(actorId)
        if (m?.state !== 'alive' || m.epoch !== epoch) return false
      }
    }
    return true
  }

  /** Whether every live node sees every live node alive, and nothing else as alive or suspect. */
  converged(): boolean {
    const live = this.live()
    // Cheap test first: counts by state.
    for (const o of live) {
      const s = (this.swim(o) as Swim).memberCounts()
      if (s.alive !== live.length || s.suspect !== 0) return false
    }
    return this.allSeeAlive(live, live)
  }

  /** Down events about `addr`'s actor at an epoch it was alive at (false positives among them). */
  downsOf(addr: string): ChangeEvent[] {
    const actor = this.actorOf(addr)
    return this.downs.filter((e) => e.member.actorId === actor)
  }

  /**
   * Suspicion bounds for a cluster of n, and an upper bound on the time until every live member
   * declares a crashed one down: its first probe (within `firstProbeRounds` probe intervals; a
   * member escapes k rounds of n - 1 probers with probability about e^-k), that probe's interval,
   * the longest suspicion timeout, and `disseminationMs` for the last member to hear.
   */
  detectionBoundMs(n: number, firstProbeRounds = 10, disseminationMs = 2000): number {
    const o = this.options
    const { maxMs } = suspicionBounds(
      n,
      o.suspicionMult,
      o.suspicionMaxTimeoutMult,
      o.probeIntervalMs,
    )
    return (firstProbeRounds + 1) * o.probeIntervalMs + maxMs + disseminationMs
  }
}
