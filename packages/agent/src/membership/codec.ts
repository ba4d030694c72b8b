/**
 * The membership wire format, version 1. Big-endian, no padding, every length bounded.
 *
 * ```
 * packet  = version:u8 (1) clusterId:u16 type:u8 sender body count:u8 update*count
 * sender  = actorId:16 epoch:u64 incarnation:u32 addr:str
 * str     = length:u8 (1..255) utf8-bytes
 * update  = actorId:16 epoch:u64 incarnation:u32 state:u8 addr:str [accuser:16 if suspect]
 * body    = ping            seq:u32 target:16
 *         | ack             seq:u32
 *         | ping-req        seq:u32 target:16 targetAddr:str flags:u8 (bit 0: send nacks)
 *         | nack            seq:u32
 *         | gossip          (empty)
 *         | push-pull       flags:u8 (bit 0: join) count:u32 update*count
 *         | push-pull-reply count:u32 update*count
 * ```
 * Datagrams (ping .. gossip) carry piggybacked updates after the body; push-pull messages go
 * over streams and carry the sender's whole member table in the body (and zero piggybacked
 * updates). Epochs are integers below 2^53 written as u64. Decoding never throws: anything
 * short, long, out of range or not UTF-8 is `malformed`.
 */
import assert from 'node:assert/strict'
import { ACTOR_ID_BYTES, isActorIdHex } from '../runtime/actor-id.ts'
import type { MemberState, MemberUpdate } from './member.ts'

export const CODEC_VERSION = 1
/** Longest address on the wire, in UTF-8 bytes. */
export const ADDR_BYTES_MAX = 255
/** Most piggybacked updates in one datagram (the count is a u8). */
export const PIGGYBACK_UPDATES_MAX = 255

const TYPE_CODES = {
  ping: 1,
  ack: 2,
  'ping-req': 3,
  nack: 4,
  gossip: 5,
  'push-pull': 6,
  'push-pull-reply': 7,
} as const
export type MessageType = keyof typeof TYPE_CODES
const TYPES_BY_CODE: readonly (MessageType | undefined)[] = (() => {
  const out: (MessageType | undefined)[] = []
  for (const [name, code] of Object.entries(TYPE_CODES)) out[code] = name as MessageType
  return out
})()

const STATE_CODES: Record<MemberState, number> = { alive: 0, suspect: 1, down: 2, left: 3 }
const STATES_BY_CODE: readonly MemberState[] = ['alive', 'suspect', 'down', 'left']

/** Who sent a message: identity plus the incarnation it is at. */
export interface Sender {
  readonly actorId: string
  readonly addr: string
  readonly epoch: number
  readonly incarnation: number
}

export type Body =
  | { readonly type: 'ping'; readonly seq: number; readonly target: string }
  | { readonly type: 'ack'; readonly seq: number }
  | {
      readonly type: 'ping-req'
      readonly seq: number
      readonly target: string
      readonly targetAddr: string
      readonly nack: boolean
    }
  | { readonly type: 'nack'; readonly seq: number }
  | { readonly type: 'gossip' }
  | {
      readonly type: 'push-pull'
      readonly join: boolean
      readonly members: readonly MemberUpdate[]
    }
  | { readonly type: 'push-pull-reply'; readonly members: readonly MemberUpdate[] }

export interface Packet {
  readonly clusterId: number
  readonly sender: Sender
  readonly body: Body
  /** Piggybacked member updates (always empty for push-pull messages). */
  readonly updates: readonly MemberUpdate[]
}

export type DecodeFailure = 'malformed' | 'version'
export type DecodeResult =
  | { readonly ok: true; readonly packet: Packet }
  | { readonly ok: false; readonly reason: DecodeFailure; readonly clusterId: number | null }

// ------------------------------------------------------------------------------ hex actor ids

/** Whether `id` is a well-formed actor id: 32 lowercase hex digits. */
export const isActorId = isActorIdHex

function hexNibble(code: number): number {
  // '0'-'9' are 48-57, 'a'-'f' 97-102; callers only pass validated ids.
  return code <= 57 ? code - 48 : code - 87
}

// ------------------------------------------------------------------------------ writing

const encoder = new TextEncoder()
const TWO_POW_32 = 2 ** 32

/** UTF-8 length of `s` without encoding it. */
function utf8Length(s: string): number {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4
        i++
      } else n += 3
    } else n += 3
  }
  return n
}

class Writer {
  buf: Uint8Array
  pos = 0

  constructor(buf: Uint8Array) {
    this.buf = buf
  }

  u8(v: number): void {
    this.buf[this.pos++] = v
  }

  u16(v: number): void {
    this.buf[this.pos++] = v >>> 8
    this.buf[this.pos++] = v & 0xff
  }

