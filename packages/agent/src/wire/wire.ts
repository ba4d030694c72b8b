/**
 * The replication wire format, version 1: `Message` values (messages.ts) to bytes and back.
 *
 * ```
 * message  = version:u8 (1) clusterId:u16 (big-endian) type:u8 sender:id body
 *            (nothing may follow the body)
 * body     = change        chunk                                         type 1
 *          | sync-start    (empty)                                       type 2
 *          | sync-state    session:uv count:uv have*count                type 3
 *          | sync-reject   reason:u8 (1 busy, 2 cluster, 3 session, 4 malformed)   type 4
 *          | sync-needs    session:uv maxBytes:uv count:uv need*count    type 5
 *          | sync-chunks   count:uv chunk*count count:uv need*count      type 6 (chunks, rest)
 * have     = origin:id head:uv count:uv range*count                     (the gaps)
 * need     = origin:id range fromSeq:uv                                  (start..end)
 * range    = start:uv span:uv                                            (end = start + span)
 * chunk    = 1 origin:id version:uv seqs:range lastSeqAfter:uv ts:uv count:uv change*count
 *                                                           (lastSeq = seqs.end + lastSeqAfter)
 *          | 2 origin:id versions:range ts:uv
 * change   = head:u8 table:ref [pk:bytes unless PK_SAME] cid:ref colVersion:uv cl:uv seq:uv value
 * head     = value tag (bits 0-2) | PK_SAME (0x08) | SEQ_NEXT (0x10); bits 5-7 are zero
 *            PK_SAME:  pk equals the previous change's pk (set whenever it does)
 *            SEQ_NEXT: the seq field is seq - previous seq - 1 (set whenever seq > previous
 *                      seq); otherwise it is seq - seqs.start
 * ref      = uv: 0 then str adds a new entry to the chunk's string dictionary (tables and cids
 *            share it; an entry is added only the first time its string appears); k >= 1 is
 *            entry k - 1
 * value    = INTEGER (tag 1) zigzag varint of the 64-bit value (1..10 bytes)
 *          | REAL (tag 2)    8 bytes IEEE 754 binary64, little-endian (never a NaN)
 *          | TEXT (tag 3)    str
 *          | BLOB (tag 4)    bytes
 *          | NULL (tag 5)    nothing
 * str      = length:uv UTF-8 bytes          bytes = length:uv bytes          id = 16 bytes
 * uv       = unsigned LEB128 varint, minimal; at most 2^53 - 1 (at most 8 bytes)
 * ```
 *
 * A change inside a chunk carries neither `actorId` nor `dbVersion`: they are the chunk's `origin`
 * and `version`. The tags are SQLite's type codes (values.ts).
 *
 * The encoding is canonical: every message has exactly one encoding, and the decoder rejects any
 * other (overlong varints, a literal pk or seq where the short form applies, a dictionary entry
 * added twice). So `encodeMessage(decodeMessage(b).message)` gives back `b` for every accepted `b`,
 * which the tests check on mutated inputs.
 *
 * Encoding a message that breaks the types' invariants (a NaN, an id not 16 bytes long, a number
 * that is not a non-negative safe integer, a range with start > end, a change whose actorId or
 * dbVersion is not its chunk's) is a programmer error: `encodeMessage` throws an AssertionError
 * saying what is wrong. Decoding never throws: anything short, long, out of range, non-canonical
 * or not UTF-8 gives `{ ok: false, error }`. Every count and length is checked against the bytes
 * left before anything is allocated for it, so a lying prefix costs nothing.
 *
 * Decoded byte arrays (`sender`, `origin`, `pk`, BLOB values) are fresh copies, never views of
 * the input: transports may hand out views of buffers they reuse. A chunk's changes share its
 * `origin` array as their `actorId`, and consecutive changes of one row share one `pk` array.
 */
import assert from 'node:assert/strict'
import type { Change } from '../crdt/changes.ts'
import type { VersionRange } from '../crdt/version-ranges.ts'
import {
  TYPE_BLOB,
  TYPE_INTEGER,
  TYPE_NULL,
  TYPE_REAL,
  TYPE_TEXT,
  type SqlValue,
} from '../crdt/values.ts'
import type { Chunk, Message, MessageType, Need, OriginHave, SyncRejectReason } from './messages.ts'

