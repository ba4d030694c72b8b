/**
 * Goal: TcpStreamTransport (node:net on loopback) meets the StreamTransport contract, and its
 * receiver survives raw bytes that break the framing: an unknown version, a length above the
 * limit, a stream cut in the middle of a frame.
 *
 * Method: the shared cases (stream- and reconnect-cases.ts) on 127.0.0.1 (and ::1 when the host
 * has it), plus raw node:net sockets that write hand-made headers.
 */
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { describe, it } from 'node:test'
import { isTransportError } from '../../src/transport/errors.ts'
import { encodeFrameHeader } from '../../src/transport/frame-codec.ts'
import { TcpStreamTransport } from '../../src/transport/stream.ts'
import { assertFrames, drainFrames, frameOf, listenOnce, realHarness } from './harness.ts'
import { reconnectCases } from './reconnect-cases.ts'
import { streamCases } from './stream-cases.ts'

streamCases(realHarness())
reconnectCases(realHarness())

async function rawConnect(addr: string): Promise<Socket> {
  const [host, port] = [
    addr.slice(0, addr.lastIndexOf(':')),
    Number(addr.slice(addr.lastIndexOf(':') + 1)),
  ]
  const socket = connect({ host, port })
  socket.on('error', () => undefined) // the server may reset us; that is the point
  await new Promise((resolve) => socket.once('connect', resolve))
  return socket
}

describe('stream (tcp only, raw bytes)', () => {
  const cases: { name: string; bytes: () => Buffer; code: string; reason: string }[] = [
    {
      name: 'an unknown version as the very first byte',
      bytes: () => Buffer.from([0]),
      code: 'BAD_VERSION',
      reason: 'bad_version',
    },
    {
      name: 'a length of 2^32 - 1',
      bytes: () => encodeFrameHeader(0xff_ff_ff_ff),
      code: 'FRAME_TOO_LARGE',
      reason: 'frame_too_large',
    },
    {
      name: 'an end of stream in the middle of a payload',
      bytes: () =>
        Buffer.concat([
          encodeFrameHeader(4),
          Buffer.from([1, 2, 3, 4]),
          encodeFrameHeader(100),
          Buffer.alloc(50),
        ]),
      code: 'TRUNCATED_FRAME',
      reason: 'truncated_frame',
    },
    {
      name: 'an end of stream in the middle of a header',
      bytes: () => encodeFrameHeader(100).subarray(0, 3),
      code: 'TRUNCATED_FRAME',
      reason: 'truncated_frame',
    },
  ]
  for (const c of cases) {
    it(`transport - tcp receiver closes on ${c.name}, counted`, async (t) => {
      const server = new TcpStreamTransport()
      const { listener, next } = await listenOnce(server, '127.0.0.1')
      t.after(() => listener.close())
      const raw = await rawConnect(listener.localAddr)
      t.after(() => raw.destroy())
      raw.end(c.bytes())
      const inbound = await next()
      const { error } = await drainFrames(inbound)
      assert.ok(isTransportError(error), String(error))
      assert.equal(error.code, c.code)
      await inbound.closed()
      const stats = server.stats()
      assert.equal(stats.closed[c.reason as keyof typeof stats.closed], 1)
      assert.equal(stats.connectionsOpen, 0)
      // The listener is unharmed: a well-behaved client still gets through.
      const client = new TcpStreamTransport()
      const ok = await client.connect(listener.localAddr)
      await ok.send(frameOf(1, 3))
      const good = await next()
      const frames: Uint8Array[] = []
      for await (const frame of good.frames()) {
        frames.push(frame)
        break
      }
      assertFrames(frames, [frameOf(1, 3)])
      ok.close()
    })
  }
})

describe('stream (tcp over IPv6)', () => {
  it('transport - tcp round-trips over ::1 when the host has it', async (t) => {
    const server = new TcpStreamTransport()
    const listening = await listenOnce(server, '::1').catch(() => undefined)
    if (listening === undefined) {
      t.skip('no IPv6 loopback')
      return
    }
    t.after(() => listening.listener.close())
    assert.match(listening.listener.localAddr, /^\[::1\]:\d+$/)
    const out = await new TcpStreamTransport().connect(listening.listener.localAddr)
    const inbound = await listening.next()
    assert.match(inbound.remoteAddr, /^\[::1\]:\d+$/)
    await out.send(frameOf(7, 70))
    out.close()
    const drained = await drainFrames(inbound)
    assertFrames(drained.frames, [frameOf(7, 70)])
    assert.equal(drained.error, undefined)
  })
})