  u32(v: number): void {
    const b = this.buf
    b[this.pos++] = v >>> 24
    b[this.pos++] = (v >>> 16) & 0xff
    b[this.pos++] = (v >>> 8) & 0xff
    b[this.pos++] = v & 0xff
  }

  u64(v: number): void {
    this.u32(Math.floor(v / TWO_POW_32))
    this.u32(v % TWO_POW_32)
  }

  actorId(id: string): void {
    assert.ok(this.pos + ACTOR_ID_BYTES <= this.buf.length, 'writer overflow')
    for (let i = 0; i < ACTOR_ID_BYTES; i++) {
      this.buf[this.pos + i] =
        (hexNibble(id.charCodeAt(2 * i)) << 4) | hexNibble(id.charCodeAt(2 * i + 1))
    }
    this.pos += ACTOR_ID_BYTES
  }

  str(s: string): void {
    const { read, written } = encoder.encodeInto(s, this.buf.subarray(this.pos + 1))
    assert.ok(read === s.length && written <= ADDR_BYTES_MAX, 'writer overflow')
    this.buf[this.pos] = written
    this.pos += 1 + written
  }

  bytes(b: Uint8Array): void {
    assert.ok(this.pos + b.length <= this.buf.length, 'writer overflow')
    this.buf.set(b, this.pos)
    this.pos += b.length
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.pos)
  }
}

/** First size of the datagram scratch buffer (it grows to the largest packet built). */
const SCRATCH_START_BYTES = 2048
/**
 * The smallest encoded member record (actor id, epoch, incarnation, state, empty address): a
 * count of records beyond what the bytes left could hold is malformed, not a reason to allocate.
 */
const MEMBER_RECORD_BYTES_MIN = 31

/**
 * Scratch space for building datagrams: one per process (everything here is synchronous), grown
 * on demand, so that building a packet allocates only its final copy.
 */
let scratch = new Uint8Array(SCRATCH_START_BYTES)
let scratchInUse = false

function strBytes(s: string): number {
  return 1 + utf8Length(s)
}

function checkAddr(addr: string): void {
  const n = utf8Length(addr)
  assert.ok(n >= 1 && n <= ADDR_BYTES_MAX, `address must be 1..${ADDR_BYTES_MAX} bytes: ${addr}`)
}

function checkIdentity(u: { actorId: string; epoch: number; incarnation: number }): void {
  assert.ok(isActorId(u.actorId), `bad actor id ${u.actorId}`)
  assert.ok(Number.isSafeInteger(u.epoch) && u.epoch >= 0, `bad epoch ${u.epoch}`)
  assert.ok(
    Number.isInteger(u.incarnation) && u.incarnation >= 0 && u.incarnation < TWO_POW_32,
    `bad incarnation ${u.incarnation}`,
  )
}

function senderBytes(sender: Sender): number {
  return ACTOR_ID_BYTES + 8 + 4 + strBytes(sender.addr)
}

function writeSender(w: Writer, sender: Sender): void {
  w.actorId(sender.actorId)
  w.u64(sender.epoch)
  w.u32(sender.incarnation)
  w.str(sender.addr)
}

/** Encoded size of one update. */
export function updateBytes(u: MemberUpdate): number {
  return (
    ACTOR_ID_BYTES + 8 + 4 + 1 + strBytes(u.addr) + (u.state === 'suspect' ? ACTOR_ID_BYTES : 0)
  )
}

function writeUpdate(w: Writer, u: MemberUpdate): void {
  w.actorId(u.actorId)
  w.u64(u.epoch)
  w.u32(u.incarnation)
  w.u8(STATE_CODES[u.state])
  w.str(u.addr)
  if (u.state === 'suspect') w.actorId(u.accuser ?? u.actorId)
}

/**
 * One update, encoded once so that it can be copied into many packets. A suspect update must
 * name its accuser (programmer error otherwise).
 */
export function encodeUpdate(u: MemberUpdate): Uint8Array {
  checkIdentity(u)
  checkAddr(u.addr)
  assert.ok(
    u.state !== 'suspect' || (u.accuser !== null && isActorId(u.accuser)),
    'suspect needs an accuser',
  )
  const w = new Writer(new Uint8Array(updateBytes(u)))
  writeUpdate(w, u)
  assert.ok(w.pos === w.buf.length)
  return w.buf
}

function bodyBytes(body: Body): number {
  switch (body.type) {
    case 'ping':
      return 4 + ACTOR_ID_BYTES
    case 'ack':
    case 'nack':
      return 4
    case 'ping-req':
      return 4 + ACTOR_ID_BYTES + strBytes(body.targetAddr) + 1
    case 'gossip':
      return 0
    case 'push-pull':
      return 1 + 4 + body.members.reduce((sum, u) => sum + updateBytes(u), 0)
    case 'push-pull-reply':
      return 4 + body.members.reduce((sum, u) => sum + updateBytes(u), 0)
  }
}

