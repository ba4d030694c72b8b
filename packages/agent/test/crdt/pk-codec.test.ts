/**
 * Goal: packed primary keys round-trip exactly and stay byte-compatible with cr-sqlite and
 * Corrosion (`crsql_pack_columns`), and a malformed blob is refused with a PkCodecError instead
 * of being decoded into garbage.
 *
 * Method: a fast-check round trip of packPk/unpackPk over arrays of 1 to 4 typed values (the
 * whole signed 64-bit INTEGER range, any double including integral ones, text with astral-plane
 * characters, blobs, NULL); known byte vectors written out by hand from the cr-sqlite format;
 * truncated, extended and hand-corrupted blobs, and arbitrary bytes, fed to unpackPk.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { packPk, PkCodecError, unpackPk } from '../../src/crdt/pk-codec.ts'
import type { SqlValue } from '../../src/crdt/values.ts'

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

const bigintArb: fc.Arbitrary<SqlValue> = fc.oneof(
  fc.bigInt({ min: INT64_MIN, max: INT64_MAX }),
  fc.constantFrom(0n, 1n, -1n, 127n, 128n, 255n, 256n, 2n ** 53n + 1n, 2n ** 56n - 1n),
  fc.constantFrom(2n ** 56n, INT64_MAX, INT64_MIN, INT64_MIN + 1n),
)

const doubleArb: fc.Arbitrary<SqlValue> = fc.oneof(
  fc.double(),
  fc.constantFrom(1.0, 0, -0, 2 ** 53, -1.0, 255, 1e300, Number.MIN_VALUE, Infinity, -Infinity),
)

const textArb: fc.Arbitrary<SqlValue> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.string({ unit: 'grapheme', maxLength: 8 }),
  fc.constantFrom('', 'ab', '\u{1F600}', '\uFFFF', 'a\u{10FFFF}b', 'x'.repeat(300), 'a\uFEFF'),
)

const blobArb: fc.Arbitrary<SqlValue> = fc.oneof(
  fc.uint8Array({ maxLength: 40 }),
  fc.constantFrom(new Uint8Array(0), new Uint8Array(256).fill(7)),
)

const valueArb: fc.Arbitrary<SqlValue> = fc.oneof(
  bigintArb,
  doubleArb,
  textArb,
  blobArb,
  fc.constant(null),
)

const keyArb = fc.array(valueArb, { minLength: 1, maxLength: 4 })

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

function fromHex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text.replaceAll(' ', ''), 'hex'))
}

/** A comparable form that keeps the storage class: 1n and 1.0 differ, blobs compare by bytes. */
function typed(values: readonly SqlValue[]): unknown[] {
  return values.map((v) => {
    if (v instanceof Uint8Array) return { blob: hex(v) }
    if (typeof v === 'bigint') return { int: v }
    if (typeof v === 'number') return { real: v }
    return v
  })
}

function assertPkError(blob: Uint8Array, what: string): void {
  assert.throws(
    () => unpackPk(blob),
    (err: unknown) => {
      assert.ok(err instanceof PkCodecError, `${String(err)} is a PkCodecError`)
      assert.equal(err.code, 'PK_DECODE')
      return true
    },
    `${what} (${hex(blob)}) must throw a PkCodecError`,
  )
}

