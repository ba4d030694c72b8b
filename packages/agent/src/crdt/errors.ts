/**
 * Operating errors of the replicated-table engine. Each has a stable `code`.
 */
export type ReplicaErrorCode =
  | 'WRITE_OUTSIDE_PATINA'
  | 'UNKNOWN_TABLE'
  | 'UNKNOWN_COLUMN'
  | 'INVALID_CHANGE'
  | 'STATEMENT_NOT_ALLOWED'
  /** A local write would store TEXT that is not valid UTF-8 (text-check.ts). */
  | 'INVALID_TEXT'
  /** A local write would store a value over `[perf] max_cell_bytes` (cell-size.ts). */
  | 'CELL_TOO_LARGE'
  /** A local transaction ran past `[perf] sql_tx_timeout` and was rolled back (replica.ts). */
  | 'TRANSACTION_TIMEOUT'

export class ReplicaError extends Error {
  override readonly name = 'ReplicaError'
  readonly code: ReplicaErrorCode

  constructor(code: ReplicaErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}
