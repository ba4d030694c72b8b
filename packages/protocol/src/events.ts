/**
 * The NDJSON events of the streaming routes, one JSON object per line, in Corrosion's shapes:
 *
 *   POST /v1/queries                  columns, row*, eoq {time}            | error
 *   POST /v1/subscriptions, GET ../:id columns, row*, eoq {time, change_id}, change* | error
 *   POST /v1/updates/:table           notify*                              | error
 *
 *   {"columns":["id","v"]}
 *   {"row":[rowid,[values]]}              rowid: 1-based position (queries), stable id (subscriptions)
 *   {"eoq":{"time":0.001,"change_id":3}}  change_id only on subscriptions
 *   {"change":["insert"|"update"|"delete",rowid,[values],change_id]}
 *   {"notify":["update"|"delete",[pk values]]}
 *   {"error":"message","code":"CODE"}     the last line of a stream that fails (errors.ts)
 *
 * Values are encoded by values.ts. The line functions take a row's values already encoded
 * (`encodeCells`), so the agent encodes a row once for every listener; `encodeEvent` takes a
 * decoded event. `decodeEvent` is their inverse: `decodeEvent(encodeEvent(e), 'bigint')` is `e`.
 */
import { formatReal, parseJson, type IntegerMode, type JsonObject, type JsonValue } from './json.ts'
import { decodeCells, encodeCells, type SqlValue } from './values.ts'
import { WireFormatError } from './wire-format-error.ts'

export type ChangeType = 'insert' | 'update' | 'delete'
/** `update` for an insert or an update (as Corrosion reports both), `delete` for a delete. */
export type NotifyType = 'update' | 'delete'

export interface ColumnsEvent {
  readonly type: 'columns'
  readonly columns: readonly string[]
}
export interface RowEvent {
  readonly type: 'row'
  readonly rowid: number
  readonly cells: readonly SqlValue[]
}
export interface EoqEvent {
  readonly type: 'eoq'
  /** Seconds the initial rows took. */
  readonly time: number
  /** The change id the initial rows stand at (subscriptions); null for a query. */
  readonly changeId: number | null
}
export interface ChangeEvent {
  readonly type: 'change'
  readonly changeType: ChangeType
  readonly rowid: number
  readonly cells: readonly SqlValue[]
  readonly changeId: number
}
export interface NotifyEvent {
  readonly type: 'notify'
  readonly notifyType: NotifyType
  readonly pk: readonly SqlValue[]
}
export interface ErrorEvent {
  readonly type: 'error'
  readonly error: string
  /** The agent's code (errors.ts); null when it sent none (Corrosion). */
  readonly code: string | null
}

export type QueryEvent = ColumnsEvent | RowEvent | EoqEvent | ErrorEvent
export type SubscriptionEvent = QueryEvent | ChangeEvent
export type UpdateEvent = NotifyEvent | ErrorEvent
/** Any event of any stream. */
export type WireEvent = SubscriptionEvent | NotifyEvent

export function columnsLine(columns: readonly string[]): string {
  return `${JSON.stringify({ columns })}\n`
}

/** `cellsJson`: the row's values as `encodeCells` writes them. */
export function rowLine(rowid: number | bigint, cellsJson: string): string {
  return `{"row":[${rowid},${cellsJson}]}\n`
}

/** `changeId`: a subscription's (written as `change_id`); null for a query (not written). */
export function eoqLine(timeS: number, changeId: number | null): string {
  const time = formatReal(timeS)
  return changeId === null
    ? `{"eoq":{"time":${time}}}\n`
    : `{"eoq":{"time":${time},"change_id":${changeId}}}\n`
}

export function changeLine(
  changeType: ChangeType,
  rowid: number | bigint,
  cellsJson: string,
  changeId: number,
): string {
  return `{"change":["${changeType}",${rowid},${cellsJson},${changeId}]}\n`
}

/** `pkJson`: the primary key's values as `encodeCells` writes them. */
export function notifyLine(notifyType: NotifyType, pkJson: string): string {
  return `{"notify":["${notifyType}",${pkJson}]}\n`
}

/** `{"error": message, "code": code}`; without `code` when it is null. */
export function errorLine(message: string, code: string | null): string {
  return `${JSON.stringify(code === null ? { error: message } : { error: message, code })}\n`
}