function writeBody(w: Writer, body: Body): void {
  switch (body.type) {
    case 'ping':
      w.u32(body.seq)
      w.actorId(body.target)
      return
    case 'ack':
    case 'nack':
      w.u32(body.seq)
      return
    case 'ping-req':
      w.u32(body.seq)
      w.actorId(body.target)
      w.str(body.targetAddr)
      w.u8(body.nack ? 1 : 0)
      return
    case 'gossip':
      return
    case 'push-pull':
      w.u8(body.join ? 1 : 0)
      w.u32(body.members.length)
      for (const u of body.members) writeUpdate(w, u)
      return
    case 'push-pull-reply':
      w.u32(body.members.length)
      for (const u of body.members) writeUpdate(w, u)
      return
  }
}

function checkBody(body: Body): void {
  switch (body.type) {
    case 'ping':
    case 'ack':
    case 'nack':
    case 'ping-req':
      assert.ok(Number.isInteger(body.seq) && body.seq >= 0 && body.seq < TWO_POW_32, 'bad seq')
      if (body.type === 'ping' || body.type === 'ping-req') assert.ok(isActorId(body.target))
      if (body.type === 'ping-req') checkAddr(body.targetAddr)
      return
    case 'gossip':
      return
    case 'push-pull':
    case 'push-pull-reply':
      for (const u of body.members) {
        checkIdentity(u)
        checkAddr(u.addr)
      }
  }
}

/**
 * Builds a datagram: header and body first, then as many pre-encoded updates as fit in
 * `maxBytes`. Never produces more than `maxBytes` bytes.
 */
export class PacketBuilder {
  private readonly w: Writer
  private readonly maxBytes: number
  private readonly countPos: number
  private count = 0

  constructor(maxBytes: number, clusterId: number, sender: Sender, body: Body) {
    assert.ok(
      Number.isInteger(clusterId) && clusterId >= 0 && clusterId <= 0xffff,
      'bad cluster id',
    )
    checkIdentity(sender)
    checkAddr(sender.addr)
    checkBody(body)
    const fixed = 4 + senderBytes(sender) + bodyBytes(body) + 1
    assert.ok(fixed <= maxBytes, `header and body (${fixed} bytes) exceed ${maxBytes} bytes`)
    assert.ok(!scratchInUse, 'PacketBuilder: one packet at a time')
    if (scratch.length < maxBytes) scratch = new Uint8Array(maxBytes)
    scratchInUse = true
    this.maxBytes = maxBytes
    this.w = new Writer(scratch)
    this.w.u8(CODEC_VERSION)
    this.w.u16(clusterId)
    this.w.u8(TYPE_CODES[body.type])
    writeSender(this.w, sender)
    writeBody(this.w, body)
    this.countPos = this.w.pos
    this.w.u8(0)
  }

  /** Bytes still free. */
  remaining(): number {
    return this.maxBytes - this.w.pos
  }

  /** Updates added so far. */
  updates(): number {
    return this.count
  }

  /** Appends an encoded update if it fits (and fewer than 255 are in); says whether it did. */
  tryAdd(encoded: Uint8Array): boolean {
    if (this.count >= PIGGYBACK_UPDATES_MAX || encoded.length > this.remaining()) return false
    this.w.bytes(encoded)
    this.count++
    return true
  }

  /** The packet; the builder cannot be used afterwards. */
  finish(): Uint8Array {
    assert.ok(scratchInUse && this.w.buf === scratch, 'finish() called twice')
    this.w.buf[this.countPos] = this.count
    const out = this.w.finish()
    this.w.buf = new Uint8Array(0)
    scratchInUse = false
    return out
  }
}

/** Encodes a whole packet; throws (programmer error) if it does not fit in `maxBytes`. */
export function encodePacket(packet: Packet, maxBytes = Number.MAX_SAFE_INTEGER): Uint8Array {
  const size =
    4 +
    senderBytes(packet.sender) +
    bodyBytes(packet.body) +
    1 +
    packet.updates.reduce((sum, u) => sum + updateBytes(u), 0)
  assert.ok(size <= maxBytes, `packet of ${size} bytes exceeds ${maxBytes}`)
  assert.ok(packet.updates.length <= PIGGYBACK_UPDATES_MAX, 'too many piggybacked updates')
  const builder = new PacketBuilder(size, packet.clusterId, packet.sender, packet.body)
  for (const u of packet.updates) {
    const added = builder.tryAdd(encodeUpdate(u))
    assert.ok(added)
  }
  return builder.finish()
}

// ------------------------------------------------------------------------------ reading

