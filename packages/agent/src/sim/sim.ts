/**
 * Deterministic simulation of many hosts in one process: one virtual clock (`Scheduler`), one
 * seeded network (`SimNetwork`), and hosts that are just "something with a clock, an address and
 * handlers". A host is made by a factory from a `HostContext` (its clock, its random stream, its
 * address, `send` and `request`) and answers with `HostHandlers` (`onDatagram`, `onRequest`).
 * Membership (Swim) is one such thing; data replication over streams can be another, or the
 * same host can combine both.
 *
 * Faults per host:
 * - pause: nothing of the host runs; its timers that come due and everything delivered to it
 *   wait. On resume the overdue timers run first, in time order, then the waiting deliveries in
 *   arrival order, as a stalled Node.js event loop does (timers phase before poll phase);
 * - crash: the host's life ends; its timers, waiting deliveries and unanswered requests are
 *   dropped, the network finds nothing at its address;
 * - restart: a new life at the same address: the factory runs again with a fresh context
 *   (`life` + 1, a new random stream, `startedAtMs` = now).
 *
 * Same seed, same calls: same run, bit for bit (see `traceHash()`).
 */
import assert from 'node:assert/strict'
import type { Clock, TimerId } from '../runtime/clock.ts'
import { SeededRandom } from '../runtime/random.ts'
import { parseAddr } from '../transport/address.ts'
import {
  DatagramCore,
  type DatagramOptions,
  type DatagramTransport,
} from '../transport/datagram.ts'
import type { StreamOptions, StreamTransport } from '../transport/stream.ts'
import { SIM_EPOCH_BASE, Scheduler } from './scheduler.ts'
import { SimNetwork, type LinkProfile, type NetworkEndpoint } from './network.ts'

export interface HostContext {
  readonly addr: string
  /** 0 for the first start, + 1 per restart. */
  readonly life: number
  /** Virtual time at which this life started. */
  readonly startedAtMs: number
  /** Virtual time; timers run only while the host runs. */
  readonly clock: Clock
  /** This life's own random stream. */
  readonly random: SeededRandom
  /** Sends one datagram from this host. */
  send(to: string, bytes: Uint8Array): void
  /** One request/response exchange from this host (see `SimNetwork.request`). */
  request(to: string, bytes: Uint8Array, signal?: AbortSignal): Promise<Uint8Array>
  /**
   * The same network as transports, bound to this life: what a node built by createNode takes
   * (datagrams from `addr`; streams that dial from it and may listen on it).
   */
  readonly datagrams: DatagramTransport
  readonly streams: StreamTransport
}

/** What a host's handlers may answer; a host built on `ctx.datagrams`/`streams` needs none. */
export interface HostHandlers {
  onDatagram?(from: string, bytes: Uint8Array): void
  onRequest?(from: string, bytes: Uint8Array): Uint8Array | null | Promise<Uint8Array | null>
}

/** Per-host options: the limits of its transports (defaults from transport/defaults.ts). */
export interface HostOptions {
  readonly datagram?: DatagramOptions
  /** All but `wrap` (there are no sockets in the simulation). */
  readonly stream?: StreamOptions
}

/**
 * DatagramTransport on the simulated network for one life of a host. Counts as UdpTransport
 * does: a destination that is not "host:port", or of the other IP family, is `bad_address`.
 */
class SimDatagramTransport implements DatagramTransport {
  readonly localAddr: string
  private readonly core: DatagramCore
  private readonly family: 0 | 4 | 6
  private readonly out: (to: string, bytes: Uint8Array) => void
  private closed = false

  constructor(
    localAddr: string,
    out: (to: string, bytes: Uint8Array) => void,
    options: DatagramOptions,
  ) {
    this.localAddr = localAddr
    this.out = out
    this.core = new DatagramCore(options)
    this.family = parseAddr(localAddr).family
  }

  send(to: string, bytes: Uint8Array): void {
    const size = bytes.length
    if (this.core.destination(to, size, this.closed, this.family) === null) return
    this.core.sent(size)
    this.out(to, bytes)
  }

  onMessage(handler: (from: string, bytes: Uint8Array) => void): void {
    this.core.addHandler(handler)
  }

  receive(from: string, bytes: Uint8Array): void {
    if (!this.closed) this.core.receive(from, bytes)
  }

