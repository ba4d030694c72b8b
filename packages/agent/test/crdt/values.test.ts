/**
 * Goal: compareValues, the tie-break order of the merge, orders values exactly as cr-sqlite's
 * `crsql_compare_sqlite_values` does: INTEGER > REAL > TEXT > BLOB > NULL across storage
 * classes; numbers numerically (64-bit integers exactly, beyond 2^53); TEXT by its UTF-8 bytes,
 * not by JavaScript's UTF-16 code units; BLOBs bytewise with a shorter prefix first.
 *
 * Method: hand-picked pairs for each rule (including the ones where a naive implementation gives
 * the other answer), and fast-check properties against independent oracles (bigint arithmetic,
 * Buffer.compare on the UTF-8 encoding) plus the laws of a total order.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  compareValues,
  sameValue,
  typeCode,
  TYPE_BLOB,
  TYPE_INTEGER,
  TYPE_NULL,
  TYPE_REAL,
  TYPE_TEXT,
  type SqlValue,
} from '../../src/crdt/values.ts'

const intArb = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })
const realArb = fc.double({ noNaN: true })
const textArb = fc.string({ unit: 'binary', maxLength: 12 })
const blobArb = fc.uint8Array({ maxLength: 12 })

const valueArb: fc.Arbitrary<SqlValue> = fc.oneof(
  intArb,
  fc.constantFrom(0n, 1n, -1n, 2n ** 53n, 2n ** 53n + 1n),
  realArb,
  fc.constantFrom(0, 1.0, -1.0, 2 ** 53),
  textArb,
  fc.constantFrom('', 'a', '\uFFFF', '\u{1F600}', '\u{10000}'),
  blobArb,
  fc.constant(null),
)

/** Rank of each storage class in the merge order: higher wins. */
function rank(v: SqlValue): number {
  if (v === null) return 0
  if (v instanceof Uint8Array) return 1
  if (typeof v === 'string') return 2
  if (typeof v === 'number') return 3
  return 4
}

function sign(n: number): number {
  return n < 0 ? -1 : n > 0 ? 1 : 0
}

function show(v: SqlValue): string {
  if (v instanceof Uint8Array) return `x'${Buffer.from(v).toString('hex')}'`
  if (typeof v === 'bigint') return `${v}n`
  return JSON.stringify(v)
}

/** JavaScript's own string order (UTF-16 code units). */
function jsLess(a: string, b: string): boolean {
  return a < b
}

function assertOrder(bigger: SqlValue, smaller: SqlValue): void {
  assert.equal(compareValues(bigger, smaller), 1, `${show(bigger)} > ${show(smaller)}`)
  assert.equal(compareValues(smaller, bigger), -1, `${show(smaller)} < ${show(bigger)}`)
}

describe('values - storage classes', () => {
  it('values - typeCode is the SQLite type code of the JavaScript type', () => {
    assert.equal(typeCode(1n), TYPE_INTEGER)
    assert.equal(typeCode(1.0), TYPE_REAL)
    assert.equal(typeCode('1'), TYPE_TEXT)
    assert.equal(typeCode(Uint8Array.of(1)), TYPE_BLOB)
    assert.equal(typeCode(Buffer.of(1)), TYPE_BLOB)
    assert.equal(typeCode(null), TYPE_NULL)
  })

  it('values - classes order INTEGER > REAL > TEXT > BLOB > NULL whatever the values', () => {
    const chain: SqlValue[] = [
      -(2n ** 63n),
      1e308,
      '\u{10FFFF}'.repeat(3),
      Uint8Array.of(255),
      null,
    ]
    for (let i = 0; i < chain.length; i++) {
      for (let j = i + 1; j < chain.length; j++) {
        assertOrder(chain[i] ?? null, chain[j] ?? null)
      }
    }
    // The value does not matter across classes: a small integer beats a huge real, and so on.
    assertOrder(0n, Infinity)
    assertOrder(-1n, 1.5)
    assertOrder(1n, 1.0)
    assertOrder(-Infinity, 'zzz')
    assertOrder('', Uint8Array.of(0xff, 0xff))
    assertOrder('1', Uint8Array.of(0x31))
    assertOrder(new Uint8Array(0), null)
  })

  it('values - across classes the sign of compareValues is the sign of the rank difference', () => {
    fc.assert(
      fc.property(valueArb, valueArb, (a, b) => {
        fc.pre(rank(a) !== rank(b))
        assert.equal(compareValues(a, b), sign(rank(a) - rank(b)))
      }),
      { numRuns: 2_000 },
    )
  })

  it('values - 1 and 1.0, and TEXT and its bytes as a BLOB, are not the same value', () => {
    assert.equal(sameValue(1n, 1.0), false)
    assert.equal(sameValue(0n, 0), false)
    assert.equal(sameValue('a', Uint8Array.of(0x61)), false)
    assert.equal(sameValue('', new Uint8Array(0)), false)
    assert.equal(sameValue(null, null), true)
    assert.equal(sameValue(Buffer.from('ab'), Uint8Array.of(0x61, 0x62)), true)
  })
})

