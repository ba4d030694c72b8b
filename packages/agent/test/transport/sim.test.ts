/**
 * Goal: the simulator's transports (SimDatagramTransport, sim/streams.ts) keep the contract of
 * the socket transports, so what the convergence simulations prove about the node's stream code
 * holds over TCP too; and the network's faults (partitions, filters, crashes, pauses) reach
 * them as a real network's would.
 *
 * Method: the shared cases (datagram-, stream- and reconnect-cases.ts) on simHarness(), which
 * drives a Sim in real time; the sim-only cases drive virtual time themselves (`runFor`), so
 * they assert exact times and run in milliseconds.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Sim, type HostContext, type HostOptions } from '../../src/sim/sim.ts'
import { isTransportError } from '../../src/transport/errors.ts'
import type { FramedConnection } from '../../src/transport/stream.ts'
import { datagramCases } from './datagram-cases.ts'
import { assertFrames, drainFrames, frameOf, simHarness, track } from './harness.ts'
import { reconnectCases } from './reconnect-cases.ts'
import { streamCases } from './stream-cases.ts'

datagramCases(simHarness())
streamCases(simHarness())
reconnectCases(simHarness())

/** A host whose life does nothing but hold its context (the test drives its transports). */
function host(sim: Sim, addr: string, options: HostOptions = {}): HostContext {
  let context: HostContext | undefined
  sim.addHost(
    addr,
    (ctx) => {
      context = ctx
      return {}
    },
    options,
  )
  assert.ok(context !== undefined)
  return context
}

/** A host listening on its own address; `accepted` collects its inbound connections. */
async function server(
  sim: Sim,
  addr: string,
): Promise<{ ctx: HostContext; accepted: FramedConnection[] }> {
  const ctx = host(sim, addr)
  const accepted: FramedConnection[] = []
  await ctx.streams.listen(addr, (c) => accepted.push(c))
  return { ctx, accepted }
}

/** Runs the sim until `promise` settles (at most `timeoutMs` of virtual time), then awaits it. */
async function settle<T>(sim: Sim, promise: Promise<T>, timeoutMs = 60_000): Promise<T> {
  const tracked = track(promise)
  await sim.runUntil(() => tracked.state() !== 'pending', { timeoutMs, checkEveryMs: 1 })
  return promise
}