/** The first byte of every message. */
export const WIRE_VERSION = 1
/** Bytes of an actor id (sender, origin, actorId). */
export const ID_BYTES = 16
/** version, clusterId, type and sender. */
export const MESSAGE_HEADER_BYTES = 1 + 2 + 1 + ID_BYTES
/** Most bytes a varint holding a safe integer takes. */
const UV_BYTES_MAX = 8
/** Most bytes of a full chunk before its first change (kind, origin, five fields, count). */
export const CHUNK_HEADER_BYTES_MAX = 1 + ID_BYTES + 6 * UV_BYTES_MAX
/** Most bytes of one `Need` (origin, start, span, fromSeq). */
export const NEED_BYTES_MAX = ID_BYTES + 3 * UV_BYTES_MAX
/** Most bytes of a `sync-chunks` message besides its chunks and needs (header, two counts). */
export const SYNC_CHUNKS_OVERHEAD_BYTES_MAX = MESSAGE_HEADER_BYTES + 2 * UV_BYTES_MAX

const TYPE_CODES: Readonly<Record<MessageType, number>> = {
  change: 1,
  'sync-start': 2,
  'sync-state': 3,
  'sync-reject': 4,
  'sync-needs': 5,
  'sync-chunks': 6,
}
const TYPES_BY_CODE = invert(TYPE_CODES)

const REASON_CODES: Readonly<Record<SyncRejectReason, number>> = {
  busy: 1,
  cluster: 2,
  session: 3,
  malformed: 4,
}
const REASONS_BY_CODE = invert(REASON_CODES)

function invert<K extends string>(codes: Readonly<Record<K, number>>): readonly (K | undefined)[] {
  const out: (K | undefined)[] = []
  for (const [name, code] of Object.entries(codes) as [K, number][]) out[code] = name
  return out
}

const CHUNK_FULL = 1
const CHUNK_EMPTY = 2

const HEAD_TAG_MASK = 0x07
const HEAD_PK_SAME = 0x08
const HEAD_SEQ_NEXT = 0x10
const HEAD_RESERVED = 0xe0

/** Smallest encodings, used to bound counts by the bytes left. */
const CHANGE_BYTES_MIN = 6 // head, table, cid, colVersion, cl, seq; PK_SAME, NULL value
const HAVE_BYTES_MIN = ID_BYTES + 2
const NEED_BYTES_MIN = ID_BYTES + 3
const RANGE_BYTES_MIN = 2
const CHUNK_BYTES_MIN = 1 + ID_BYTES + 3 // an empty chunk

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n
/** Integers in [-2^52, 2^52) zigzag below 2^53, so plain number arithmetic handles them. */
const FAST_INT_MIN = -(2n ** 52n)
const FAST_INT_MAX = 2n ** 52n - 1n
/** A surrogate code unit that is not half of a pair (the `u` flag keeps pairs whole). */
const LONE_SURROGATE = /\p{Cs}/u

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

// ------------------------------------------------------------------------------ sizes

/** Bytes of `v` (a non-negative safe integer) as a varint. */
function uvBytes(v: number): number {
  let n = 1
  while (v >= 0x80) {
    v = Math.floor(v / 0x80)
    n++
  }
  return n
}

/** Bytes of `v` (a 64-bit signed integer) as a zigzag varint. */
function intBytes(v: bigint): number {
  if (v >= FAST_INT_MIN && v <= FAST_INT_MAX) {
    const n = Number(v)
    return uvBytes(n >= 0 ? n * 2 : -n * 2 - 1)
  }
  let z = v >= 0n ? v << 1n : (-v << 1n) - 1n
  let n = 1
  while (z >= 0x80n) {
    z >>= 7n
    n++
  }
  return n
}

function strBytes(s: string): number {
  const n = Buffer.byteLength(s, 'utf8')
  return uvBytes(n) + n
}

function valueBytes(v: SqlValue): number {
  if (v === null) return 0
  if (typeof v === 'bigint') return intBytes(v)
  if (typeof v === 'number') return 8
  if (typeof v === 'string') return strBytes(v)
  return uvBytes(v.length) + v.length
}

/** What a chunk's changes are encoded against: the dictionary and the previous change. */
class ChangeContext {
  readonly dict = new Map<string, number>()
  prevPk: Uint8Array | null = null
  prevSeq = -1
  readonly seqStart: number

  constructor(seqStart: number) {
    this.seqStart = seqStart
  }

  pkSame(pk: Uint8Array): boolean {
    return this.prevPk !== null && sameBytes(pk, this.prevPk)
  }

  seqNext(seq: number): boolean {
    return this.prevSeq >= 0 && seq > this.prevSeq
  }

  seqField(seq: number, next: boolean): number {
    return next ? seq - this.prevSeq - 1 : seq - this.seqStart
  }

