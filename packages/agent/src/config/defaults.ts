/**
 * Every limit and default of the agent, in one place. Each says what happens when it is hit.
 * Units are in the names. docs/config.md documents the keys that override them.
 */

/** `[api] addr`: where the HTTP API listens. */
export const DEFAULT_API_ADDR = '127.0.0.1:8080'
/** `[gossip] addr`: where the agent listens for peers (UDP for SWIM, TCP for push-pull). */
export const DEFAULT_GOSSIP_ADDR = '127.0.0.1:8787'
/** `[gossip] cluster_id`: u16; packets of other cluster ids are dropped. */
export const DEFAULT_CLUSTER_ID = 0
/** On shutdown: how long the graceful leave (gossiping "left") may take before we stop anyway. */
export const MEMBERSHIP_LEAVE_TIMEOUT_MS = 2000

/** `[api] max_body_bytes`: larger request bodies are refused with 413. */
export const API_BODY_BYTES_MAX = 16 * 1024 * 1024
/**
 * `[api] max_inflight_transactions`: transactions accepted but not finished. Beyond it
 * `/v1/transactions` answers 503 with Retry-After at once instead of queueing without bound.
 */
export const API_INFLIGHT_TRANSACTIONS_MAX = 64
/** Retry-After seconds sent with a 503 for too many in-flight transactions. */
export const API_RETRY_AFTER_S = 1
/** `[api] max_statements`: statements in one transaction; more is a 400. */
export const API_STATEMENTS_MAX = 10_000
/** `[api] max_concurrent_queries`: queries running at once; beyond it 503 with Retry-After. */
export const API_CONCURRENT_QUERIES_MAX = 128
/** `[api] query_timeout_ms`: a query still running after this is interrupted (0: never). */
export const API_QUERY_TIMEOUT_MS = 60_000

/**
 * `[api] max_row_bytes`: the largest row a query or a subscription sends, as encoded JSON. A
 * larger row ends the stream with an error event ROW_TOO_LARGE naming the key; the rows before
 * it were sent. Also bounds one row crossing from a reader process.
 */
export const API_ROW_BYTES_MAX = 16 * 1024 * 1024
/**
 * `[api] max_response_buffer_bytes`: bytes of one response written but not yet taken by the
 * client (socket and stream buffers). Above it no more rows are read until the client catches
 * up: a slow or stalled client holds at most this much of the agent's memory per response.
 */
export const API_RESPONSE_BUFFER_BYTES_MAX = 1024 * 1024

/**
 * `[perf] sql_tx_timeout` (seconds, Corrosion's key; Corrosion's default is 60 s): a write
 * transaction still running after this is interrupted and rolled back (TRANSACTION_TIMEOUT).
 * The writer runs on the agent's main thread, so this also bounds how long one transaction can
 * keep membership, replication and the API waiting: kept below the time peers take to declare
 * a silent member down (probe interval + suspicion timeout, about 5 s on the LAN profile).
 */
export const SQL_TX_TIMEOUT_MS = 3_000
/**
 * `[perf] max_cell_bytes`: the largest value one cell may hold (TEXT as UTF-8 bytes, BLOB
 * bytes). A write storing a larger value is refused with 413 CELL_TOO_LARGE: replication sends a
 * cell whole, in one frame of at most FRAME_BYTES_MAX (8 MiB), so a larger cell could never
 * reach a peer.
 */
export const CELL_BYTES_MAX = 4 * 1024 * 1024
/** `perf.max_cell_bytes` may not exceed this: one change, its key and its header in a frame. */
export const CELL_BYTES_LIMIT = 8 * 1024 * 1024 - 64 * 1024

/**
 * `[api] headers_timeout_ms`: a connection that has not sent a whole request head (request line
 * and headers) this long after it opened, having sent nothing or only part of one, is answered
 * 408 and closed. Node's `headersTimeout`; it bounds connections that never send a request.
 */
export const API_HEADERS_TIMEOUT_MS = 60_000
/**
 * `[api] request_timeout_ms`: a request whose head and body have not all arrived this long after
 * it started is answered 408 and closed (Node's `requestTimeout`, and its default). Only the
 * request is timed: a response may stream for as long as it lasts (subscriptions, /v1/updates,
 * long query results). At least `headers_timeout_ms`.
 */
