/**
 * The agent's errors as the API reports them: each becomes one code of @patina/protocol's table
 * (docs/api.md), which gives its HTTP status. The mapping reads error classes and their codes,
 * never a message.
 *
 *   ApiError                 its code (raised by the routes: auth, routing, bad parameters)
 *   JsonBodyError            MALFORMED_JSON
 *   StatementShapeError      its code (INVALID_BODY, TOO_MANY_STATEMENTS)
 *   fastify's body errors    UNSUPPORTED_CONTENT_TYPE, BODY_TOO_LARGE, MALFORMED_JSON, BAD_REQUEST
 *   reader pool QueryError   SQL_ERROR (AGENT_ERROR when SQLite's code is the agent's fault),
 *                            NOT_READ_ONLY, STATEMENT_NOT_ALLOWED, QUERY_TIMEOUT, OVERLOADED,
 *                            AGENT_CLOSING, ROW_TOO_LARGE
 *   ReplicaError             its own code when the table has it (STATEMENT_NOT_ALLOWED, ...),
 *                            an alias below, else SQL_ERROR: a new capture error is a 400
 *   SubsError                subs/errors.ts `wireCode`
 *   SQLite's own errors      STORAGE_FULL for a full disk; AGENT_ERROR for I/O, corruption,
 *                            locks; else SQL_ERROR
 *   anything else            `fallback` (AGENT_ERROR unless the caller knows better)
 */
import { isErrorCode, statusOf, type ErrorCode } from '@patina/protocol'
import { ReplicaError } from '../crdt/errors.ts'
import { QueryError } from '../query/reader-pool.ts'
import { SubsError, wireCode } from '../subs/errors.ts'
import { JsonBodyError } from './json.ts'
import { StatementShapeError } from './statements.ts'

/** An error the routes raise with the code to answer. */
export class ApiError extends Error {
  override readonly name = 'ApiError'
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string, options?: { readonly cause?: unknown }) {
    super(message, options)
    this.code = code
  }

  get statusCode(): number {
    return statusOf(this.code)
  }
}

/** Engine codes that are the same thing as a wire code of another name. */
const REPLICA_ALIASES: Readonly<Record<string, ErrorCode>> = {
  WRITE_OUTSIDE_PATINA: 'STATEMENT_NOT_ALLOWED',
  INVALID_UTF8: 'INVALID_TEXT',
}

/** fastify's codes for a body it refused before any route ran. */
const FASTIFY_CODES: Readonly<Record<string, ErrorCode>> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_CONTENT_TYPE',
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'MALFORMED_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'MALFORMED_JSON',
}

/** SQLite result codes that mean the agent, not the caller, is at fault. */
const AGENT_FAULT = /^SQLITE_(IOERR|FULL|CORRUPT|NOMEM|READONLY|CANTOPEN|BUSY|LOCKED|NOTADB|PERM)/

function sqliteFault(code: unknown): boolean {
  return typeof code === 'string' && AGENT_FAULT.test(code)
}

const QUERY_CODES: Readonly<Record<QueryError['code'], ErrorCode>> = {
  SQL_ERROR: 'SQL_ERROR',
  NOT_READ_ONLY: 'NOT_READ_ONLY',
  NOT_ALLOWED: 'STATEMENT_NOT_ALLOWED',
  TIMEOUT: 'QUERY_TIMEOUT',
  OVERLOADED: 'OVERLOADED',
  CLOSED: 'AGENT_CLOSING',
  ROW_TOO_LARGE: 'ROW_TOO_LARGE',
}

/**
 * The wire code for `err`. `fallback` is the code of an error of no known class: AGENT_ERROR
 * in general; SQL_ERROR where only the user's statement can have raised it (a transaction:
 * better-sqlite3 throws plain RangeError and TypeError for bad parameters).
 */
export function codeOf(err: unknown, fallback: ErrorCode = 'AGENT_ERROR'): ErrorCode {
  if (err instanceof ApiError) return err.code
  if (err instanceof JsonBodyError) return 'MALFORMED_JSON'
  if (err instanceof StatementShapeError) return err.code
  if (err instanceof QueryError) {
    if (err.code === 'SQL_ERROR' && sqliteFault(err.sqliteCode)) return 'AGENT_ERROR'
    return QUERY_CODES[err.code]
  }
  if (err instanceof ReplicaError) {
    const code: string = err.code
    if (isErrorCode(code)) return code
    return REPLICA_ALIASES[code] ?? 'SQL_ERROR'
  }
  if (err instanceof SubsError) return wireCode(err)
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string') {
    const fastify = FASTIFY_CODES[code]
    if (fastify !== undefined) return fastify
    // Another of fastify's refusals of the request itself (a 4xx it chose).
    const status = (err as { statusCode?: unknown }).statusCode
    if (code.startsWith('FST_') && typeof status === 'number' && status < 500) return 'BAD_REQUEST'
    // better-sqlite3's SqliteError: SQLite's result code.
    if (code.startsWith('SQLITE_FULL')) return 'STORAGE_FULL'
    if (code.startsWith('SQLITE_')) return sqliteFault(code) ? 'AGENT_ERROR' : 'SQL_ERROR'
  }
  return fallback
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
