/**
 * Goal: the pure pieces under the transports: addresses parse strictly ("host:port", IPv6 in
 * brackets), the frame decoder yields the same frames however the bytes are split into
 * chunks and rejects a bad header as soon as the offending byte arrives, and the FIFO keeps
 * order through shifts, removals and compaction.
 *
 * Method: tables for addresses; a fast-check property (random frames, random chunk cuts) for
 * the decoder; a model check (against a plain array) for the FIFO.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { formatAddr, parseAddr } from '../../src/transport/address.ts'
import { isTransportError } from '../../src/transport/errors.ts'
import { Fifo } from '../../src/transport/fifo.ts'
import { encodeFrameHeader, FRAME_VERSION, FrameDecoder } from '../../src/transport/frame-codec.ts'

describe('address', () => {
  it('transport - addresses parse as host:port with IPv6 in brackets', () => {
    assert.deepEqual(parseAddr('127.0.0.1:8787'), { host: '127.0.0.1', port: 8787, family: 4 })
    assert.deepEqual(parseAddr('[::1]:1'), { host: '::1', port: 1, family: 6 })
    assert.deepEqual(parseAddr('node-1.internal:65535'), {
      host: 'node-1.internal',
      port: 65535,
      family: 0,
    })
    assert.deepEqual(parseAddr('0.0.0.0:0', { portZero: true }), {
      host: '0.0.0.0',
      port: 0,
      family: 4,
    })
    const bad = [
      '',
      ':1',
      'host',
      'host:',
      'host:0',
      'host:65536',
      'host:1.5',
      'host:+1',
      'host:0x10',
      '::1:80',
      '[::1]',
      '[::1]80',
      '[1.2.3.4]:80',
      '[::1:80',
      'a_b:80',
      '-a:80',
      'a..b:80',
      ' 1.2.3.4:80',
    ]
    for (const addr of bad) {
      assert.throws(
        () => parseAddr(addr),
        (e) => isTransportError(e, 'BAD_ADDRESS'),
        addr,
      )
    }
  })

  it('transport - formatAddr brackets IPv6 and round-trips through parseAddr', () => {
    assert.equal(formatAddr('::1', 80), '[::1]:80')
    assert.equal(formatAddr('10.0.0.1', 80), '10.0.0.1:80')
    fc.assert(
      fc.property(
        fc.oneof(fc.ipV4(), fc.ipV6()),
        fc.integer({ min: 1, max: 65535 }),
        (host, port) => {
          const parsed = parseAddr(formatAddr(host, port))
          assert.equal(parsed.host, host)
          assert.equal(parsed.port, port)
        },
      ),
    )
  })
})

describe('frame decoder', () => {
  it('transport - decoding is independent of how the bytes are cut into chunks (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 50 }),
        (frames, cuts) => {
          const wire = Buffer.concat(
            frames.flatMap((frame) => [encodeFrameHeader(frame.length), frame]),
          )
          const decoder = new FrameDecoder(300)
          const out: Uint8Array[] = []
          let offset = 0
          for (let i = 0; offset < wire.length; i += 1) {
            const size = cuts[i % cuts.length] ?? 1
            decoder.push(wire.subarray(offset, offset + size), (frame) =>
              out.push(Buffer.from(frame)),
            )
            offset += size
          }
          assert.deepEqual(
            out,
            frames.map((frame) => Buffer.from(frame)),
          )
          assert.equal(decoder.midFrame, false)
        },
      ),
      { numRuns: 300 },
    )
  })

  it('transport - the decoder rejects a bad version at the first byte, a bad length before the payload', () => {
    const decoder = new FrameDecoder(10)
    assert.throws(
      () => {
        decoder.push(new Uint8Array([FRAME_VERSION + 1]), () => undefined)
      },
      (e) => isTransportError(e, 'BAD_VERSION'),
    )
    const big = new FrameDecoder(10)
    const frames: Uint8Array[] = []
    big.push(Buffer.concat([encodeFrameHeader(10), Buffer.alloc(10)]), (f) => frames.push(f))
    assert.equal(frames.length, 1)
    assert.throws(
      () => {
        big.push(encodeFrameHeader(11), () => undefined)
      },
      (e) => isTransportError(e, 'FRAME_TOO_LARGE'),
    )
    const partial = new FrameDecoder(10)
    partial.push(encodeFrameHeader(5).subarray(0, 2), () => undefined)
    assert.equal(partial.midFrame, true)
  })
})

describe('fifo', () => {
  it('transport - the FIFO matches an array through push, shift, remove and drain', () => {
    const op = fc.oneof(
      fc.record({ push: fc.integer({ min: 1, max: 3000 }) }),
      fc.record({ shift: fc.integer({ min: 1, max: 3000 }) }),
      fc.record({ remove: fc.nat() }),
      fc.constant({ drain: true }),
    )
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const fifo = new Fifo<object>()
        let model: object[] = []
        for (const o of ops) {
          if ('push' in o) {
            for (let i = 0; i < o.push; i += 1) {
              const item = {}
              fifo.push(item)
              model.push(item)
            }
          } else if ('shift' in o) {
            for (let i = 0; i < o.shift; i += 1) assert.equal(fifo.shift(), model.shift())
          } else if ('remove' in o) {
            const item = model[o.remove % Math.max(1, model.length)]
            if (item !== undefined) {
              assert.equal(fifo.remove(item), true)
              model = model.filter((m) => m !== item)
            }
          } else {
            assert.deepEqual(fifo.drain(), model)
            model = []
          }
          assert.equal(fifo.length, model.length)
          assert.equal(fifo.peek(), model[0])
        }
      }),
      { numRuns: 100 },
    )
  })
})
