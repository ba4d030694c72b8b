/**
 * Every error the client throws. Each class has a stable `code` (switch on it, or use
 * `instanceof`), a `name` that survives minification, and keeps what caused it in `cause`.
 * An error the agent reported also has `agentCode`: the agent's own code (docs/api.md, e.g.
 * `SQL_ERROR`, `RESUME_GONE`), or null when it sent none (Corrosion, a proxy). The client
 * chooses the class from the agent's code and the HTTP status, never from the message.
 * The table of codes is in docs/client.md.
 */

/** Options of the errors the agent reported: what caused it, and the agent's code. */
export interface AgentErrorOptions extends ErrorOptions {
  /** The `code` of the agent's error body or event; null or absent when it sent none. */
  readonly agentCode?: string | null
}

/** The base class: `err instanceof PatinaError` catches everything the client throws. */
export abstract class PatinaError extends Error {
  abstract readonly code: string
}

/** Stable codes of `PatinaHttpError`, by HTTP status (docs/api.md lists when the agent sends each). */
const HTTP_CODES: Readonly<Record<number, string>> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  408: 'QUERY_TIMEOUT',
  413: 'BODY_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  421: 'MISDIRECTED_REQUEST',
  429: 'TOO_MANY_REQUESTS',
  500: 'AGENT_ERROR',
  502: 'BAD_GATEWAY',
  503: 'UNAVAILABLE',
  504: 'GATEWAY_TIMEOUT',
}

/** The code `PatinaHttpError` uses for an HTTP status. */
export function httpCode(status: number): string {
  return HTTP_CODES[status] ?? `HTTP_${status}`
}

/**
 * The agent answered with an error status. `message` is the agent's own message (its JSON
 * `error` field: SQLite's message for SQL errors), `status` the HTTP status, `code` a stable
 * name for it (`BAD_REQUEST`, `UNAVAILABLE`, ...), `url` the agent that answered.
 */
export class PatinaHttpError extends PatinaError {
  static {
    this.prototype.name = 'PatinaHttpError'
  }
  readonly code: string
  readonly status: number
  readonly url: string
  /** From a `Retry-After` header, when the agent sent one. */
  readonly retryAfterMs: number | null
  /** The agent's code (docs/api.md), e.g. `SQL_ERROR`; null when it sent none. */
  readonly agentCode: string | null

  constructor(
    status: number,
    message: string,
    url: string,
    retryAfterMs: number | null = null,
    options?: AgentErrorOptions,
  ) {
    super(message, options)
    this.status = status
    this.code = httpCode(status)
    this.url = url
    this.retryAfterMs = retryAfterMs
    this.agentCode = options?.agentCode ?? null
  }
}

/** One entry of a failed transaction's `results`: the agent reports the statement's error. */
export interface FailedStatementResult {
  readonly error: string
}

/**
 * The transaction failed and was rolled back: nothing of it was applied. `message` is the
 * agent's (e.g. `UNIQUE constraint failed: t.id`); `results` is the agent's per-statement list.
 */
export class TransactionError extends PatinaHttpError {
  static {
    this.prototype.name = 'TransactionError'
  }
  override readonly code = 'TRANSACTION_FAILED'
  readonly results: readonly FailedStatementResult[]

  constructor(
    status: number,
    message: string,
    url: string,
    results: readonly FailedStatementResult[],
    options?: AgentErrorOptions,
  ) {
    super(status, message, url, null, options)
    this.results = results
  }
}

/** Why one agent could not be used, as `ConnectionError.failures` lists it. */
export interface EndpointFailure {
  readonly url: string
  readonly error: Error
}

/**
 * No agent could be reached (connection refused, unknown host, timeout, 5xx, or a stream that
 * ended under the reader). `failures` lists each agent tried and why, in order.
 */
export class ConnectionError extends PatinaError {
  static {
    this.prototype.name = 'ConnectionError'
  }
  readonly code = 'CONNECTION_FAILED'
  readonly failures: readonly EndpointFailure[]

  constructor(message: string, failures: readonly EndpointFailure[], options?: ErrorOptions) {
    super(message, options)
    this.failures = failures
  }
}

/**
 * A transaction was sent but its answer was lost (the connection broke, the request timed out,
 * or a proxy answered 502/504): it may or may not have been applied. The client never retries
 * it on its own; check (read your write) before sending it again, or make it idempotent.
 */
