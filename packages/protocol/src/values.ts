/**
 * SQLite values on the wire (Corrosion's encoding), losslessly:
 *
 *   SQLite    JSON text                       decoded as
 *   INTEGER   an integer, exact to 64 bits    `bigint` (or `number` when safe, mode `auto`)
 *   REAL      a number with `.` or exponent   `number` (non-finite reals are written `null`)
 *   TEXT      a string                        `string`
 *   BLOB      an array of bytes 0..255        `Uint8Array`
 *   NULL      null                            `null`
 *
 * So `1` and `1.0` are different values, and integers beyond 2^53 keep every digit.
 */
import { formatReal, type JsonValue } from './json.ts'
import { WireFormatError } from './wire-format-error.ts'

/** One SQLite value (an INTEGER is a `bigint`, or a safe `number` in mode `auto`). */
export type SqlValue = null | number | bigint | string | Uint8Array

/** JSON text of one value: an INTEGER for a `bigint`, a REAL for a `number`. */
export function encodeValue(v: SqlValue): string {
  if (v === null) return 'null'
  if (typeof v === 'bigint') return v.toString()
  if (typeof v === 'number') return formatReal(v)
  if (typeof v === 'string') return JSON.stringify(v)
  return `[${v.join(',')}]`
}

/** JSON text of a row's (or a primary key's) values: an array of values. */
export function encodeCells(values: readonly SqlValue[]): string {
  let out = '['
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ','
    out += encodeValue(values[i] as SqlValue)
  }
  return `${out}]`
}

/** One value from parsed JSON; WireFormatError (naming `where`) if it is not a value. */
export function decodeValue(v: JsonValue | undefined, where: string): SqlValue {
  if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint') {
    return v
  }
  if (Array.isArray(v)) {
    const bytes = new Uint8Array(v.length)
    for (let i = 0; i < v.length; i++) {
      const b = v[i]
      const n = typeof b === 'bigint' ? Number(b) : b
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 255) {
        throw new WireFormatError(`${where}: a blob must be an array of bytes 0..255`)
      }
      bytes[i] = n
    }
    return bytes
  }
  throw new WireFormatError(
    `${where}: ${v === undefined ? 'nothing' : typeof v} is not a SQL value`,
  )
}

/** An array of values from parsed JSON (a row's cells, a primary key). */
export function decodeCells(v: JsonValue | undefined, where: string): SqlValue[] {
  if (!Array.isArray(v)) throw new WireFormatError(`${where}: expected an array of values`)
  return v.map((x, i) => decodeValue(x, `${where}, value ${i + 1}`))
}
