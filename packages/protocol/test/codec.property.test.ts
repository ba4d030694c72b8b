/**
 * Goal: the wire codec is lossless: every SQL value and every NDJSON event, encoded then decoded,
 * comes back the same (1 and 1.0 apart, integers exact to 64 bits, blobs as bytes, any string,
 * an own "__proto__" key); JSON text survives a parse and a write; the line splitter gives the
 * same lines whatever the chunk boundaries (even inside a UTF-8 character).
 *
 * Method: fast-check properties over generated values, events, JSON texts and chunkings (the
 * seed is printed on failure; replay with fc's `seed`).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  decodeEvent,
  decodeValue,
  encodeEvent,
  encodeValue,
  JSON_DEPTH_MAX,
  LineSplitter,
  parseJson,
  writeJson,
  writeTyped,
  type JsonValue,
  type SqlValue,
  type WireEvent,
} from '../src/index.ts'

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

const text = fc.oneof(
  fc.string({ unit: 'binary' }),
  fc.constantFrom('__bigint__7', '"__bigint__-1"', '__proto__', '1', '1.0', ''),
)
const real = fc.double({ noNaN: true, noDefaultInfinity: true })
const value: fc.Arbitrary<SqlValue> = fc.oneof(
  fc.constant(null),
  fc.bigInt({ min: INT64_MIN, max: INT64_MAX }),
  fc.constantFrom(0n, 1n, -1n, 2n ** 53n + 1n, INT64_MAX, INT64_MIN),
  real,
  fc.constantFrom(0, -0, 1, 1e21, 5e-324, Number.MAX_VALUE),
  text,
  fc.uint8Array({ maxLength: 40 }),
)
const cells = fc.array(value, { maxLength: 6 })
const id = fc.nat({ max: Number.MAX_SAFE_INTEGER })
const code = fc.option(fc.constantFrom('SQL_ERROR', 'AGENT_CLOSING', 'SOMETHING_NEW'), {
  nil: null,
})

const event: fc.Arbitrary<WireEvent> = fc.oneof(
  fc.record({ type: fc.constant('columns' as const), columns: fc.array(text, { maxLength: 5 }) }),
  fc.record({ type: fc.constant('row' as const), rowid: id, cells }),
  fc.record({
    type: fc.constant('eoq' as const),
    time: fc.double({ min: 0, noNaN: true, noDefaultInfinity: true }),
    changeId: fc.option(id, { nil: null }),
  }),
  fc.record({
    type: fc.constant('change' as const),
    changeType: fc.constantFrom('insert' as const, 'update' as const, 'delete' as const),
    rowid: id,
    cells,
    changeId: id,
  }),
  fc.record({
    type: fc.constant('notify' as const),
    notifyType: fc.constantFrom('update' as const, 'delete' as const),
    pk: cells,
  }),
  fc.record({ type: fc.constant('error' as const), error: text, code }),
)

/** Typed JSON as parseJson(_, 'bigint') gives it: bigint for integers, number for reals. */
const typedJson: fc.Arbitrary<JsonValue> = fc.letrec<{ v: JsonValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.bigInt(),
    real,
    text,
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(text, tie('v'), { maxKeys: 4 }),
  ),
})).v

/** Object.is for numbers (-0), bytes by content, the rest structurally. */
function same(a: unknown, b: unknown): boolean {
  if (typeof a === 'number' && typeof b === 'number') return Object.is(a, b)
  if (a instanceof Uint8Array && b instanceof Uint8Array) {
    return a.length === b.length && a.every((x, i) => x === b[i])
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => same(x, b[i]))
  }
  if (typeof a === 'object' && typeof b === 'object' && a !== null && b !== null) {
    const ka = Object.keys(a)
    const kb = Object.keys(b)
    return (
      ka.length === kb.length &&
      ka.every(
        (k) =>
          Object.hasOwn(b, k) &&
          same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]),
      )
    )
  }
  return a === b
}