/** The line of one event (with its newline). */
export function encodeEvent(e: WireEvent): string {
  switch (e.type) {
    case 'columns':
      return columnsLine(e.columns)
    case 'row':
      return rowLine(e.rowid, encodeCells(e.cells))
    case 'eoq':
      return eoqLine(e.time, e.changeId)
    case 'change':
      return changeLine(e.changeType, e.rowid, encodeCells(e.cells), e.changeId)
    case 'notify':
      return notifyLine(e.notifyType, encodeCells(e.pk))
    case 'error':
      return errorLine(e.error, e.code)
  }
}

function describe(v: JsonValue | undefined): string {
  if (v === undefined) return 'nothing'
  const text = JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x))
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}

/** A row id or change id: an integer in 0..2^53. */
function count(v: JsonValue | undefined, what: string): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v
  if (typeof v === 'bigint' && v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v)
  throw new WireFormatError(`${what} is not an integer below 2^53: ${describe(v)}`)
}

function seconds(v: JsonValue | undefined): number {
  if (typeof v === 'number' && v >= 0) return v
  if (typeof v === 'bigint' && v >= 0n) return Number(v)
  throw new WireFormatError(`"eoq" time is not a number of seconds: ${describe(v)}`)
}

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

const KEYS = ['columns', 'row', 'eoq', 'change', 'notify', 'error'] as const

/**
 * One line of any stream as its event (the line without or with its newline). Throws
 * WireFormatError when the line is not JSON, not an object, or not one of the shapes above.
 * Integers in values decode per `integers`; ids and counts are always numbers.
 */
export function decodeEvent(line: string, integers: IntegerMode): WireEvent {
  let v: JsonValue
  try {
    v = parseJson(line, integers)
  } catch (err) {
    throw new WireFormatError(`a line that is not JSON: ${line.slice(0, 200)}`, { cause: err })
  }
  if (!isObject(v)) {
    throw new WireFormatError(`a line that is not a JSON object: ${line.slice(0, 200)}`)
  }
  const key = KEYS.find((k) => Object.hasOwn(v, k))
  switch (key) {
    case 'columns': {
      const c = v.columns
      if (!Array.isArray(c) || !c.every((x) => typeof x === 'string')) {
        throw new WireFormatError('"columns" that is not an array of names')
      }
      return { type: 'columns', columns: c }
    }
    case 'row': {
      const r = v.row
      if (!Array.isArray(r) || r.length !== 2) {
        throw new WireFormatError('a "row" that is not [rowid, cells]')
      }
      return { type: 'row', rowid: count(r[0], 'row id'), cells: decodeCells(r[1], 'row') }
    }
    case 'eoq': {
      const e = v.eoq
      if (!isObject(e)) throw new WireFormatError('an "eoq" that is not an object')
      const changeId =
        e.change_id === undefined || e.change_id === null ? null : count(e.change_id, 'change id')
      return { type: 'eoq', time: seconds(e.time ?? 0), changeId }
    }
    case 'change': {
      const c = v.change
      if (!Array.isArray(c) || c.length !== 4) {
        throw new WireFormatError('a "change" that is not [type, rowid, cells, change_id]')
      }
      const [type, rowid, cells, changeId] = c
      if (type !== 'insert' && type !== 'update' && type !== 'delete') {
        throw new WireFormatError(`a change of unknown type ${describe(type)}`)
      }
      return {
        type: 'change',
        changeType: type,
        rowid: count(rowid, 'row id'),
        cells: decodeCells(cells, 'change'),
        changeId: count(changeId, 'change id'),
      }
    }
    case 'notify': {
      const n = v.notify
      if (!Array.isArray(n) || n.length !== 2 || (n[0] !== 'update' && n[0] !== 'delete')) {
        throw new WireFormatError('a "notify" that is not ["update"|"delete", [pk]]')
      }
      return { type: 'notify', notifyType: n[0], pk: decodeCells(n[1], 'primary key') }
    }
    case 'error': {
      const message = typeof v.error === 'string' ? v.error : describe(v.error)
      return { type: 'error', error: message, code: typeof v.code === 'string' ? v.code : null }
    }
    case undefined:
      throw new WireFormatError(`an unknown event: ${Object.keys(v).join(', ')}`)
  }
}