  /**
   * Encoded bytes of `c` after the changes seen so far; with `commit`, also records it as seen.
   * Mirrors `writeChange` (the tests hold the two to the same byte count).
   */
  changeBytes(c: Change, commit: boolean): number {
    let n = 1
    const tableIndex = this.dict.get(c.table)
    n += tableIndex === undefined ? 1 + strBytes(c.table) : uvBytes(tableIndex + 1)
    const pkSame = this.pkSame(c.pk)
    if (!pkSame) n += uvBytes(c.pk.length) + c.pk.length
    const cidIndex =
      this.dict.get(c.cid) ?? (tableIndex === undefined && c.cid === c.table ? this.dict.size : -1)
    n += cidIndex < 0 ? 1 + strBytes(c.cid) : uvBytes(cidIndex + 1)
    const next = this.seqNext(c.seq)
    n += uvBytes(c.colVersion) + uvBytes(c.cl) + uvBytes(Math.max(0, this.seqField(c.seq, next)))
    n += valueBytes(c.val)
    if (commit) {
      if (tableIndex === undefined) this.dict.set(c.table, this.dict.size)
      if (!this.dict.has(c.cid)) this.dict.set(c.cid, this.dict.size)
      this.prevPk = c.pk
      this.prevSeq = c.seq
    }
    return n
  }
}

/**
 * Exact encoded size of `chunk` (as the body of a `change` message, or one chunk of
 * `sync-chunks`). Assumes the chunk is valid (`encodeMessage` checks that).
 */
export function chunkEncodedBytes(chunk: Chunk): number {
  if (chunk.kind === 'empty') {
    const [start, end] = chunk.versions
    return 1 + ID_BYTES + uvBytes(start) + uvBytes(end - start) + uvBytes(chunk.ts)
  }
  const [seqStart, seqEnd] = chunk.seqs
  let n =
    1 +
    ID_BYTES +
    uvBytes(chunk.version) +
    uvBytes(seqStart) +
    uvBytes(seqEnd - seqStart) +
    uvBytes(chunk.lastSeq - seqEnd) +
    uvBytes(chunk.ts) +
    uvBytes(chunk.changes.length)
  const context = new ChangeContext(seqStart)
  for (const c of chunk.changes) n += context.changeBytes(c, true)
  return n
}

/**
 * Measures a full chunk as changes are added to it, for cutting a version into chunks of bounded
 * encoded size: `measure` a change, and if `bytes` plus that is over the budget, cut the chunk
 * and `reset()` first; then `add` it.
 *
 * `bytes` is an upper bound on `chunkEncodedBytes` of a chunk holding the changes added (in that
 * order) with seqs starting at `seqStart`: each change is counted exactly (dictionary and
 * repeated pks included) and the header at its largest, so the bound is at most
 * `CHUNK_HEADER_BYTES_MAX - 23` = 42 bytes above the exact size. A `seqStart` below the chunk's
 * real one (0 when unknown) still gives an upper bound, a few bytes looser per change that is
 * out of seq order.
 */
export class ChunkSizer {
  private context: ChangeContext
  private changesBytes = 0
  private count = 0

  constructor(seqStart = 0) {
    this.context = new ChangeContext(seqStart)
  }

  /** Upper bound on the encoded chunk so far. */
  get bytes(): number {
    return CHUNK_HEADER_BYTES_MAX + this.changesBytes
  }

  /** Changes added since the last reset. */
  get changes(): number {
    return this.count
  }

  /** How much `bytes` would grow by if `change` were added now. */
  measure(change: Change): number {
    return this.context.changeBytes(change, false)
  }

  /** Adds `change`; returns how much `bytes` grew by. */
  add(change: Change): number {
    const n = this.context.changeBytes(change, true)
    this.changesBytes += n
    this.count++
    return n
  }

  /** Starts a new, empty chunk whose seqs start at `seqStart`. */
  reset(seqStart = 0): void {
    this.context = new ChangeContext(seqStart)
    this.changesBytes = 0
    this.count = 0
  }
}

// ------------------------------------------------------------------------------ writing

class Writer {
  private buf: Uint8Array
  private view: DataView
  private pos = 0

  constructor(capacity: number) {
    this.buf = new Uint8Array(capacity)
    this.view = new DataView(this.buf.buffer)
  }

  private ensure(n: number): void {
    const needed = this.pos + n
    if (needed <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < needed) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
    this.view = new DataView(next.buffer)
  }

  u8(v: number): void {
    this.ensure(1)
    this.buf[this.pos++] = v
  }

