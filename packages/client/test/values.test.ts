/**
 * Goal: values and statements go out exactly as the agent reads them and come back with their
 * types (the rules in src/values.ts), and anything that cannot be sent exactly is refused
 * before sending with a message that says what to pass instead.
 *
 * Method: pure functions, no I/O: the encoder's JSON text is compared with the expected text;
 * the decoder is fed the agent's JSON text, including integers at and beyond 2^53 and 2^63.
 * A fast-check property checks that any 64-bit integer survives text -> parse exactly.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { InvalidStatementError, real } from '../src/index.ts'
import { encodeStatement, encodeStatements } from '../src/statements.ts'
import { decodeCell, encodeParam, parseJson } from '../src/values.ts'

describe('values - decoding', () => {
  it('values - integers beyond 2^53 parse to exact bigints, safe ones to numbers', () => {
    const v = parseJson(
      '{"row":[1,[9007199254740991,9007199254740993,-9223372036854775808,9223372036854775807,1.0,2.5e-7,"x",null]]}',
    )
    assert.deepEqual(v, {
      row: [
        1,
        [
          9007199254740991,
          9007199254740993n,
          -9223372036854775808n,
          9223372036854775807n,
          1,
          2.5e-7,
          'x',
          null,
        ],
      ],
    })
  })

  it("values - integers: 'bigint' keeps every INTEGER a bigint and every REAL a number", () => {
    assert.deepEqual(parseJson('[1,1.0,-0,12345678901234567890.5,1e3]', 'bigint'), [
      1n,
      1,
      0n,
      Number('12345678901234567890.5'),
      1000,
    ])
  })

  it('values - the slow path parses strings, escapes, nesting and whitespace like JSON.parse', () => {
    const text =
      ' { "a\\"b" : [ "\\u00e9\\n" , true , false , null , { } , [ ] ] , "n" : 1234567890123456789 } '
    assert.deepEqual(parseJson(text), {
      'a"b': ['é\n', true, false, null, {}, []],
      n: 1234567890123456789n,
    })
    assert.throws(() => parseJson('[1234567890123456789,'), SyntaxError)
    assert.throws(() => parseJson('[1234567890123456789] x'), SyntaxError)
  })

  it('values - blobs decode to Uint8Array; anything else that is not a byte is refused', () => {
    assert.deepEqual(decodeCell([0, 255, 16], 'c'), new Uint8Array([0, 255, 16]))
    assert.deepEqual(decodeCell([1n, 2n], 'c'), new Uint8Array([1, 2]))
    assert.throws(() => decodeCell([256], 'c'), /array of bytes/)
  })

  it('values - any 64-bit integer survives its JSON text exactly', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (n) => {
        const v = parseJson(`[${encodeParam(n, 'p')}]`) as unknown[]
        const got = v[0]
        assert.equal(typeof got === 'number' ? BigInt(got) : got, n)
        const safe = n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER)
        assert.equal(typeof got, safe ? 'number' : 'bigint')
      }),
    )
  })
})

describe('values - encoding', () => {
  it('values - each type is written as the agent binds it', () => {
    assert.equal(encodeParam(9223372036854775807n, 'p'), '9223372036854775807')
    assert.equal(encodeParam(42, 'p'), '42')
    assert.equal(encodeParam(-0, 'p'), '0')
    assert.equal(encodeParam(1.5, 'p'), '1.5')
    assert.equal(encodeParam(1e300, 'p'), '1e+300')
    assert.equal(encodeParam(real(1), 'p'), '1.0')
    assert.equal(encodeParam(real(1e21), 'p'), '1e+21')
    assert.equal(encodeParam('a"b', 'p'), '"a\\"b"')
    assert.equal(encodeParam(true, 'p'), 'true')
    assert.equal(encodeParam(null, 'p'), 'null')
    assert.equal(encodeParam(new Uint8Array([0, 255]), 'p'), '[0,255]')
    assert.equal(encodeParam(new Uint8Array([7, 8]).buffer, 'p'), '[7,8]')
  })

  it('values - values that cannot be sent exactly are refused with what to do instead', () => {
    const cases: [unknown, RegExp][] = [
      [undefined, /undefined is not a SQL value; use null/],
      [Number.NaN, /NaN cannot be sent/],
      [Number.POSITIVE_INFINITY, /Infinity cannot be sent/],
      [2 ** 60, /pass a bigint/],
      [-(2 ** 53), /pass a bigint/],
      [2n ** 63n, /does not fit in SQLite's 64-bit INTEGER/],
      [{ a: 1 }, /JSON.stringify/],
      [[1, 2], /an array is not a SQL value/],
      [new Date(0), /toISOString/],
      [Symbol('s'), /symbol is not a SQL value/],
    ]
    for (const [value, message] of cases) {
      assert.throws(
        () => encodeParam(value, 'statement 1, parameter 2'),
        (err: unknown) =>
          err instanceof InvalidStatementError &&
          err.message.startsWith('statement 1, parameter 2: ') &&
          message.test(err.message),
      )
    }
  })

  it('statements - the forms are written as the agent reads them ([SQL] as plain SQL)', () => {
    assert.equal(encodeStatement('SELECT 1'), '"SELECT 1"')
    assert.equal(encodeStatement(['SELECT 1']), '"SELECT 1"')
    assert.equal(encodeStatement(['SELECT ?', [1n, 'a']]), '["SELECT ?",[1,"a"]]')
    assert.equal(encodeStatement(['SELECT :a', { ':a': real(2) }]), '["SELECT :a",{":a":2.0}]')
    assert.equal(
      encodeStatement({ query: 'SELECT ?', params: [null] }),
      '{"query":"SELECT ?","params":[null]}',
    )
    assert.equal(
      encodeStatement({ query: 'SELECT :a', named_params: { a: 1 }, params: null }),
      '{"query":"SELECT :a","named_params":{"a":1}}',
    )
    assert.equal(encodeStatements(['A', ['B', []]]), '["A",["B",[]]]')
  })

  it('statements - wrong shapes are refused, naming the statement and the problem', () => {
    const cases: [unknown, RegExp][] = [
      [[], /at least one statement/],
      ['SELECT 1', /takes an array of statements/],
      [[42], /statement 1: a statement is/],
      [
        ['ok', []],
        /statement 2: expected \['SQL'\] or \['SQL', params\], an array of 1 or 2 elements/,
      ],
      [[['SELECT ?', [1], 2]], /statement 1: .* 1 or 2 elements \(got 3\)/],
      [[['  ', []]], /statement 1: the SQL is empty/],
      [[['SELECT ?', 1]], /params must be an array or a plain object/],
      [[{ query: 'x', params: [], named_params: {} }], /not both/],
      [[{ sql: 'x' }], /unknown field "sql"/],
      [[['SELECT ?', [undefined]]], /statement 1, parameter 1: undefined/],
      [[['SELECT :a', { a: undefined }]], /statement 1, parameter a: undefined/],
    ]
    for (const [statements, message] of cases) {
      assert.throws(
        () => encodeStatements(statements),
        (err: unknown) => err instanceof InvalidStatementError && message.test(err.message),
        String(message),
      )
    }
  })
})
