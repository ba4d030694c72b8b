/**
 * The errors of subscriptions and update streams. Each has a stable code, and the HTTP status
 * the API answers with when the error happens before a stream starts (after that, it becomes
 * an `{"error": "..."}` event).
 */

export type SubsErrorCode =
  /** The statement cannot be subscribed to (not one SELECT, a shape refused, a bad parameter). */
  | 'REFUSED'
  /** SQLite rejected the query, or running it failed. */
  | 'SQL_ERROR'
  /** No subscription with that id, or no replicated table with that name. */
  | 'NOT_FOUND'
  /** `from=` cannot be served exactly: the changes after it are gone (or never existed). */
  | 'RESUME_GONE'
  /** The subscription failed (its query errors on the current data) and was dropped. */
  | 'FAILED'
  /** A cap is reached (subscriptions, listeners, evaluation queue). */
  | 'OVERLOADED'
  /** The first evaluation ran past `[subscriptions] eval_timeout_ms`. */
  | 'TIMEOUT'
  /** The agent is stopping. */
  | 'CLOSED'

const STATUS: Record<SubsErrorCode, number> = {
  REFUSED: 400,
  SQL_ERROR: 400,
  NOT_FOUND: 404,
  RESUME_GONE: 410,
  FAILED: 410,
  OVERLOADED: 503,
  TIMEOUT: 408,
  CLOSED: 503,
}

export class SubsError extends Error {
  override readonly name = 'SubsError'
  readonly code: SubsErrorCode
  constructor(code: SubsErrorCode, message: string, options?: { readonly cause?: unknown }) {
    super(message, options)
    this.code = code
  }

  /** The HTTP status for this error when no response has started yet. */
  get statusCode(): number {
    return STATUS[this.code]
  }
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
