/**
 * Replication on the simulator: N hosts, each a real Replica (a SQLite file in `dir`), a real
 * Replicator and a real Swim, on one virtual clock and one seeded network. Datagrams carry SWIM
 * packets and broadcast change messages (told apart by their first byte); request/response
 * exchanges carry push-pull and sync (the same stream kinds as the agent's TCP listener).
 *
 * Crash is `kill -9`: the host's life ends (timers, deliveries, unanswered requests dropped)
 * and its database is closed with whatever was committed; restart opens the same file.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { Replica, siteIdHex } from '../crdt/replica.ts'
import type { Statement, TransactionResult } from '../crdt/replica.ts'
import type { Clock } from '../runtime/clock.ts'
import { LAN_PROFILE, type SwimOptions } from '../membership/defaults.ts'
import { Swim } from '../membership/swim.ts'
import type { Peer } from '../broadcast/broadcaster.ts'
import { DEFAULT_REPLICATION, type ReplicationOptions } from '../replication/options.ts'
import { Replicator } from '../replication/replicator.ts'
import {
  STREAM_BROADCAST,
  STREAM_PUSH_PULL,
  STREAM_SYNC,
  withKind,
} from '../transport/stream-kind.ts'
import type { HostContext, HostHandlers, Sim, SimHost } from './sim.ts'
import { SIM_EPOCH_BASE } from './scheduler.ts'
import { actorIdOf, addrOf } from './swim-cluster.ts'

/** First byte of a datagram or request: what it is for (the agent's stream kinds). */
export {
  STREAM_BROADCAST as KIND_BROADCAST,
  STREAM_PUSH_PULL as KIND_PUSH_PULL,
  STREAM_SYNC as KIND_SYNC,
}

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
}

export interface ReplicationNode extends HostHandlers {
  readonly replica: Replica
  readonly replicator: Replicator
  readonly swim: Swim
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

  constructor(sim: Sim, config: ReplicationClusterOptions) {
    this.sim = sim
    this.config = config
    this.clusterId = config.clusterId ?? 1
    this.swimOptions = { ...LAN_PROFILE, ...config.swim }
    this.options = { ...DEFAULT_REPLICATION, ...config.replication }
  }

  /** Adds and starts nodes 0..n-1, joining through node 0. */
  addMany(n: number): void {
    for (let i = 0; i < n; i++) this.add(i)
  }

  add(index: number, bootstrap: readonly string[] = [addrOf(0)]): SimHost<ReplicationNode> {
    const addr = addrOf(index)
    const host = this.sim.addHost(addr, (ctx) => this.makeNode(ctx, index, bootstrap))
    this.hosts.set(addr, host)
    return host
  }

  private makeNode(ctx: HostContext, index: number, bootstrap: readonly string[]): ReplicationNode {
    const actorId = actorIdOf(index)
    const replica = Replica.open(join(this.config.dir, `node-${index}.db`), {
      siteId: hexBytes(actorId),
    })
    const sql = this.config.schemaFor?.(index) ?? this.config.schema
    replica.applySchema([{ path: 'schema.sql', sql }])
    let epoch = SIM_EPOCH_BASE + Math.floor(ctx.startedAtMs)
    const last = this.lastEpoch.get(ctx.addr)
    if (last !== undefined && epoch <= last) epoch = last + 1
    this.lastEpoch.set(ctx.addr, epoch)
    const swim = new Swim(
      {
        clock: ctx.clock,
        random: ctx.random,
        send: (to, bytes) => {
          ctx.send(to, bytes)
        },
        pushPull: (to, state, signal) => ctx.request(to, withKind(STREAM_PUSH_PULL, state), signal),
      },
      {
        ...this.swimOptions,
        actorId,
        addr: ctx.addr,
        epoch,
        clusterId: this.clusterId,
        bootstrap,
      },
    )
    const peers = (): Peer[] =>
      swim
        .members()
        .filter((m) => m.state === 'alive' && m.actorId !== actorId)
        .map((m) => ({ actorId: m.actorId, addr: m.addr }))
    // The replicator settles promises in its timer callbacks (an apply-queue reservation is
    // granted when a batch is applied): their continuations run at that virtual time, as they
    // would in Node.js, not whenever the run loop next happens to yield.
    const clock: Clock = {
      now: () => ctx.clock.now(),
      setTimer: (ms, fn) =>
        ctx.clock.setTimer(ms, () => {
          fn()
          this.sim.scheduler.requestDrain()
        }),
      clearTimer: (id) => {
        ctx.clock.clearTimer(id)
      },
      wallNow: () => SIM_EPOCH_BASE + this.sim.now(),
      defer: (fn) => {
        ctx.clock.defer(() => {
          fn()
          this.sim.scheduler.requestDrain()
        })
      },
    }
    const replicator = new Replicator(
      {
        replica,
        clock,
        random: ctx.random,
        clusterId: this.clusterId,
        peers,
        sendBroadcast: (to, bytes) => {
          ctx.send(to, withKind(STREAM_BROADCAST, bytes))
        },
        openSession: (to) => ({
          request: (bytes, signal) => ctx.request(to, withKind(STREAM_SYNC, bytes), signal),
          close: () => undefined,
        }),
      },
      this.options,
    )
    swim.start()
    replicator.start()
    let stopped = false
    const node: ReplicationNode = {
      replica,
      replicator,
      swim,
      stop: () => {
        if (stopped) return
        stopped = true
        replicator.stop()
        swim.stop()
        replica.close()
      },
      onDatagram: (from, bytes) => {
        if (bytes[0] === STREAM_BROADCAST) replicator.onBroadcast(bytes.subarray(1))
        else swim.receive(from, bytes)
      },
      onRequest: (from, bytes) => {
        if (bytes[0] === STREAM_SYNC) return replicator.onSyncRequest(bytes.subarray(1))
        if (bytes[0] === STREAM_PUSH_PULL) return swim.handlePushPull(from, bytes.subarray(1))
        return null
      },
    }
    this.current.set(ctx.addr, node)
    return node
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
    this.current.get(addr)?.stop()
    host.crash()
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
    return siteIdHex(node.replica.siteId)
  }
}
