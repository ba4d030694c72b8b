/**
 * The messages between the ReaderPool (main thread) and its reader processes, over an IPC
 * channel with `serialization: 'advanced'` (structured clone), which keeps bigint (INTEGER)
 * apart from number (REAL) and carries Uint8Array (BLOB).
 */
import type { SqlValue } from '../crdt/values.ts'

export type QueryParams = readonly SqlValue[] | Readonly<Record<string, SqlValue>>

/** Why a query failed; the HTTP layer maps these to status codes. */
export type QueryErrorCode =
  'SQL_ERROR' | 'NOT_READ_ONLY' | 'NOT_ALLOWED' | 'TIMEOUT' | 'OVERLOADED' | 'CLOSED'

/** Pool to reader. */
export type ToWorker =
  | {
      readonly type: 'query'
      readonly id: number
      readonly sql: string
      readonly params: QueryParams | undefined
      readonly batchRows: number
      /** Batches the reader may send before it waits for credit. */
      readonly credit: number
    }
  /** The consumer took `n` more batches: the reader may send `n` more. */
  | { readonly type: 'credit'; readonly id: number; readonly n: number }
  /** Stop the query, finalise the statement and end the read transaction. */
  | { readonly type: 'cancel'; readonly id: number }

/** Reader to pool. */
export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'open-failed'; readonly message: string }
  | { readonly type: 'columns'; readonly id: number; readonly columns: readonly string[] }
  | { readonly type: 'rows'; readonly id: number; readonly rows: readonly (readonly SqlValue[])[] }
  | { readonly type: 'end'; readonly id: number; readonly timeS: number }
  | {
      readonly type: 'error'
      readonly id: number
      readonly code: 'SQL_ERROR' | 'NOT_READ_ONLY' | 'NOT_ALLOWED'
      readonly message: string
      /** SQLite's extended result code (`SQLITE_BUSY`, ...) when SQLite raised the error. */
      readonly sqliteCode: string | null
    }
  | { readonly type: 'cancelled'; readonly id: number }
