/**
 * Goal: run one set of behavioural cases against every implementation of each transport
 * interface (node:dgram/node:net on loopback, and the simulator's transports on a Sim driven in
 * real time), as libp2p's interface-compliance-tests do.
 *
 * Method: a Harness makes endpoints of one implementation and registers every socket, listener
 * and connection it hands out with the test's `after` hook, so each test cleans up what it
 * started. The sim harness gives each test its own Sim, a host per endpoint, and a pump that
 * keeps virtual time close to real time while the test runs (the cases poll and time out in
 * real time). The rest are small helpers shared by the cases: polling for a condition, telling
 * a promise that is still pending from one that settled, a manual clock for
 * ReconnectingConnection, a pass-through `wrap` hook, and frames whose content says where they
 * belong.
 */
import assert from 'node:assert/strict'
import { Duplex } from 'node:stream'
import type { TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  UdpTransport,
  type DatagramOptions,
  type DatagramTransport,
} from '../../src/transport/datagram.ts'
import type { Clock, TimerId } from '../../src/runtime/clock.ts'
import type { Random } from '../../src/runtime/random.ts'
import { Sim, type HostContext, type HostOptions } from '../../src/sim/sim.ts'
import {
  TcpStreamTransport,
  type FramedConnection,
  type StreamListener,
  type StreamOptions,
  type StreamTransport,
  type WrapSocket,
} from '../../src/transport/stream.ts'

export interface Harness {
  /** 'real' (sockets on loopback) or 'sim'. */
  readonly name: string
  readonly host: string
  /**
   * Whether connections run on real sockets: the `wrap` hook applies and raw bytes can be put
   * on the wire. Cases that need them are skipped (and reported as skipped) when false.
   */
  readonly rawSockets: boolean
  /** A datagram endpoint bound to host:0, closed after the test. */
  datagram(t: TestContext, options?: DatagramOptions): Promise<DatagramTransport>
  /** A stream transport whose listeners and connections are closed after the test. */
  stream(t: TestContext, options?: StreamOptions): StreamTransport
  /** An address on `host` where nobody listens (for streams). */
  deadStreamAddr(t: TestContext): Promise<string>
}

/** Wraps a transport so every listener and connection it makes is closed by `defer`'s hook. */
function tracked(
  defer: (cleanup: () => Promise<void>) => void,
  transport: StreamTransport,
): StreamTransport {
  const listeners: StreamListener[] = []
  const connections: FramedConnection[] = []
  defer(async () => {
    for (const connection of connections) connection.close()
    await Promise.all(listeners.map((listener) => listener.close()))
    await Promise.all(connections.map((connection) => connection.closed()))
  })
  return {
    async connect(to, signal) {
      const connection = await transport.connect(to, signal)
      connections.push(connection)
      return connection
    },
    async listen(addr, onConnection) {
      const listener = await transport.listen(addr, (connection) => {
        connections.push(connection)
        onConnection(connection)
      })
      listeners.push(listener)
      return listener
    },
    stats: () => transport.stats(),
  }
}

export function realHarness(host = '127.0.0.1'): Harness {
  const bindAddr = host.includes(':') ? `[${host}]:0` : `${host}:0`
  return {
    name: 'real',
    host,
    rawSockets: true,
    async datagram(t, options = {}) {
      const udp = await UdpTransport.bind(bindAddr, options)
      t.after(() => udp.close())
      return udp
    },
    stream(t, options = {}) {
      return tracked((cleanup) => {
        t.after(cleanup)
      }, new TcpStreamTransport(options))
    },
    async deadStreamAddr() {
      const listener = await new TcpStreamTransport().listen(bindAddr, () => undefined)
      await listener.close()
      return listener.localAddr
    },
  }
}

/** Seed of the Sim behind each test of the sim harness. */
const SIM_HARNESS_SEED = 1
/** Real milliseconds a test's pump runs at most: it stops by itself after that. */
const SIM_PUMP_MAX_MS = 120_000
/** Virtual milliseconds one pump step advances at most (after the test process stalled). */
const SIM_PUMP_STEP_MAX_MS = 50
/** Ports of the harness's hosts; the simulator hands out its own from 40000. */
const SIM_HOST_PORT_FIRST = 10_000

/**
 * One test's Sim in real-time mode: a pump advances the scheduler to the real time elapsed
 * since the start (at most SIM_PUMP_STEP_MAX_MS per step), then yields to the event loop for a
 * millisecond, so code that polls or times out in real time sees the simulation move. After
 * the test it runs the cleanups (with the pump still going, so closes can finish), then stops.
 */
class SimRun {
  readonly sim = new Sim({ seed: SIM_HARNESS_SEED })
  readonly ip: string
  private nextPort = SIM_HOST_PORT_FIRST
  private readonly cleanups: (() => Promise<void>)[] = []
  private stopped = false
  private failure: unknown
  private readonly pumping: Promise<void>

