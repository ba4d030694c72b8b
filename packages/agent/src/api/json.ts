/**
 * JSON that keeps SQLite's types: integers of any size parse to bigint (INTEGER) and numbers
 * with a fraction or exponent to number (REAL); on the way out, bigints are written exactly and
 * reals always keep a decimal point or an exponent, so a client can tell 1 from 1.0.
 */
import { isInteger, parse } from 'lossless-json'
import type { SqlValue } from '../crdt/values.ts'

export type JsonValue = null | boolean | bigint | number | string | JsonValue[] | JsonObject
export interface JsonObject {
  [key: string]: JsonValue
}

export class JsonBodyError extends Error {
  override readonly name = 'JsonBodyError'
}

export function parseJson(text: string): JsonValue {
  try {
    return parse(text, null, (n) => (isInteger(n) ? BigInt(n) : Number(n))) as JsonValue
  } catch (err) {
    throw new JsonBodyError(`malformed JSON: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    })
  }
}

function encodeReal(n: number): string {
  // JSON has no NaN or infinities; SQLite can hold infinities. Corrosion writes them as null.
  if (!Number.isFinite(n)) return 'null'
  const s = String(n)
  return /[.eE]/.test(s) ? s : `${s}.0`
}

/** One SQLite value as JSON text: blobs as arrays of bytes, as Corrosion writes them. */
export function encodeValue(v: SqlValue): string {
  if (v === null) return 'null'
  if (typeof v === 'bigint') return v.toString()
  if (typeof v === 'number') return encodeReal(v)
  if (typeof v === 'string') return JSON.stringify(v)
  return `[${v.join(',')}]`
}

export function encodeRow(values: readonly SqlValue[]): string {
  return `[${values.map(encodeValue).join(',')}]`
}

/** JSON text for plain response objects that may hold bigints (written exactly). */
export function stringify(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    typeof v === 'bigint' ? `__bigint__${v.toString()}` : v,
  ).replace(/"__bigint__(-?\d+)"/g, '$1')
}

/**
 * JSON text for a parsed value where bigint means INTEGER and number means REAL (as parseJson
 * returns them): integers exact, reals with their decimal point, so a value survives a trip
 * through parseJson and back unchanged.
 */
export function writeTyped(v: JsonValue): string {
  if (v === null) return 'null'
  if (typeof v === 'boolean') return v ? 'true' : 'false'
  if (typeof v === 'bigint') return v.toString()
  if (typeof v === 'number') return encodeReal(v)
  if (typeof v === 'string') return JSON.stringify(v)
  if (Array.isArray(v)) return `[${v.map(writeTyped).join(',')}]`
  return `{${Object.entries(v)
    .map(([k, x]) => `${JSON.stringify(k)}:${writeTyped(x)}`)
    .join(',')}}`
}