const decoder = new TextDecoder('utf-8', { fatal: true })

/** Thrown inside the decoder only; decodePacket turns it into a `malformed` result. */
class Short extends Error {}

class Reader {
  pos = 0
  private readonly buf: Uint8Array
  private readonly view: DataView
  /** The same bytes as a Buffer, for native hex conversion (a flat string, fast to hash). */
  private readonly nodeBuf: Buffer

  constructor(buf: Uint8Array) {
    this.buf = buf
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
    this.nodeBuf = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  }

  need(n: number): void {
    if (this.pos + n > this.buf.length) throw new Short()
  }

  u8(): number {
    this.need(1)
    return this.view.getUint8(this.pos++)
  }

  u16(): number {
    this.need(2)
    const v = this.view.getUint16(this.pos)
    this.pos += 2
    return v
  }

  u32(): number {
    this.need(4)
    const v = this.view.getUint32(this.pos)
    this.pos += 4
    return v
  }

  u64(): number {
    const hi = this.u32()
    const lo = this.u32()
    if (hi > 0x1fffff) throw new Short() // not a safe integer
    return hi * TWO_POW_32 + lo
  }

  actorId(): string {
    this.need(ACTOR_ID_BYTES)
    const s = this.nodeBuf.toString('hex', this.pos, this.pos + ACTOR_ID_BYTES)
    this.pos += ACTOR_ID_BYTES
    return s
  }

  str(): string {
    const n = this.u8()
    if (n === 0) throw new Short()
    this.need(n)
    const bytes = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    try {
      return decoder.decode(bytes)
    } catch {
      // Invalid UTF-8: the packet is malformed, which the caller counts.
      throw new Short()
    }
  }

  done(): boolean {
    return this.pos === this.buf.length
  }
}

function readUpdate(r: Reader): MemberUpdate {
  const actorId = r.actorId()
  const epoch = r.u64()
  const incarnation = r.u32()
  const state = STATES_BY_CODE[r.u8()]
  if (state === undefined) throw new Short()
  const addr = r.str()
  const accuser = state === 'suspect' ? r.actorId() : null
  return { actorId, addr, epoch, incarnation, state, accuser }
}

function readMembers(r: Reader): MemberUpdate[] {
  const count = r.u32()
  // Each record takes at least 31 bytes: a count beyond what is left is malformed, not a
  // reason to allocate.
  r.need(count * MEMBER_RECORD_BYTES_MIN)
  const members: MemberUpdate[] = []
  for (let i = 0; i < count; i++) members.push(readUpdate(r))
  return members
}

function readBody(r: Reader, type: MessageType): Body {
  switch (type) {
    case 'ping':
      return { type, seq: r.u32(), target: r.actorId() }
    case 'ack':
    case 'nack':
      return { type, seq: r.u32() }
    case 'ping-req': {
      const seq = r.u32()
      const target = r.actorId()
      const targetAddr = r.str()
      const flags = r.u8()
      if (flags > 1) throw new Short()
      return { type, seq, target, targetAddr, nack: flags === 1 }
    }
    case 'gossip':
      return { type }
    case 'push-pull': {
      const flags = r.u8()
      if (flags > 1) throw new Short()
      return { type, join: flags === 1, members: readMembers(r) }
    }
    case 'push-pull-reply':
      return { type, members: readMembers(r) }
  }
}

/** Decodes a packet; never throws. The cluster id is checked by the caller. */
export function decodePacket(bytes: Uint8Array): DecodeResult {
  if (bytes.length < 4) return { ok: false, reason: 'malformed', clusterId: null }
  if (bytes[0] !== CODEC_VERSION) return { ok: false, reason: 'version', clusterId: null }
  const r = new Reader(bytes)
  let clusterId: number | null = null
  try {
    r.u8()
    clusterId = r.u16()
    const type = TYPES_BY_CODE[r.u8()]
    if (type === undefined) throw new Short()
    const sender: Sender = {
      actorId: r.actorId(),
      epoch: r.u64(),
      incarnation: r.u32(),
      addr: r.str(),
    }
    const body = readBody(r, type)
    const count = r.u8()
    const updates: MemberUpdate[] = []
    for (let i = 0; i < count; i++) updates.push(readUpdate(r))
    if (!r.done()) throw new Short()
    return { ok: true, packet: { clusterId, sender, body, updates } }
  } catch (err) {
    if (err instanceof Short) return { ok: false, reason: 'malformed', clusterId }
    throw err
  }
}

/** The cluster id of a packet of this codec version, or null if it is too short to say. */
export function peekClusterId(bytes: Uint8Array): number | null {
  if (bytes.length < 3 || bytes[0] !== CODEC_VERSION) return null
  return ((bytes[1] as number) << 8) | (bytes[2] as number)
}
