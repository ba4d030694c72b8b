/**
 * One node's replication, independent of I/O: the composition of the broadcaster (push), the
 * apply queue, the sync server and client (pull) and the lag tracker around one Replica. The
 * agent gives it real sockets and timers (agent-replication.ts); the simulator gives it a
 * virtual clock, a seeded random stream and a simulated network (sim/replication-cluster.ts).
 *
 * Flow: a local commit is cut into chunks, encoded and broadcast. A received change message is
 * dropped when its chunk is already held, buffered or queued; otherwise it is queued for apply
 * and relayed. Sync fetches what broadcasts missed. Everything received is applied by the apply
 * queue in batches.
 *
 * A version that no frame can carry (a change larger than `frameBytesMax` takes) is neither
 * broadcast nor served by sync: it is held as undeliverable (sync/undeliverable.ts), reported
 * once (the 'undeliverable' event) and measured again only with backoff.
 */
import { actorIdHex } from '../runtime/actor-id.ts'
import { type CommitEvent, type Replica } from '../crdt/replica.ts'
import { missingCount } from '../crdt/version-ranges.ts'
import type { Clock } from '../runtime/clock.ts'
import type { Random } from '../runtime/random.ts'
import { ApplyQueue, type ApplyQueueStats, type QueuedChunk } from './apply-queue.ts'
import { Broadcaster, type BroadcasterStats, type Peer } from '../broadcast/broadcaster.ts'
import { chunkFrameRoom, chunkKey, chunkToChangeset, chunkVersion } from '../wire/chunks.ts'
import type { Message } from '../wire/messages.ts'
import { TokenBucket } from '../runtime/token-bucket.ts'
import { decodeMessage, encodeMessage, MESSAGE_HEADER_BYTES } from '../wire/wire.ts'
import { SyncClient, type SyncClientStats, type SyncSession } from '../sync/sync-client.ts'
import { SyncServer, type SyncServerStats } from '../sync/sync-server.ts'
import { Undeliverable, type UndeliverableStats } from '../sync/undeliverable.ts'
import { LagTracker, type OriginLag } from './lag.ts'
import type { ReplicationOptions } from './options.ts'

/** How often the live peers are compared with the previous look (see `watchPeers`). */
const PEER_WATCH_MS = 1000

export interface ReplicatorDeps {
  readonly replica: Replica
  /** `wallNow()` stamps broadcasts (for lag); `defer` runs apply batches. */
  readonly clock: Clock
  readonly random: Random
  readonly clusterId: number
  /** Live peers, self excluded. */
  peers(): readonly Peer[]
  /** Sends one encoded change message to a peer (fire and forget; may be lost). */
  sendBroadcast(addr: string, bytes: Uint8Array): void
  openSession(addr: string): SyncSession
  /** For logs; optional. */
  onEvent?(event: ReplicationEvent): void
}

export type ReplicationEvent =
  | { readonly type: 'apply-failed'; readonly error: unknown }
  | {
      readonly type: 'parked'
      readonly origin: string
      readonly version: number
      readonly reason: string
    }
  | { readonly type: 'refused'; readonly origin: string; readonly reason: string }
  | { readonly type: 'sync-failed'; readonly peer: Peer; readonly error: unknown }
  | { readonly type: 'malformed'; readonly error: string }
  | {
      readonly type: 'undeliverable'
      readonly origin: string
      readonly version: number
      /** Encoded bytes of its largest chunk (one change), over `frameBytesMax`. */
      readonly bytes: number
      readonly frameBytesMax: number
    }

export interface ReplicationStats {
  readonly broadcast: BroadcasterStats
  readonly apply: ApplyQueueStats
  readonly syncClient: SyncClientStats
  readonly syncServer: SyncServerStats
  /** Versions no frame can carry, held instead of sent. */
  readonly undeliverable: UndeliverableStats
  /** Counters of received change messages. */
  readonly received: {
    readonly messages: number
    readonly duplicates: number
    readonly dropped: number
    readonly malformed: number
    readonly otherCluster: number
  }
  /** Counters of apply outcomes, by status. */
  readonly applied: Readonly<Record<string, number>>
  readonly bucket: { readonly grantedBytes: number; readonly refusals: number }
  /** Gauges. */
  readonly bufferedCells: number
  readonly parkedVersions: number
}