  u16(v: number): void {
    this.ensure(2)
    this.view.setUint16(this.pos, v)
    this.pos += 2
  }

  /** A non-negative safe integer (checked by the caller). */
  uv(v: number): void {
    this.ensure(UV_BYTES_MAX)
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 0x80) | 0x80
      v = Math.floor(v / 0x80)
    }
    this.buf[this.pos++] = v
  }

  /** A 64-bit signed integer (checked by the caller), zigzagged. */
  int(v: bigint): void {
    if (v >= FAST_INT_MIN && v <= FAST_INT_MAX) {
      const n = Number(v)
      this.uv(n >= 0 ? n * 2 : -n * 2 - 1)
      return
    }
    this.ensure(10)
    let z = v >= 0n ? v << 1n : (-v << 1n) - 1n
    while (z >= 0x80n) {
      this.buf[this.pos++] = Number(z & 0x7fn) | 0x80
      z >>= 7n
    }
    this.buf[this.pos++] = Number(z)
  }

  f64(v: number): void {
    this.ensure(8)
    this.view.setFloat64(this.pos, v, true)
    this.pos += 8
  }

  raw(b: Uint8Array): void {
    this.ensure(b.length)
    this.buf.set(b, this.pos)
    this.pos += b.length
  }

  bytes(b: Uint8Array): void {
    this.uv(b.length)
    this.raw(b)
  }

  /** Well-formed text (checked by the caller). */
  str(s: string): void {
    const n = Buffer.byteLength(s, 'utf8')
    this.uv(n)
    this.ensure(n)
    const { written } = textEncoder.encodeInto(s, this.buf.subarray(this.pos, this.pos + n))
    assert.equal(written, n)
    this.pos += n
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.pos)
  }
}

function isCount(v: number): boolean {
  return Number.isSafeInteger(v) && v >= 0
}

function checkCount(v: number, what: string): void {
  if (!isCount(v))
    assert.fail(`wire: ${what} must be a non-negative safe integer, got ${String(v)}`)
}

function checkId(id: Uint8Array, what: string): void {
  if (!((id as unknown) instanceof Uint8Array) || id.length !== ID_BYTES) {
    const got = (id as unknown) instanceof Uint8Array ? `${id.length} bytes` : typeof id
    assert.fail(`wire: ${what} must be ${ID_BYTES} bytes, got ${got}`)
  }
}

/** Why `s` cannot go on the wire as text, or null if it can. */
function textProblem(s: string): string | null {
  if (typeof (s as unknown) !== 'string') return `not a string (${typeof s})`
  if (LONE_SURROGATE.test(s)) return 'a lone surrogate (not valid UTF-16)'
  return null
}

function checkRange(range: VersionRange, what: string): void {
  const [start, end] = range
  checkCount(start, `${what} start`)
  checkCount(end, `${what} end`)
  if (start > end) assert.fail(`wire: ${what} [${start}, ${end}] has start > end`)
}

function writeRange(w: Writer, range: VersionRange, what: string): void {
  checkRange(range, what)
  w.uv(range[0])
  w.uv(range[1] - range[0])
}

function writeUv(w: Writer, v: number, what: string): void {
  checkCount(v, what)
  w.uv(v)
}

/** The tag of `v`, or why it cannot go on the wire. */
function valueTag(v: SqlValue): number | string {
  if (v === null) return TYPE_NULL
  if (typeof v === 'bigint') {
    return v < INT64_MIN || v > INT64_MAX ? `INTEGER ${String(v)} outside 64 bits` : TYPE_INTEGER
  }
  if (typeof v === 'number') return Number.isNaN(v) ? 'REAL NaN (SQLite has no NaN)' : TYPE_REAL
  if (typeof v === 'string') {
    const problem = textProblem(v)
    return problem === null ? TYPE_TEXT : `TEXT with ${problem}`
  }
  return (v as unknown) instanceof Uint8Array ? TYPE_BLOB : `not a SqlValue (${typeof v})`
}

function writeValue(w: Writer, v: SqlValue): void {
  if (v === null) return
  if (typeof v === 'bigint') w.int(v)
  else if (typeof v === 'number') w.f64(v)
  else if (typeof v === 'string') w.str(v)
  else w.bytes(v)
}

type FullChunk = Extract<Chunk, { kind: 'full' }>

/** Names change `i` of `chunk` in error messages (built only on failure). */
function describe(chunk: FullChunk, c: Change, i: number): string {
  return `change ${i} (${c.table}.${c.cid}) of version ${chunk.version}`
}

