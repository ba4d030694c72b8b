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
