/**
 * The error codes of the HTTP API. Every error body is `{"error": "<message>", "code": "<CODE>"}`
 * and every error event in a stream is the same object on one line; a failed transaction keeps
 * Corrosion's shape `{"error", "results": [{"error"}], "version": null}` and adds `code`.
 * Corrosion clients read `error` only; Patina's client decides by `code` (never by the message,
 * which may change). docs/api.md lists this table; a test checks that they agree.
 */

export interface ErrorCodeInfo {
  /** The HTTP status of an answer with this code (a code seen only in streams: its nearest). */
  readonly status: number
  /** What happened. */
  readonly meaning: string
  /** What the caller should do. */
  readonly action: string
}

export const ERROR_CODES = {
  MALFORMED_JSON: {
    status: 400,
    meaning: 'the body is not JSON (or is empty where JSON is expected)',
    action: 'fix the body; do not retry as is',
  },
  INVALID_BODY: {
    status: 400,
    meaning: 'the body is JSON of the wrong shape (a statement form, `params`, `tables`)',
    action: 'fix the body; the message names the field',
  },
  TOO_MANY_STATEMENTS: {
    status: 400,
    meaning: 'a transaction has more statements than `[api] max_statements`',
    action: 'split it into smaller transactions',
  },
  INVALID_PARAMETER: {
    status: 400,
    meaning: 'a query-string parameter is malformed (`from`, `skip_rows`, a health threshold)',
    action: 'fix the URL',
  },
  BAD_REQUEST: {
    status: 400,
    meaning: 'the HTTP request itself is malformed (headers, framing)',
    action: 'fix the request',
  },
  UNAUTHORIZED: {
    status: 401,
    meaning: 'no bearer token, or the wrong one (`[api.authz] bearer-token`)',
    action: 'send `Authorization: Bearer <token>`',
  },
  ROUTE_NOT_FOUND: {
    status: 404,
    meaning: 'no such route',
    action: 'check the path (docs/api.md)',
  },
  SUBSCRIPTION_NOT_FOUND: {
    status: 404,
    meaning: 'no subscription with that id (never made, dropped when idle, or not restored)',
    action: 'subscribe again without `from`',
  },
  TABLE_NOT_FOUND: {
    status: 404,
    meaning: 'no replicated table with that name',
    action: 'check the table name against the schema',
  },
  METHOD_NOT_ALLOWED: {
    status: 405,
    meaning: 'the route exists but not with this method (the `Allow` header lists them)',
    action: 'use a method from `Allow`',
  },
  REQUEST_TIMEOUT: {
    status: 408,
    meaning:
      'the request head or body did not arrive within `[api] headers_timeout_ms` / `request_timeout_ms`; the connection is closed',
    action: 'send the whole request promptly; retry on a new connection',
  },
  QUERY_TIMEOUT: {
    status: 408,
    meaning: "the query (or a subscription's first evaluation) ran past its time limit",
    action: 'make the query cheaper, or raise the limit; retrying as is fails again',
  },
  TRANSACTION_TIMEOUT: {
    status: 408,
    meaning:
      'the transaction ran past `[perf] sql_tx_timeout` and was rolled back: it changed nothing',
    action: 'make it cheaper or split it; retrying as is fails again',
  },
  RESUME_GONE: {
    status: 410,
    meaning: 'the changes after `from` are no longer kept (or `from` is beyond the last change)',
    action: 'subscribe again without `from` and rebuild from the fresh rows',
  },
  SUBSCRIPTION_FAILED: {
    status: 410,
    meaning: 'the subscription failed on the agent (its query errors on the data) and was dropped',
    action: 'fix the query, then subscribe again',
  },
  BODY_TOO_LARGE: {
    status: 413,
    meaning: 'the body is larger than `[api] max_body_bytes`',
    action: 'send less per request',
  },
  CELL_TOO_LARGE: {
    status: 413,
    meaning:
      'the transaction stores a value larger than `[perf] max_cell_bytes` (TEXT as UTF-8, BLOB bytes); it changed nothing',
    action: 'store large values outside Patina, or split them over rows',
  },
  ROW_TOO_LARGE: {
    status: 413,
    meaning:
      'a row of the result is larger than `[api] max_row_bytes` as JSON (in a stream: the stream ends there, after the rows before it)',
    action: 'select fewer or smaller columns (e.g. `length(col)`, `substr(col, ...)`)',
  },
  UNSUPPORTED_CONTENT_TYPE: {
    status: 415,
    meaning: 'the body is not sent as `application/json`',
    action: 'send `content-type: application/json`',
  },
  SQL_ERROR: {
    status: 400,
    meaning:
      "SQLite refused or failed the statement (syntax, constraint, no such table); the message is SQLite's",
    action: 'fix the statement; a failed transaction changed nothing',
  },
  STATEMENT_NOT_ALLOWED: {
    status: 400,
    meaning:
      "the statement touches Patina's internal tables, changes the schema, a PRAGMA, ATTACH or transaction control",
    action: 'change the schema in schema files; write only replicated tables',
  },
  NOT_READ_ONLY: {
    status: 400,
    meaning: 'a statement that writes was sent where only reads are allowed (`/v1/queries`)',
    action: 'send writes to `/v1/transactions`',
  },
  INVALID_TEXT: {
    status: 400,
    meaning: 'a TEXT value is not valid UTF-8',
    action: 'store bytes as a BLOB',
  },
  SUBSCRIPTION_REFUSED: {
    status: 400,
    meaning:
      'the statement cannot be subscribed to (not one read-only SELECT of replicated tables, or a shape refused)',
    action: 'change the query; the message says what is refused',
  },
  LISTENER_TOO_SLOW: {
    status: 503,
    meaning:
      'stream only: the listener fell more than `[subscriptions] max_listener_lag` behind and was cut off',
    action:
      'subscription: resume with `from` = the last change id received; update stream: re-read, then reopen',
  },
  AGENT_CLOSING: {
    status: 503,
    meaning: 'the agent is shutting down (in a stream: the stream ends because of it)',
    action:
      'retry on another agent; a subscription resumes from the last change id once the agent is back',
  },
  OVERLOADED: {
    status: 503,
    meaning:
      'a cap is reached: transactions or queries in flight, subscriptions, listeners (`Retry-After` says when to retry)',
    action: 'retry after `Retry-After`, or on another agent',
  },
  UNHEALTHY: {
    status: 503,
    meaning:
      '`/v1/health`: a threshold given in the query is exceeded, or the disk is full (`storage_full`); the body has `response`',
    action: 'route traffic elsewhere until it is healthy',
  },
  STORAGE_FULL: {
    status: 507,
    meaning:
      "the disk holding the agent's database is full: writes fail and change nothing; reads are served",
    action: 'retry the write elsewhere; the operator frees disk space (`/v1/health` says why)',
  },
  AGENT_ERROR: {
    status: 500,
    meaning: "the agent's own fault (disk I/O, a corrupt file, a bug); it is logged",
    action:
      'retry reads; check whether a transaction was applied before resending it; tell the operator',
  },
} as const satisfies Record<string, ErrorCodeInfo>