  close(): Promise<void> {
    this.closed = true
    return Promise.resolve()
  }

  stats(): ReturnType<DatagramTransport['stats']> {
    return this.core.stats()
  }
}

export type HostFactory<T extends object> = (ctx: HostContext) => T

export type HostStatus = 'running' | 'paused' | 'crashed'

interface TimerRecord {
  readonly fn: () => void
  readonly eventId: number
}

/** One life of a host: the network endpoint and the clock of that life. */
class Life<T extends object> implements NetworkEndpoint {
  handlers: T | null = null
  datagrams: SimDatagramTransport | null = null
  alive = true
  paused = false
  private readonly scheduler: Scheduler
  private readonly timers = new Map<number, TimerRecord>()
  private overdue: number[] = []
  private waiting: (() => void)[] = []
  private nextTimerId = 0

  constructor(scheduler: Scheduler) {
    this.scheduler = scheduler
  }

  readonly clock: Clock = {
    now: () => this.scheduler.now(),
    wallNow: () => SIM_EPOCH_BASE + this.scheduler.now(),
    defer: (fn: () => void): void => {
      this.clock.setTimer(0, fn)
    },
    setTimer: (ms: number, fn: () => void): TimerId => {
      const id = ++this.nextTimerId
      const eventId = this.scheduler.after(ms, () => {
        this.fire(id)
      })
      this.timers.set(id, { fn, eventId })
      return id
    },
    clearTimer: (id: TimerId): void => {
      if (typeof id !== 'number') return
      const record = this.timers.get(id)
      if (record === undefined) return
      this.scheduler.cancel(record.eventId)
      this.timers.delete(id)
    },
  }

  isAlive(): boolean {
    return this.alive
  }

  dispatch(task: () => void): void {
    if (!this.alive) return
    if (this.paused) this.waiting.push(task)
    else task()
  }

  onDatagram(from: string, bytes: Uint8Array): void {
    ;(this.handlers as HostHandlers | null)?.onDatagram?.(from, bytes)
    this.datagrams?.receive(from, bytes)
  }

  onRequest(from: string, bytes: Uint8Array): Uint8Array | null | Promise<Uint8Array | null> {
    return (this.handlers as HostHandlers | null)?.onRequest?.(from, bytes) ?? null
  }

  private fire(id: number): void {
    if (!this.alive) return
    if (this.paused) {
      this.overdue.push(id) // still in `timers`, so it can be cleared before it runs
      return
    }
    const record = this.timers.get(id)
    if (record === undefined) return
    this.timers.delete(id)
    record.fn()
  }

  resume(): void {
    this.paused = false
    const overdue = this.overdue
    const waiting = this.waiting
    this.overdue = []
    this.waiting = []
    for (const id of overdue) {
      this.scheduler.after(0, () => {
        this.fire(id)
      })
    }
    for (const task of waiting) {
      this.scheduler.after(0, () => {
        this.dispatch(task)
      })
    }
  }

  end(network: SimNetwork): void {
    this.alive = false
    network.endpointEnded(this)
    for (const record of this.timers.values()) this.scheduler.cancel(record.eventId)
    this.timers.clear()
    this.overdue = []
    this.waiting = []
    this.handlers = null
  }
}

export class SimHost<T extends object> {
  readonly addr: string
  private readonly sim: Sim
  private readonly factory: HostFactory<T>
  private readonly random: SeededRandom
  private readonly options: HostOptions
  private current: Life<T> | null = null
  private lives = 0

  constructor(
    sim: Sim,
    addr: string,
    factory: HostFactory<T>,
    random: SeededRandom,
    options: HostOptions = {},
  ) {
    this.sim = sim
    this.addr = addr
    this.factory = factory
    this.random = random
    this.options = options
  }

  /** The running (or paused) life's handlers; null when crashed. */
  get instance(): T | null {
    return this.current?.handlers ?? null
  }

  get status(): HostStatus {
    if (this.current === null || !this.current.alive) return 'crashed'
    return this.current.paused ? 'paused' : 'running'
  }

  /** Lives started so far (1 after the first start). */
  get life(): number {
    return this.lives
  }