export const API_REQUEST_TIMEOUT_MS = 300_000
/**
 * `[api] keep_alive_timeout_ms`: a kept-alive connection idle this long after a response is
 * closed (Node's default; Node 20 closes it about a second later still).
 */
export const API_KEEP_ALIVE_TIMEOUT_MS = 5_000
/**
 * `[api] max_concurrent_streams`: streams one HTTP/2 (h2c) session may have open at once
 * (SETTINGS_MAX_CONCURRENT_STREAMS); the client waits for one to end before opening more.
 */
export const API_CONCURRENT_STREAMS_MAX = 100
/**
 * Node checks the two timeouts above on a timer, not per connection: every this many ms (or a
 * quarter of `headers_timeout_ms` if shorter), so a timeout fires at most this late. Node's own
 * interval is 30 s.
 */
export const API_TIMEOUT_CHECK_INTERVAL_MS = 1_000

/** `[db] reader_threads`: reader processes with read-only connections for /v1/queries. */
export const DB_READER_THREADS = 2
/**
 * A reader asked to stop (timeout, abort, client gone) that does not acknowledge within this
 * is killed and replaced: better-sqlite3 cannot interrupt a running SQLite step.
 */
export const READER_CANCEL_GRACE_MS = 250
/** Page cache of each reader connection, in KiB. */
export const READER_CACHE_SIZE_KIB = 16 * 1024
/** Rows a reader sends to the main thread per message: bounds the memory of one batch. */
export const READER_BATCH_ROWS = 256
/** Batches a query may have in flight to a slow HTTP client before the reader pauses. */
export const READER_BATCHES_IN_FLIGHT_MAX = 4

/** On SIGTERM/SIGINT: how long in-flight requests may take before the agent exits anyway. */
export const SHUTDOWN_GRACE_MS = 10_000

// ------------------------------------------------------------------------------------ store

/** Page cache of the writer connection: big enough for the hot part of a million-row table. */
export const WRITER_CACHE_SIZE_KIB = 64 * 1024
/** How long a connection waits for a lock held by another connection before SQLITE_BUSY. */
export const BUSY_TIMEOUT_MS = 5_000

// ------------------------------------------------------------------------------------ crdt

/** Prepared statements kept for user SQL; beyond it the least recently used is dropped. */
export const STATEMENT_CACHE_MAX = 256
/** Statement-guard verdicts cached per SQL text, per schema version; when full, all are dropped. */
export const GUARD_CACHE_MAX = 1024
/**
 * Merge statements kept per table, keyed by which columns a merged row writes; when full, all
 * are dropped (and prepared again as needed).
 */
export const WRITE_CACHE_MAX = 128

// ------------------------------------------------------------------------------------ schema

/** A statement quoted in a schema error is cut to this many characters. */
export const SCHEMA_ERROR_QUOTE_CHARS_MAX = 60

// ------------------------------------------------------------------------------------ broadcast

/**
 * Bytes a change is counted for in queues and sync budgets, beyond its pk and value. More than
 * it takes on the wire (6-20 bytes): this is about what a decoded change costs in memory, which
 * is what the queue caps protect.
 */
export const CHANGE_OVERHEAD_BYTES = 40
/** Bytes a chunk is counted for in queues and sync budgets beyond its changes (all of an empty one). */
export const CHUNK_OVERHEAD_BYTES = 64

// ------------------------------------------------------------------------------------ sync

/**
 * At start and when something is known to be missing, the next sync round runs after the
 * (jittered) interval divided by this, instead of a whole interval.
 */
export const SYNC_SOON_DIVISOR = 4
/**
 * A session plans to fetch at most needs-per-request × rounds × this versions; what is missing
 * beyond it is left to the next session.
 */
export const SYNC_VERSIONS_PER_NEED = 16
/**
 * Ranges of up to this many versions are claimed by the session that asks for them (one set
 * entry per version), so that two sessions do not ask for them both; larger ranges are not
 * claimed, and may be asked for twice.
 */
export const SYNC_CLAIM_RANGE_VERSIONS_MAX = 10_000
/** Wait before asking again a peer that answered nothing (it is at its byte-rate cap). */
export const SYNC_EMPTY_REPLY_WAIT_MS = 100
/** How many such waits one session makes before it gives up until the next round. */
export const SYNC_EMPTY_REPLY_WAITS_MAX = 100
/**
 * A version holding a change too big for any frame (see `frameBytesMax`) is undeliverable: it is
 * not sent, it is held, and it is measured again (its big cell may have been overwritten since)
 * only after this, doubling per try up to UNDELIVERABLE_RETRY_MAX_MS.
 */