function writeRef(
  w: Writer,
  context: ChangeContext,
  s: string,
  field: 'table' | 'cid',
  chunk: FullChunk,
  c: Change,
  i: number,
): void {
  const index = context.dict.get(s)
  if (index !== undefined) {
    w.uv(index + 1)
    return
  }
  const problem = textProblem(s)
  if (problem !== null) assert.fail(`wire: ${field} of ${describe(chunk, c, i)} has ${problem}`)
  context.dict.set(s, context.dict.size)
  w.uv(0)
  w.str(s)
}

function writeChange(
  w: Writer,
  context: ChangeContext,
  chunk: FullChunk,
  c: Change,
  i: number,
): void {
  if (!sameBytes(c.actorId, chunk.origin)) {
    assert.fail(
      `wire: actorId ${hex(c.actorId)} of ${describe(chunk, c, i)} is not the chunk's origin ${hex(chunk.origin)}`,
    )
  }
  if (c.dbVersion !== chunk.version) {
    assert.fail(
      `wire: dbVersion ${String(c.dbVersion)} of ${describe(chunk, c, i)} is not the chunk's version`,
    )
  }
  if (!((c.pk as unknown) instanceof Uint8Array)) {
    assert.fail(`wire: pk of ${describe(chunk, c, i)} is not a Uint8Array`)
  }
  if (!isCount(c.colVersion) || !isCount(c.cl) || !isCount(c.seq)) {
    assert.fail(
      `wire: colVersion ${String(c.colVersion)}, cl ${String(c.cl)} and seq ${String(c.seq)} of ${describe(chunk, c, i)} must be non-negative safe integers`,
    )
  }
  const [seqStart, seqEnd] = chunk.seqs
  if (c.seq < seqStart || c.seq > seqEnd) {
    assert.fail(
      `wire: seq ${c.seq} of ${describe(chunk, c, i)} is outside the chunk's seqs [${seqStart}, ${seqEnd}]`,
    )
  }
  const tag = valueTag(c.val)
  if (typeof tag === 'string') assert.fail(`wire: value of ${describe(chunk, c, i)} is ${tag}`)
  const pkSame = context.pkSame(c.pk)
  const seqNext = context.seqNext(c.seq)
  w.u8(tag | (pkSame ? HEAD_PK_SAME : 0) | (seqNext ? HEAD_SEQ_NEXT : 0))
  writeRef(w, context, c.table, 'table', chunk, c, i)
  if (!pkSame) w.bytes(c.pk)
  writeRef(w, context, c.cid, 'cid', chunk, c, i)
  w.uv(c.colVersion)
  w.uv(c.cl)
  w.uv(context.seqField(c.seq, seqNext))
  writeValue(w, c.val)
  context.prevPk = c.pk
  context.prevSeq = c.seq
}

function writeChunk(w: Writer, chunk: Chunk): void {
  checkId(chunk.origin, 'chunk origin')
  if (chunk.kind === 'empty') {
    w.u8(CHUNK_EMPTY)
    w.raw(chunk.origin)
    writeRange(w, chunk.versions, 'empty chunk versions')
    writeUv(w, chunk.ts, 'chunk ts')
    return
  }
  checkCount(chunk.version, 'chunk version')
  checkRange(chunk.seqs, `seqs of version ${chunk.version}`)
  checkCount(chunk.lastSeq, `lastSeq of version ${chunk.version}`)
  if (chunk.lastSeq < chunk.seqs[1]) {
    assert.fail(`wire: lastSeq ${chunk.lastSeq} is below seqs end ${chunk.seqs[1]}`)
  }
  checkCount(chunk.ts, 'chunk ts')
  w.u8(CHUNK_FULL)
  w.raw(chunk.origin)
  w.uv(chunk.version)
  writeRange(w, chunk.seqs, 'chunk seqs')
  w.uv(chunk.lastSeq - chunk.seqs[1])
  w.uv(chunk.ts)
  w.uv(chunk.changes.length)
  const context = new ChangeContext(chunk.seqs[0])
  chunk.changes.forEach((c, i) => {
    writeChange(w, context, chunk, c, i)
  })
}

function writeNeed(w: Writer, need: Need): void {
  checkId(need.origin, 'need origin')
  w.raw(need.origin)
  writeRange(w, [need.start, need.end], 'need')
  writeUv(w, need.fromSeq, 'need fromSeq')
}

function writeHave(w: Writer, have: OriginHave): void {
  checkId(have.origin, 'have origin')
  w.raw(have.origin)
  writeUv(w, have.head, 'have head')
  w.uv(have.gaps.length)
  for (const gap of have.gaps) writeRange(w, gap, 'gap')
}

