/**
 * SQLite values in and out of JSON text, without losing their type.
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
import { InvalidStatementError, ProtocolError } from './errors.ts'

/** A value SQLite stores, as the client gives it back. */
export type SqlValue = null | number | bigint | string | Uint8Array

/** A row keyed by column name. */
export type Row = Record<string, SqlValue>

/** How INTEGER values decode: `auto` (number when safe, bigint beyond) or always `bigint`. */
export type IntegerMode = 'auto' | 'bigint'

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
  const s = String(n)
  return /[.eE]/.test(s) ? s : `${s}.0`
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

/** A value parsed from JSON text, integers as number/bigint per the mode. */
export type JsonValue =
  null | boolean | number | bigint | string | JsonValue[] | { [key: string]: JsonValue }

/** Matches any run of 16+ digits: only such a number can be an integer beyond 2^53. */
const LONG_DIGITS = /\d{16}/
const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y
const WHITESPACE = /[ \t\n\r]*/y

class Parser {
  pos = 0
  readonly text: string
  readonly bigints: boolean

  constructor(text: string, bigints: boolean) {
    this.text = text
    this.bigints = bigints
  }

  fail(what: string): never {
    throw new SyntaxError(`${what} at position ${this.pos}`)
  }

  skip(): void {
    WHITESPACE.lastIndex = this.pos
    WHITESPACE.exec(this.text)
    this.pos = WHITESPACE.lastIndex
  }

  value(): JsonValue {
    this.skip()
    const c = this.text[this.pos]
    if (c === '{') return this.object()
    if (c === '[') return this.array()
    if (c === '"') return this.string()
    if (c === 't') return this.literal('true', true)
    if (c === 'f') return this.literal('false', false)
    if (c === 'n') return this.literal('null', null)
    return this.number()
  }

  literal<T>(word: string, v: T): T {
    if (!this.text.startsWith(word, this.pos)) this.fail('unexpected token')
    this.pos += word.length
    return v
  }

  number(): number | bigint {
    NUMBER.lastIndex = this.pos
    const m = NUMBER.exec(this.text)
    if (m === null) this.fail('unexpected token')
    this.pos = NUMBER.lastIndex
    const token = m[0]
    if (m[1] !== undefined || m[2] !== undefined) return Number(token)
    if (this.bigints) return BigInt(token)
    const n = Number(token)
    return Number.isSafeInteger(n) ? n : BigInt(token)
  }

  string(): string {
    const start = this.pos
    let i = start + 1
    let escaped = false
    for (;;) {
      const c = this.text.charCodeAt(i)
      if (Number.isNaN(c)) this.fail('unterminated string')
      if (c === 0x5c) {
        escaped = true
        i += 2
        continue
      }
      if (c === 0x22) break
      i++
    }
    this.pos = i + 1
    const raw = this.text.slice(start, i + 1)
    return escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1)
  }

  array(): JsonValue[] {
    this.pos++
    const out: JsonValue[] = []
    this.skip()
    if (this.text[this.pos] === ']') {
      this.pos++
      return out
    }
    for (;;) {
      out.push(this.value())
      this.skip()
      const c = this.text[this.pos++]
      if (c === ']') return out
      if (c !== ',') this.fail('expected , or ]')
    }
  }

  object(): { [key: string]: JsonValue } {
    this.pos++
    const out: { [key: string]: JsonValue } = {}
    this.skip()
    if (this.text[this.pos] === '}') {
      this.pos++
      return out
    }
    for (;;) {
      this.skip()
      if (this.text[this.pos] !== '"') this.fail('expected a string key')
      const key = this.string()
      this.skip()
      if (this.text[this.pos++] !== ':') this.fail('expected :')
      const v = this.value()
      // Own data property even for "__proto__", as JSON.parse does.
      Object.defineProperty(out, key, {
        value: v,
        enumerable: true,
        writable: true,
        configurable: true,
      })
      this.skip()
      const c = this.text[this.pos++]
      if (c === '}') return out
      if (c !== ',') this.fail('expected , or }')
    }
  }
}

/**
 * Parses JSON text keeping integers exact: `integers: 'auto'` gives a bigint only for an integer
 * beyond 2^53, `'bigint'` for every integer. Lines with no run of 16 digits take `JSON.parse`
 * (nothing in them can exceed 2^53), so the common case costs what JSON.parse costs.
 */
export function parseJson(text: string, integers: IntegerMode = 'auto'): JsonValue {
  if (integers === 'auto' && !LONG_DIGITS.test(text)) return JSON.parse(text) as JsonValue
  const p = new Parser(text, integers === 'bigint')
  const v = p.value()
  p.skip()
  if (p.pos !== text.length) p.fail('unexpected text after the value')
  return v
}

/** A cell from the wire as the value the caller gets (rules in this file's header). */
export function decodeCell(v: JsonValue, where: string): SqlValue {
  if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint') {
    return v
  }
  if (Array.isArray(v)) {
    const bytes = new Uint8Array(v.length)
    for (let i = 0; i < v.length; i++) {
      const b = v[i]
      const n = typeof b === 'bigint' ? Number(b) : b
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 255) {
        throw new ProtocolError(`${where}: a blob must be an array of bytes 0..255`)
      }
      bytes[i] = n
    }
    return bytes
  }
  throw new ProtocolError(`${where}: ${typeof v} is not a SQL value`)
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
