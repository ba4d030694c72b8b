/**
 * The messages between the ReaderPool (main thread) and its reader processes, over an IPC
 * channel with `serialization: 'advanced'` (structured clone), which keeps bigint (INTEGER)
 * apart from number (REAL) and carries Uint8Array (BLOB).
 */
import type { SqlValue } from '../crdt/values.ts'

export type QueryParams = readonly SqlValue[] | Readonly<Record<string, SqlValue>>

/** Why a query failed; the HTTP layer maps these to status codes. */
export type QueryErrorCode =
  | 'SQL_ERROR'
  | 'NOT_READ_ONLY'
  | 'NOT_ALLOWED'
  | 'TIMEOUT'
  | 'OVERLOADED'
  | 'CLOSED'
  /** A row is larger than `maxRowBytes` as JSON (refused in the reader, never sent). */
  | 'ROW_TOO_LARGE'

/** Pool to reader. */
export type ToWorker =
  | {
      readonly type: 'query'
      readonly id: number
      readonly sql: string
      readonly params: QueryParams | undefined
      readonly batchRows: number
      /** A batch ends once its rows are about this many bytes (a rough size, row-size.ts). */
      readonly batchBytes: number
      /** A row larger than this as JSON ends the query with ROW_TOO_LARGE; 0: no limit. */
      readonly maxRowBytes: number
      /** Batches the reader may send before it waits for credit. */
      readonly credit: number
    }
  /** The consumer took `n` more batches: the reader may send `n` more. */
  | { readonly type: 'credit'; readonly id: number; readonly n: number }
  /** Stop the query, finalise the statement and end the read transaction. */
  | { readonly type: 'cancel'; readonly id: number }

/**
 * Reader to pool. The last message of a query (end, error, cancelled) carries `rss`, the
 * reader's resident set in bytes once the query is over: the pool replaces a reader that stays
 * large (a query built a huge value).
 */
export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'open-failed'; readonly message: string }
  | { readonly type: 'columns'; readonly id: number; readonly columns: readonly string[] }
  | { readonly type: 'rows'; readonly id: number; readonly rows: readonly (readonly SqlValue[])[] }
  | { readonly type: 'end'; readonly id: number; readonly timeS: number; readonly rss: number }
  | {
      readonly type: 'error'
      readonly id: number
      readonly code: 'SQL_ERROR' | 'NOT_READ_ONLY' | 'NOT_ALLOWED' | 'ROW_TOO_LARGE'
      readonly message: string
      /** SQLite's extended result code (`SQLITE_BUSY`, ...) when SQLite raised the error. */
      readonly sqliteCode: string | null
      readonly rss: number
    }
  | { readonly type: 'cancelled'; readonly id: number; readonly rss: number }