export interface ReplicationHealth {
  /** Versions known to exist that this node lacks, over all origins. */
  readonly gaps: number
  readonly p99LagS: number
  /** Chunks waiting to be applied plus items waiting to be broadcast. */
  readonly queueSize: number
}

export class Replicator {
  private readonly deps: ReplicatorDeps
  private readonly options: ReplicationOptions
  readonly bucket: TokenBucket
  private readonly broadcaster: Broadcaster
  private readonly queue: ApplyQueue
  private readonly server: SyncServer
  private readonly client: SyncClient
  private readonly lag: LagTracker
  private readonly undeliverable: Undeliverable
  private readonly unsubscribe: () => void
  private readonly selfHex: string
  private stopped = false
  private received = { messages: 0, duplicates: 0, dropped: 0, malformed: 0, otherCluster: 0 }
  private readonly outcomes: Record<string, number> = {}

  constructor(deps: ReplicatorDeps, options: ReplicationOptions) {
    this.deps = deps
    this.options = options
    this.selfHex = actorIdHex(deps.replica.actorId)
    this.bucket = new TokenBucket(options.rateBytesPerSec, options.burstBytes, () =>
      deps.clock.now(),
    )
    this.broadcaster = new Broadcaster(
      {
        clock: deps.clock,
        random: deps.random,
        bucket: this.bucket,
        peers: () => deps.peers(),
        send: (addr, bytes) => {
          deps.sendBroadcast(addr, bytes)
        },
      },
      {
        directMax: options.broadcastDirectMax,
        fanout: options.fanout,
        maxTransmissions: options.maxTransmissions,
        retransmitIntervalMs: options.retransmitIntervalMs,
        queueMax: options.broadcastQueueMax,
        queueBytesMax: options.broadcastQueueBytesMax,
      },
    )
    this.queue = new ApplyQueue(
      {
        clock: deps.clock,
        apply: (batch) => {
          this.applyBatch(batch)
        },
      },
      {
        queueMax: options.applyQueueMax,
        queueBytesMax: options.applyQueueBytesMax,
        batchMin: options.applyBatchMin,
        batchMax: options.applyBatchMax,
        targetMs: options.applyTargetMs,
      },
    )
    this.undeliverable = new Undeliverable(() => deps.clock.now())
    this.server = new SyncServer(
      {
        replica: deps.replica,
        clock: deps.clock,
        bucket: this.bucket,
        clusterId: deps.clusterId,
        undeliverable: this.undeliverable,
        onUndeliverable: (origin, version, bytes) => {
          this.reportUndeliverable(origin, version, bytes)
        },
      },
      {
        sessionsMax: options.syncServerSessionsMax,
        sessionIdleMs: options.syncSessionIdleMs,
        chunkBytes: options.chunkBytes,
        frameBytesMax: options.frameBytesMax,
      },
    )
    this.client = new SyncClient(
      {
        replica: deps.replica,
        clock: deps.clock,
        random: deps.random,
        clusterId: deps.clusterId,
        queue: this.queue,
        peers: () => deps.peers(),
        openSession: (addr) => deps.openSession(addr),
        behind: () => this.health().gaps > 0,
        onHaves: (haves) => {
          for (const h of haves) this.lag.observeHead(actorIdHex(h.origin), h.head)
        },
        onError: (peer, error) => deps.onEvent?.({ type: 'sync-failed', peer, error }),
      },
      {
        intervalMs: options.syncIntervalMs,
        intervalMaxMs: options.syncIntervalMaxMs,
        sessionsMax: options.syncClientSessionsMax,
        roundsMax: options.syncRoundsMax,
        needsPerRequest: options.syncNeedsPerRequest,
        replyBytes: options.syncReplyBytes,
        timeoutMs: options.syncTimeoutMs,
      },
    )
    this.lag = new LagTracker(options.lagSamples)
    this.unsubscribe = deps.replica.onCommit((event) => {
      this.onCommit(event)
    })
  }

