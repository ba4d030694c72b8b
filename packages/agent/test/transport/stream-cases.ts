/**
 * Goal: the StreamTransport / FramedConnection contract, run against every implementation:
 * frames arrive whole and in order at any size up to the limit; a peer breaking the framing
 * (too large, unknown version) is disconnected with the reason counted; a slow reader pushes
 * back on the sender instead of growing memory; the send queue is capped; connects fail with
 * typed errors; close, idle timeout and listener close behave as documented.
 *
 * Method: a listener and a client from a Harness; assertions on frames, on how promises
 * settled (`track`), and on `stats()`. Timing is never asserted: where "still waiting" must be
 * observed, the test checks state after giving the other side ample time to move. Cases that
 * put a `wrap` hook on the sockets are skipped, and reported so, where `h.rawSockets` is false.
 */
import assert from 'node:assert/strict'
import { describe, it, type TestContext } from 'node:test'
import fc from 'fast-check'
import { FRAME_BYTES_MAX } from '../../src/transport/defaults.ts'
import { isTransportError, TransportError } from '../../src/transport/errors.ts'
import { FRAME_VERSION } from '../../src/transport/frame-codec.ts'
import {
  drainFrames,
  eventually,
  frameOf,
  listenOnce,
  passThroughWrap,
  readFrames,
  track,
  waitFor,
  assertFrames,
  type Harness,
} from './harness.ts'

/** Frame limit of the round-trip property: big enough to span many socket reads. */
const PROPERTY_FRAME_BYTES_MAX = 256 * 1024
const PROPERTY_RUNS = 20

function assertCode(error: unknown, code: TransportError['code']): void {
  assert.ok(
    error instanceof TransportError,
    `expected TransportError ${code}, got ${String(error)}`,
  )
  assert.equal(error.code, code, error.message)
}

function indexOf(frame: Uint8Array): number {
  return new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(0)
}