describe('protocol - lossless codec', () => {
  it('protocol - every value survives encode then decode (mode bigint)', () => {
    fc.assert(
      fc.property(value, (v) => {
        const back = decodeValue(parseJson(encodeValue(v), 'bigint'), 'v')
        assert.ok(same(back, v), `${encodeValue(v)} -> ${String(back)}`)
      }),
    )
  })

  it('protocol - mode auto gives safe integers as numbers, the rest unchanged', () => {
    fc.assert(
      fc.property(value, (v) => {
        const back = decodeValue(parseJson(encodeValue(v), 'auto'), 'v')
        const safe =
          typeof v === 'bigint' &&
          v >= BigInt(Number.MIN_SAFE_INTEGER) &&
          v <= BigInt(Number.MAX_SAFE_INTEGER)
        assert.ok(same(back, safe ? Number(v) : v), `${encodeValue(v)} -> ${String(back)}`)
      }),
    )
  })

  it('protocol - a REAL keeps a decimal point or an exponent, an INTEGER has neither', () => {
    fc.assert(
      fc.property(real, fc.bigInt({ min: INT64_MIN, max: INT64_MAX }), (r, i) => {
        assert.match(encodeValue(r), /[.eE]/)
        assert.match(encodeValue(i), /^-?\d+$/)
      }),
    )
    assert.equal(encodeValue(Number.NaN), 'null')
    assert.equal(encodeValue(Number.NEGATIVE_INFINITY), 'null')
  })

  it('protocol - every event survives encode then decode', () => {
    fc.assert(
      fc.property(event, (e) => {
        const line = encodeEvent(e)
        assert.ok(line.endsWith('\n') && !line.slice(0, -1).includes('\n'), line)
        const back = decodeEvent(line, 'bigint')
        assert.ok(
          same(back, e),
          `${line} -> ${JSON.stringify(back, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x))}`,
        )
        // Decoding is exact, so encoding the decoded event gives the same bytes.
        assert.equal(encodeEvent(back), line)
      }),
    )
  })

  it('protocol - typed JSON survives writeTyped then parseJson', () => {
    fc.assert(
      fc.property(typedJson, (v) => {
        const back = parseJson(writeTyped(v), 'bigint')
        assert.ok(same(back, v), writeTyped(v))
      }),
    )
  })

  it('protocol - writeJson writes what JSON.stringify writes, and bigints exactly', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        assert.equal(writeJson(v), JSON.stringify(v))
      }),
    )
    fc.assert(
      fc.property(fc.bigInt(), text, (n, s) => {
        assert.equal(writeJson({ n, s: [s] }), `{"n":${n},"s":[${JSON.stringify(s)}]}`)
      }),
    )
  })

  it('protocol - parseJson agrees with JSON.parse on any JSON text', () => {
    fc.assert(
      fc.property(fc.json(), (t) => {
        const expected: unknown = JSON.parse(t)
        // Integers beyond 2^53 are exact here and rounded by JSON.parse: compare them rounded.
        const rounded: unknown = JSON.parse(writeJson(parseJson(t, 'auto')))
        assert.ok(same(rounded, expected), t)
        // Mode bigint: the same, with integers as bigint.
        const big = parseJson(t, 'bigint')
        assert.equal(writeJson(big), writeJson(parseJson(t, 'auto')))
      }),
    )
  })

  it('protocol - parseJson refuses what JSON.parse refuses', () => {
    for (const bad of [
      '',
      '[',
      '{"a":1,}',
      '[1,]',
      '01',
      '"\u0001"',
      '"\\x"',
      'nul',
      '1 2',
      '{1:2}',
    ]) {
      assert.throws(() => JSON.parse(bad), SyntaxError, bad)
      assert.throws(() => parseJson(bad, 'bigint'), SyntaxError, bad)
    }
  })

  it('protocol - the line splitter gives the same lines whatever the chunks', () => {
    const lines = fc.array(
      fc
        .string({ unit: 'grapheme', minLength: 1 })
        .filter((s) => s.trim() === s && !s.includes('\n')),
      { maxLength: 8 },
    )
    fc.assert(
      fc.property(lines, fc.array(fc.nat(), { maxLength: 10 }), (ls, cuts) => {
        const bytes = new TextEncoder().encode(ls.map((l) => `${l}\n`).join(''))
        const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
        const splitter = new LineSplitter()
        const got: string[] = []
        let from = 0
        for (const to of [...at, bytes.length]) {
          got.push(...splitter.push(bytes.subarray(from, to)))
          from = to
        }
        assert.equal(splitter.end(), '')
        assert.deepEqual(got, ls)
      }),
    )
  })
})

describe('protocol - parser limits', () => {
  it('protocol - nesting up to JSON_DEPTH_MAX parses, deeper is a SyntaxError', () => {
    const nested = (n: number): string => `${'['.repeat(n)}${']'.repeat(n)}`
    assert.equal(writeJson(parseJson(nested(JSON_DEPTH_MAX), 'bigint')).length, 2 * JSON_DEPTH_MAX)
    assert.throws(() => parseJson(nested(JSON_DEPTH_MAX + 1), 'bigint'), /nested deeper/)
    assert.throws(
      () =>
        parseJson(`[${'{"a":'.repeat(JSON_DEPTH_MAX)}1${'}'.repeat(JSON_DEPTH_MAX)}]`, 'bigint'),
      /nested deeper/,
    )
  })
})