/**
 * Encodes a message. Throws an AssertionError (a programmer error) if the message breaks the
 * invariants of its types; see the top of this file.
 */
export function encodeMessage(m: Message): Uint8Array {
  if (!Number.isInteger(m.clusterId) || m.clusterId < 0 || m.clusterId > 0xffff) {
    assert.fail(`wire: clusterId must be an integer in 0..65535, got ${String(m.clusterId)}`)
  }
  checkId(m.sender, 'sender')
  const w = new Writer(256)
  w.u8(WIRE_VERSION)
  w.u16(m.clusterId)
  w.u8(TYPE_CODES[m.type])
  w.raw(m.sender)
  switch (m.type) {
    case 'change':
      writeChunk(w, m.chunk)
      break
    case 'sync-start':
      break
    case 'sync-state':
      writeUv(w, m.session, 'session')
      w.uv(m.haves.length)
      for (const have of m.haves) writeHave(w, have)
      break
    case 'sync-reject': {
      const code = REASON_CODES[m.reason] as number | undefined
      if (code === undefined) assert.fail(`wire: unknown reject reason ${m.reason}`)
      w.u8(code)
      break
    }
    case 'sync-needs':
      writeUv(w, m.session, 'session')
      writeUv(w, m.maxBytes, 'maxBytes')
      w.uv(m.needs.length)
      for (const need of m.needs) writeNeed(w, need)
      break
    case 'sync-chunks':
      w.uv(m.chunks.length)
      for (const chunk of m.chunks) writeChunk(w, chunk)
      w.uv(m.rest.length)
      for (const need of m.rest) writeNeed(w, need)
      break
  }
  return w.finish()
}

// ------------------------------------------------------------------------------ reading

export type DecodeResult =
  { readonly ok: true; readonly message: Message } | { readonly ok: false; readonly error: string }

/** Thrown inside the decoder only; decodeMessage turns it into `{ ok: false }`. */
class Malformed extends Error {}

class Reader {
  private readonly buf: Uint8Array
  private readonly view: DataView
  private pos = 0

