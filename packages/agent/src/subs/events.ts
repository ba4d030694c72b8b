/**
 * The NDJSON lines of subscription and update streams: @patina/protocol's encoders (Corrosion's
 * exact shapes). Row values are kept as their JSON text (`encodeRow`: exact integers, reals with
 * a decimal point, blobs as byte arrays), so an event is assembled without re-encoding anything.
 */
import {
  changeLine as wireChangeLine,
  eoqLine as wireEoqLine,
  errorLine as wireErrorLine,
  notifyLine as wireNotifyLine,
  type ChangeType,
} from '@patina/protocol'
import { wireCode, type SubsError } from './errors.ts'

export { columnsLine, rowLine } from '@patina/protocol'

export type ChangeKind = ChangeType

/** Change kinds as stored in the subscriptions database. */
export const KIND_CODES: Record<ChangeKind, number> = { insert: 0, update: 1, delete: 2 }
export const KIND_NAMES: readonly ChangeKind[] = ['insert', 'update', 'delete']

/** The end of the initial rows, at change id `changeId`. */
export function eoqLine(timeS: number, changeId: number): string {
  return wireEoqLine(timeS, changeId)
}

export function changeLine(
  kind: ChangeKind,
  rowid: number | bigint,
  valuesJson: string,
  changeId: number,
): string {
  return wireChangeLine(kind, rowid, valuesJson, changeId)
}

/** The last line of a stream the agent ends: `{"error": message, "code": CODE}`. */
export function errorLine(reason: SubsError): string {
  return wireErrorLine(reason.message, wireCode(reason))
}

/** `{"notify":["update"|"delete",[pk...]]}`: inserts are reported as updates, as Corrosion does. */
export function notifyLine(deleted: boolean, pkJson: string): string {
  return wireNotifyLine(deleted ? 'delete' : 'update', pkJson)
}