export const UNDELIVERABLE_RETRY_MIN_MS = 60_000
export const UNDELIVERABLE_RETRY_MAX_MS = 3_600_000
/** Undeliverable versions remembered; over it the oldest is forgotten (measured again if asked). */
export const UNDELIVERABLE_HELD_MAX = 10_000
/**
 * Largest stream frame a peer reads: FRAME_BYTES_MAX of transport/defaults.ts (config imports no
 * subsystem; test/replication/undeliverable.test.ts holds the two equal).
 */
export const REPLICATION_FRAME_BYTES_MAX = 8 * 1024 * 1024

// ------------------------------------------------------------------------------------ metrics

/** Replication stats read this recently are reused: the collectors of one scrape run within it. */
export const METRICS_STATS_REUSE_MS = 100

// ------------------------------------------------------------------------------------ admin

/** Bytes of one admin request; a longer line closes the connection. */
export const ADMIN_REQUEST_BYTES_MAX = 64 * 1024
/**
 * A connect to an existing socket file that has neither succeeded nor failed by then counts as
 * "cannot tell": the start is refused and the file left alone. (On Linux a Unix-socket connect
 * answers at once, so this only bounds a pathological case.)
 */
export const ADMIN_PROBE_TIMEOUT_MS = 2000
/** An admin request (`patina reload`...) unanswered after this fails with "no answer". */
export const ADMIN_REQUEST_TIMEOUT_MS = 30_000

/** `[subscriptions] max_subscriptions`: live subscriptions; beyond it a new one is a 503. */
export const SUBS_MAX = 1000
/**
 * `[subscriptions] max_listeners`: open subscription and update streams together; beyond it a
 * new stream is a 503.
 */
export const SUBS_LISTENERS_MAX = 1024
/**
 * `[subscriptions] max_listener_lag`: changes a listener may be behind its subscription (or
 * notifications queued for an update stream) before it gets an error event and is cut off.
 */
export const SUBS_LISTENER_LAG_MAX = 5_000
/**
 * `[subscriptions] max_history`: change events kept per subscription for `from=` resumes;
 * older ones are deleted and resuming before them answers 410.
 */
export const SUBS_HISTORY_MAX = 10_000
/**
 * `[subscriptions] max_pending_keys`: changed primary keys waiting to be matched, agent-wide.
 * Beyond it the table's subscriptions fall back to one full re-evaluation (exact, bounded).
 */
export const SUBS_PENDING_KEYS_MAX = 100_000
/** Changed keys one subscription may hold before it, too, falls back to a full re-evaluation. */
export const SUBS_SUBSCRIPTION_PENDING_KEYS_MAX = 10_000
/** `[subscriptions] idle_timeout_ms`: a subscription with no listener is dropped after this. */
export const SUBS_IDLE_TIMEOUT_MS = 600_000
/**
 * `[subscriptions] eval_timeout_ms`: one evaluation (a query restricted to changed keys, or a
 * full re-run) running longer fails its subscription instead of holding up the others.
 */
export const SUBS_EVAL_TIMEOUT_MS = 30_000
/** `[subscriptions] reader_threads`: reader processes that evaluate subscriptions. */
export const SUBS_READER_THREADS = 1
/**
 * `[subscriptions] full_eval_interval_ms`: shortest time between two full re-evaluations of
 * one subscription that can only be maintained by re-running it (aggregates, subqueries...).
 */
export const SUBS_FULL_EVAL_INTERVAL_MS = 200
/**
 * `[subscriptions] batch_ms`: changed keys are collected this long before they are matched.
 * Short: fan-out costs one write per listener per batch, and under load batches grow on their
 * own (keys that arrive while a subscription is evaluated or its events are written wait for
 * its next evaluation together). A longer wait only adds latency to every event.
 */
export const SUBS_BATCH_MS = 1
/** Keys (or key prefixes) bound into one restricted evaluation query. */
export const SUBS_EVAL_KEYS_MAX = 500
/** Bytes of NDJSON handed to a listener's socket at once; with one chunk queued, its buffer cap. */
export const SUBS_STREAM_CHUNK_BYTES = 64 * 1024
/**
 * Change events of each subscription kept in memory for listeners near the head, at most this
 * many and this many bytes; older ones are read back from the subscriptions database.
 */