  start(): void {
    if (this.options.syncEnabled) {
      this.client.start()
      this.watchPeers(new Set())
    }
  }

  /**
   * Every second: a peer that was not live before (a healed partition, a restarted node) may
   * hold what this node lacks, or lack what it holds: sync soon instead of after a backed-off
   * interval.
   */
  private watchPeers(before: ReadonlySet<string>): void {
    this.deps.clock.setTimer(PEER_WATCH_MS, () => {
      if (this.stopped) return
      const peers = this.deps.peers()
      const fresh = peers.filter((p) => !before.has(p.actorId))
      if (fresh.length > 0) this.client.hurry(fresh[this.deps.random.int(fresh.length)])
      this.watchPeers(new Set(peers.map((p) => p.actorId)))
    })
  }

  stop(): void {
    if (this.stopped) return
    this.stopped = true
    this.unsubscribe()
    this.client.stop()
    this.broadcaster.stop()
    this.queue.stop()
  }

  /** Runs one sync session with `peer` now (tests, tools). */
  syncWith(peer: Peer): Promise<boolean> {
    return this.client.syncWith(peer)
  }

  private onCommit(event: CommitEvent): void {
    if (event.source !== 'local' || this.stopped) return
    const ts = this.deps.clock.wallNow()
    const room = chunkFrameRoom(this.options.frameBytesMax)
    const messages = chunkVersion(event.changeset, ts, Math.min(this.options.chunkBytes, room)).map(
      (chunk) =>
        encodeMessage({
          type: 'change',
          clusterId: this.deps.clusterId,
          sender: this.deps.replica.actorId,
          chunk,
        }),
    )
    // A change message is its header and its chunk's encoding.
    let largest = 0
    for (const m of messages) largest = Math.max(largest, m.length - MESSAGE_HEADER_BYTES)
    if (largest > room) {
      // Sync would not serve it either: held there, not read again until its retry is due.
      const version = event.changeset.version
      if (this.undeliverable.hold(this.selfHex, version, largest)) {
        this.reportUndeliverable(this.selfHex, version, largest)
      }
      return
    }
    for (const bytes of messages) this.broadcaster.enqueue(bytes)
  }

  private reportUndeliverable(origin: string, version: number, bytes: number): void {
    this.deps.onEvent?.({
      type: 'undeliverable',
      origin,
      version,
      bytes,
      frameBytesMax: this.options.frameBytesMax,
    })
  }

  /** A change message from a peer (broadcast). */
  onBroadcast(bytes: Uint8Array): void {
    if (this.stopped) return
    const decoded = decodeMessage(bytes)
    if (!decoded.ok) {
      this.received.malformed++
      this.deps.onEvent?.({ type: 'malformed', error: decoded.error })
      return
    }
    const m = decoded.message
    if (m.type !== 'change') {
      this.received.malformed++
      return
    }
    if (m.clusterId !== this.deps.clusterId) {
      this.received.otherCluster++
      return
    }
    this.received.messages++
    const { chunk } = m
    const origin = actorIdHex(chunk.origin)
    if (origin === this.selfHex) {
      this.received.duplicates++
      return
    }
    const last = chunk.kind === 'full' ? chunk.version : chunk.versions[1]
    this.lag.observeHead(origin, last)
    const replica = this.deps.replica
    const known =
      chunk.kind === 'full'
        ? replica.covers(chunk.origin, chunk.version, chunk.seqs)
        : replica.holdsRange(chunk.origin, chunk.versions)
    if (known || this.queue.has(chunkKey(chunk))) {
      this.received.duplicates++
      return
    }
    if (!this.queue.offer(chunk, 'broadcast')) {
      this.received.dropped++
      return
    }
    // A version beyond the next one means some were missed: sync soon.
    if (chunk.kind === 'full' && chunk.version > replica.headOf(chunk.origin) + 1) {
      this.client.hurry()
    }
    this.broadcaster.enqueue(bytes, true, [actorIdHex(m.sender)])
  }