/** A code the agent sends (`code` of an error body or event). */
export type ErrorCode = keyof typeof ERROR_CODES

export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && Object.hasOwn(ERROR_CODES, s)
}

/** The HTTP status of an answer with `code`. */
export function statusOf(code: ErrorCode): number {
  return ERROR_CODES[code].status
}

/**
 * In a subscription stream, the codes after which the same subscription goes on from the last
 * change id received (`GET /v1/subscriptions/:id?from=N`): the listener was cut off for being
 * slow, or the agent is stopping. Any other error event ends the subscription.
 */
const RESUMABLE: ReadonlySet<string> = new Set<ErrorCode>(['LISTENER_TOO_SLOW', 'AGENT_CLOSING'])

/**
 * The codes that say a subscription, or its changes after `from`, no longer exists: subscribe
 * again without `from`. (`SUBSCRIPTION_FAILED` is gone too, but its message is the reason to
 * fix first.)
 */
const GONE: ReadonlySet<string> = new Set<ErrorCode>(['RESUME_GONE', 'SUBSCRIPTION_NOT_FOUND'])

/** Whether a subscription stream that ended with this code can resume from its last change id. */
export function isResumable(code: string | null): boolean {
  return code !== null && RESUMABLE.has(code)
}

/** Whether this code says the subscription, or the history it would resume from, is gone. */
export function isGone(code: string | null): boolean {
  return code !== null && GONE.has(code)
}

/** The body of an error answer and the object of an error event. */
export interface ErrorBody {
  readonly error: string
  /** Absent when the agent is not Patina (Corrosion sends `error` only). */
  readonly code?: string
}

/** A failed transaction's body: Corrosion's shape plus `code`. */
export interface TransactionErrorBody extends ErrorBody {
  readonly results: readonly { readonly error: string }[]
  readonly version: null
}

/** JSON text of an error answer: `{"error": message, "code": code}`. */
export function encodeErrorBody(code: ErrorCode, message: string): string {
  return JSON.stringify({ error: message, code } satisfies ErrorBody)
}

/** JSON text of a failed transaction's answer. */
export function encodeTransactionError(code: ErrorCode, message: string): string {
  return JSON.stringify({
    error: message,
    code,
    results: [{ error: message }],
    version: null,
  } satisfies TransactionErrorBody)
}