export const SUBS_RECENT_CHANGES = 1024
export const SUBS_RECENT_BYTES = 256 * 1024
/** A listener cut off for being slow that has not taken its error event by then is closed. */
export const SUBS_CUT_GRACE_MS = 1000
/** Wait before retrying an evaluation the reader pool refused as overloaded. */
export const SUBS_RETRY_MS = 50
/** Failed or dropped subscription ids remembered to explain a later GET (oldest forgotten). */
export const SUBS_TOMBSTONES_MAX = 1000

// ------------------------------------------------------------------------------------ config

/** Highest TCP/UDP port: an address with a higher one is not a "host:port" (config error). */
export const PORT_MAX = 65_535
/** Highest `reader_threads` accepted in `[db]` and `[subscriptions]`; more is a config error. */
export const READER_THREADS_MAX = 64
/** Highest `[gossip] cluster_id`: it is a u16 on the wire; more is a config error. */
export const CLUSTER_ID_MAX = 0xffff
/** Largest UDP payload over IPv4: the highest `[gossip] max_packet_bytes` accepted. */
export const UDP_PAYLOAD_BYTES_MAX = 65_507
/**
 * Smallest `[perf] chunk_bytes` and `[perf] sync_reply_bytes` accepted; less is a config error
 * (a chunk must hold a header and at least a few changes).
 */
export const CHUNK_BYTES_MIN = 1024

// ------------------------------------------------------------------------------------ replication

/**
 * `[gossip] rate_limit_bytes_per_sec`: bytes sent per second for broadcast and sync (token
 * bucket). When it binds, broadcast fanout and transmissions halve and sync answers shrink: the
 * rest arrives later by anti-entropy.
 */
export const RATE_BYTES_PER_SEC = 10 * 1024 * 1024
/** `[gossip] rate_limit_burst_bytes`: how far above the rate a burst may go before it binds. */
export const RATE_BURST_BYTES = 1024 * 1024
/** `[perf] chunk_bytes`: a bigger version is split, and applied once every chunk is there. */
export const CHUNK_BYTES = 64 * 1024
/**
 * `[perf] broadcast_direct_max`: up to this many live peers a local change is sent to each of
 * them directly and not relayed; above it, gossip with relays.
 */
export const BROADCAST_DIRECT_MAX = 16
/** `[perf] broadcast_fanout`: in a larger cluster, peers each transmission of a change goes to. */
export const BROADCAST_FANOUT = 3
/** `[perf] broadcast_transmissions`: sends of a change by its origin; 0 = from the peer count. */
export const BROADCAST_TRANSMISSIONS = 0
/**
 * With `broadcast_transmissions = 0`, an item is sent ⌊this × log10(n + 1)⌋ times for n peers
 * (like SWIM's retransmit mult), and then dropped from the queue...
 */
export const BROADCAST_RETRANSMIT_MULT = 4
/** ... but at least this many times. */
export const BROADCAST_TRANSMISSIONS_MIN = 2
/** Delay before the k-th retransmission of a broadcast item: k × this. */
export const BROADCAST_RETRANSMIT_INTERVAL_MS = 100
/**
 * `[perf] processing_queue_len`: items waiting to be (re)broadcast; over it the most-sent item
 * is dropped (anti-entropy repairs what it carried).
 */
export const BROADCAST_QUEUE_MAX = 10_000
/** `[perf] broadcast_queue_bytes_max`: bytes waiting to be broadcast; over it, as above. */
export const BROADCAST_QUEUE_BYTES_MAX = 32 * 1024 * 1024
/**
 * `[perf] processing_queue_len`: received chunks waiting to be applied; a broadcast that finds
 * the queue full is dropped (counted; anti-entropy fetches it later).
 */
export const APPLY_QUEUE_MAX = 10_000
/**
 * `[perf] apply_queue_bytes_max`: bytes of changes waiting to be applied (their estimated
 * in-memory size). Broadcasts over it are dropped; sync waits for room for a whole answer.
 */
