/**
 * SQLite values in and out of JSON text, without losing their type (the codec is
 * @patina/protocol's; this file adds the client's rules for parameters).
 *
 * Decoding (what rows hold), with `integers: 'auto'` (the default):
 *   1. INTEGER -> `number` when it is a safe integer (|n| <= 2^53 - 1, `Number.MAX_SAFE_INTEGER`),
 *      `bigint` otherwise, always exact. With `integers: 'bigint'` every INTEGER is a `bigint`,
 *      so `1` (INTEGER, `1n`) and `1.0` (REAL, `1`) stay apart.
 *   2. REAL -> `number`.
 *   3. TEXT -> `string`.
 *   4. BLOB (an array of bytes on the wire) -> `Uint8Array`.
 *   5. NULL -> `null`.
 *
 * Encoding (parameters): `bigint` is written exactly (it must fit in 64 bits); a `number` that
 * is a safe integer is written as an integer and binds as INTEGER (an integral number from 2^53
 * up to 1e21 is refused: it may have lost precision already; pass a bigint), any other finite
 * number as REAL;
 * `real(x)` forces REAL (`real(1)` is written `1.0`); `Uint8Array` and `ArrayBuffer` become
 * arrays of bytes (BLOB); `boolean` binds as 1/0; `string` and `null` as themselves. Anything
 * else is refused before sending, with a message that says what to pass instead.
 */
import {
  decodeValue,
  formatReal,
  parseJson as parseWire,
  type IntegerMode,
  type JsonValue,
  type SqlValue,
} from '@patina/protocol'
import { InvalidStatementError, ProtocolError } from './errors.ts'

/** A value SQLite stores, as the client gives it back. */
export type { SqlValue }

/** A row keyed by column name. */
export type Row = Record<string, SqlValue>

/** A number that must bind as REAL even when it has no fraction: `real(1)` is sent as `1.0`. */
export class Real {
  readonly value: number
  constructor(value: number) {
    this.value = value
  }
}

/** `real(1)`: the REAL 1.0, not the INTEGER 1. */
export function real(value: number): Real {
  return new Real(value)
}

/** A parameter value the client can send. */
export type ParamValue = SqlValue | boolean | Real | ArrayBuffer

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

/** JSON text of a REAL: always with a decimal point or an exponent. */
function realText(n: number, where: string): string {
  if (!Number.isFinite(n)) {
    throw new InvalidStatementError(
      `${where}: ${String(n)} cannot be sent (JSON has no NaN or infinities)`,
    )
  }
  return formatReal(n)
}

function bytesText(bytes: Uint8Array): string {
  return `[${bytes.join(',')}]`
}

function describe(v: unknown): string {
  if (v === undefined) return 'undefined'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'object' && v !== null) {
    const ctor = (v as { constructor?: { name?: string } }).constructor
    return `an object (${ctor?.name ?? 'no prototype'})`
  }
  return typeof v
}

/** JSON text of one parameter value; throws InvalidStatementError naming `where`. */
export function encodeParam(v: unknown, where: string): string {
  if (v === null) return 'null'
  if (typeof v === 'string') return JSON.stringify(v)
  if (typeof v === 'boolean') return v ? 'true' : 'false'
  if (typeof v === 'bigint') {
    if (v < INT64_MIN || v > INT64_MAX) {
      throw new InvalidStatementError(
        `${where}: ${v.toString()} does not fit in SQLite's 64-bit INTEGER`,
      )
    }
    return v.toString()
  }
  if (typeof v === 'number') {
    // From 1e21 on, String() writes an exponent, so the agent binds a REAL: no ambiguity.
    if (Number.isInteger(v) && Math.abs(v) < 1e21) {
      if (!Number.isSafeInteger(v)) {
        throw new InvalidStatementError(
          `${where}: the number ${String(v)} is beyond 2^53 and may already have lost precision; ` +
            'pass a bigint for a 64-bit INTEGER, or real(x) for a REAL',
        )
      }
      return Object.is(v, -0) ? '0' : String(v)
    }
    return realText(v, where)
  }
  if (v instanceof Real) return realText(v.value, where)
  if (v instanceof Uint8Array) return bytesText(v)
  if (v instanceof ArrayBuffer) return bytesText(new Uint8Array(v))
  if (v instanceof Date) {
    throw new InvalidStatementError(
      `${where}: a Date is not a SQL value; pass date.toISOString() (TEXT) or date.getTime() (INTEGER)`,
    )
  }
  if (v === undefined) {
    throw new InvalidStatementError(`${where}: undefined is not a SQL value; use null`)
  }
  if (typeof v === 'object') {
    throw new InvalidStatementError(
      `${where}: ${describe(v)} is not a SQL value; pass JSON.stringify(value) to bind JSON text, ` +
        'or a Uint8Array for a BLOB',
    )
  }
  throw new InvalidStatementError(`${where}: ${describe(v)} is not a SQL value`)
}

export type { IntegerMode, JsonValue }

/** Parses JSON text keeping integers exact; `auto` by default (number when safe). */
export function parseJson(text: string, integers: IntegerMode = 'auto'): JsonValue {
  return parseWire(text, integers)
}

/** A cell from the wire as the value the caller gets (rules in this file's header). */
export function decodeCell(v: JsonValue, where: string): SqlValue {
  try {
    return decodeValue(v, where)
  } catch (err) {
    throw new ProtocolError(err instanceof Error ? err.message : String(err), { cause: err })
  }
}

/** A count or id from the wire (row id, change id, version) as a number; exact or refused. */
export function toCount(v: JsonValue | undefined, where: string): number {
  if (typeof v === 'number' && Number.isInteger(v)) return v
  if (
    typeof v === 'bigint' &&
    v >= BigInt(Number.MIN_SAFE_INTEGER) &&
    v <= BigInt(Number.MAX_SAFE_INTEGER)
  ) {
    return Number(v)
  }
  throw new ProtocolError(`${where}: expected an integer below 2^53, got ${describeJson(v)}`)
}

/** A duration or other real from the wire as a number. */
export function toNumber(v: JsonValue | undefined, where: string): number {
  if (typeof v === 'number') return v
  if (typeof v === 'bigint') return Number(v)
  throw new ProtocolError(`${where}: expected a number, got ${describeJson(v)}`)
}

export function describeJson(v: JsonValue | undefined): string {
  if (v === undefined) return 'nothing'
  const text = JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x))
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}
