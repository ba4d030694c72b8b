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
