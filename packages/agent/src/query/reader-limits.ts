/**
 * Bounds of the reader processes (query/), named here for the pool and the reader alike.
 */

/**
 * A batch of rows ends once its rows are about this many bytes (or READER_BATCH_ROWS rows):
 * with READER_BATCHES_IN_FLIGHT_MAX batches in flight, a query holds about 4 × this in the
 * agent's main process, plus one row of at most `[api] max_row_bytes` per batch.
 */
export const READER_BATCH_BYTES = 64 * 1024

/**
 * A reader whose resident set is above this once a query is over (after a garbage collection)
 * is replaced by a fresh one: a query that built a huge value (a refused row, a large sort)
 * leaves the heap and SQLite's allocator grown, and a process that is killed gives it all back.
 * An idle reader is about 50 MiB.
 */
export const READER_RSS_RECYCLE_BYTES = 128 * 1024 * 1024

/** Above this resident set at the end of a query, the reader collects garbage and measures again. */
export const READER_RSS_GC_BYTES = 96 * 1024 * 1024