  /** Starts a new life (the first start, or a restart after a crash). */
  start(): T {
    assert.ok(this.status === 'crashed', `${this.addr} is already running`)
    const life = new Life<T>(this.sim.scheduler)
    const network = this.sim.network
    const send = (to: string, bytes: Uint8Array): void => {
      if (life.alive) network.send(this.addr, to, bytes)
    }
    life.datagrams = new SimDatagramTransport(this.addr, send, this.options.datagram ?? {})
    const ctx: HostContext = {
      addr: this.addr,
      life: this.lives,
      startedAtMs: this.sim.now(),
      clock: life.clock,
      random: this.random.fork(),
      send,
      request: (to, bytes, signal) => network.request(this.addr, to, bytes, signal),
      datagrams: life.datagrams,
      streams: network.streams.transport(this.addr, life, this.options.stream),
    }
    this.lives++
    this.current = life
    network.attach(this.addr, life)
    life.handlers = this.factory(ctx)
    return life.handlers
  }

  pause(): void {
    assert.ok(this.status === 'running', `${this.addr} is ${this.status}`)
    ;(this.current as Life<T>).paused = true
  }

  resume(): void {
    assert.ok(this.status === 'paused', `${this.addr} is ${this.status}`)
    ;(this.current as Life<T>).resume()
  }

  /** Ends this life at once: no goodbye, all of its state is dropped. */
  crash(): void {
    this.current?.end(this.sim.network)
  }

  /** Crash (if running) and start again. */
  restart(): T {
    this.crash()
    return this.start()
  }
}

export interface SimOptions {
  readonly seed: number
  /** Default link profile of the network. */
  readonly link?: Partial<LinkProfile>
  readonly streamTimeoutMs?: number
  /** Keep this many network trace lines for debugging. */
  readonly logLimit?: number
  /** Hash every network event (default true). */
  readonly trace?: boolean
}

export class Sim {
  readonly seed: number
  readonly scheduler = new Scheduler()
  readonly network: SimNetwork
  /** The simulation's own random stream (tests may draw from it for their choices). */
  readonly random: SeededRandom
  private readonly hostRandom: SeededRandom
  private readonly hostsByAddr = new Map<string, SimHost<object>>()

  constructor(options: SimOptions) {
    this.seed = options.seed
    const root = new SeededRandom(options.seed)
    const networkRandom = root.fork()
    this.hostRandom = root.fork()
    this.random = root.fork()
    this.network = new SimNetwork(this.scheduler, networkRandom, {
      ...(options.link === undefined ? {} : { link: options.link }),
      ...(options.streamTimeoutMs === undefined
        ? {}
        : { streamTimeoutMs: options.streamTimeoutMs }),
      ...(options.logLimit === undefined ? {} : { logLimit: options.logLimit }),
      ...(options.trace === undefined ? {} : { trace: options.trace }),
    })
  }

  now(): number {
    return this.scheduler.now()
  }

  /** Adds a host at `addr` ("host:port") and starts its first life at once. */
  addHost<T extends object>(
    addr: string,
    factory: HostFactory<T>,
    options: HostOptions = {},
  ): SimHost<T> {
    assert.ok(!this.hostsByAddr.has(addr), `a host already listens on ${addr}`)
    const host = new SimHost<T>(this, addr, factory, this.hostRandom.fork(), options)
    this.hostsByAddr.set(addr, host)
    host.start()
    return host
  }

  host(addr: string): SimHost<object> {
    const host = this.hostsByAddr.get(addr)
    assert.ok(host !== undefined, `no host at ${addr}`)
    return host
  }

  hosts(): SimHost<object>[] {
    return [...this.hostsByAddr.values()]
  }

  /** Runs the simulation for `ms` virtual milliseconds. */
  async runFor(ms: number): Promise<void> {
    await this.scheduler.runFor(ms)
  }

  /**
   * Runs until `done()` holds (checked every `checkEveryMs` of virtual time) or `timeoutMs`
   * passed. Returns whether `done()` held.
   */
  async runUntil(
    done: () => boolean,
    options: { timeoutMs: number; checkEveryMs?: number },
  ): Promise<boolean> {
    const deadline = this.now() + options.timeoutMs
    const step = options.checkEveryMs ?? 100
    while (!done()) {
      if (this.now() >= deadline) return false
      await this.scheduler.runUntil(Math.min(deadline, this.now() + step))
    }
    return true
  }

  /** SHA-256 of every network event so far. */
  traceHash(): string {
    return this.network.traceHash()
  }
}
