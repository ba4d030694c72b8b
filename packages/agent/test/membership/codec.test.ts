/**
 * Goal: the membership wire format round-trips every valid message exactly, rejects every
 * invalid one as a result (never an exception), and never builds a datagram above its bound.
 *
 * Method: fast-check generates packets of every type with random senders, bodies and
 * piggybacked updates; decode(encode(p)) must equal p. Random byte strings, and valid packets
 * with one byte changed, truncated or extended, must decode to a result without throwing (and a
 * Swim fed them must not throw either).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  decodePacket,
  encodePacket,
  encodeUpdate,
  PacketBuilder,
  peekClusterId,
  updateBytes,
  type Body,
  type Packet,
  type Sender,
} from '../../src/membership/codec.ts'
import type { MemberUpdate } from '../../src/membership/member.ts'
import { Harness } from './harness.ts'

const LONG = process.env['PATINA_LONG'] === '1'
const RUNS = LONG ? 20_000 : 1000

const actorIdArb = fc
  .uint8Array({ minLength: 16, maxLength: 16 })
  .map((b) => Buffer.from(b).toString('hex'))
const addrArb = fc.oneof(
  fc
    .tuple(fc.nat(255), fc.nat(255), fc.integer({ min: 1, max: 65_535 }))
    .map(([a, b, port]) => `10.${a}.0.${b}:${port}`),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 60 }),
)
const epochArb = fc.oneof(fc.nat(), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }))
const u32Arb = fc.integer({ min: 0, max: 0xffff_ffff })
const stateArb = fc.constantFrom('alive', 'suspect', 'down', 'left' as const)

/** Plain objects (fast-check's records have a null prototype, which deepEqual tells apart). */
const NP = { noNullPrototype: true } as const

const senderArb: fc.Arbitrary<Sender> = fc.record(
  { actorId: actorIdArb, addr: addrArb, epoch: epochArb, incarnation: u32Arb },
  NP,
)

const updateArb: fc.Arbitrary<MemberUpdate> = fc
  .tuple(senderArb, stateArb, actorIdArb)
  .map(([s, state, accuser]) => ({ ...s, state, accuser: state === 'suspect' ? accuser : null }))

const bodyArb: fc.Arbitrary<Body> = fc.oneof(
  fc.record({ type: fc.constant('ping' as const), seq: u32Arb, target: actorIdArb }, NP),
  fc.record({ type: fc.constant('ack' as const), seq: u32Arb }, NP),
  fc.record(
    {
      type: fc.constant('ping-req' as const),
      seq: u32Arb,
      target: actorIdArb,
      targetAddr: addrArb,
      nack: fc.boolean(),
    },
    NP,
  ),
  fc.record({ type: fc.constant('nack' as const), seq: u32Arb }, NP),
  fc.record({ type: fc.constant('gossip' as const) }, NP),
  fc.record(
    {
      type: fc.constant('push-pull' as const),
      join: fc.boolean(),
      members: fc.array(updateArb, { maxLength: 20 }),
    },
    NP,
  ),
  fc.record(
    {
      type: fc.constant('push-pull-reply' as const),
      members: fc.array(updateArb, { maxLength: 20 }),
    },
    NP,
  ),
)

const packetArb: fc.Arbitrary<Packet> = fc
  .record(
    {
      clusterId: fc.integer({ min: 0, max: 0xffff }),
      sender: senderArb,
      body: bodyArb,
      updates: fc.array(updateArb, { maxLength: 30 }),
    },
    NP,
  )
  .map((p) =>
    p.body.type === 'push-pull' || p.body.type === 'push-pull-reply' ? { ...p, updates: [] } : p,
  )

describe('membership codec', () => {
  it('decode(encode(p)) equals p for every message type', () => {
    fc.assert(
      fc.property(packetArb, (p) => {
        const bytes = encodePacket(p)
        const decoded = decodePacket(bytes)
        assert.ok(decoded.ok)
        assert.deepEqual(decoded.packet, p)
        assert.equal(peekClusterId(bytes), p.clusterId)
      }),
      { numRuns: RUNS },
    )
  })

  it('random bytes never throw: they decode to a result', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), (bytes) => {
        const r = decodePacket(bytes)
        if (r.ok) assert.deepEqual(decodePacket(encodePacket(r.packet)), r)
      }),
      { numRuns: RUNS * 5 },
    )
  })

  it('valid packets with a byte changed, cut short or extended never throw', () => {
    fc.assert(
      fc.property(packetArb, fc.nat(), fc.nat(255), (p, at, value) => {
        const bytes = encodePacket(p)
        const flipped = bytes.slice()
        flipped[at % bytes.length] = value
        decodePacket(flipped)
        const cut = decodePacket(bytes.subarray(0, at % bytes.length))
        assert.equal(cut.ok, false)
        const longer = new Uint8Array(bytes.length + 1)
        longer.set(bytes)
        const extended = decodePacket(longer)
        assert.equal(extended.ok, false, 'trailing bytes are malformed')
      }),
      { numRuns: RUNS },
    )
  })

  it('a Swim fed random and mangled bytes never throws and counts every drop', () => {
    const h = new Harness({ gossipIntervalMs: 0, pushPullIntervalMs: 0 })
    h.swim.start()
    let fed = 0
    fc.assert(
      fc.property(
        fc.oneof(fc.uint8Array({ maxLength: 1600 }), packetArb.map(encodePacket)),
        (b) => {
          const bad = b.slice()
          if (bad.length > 5) bad[5] = (bad[5] ?? 0) ^ 0xff
          h.swim.receive('10.9.9.9:1', bad)
          h.swim.handlePushPull('10.9.9.9:1', bad)
          fed += 2
        },
      ),
      { numRuns: RUNS },
    )
    const s = h.swim.stats()
    assert.equal(s.packetsReceived, fed / 2)
  })

  it('PacketBuilder never goes above maxBytes and stops at 255 updates', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 600, max: 9000 }),
        senderArb.filter((s) => s.addr.length < 100),
        fc.array(updateArb, { maxLength: 400 }),
        (max, sender, updates) => {
          const b = new PacketBuilder(max, 1, sender, { type: 'gossip' })
          let added = 0
          for (const u of updates) if (b.tryAdd(encodeUpdate(u))) added++
          const bytes = b.finish()
          assert.ok(bytes.length <= max)
          assert.ok(added <= 255)
          const d = decodePacket(bytes)
          assert.ok(d.ok)
          assert.equal(d.packet.updates.length, added)
        },
      ),
      { numRuns: RUNS / 4 },
    )
  })

  it('updateBytes is the encoded size', () => {
    fc.assert(
      fc.property(updateArb, (u) => {
        assert.equal(encodeUpdate(u).length, updateBytes(u))
      }),
      { numRuns: RUNS },
    )
  })

  it('epochs above 2^53 and unknown states or types are malformed', () => {
    const sender = { actorId: 'ab'.repeat(16), addr: 'x:1', epoch: 1, incarnation: 0 }
    const bytes = encodePacket({ clusterId: 3, sender, body: { type: 'gossip' }, updates: [] })
    const big = bytes.slice()
    big[20] = 0xff // the high word of the sender's epoch
    assert.deepEqual(decodePacket(big), { ok: false, reason: 'malformed', clusterId: 3 })
    const badType = bytes.slice()
    badType[3] = 99
    assert.deepEqual(decodePacket(badType), { ok: false, reason: 'malformed', clusterId: 3 })
    const badVersion = bytes.slice()
    badVersion[0] = 2
    assert.equal(decodePacket(badVersion).ok, false)
  })
})
