/**
 * Limits of the subscription machinery that are not config keys (those are the SUBS_* of
 * config/defaults.ts). Each says what happens when it is hit.
 */

/**
 * Rows of a stored result, or logged changes, a stream reads from the subscriptions database
 * per step; a longer result or backlog takes more steps (and yields in between).
 */
export const SUBS_PAGE_ROWS = 512
/**
 * Chunks a catching-up stream writes per turn of the event loop; then it yields, so one long
 * catch-up does not hold up the other streams and the commits.
 */
export const SUBS_CHUNKS_PER_TURN = 8
/**
 * The longest rest after writing change events to listeners: the next tick waits for the
 * writing time, but never more than this beyond `[subscriptions] batch_ms`.
 */
export const SUBS_FANOUT_REST_MAX_MS = 50
/**
 * Rows of dropped subscriptions deleted per step of the background clean-up; then it yields
 * and goes on in the next step until none are left.
 */
export const SUBS_GC_ROWS_PER_STEP = 2000
/**
 * The idle sweep runs every quarter of `[subscriptions] idle_timeout_ms`, but not more often
 * than this: a shorter timeout is honoured to within this much.
 */
export const SUBS_SWEEP_INTERVAL_MIN_MS = 10
/** ... and not less often than this: a long timeout is still honoured to within this much. */
export const SUBS_SWEEP_INTERVAL_MAX_MS = 1000
/** Page cache of the planner's read-only connection (it compiles statements, reads little). */
export const PLANNER_CACHE_SIZE_KIB = 1024
/** Page cache of the subscriptions database (stored results and change logs). */
export const SUBS_DB_CACHE_SIZE_KIB = 8 * 1024
/**
 * Evaluations that may wait for one subscription reader process; more are refused as
 * overloaded and retried on a later tick.
 */
export const SUBS_EVALS_PER_READER_MAX = 4