describe('pk-codec - round trip', () => {
  it('pk-codec - unpackPk(packPk(values)) returns the same typed values', () => {
    fc.assert(
      fc.property(keyArb, (values) => {
        const decoded = unpackPk(packPk(values))
        assert.deepStrictEqual(typed(decoded), typed(values))
        decoded.forEach((v, i) => {
          const original = values[i]
          // A double that happens to be integral (1.0) is still a REAL, never a bigint.
          if (typeof original === 'number') assert.equal(typeof v, 'number')
          if (typeof original === 'bigint') assert.equal(typeof v, 'bigint')
        })
      }),
      { numRuns: 2_000 },
    )
  })

  it('pk-codec - a packed key decodes from a view into a larger buffer', () => {
    fc.assert(
      fc.property(keyArb, fc.uint8Array({ maxLength: 8 }), (values, pad) => {
        const packed = packPk(values)
        const big = new Uint8Array(pad.length + packed.length + 5)
        big.set(pad, 0)
        big.set(packed, pad.length)
        const view = big.subarray(pad.length, pad.length + packed.length)
        assert.deepStrictEqual(typed(unpackPk(view)), typed(values))
      }),
    )
  })

  it('pk-codec - integral doubles stay REAL: 1.0 comes back as the number 1, not 1n', () => {
    for (const d of [1.0, 0, 255, 2 ** 53, -7]) {
      const [back] = unpackPk(packPk([d]))
      assert.equal(typeof back, 'number')
      assert.ok(Object.is(back, d))
    }
    assert.ok(Object.is(unpackPk(packPk([-0]))[0], -0))
    assert.ok(Number.isNaN(unpackPk(packPk([NaN]))[0]))
  })

  it('pk-codec - text with astral-plane characters round-trips as UTF-8', () => {
    for (const s of ['\u{1F600}', 'a\u{1F600}b', '\u{10FFFF}', '\uD83D\uDE00\u00E9', '日本']) {
      const packed = packPk([s])
      const utf8 = Buffer.from(s, 'utf8')
      assert.equal(packed[1], ((utf8.length < 256 ? 1 : 2) << 3) | 3)
      assert.equal(hex(packed.subarray(3)), utf8.toString('hex'))
      assert.deepStrictEqual(unpackPk(packed), [s])
    }
  })

  it('pk-codec - text starting with U+FEFF (a byte order mark) keeps it', () => {
    // EF BB BF is an ordinary character at the start of a key: TEXT 'a' and TEXT '\uFEFFa' are
    // two different keys in SQLite, so decoding must not strip it (a TextDecoder strips a
    // leading BOM unless it is created with ignoreBOM: true).
    assert.equal(hex(packPk(['\uFEFFa'])), '010b04efbbbf61')
    for (const s of ['\uFEFF', '\uFEFFa', '\uFEFF\uFEFFb']) {
      const utf8 = Buffer.from(s).toString('hex')
      assert.deepStrictEqual(unpackPk(packPk([s])), [s], `text ${utf8} must decode to itself`)
    }
    assert.deepStrictEqual(unpackPk(fromHex('01 0b 04 ef bb bf 61')), ['\uFEFFa'])
  })
})

describe('pk-codec - known vectors (cr-sqlite / Corrosion format)', () => {
  const vectors: [string, SqlValue[], string][] = [
    ['INTEGER 1', [1n], '01 09 01'],
    ['INTEGER 0 (no value bytes)', [0n], '01 01'],
    ['INTEGER 255 (one byte)', [255n], '01 09 ff'],
    ['INTEGER 256 (two bytes)', [256n], '01 11 01 00'],
    ['INTEGER 2^53+1 (seven bytes)', [2n ** 53n + 1n], '01 39 20 00 00 00 00 00 01'],
    ['INTEGER -1 (eight bytes)', [-1n], '01 41 ff ff ff ff ff ff ff ff'],
    ['INTEGER -2 (eight bytes)', [-2n], '01 41 ff ff ff ff ff ff ff fe'],
    ['INTEGER max', [INT64_MAX], '01 41 7f ff ff ff ff ff ff ff'],
    ['INTEGER min', [INT64_MIN], '01 41 80 00 00 00 00 00 00 00'],
    ['REAL 1.0', [1.0], '01 02 3f f0 00 00 00 00 00 00'],
    ['REAL -2.5', [-2.5], '01 02 c0 04 00 00 00 00 00 00'],
    ["TEXT 'ab'", ['ab'], '01 0b 02 61 62'],
    ["TEXT ''", [''], '01 03'],
    ['TEXT U+1F600', ['\u{1F600}'], '01 0b 04 f0 9f 98 80'],
    ['BLOB 00 ff', [Uint8Array.from([0, 255])], '01 0c 02 00 ff'],
    ['BLOB empty', [new Uint8Array(0)], '01 04'],
    ['NULL', [null], '01 05'],
    ["two columns (1, 'ab')", [1n, 'ab'], '02 09 01 0b 02 61 62'],
    ['four columns', [null, -1n, 0n, 'z'], '04 05 41 ff ff ff ff ff ff ff ff 01 0b 01 7a'],
  ]
  for (const [name, values, bytes] of vectors) {
    it(`pk-codec - ${name} packs to ${bytes}, which unpacks back`, () => {
      assert.equal(hex(packPk(values)), bytes.replaceAll(' ', ''))
      assert.deepStrictEqual(typed(unpackPk(fromHex(bytes))), typed(values))
    })
  }

  it('pk-codec - a negative integer always uses 8 bytes (type byte 0x41)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: INT64_MIN, max: -1n }), (v) => {
        const packed = packPk([v])
        assert.equal(packed.length, 2 + 8)
        assert.equal(packed[1], (8 << 3) | 1)
        assert.equal(Buffer.from(packed).readBigInt64BE(2), v)
      }),
    )
  })

  it('pk-codec - a non-negative integer uses the fewest big-endian bytes', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: INT64_MAX }), (v) => {
        const packed = packPk([v])
        const nbytes = v === 0n ? 0 : Math.ceil(v.toString(16).length / 2)
        assert.equal(packed[1], (nbytes << 3) | 1)
        assert.equal(packed.length, 2 + nbytes)
        assert.equal(nbytes === 0 ? 0n : BigInt(`0x${hex(packed.subarray(2))}`), v)
      }),
    )
  })

  it('pk-codec - fewer than 8 integer bytes decode unsigned (255, not -1); 8 bytes decode signed', () => {
    assert.deepStrictEqual(unpackPk(fromHex('01 09 ff')), [255n])
    assert.deepStrictEqual(unpackPk(fromHex('01 09 80')), [128n])
    assert.deepStrictEqual(unpackPk(fromHex('01 39 ff ff ff ff ff ff ff')), [2n ** 56n - 1n])
    assert.deepStrictEqual(unpackPk(fromHex('01 41 ff ff ff ff ff ff ff ff')), [-1n])
  })

  it('pk-codec - text and blob lengths of 256 and more take a 2-byte big-endian prefix', () => {
    const text = 'x'.repeat(300)
    assert.equal(hex(packPk([text]).subarray(0, 4)), '0113012c')
    const blob = new Uint8Array(70_000)
    // 70000 = 0x011170: three length bytes, type byte (3 << 3) | 4.
    assert.equal(hex(packPk([blob]).subarray(0, 5)), '011c011170')
  })
})

