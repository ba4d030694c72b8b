/**
 * JSON text that keeps SQLite's types, for the agent and its clients alike.
 *
 * Parsing (`parseJson`):
 *   1. A number written without fraction or exponent is an INTEGER: a `bigint` (mode `bigint`),
 *      or in mode `auto` a `number` when it is a safe integer and a `bigint` beyond 2^53.
 *   2. A number with a fraction or an exponent is a REAL: a `number`.
 *   3. Strings, booleans, null, arrays and objects as `JSON.parse` gives them (an own
 *      `"__proto__"` key included). The parser is a tokenizer of its own: it never rewrites the
 *      text, so no user string can be mistaken for a number.
 *
 * Writing:
 *   - `writeJson`: plain JSON for response bodies; a `bigint` is written exactly, a `number` as
 *     `JSON.stringify` writes it (counts and seconds: `1`, `0.25`).
 *   - `writeTyped`: JSON for SQL values; a `bigint` is an INTEGER, a `number` a REAL that keeps
 *     its decimal point (`1.0`), so `parseJson(writeTyped(v), 'bigint')` gives `v` back.
 */

/** A value parsed from JSON text; integers as `number` or `bigint` per the mode. */
export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | JsonObject
export interface JsonObject {
  [key: string]: JsonValue
}

/** How INTEGER values parse: `bigint` always, or `auto` (`number` when safe, `bigint` beyond). */
export type IntegerMode = 'auto' | 'bigint'

/** Only a run of 16+ digits can be an integer beyond 2^53 (`Number.MAX_SAFE_INTEGER` has 16). */
const LONG_DIGITS = /\d{16}/
const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y
const WHITESPACE = /[ \t\n\r]*/y

/** Arrays and objects nested deeper than this are refused (the parser recurses per level). */
export const JSON_DEPTH_MAX = 1000

class Parser {
  pos = 0
  depth = 0
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
    if (c === undefined) this.fail('unexpected end of JSON')
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
      if (Number.isNaN(c)) {
        this.pos = i
        this.fail('unterminated string')
      }
      if (c === 0x5c) {
        escaped = true
        i += 2
        continue
      }
      if (c === 0x22) break
      if (c < 0x20) {
        this.pos = i
        this.fail('control character in a string')
      }
      i++
    }
    this.pos = i + 1
    const raw = this.text.slice(start, i + 1)
    // JSON.parse of the string token alone checks its escapes.
    return escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1)
  }

  nest(): void {
    if (++this.depth > JSON_DEPTH_MAX) this.fail(`nested deeper than ${JSON_DEPTH_MAX} levels`)
  }

  array(): JsonValue[] {
    this.pos++
    this.nest()
    const out: JsonValue[] = []
    this.skip()
    if (this.text[this.pos] === ']') {
      this.pos++
      this.depth--
      return out
    }
    for (;;) {
      out.push(this.value())
      this.skip()
      const c = this.text[this.pos++]
      if (c === ']') {
        this.depth--
        return out
      }
      if (c !== ',') this.fail('expected , or ]')
    }
  }

  object(): JsonObject {
    this.pos++
    this.nest()
    const out: JsonObject = {}
    this.skip()
    if (this.text[this.pos] === '}') {
      this.pos++
      this.depth--
      return out
    }
    for (;;) {
      this.skip()
      if (this.text[this.pos] !== '"') this.fail('expected a string key')
      const key = this.string()
      this.skip()
      if (this.text[this.pos++] !== ':') this.fail('expected :')
      const v = this.value()
      // An own data property even for "__proto__", as JSON.parse makes it.
      Object.defineProperty(out, key, {
        value: v,
        enumerable: true,
        writable: true,
        configurable: true,
      })
      this.skip()
      const c = this.text[this.pos++]
      if (c === '}') {
        this.depth--
        return out
      }
      if (c !== ',') this.fail('expected , or }')
    }
  }
}

/**
 * Parses JSON text keeping every integer exact (rules in this file's header). Throws
 * SyntaxError on malformed text. In mode `auto`, text without a run of 16 digits takes
 * `JSON.parse` (nothing in it can exceed 2^53), so the common case costs what JSON.parse costs.
 */
export function parseJson(text: string, integers: IntegerMode = 'bigint'): JsonValue {
  if (integers === 'auto' && !LONG_DIGITS.test(text)) return JSON.parse(text) as JsonValue
  const p = new Parser(text, integers === 'bigint')
  const v = p.value()
  p.skip()
  if (p.pos !== text.length) p.fail('unexpected text after the value')
  return v
}

/**
 * JSON text of a REAL: always with a decimal point or an exponent (`1.0`, `1e+21`), so that a
 * reader tells it from an INTEGER. JSON has no NaN or infinities: they are written `null`, as
 * Corrosion writes them. `-0` keeps its sign (`-0.0`).
 */
export function formatReal(n: number): string {
  if (!Number.isFinite(n)) return 'null'
  // String(-0) is "0": the sign would be lost.
  if (Object.is(n, -0)) return '-0.0'
  const s = String(n)
  return /[.eE]/.test(s) ? s : `${s}.0`
}

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array
}

/**
 * Plain JSON text of a response body: a `bigint` exactly, a `number` as JSON.stringify writes
 * it, a Uint8Array as an array of bytes; `undefined` members are left out and `toJSON` is
 * honoured, as JSON.stringify does.
 */
export function writeJson(value: unknown): string {
  return write(value, false) ?? 'null'
}

/**
 * JSON text where `bigint` means INTEGER and `number` means REAL (what `parseJson` returns in
 * mode `bigint`): integers exact, reals with their decimal point.
 */
export function writeTyped(value: JsonValue): string {
  return write(value, true) ?? 'null'
}

/** The text of `v`, or undefined for what JSON.stringify leaves out (undefined, functions). */
function write(v: unknown, typed: boolean): string | undefined {
  if (v === null) return 'null'
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v)
    case 'number':
      return typed ? formatReal(v) : JSON.stringify(v)
    case 'bigint':
      return v.toString()
    case 'boolean':
      return v ? 'true' : 'false'
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined
    case 'object':
      break
  }
  if (isBytes(v)) return `[${v.join(',')}]`
  if (Array.isArray(v)) {
    return `[${v.map((x: unknown) => write(x, typed) ?? 'null').join(',')}]`
  }
  const o = v as { toJSON?: unknown }
  if (typeof o.toJSON === 'function') return write((o.toJSON as () => unknown)(), typed)
  const parts: string[] = []
  for (const [key, x] of Object.entries(v)) {
    const text = write(x, typed)
    if (text !== undefined) parts.push(`${JSON.stringify(key)}:${text}`)
  }
  return `{${parts.join(',')}}`
}