export function streamCases(h: Harness): void {
  /** A case that puts a `wrap` hook on the sockets: skipped, visibly, where there are none. */
  const withSockets = (name: string, fn: (t: TestContext) => Promise<void>): void => {
    it(name, h.rawSockets ? {} : { skip: `${h.name} has no sockets for a wrap hook` }, fn)
  }
  describe(`stream (${h.name})`, () => {
    it('transport - frames round-trip whole and in order at any size up to the limit (property)', async (t) => {
      const options = { frameBytesMax: PROPERTY_FRAME_BYTES_MAX }
      const server = h.stream(t, options)
      const client = h.stream(t, options)
      const { listener, next } = await listenOnce(server, h.host)
      const max = PROPERTY_FRAME_BYTES_MAX
      const sizeArb = fc.oneof(
        fc.constantFrom(0, 1, 4, max - 1, max),
        fc.integer({ min: 0, max: 70_000 }),
        fc.integer({ min: 0, max }),
      )
      await fc.assert(
        fc.asyncProperty(fc.array(sizeArb, { maxLength: 12 }), async (sizes) => {
          const out = await client.connect(listener.localAddr)
          const inbound = await next()
          const frames = sizes.map((size, i) => frameOf(i, size))
          const received = readFrames(inbound, frames.length)
          for (const frame of frames) await out.send(frame)
          assertFrames(await received, frames)
          out.close()
          assert.equal(await inbound.closed(), undefined)
        }),
        { numRuns: PROPERTY_RUNS },
      )
      assert.equal(server.stats().closed.peer, PROPERTY_RUNS)
      assert.equal(client.stats().closed.local, PROPERTY_RUNS)
    })

    it('transport - frames of exactly the default limit go through, in both directions', async (t) => {
      const server = h.stream(t)
      const client = h.stream(t)
      const { listener, next } = await listenOnce(server, h.host)
      const out = await client.connect(listener.localAddr)
      const inbound = await next()
      const sizes = [FRAME_BYTES_MAX, 0, FRAME_BYTES_MAX - 1]
      const frames = sizes.map((size, i) => frameOf(i, size))
      const atServer = readFrames(inbound, frames.length)
      for (const frame of frames) await out.send(frame)
      assertFrames(await atServer, frames)
      const back = readFrames(out, 1)
      await inbound.send(frames[0] ?? new Uint8Array())
      assertFrames(await back, frames.slice(0, 1))
      assert.equal(client.stats().bytesSent, 2 * FRAME_BYTES_MAX - 1)
    })

    it('transport - a frame above the receiver limit closes the connection, reason counted', async (t) => {
      const server = h.stream(t, { frameBytesMax: 1024 })
      const client = h.stream(t)
      const { listener, next } = await listenOnce(server, h.host)
      const out = await client.connect(listener.localAddr)
      const inbound = await next()
      await out.send(frameOf(1, 10))
      await out.send(frameOf(2, 1025)).catch(() => undefined) // the peer may already be gone
      const { frames, error } = await drainFrames(inbound)
      assertFrames(frames, [frameOf(1, 10)])
      assertCode(error, 'FRAME_TOO_LARGE')
      assertCode(await inbound.closed(), 'FRAME_TOO_LARGE')
      assert.equal(server.stats().closed.frame_too_large, 1)
      await out.closed() // the sender sees the connection go, whatever it calls it
      const late = await out.send(frameOf(3, 1)).catch((e: unknown) => e)
      assertCode(late, 'CLOSED')
    })

    it('transport - a sender refuses a frame above its own limit and stays usable', async (t) => {
      const server = h.stream(t)
      const client = h.stream(t, { frameBytesMax: 100 })
      const { listener, next } = await listenOnce(server, h.host)
      const out = await client.connect(listener.localAddr)
      const inbound = await next()
      assertCode(await out.send(new Uint8Array(101)).catch((e: unknown) => e), 'FRAME_TOO_LARGE')
      await out.send(frameOf(5, 100))
      assertFrames(await readFrames(inbound, 1), [frameOf(5, 100)])
      assert.equal(client.stats().sendsRejected.frame_too_large, 1)
    })

    withSockets(
      'transport - an unknown version byte closes the connection, reason counted',
      async (t) => {
        const server = h.stream(t)
        const corrupt = passThroughWrap((chunk, offset) => {
          if (offset === 0) chunk[0] = FRAME_VERSION + 1
          return chunk
        })
        const client = h.stream(t, { wrap: corrupt.wrap })
        const { listener, next } = await listenOnce(server, h.host)
        const out = await client.connect(listener.localAddr)
        const inbound = await next()
        await out.send(frameOf(1, 10)).catch(() => undefined)
        const { frames, error } = await drainFrames(inbound)
        assertFrames(frames, [])
        assertCode(error, 'BAD_VERSION')
        assert.equal(server.stats().closed.bad_version, 1)
        await out.closed()
      },
    )

    withSockets('transport - the wrap hook carries every byte both ways', async (t) => {
      const serverWrap = passThroughWrap()
      const clientWrap = passThroughWrap()
      const server = h.stream(t, { wrap: serverWrap.wrap })
      const client = h.stream(t, { wrap: clientWrap.wrap })
      const { listener, next } = await listenOnce(server, h.host)
      const out = await client.connect(listener.localAddr)
      const inbound = await next()
      const frames = [frameOf(0, 3), frameOf(1, 100_000), frameOf(2, 0)]
      for (const frame of frames) await out.send(frame)
      assertFrames(await readFrames(inbound, 3), frames)
      await inbound.send(frameOf(9, 9))
      assertFrames(await readFrames(out, 1), [frameOf(9, 9)])
      const wire = 3 * 5 + 3 + 100_000
      assert.equal(clientWrap.seen.out, wire)
      assert.equal(serverWrap.seen.in, wire)
      assert.equal(serverWrap.seen.out, 5 + 9)
      assert.equal(clientWrap.seen.in, 5 + 9)
    })

    it('transport - a slow reader pushes back: send() waits until the reader reads', async (t) => {
      const receiveBufferBytesMax = 64 * 1024
      const server = h.stream(t, { receiveBufferBytesMax })
      const client = h.stream(t)
      const { listener, next } = await listenOnce(server, h.host)
      const out = await client.connect(listener.localAddr)
      const inbound = await next()
      // Nobody reads `inbound` yet. Send until a send stays pending: the receive buffer, the
      // socket buffers and the kernel's are full. Bounded so a broken pushback fails, not hangs.
      const frameBytes = 64 * 1024
      const sendBytesLimit = 256 * 1024 * 1024
      let sent = 0
      let blocked: ReturnType<typeof track> | undefined
      while (sent * frameBytes < sendBytesLimit) {
        const send = track(out.send(frameOf(sent, frameBytes)))
        sent += 1
        if (!(await eventually(() => send.state() !== 'pending', 200))) {
          blocked = send
          break
        }
        assert.equal(send.state(), 'resolved')
      }
      assert.ok(blocked !== undefined, `no pushback after ${sent} frames`)
      // While blocked: the reader's buffer stays near its cap, the sender's queue holds the frame.
      const buffered = server.stats().receiveBufferBytes
      assert.ok(buffered <= receiveBufferBytesMax + 2 * frameBytes, `${buffered} bytes buffered`)
      assert.ok(client.stats().sendQueueBytes >= frameBytes)
      assert.equal(blocked.state(), 'pending')
      // The reader starts: the blocked send completes and every frame arrives, in order.
      const received = readFrames(inbound, sent)
      await blocked.promise
      const frames = await received
      assert.deepEqual(
        frames.map(indexOf),
        Array.from({ length: sent }, (_, i) => i),
      )
      assert.equal(client.stats().sendQueueBytes, 0)
      assert.equal(server.stats().receiveBufferBytes, 0)
    })

    it('transport - the send queue cap rejects with QUEUE_FULL, and an abort leaves the queue', async (t) => {
      const server = h.stream(t)
      const client = h.stream(t, { sendQueueBytesMax: 64 * 1024 })
      const { listener, next } = await listenOnce(server, h.host)
      const out = await client.connect(listener.localAddr)
      const inbound = await next()
      // 20 KiB is above the socket's 16 KiB high-water mark, so the first write already asks
      // for 'drain' and the rest queue up behind it, all in this synchronous burst.
      const size = 20 * 1024
      const abort = new AbortController()
      const sends = [
        track(out.send(frameOf(0, size))),
        track(out.send(frameOf(1, size), abort.signal)),
        track(out.send(frameOf(2, size))),
        track(out.send(frameOf(3, size))),
        track(out.send(frameOf(4, size))),
      ]
      abort.abort()
      const late = track(out.send(frameOf(5, size)))
      await Promise.allSettled([...sends, late].map((s) => s.promise))
      assert.deepEqual(
        [...sends, late].map((s) => s.state()),
        ['resolved', 'rejected', 'resolved', 'rejected', 'rejected', 'resolved'],
      )
      assertCode(sends[1]?.error(), 'ABORTED')
      assertCode(sends[3]?.error(), 'QUEUE_FULL')
      assertCode(sends[4]?.error(), 'QUEUE_FULL')
      const frames = await readFrames(inbound, 3)
      assert.deepEqual(frames.map(indexOf), [0, 2, 5])
      const stats = client.stats()
      assert.equal(stats.sendsRejected.queue_full, 2)
      assert.equal(stats.sendsRejected.aborted, 1)
      assert.equal(stats.sendQueueBytes, 0)
      // An empty queue always takes one frame, even above the cap.
      await out.send(frameOf(6, 100 * 1024))
      assert.deepEqual((await readFrames(inbound, 1)).map(indexOf), [6])
    })

    it('transport - connecting where nobody listens fails with CONNECT_FAILED', async (t) => {
      const client = h.stream(t)
      const error = await client.connect(await h.deadStreamAddr(t)).catch((e: unknown) => e)
      assertCode(error, 'CONNECT_FAILED')
      assert.equal(client.stats().connectsFailed.connect_failed, 1)
    })

    it('transport - a bad address fails with BAD_ADDRESS, on connect and on listen', async (t) => {
      const client = h.stream(t)
      for (const to of ['nowhere', '[::1]', '1.2.3.4:0', '1.2.3.4:99999']) {
        assertCode(await client.connect(to).catch((e: unknown) => e), 'BAD_ADDRESS')
      }
      assert.equal(client.stats().connectsFailed.bad_address, 4)
      assertCode(
        await client.listen('nowhere', () => undefined).catch((e: unknown) => e),
        'BAD_ADDRESS',
      )
    })

    it('transport - listening on an address in use fails with BIND_FAILED', async (t) => {
      const server = h.stream(t)
      const { listener } = await listenOnce(server, h.host)
      const error = await server
        .listen(listener.localAddr, () => undefined)
        .catch((e: unknown) => e)
      assertCode(error, 'BIND_FAILED')
    })

    withSockets(
      'transport - the connect timeout covers the wrap handshake; an abort rejects with ABORTED',
      async (t) => {
        const server = h.stream(t)
        const { listener } = await listenOnce(server, h.host)
        const stuck = (): Promise<never> => new Promise<never>(() => undefined)
        const client = h.stream(t, { connectTimeoutMs: 100, wrap: stuck })
        assertCode(
          await client.connect(listener.localAddr).catch((e: unknown) => e),
          'CONNECT_TIMEOUT',
        )
        const patient = h.stream(t, { connectTimeoutMs: 60_000, wrap: stuck })
        const abort = new AbortController()
        const pending = track(patient.connect(listener.localAddr, abort.signal))
        await new Promise((resolve) => setTimeout(resolve, 20))
        assert.equal(pending.state(), 'pending')
        abort.abort()
        await pending.promise.catch(() => undefined)
        assertCode(pending.error(), 'ABORTED')
        assertCode(
          await patient.connect(listener.localAddr, abort.signal).catch((e: unknown) => e),
          'ABORTED',
        )
        assert.equal(client.stats().connectsFailed.connect_timeout, 1)
        assert.equal(patient.stats().connectsFailed.aborted, 2)
        assert.equal(patient.stats().connectionsOpen, 0)
      },
    )

    it('transport - close: the peer reads what was sent then ends; later sends reject CLOSED', async (t) => {
      const server = h.stream(t)
      const client = h.stream(t)
      const { listener, next } = await listenOnce(server, h.host)
      const out = await client.connect(listener.localAddr)
      const inbound = await next()
      const frames = [frameOf(0, 10), frameOf(1, 50_000), frameOf(2, 0)]
      const sends = frames.map((frame) => out.send(frame))
      out.close()
      out.close() // idempotent
      await Promise.all(sends)
      assertCode(await out.send(frameOf(3, 1)).catch((e: unknown) => e), 'CLOSED')
      const drained = await drainFrames(inbound)
      assertFrames(drained.frames, frames)
      assert.equal(drained.error, undefined)
      assert.equal(await inbound.closed(), undefined)
      assert.equal(await out.closed(), undefined)
      assertCode(await inbound.send(frameOf(4, 1)).catch((e: unknown) => e), 'CLOSED')
      // After a local close, frames() ends at once.
      assert.deepEqual(await drainFrames(out), { frames: [], error: undefined })
      assert.equal(client.stats().closed.local, 1)
      assert.equal(server.stats().closed.peer, 1)
      await waitFor(() => server.stats().connectionsOpen === 0, 'the server side gone')
      assert.equal(client.stats().connectionsOpen, 0)
    })

    it('transport - frames() may be left with break and resumed', async (t) => {
      const server = h.stream(t)
      const client = h.stream(t)
      const { listener, next } = await listenOnce(server, h.host)
      const out = await client.connect(listener.localAddr)
      const inbound = await next()
      for (let i = 0; i < 4; i += 1) await out.send(frameOf(i, 8))
      assert.deepEqual((await readFrames(inbound, 1)).map(indexOf), [0])
      assert.deepEqual((await readFrames(inbound, 3)).map(indexOf), [1, 2, 3])
    })

    it('transport - an idle connection is closed with IDLE_TIMEOUT, counted', async (t) => {
      const server = h.stream(t, { idleTimeoutMs: 100 })
      const client = h.stream(t)
      const { listener, next } = await listenOnce(server, h.host)
      const out = await client.connect(listener.localAddr)
      const inbound = await next()
      const { error } = await drainFrames(inbound)
      assertCode(error, 'IDLE_TIMEOUT')
      assert.equal(server.stats().closed.idle_timeout, 1)
      assert.ok(isTransportError(await inbound.closed(), 'IDLE_TIMEOUT'))
      await out.closed()
    })

    it('transport - closing a listener closes its connections and refuses new ones', async (t) => {
      const server = h.stream(t)
      const client = h.stream(t)
      const { listener, next } = await listenOnce(server, h.host)
      const out = await client.connect(listener.localAddr)
      await next()
      await listener.close()
      assert.deepEqual(await drainFrames(out), { frames: [], error: undefined })
      assertCode(
        await client.connect(listener.localAddr).catch((e: unknown) => e),
        'CONNECT_FAILED',
      )
      assert.equal(server.stats().closed.local, 1)
    })

    it('transport - a listener at its connection cap drops the extra connection, counted', async (t) => {
      const server = h.stream(t, { inboundConnectionsMax: 1 })
      const client = h.stream(t)
      const { listener, accepted, next } = await listenOnce(server, h.host)
      const first = await client.connect(listener.localAddr)
      await next()
      const second = await client.connect(listener.localAddr).catch((e: unknown) => e)
      if (!(second instanceof TransportError)) {
        // Accepted by the kernel, then closed by the listener at once.
        assert.ok(second !== null && typeof second === 'object' && 'closed' in second)
        await (second as typeof first).closed()
      }
      await waitFor(() => server.stats().inboundDropped === 1, 'the drop counted')
      assert.equal(accepted.length, 1)
      await first.send(frameOf(1, 1)) // the first is untouched
    })

    it('transport - a throwing connection handler closes that connection, counted', async (t) => {
      const server = h.stream(t)
      const client = h.stream(t)
      const listener = await server.listen(`${h.host}:0`, () => {
        throw new Error('handler bug')
      })
      const out = await client.connect(listener.localAddr)
      await out.closed()
      assert.equal(server.stats().closed.handler_error, 1)
    })
  })
}
