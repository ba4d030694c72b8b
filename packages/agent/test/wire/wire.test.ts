/**
 * Goal: the replication wire format round-trips every valid message exactly, turns every invalid
 * input into `{ ok: false }` without throwing, stays compact, and refuses to encode invalid
 * messages.
 *
 * Method: fast-check generates messages of every type with edge-case values; decode(encode(m))
 * must deep-equal m (bigint stays bigint, REAL stays number, -0 stays -0). Random bytes and valid
 * encodings truncated, bit-flipped or patched must decode to a result without throwing, and since
 * the encoding is canonical, any mutated input that does decode must re-encode to itself.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import type { Change } from '../../src/crdt/changes.ts'
import { packPk } from '../../src/crdt/pk-codec.ts'
import type { SqlValue } from '../../src/crdt/values.ts'
import type { Chunk, Message, Need, OriginHave } from '../../src/wire/messages.ts'
import {
  CHUNK_HEADER_BYTES_MAX,
  ChunkSizer,
  chunkEncodedBytes,
  decodeMessage,
  encodeMessage,
  MESSAGE_HEADER_BYTES,
  NEED_BYTES_MAX,
  peekHeader,
  SYNC_CHUNKS_OVERHEAD_BYTES_MAX,
  WIRE_VERSION,
} from '../../src/wire/wire.ts'

const LONG = process.env['PATINA_LONG'] === '1'
const RUNS = LONG ? 20_000 : 400

// ------------------------------------------------------------------------------ arbitraries

const idArb = fc.uint8Array({ minLength: 16, maxLength: 16 })
const MAX_SAFE = Number.MAX_SAFE_INTEGER
/** Safe integers, biased to the varint length boundaries and the top of the range. */
const natArb = fc.oneof(
  fc.nat(300),
  fc.constantFrom(0, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 49 - 1, 2 ** 49, MAX_SAFE),
  fc.maxSafeNat(),
)
const rangeArb = fc
  .tuple(natArb, natArb)
  .map(([a, b]): readonly [number, number] => (a <= b ? [a, b] : [b, a]))

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n
const bigintArb = fc.oneof(
  fc.bigInt({ min: -1000n, max: 1000n }),
  fc.bigInt({ min: INT64_MIN, max: INT64_MAX }),
  fc.constantFrom(
    INT64_MIN,
    INT64_MIN + 1n,
    INT64_MAX,
    INT64_MAX - 1n,
    0n,
    -1n,
    63n,
    -64n,
    64n,
    2n ** 52n - 1n,
    2n ** 52n,
    -(2n ** 52n),
    -(2n ** 52n) - 1n,
    2n ** 53n,
    2n ** 62n,
    -(2n ** 62n),
  ),
)
const realArb = fc.oneof(
  fc.double({ noNaN: true }),
  fc.constantFrom(
    0,
    -0,
    1,
    -1.5,
    Infinity,
    -Infinity,
    Number.MIN_VALUE,
    -Number.MIN_VALUE,
    2.2250738585072014e-308 / 3, // subnormal
    Number.MAX_VALUE,
    Number.EPSILON,
    2 ** 53 + 2,
  ),
)
const textArb = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }), // any code point, astral planes included
  fc.constantFrom('', '\uFEFFbom first', '\u0000', '😀', '𝄞 clef', 'machines'),
)
const blobArb = fc.uint8Array({ maxLength: 40 })
const sqlValueArb: fc.Arbitrary<SqlValue> = fc.oneof(
  fc.constant(null),
  bigintArb,
  realArb,
  textArb,
  blobArb,
)
const nameArb = fc.oneof(
  fc.constantFrom('machines', 'users', '-1', 'id', 'name', ''),
  fc.string({ unit: 'binary', maxLength: 10 }),
)

