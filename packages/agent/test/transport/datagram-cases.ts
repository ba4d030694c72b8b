/**
 * Goal: the DatagramTransport contract, run against every implementation: packets arrive with
 * the sender's address, every limit drops and counts instead of throwing, and a handler that
 * throws (here: a strict parser fed 2,000 random packets) never stops the endpoint.
 *
 * Method: two endpoints from a Harness on loopback; assertions on what handlers saw and on
 * `stats()`. Kernel UDP may lose packets under load, so the fuzz sends in small batches and
 * checks exact accounting of what did arrive rather than assuming everything does.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { DATAGRAM_BYTES_MAX } from '../../src/transport/defaults.ts'
import { waitFor, type Harness } from './harness.ts'

/** Packets in the fuzz test, and how many go out before waiting for them to arrive. */
const FUZZ_PACKETS = 2_000
const FUZZ_BATCH = 25
const FUZZ_SEED = Number(process.env.FUZZ_SEED ?? 20_240_611)

/**
 * A strict little packet format for the fuzz handler: [0xab][length u16][payload][sum u8],
 * where sum is the payload's byte sum mod 256. Anything else throws.
 */
function encodeStrict(payload: Uint8Array): Uint8Array {
  const packet = new Uint8Array(payload.length + 4)
  packet[0] = 0xab
  new DataView(packet.buffer).setUint16(1, payload.length)
  packet.set(payload, 3)
  packet[payload.length + 3] = payload.reduce((sum, byte) => (sum + byte) & 0xff, 0)
  return packet
}

function parseStrict(packet: Uint8Array): Uint8Array {
  if (packet.length < 4 || packet[0] !== 0xab) throw new Error('bad magic')
  const length = new DataView(packet.buffer, packet.byteOffset, packet.byteLength).getUint16(1)
  if (packet.length !== length + 4) throw new Error('bad length')
  const payload = packet.subarray(3, 3 + length)
  const sum = payload.reduce((s, byte) => (s + byte) & 0xff, 0)
  if (packet[length + 3] !== sum) throw new Error('bad checksum')
  return payload
}

