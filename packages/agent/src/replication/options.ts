/**
 * Every knob of replication (broadcast, apply, sync), with defaults sized for a LAN. The agent
 * fills them from the config file (`[gossip]` and `[perf]`, docs/config.md); the simulator
 * passes its own.
 */
export interface ReplicationOptions {
  /** Cap on the bytes this node sends per second for broadcast and sync (token bucket). */
  readonly rateBytesPerSec: number
  /** Burst the bucket allows above the rate (bytes). */
  readonly burstBytes: number
  /** Largest encoded chunk of one version (a bigger version is split). */
  readonly chunkBytes: number
  /** Up to this many live peers, a local change is sent to all of them directly (no relays). */
  readonly broadcastDirectMax: number
  /** In a larger cluster: peers a new change is sent to per transmission. */
  readonly fanout: number
  /** Transmissions of one broadcast item; 0 = derive from the member count (4·log10(n+1)). */
  readonly maxTransmissions: number
  /** Delay before the k-th retransmission of an item: k × this. */
  readonly retransmitIntervalMs: number
  /** Cap on items waiting to be (re)broadcast; over it the most-sent item is dropped. */
  readonly broadcastQueueMax: number
  /** Cap on bytes waiting to be (re)broadcast. */
  readonly broadcastQueueBytesMax: number
  /** Cap on received chunks waiting to be applied. */
  readonly applyQueueMax: number
  /** Cap on bytes of changes waiting to be applied (estimated encoded size). */
  readonly applyQueueBytesMax: number
  /** Changes per apply transaction: start, floor and ceiling of the adaptive batch size. */
  readonly applyBatchMin: number
  readonly applyBatchMax: number
  /** The batch size shrinks when one apply takes longer than this, grows when much shorter. */
  readonly applyTargetMs: number
  /** Anti-entropy: base interval between sync rounds, jittered ±50%. */
  readonly syncIntervalMs: number
  /** Anti-entropy: the interval doubles while rounds find nothing, up to this. */
  readonly syncIntervalMaxMs: number
  /** Sync sessions this node runs at once as a client. */
  readonly syncClientSessionsMax: number
  /** Sync sessions this node serves at once. */
  readonly syncServerSessionsMax: number
  /** A served session idle this long is forgotten. */
  readonly syncSessionIdleMs: number
  /** Request/response rounds of one sync session. */
  readonly syncRoundsMax: number
  /** Version ranges per sync request. */
  readonly syncNeedsPerRequest: number
  /** Largest sync reply (bytes) the client asks for. */
  readonly syncReplyBytes: number
  /** One sync exchange that takes longer than this is abandoned. */
  readonly syncTimeoutMs: number
  /** Lag samples kept for p99_lag (the most recent ones). */
  readonly lagSamples: number
  /** Anti-entropy off: for tests that prove the loss simulation needs it. */
  readonly syncEnabled: boolean
}

export const DEFAULT_REPLICATION: ReplicationOptions = Object.freeze({
  rateBytesPerSec: 10 * 1024 * 1024,
  burstBytes: 1024 * 1024,
  chunkBytes: 64 * 1024,
  broadcastDirectMax: 16,
  fanout: 3,
  maxTransmissions: 0,
  retransmitIntervalMs: 100,
  broadcastQueueMax: 10_000,
  broadcastQueueBytesMax: 32 * 1024 * 1024,
  applyQueueMax: 10_000,
  applyQueueBytesMax: 64 * 1024 * 1024,
  applyBatchMin: 100,
  applyBatchMax: 16_000,
  applyTargetMs: 50,
  syncIntervalMs: 2_000,
  syncIntervalMaxMs: 15_000,
  syncClientSessionsMax: 2,
  syncServerSessionsMax: 3,
  syncSessionIdleMs: 10_000,
  syncRoundsMax: 64,
  syncNeedsPerRequest: 64,
  syncReplyBytes: 1024 * 1024,
  syncTimeoutMs: 5_000,
  lagSamples: 1024,
  syncEnabled: true,
})