/** Changes of one chunk: pks from a small pool (rows with several cells), seqs inside `seqs`. */
function changesArb(
  origin: Uint8Array,
  version: number,
  seqs: readonly [number, number],
): fc.Arbitrary<Change[]> {
  const [start, end] = seqs
  const seqArb = fc.oneof(
    fc.nat(40).map((k) => Math.min(start + k, end)),
    fc.nat(40).map((k) => Math.max(end - k, start)),
    fc.constant(start),
  )
  const pkPool = [packPk([1n]), packPk(['a']), new Uint8Array(0)]
  const pkArb = fc.oneof(fc.constantFrom(...pkPool), fc.uint8Array({ maxLength: 12 }))
  const changeArb = fc
    .tuple(nameArb, pkArb, nameArb, sqlValueArb, natArb, natArb, seqArb)
    .map(([table, pk, cid, val, colVersion, cl, seq]): Change => ({
      table,
      pk: pk.slice(), // equal bytes in different arrays: PK_SAME must compare contents
      cid,
      val,
      colVersion,
      dbVersion: version,
      actorId: origin.slice(),
      cl,
      seq,
    }))
  return fc.oneof(
    fc.array(changeArb, { maxLength: 25 }),
    // Runs of cells of one row in seq order, as a version is usually read.
    fc.array(changeArb, { maxLength: 25 }).map((cs) => {
      const sorted = cs.map((c) => ({ ...c, pk: pkPool[0] as Uint8Array }))
      return sorted.sort((a, b) => a.seq - b.seq)
    }),
  )
}

const fullChunkArb: fc.Arbitrary<Chunk> = fc
  .tuple(idArb, natArb, rangeArb, natArb, natArb)
  .chain(([origin, version, seqs, lastSeqAfter, ts]) =>
    changesArb(origin, version, seqs).map((changes): Chunk => ({
      kind: 'full',
      origin,
      version,
      seqs,
      lastSeq: Math.min(MAX_SAFE, seqs[1] + lastSeqAfter),
      ts,
      changes,
    })),
  )
const emptyChunkArb: fc.Arbitrary<Chunk> = fc
  .tuple(idArb, rangeArb, natArb)
  .map(([origin, versions, ts]): Chunk => ({ kind: 'empty', origin, versions, ts }))
const chunkArb = fc.oneof(fullChunkArb, emptyChunkArb)

const needArb: fc.Arbitrary<Need> = fc
  .tuple(idArb, rangeArb, natArb)
  .map(([origin, [start, end], fromSeq]) => ({ origin, start, end, fromSeq }))
const haveArb: fc.Arbitrary<OriginHave> = fc
  .tuple(idArb, natArb, fc.array(rangeArb, { maxLength: 5 }))
  .map(([origin, head, gaps]) => ({ origin, head, gaps }))

const envelopeArb = fc.tuple(fc.integer({ min: 0, max: 0xffff }), idArb)
const messageArb: fc.Arbitrary<Message> = fc.oneof(
  fc
    .tuple(envelopeArb, chunkArb)
    .map(([[clusterId, sender], chunk]): Message => ({ type: 'change', clusterId, sender, chunk })),
  envelopeArb.map(([clusterId, sender]): Message => ({ type: 'sync-start', clusterId, sender })),
  fc
    .tuple(envelopeArb, natArb, fc.array(haveArb, { maxLength: 5 }))
    .map(([[clusterId, sender], session, haves]): Message => ({
      type: 'sync-state',
      clusterId,
      sender,
      session,
      haves,
    })),
  fc
    .tuple(envelopeArb, fc.constantFrom('busy', 'cluster', 'session', 'malformed' as const))
    .map(([[clusterId, sender], reason]): Message => ({
      type: 'sync-reject',
      clusterId,
      sender,
      reason,
    })),
  fc
    .tuple(envelopeArb, natArb, natArb, fc.array(needArb, { maxLength: 5 }))
    .map(([[clusterId, sender], session, maxBytes, needs]): Message => ({
      type: 'sync-needs',
      clusterId,
      sender,
      session,
      maxBytes,
      needs,
    })),
  fc
    .tuple(envelopeArb, fc.array(chunkArb, { maxLength: 3 }), fc.array(needArb, { maxLength: 4 }))
    .map(([[clusterId, sender], chunks, rest]): Message => ({
      type: 'sync-chunks',
      clusterId,
      sender,
      chunks,
      rest,
    })),
)

// ------------------------------------------------------------------------------ helpers

const ORIGIN = Uint8Array.from({ length: 16 }, (_, i) => i + 1)
const SENDER = Uint8Array.from({ length: 16 }, (_, i) => 0xf0 - i)