describe('values - numbers', () => {
  it('values - integers beyond 2^53 compare exactly', () => {
    assertOrder(2n ** 53n + 1n, 2n ** 53n)
    assertOrder(2n ** 63n - 1n, 2n ** 63n - 2n)
    assertOrder(-(2n ** 63n) + 1n, -(2n ** 63n))
    assert.equal(compareValues(2n ** 53n + 1n, 2n ** 53n + 1n), 0)
    // Through a double both would be 9007199254740992: the comparison must not go through one.
    assert.equal(Number(2n ** 53n + 1n), Number(2n ** 53n))
  })

  it('values - integers compare like bigint arithmetic', () => {
    fc.assert(
      fc.property(intArb, intArb, (a, b) => {
        assert.equal(compareValues(a, b), a < b ? -1 : a > b ? 1 : 0)
      }),
      { numRuns: 2_000 },
    )
  })

  it('values - reals compare numerically', () => {
    assertOrder(2.5, -3.25)
    assertOrder(Infinity, Number.MAX_VALUE)
    assertOrder(Number.MIN_VALUE, 0)
    assertOrder(-0.5, -Infinity)
    assertOrder(2 ** 53 + 2, 2 ** 53)
    assert.equal(compareValues(0, -0), 0)
    fc.assert(
      fc.property(realArb, realArb, (a, b) => {
        assert.equal(compareValues(a, b), a < b ? -1 : a > b ? 1 : 0)
      }),
      { numRuns: 2_000 },
    )
  })
})

describe('values - text', () => {
  it('values - U+1F600 sorts after U+FFFF (UTF-8 order), although JavaScript < says before', () => {
    const astral = '\u{1F600}'
    const bmpMax = '\uFFFF'
    // UTF-16: D83D DE00 < FFFF. UTF-8: F0 9F 98 80 > EF BF BF. SQLite (memcmp) uses the latter.
    assert.equal(jsLess(astral, bmpMax), true)
    assertOrder(astral, bmpMax)
    assertOrder(`a${astral}`, `a${bmpMax}z`)
    assertOrder('\u{10000}', '\uE000')
  })

  it('values - text compares as its UTF-8 bytes, shorter prefix first', () => {
    assertOrder('abc', 'ab')
    assertOrder('b', 'abc')
    assertOrder('a', '')
    assertOrder('é', 'z')
    assert.equal(compareValues('\u{1F600}', '\u{1F600}'), 0)
    fc.assert(
      fc.property(textArb, textArb, (a, b) => {
        const expected = sign(Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')))
        assert.equal(compareValues(a, b), expected)
      }),
      { numRuns: 3_000 },
    )
  })
})

describe('values - blobs', () => {
  it('values - blobs compare bytewise, a shorter prefix first', () => {
    assertOrder(Uint8Array.of(1, 2, 0), Uint8Array.of(1, 2))
    assertOrder(Uint8Array.of(0), new Uint8Array(0))
    assertOrder(Uint8Array.of(0xff), Uint8Array.of(0x01, 0xff, 0xff))
    assertOrder(Uint8Array.of(0x80), Uint8Array.of(0x7f))
    assert.equal(compareValues(Uint8Array.of(5, 6), Buffer.of(5, 6)), 0)
    fc.assert(
      fc.property(blobArb, blobArb, (a, b) => {
        assert.equal(compareValues(a, b), sign(Buffer.compare(a, b)))
      }),
      { numRuns: 2_000 },
    )
  })
})

describe('values - order laws', () => {
  it('values - compareValues is a total order: reflexive, antisymmetric, transitive', () => {
    fc.assert(
      fc.property(valueArb, valueArb, valueArb, (a, b, c) => {
        assert.equal(compareValues(a, a), 0)
        const ab = compareValues(a, b)
        assert.ok(ab === -1 || ab === 0 || ab === 1)
        assert.equal(compareValues(b, a), -ab || 0)
        const sorted = [a, b, c].sort(compareValues)
        const [x, y, z] = sorted as [SqlValue, SqlValue, SqlValue]
        assert.ok(compareValues(x, y) <= 0 && compareValues(y, z) <= 0)
        assert.ok(compareValues(x, z) <= 0)
      }),
      { numRuns: 3_000 },
    )
  })
})