export class OutcomeUnknownError extends PatinaError {
  static {
    this.prototype.name = 'OutcomeUnknownError'
  }
  readonly code = 'OUTCOME_UNKNOWN'
  readonly url: string

  constructor(message: string, url: string, options?: ErrorOptions) {
    super(message, options)
    this.url = url
  }
}

/** No response headers within `timeoutMs`. */
export class TimeoutError extends PatinaError {
  static {
    this.prototype.name = 'TimeoutError'
  }
  readonly code = 'TIMEOUT'
}

/** The call's `signal` fired, or the client was closed. `cause` is the signal's reason. */
export class AbortError extends PatinaError {
  static {
    this.prototype.name = 'AbortError'
  }
  readonly code = 'ABORTED'
}

/** A call on a client after `close()`. */
export class ClientClosedError extends PatinaError {
  static {
    this.prototype.name = 'ClientClosedError'
  }
  readonly code = 'CLIENT_CLOSED'
}

/**
 * A statement or a parameter the client cannot send (refused before anything is sent): a
 * wrong shape, `undefined`, a non-finite number, an integer beyond 2^53 given as a number, a
 * bigint outside 64 bits, an object or array (pass `JSON.stringify(x)` to bind JSON text).
 */
export class InvalidStatementError extends PatinaError {
  static {
    this.prototype.name = 'InvalidStatementError'
  }
  readonly code = 'INVALID_STATEMENT'
}

/**
 * The agent reported an error inside a stream (an `{"error": "...", "code": "..."}` line): a
 * query that failed after its first rows, a subscription or update stream the agent ended.
 * `message` is the agent's, `agentCode` its code (e.g. `QUERY_TIMEOUT`, `AGENT_CLOSING`).
 */
export class QueryError extends PatinaError {
  static {
    this.prototype.name = 'QueryError'
  }
  readonly code = 'QUERY_FAILED'
  readonly url: string
  /** The agent's code (docs/api.md); null when it sent none. */
  readonly agentCode: string | null

  constructor(message: string, url: string, options?: AgentErrorOptions) {
    super(message, options)
    this.url = url
    this.agentCode = options?.agentCode ?? null
  }
}

/** The agent's answer is not what the API defines (bad JSON, unknown event, missing header). */
export class ProtocolError extends PatinaError {
  static {
    this.prototype.name = 'ProtocolError'
  }
  readonly code = 'PROTOCOL_ERROR'
}

/**
 * A subscription cannot continue exactly: the agent no longer has it (404/410, e.g. after a
 * restart), or no longer keeps the changes after `lastChangeId`, or a change id was skipped.
 * Nothing more can be resumed: subscribe again without `from` and rebuild your state from the
 * fresh rows.
 */
export class SubscriptionGoneError extends PatinaError {
  static {
    this.prototype.name = 'SubscriptionGoneError'
  }
  readonly code = 'SUBSCRIPTION_GONE'
  readonly id: string | null
  readonly lastChangeId: number | null
  /** The agent's code that said so (`RESUME_GONE`, ...); null when the client found the gap. */
  readonly agentCode: string | null

  constructor(
    message: string,
    id: string | null,
    lastChangeId: number | null,
    options?: AgentErrorOptions,
  ) {
    super(message, options)
    this.id = id
    this.lastChangeId = lastChangeId
    this.agentCode = options?.agentCode ?? null
  }
}

/**
 * A subscription lost its connection and could not get it back within the resume bound
 * (`resume.attempts`), or lost it at a point it cannot resume from (during the initial rows).
 * `cause` is the last failure. `id`, `agent` and `lastChangeId` say where to pick up:
 * `client.subscribe(sql, { from: err.lastChangeId, agent: err.agent })` once the agent is back.
 */
export class ResumeError extends PatinaError {
  static {
    this.prototype.name = 'ResumeError'
  }
  readonly code = 'RESUME_FAILED'
  readonly id: string | null
  readonly agent: string
  readonly lastChangeId: number | null
  readonly attempts: number

  constructor(
    message: string,
    details: { id: string | null; agent: string; lastChangeId: number | null; attempts: number },
    options?: ErrorOptions,
  ) {
    super(message, options)
    this.id = details.id
    this.agent = details.agent
    this.lastChangeId = details.lastChangeId
    this.attempts = details.attempts
  }
}