function change(over: Partial<Change> = {}): Change {
  return {
    table: 'machines',
    pk: packPk([7n]),
    cid: 'name',
    val: 'web-1',
    colVersion: 1,
    dbVersion: 5,
    actorId: ORIGIN,
    cl: 1,
    seq: 0,
    ...over,
  }
}

function changeMessage(changes: Change[], over: Partial<Chunk & { kind: 'full' }> = {}): Message {
  return {
    type: 'change',
    clusterId: 7,
    sender: SENDER,
    chunk: {
      kind: 'full',
      origin: ORIGIN,
      version: 5,
      seqs: [0, 100],
      lastSeq: 100,
      ts: 1_700_000_000_000,
      changes,
      ...over,
    },
  }
}

/** Decodes, asserting it does not throw; if it decodes, it must re-encode to the same bytes. */
function decodeChecked(bytes: Uint8Array): ReturnType<typeof decodeMessage> {
  const result = decodeMessage(bytes)
  if (result.ok) {
    assert.deepEqual(encodeMessage(result.message), bytes, 'accepted input is not canonical')
  } else {
    assert.equal(typeof result.error, 'string')
    assert.ok(result.error.length > 0)
  }
  return result
}

function expectMalformed(bytes: Uint8Array, pattern: RegExp): void {
  const result = decodeMessage(bytes)
  assert.equal(result.ok, false)
  assert.match(result.error, pattern)
}

/** Every value in `m`, for storage-class checks beyond deepEqual. */
function values(m: Message): SqlValue[] {
  const chunks = m.type === 'change' ? [m.chunk] : m.type === 'sync-chunks' ? m.chunks : []
  return chunks.flatMap((c) => (c.kind === 'full' ? c.changes.map((ch) => ch.val) : []))
}

function storageClass(v: SqlValue): string {
  return v instanceof Uint8Array ? 'blob' : v === null ? 'null' : typeof v
}

// ------------------------------------------------------------------------------ tests

describe('wire - round trip', () => {
  it('decodes every message to exactly what was encoded', () => {
    fc.assert(
      fc.property(messageArb, (m) => {
        const bytes = encodeMessage(m)
        const result = decodeMessage(bytes)
        assert.ok(result.ok, result.ok ? '' : result.error)
        assert.deepStrictEqual(result.message, m)
        assert.deepEqual(values(result.message).map(storageClass), values(m).map(storageClass))
        assert.deepEqual(peekHeader(bytes), { clusterId: m.clusterId, type: m.type })
      }),
      { numRuns: RUNS },
    )
  })

  it('keeps each storage class and the exact bits of every value', () => {
    const vals: SqlValue[] = [
      1n,
      1.0,
      -0,
      0,
      0n,
      INT64_MIN,
      INT64_MAX,
      Infinity,
      -Infinity,
      5e-324,
      '',
      '\uFEFF',
      '𝄞',
      new Uint8Array(0),
      null,
    ]
    const m = changeMessage(vals.map((val, seq) => change({ seq, cid: `c${seq}`, val })))
    const result = decodeMessage(encodeMessage(m))
    assert.ok(result.ok && result.message.type === 'change')
    const chunk = result.message.chunk
    assert.ok(chunk.kind === 'full')
    const got = chunk.changes.map((c) => c.val)
    assert.equal(typeof got[0], 'bigint')
    assert.equal(typeof got[1], 'number')
    assert.ok(Object.is(got[2], -0))
    assert.ok(Object.is(got[3], 0))
    assert.equal(got[5], INT64_MIN)
    assert.equal(got[6], INT64_MAX)
    assert.equal(got[9], 5e-324)
    assert.equal(got[11], '\uFEFF') // a leading BOM is data, not stripped
    assert.deepStrictEqual(got[13], new Uint8Array(0))
    assert.deepStrictEqual(got, vals)
  })

  it('decodes chunks made only of the smallest changes', () => {
    // Cells of one row with NULL values: 6 bytes each, the least a change can take.
    const changes = Array.from({ length: 50 }, (_, seq) => change({ val: null, seq }))
    const m = changeMessage(changes)
    const bytes = encodeMessage(m)
    assert.equal(bytes.length - encodeMessage(changeMessage(changes.slice(0, 1))).length, 49 * 6)
    const result = decodeMessage(bytes)
    assert.ok(result.ok, result.ok ? '' : result.error)
    assert.deepStrictEqual(result.message, m)
  })

  it('fills actorId and dbVersion of every change from the chunk', () => {
    const bytes = encodeMessage(changeMessage([change(), change({ cid: 'region', seq: 1 })]))
    const result = decodeMessage(bytes)
    assert.ok(result.ok && result.message.type === 'change')
    const chunk = result.message.chunk
    assert.ok(chunk.kind === 'full')
    for (const c of chunk.changes) {
      assert.deepEqual(c.actorId, ORIGIN)
      assert.equal(c.dbVersion, 5)
    }
  })

  it('copies decoded bytes out of the input, and returns plain Uint8Arrays for a Buffer', () => {
    const blob = Uint8Array.of(1, 2, 3)
    const encoded = encodeMessage(changeMessage([change({ val: blob })]))
    // The message in the middle of a larger Buffer, as a transport might hand it over.
    const backing = Buffer.alloc(encoded.length + 10)
    backing.set(encoded, 5)
    const input = backing.subarray(5, 5 + encoded.length)
    const result = decodeMessage(input)
    assert.ok(result.ok && result.message.type === 'change')
    backing.fill(0xee)
    const chunk = result.message.chunk
    assert.ok(chunk.kind === 'full')
    const c = chunk.changes[0]
    assert.ok(c !== undefined)
    assert.deepStrictEqual(c.val, blob)
    assert.deepStrictEqual(c.pk, packPk([7n]))
    assert.deepStrictEqual(result.message.sender, SENDER)
    assert.equal(Object.getPrototypeOf(c.val), Uint8Array.prototype)
    assert.equal(Object.getPrototypeOf(chunk.origin), Uint8Array.prototype)
  })
})

