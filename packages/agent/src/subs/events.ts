/**
 * The NDJSON lines of subscription and update streams, in Corrosion's exact shapes. Row values
 * are kept as their JSON text (json.ts `encodeRow`: exact integers, reals with a decimal point,
 * blobs as byte arrays), so an event is assembled without re-encoding anything.
 */
import { encodeValue } from '../api/json.ts'

export type ChangeKind = 'insert' | 'update' | 'delete'

/** Change kinds as stored in the subscriptions database. */
export const KIND_CODES: Record<ChangeKind, number> = { insert: 0, update: 1, delete: 2 }
export const KIND_NAMES: readonly ChangeKind[] = ['insert', 'update', 'delete']

export function columnsLine(columns: readonly string[]): string {
  return `${JSON.stringify({ columns })}\n`
}

export function rowLine(rowid: number | bigint, valuesJson: string): string {
  return `{"row":[${rowid},${valuesJson}]}\n`
}

export function eoqLine(timeS: number, changeId: number): string {
  return `{"eoq":{"time":${encodeValue(timeS)},"change_id":${changeId}}}\n`
}

export function changeLine(
  kind: ChangeKind,
  rowid: number | bigint,
  valuesJson: string,
  changeId: number,
): string {
  return `{"change":["${kind}",${rowid},${valuesJson},${changeId}]}\n`
}

export function errorLine(message: string): string {
  return `${JSON.stringify({ error: message })}\n`
}

/** `{"notify":["update"|"delete",[pk...]]}`: inserts are reported as updates, as Corrosion does. */
export function notifyLine(deleted: boolean, pkJson: string): string {
  return `{"notify":["${deleted ? 'delete' : 'update'}",${pkJson}]}\n`
}