  constructor(bytes: Uint8Array) {
    // A plain Uint8Array over the same memory, so that slice() copies (Buffer#slice would not).
    this.buf = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  get remaining(): number {
    return this.buf.length - this.pos
  }

  fail(what: string): never {
    throw new Malformed(`${what} (at byte ${this.pos})`)
  }

  need(n: number, what: string): void {
    if (n > this.remaining)
      this.fail(`truncated ${what}: ${n} bytes needed, ${this.remaining} left`)
  }

  u8(what: string): number {
    if (this.pos >= this.buf.length) this.fail(`truncated ${what}`)
    return this.buf[this.pos++] as number
  }

  u16(what: string): number {
    this.need(2, what)
    const v = this.view.getUint16(this.pos)
    this.pos += 2
    return v
  }

  id(what: string): Uint8Array {
    this.need(ID_BYTES, what)
    return this.buf.slice(this.pos, (this.pos += ID_BYTES))
  }

  /** A minimal varint holding a safe integer. */
  uv(what: string): number {
    let v = 0
    let scale = 1
    for (let i = 0; i < UV_BYTES_MAX; i++) {
      const b = this.u8(what)
      v += (b & 0x7f) * scale
      if (v > Number.MAX_SAFE_INTEGER) this.fail(`${what} above 2^53 - 1`)
      if (b < 0x80) {
        if (b === 0 && i > 0) this.fail(`overlong varint in ${what}`)
        return v
      }
      scale *= 0x80
    }
    return this.fail(`${what} above 2^53 - 1`)
  }

  /** A count of items that take at least `itemBytesMin` bytes each. */
  count(itemBytesMin: number, what: string): number {
    const n = this.uv(what)
    if (n * itemBytesMin > this.remaining) {
      this.fail(`${what} ${n} does not fit in the ${this.remaining} bytes left`)
    }
    return n
  }

  /** A minimal zigzag varint holding a 64-bit signed integer. */
  int(what: string): bigint {
    let lo = 0
    let scale = 1
    for (let i = 0; i < 7; i++) {
      const b = this.u8(what)
      lo += (b & 0x7f) * scale
      if (b < 0x80) {
        if (b === 0 && i > 0) this.fail(`overlong varint in ${what}`)
        return BigInt(lo % 2 === 0 ? lo / 2 : -(lo + 1) / 2)
      }
      scale *= 0x80
    }
    let z = BigInt(lo)
    for (let i = 7; i < 10; i++) {
      const b = this.u8(what)
      z |= BigInt(b & 0x7f) << BigInt(7 * i)
      if (b < 0x80) {
        if (b === 0) this.fail(`overlong varint in ${what}`)
        if (i === 9 && b > 1) this.fail(`${what} outside 64 bits`)
        return (z >> 1n) ^ -(z & 1n)
      }
    }
    return this.fail(`${what} outside 64 bits`)
  }

  f64(what: string): number {
    this.need(8, what)
    const v = this.view.getFloat64(this.pos, true)
    if (Number.isNaN(v)) this.fail(`${what} is NaN`)
    this.pos += 8
    return v
  }

  bytes(what: string): Uint8Array {
    const n = this.uv(`${what} length`)
    this.need(n, what)
    return this.buf.slice(this.pos, (this.pos += n))
  }

  str(what: string): string {
    const n = this.uv(`${what} length`)
    this.need(n, what)
    const bytes = this.buf.subarray(this.pos, this.pos + n)
    let s: string
    try {
      s = textDecoder.decode(bytes)
    } catch {
      // Invalid UTF-8 (the decoder is fatal): malformed input, reported as such.
      return this.fail(`${what} is not valid UTF-8`)
    }
    this.pos += n
    return s
  }
}

function readRange(r: Reader, what: string): VersionRange {
  const start = r.uv(`${what} start`)
  const end = start + r.uv(`${what} span`)
  if (end > Number.MAX_SAFE_INTEGER) r.fail(`${what} end above 2^53 - 1`)
  return [start, end]
}

function readNeed(r: Reader): Need {
  const origin = r.id('need origin')
  const [start, end] = readRange(r, 'need')
  return { origin, start, end, fromSeq: r.uv('need fromSeq') }
}

function readHave(r: Reader): OriginHave {
  const origin = r.id('have origin')
  const head = r.uv('have head')
  const count = r.count(RANGE_BYTES_MIN, 'gap count')
  const gaps: VersionRange[] = []
  for (let i = 0; i < count; i++) gaps.push(readRange(r, 'gap'))
  return { origin, head, gaps }
}

function readValue(r: Reader, tag: number): SqlValue {
  switch (tag) {
    case TYPE_INTEGER:
      return r.int('INTEGER')
    case TYPE_REAL:
      return r.f64('REAL')
    case TYPE_TEXT:
      return r.str('TEXT')
    case TYPE_BLOB:
      return r.bytes('BLOB')
    case TYPE_NULL:
      return null
    default:
      return r.fail(`unknown value tag ${tag}`)
  }
}

class Dictionary {
  private readonly entries: string[] = []
  private readonly seen = new Set<string>()