describe('wire - malformed input', () => {
  it('never throws on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        decodeChecked(bytes)
      }),
      { numRuns: RUNS * 5 },
    )
  })

  it('never throws on random bodies behind a valid header', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.uint8Array({ maxLength: 300 }),
        (type, body) => {
          const bytes = new Uint8Array(MESSAGE_HEADER_BYTES + body.length)
          bytes.set([WIRE_VERSION, 0, 7, type], 0)
          bytes.set(body, MESSAGE_HEADER_BYTES)
          decodeChecked(bytes)
        },
      ),
      { numRuns: RUNS * 5 },
    )
  })

  it('rejects every truncation of a valid message', () => {
    fc.assert(
      fc.property(messageArb, (m) => {
        const bytes = encodeMessage(m)
        for (let n = 0; n < bytes.length; n++) {
          const result = decodeMessage(bytes.subarray(0, n))
          assert.equal(result.ok, false, `prefix of ${n} of ${bytes.length} bytes decoded`)
        }
      }),
      { numRuns: 60 },
    )
  })

  it('rejects a byte appended to a valid message', () => {
    fc.assert(
      fc.property(messageArb, fc.integer({ min: 0, max: 255 }), (m, extra) => {
        const bytes = encodeMessage(m)
        const longer = new Uint8Array(bytes.length + 1)
        longer.set(bytes)
        longer[bytes.length] = extra
        expectMalformed(longer, /after the message|truncated|does not fit|overlong|above/)
      }),
      { numRuns: RUNS },
    )
  })

  it('never throws on bit flips and byte changes, and accepts only canonical encodings', () => {
    fc.assert(
      fc.property(
        messageArb,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean()), {
          minLength: 1,
          maxLength: 3,
        }),
        (m, edits) => {
          const bytes = encodeMessage(m)
          for (const [at, v, flip] of edits) {
            const i = at % bytes.length
            bytes[i] = flip ? (bytes[i] as number) ^ (1 << (v % 8)) : v
          }
          decodeChecked(bytes)
        },
      ),
      { numRuns: RUNS * 2 },
    )
  })

  it('rejects another wire version', () => {
    const bytes = encodeMessage({ type: 'sync-start', clusterId: 1, sender: SENDER })
    for (const v of [0, 2, 255]) {
      const other = bytes.slice()
      other[0] = v
      expectMalformed(other, /unsupported wire version/)
      assert.equal(peekHeader(other), null)
    }
  })

  it('rejects lying counts and lengths without allocating for them', () => {
    const header = [WIRE_VERSION, 0, 7, 1, ...SENDER]
    const huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f] // 2^53 - 1
    const fullChunkHead = [1, ...ORIGIN, 5, 0, 100, 0, 0] // version 5, seqs [0, 100], ts 0
    // 2^53 - 1 changes in a tiny message.
    expectMalformed(Uint8Array.from([...header, ...fullChunkHead, ...huge]), /does not fit/)
    // One change whose pk claims 2^53 - 1 bytes, then whose table name claims 2^40 bytes.
    const newTable = [0, 1, 0x61]
    expectMalformed(
      Uint8Array.from([...header, ...fullChunkHead, 1, 5, ...newTable, ...huge, 1, 2]),
      /truncated pk/,
    )
    expectMalformed(
      Uint8Array.from([...header, ...fullChunkHead, 1, 5, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20]),
      /truncated table/,
    )
    // A varint beyond 2^53 - 1, and one that never ends.
    expectMalformed(Uint8Array.from([...header, 1, ...ORIGIN, ...huge.slice(0, 7), 0x10]), /2\^53/)
    expectMalformed(
      Uint8Array.from([...header, 1, ...ORIGIN, ...new Array<number>(20).fill(0xff)]),
      /2\^53/,
    )
    // sync-chunks claiming 2^53 - 1 chunks, sync-state claiming many haves.
    expectMalformed(Uint8Array.from([WIRE_VERSION, 0, 7, 6, ...SENDER, ...huge]), /does not fit/)
    expectMalformed(Uint8Array.from([WIRE_VERSION, 0, 7, 3, ...SENDER, 0, 100]), /does not fit/)
  })

  it('rejects non-canonical and out-of-range encodings', () => {
    const header = [WIRE_VERSION, 0, 7, 1, ...SENDER]
    const chunkHead = [1, ...ORIGIN, 5, 0, 100, 0, 0]
    /** A chunk of one change: table 't', pk, cid 'c', colVersion 1, cl 1, seq 0, value. */
    const cell = (head: number, value: number[], pk = [1, 0x61]): Uint8Array =>
      Uint8Array.from([
        ...header,
        ...chunkHead,
        1,
        head,
        0,
        1,
        0x74,
        ...pk,
        0,
        1,
        0x63,
        1,
        1,
        0,
        ...value,
      ])
    // The well-formed base case decodes.
    assert.ok(decodeChecked(cell(5, [])).ok)
    assert.ok(decodeChecked(cell(1, [0x01])).ok)
    expectMalformed(cell(1, [0x81, 0x00]), /overlong/)
    // INTEGER: ten bytes whose last carries more than bit 63.
    expectMalformed(cell(1, [...new Array<number>(9).fill(0xff), 0x02]), /outside 64 bits/)
    expectMalformed(cell(1, [...new Array<number>(10).fill(0xff), 0x01]), /outside 64 bits/)
    // REAL NaN.
    expectMalformed(cell(2, [0, 0, 0, 0, 0, 0, 0xf8, 0x7f]), /NaN/)
    // TEXT not UTF-8 (a lone continuation byte; a surrogate encoded in UTF-8).
    expectMalformed(cell(3, [1, 0x80]), /UTF-8/)
    expectMalformed(cell(3, [3, 0xed, 0xa0, 0x80]), /UTF-8/)
    // Unknown value tags and reserved head bits.
    expectMalformed(cell(0, []), /unknown value tag/)
    expectMalformed(cell(6, []), /unknown value tag/)
    expectMalformed(cell(0x25, []), /reserved bits/)
    // PK_SAME or SEQ_NEXT on the first change.
    expectMalformed(cell(5 | 0x08, [], []), /previous one/)
    expectMalformed(cell(5 | 0x10, []), /previous one/)
    // A second change (same pk, seq 1): SEQ_NEXT with delta 0 is the one encoding of seq 1.
    const two = (head: number, seqField: number): Uint8Array =>
      Uint8Array.from([
        ...[...header, ...chunkHead, 2, 5, 0, 1, 0x74, 1, 0x61, 0, 1, 0x63, 1, 1, 0],
        ...[head, 1, 2, 1, 1, seqField],
      ])
    assert.ok(decodeChecked(two(5 | 0x08 | 0x10, 0)).ok)
    expectMalformed(two(5 | 0x08, 1), /without SEQ_NEXT/)
    assert.ok(decodeChecked(two(5 | 0x08, 0)).ok) // seq 0 again: not above, so absolute
    expectMalformed(two(5 | 0x08 | 0x10, 100), /above the chunk's seqs end/)
    // Reject reasons and chunk kinds out of range.
    expectMalformed(Uint8Array.from([WIRE_VERSION, 0, 7, 4, ...SENDER, 9]), /unknown reject/)
    expectMalformed(Uint8Array.from([...header, 3, ...ORIGIN, 0, 0, 0]), /unknown chunk kind/)
    expectMalformed(Uint8Array.from([WIRE_VERSION, 0, 7, 0, ...SENDER]), /unknown message type/)
  })

  it('rejects a change whose TEXT value is not valid UTF-8, and keeps valid multi-byte TEXT exact', () => {
    // Local writes refuse such TEXT (INVALID_TEXT), so no honest peer sends it; a message that
    // carries it anyway is malformed, not replaced with U+FFFD (which would make replicas differ).
    const valid = 'é😀'
    const bytes = encodeMessage(changeMessage([change({ val: valid })]))
    const decoded = decodeChecked(bytes)
    assert.ok(decoded.ok && decoded.message.type === 'change')
    assert.ok(decoded.message.chunk.kind === 'full')
    assert.equal(decoded.message.chunk.changes[0]?.val, valid)
    const utf8 = Buffer.from(valid, 'utf8') // C3 A9 F0 9F 98 80: 6 bytes
    const at = Buffer.from(bytes).indexOf(utf8)
    assert.ok(at > 0)
    // Same length, so only the bytes change: FF 61 (the bug report's value), a lone
    // continuation byte, an overlong NUL, a UTF-8-encoded surrogate, a code point above U+10FFFF.
    for (const bad of [
      [0xff, 0x61, 0x61, 0x61, 0x61, 0x61],
      [0x61, 0x80, 0x61, 0x61, 0x61, 0x61],
      [0xc0, 0x80, 0x61, 0x61, 0x61, 0x61],
      [0xed, 0xa0, 0x80, 0x61, 0x61, 0x61],
      [0xf4, 0x90, 0x80, 0x80, 0x61, 0x61],
    ]) {
      const patched = Uint8Array.from(bytes)
      patched.set(bad, at)
      expectMalformed(patched, /TEXT is not valid UTF-8/)
    }
  })

  it('rejects a dictionary entry added twice, a dangling reference and a repeated literal pk', () => {
    const bytes = encodeMessage(
      changeMessage([change({ seq: 1 }), change({ seq: 0, pk: packPk([8n]) })]),
    )
    // Layout of the second change: head, table ref (1), pk (len 3), cid ref (2), ...
    const one = encodeMessage(changeMessage([change({ seq: 1 })]))
    const secondAt = one.length
    assert.equal(bytes[secondAt + 1], 1) // the second change refers to "machines"
    const twice = Uint8Array.from([
      ...bytes.subarray(0, secondAt + 1),
      0,
      8,
      ...Buffer.from('machines'),
      ...bytes.subarray(secondAt + 2),
    ])
    expectMalformed(twice, /dictionary twice/)
    const dangling = bytes.slice()
    dangling[secondAt + 1] = 9
    expectMalformed(dangling, /refers to entry 8/)
    const samePk = encodeMessage(changeMessage([change({ seq: 1 }), change({ seq: 0 })]))
    // Rewrite the second change's PK_SAME form into a literal copy of the same pk.
    assert.equal((samePk[secondAt] as number) & 0x08, 0x08)
    const pk = packPk([7n])
    const literal = Uint8Array.from([
      (samePk[secondAt] as number) & ~0x08,
      samePk[secondAt + 1] as number,
      pk.length,
      ...pk,
      ...samePk.subarray(secondAt + 2),
    ])
    expectMalformed(
      Uint8Array.from([...samePk.subarray(0, secondAt), ...literal]),
      /pk repeated without PK_SAME/,
    )
  })
})