export const APPLY_QUEUE_BYTES_MAX = 64 * 1024 * 1024
/** `[perf] apply_queue_min_batch_size`: the adaptive apply batch (changes) never goes below. */
export const APPLY_BATCH_MIN = 100
/** `[perf] apply_queue_max_batch_size`: ... nor above this (one SQLite transaction per batch). */
export const APPLY_BATCH_MAX = 16_000
/** The apply batch starts at this many changes (within the two above) and adapts from there. */
export const APPLY_BATCH_START = 1000
/** `[perf] apply_target_ms`: a batch that takes longer halves the batch size. */
export const APPLY_TARGET_MS = 50
/** ... and one under target / this (with the queue holding more) doubles it. */
export const APPLY_GROW_BELOW_TARGET_DIVISOR = 4
/** `[perf] min_sync_backoff`: time between anti-entropy rounds (jittered ±50%) when behind. */
export const SYNC_INTERVAL_MS = 2_000
/** `[perf] max_sync_backoff`: the interval doubles up to this while rounds find nothing. */
export const SYNC_INTERVAL_MAX_MS = 15_000
/** `[perf] sync_sessions_max`: sessions run at once as a client; a round waits for a free one. */
export const SYNC_CLIENT_SESSIONS_MAX = 2
/** `[perf] sync_serve_sessions_max`: sessions served at once; more are refused (busy). */
export const SYNC_SERVER_SESSIONS_MAX = 3
/** A served session idle this long is forgotten (its slot is free again). */
export const SYNC_SESSION_IDLE_MS = 10_000
/** `[perf] sync_rounds_max`: request/answer rounds of one session; the next round resumes. */
export const SYNC_ROUNDS_MAX = 64
/** Version ranges asked for in one sync request; the rest wait for the next request. */
export const SYNC_NEEDS_PER_REQUEST_MAX = 64
/** `[perf] sync_reply_bytes`: largest sync answer asked for; the server sends the rest later. */
export const SYNC_REPLY_BYTES = 1024 * 1024
/** `[perf] sync_timeout_ms`: a sync exchange unanswered after this fails its session. */
export const SYNC_TIMEOUT_MS = 5_000
/** Lag samples kept for p99 lag; older ones are forgotten. */
export const LAG_SAMPLES_MAX = 1024
/**
 * `[perf] buffered_cells_max`: cells stored for versions not complete yet (chunks missing) or
 * parked until a schema change; chunks over it are not stored and are fetched again later.
 */
export const BUFFER_CELLS_MAX = 1_000_000

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
  /**
   * Largest stream frame a peer reads (REPLICATION_FRAME_BYTES_MAX): no broadcast or sync reply
   * is bigger; a version with one change too big for it is undeliverable.
   */
  readonly frameBytesMax: number
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
  rateBytesPerSec: RATE_BYTES_PER_SEC,
  burstBytes: RATE_BURST_BYTES,
  chunkBytes: CHUNK_BYTES,
  frameBytesMax: REPLICATION_FRAME_BYTES_MAX,
  broadcastDirectMax: BROADCAST_DIRECT_MAX,
  fanout: BROADCAST_FANOUT,
  maxTransmissions: BROADCAST_TRANSMISSIONS,
  retransmitIntervalMs: BROADCAST_RETRANSMIT_INTERVAL_MS,
  broadcastQueueMax: BROADCAST_QUEUE_MAX,
  broadcastQueueBytesMax: BROADCAST_QUEUE_BYTES_MAX,
  applyQueueMax: APPLY_QUEUE_MAX,
  applyQueueBytesMax: APPLY_QUEUE_BYTES_MAX,
  applyBatchMin: APPLY_BATCH_MIN,
  applyBatchMax: APPLY_BATCH_MAX,
  applyTargetMs: APPLY_TARGET_MS,
  syncIntervalMs: SYNC_INTERVAL_MS,
  syncIntervalMaxMs: SYNC_INTERVAL_MAX_MS,
  syncClientSessionsMax: SYNC_CLIENT_SESSIONS_MAX,
  syncServerSessionsMax: SYNC_SERVER_SESSIONS_MAX,
  syncSessionIdleMs: SYNC_SESSION_IDLE_MS,
  syncRoundsMax: SYNC_ROUNDS_MAX,
  syncNeedsPerRequest: SYNC_NEEDS_PER_REQUEST_MAX,
  syncReplyBytes: SYNC_REPLY_BYTES,
  syncTimeoutMs: SYNC_TIMEOUT_MS,
  lagSamples: LAG_SAMPLES_MAX,
  syncEnabled: true,
})