  read(r: Reader, what: string): string {
    const ref = r.uv(what)
    if (ref === 0) {
      const s = r.str(what)
      if (this.seen.has(s)) r.fail(`${what} adds "${s}" to the dictionary twice`)
      this.entries.push(s)
      this.seen.add(s)
      return s
    }
    const s = this.entries[ref - 1]
    if (s === undefined) r.fail(`${what} refers to entry ${ref - 1} of ${this.entries.length}`)
    return s
  }
}

function readChunk(r: Reader): Chunk {
  const kind = r.u8('chunk kind')
  if (kind !== CHUNK_FULL && kind !== CHUNK_EMPTY) r.fail(`unknown chunk kind ${kind}`)
  const origin = r.id('chunk origin')
  if (kind === CHUNK_EMPTY) {
    const versions = readRange(r, 'chunk versions')
    return { kind: 'empty', origin, versions, ts: r.uv('chunk ts') }
  }
  const version = r.uv('chunk version')
  const seqs = readRange(r, 'chunk seqs')
  const [seqStart, seqEnd] = seqs
  const lastSeq = seqEnd + r.uv('chunk lastSeq')
  if (lastSeq > Number.MAX_SAFE_INTEGER) r.fail('chunk lastSeq above 2^53 - 1')
  const ts = r.uv('chunk ts')
  const count = r.count(CHANGE_BYTES_MIN, 'change count')
  const dict = new Dictionary()
  const changes: Change[] = []
  let prevPk: Uint8Array | null = null
  let prevSeq = -1
  for (let i = 0; i < count; i++) {
    const head = r.u8('change head')
    if ((head & HEAD_RESERVED) !== 0) r.fail(`reserved bits set in change head ${head}`)
    const table = dict.read(r, 'table')
    let pk: Uint8Array
    if ((head & HEAD_PK_SAME) !== 0) {
      if (prevPk === null) r.fail('first change of a chunk says its pk is the previous one')
      pk = prevPk
    } else {
      pk = r.bytes('pk')
      if (prevPk !== null && sameBytes(pk, prevPk)) r.fail('pk repeated without PK_SAME')
    }
    const cid = dict.read(r, 'cid')
    const colVersion = r.uv('colVersion')
    const cl = r.uv('cl')
    const seqField = r.uv('seq')
    let seq: number
    if ((head & HEAD_SEQ_NEXT) !== 0) {
      if (prevSeq < 0) r.fail('first change of a chunk says its seq follows the previous one')
      seq = prevSeq + 1 + seqField
    } else {
      seq = seqStart + seqField
      if (prevSeq >= 0 && seq > prevSeq) r.fail('seq above the previous one without SEQ_NEXT')
    }
    if (seq > seqEnd) r.fail(`seq ${seq} above the chunk's seqs end ${seqEnd}`)
    const val = readValue(r, head & HEAD_TAG_MASK)
    changes.push({ table, pk, cid, val, colVersion, dbVersion: version, actorId: origin, cl, seq })
    prevPk = pk
    prevSeq = seq
  }
  return { kind: 'full', origin, version, seqs, lastSeq, ts, changes }
}

function readMessage(r: Reader): Message {
  const version = r.u8('version')
  if (version !== WIRE_VERSION) {
    r.fail(`unsupported wire version ${version} (this build speaks ${WIRE_VERSION})`)
  }
  const clusterId = r.u16('cluster id')
  const code = r.u8('type')
  const type = TYPES_BY_CODE[code]
  if (type === undefined) r.fail(`unknown message type ${code}`)
  const sender = r.id('sender')
  switch (type) {
    case 'change':
      return { type, clusterId, sender, chunk: readChunk(r) }
    case 'sync-start':
      return { type, clusterId, sender }
    case 'sync-state': {
      const session = r.uv('session')
      const count = r.count(HAVE_BYTES_MIN, 'have count')
      const haves: OriginHave[] = []
      for (let i = 0; i < count; i++) haves.push(readHave(r))
      return { type, clusterId, sender, session, haves }
    }
    case 'sync-reject': {
      const reasonCode = r.u8('reason')
      const reason = REASONS_BY_CODE[reasonCode]
      if (reason === undefined) r.fail(`unknown reject reason ${reasonCode}`)
      return { type, clusterId, sender, reason }
    }
    case 'sync-needs': {
      const session = r.uv('session')
      const maxBytes = r.uv('maxBytes')
      const count = r.count(NEED_BYTES_MIN, 'need count')
      const needs: Need[] = []
      for (let i = 0; i < count; i++) needs.push(readNeed(r))
      return { type, clusterId, sender, session, maxBytes, needs }
    }
    case 'sync-chunks': {
      const chunkCount = r.count(CHUNK_BYTES_MIN, 'chunk count')
      const chunks: Chunk[] = []
      for (let i = 0; i < chunkCount; i++) chunks.push(readChunk(r))
      const restCount = r.count(NEED_BYTES_MIN, 'rest count')
      const rest: Need[] = []
      for (let i = 0; i < restCount; i++) rest.push(readNeed(r))
      return { type, clusterId, sender, chunks, rest }
    }
  }
}

/**
 * Decodes one message. Never throws on any input: malformed input (including a message of
 * another wire version) gives `{ ok: false, error }` with a short description for logs.
 */
export function decodeMessage(bytes: Uint8Array): DecodeResult {
  const r = new Reader(bytes)
  try {
    const message = readMessage(r)
    if (r.remaining !== 0) r.fail(`${r.remaining} bytes after the message`)
    return { ok: true, message }
  } catch (err) {
    if (err instanceof Malformed) return { ok: false, error: err.message }
    throw err // a bug in this decoder, not bad input
  }
}

/**
 * The cluster id and type of a message, read from its header alone, for routing or rejecting a
 * message before decoding it; null when the header is short, of another wire version, or of an
 * unknown type. The body is not checked.
 */
export function peekHeader(bytes: Uint8Array): { clusterId: number; type: MessageType } | null {
  if (bytes.length < MESSAGE_HEADER_BYTES || bytes[0] !== WIRE_VERSION) return null
  const type = TYPES_BY_CODE[bytes[3] as number]
  if (type === undefined) return null
  return { clusterId: ((bytes[1] as number) << 8) | (bytes[2] as number), type }
}