  constructor(t: TestContext, ip = '127.0.0.1') {
    this.ip = ip
    this.pumping = this.pump().catch((error: unknown) => {
      this.failure = error
    })
    t.after(async () => {
      try {
        for (const cleanup of this.cleanups) await cleanup()
      } finally {
        this.stopped = true
        await this.pumping
      }
      assert.ifError(this.failure) // the simulation itself threw
    })
  }

  /** A new host at a fresh address on `ip`; its context holds its transports. */
  host(options: HostOptions = {}): HostContext {
    let context: HostContext | undefined
    this.sim.addHost(
      `${this.ip}:${String(this.nextPort++)}`,
      (ctx) => {
        context = ctx
        return {}
      },
      options,
    )
    assert.ok(context !== undefined)
    return context
  }

  /** Runs `cleanup` after the test, before the pump stops. */
  defer(cleanup: () => Promise<void>): void {
    this.cleanups.push(cleanup)
  }

  private async pump(): Promise<void> {
    const start = performance.now()
    for (;;) {
      const realMs = performance.now() - start
      if (this.stopped || realMs > SIM_PUMP_MAX_MS) return
      const target = Math.min(realMs, this.sim.now() + SIM_PUMP_STEP_MAX_MS)
      if (target > this.sim.now()) await this.sim.runFor(target - this.sim.now())
      await sleep(1)
    }
  }
}

/**
 * The simulator's transports (SimDatagramTransport, sim/streams.ts) on one Sim per test, each
 * endpoint a host of its own on 127.0.0.1. No sockets: `rawSockets` is false.
 */
export function simHarness(): Harness {
  const runs = new WeakMap<TestContext, SimRun>()
  const runOf = (t: TestContext): SimRun => {
    let run = runs.get(t)
    if (run === undefined) {
      run = new SimRun(t)
      runs.set(t, run)
    }
    return run
  }
  return {
    name: 'sim',
    host: '127.0.0.1',
    rawSockets: false,
    datagram(t, options = {}) {
      const run = runOf(t)
      const { datagrams } = run.host({ datagram: options })
      run.defer(() => datagrams.close())
      return Promise.resolve(datagrams)
    },
    stream(t, options = {}) {
      const run = runOf(t)
      return tracked(
        (cleanup) => {
          run.defer(cleanup)
        },
        run.host({ stream: options }).streams,
      )
    },
    async deadStreamAddr(t) {
      const listener = await runOf(t)
        .host()
        .streams.listen('127.0.0.1:0', () => undefined)
      await listener.close()
      return listener.localAddr
    },
  }
}

/** Polls `condition` every few milliseconds until it holds; fails the test after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean,
  what: string,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!condition()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await sleep(2)
  }
}

/** Like waitFor, but answers false instead of failing. */
export async function eventually(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs
  while (!condition()) {
    if (performance.now() > deadline) return false
    await sleep(2)
  }
  return true
}

/** Settles `promise` into a state that can be checked without awaiting. */
export function track<T>(promise: Promise<T>): {
  readonly promise: Promise<T>
  state(): 'pending' | 'resolved' | 'rejected'
  error(): unknown
} {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending'
  let error: unknown
  promise.then(
    () => {
      state = 'resolved'
    },
    (e: unknown) => {
      state = 'rejected'
      error = e
    },
  )
  return { promise, state: () => state, error: () => error }
}

/** A frame of `size` bytes whose first four bytes (when there is room) hold `index`. */
export function frameOf(index: number, size: number): Uint8Array {
  const frame = new Uint8Array(size)
  for (let i = 0; i < size; i += 1) frame[i] = (index * 31 + i * 7) & 0xff
  if (size >= 4) new DataView(frame.buffer).setUint32(0, index)
  return frame
}

/**
 * Asserts two lists of frames are byte-equal, with a short message (a diff of multi-megabyte
 * arrays would take the test process down). Buffers and plain Uint8Arrays compare equal.
 */
export function assertFrames(actual: readonly Uint8Array[], expected: readonly Uint8Array[]): void {
  const sizes = (frames: readonly Uint8Array[]): string => frames.map((f) => f.length).join(',')
  assert.equal(sizes(actual), sizes(expected), 'frame sizes differ')
  actual.forEach((frame, i) => {
    const want = expected[i] ?? new Uint8Array()
    if (Buffer.compare(frame, want) !== 0) assert.fail(`frame ${i} (${frame.length} bytes) differs`)
  })
}

/** Reads `count` frames from a connection (fails if it ends first). */
export async function readFrames(
  connection: FramedConnection,
  count: number,
): Promise<Uint8Array[]> {
  const frames: Uint8Array[] = []
  if (count === 0) return frames
  for await (const frame of connection.frames()) {
    frames.push(frame)
    if (frames.length === count) break
  }
  assert.equal(frames.length, count, 'connection ended early')
  return frames
}