describe('sim only', () => {
  it('transport - sim datagrams: a one-way block loses them between the chosen hosts only, a filter drops chosen packets', async () => {
    const sim = new Sim({ seed: 1 })
    const a = host(sim, '10.0.0.1:1').datagrams
    const b = host(sim, '10.0.0.2:1').datagrams
    const atA: number[] = []
    const atB: number[] = []
    a.onMessage((_from, bytes) => atA.push(bytes[0] ?? -1))
    b.onMessage((_from, bytes) => atB.push(bytes[0] ?? -1))
    sim.network.blockOneWay([a.localAddr], [b.localAddr])
    a.send(b.localAddr, new Uint8Array([1]))
    b.send(a.localAddr, new Uint8Array([2]))
    await sim.runFor(10)
    sim.network.heal()
    a.send(b.localAddr, new Uint8Array([3]))
    await sim.runFor(10)
    assert.deepEqual(atA, [2])
    assert.deepEqual(atB, [3])
    sim.network.setFilter((_from, _to, bytes) => bytes[0] !== 4)
    a.send(b.localAddr, new Uint8Array([4]))
    a.send(b.localAddr, new Uint8Array([5]))
    await sim.runFor(10)
    assert.deepEqual(atB, [3, 5])
    assert.equal(sim.network.stats.dropped.partition, 1)
    assert.equal(sim.network.stats.dropped.filter, 1)
    // Lost on the network, so sent as far as the endpoint knows (as UDP would say).
    assert.equal(a.stats().packetsSent, 4)
  })

  it('transport - sim connect across a partition times out after connectTimeoutMs; others get through', async () => {
    const sim = new Sim({ seed: 2 })
    const { accepted } = await server(sim, '10.0.0.1:80')
    const cut = host(sim, '10.0.0.9:1', { stream: { connectTimeoutMs: 50 } }).streams
    sim.network.partition(['10.0.0.9:1'], ['10.0.0.1:80'])
    const connect = track(cut.connect('10.0.0.1:80'))
    await sim.runFor(49)
    assert.equal(connect.state(), 'pending')
    await sim.runFor(2)
    assert.equal(connect.state(), 'rejected')
    assert.ok(isTransportError(connect.error(), 'CONNECT_TIMEOUT'), String(connect.error()))
    assert.equal(cut.stats().connectsFailed.connect_timeout, 1)
    const ok = await settle(sim, host(sim, '10.0.0.2:1').streams.connect('10.0.0.1:80'))
    await sim.runFor(10)
    assert.equal(accepted.length, 1)
    ok.close()
    await settle(sim, ok.closed())
  })

  it('transport - sim connect aborted while its SYN is lost rejects with ABORTED, counted', async () => {
    const sim = new Sim({ seed: 3 })
    await server(sim, '10.0.0.1:80')
    const patient = host(sim, '10.0.0.9:1', { stream: { connectTimeoutMs: 60_000 } }).streams
    sim.network.partition(['10.0.0.9:1'], ['10.0.0.1:80'])
    const abort = new AbortController()
    const connect = track(patient.connect('10.0.0.1:80', abort.signal))
    await sim.runFor(20)
    assert.equal(connect.state(), 'pending')
    abort.abort()
    await connect.promise.catch(() => undefined)
    assert.ok(isTransportError(connect.error(), 'ABORTED'))
    const again = await patient.connect('10.0.0.1:80', abort.signal).catch((e: unknown) => e)
    assert.ok(isTransportError(again, 'ABORTED'))
    // The timeout of the aborted connect does not fire later.
    await sim.runFor(61_000)
    const stats = patient.stats()
    assert.equal(stats.connectsFailed.aborted, 2)
    assert.equal(stats.connectsFailed.connect_timeout, 0)
    assert.equal(stats.connectionsOpen, 0)
  })

  it('transport - sim listen: port 0 picks free ports; an address in use or of another host fails with BIND_FAILED; a closed or crashed listener frees it', async () => {
    const sim = new Sim({ seed: 4 })
    const a = host(sim, '10.0.0.1:7946')
    const first = await a.streams.listen('10.0.0.1:0', () => undefined)
    const second = await a.streams.listen('10.0.0.1:0', () => undefined)
    assert.match(first.localAddr, /^10\.0\.0\.1:\d+$/)
    assert.notEqual(first.localAddr, second.localAddr)
    const own = await a.streams.listen('10.0.0.1:7946', () => undefined)
    const bindFailed = (e: unknown): boolean => isTransportError(e, 'BIND_FAILED')
    await assert.rejects(
      a.streams.listen('10.0.0.1:7946', () => undefined),
      bindFailed,
    )
    await assert.rejects(
      a.streams.listen('10.0.0.2:7946', () => undefined),
      bindFailed,
    )
    await own.close()
    const reopened = await a.streams.listen('10.0.0.1:7946', () => undefined)
    assert.equal(reopened.localAddr, '10.0.0.1:7946')
    // A crashed life's listener is gone; the next life binds the same address.
    sim.host('10.0.0.1:7946').crash()
    sim.host('10.0.0.1:7946').restart()
    assert.throws(() => host(sim, '10.0.0.1:7946'), /already/)
    const b = host(sim, '10.0.0.1:1')
    const again = await b.streams.listen('10.0.0.1:7946', () => undefined)
    assert.equal(again.localAddr, '10.0.0.1:7946')
    await Promise.all([first.close(), second.close(), again.close()])
  })

  it('transport - sim crash: the peer reads what arrived, then SOCKET_ERROR; connects are refused until the host listens again', async () => {
    const sim = new Sim({ seed: 5 })
    const addr = '10.0.0.1:80'
    const accepted: FramedConnection[] = []
    const target = sim.addHost(addr, (ctx) => {
      void ctx.streams.listen(addr, (c) => accepted.push(c))
      return {}
    })
    const client = host(sim, '10.0.0.2:1').streams
    const out = await settle(sim, client.connect(addr))
    await settle(sim, out.send(frameOf(1, 100)))
    await sim.runFor(10)
    assert.equal(accepted.length, 1)
    const [inbound] = accepted
    assert.ok(inbound !== undefined)
    await settle(sim, inbound.send(frameOf(2, 10)))
    await sim.runFor(10)
    target.crash()
    const drained = await settle(sim, drainFrames(out))
    assertFrames(drained.frames, [frameOf(2, 10)])
    assert.ok(isTransportError(drained.error, 'SOCKET_ERROR'), String(drained.error))
    assert.ok(isTransportError(await out.closed(), 'SOCKET_ERROR'))
    assert.equal(client.stats().closed.socket_error, 1)
    const refused = await settle(
      sim,
      client.connect(addr).catch((e: unknown) => e),
    )
    assert.ok(isTransportError(refused, 'CONNECT_FAILED'))
    target.start()
    await sim.runFor(1)
    const back = await settle(sim, client.connect(addr))
    back.close()
    await settle(sim, back.closed())
    assert.equal(client.stats().connectionsOpen, 0)
  })

  it('transport - sim partition: frames wait and flow after a heal; a partition longer than streamTimeoutMs resets both ends', async () => {
    const sim = new Sim({ seed: 6, streamTimeoutMs: 1_000 })
    const { accepted } = await server(sim, '10.0.0.1:80')
    const client = host(sim, '10.0.0.2:1', { stream: { idleTimeoutMs: 0 } }).streams
    const out = await settle(sim, client.connect('10.0.0.1:80'))
    sim.network.partition(['10.0.0.2:1'], ['10.0.0.1:80'])
    await settle(sim, out.send(frameOf(1, 10)))
    await sim.runFor(500)
    const [inbound] = accepted
    assert.ok(inbound !== undefined)
    sim.network.heal()
    const got: Uint8Array[] = []
    const reading = (async () => {
      for await (const frame of inbound.frames()) got.push(frame)
    })().catch((e: unknown) => e)
    await sim.runUntil(() => got.length === 1, { timeoutMs: 1_000, checkEveryMs: 1 })
    assertFrames(got, [frameOf(1, 10)])
    sim.network.partition(['10.0.0.2:1'], ['10.0.0.1:80'])
    const start = sim.now()
    void out.send(frameOf(2, 10)).catch(() => undefined)
    assert.ok(isTransportError(await settle(sim, out.closed()), 'SOCKET_ERROR'))
    assert.ok(sim.now() - start >= 1_000, `reset after ${sim.now() - start} ms`)
    assert.ok(isTransportError(await settle(sim, reading), 'SOCKET_ERROR'))
  })

  it('transport - sim pause: frames for a paused host wait, and its own sends resolve when it resumes', async () => {
    const sim = new Sim({ seed: 7 })
    const { accepted } = await server(sim, '10.0.0.1:80')
    const client = host(sim, '10.0.0.2:1').streams
    const out = await settle(sim, client.connect('10.0.0.1:80'))
    await sim.runFor(10)
    const [inbound] = accepted
    assert.ok(inbound !== undefined)
    sim.host('10.0.0.2:1').pause()
    const big = track(out.send(frameOf(1, 64 * 1024))) // above the socket buffer: waits to drain
    const back = track(inbound.send(frameOf(2, 10)))
    await sim.runFor(100)
    assert.equal(big.state(), 'pending')
    assert.equal(back.state(), 'resolved')
    sim.host('10.0.0.2:1').resume()
    await settle(sim, big.promise)
    const frames = await settle(
      sim,
      (async () => {
        for await (const frame of out.frames()) return frame
        return undefined
      })(),
    )
    assertFrames(frames === undefined ? [] : [frames], [frameOf(2, 10)])
  })

  it('transport - sim streams are deterministic: the same seed and calls give the same trace', async () => {
    const run = async (): Promise<string> => {
      const sim = new Sim({ seed: 8, link: { jitterMs: 5, loss: 0.2, reorder: 0.3 } })
      const { accepted } = await server(sim, '10.0.0.1:80')
      const client = host(sim, '10.0.0.2:1').streams
      const out = await settle(sim, client.connect('10.0.0.1:80'))
      for (let i = 0; i < 20; i += 1) void out.send(frameOf(i, 1000 * i)).catch(() => undefined)
      out.close()
      await sim.runFor(5_000)
      assert.equal(accepted.length, 1)
      return sim.traceHash()
    }
    assert.equal(await run(), await run())
  })
})