  /**
   * A sync request from a peer; returns the encoded answer. `opened` is told the id of a session
   * the request started, so that the caller can end it with `endSyncSession` when the peer is
   * gone.
   */
  onSyncRequest(bytes: Uint8Array, opened?: (session: number) => void): Uint8Array {
    const decoded = decodeMessage(bytes)
    let reply: Message
    if (!decoded.ok) {
      reply = {
        type: 'sync-reject',
        clusterId: this.deps.clusterId,
        sender: this.deps.replica.actorId,
        reason: 'malformed',
      }
    } else {
      reply = this.server.handle(decoded.message)
      if (reply.type === 'sync-state') opened?.(reply.session)
    }
    const encoded = encodeMessage(reply)
    if (reply.type === 'sync-chunks' && reply.chunks.length > 0) this.server.charge(encoded.length)
    return encoded
  }

  /** A served sync session is over (its stream closed): it no longer counts against the cap. */
  endSyncSession(session: number): void {
    this.server.end(session)
  }

  private applyBatch(batch: readonly QueuedChunk[]): void {
    const { replica } = this.deps
    let outcomes
    try {
      outcomes = replica.apply(batch.map((q) => chunkToChangeset(q.chunk)))
    } catch (error) {
      // SQLite itself failed (disk full, I/O): the batch is lost here, sync fetches it again.
      this.outcomes.failed = (this.outcomes.failed ?? 0) + batch.length
      this.deps.onEvent?.({ type: 'apply-failed', error })
      return
    }
    const now = this.deps.clock.wallNow()
    outcomes.forEach((o, i) => {
      this.outcomes[o.status] = (this.outcomes[o.status] ?? 0) + 1
      const { chunk } = batch[i] as QueuedChunk
      const origin = actorIdHex(chunk.origin)
      if (o.status === 'applied') this.lag.observeApplied(origin, chunk.ts, now)
      else if (o.status === 'parked') {
        this.deps.onEvent?.({
          type: 'parked',
          origin,
          version: o.versions[0],
          reason: o.reason ?? '',
        })
      } else if (o.status === 'refused') {
        this.deps.onEvent?.({ type: 'refused', origin, reason: o.reason ?? '' })
      }
    })
  }

  health(): ReplicationHealth {
    let gaps = 0
    for (const o of this.origins()) gaps += o.behind
    const b = this.broadcaster.stats()
    const a = this.queue.stats()
    return {
      gaps,
      p99LagS: this.lag.p99(this.deps.clock.wallNow()),
      queueSize: a.queued + b.queued,
    }
  }

  /** Per origin: how far behind this node is. */
  origins(): OriginLag[] {
    const states = new Map(this.deps.replica.originStates().map((o) => [actorIdHex(o.actorId), o]))
    for (const [origin, s] of states) this.lag.observeHead(origin, s.head)
    return this.lag
      .origins((origin) => {
        const s = states.get(origin)
        return s === undefined
          ? { head: 0, missing: 0 }
          : { head: s.head, missing: missingCount({ head: s.head, gaps: [...s.gaps] }) }
      })
      .filter((o) => o.origin !== this.selfHex)
  }

  stats(): ReplicationStats {
    const buffered = this.deps.replica.bufferedVersions()
    return {
      broadcast: this.broadcaster.stats(),
      apply: this.queue.stats(),
      syncClient: this.client.stats(),
      syncServer: this.server.stats(),
      undeliverable: this.undeliverable.stats(),
      received: { ...this.received },
      applied: { ...this.outcomes },
      bucket: { grantedBytes: this.bucket.granted, refusals: this.bucket.refused },
      bufferedCells: this.deps.replica.bufferedCells(),
      parkedVersions: buffered.filter((b) => b.parked).length,
    }
  }
}