describe('pk-codec - malformed blobs', () => {
  it('pk-codec - an empty blob throws', () => {
    assertPkError(new Uint8Array(0), 'an empty blob')
  })

  it('pk-codec - every truncation of a valid key throws', () => {
    fc.assert(
      fc.property(keyArb, (values) => {
        const packed = packPk(values)
        for (let n = 0; n < packed.length; n++) {
          assertPkError(packed.subarray(0, n), `a key cut to ${n} of ${packed.length} bytes`)
        }
      }),
      { numRuns: 300 },
    )
  })

  it('pk-codec - trailing bytes after a valid key throw', () => {
    fc.assert(
      fc.property(keyArb, fc.uint8Array({ minLength: 1, maxLength: 4 }), (values, extra) => {
        const packed = packPk(values)
        const longer = new Uint8Array(packed.length + extra.length)
        longer.set(packed, 0)
        longer.set(extra, packed.length)
        assertPkError(longer, 'a key followed by extra bytes')
      }),
    )
  })

  it('pk-codec - a column count larger than the columns present throws', () => {
    assertPkError(fromHex('02 09 01'), 'count 2 with one column')
    assertPkError(fromHex('ff 05'), 'count 255 with one column')
  })

  it('pk-codec - text that is not valid UTF-8 throws', () => {
    for (const bytes of [
      '01 0b 01 ff', // never valid in UTF-8
      '01 0b 02 c3 28', // bad continuation byte
      '01 0b 02 c0 af', // overlong encoding of '/'
      '01 0b 03 ed a0 80', // a UTF-16 surrogate encoded as UTF-8
      '01 0b 03 f0 9f 98', // a 4-byte sequence cut short inside the text
      '01 0b 04 f4 90 80 80', // above U+10FFFF
    ]) {
      assertPkError(fromHex(bytes), 'invalid UTF-8')
    }
    // The same bytes are a perfectly good BLOB.
    assert.deepStrictEqual(typed(unpackPk(fromHex('01 0c 01 ff'))), [{ blob: 'ff' }])
  })

  it('pk-codec - an unknown type code throws', () => {
    for (const bytes of ['01 00', '01 06', '01 07', '01 0e', '02 09 01 0f']) {
      assertPkError(fromHex(bytes), 'an unknown type')
    }
  })

  it('pk-codec - an integer wider than 8 bytes or a length prefix wider than 4 throws', () => {
    assertPkError(fromHex('01 49 00 00 00 00 00 00 00 00 01'), 'a 9-byte integer')
    assertPkError(fromHex('01 2b 00 00 00 00 01 61'), 'a 5-byte text length')
    assertPkError(fromHex('01 fc 00 00 00 00 00'), 'a 31-byte blob length')
  })

  it('pk-codec - a length that runs past the end throws', () => {
    assertPkError(fromHex('01 0b 05 61 62'), 'text shorter than its length')
    assertPkError(fromHex('01 14 ff ff 00'), 'blob shorter than its length')
    assertPkError(fromHex('01 02 3f f0 00'), 'a REAL with fewer than 8 bytes')
  })

  it('pk-codec - arbitrary bytes either throw a PkCodecError or decode to a stable key', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 24 }), (bytes) => {
        let values: SqlValue[]
        try {
          values = unpackPk(bytes)
        } catch (err) {
          assert.ok(err instanceof PkCodecError, `only PkCodecError may escape, got ${String(err)}`)
          return
        }
        assert.equal(values.length, bytes[0])
        // Whatever was accepted means something definite: packing it again decodes the same.
        if (values.length > 0) {
          assert.deepStrictEqual(typed(unpackPk(packPk(values))), typed(values))
        }
      }),
      { numRuns: 5_000 },
    )
  })
})
