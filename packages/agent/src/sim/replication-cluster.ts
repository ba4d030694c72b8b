/**
 * Replication on the simulator: N hosts, each a node built by createNode (node/create-node.ts)
 * exactly as the agent builds it, around a real Replica (a SQLite file in `dir`), on one virtual
 * clock and one seeded network. SWIM packets travel as datagrams; push-pull, broadcast links and
 * sync sessions as framed streams (sim/streams.ts) that suffer the network's latency, loss,
 * reordering, resets and partitions.
 *
 * Crash is `kill -9`: the host's life ends (timers, deliveries and connections dropped, peers
 * see their connections reset) and its database is closed with whatever was committed; restart
 * opens the same file.
 */
import { actorIdHex } from '../runtime/actor-id.ts'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { pino, type Logger } from 'pino'
import { Replica } from '../crdt/replica.ts'
import type { Statement, TransactionResult } from '../crdt/replica.ts'
import type { Clock } from '../runtime/clock.ts'
import { LAN_PROFILE, type SwimOptions } from '../membership/defaults.ts'
import type { Swim } from '../membership/swim.ts'
import { createNode, type PatinaNode } from '../node/create-node.ts'
import { DEFAULT_REPLICATION, type ReplicationOptions } from '../replication/options.ts'
import type { Replicator } from '../replication/replicator.ts'
import { SIM_EPOCH_BASE } from './scheduler.ts'
import type { HostContext, Sim, SimHost } from './sim.ts'
import { actorIdOf, addrOf } from './swim-cluster.ts'

/**
 * First byte of what a network filter sees (sim/network.ts `setFilter`): datagrams carry SWIM
 * packets as they are; stream frames are shown with their connection's kind in front.
 */
export {
  STREAM_BROADCAST as KIND_BROADCAST,
  STREAM_PUSH_PULL as KIND_PUSH_PULL,
  STREAM_SYNC as KIND_SYNC,
} from '../transport/stream-kind.ts'

/** A graceful stop's leave is bounded by this much virtual time. */
const SIM_LEAVE_TIMEOUT_MS = 1_000

export interface ReplicationClusterOptions {
  /** Where the nodes' database files go. */
  readonly dir: string
  /** Schema SQL every node starts with. */
  readonly schema: string
  /** Per-node schema at start, when some nodes run another version (default: `schema`). */
  readonly schemaFor?: (index: number) => string
  readonly clusterId?: number
  readonly swim?: Partial<SwimOptions>
  readonly replication?: Partial<ReplicationOptions>
  /** Per-node overrides of `replication` (e.g. a node whose frames are smaller). */
  readonly replicationFor?: (index: number) => Partial<ReplicationOptions>
  /** Where the nodes log (default: silent). */
  readonly logger?: Logger
}

export interface ReplicationNode {
  readonly replica: Replica
  readonly replicator: Replicator
  readonly swim: Swim
  readonly node: PatinaNode
  /** Halts the node and closes its database (no goodbye). */
  stop(): void
}

function hexBytes(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, 'hex'))
}

export class ReplicationCluster {
  readonly sim: Sim
  readonly options: ReplicationOptions
  private readonly config: ReplicationClusterOptions
  private readonly swimOptions: SwimOptions
  private readonly clusterId: number
  private readonly hosts = new Map<string, SimHost<ReplicationNode>>()
  private readonly current = new Map<string, ReplicationNode>()
  private readonly lastEpoch = new Map<string, number>()
  private readonly logger: Logger

  constructor(sim: Sim, config: ReplicationClusterOptions) {
    this.sim = sim
    this.config = config
    this.clusterId = config.clusterId ?? 1
    this.swimOptions = { ...LAN_PROFILE, ...config.swim }
    this.options = { ...DEFAULT_REPLICATION, ...config.replication }
    this.logger = config.logger ?? pino({ level: 'silent' })
  }

  /** Adds and starts nodes 0..n-1, joining through node 0. */
  addMany(n: number): void {
    for (let i = 0; i < n; i++) this.add(i)
  }

