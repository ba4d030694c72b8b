/**
 * The errors of subscriptions and update streams. Each has a stable code; `wireCode` gives the
 * API's code for it (@patina/protocol's table, which gives the HTTP status when the error
 * happens before a stream starts; after that, it becomes an `{"error","code"}` event).
 */
import type { ErrorCode } from '@patina/protocol'

export type SubsErrorCode =
  /** The statement cannot be subscribed to (not one SELECT, a shape refused, a bad parameter). */
  | 'REFUSED'
  /** A query-string parameter of the request is malformed (`from`, `skip_rows`). */
  | 'BAD_PARAMETER'
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
  /** The listener fell too far behind and was cut off (`[subscriptions] max_listener_lag`). */
  | 'TOO_SLOW'
  /** A row of the result is larger than `[api] max_row_bytes` as JSON. */
  | 'ROW_TOO_LARGE'
  /** The first evaluation ran past `[subscriptions] eval_timeout_ms`. */
  | 'TIMEOUT'
  /** The agent is stopping. */
  | 'CLOSED'

const WIRE: Record<SubsErrorCode, ErrorCode> = {
  REFUSED: 'SUBSCRIPTION_REFUSED',
  BAD_PARAMETER: 'INVALID_PARAMETER',
  SQL_ERROR: 'SQL_ERROR',
  NOT_FOUND: 'SUBSCRIPTION_NOT_FOUND',
  RESUME_GONE: 'RESUME_GONE',
  FAILED: 'SUBSCRIPTION_FAILED',
  OVERLOADED: 'OVERLOADED',
  TOO_SLOW: 'LISTENER_TOO_SLOW',
  ROW_TOO_LARGE: 'ROW_TOO_LARGE',
  TIMEOUT: 'QUERY_TIMEOUT',
  CLOSED: 'AGENT_CLOSING',
}

export class SubsError extends Error {
  override readonly name = 'SubsError'
  readonly code: SubsErrorCode
  constructor(code: SubsErrorCode, message: string, options?: { readonly cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

/**
 * The API's code for `err`. NOT_FOUND is a subscription's unless `notFound` says what the
 * request looked up (`POST /v1/updates/:table` looks up a table).
 */
export function wireCode(
  err: SubsError,
  notFound: 'SUBSCRIPTION_NOT_FOUND' | 'TABLE_NOT_FOUND' = 'SUBSCRIPTION_NOT_FOUND',
): ErrorCode {
  return err.code === 'NOT_FOUND' ? notFound : WIRE[err.code]
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
