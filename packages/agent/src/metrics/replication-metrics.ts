/**
 * Prometheus metrics of replication, read at scrape time from the Replicator's stats, its
 * configured caps, and the broadcast links (collect() callbacks; nothing is counted twice).
 * Every queue has its size next to its cap.
 */
import { Counter, Gauge, type Registry } from 'prom-client'
import {
  METRICS_STATS_REUSE_MS,
  UNDELIVERABLE_HELD_MAX,
  type ReplicationOptions,
} from '../config/defaults.ts'
import type { PeerLinksStats } from '../replication/peer-links.ts'
import type { Replicator } from '../replication/replicator.ts'

function gauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read())
    },
  })
}

function labelledGauge(
  registry: Registry,
  name: string,
  help: string,
  label: string,
  read: () => readonly (readonly [string, number])[],
): void {
  new Gauge({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      this.reset()
      for (const [value, n] of read()) this.set({ [label]: value }, n)
    },
  })
}

function counter(
  registry: Registry,
  name: string,
  help: string,
  label: string | null,
  read: () => readonly (readonly [string, number])[],
): void {
  new Counter({
    name,
    help,
    labelNames: label === null ? [] : [label],
    registers: [registry],
    collect() {
      this.reset()
      for (const [value, n] of read()) {
        if (label === null) this.inc(n)
        else this.inc({ [label]: value }, n)
      }
    },
  })
}