  add(index: number, bootstrap: readonly string[] = [addrOf(0)]): SimHost<ReplicationNode> {
    const addr = addrOf(index)
    // Streams carry frames up to the size replication keeps its messages to.
    const host = this.sim.addHost(addr, (ctx) => this.makeNode(ctx, index, bootstrap), {
      stream: { frameBytesMax: this.optionsFor(index).frameBytesMax },
    })
    this.hosts.set(addr, host)
    return host
  }

  private optionsFor(index: number): ReplicationOptions {
    const own = this.config.replicationFor?.(index)
    return own === undefined ? this.options : { ...this.options, ...own }
  }

  private makeNode(ctx: HostContext, index: number, bootstrap: readonly string[]): ReplicationNode {
    const actorId = actorIdOf(index)
    const replica = Replica.open(join(this.config.dir, `node-${index}.db`), {
      actorId: hexBytes(actorId),
    })
    const sql = this.config.schemaFor?.(index) ?? this.config.schema
    replica.applySchema([{ path: 'schema.sql', sql }])
    let epoch = SIM_EPOCH_BASE + Math.floor(ctx.startedAtMs)
    const last = this.lastEpoch.get(ctx.addr)
    if (last !== undefined && epoch <= last) epoch = last + 1
    this.lastEpoch.set(ctx.addr, epoch)
    // Promises settled in timer callbacks (an apply-queue reservation granted when a batch is
    // applied) continue at that virtual time, as they would in Node.js, not whenever the run
    // loop next happens to yield.
    const drained = (fn: () => void) => () => {
      fn()
      this.sim.scheduler.requestDrain()
    }
    const clock: Clock = {
      now: () => ctx.clock.now(),
      wallNow: () => ctx.clock.wallNow(),
      setTimer: (ms, fn) => ctx.clock.setTimer(ms, drained(fn)),
      clearTimer: (id) => {
        ctx.clock.clearTimer(id)
      },
      defer: (fn) => {
        ctx.clock.defer(drained(fn))
      },
    }
    const node = createNode(
      {
        clock,
        random: ctx.random,
        replica,
        datagrams: ctx.datagrams,
        streams: ctx.streams,
        logger: this.logger,
      },
      {
        epoch,
        clusterId: this.clusterId,
        bootstrap,
        swim: this.swimOptions,
        replication: this.optionsFor(index),
        leaveTimeoutMs: SIM_LEAVE_TIMEOUT_MS,
      },
    )
    void node.start()
    let stopped = false
    const entry: ReplicationNode = {
      replica,
      replicator: node.replicator,
      swim: node.swim,
      node,
      stop: () => {
        if (stopped) return
        stopped = true
        node.halt()
        replica.close()
      },
    }
    this.current.set(ctx.addr, entry)
    return entry
  }

  addrs(): string[] {
    return [...this.hosts.keys()]
  }

  /** The running node at `addr` (undefined while crashed). */
  node(addr: string): ReplicationNode | undefined {
    const host = this.hosts.get(addr)
    return host?.status === 'crashed' ? undefined : this.current.get(addr)
  }

  nodes(): ReplicationNode[] {
    return this.addrs().flatMap((a) => {
      const n = this.node(a)
      return n === undefined ? [] : [n]
    })
  }

  /** A local write on the node at `addr`. */
  write(addr: string, statements: readonly Statement[]): TransactionResult {
    const node = this.node(addr)
    assert.ok(node !== undefined, `node ${addr} is not running`)
    return node.replica.transaction(statements)
  }

  /** kill -9: the life ends; committed data stays in the file. */
  crash(addr: string): void {
    const host = this.hosts.get(addr)
    assert.ok(host !== undefined)
    host.crash()
    this.current.get(addr)?.stop()
  }

  restart(addr: string): ReplicationNode {
    const host = this.hosts.get(addr)
    assert.ok(host !== undefined)
    return host.restart()
  }

  /** Stops every node and closes every database. */
  close(): void {
    for (const node of this.current.values()) node.stop()
  }

  /** Actor id (hex) of node `addr`. */
  actorOf(addr: string): string {
    const node = this.current.get(addr)
    assert.ok(node !== undefined)
    return actorIdHex(node.replica.actorId)
  }
}
