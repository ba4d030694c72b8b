/**
 * Goal: ReconnectingConnection keeps one connection up: it retries with capped exponential
 * backoff and full jitter while the peer is down, reconnects when it comes back or drops the
 * connection, does not reset the backoff for a connection that did not last, and stops
 * everything when its signal fires.
 *
 * Method: a manual clock (ManualTimers) and a fixed random(), so every delay is asserted
 * exactly; connects themselves go over the Harness's real or simulated transport, and the test
 * waits for their outcome before moving the clock.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { TransportError } from '../../src/transport/errors.ts'
import { ReconnectingConnection, type ReconnectEvent } from '../../src/transport/reconnect.ts'
import type { FramedConnection } from '../../src/transport/stream.ts'
import {
  assertFrames,
  frameOf,
  fixedRandom,
  ManualTimers,
  readFrames,
  waitFor,
  type Harness,
} from './harness.ts'

const BASE_MS = 100
const MAX_MS = 1_000
const STABLE_MS = 5_000

export function reconnectCases(h: Harness): void {
  describe(`reconnect (${h.name})`, () => {
    it('transport - reconnect backs off with full jitter while the peer is down, then reconnects', async (t) => {
      const server = h.stream(t)
      const client = h.stream(t)
      const addr = await h.deadStreamAddr(t)
      const timers = new ManualTimers()
      const abort = new AbortController()
      const events: ReconnectEvent[] = []
      const rc = new ReconnectingConnection(
        { transport: client, clock: timers, random: fixedRandom(0.5) },
        {
          addr,
          signal: abort.signal,
          baseMs: BASE_MS,
          maxMs: MAX_MS,
          onEvent: (e) => events.push(e),
        },
      )
      t.after(() => {
        abort.abort()
      })
      rc.start()
      rc.start() // idempotent
      const delays: number[] = []
      for (let failures = 1; failures <= 6; failures += 1) {
        await waitFor(() => rc.stats().failures === failures, `failure ${failures}`)
        assert.equal(rc.stats().state, 'waiting')
        assert.equal(timers.pending().length, 1)
        if (failures < 6) delays.push(timers.fireNext())
      }
      // 0.5 * min(MAX, BASE * 2^n)
      assert.deepEqual(delays, [50, 100, 200, 400, 500])
      assert.deepEqual(timers.pending(), [500])
      assert.deepEqual(
        events.map((e) => (e.type === 'retrying' ? e.retry : -1)),
        [0, 1, 2, 3, 4, 5],
      )
      // The peer comes back at the same address; the next retry connects.
      const accepted: FramedConnection[] = []
      await server.listen(addr, (c) => accepted.push(c))
      const waiting = rc.connection()
      timers.fireNext()
      const connection = await waiting
      assert.equal(rc.current(), connection)
      assert.equal(rc.stats().state, 'connected')
      await connection.send(frameOf(1, 10))
      await waitFor(() => accepted.length === 1, 'the server side')
      const [inbound] = accepted
      assert.ok(inbound !== undefined)
      assertFrames(await readFrames(inbound, 1), [frameOf(1, 10)])
      assert.deepEqual(rc.stats(), {
        state: 'connected',
        attempts: 7,
        connects: 1,
        failures: 6,
        disconnects: 0,
      })
      // Abort: the connection closes, no timer is left, waiting callers are told.
      abort.abort()
      assert.equal(await inbound.closed(), undefined)
      assert.equal(rc.stats().state, 'stopped')
      assert.equal(rc.current(), undefined)
      assert.deepEqual(timers.pending(), [])
      const after = await rc.connection().catch((e: unknown) => e)
      assert.ok(after instanceof TransportError && after.code === 'ABORTED')
    })

    it('transport - reconnect follows dropped connections; only a stable one resets the backoff', async (t) => {
      const server = h.stream(t)
      const client = h.stream(t)
      const accepted: FramedConnection[] = []
      const listener = await server.listen(`${h.host}:0`, (c) => accepted.push(c))
      const timers = new ManualTimers()
      const abort = new AbortController()
      t.after(() => {
        abort.abort()
      })
      const hellos: FramedConnection[] = []
      const rc = new ReconnectingConnection(
        { transport: client, clock: timers, random: fixedRandom(0.5) },
        {
          addr: listener.localAddr,
          signal: abort.signal,
          baseMs: BASE_MS,
          maxMs: MAX_MS,
          stableMs: STABLE_MS,
          onConnect: (c) => {
            hellos.push(c)
            void c.send(frameOf(hellos.length, 4)).catch(() => undefined)
          },
        },
      )
      rc.start()
      const retryDelays: number[] = []
      // Three connections that the server drops at once: the backoff keeps growing.
      for (let n = 1; n <= 3; n += 1) {
        await rc.connection()
        await waitFor(() => accepted.length === n, `server connection ${n}`)
        accepted[n - 1]?.close()
        await waitFor(() => rc.stats().disconnects === n, `disconnect ${n}`)
        retryDelays.push(timers.fireNext())
      }
      assert.deepEqual(retryDelays, [50, 100, 200])
      // The fourth stays up past STABLE_MS: after it drops, the backoff starts over.
      await rc.connection()
      await waitFor(() => accepted.length === 4, 'server connection 4')
      timers.advance(STABLE_MS)
      accepted[3]?.close()
      await waitFor(() => rc.stats().disconnects === 4, 'disconnect 4')
      assert.deepEqual(timers.pending(), [50])
      assert.equal(hellos.length, 4)
      assert.equal(rc.stats().connects, 4)
    })

    it('transport - reconnect stops retrying when aborted while waiting', async (t) => {
      const client = h.stream(t)
      const timers = new ManualTimers()
      const abort = new AbortController()
      const rc = new ReconnectingConnection(
        { transport: client, clock: timers, random: fixedRandom(0.99) },
        { addr: await h.deadStreamAddr(t), signal: abort.signal, baseMs: BASE_MS },
      )
      rc.start()
      const waiting = rc.connection().catch((e: unknown) => e)
      await waitFor(() => rc.stats().failures === 1, 'the first failure')
      assert.deepEqual(timers.pending(), [99])
      abort.abort()
      assert.deepEqual(timers.pending(), [])
      const error = await waiting
      assert.ok(error instanceof TransportError && error.code === 'ABORTED')
      assert.equal(rc.stats().attempts, 1)
      assert.equal(rc.stats().state, 'stopped')
    })
  })
}