export function datagramCases(h: Harness): void {
  describe(`datagram (${h.name})`, () => {
    it('transport - datagrams arrive both ways with the sender address', async (t) => {
      const a = await h.datagram(t)
      const b = await h.datagram(t)
      const atA: [string, number[]][] = []
      const atB: [string, number[]][] = []
      a.onMessage((from, bytes) => atA.push([from, [...bytes]]))
      b.onMessage((from, bytes) => atB.push([from, [...bytes]]))
      a.send(b.localAddr, new Uint8Array([1, 2, 3]))
      a.send(b.localAddr, new Uint8Array(0))
      await waitFor(() => atB.length === 2, 'two packets at b')
      b.send(atB[0]?.[0] ?? '', new Uint8Array([9]))
      await waitFor(() => atA.length === 1, 'the reply at a')
      // Datagrams are unordered (loopback keeps the order; the simulator's jitter may not).
      const byLength = (x: [string, number[]], y: [string, number[]]): number =>
        x[1].length - y[1].length
      assert.deepEqual(atB.sort(byLength), [
        [a.localAddr, []],
        [a.localAddr, [1, 2, 3]],
      ])
      assert.deepEqual(atA, [[b.localAddr, [9]]])
      const stats = a.stats()
      assert.equal(stats.packetsSent, 2)
      assert.equal(stats.bytesSent, 3)
      assert.equal(stats.packetsReceived, 1)
      assert.equal(stats.bytesReceived, 1)
      assert.equal(b.stats().packetsReceived, 2)
      assert.match(a.localAddr, /^127\.0\.0\.1:[1-9]\d*$/)
    })

    it('transport - oversized datagrams are refused on send and dropped on receive, counted', async (t) => {
      const a = await h.datagram(t)
      const small = await h.datagram(t, { datagramBytesMax: 100 })
      const got: number[] = []
      small.onMessage((_from, bytes) => got.push(bytes.length))
      assert.doesNotThrow(() => {
        a.send(small.localAddr, new Uint8Array(DATAGRAM_BYTES_MAX + 1))
      })
      assert.equal(a.stats().dropped.oversized_out, 1)
      a.send(small.localAddr, new Uint8Array(DATAGRAM_BYTES_MAX)) // fine for a, too big for small
      a.send(small.localAddr, new Uint8Array(101))
      a.send(small.localAddr, new Uint8Array(100))
      await waitFor(() => small.stats().dropped.oversized_in === 2 && got.length === 1, 'drops')
      assert.deepEqual(got, [100])
      assert.equal(a.stats().packetsSent, 3)
      assert.equal(small.stats().packetsReceived, 1)
      small.send(a.localAddr, new Uint8Array(101))
      assert.equal(small.stats().dropped.oversized_out, 1)
    })

    it('transport - bad destination addresses are counted, never thrown', async (t) => {
      const a = await h.datagram(t)
      const bad = [
        '',
        'nonsense',
        '127.0.0.1',
        '127.0.0.1:',
        '127.0.0.1:0',
        '127.0.0.1:65536',
        '127.0.0.1:-1',
        '::1:80',
        '[::1]:80', // IPv6 from an IPv4 endpoint
        '[not-v6]:80',
        'host name:80',
        ':80',
      ]
      for (const to of bad) {
        assert.doesNotThrow(() => {
          a.send(to, new Uint8Array([1]))
        }, to)
      }
      await waitFor(() => a.stats().dropped.bad_address === bad.length, 'every bad address')
      assert.equal(a.stats().packetsSent, 0)
    })

    it('transport - a throwing handler is counted and the endpoint keeps working (fuzz)', async (t) => {
      const sender = await h.datagram(t, { datagramBytesMax: 2 * DATAGRAM_BYTES_MAX })
      const receiver = await h.datagram(t)
      let parsed = 0
      let rejected = 0
      const lastPayload: number[] = []
      receiver.onMessage((_from, bytes) => {
        try {
          const payload = parseStrict(bytes)
          parsed += 1
          lastPayload.splice(0, lastPayload.length, ...payload)
        } catch (error) {
          rejected += 1
          throw error
        }
      })
      // Random bytes of random sizes, some above the receiver's limit, some well-formed.
      const packetArb = fc.oneof(
        { weight: 6, arbitrary: fc.uint8Array({ maxLength: DATAGRAM_BYTES_MAX }) },
        {
          weight: 1,
          arbitrary: fc.uint8Array({
            minLength: DATAGRAM_BYTES_MAX + 1,
            maxLength: 2 * DATAGRAM_BYTES_MAX,
          }),
        },
        {
          weight: 2,
          arbitrary: fc.uint8Array({ maxLength: DATAGRAM_BYTES_MAX - 4 }).map(encodeStrict),
        },
      )
      const packets = fc.sample(packetArb, { numRuns: FUZZ_PACKETS, seed: FUZZ_SEED })
      const arrived = (): number => {
        const stats = receiver.stats()
        return stats.packetsReceived + stats.dropped.oversized_in
      }
      for (let i = 0; i < packets.length; i += FUZZ_BATCH) {
        for (const packet of packets.slice(i, i + FUZZ_BATCH))
          sender.send(receiver.localAddr, packet)
        const expected = Math.min(i + FUZZ_BATCH, packets.length)
        // Loopback UDP may still drop under load: wait briefly, then go on.
        const deadline = performance.now() + 500
        while (arrived() < expected && performance.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 1))
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 20))
      const stats = receiver.stats()
      const oversized = packets.filter((p) => p.length > DATAGRAM_BYTES_MAX).length
      assert.equal(sender.stats().packetsSent, FUZZ_PACKETS)
      assert.ok(arrived() >= FUZZ_PACKETS * 0.9, `only ${arrived()} of ${FUZZ_PACKETS} arrived`)
      assert.ok(stats.dropped.oversized_in <= oversized)
      assert.ok(stats.dropped.oversized_in > 0)
      assert.equal(parsed + rejected, stats.packetsReceived)
      assert.equal(stats.dropped.handler_error, rejected)
      assert.ok(rejected > 0 && parsed > 0, `parsed ${parsed}, rejected ${rejected}`)
      // Still working: a well-formed packet after all that garbage gets through.
      const before = parsed
      sender.send(receiver.localAddr, encodeStrict(new Uint8Array([7, 7, 7])))
      await waitFor(() => parsed === before + 1, 'a good packet after the fuzz')
      assert.deepEqual(lastPayload, [7, 7, 7])
    })

    it('transport - a closed endpoint counts later sends and receives nothing', async (t) => {
      const a = await h.datagram(t)
      const b = await h.datagram(t)
      let got = 0
      b.onMessage(() => (got += 1))
      await b.close()
      await b.close() // idempotent
      b.send(a.localAddr, new Uint8Array([1]))
      assert.equal(b.stats().dropped.closed, 1)
      a.send(b.localAddr, new Uint8Array([1]))
      await new Promise((resolve) => setTimeout(resolve, 20))
      assert.equal(got, 0)
    })
  })
}
