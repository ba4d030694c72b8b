/**
 * The HTTP API's wire shapes (Corrosion's v1 API, docs/api.md), as JSON text carries them. Types
 * only, plus the header names: the agent writes these shapes and the client reads them.
 *
 * A cell is `null`, a number (an INTEGER when written without fraction or exponent, a REAL
 * otherwise), a string (TEXT) or an array of bytes (BLOB). Integers are written exactly, so a
 * reader that keeps them exact sees `bigint` where they exceed 2^53.
 */

/** Response header of `POST /v1/subscriptions` and `GET /v1/subscriptions/:id`: the id. */
export const QUERY_ID_HEADER = 'corro-query-id'
/** Response header of the subscription routes: a hash of the expanded SQL. */
export const QUERY_HASH_HEADER = 'corro-query-hash'

/** One cell as parsed from the JSON text (integers may be bigint when kept exact). */
export type WireCell = null | number | bigint | string | readonly (number | bigint)[]

/** `POST /v1/transactions`, 200. */
export interface WireTransactionResponse {
  readonly results: readonly { readonly rows_affected: number; readonly time: number }[]
  readonly time: number
  /** The agent's version for the transaction; null when it changed nothing. */
  readonly version: number | null
  readonly actor_id: string
}

/** Every error answer; a failed transaction also carries `results` and `version: null`. */
export interface WireErrorBody {
  readonly error: string
  readonly results?: readonly { readonly error?: string }[]
  readonly version?: null
}

/** NDJSON lines of `POST /v1/queries`. `row` is `[position, cells]`, position 1-based. */
export type WireQueryEvent =
  | { readonly columns: readonly string[] }
  | { readonly row: readonly [number, readonly WireCell[]] }
  | { readonly eoq: { readonly time: number; readonly change_id?: number } }
  | { readonly error: string }

export type WireChangeType = 'insert' | 'update' | 'delete'

/**
 * NDJSON lines of the subscription routes: the query events (`row` carries the subscription's
 * stable row id, `eoq` the change id the initial rows stand at), then
 * `change: [type, rowid, cells, change_id]`.
 */
export type WireSubscriptionEvent =
  | WireQueryEvent
  | {
      readonly change: readonly [WireChangeType, number, readonly WireCell[], number]
    }

/** NDJSON lines of `POST /v1/updates/:table`: the primary key of each changed row. */
export type WireNotifyEvent =
  | { readonly notify: readonly ['update' | 'delete', readonly WireCell[]] }
  | { readonly error: string }