describe('wire - size', () => {
  /** `rows` rows of a 4-column table as a version reads them: each row's cells in seq order. */
  function machinesChunk(rows: number): Chunk & { kind: 'full' } {
    const changes: Change[] = []
    const cols = ['name', 'region', 'cpus', 'memory_mb']
    let seq = 0
    for (let row = 0; row < rows; row++) {
      const pk = packPk([BigInt(10_000 + row)])
      const vals: SqlValue[] = [
        `machine-${String(row).padStart(4, '0')}`,
        'ams',
        BigInt(1 + (row % 16)),
        BigInt(256 * (1 + (row % 32))),
      ]
      cols.forEach((cid, i) => {
        changes.push(change({ pk, cid, val: vals[i] ?? null, seq: seq++ }))
      })
    }
    return {
      kind: 'full',
      origin: ORIGIN,
      version: 5,
      seqs: [0, seq - 1],
      lastSeq: seq - 1,
      ts: 1_700_000_000_000,
      changes,
    }
  }

  function valueBytes(v: SqlValue): number {
    if (typeof v === 'string') return Buffer.byteLength(v)
    if (typeof v === 'bigint') return 8
    if (typeof v === 'number') return 8
    return v === null ? 0 : v.length
  }

  it('encodes a 1000-change chunk of one table without repeating names, ids or pks', (t) => {
    const chunk = machinesChunk(250)
    assert.equal(chunk.changes.length, 1000)
    const bytes = encodeMessage({ type: 'change', clusterId: 1, sender: SENDER, chunk })
    // Naive: every change spells out table, cid, pk, actorId and four 8-byte numbers.
    let naive = 0
    // Bound: per change a head byte, two dictionary references, colVersion, cl and seq (one
    // byte each while small), the value with a 1-byte length or tag payload; each pk once per
    // row; the names once; the header.
    let bound = MESSAGE_HEADER_BYTES + CHUNK_HEADER_BYTES_MAX
    for (const name of ['machines', 'name', 'region', 'cpus', 'memory_mb']) bound += 2 + name.length
    let prevPk: Uint8Array | null = null
    for (const c of chunk.changes) {
      naive += c.table.length + c.cid.length + c.pk.length + 16 + 4 * 8 + valueBytes(c.val)
      bound += 1 + 1 + 1 + 1 + 1 + 1 + valueBytes(c.val)
      if (c.pk !== prevPk) bound += 1 + c.pk.length
      prevPk = c.pk
    }
    t.diagnostic(
      `1000 changes (250 rows x 4 columns): ${bytes.length} bytes, ` +
        `${(bytes.length / 1000).toFixed(1)} bytes/change (naive ${naive}, bound ${bound})`,
    )
    assert.ok(bytes.length <= bound, `${bytes.length} > ${bound}`)
    assert.ok(bytes.length < naive / 3, `${bytes.length} not well below naive ${naive}`)
    // "machines" appears once.
    assert.equal(Buffer.from(bytes).toString('latin1').split('machines').length - 1, 1)
    const result = decodeMessage(bytes)
    assert.ok(result.ok)
    assert.deepStrictEqual(result.message, { type: 'change', clusterId: 1, sender: SENDER, chunk })
  })

  it('handles a 10,000-row chunk quickly', () => {
    const chunk = machinesChunk(10_000)
    const started = performance.now()
    const bytes = encodeMessage({ type: 'change', clusterId: 1, sender: SENDER, chunk })
    const result = decodeMessage(bytes)
    const elapsedMs = performance.now() - started
    assert.ok(result.ok)
    assert.equal(chunkEncodedBytes(chunk), bytes.length - MESSAGE_HEADER_BYTES)
    assert.ok(elapsedMs < 2000, `took ${elapsedMs} ms`)
  })

  it('chunkEncodedBytes is exact and ChunkSizer a tight upper bound', () => {
    fc.assert(
      fc.property(chunkArb, (chunk) => {
        const bytes = encodeMessage({ type: 'change', clusterId: 0, sender: SENDER, chunk })
        const exact = chunkEncodedBytes(chunk)
        assert.equal(exact, bytes.length - MESSAGE_HEADER_BYTES)
        if (chunk.kind !== 'full') return
        const sizer = new ChunkSizer(chunk.seqs[0])
        for (const c of chunk.changes) {
          const before = sizer.bytes
          const measured = sizer.measure(c)
          assert.equal(sizer.bytes, before, 'measure() must not change the sizer')
          assert.equal(sizer.add(c), measured)
          assert.equal(sizer.bytes, before + measured)
        }
        assert.equal(sizer.changes, chunk.changes.length)
        assert.ok(sizer.bytes >= exact && sizer.bytes <= exact + 42, `${sizer.bytes} vs ${exact}`)
        // Without knowing where the seqs start it is still an upper bound.
        const blind = new ChunkSizer()
        for (const c of chunk.changes) blind.add(c)
        assert.ok(blind.bytes >= exact)
        blind.reset()
        assert.equal(blind.changes, 0)
        assert.equal(blind.bytes, CHUNK_HEADER_BYTES_MAX)
      }),
      { numRuns: RUNS },
    )
  })

  it('bounds sync-chunks overhead and needs by the exported constants', () => {
    fc.assert(
      fc.property(fc.array(needArb, { maxLength: 5 }), (rest) => {
        const bytes = encodeMessage({
          type: 'sync-chunks',
          clusterId: 0,
          sender: SENDER,
          chunks: [],
          rest,
        })
        assert.ok(bytes.length <= SYNC_CHUNKS_OVERHEAD_BYTES_MAX + rest.length * NEED_BYTES_MAX)
      }),
      { numRuns: RUNS },
    )
  })
})