export function registerReplicationMetrics(
  registry: Registry,
  replicator: Replicator,
  options: ReplicationOptions & { readonly bufferCellsMax: number },
  links: () => PeerLinksStats,
): void {
  // One scrape reads the stats once (some 30 collectors ask for them).
  let cached: { at: number; stats: ReturnType<Replicator['stats']> } | null = null
  const s = (): ReturnType<Replicator['stats']> => {
    const now = performance.now()
    if (cached === null || now - cached.at > METRICS_STATS_REUSE_MS) {
      cached = { at: now, stats: replicator.stats() }
    }
    return cached.stats
  }
  labelledGauge(
    registry,
    'patina_queue_size',
    'Items waiting in each replication queue',
    'queue',
    () => [
      ['broadcast', s().broadcast.queued],
      ['apply', s().apply.queued],
    ],
  )
  labelledGauge(
    registry,
    'patina_queue_bytes',
    'Bytes waiting in each replication queue (apply: including room reserved by sync)',
    'queue',
    () => {
      const st = s()
      return [
        ['broadcast', st.broadcast.queuedBytes],
        ['apply', st.apply.queuedBytes + st.apply.reservedBytes],
      ]
    },
  )
  labelledGauge(
    registry,
    'patina_queue_cap',
    'Configured cap of each replication queue, in items',
    'queue',
    () => [
      ['broadcast', options.broadcastQueueMax],
      ['apply', options.applyQueueMax],
    ],
  )
  labelledGauge(
    registry,
    'patina_queue_cap_bytes',
    'Configured cap of each replication queue, in bytes',
    'queue',
    () => [
      ['broadcast', options.broadcastQueueBytesMax],
      ['apply', options.applyQueueBytesMax],
    ],
  )
  counter(
    registry,
    'patina_queue_dropped_total',
    'Items dropped because a queue was full (anti-entropy repairs them)',
    'queue',
    () => [
      ['broadcast', s().broadcast.dropped],
      ['apply', s().received.dropped],
      ['link', links().framesDropped],
    ],
  )
  gauge(
    registry,
    'patina_buffered_cells',
    'Cells stored for versions not complete yet or parked until a schema change',
    () => s().bufferedCells,
  )
  gauge(
    registry,
    'patina_buffered_cells_cap',
    'Configured cap of buffered cells',
    () => options.bufferCellsMax,
  )
  gauge(
    registry,
    'patina_parked_versions',
    'Versions parked until the schema has the table or column they name',
    () => s().parkedVersions,
  )
  counter(
    registry,
    'patina_replication_undeliverable_versions_total',
    'Versions found too big for any frame (a change over frame_bytes_max): not sent, held, retried with backoff',
    null,
    () => [['', s().undeliverable.reported]],
  )
  gauge(
    registry,
    'patina_replication_undeliverable_versions',
    'Versions held now as too big for any frame',
    () => s().undeliverable.held,
  )
  gauge(
    registry,
    'patina_replication_undeliverable_versions_cap',
    'Cap of versions held as undeliverable (over it the oldest is forgotten)',
    () => UNDELIVERABLE_HELD_MAX,
  )
  counter(
    registry,
    'patina_sync_frames_too_large_total',
    "Sync replies over this node's frame cap (the stream closed; the version is found and held back)",
    null,
    () => [['', s().syncClient.framesTooLarge]],
  )
  gauge(
    registry,
    'patina_sync_held_back_versions',
    "Versions not asked for now: a peer's chunk of them was over this node's frame cap",
    () => s().syncClient.heldBack,
  )
  gauge(
    registry,
    'patina_apply_batch_size',
    'Current adaptive apply batch size, in changes',
    () => s().apply.batchSize,
  )
  counter(registry, 'patina_apply_batches_total', 'Apply transactions run', null, () => [
    ['', s().apply.batches],
  ])
  counter(
    registry,
    'patina_apply_seconds_total',
    'Time spent applying received changes',
    null,
    () => [['', s().apply.applyMs / 1000]],
  )
  counter(
    registry,
    'patina_changesets_total',
    'Received chunks by what became of them',
    'status',
    () => Object.entries(s().applied),
  )
  counter(
    registry,
    'patina_broadcast_received_total',
    'Change messages received by broadcast, by outcome',
    'outcome',
    () => {
      const r = s().received
      return [
        ['new', r.messages - r.duplicates - r.dropped],
        ['duplicate', r.duplicates],
        ['dropped', r.dropped],
        ['malformed', r.malformed],
        ['other_cluster', r.otherCluster],
      ]
    },
  )
  counter(
    registry,
    'patina_broadcast_sends_total',
    'Change messages sent to peers (first sends and retransmissions)',
    null,
    () => [['', s().broadcast.sends]],
  )
  counter(
    registry,
    'patina_gossip_bytes_sent_total',
    'Replication bytes sent, by kind',
    'kind',
    () => {
      const st = s()
      return [
        ['broadcast', st.broadcast.bytesSent],
        ['sync', st.syncServer.bytesServed],
      ]
    },
  )
  gauge(
    registry,
    'patina_gossip_rate_limit_bytes_per_second',
    'Configured cap on replication bytes sent per second',
    () => options.rateBytesPerSec,
  )
  counter(
    registry,
    'patina_gossip_rate_limited_total',
    'Sends deferred because the byte-rate cap was reached',
    null,
    () => [['', s().bucket.refusals]],
  )
  gauge(
    registry,
    'patina_broadcast_links',
    'Open outgoing broadcast connections',
    () => links().links,
  )
  labelledGauge(registry, 'patina_sync_sessions', 'Sync sessions running now', 'role', () => [
    ['client', s().syncClient.sessions],
    ['server', s().syncServer.sessions],
  ])
  labelledGauge(
    registry,
    'patina_sync_sessions_cap',
    'Configured cap of concurrent sync sessions',
    'role',
    () => [
      ['client', options.syncClientSessionsMax],
      ['server', options.syncServerSessionsMax],
    ],
  )
  counter(registry, 'patina_sync_rounds_total', 'Sync sessions started as a client', null, () => [
    ['', s().syncClient.rounds],
  ])
  counter(
    registry,
    'patina_sync_failed_total',
    'Sync sessions that failed (peer unreachable, timeout)',
    null,
    () => [['', s().syncClient.sessionsFailed]],
  )
  counter(
    registry,
    'patina_sync_rejected_total',
    'Sync requests this node refused, by reason',
    'reason',
    () => Object.entries(s().syncServer.rejected),
  )
  counter(
    registry,
    'patina_sync_chunks_received_total',
    'Chunks received through sync',
    null,
    () => [['', s().syncClient.chunksReceived]],
  )
  gauge(
    registry,
    'patina_sync_interval_seconds',
    'Current interval between sync rounds',
    () => s().syncClient.intervalMs / 1000,
  )
  labelledGauge(
    registry,
    'patina_replication_behind_versions',
    'Per origin: versions known to exist that this node lacks',
    'origin',
    () => replicator.origins().map((o) => [o.origin, o.behind] as const),
  )
  labelledGauge(
    registry,
    'patina_replication_last_applied_age_seconds',
    'Per origin: age of the newest change applied from it',
    'origin',
    () => {
      const now = Date.now()
      return replicator
        .origins()
        .filter((o) => o.lastAppliedTs > 0)
        .map((o) => [o.origin, (now - o.lastAppliedTs) / 1000] as const)
    },
  )
  gauge(
    registry,
    'patina_replication_p99_lag_seconds',
    'p99 of (apply time - origin commit time) over the last minute',
    () => replicator.health().p99LagS,
  )
}