/** Everything the connection yields until it ends, and how it ended. */
export async function drainFrames(
  connection: FramedConnection,
): Promise<{ frames: Uint8Array[]; error: unknown }> {
  const frames: Uint8Array[] = []
  try {
    for await (const frame of connection.frames()) frames.push(frame)
    return { frames, error: undefined }
  } catch (error) {
    return { frames, error }
  }
}

/** Listens on host:0 and resolves the first inbound connection when it arrives. */
export async function listenOnce(
  transport: StreamTransport,
  host: string,
): Promise<{
  listener: StreamListener
  accepted: FramedConnection[]
  next: () => Promise<FramedConnection>
}> {
  const accepted: FramedConnection[] = []
  const listener = await transport.listen(host.includes(':') ? `[${host}]:0` : `${host}:0`, (c) => {
    accepted.push(c)
  })
  let taken = 0
  return {
    listener,
    accepted,
    next: async () => {
      await waitFor(() => accepted.length > taken, 'an inbound connection')
      const connection = accepted[taken]
      taken += 1
      assert.ok(connection !== undefined)
      return connection
    },
  }
}

/**
 * A `wrap` hook that passes bytes through a second Duplex, the way a TLS socket sits on a TCP
 * one. `edit` may change each outgoing chunk (given its offset in the stream); `seen` counts
 * the bytes that went through in each direction.
 */
export function passThroughWrap(edit?: (chunk: Buffer, offset: number) => Buffer): {
  wrap: WrapSocket
  seen: { out: number; in: number }
} {
  const seen = { out: 0, in: 0 }
  const wrap: WrapSocket = (socket) => {
    let offset = 0
    const wrapped = new Duplex({
      allowHalfOpen: false,
      write(chunk: Buffer, _encoding, callback) {
        const out = edit === undefined ? chunk : edit(Buffer.from(chunk), offset)
        offset += chunk.length
        seen.out += chunk.length
        if (socket.write(out)) callback()
        else
          socket.once('drain', () => {
            callback()
          })
      },
      final(callback) {
        socket.end()
        callback()
      },
      read() {
        socket.resume()
      },
      destroy(error, callback) {
        socket.destroy()
        callback(error)
      },
    })
    socket.on('data', (chunk: Buffer) => {
      seen.in += chunk.length
      if (!wrapped.push(chunk)) socket.pause()
    })
    socket.on('end', () => wrapped.push(null))
    socket.on('error', (error) => wrapped.destroy(error))
    socket.on('close', () => wrapped.destroy())
    return wrapped
  }
  return { wrap, seen }
}

/** A fixed "random" draw, so every backoff delay is known. */
export function fixedRandom(value: number): Random {
  return { float: () => value, int: (n) => Math.floor(value * n) }
}

/** A clock that only moves when the test says so. */
export class ManualTimers implements Clock {
  nowMs = 0
  private readonly timers = new Map<number, { atMs: number; callback: () => void }>()
  private nextId = 1

  now(): number {
    return this.nowMs
  }

  wallNow(): number {
    return this.nowMs
  }

  defer(fn: () => void): void {
    this.setTimer(0, fn)
  }

  setTimer(delayMs: number, callback: () => void): TimerId {
    const id = this.nextId
    this.nextId += 1
    this.timers.set(id, { atMs: this.nowMs + delayMs, callback })
    return id
  }

  clearTimer(handle: TimerId): void {
    this.timers.delete(handle as number)
  }

  /** Delays (from now) of the pending timers, soonest first. */
  pending(): number[] {
    return [...this.timers.values()].map((timer) => timer.atMs - this.nowMs).sort((a, b) => a - b)
  }

  /** Moves the clock to the soonest timer and fires it; returns the delay it had. */
  fireNext(): number {
    let soonest: [number, { atMs: number; callback: () => void }] | undefined
    for (const entry of this.timers) {
      if (soonest === undefined || entry[1].atMs < soonest[1].atMs) soonest = entry
    }
    assert.ok(soonest !== undefined, 'no timer pending')
    const [id, timer] = soonest
    const delayMs = timer.atMs - this.nowMs
    this.timers.delete(id)
    this.nowMs = timer.atMs
    timer.callback()
    return delayMs
  }

  /** Moves the clock by `ms`, firing every timer due by then in order. */
  advance(ms: number): void {
    const target = this.nowMs + ms
    for (;;) {
      const due = [...this.timers.entries()]
        .filter(([, timer]) => timer.atMs <= target)
        .sort((a, b) => a[1].atMs - b[1].atMs)[0]
      if (due === undefined) break
      this.timers.delete(due[0])
      this.nowMs = due[1].atMs
      due[1].callback()
    }
    this.nowMs = target
  }
}