describe('wire - encoder refuses invalid messages', () => {
  const refuses = (m: Message, pattern: RegExp): void => {
    assert.throws(() => encodeMessage(m), pattern)
  }

  it('refuses values SQLite cannot hold', () => {
    refuses(changeMessage([change({ val: NaN })]), /NaN/)
    refuses(changeMessage([change({ val: 2n ** 63n })]), /outside 64 bits/)
    refuses(changeMessage([change({ val: INT64_MIN - 1n })]), /outside 64 bits/)
    refuses(changeMessage([change({ val: 'lone \uD800 surrogate' })]), /lone surrogate/)
    refuses(changeMessage([change({ cid: '\uDC00' })]), /cid .*lone surrogate/)
    refuses(changeMessage([change({ val: undefined as unknown as SqlValue })]), /not a SqlValue/)
  })

  it('refuses numbers that are not non-negative safe integers', () => {
    refuses(changeMessage([], { version: 2 ** 53 }), /chunk version must be a non-negative safe/)
    refuses(changeMessage([], { version: -1 }), /chunk version/)
    refuses(changeMessage([], { ts: 1.5 }), /chunk ts/)
    refuses(changeMessage([change({ colVersion: 2 ** 60 })]), /colVersion/)
    refuses({ type: 'sync-state', clusterId: 0, sender: SENDER, session: -1, haves: [] }, /session/)
    refuses(
      {
        type: 'sync-needs',
        clusterId: 0,
        sender: SENDER,
        session: 1,
        maxBytes: 1,
        needs: [{ origin: ORIGIN, start: 1, end: 2 ** 53, fromSeq: 0 }],
      },
      /need end/,
    )
    refuses({ type: 'sync-start', clusterId: 65_536, sender: SENDER }, /clusterId/)
  })

  it('refuses ids that are not 16 bytes', () => {
    refuses({ type: 'sync-start', clusterId: 0, sender: new Uint8Array(15) }, /sender must be 16/)
    refuses(changeMessage([], { origin: new Uint8Array(17) }), /chunk origin must be 16 bytes/)
  })

  it('refuses chunks whose changes are not of their origin, version and seqs', () => {
    refuses(changeMessage([change({ actorId: SENDER })]), /actorId .* is not the chunk's origin/)
    refuses(changeMessage([change({ dbVersion: 6 })]), /dbVersion 6 .* not the chunk's version/)
    refuses(changeMessage([change({ seq: 101 })]), /outside the chunk's seqs/)
    refuses(changeMessage([], { seqs: [5, 4] }), /start > end/)
    refuses(changeMessage([], { lastSeq: 99 }), /lastSeq 99 is below/)
  })
})
