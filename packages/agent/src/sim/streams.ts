/**
 * Framed streams on the simulated network: the same `StreamTransport` / `FramedConnection`
 * contract as TCP (transport/stream.ts), at the level of frames, on virtual time. The node's
 * real stream code (push-pull, broadcast links, sync sessions, the stream-kind registrar) runs
 * on it unchanged.
 *
 * What the network does to a stream, drawn from the link profile of each direction:
 * - latency and jitter per frame; frames of one connection stay in order (TCP), so a frame
 *   held back delays every frame behind it (head-of-line blocking);
 * - loss: TCP retransmits, so a lost frame arrives SIM_STREAM_RETRANSMIT_MS later;
 * - reorder: a frame (and those behind it) is held back by up to `reorderDelayMs`, which
 *   reorders it against other connections and datagrams;
 * - reset: with probability `reset` per frame the connection is reset instead (both ends fail
 *   with SOCKET_ERROR, frames in flight are lost), as a middlebox or a peer's RST would;
 * - partition: a SYN across it vanishes (the connect times out); frames wait and are retried,
 *   and a connection that cannot deliver for `streamTimeoutMs` is reset;
 * - crash of a host: its connections are reset (the peer's kernel gets an RST), its listener
 *   is gone (connects are refused);
 * - pause of a host: frames, accepts and answers for it wait until it resumes.
 *
 * Flow control: frames sent and not yet read by the peer count against a window of
 * STREAM_RECEIVE_BUFFER_BYTES_MAX; `send()` past it waits, and past the send queue cap
 * (STREAM_SEND_QUEUE_BYTES_MAX) rejects with QUEUE_FULL, as the TCP transport does.
 */
import {
  FRAME_BYTES_MAX,
  STREAM_CONNECT_TIMEOUT_MS,
  STREAM_IDLE_TIMEOUT_MS,
  STREAM_RECEIVE_BUFFER_BYTES_MAX,
  STREAM_SEND_QUEUE_BYTES_MAX,
} from '../transport/defaults.ts'
import { abortError, TransportError } from '../transport/errors.ts'
import { StreamCounters } from '../transport/framed-connection.ts'
import type {
  FramedConnection,
  StreamCloseReason,
  StreamListener,
  StreamStats,
  StreamTransport,
} from '../transport/stream.ts'
import { withKind } from '../transport/stream-kind.ts'
import type { Scheduler } from './scheduler.ts'

/** Whatever a connection end belongs to: one life of a host. */
export interface StreamEndpoint {
  isAlive(): boolean
  /** Runs `task` on the endpoint's behalf: now, or when it resumes if it is paused. */
  dispatch(task: () => void): void
}

/** What the stream layer needs of the network (network.ts implements it). */
export interface StreamNetwork {
  readonly scheduler: Scheduler
  readonly streamTimeoutMs: number
  draw(): number
  oneWayDelay(from: string, to: string): number
  linkFor(
    from: string,
    to: string,
  ): {
    readonly loss: number
    readonly reorder: number
    readonly reorderDelayMs: number
    readonly reset: number
  }
  isBlocked(from: string, to: string): boolean
  /** Whether a fault filter is set (frames are shown to it only then). */
  readonly filtering: boolean
  /** The test's fault filter: false drops the frame (shown as kind byte + payload). */
  passes(from: string, to: string, bytes: Uint8Array): boolean
  /** Counts a frame the filter dropped. */
  dropped(from: string, to: string): void
  traceEvent(kind: string, from: string, to: string, data: Uint8Array | null): void
}

/** A lost stream frame is retransmitted after this (a TCP retransmission timeout). */
export const SIM_STREAM_RETRANSMIT_MS = 200

interface Pending {
  readonly data: Uint8Array | null
  readonly at: number
}

interface Waiting {
  readonly frame: Uint8Array
  readonly resolve: () => void
  readonly reject: (err: TransportError) => void
}

/** One end of a simulated connection. */
class SimConnection implements FramedConnection {
  readonly remoteAddr: string
  /** The host addresses of this side and the other (what partitions and link profiles name). */
  readonly hostAddr: string
  readonly peerHostAddr: string
  peer!: SimConnection
  private readonly streams: SimStreams
  private readonly owner: StreamEndpoint
  private readonly counters: StreamCounters
  private readonly inbox: Uint8Array[] = []
  private reader: (() => void) | null = null
  private state: 'open' | 'closed' = 'open'
  private eof = false
  private error: TransportError | undefined
  private closedResolve!: (err: TransportError | undefined) => void
  private readonly closedPromise: Promise<TransportError | undefined>
  /** Frames on their way to the peer, in order. */
  private readonly pipe: Pending[] = []
  private pumpAt: number | null = null
  private pumpEvent = -1
  private blockedSince: number | null = null
  private lastArrival = 0
  /** The stream kind: the first byte of the dialler's first frame (-1 until it is sent). */
  kind = -1
  /** Bytes sent and not yet read by the peer (the flow-control window). */
  inFlightBytes = 0
  private sendQueue: Waiting[] = []
  private sendQueueBytes = 0
  private lastActivity: number
  private idleEvent = -1

  constructor(
    streams: SimStreams,
    owner: StreamEndpoint,
    hosts: { readonly self: string; readonly peer: string; readonly remoteAddr: string },
    counters: StreamCounters,
  ) {
    this.streams = streams
    this.owner = owner
    this.hostAddr = hosts.self
    this.peerHostAddr = hosts.peer
    this.remoteAddr = hosts.remoteAddr
    this.counters = counters
    this.closedPromise = new Promise((resolve) => {
      this.closedResolve = resolve
    })
    this.lastActivity = streams.now()
    counters.connectionsOpen++
    counters.connectionsOpened++
    this.armIdle()
  }

  get ownerEndpoint(): StreamEndpoint {
    return this.owner
  }

  get isOpen(): boolean {
    return this.state === 'open'
  }

  send(frame: Uint8Array, signal?: AbortSignal): Promise<void> {
    if (this.state !== 'open') {
      this.counters.sendsRejected.closed++
      return Promise.reject(new TransportError('CLOSED', `connection to ${this.remoteAddr} closed`))
    }
    if (signal?.aborted === true) {
      this.counters.sendsRejected.aborted++
      return Promise.reject(abortError(signal, `send to ${this.remoteAddr}`))
    }
    if (frame.length > FRAME_BYTES_MAX) {
      this.counters.sendsRejected.frame_too_large++
      return Promise.reject(
        new TransportError('FRAME_TOO_LARGE', `frame of ${frame.length} bytes is too large`),
      )
    }
    if (this.sendQueue.length === 0 && this.windowHasRoom()) {
      this.transmit(frame)
      return Promise.resolve()
    }
    if (
      this.sendQueue.length > 0 &&
      this.sendQueueBytes + frame.length > STREAM_SEND_QUEUE_BYTES_MAX
    ) {
      this.counters.sendsRejected.queue_full++
      return Promise.reject(
        new TransportError('QUEUE_FULL', `send queue to ${this.remoteAddr} full`),
      )
    }
    return new Promise<void>((resolve, reject) => {
      this.sendQueue.push({ frame, resolve, reject })
      this.sendQueueBytes += frame.length
      this.counters.sendQueueBytes += frame.length
    })
  }

  async *frames(): AsyncIterable<Uint8Array> {
    for (;;) {
      const frame = this.inbox.shift()
      if (frame !== undefined) {
        this.counters.receiveBufferBytes -= frame.length
        this.peer.credit(frame.length)
        yield frame
        continue
      }
      if (this.error !== undefined) throw this.error
      if (this.eof || this.state === 'closed') return
      await new Promise<void>((resolve) => {
        this.reader = resolve
      })
    }
  }

  close(): void {
    if (this.state === 'closed') return
    // Frames accepted by send() still go out, then the peer sees a clean end.
    for (const w of this.sendQueue) {
      this.transmit(w.frame)
      w.resolve()
    }
    this.counters.sendQueueBytes -= this.sendQueueBytes
    this.sendQueue = []
    this.sendQueueBytes = 0
    this.enqueue({ data: null, at: this.arrivalTime(0) })
    this.finish('local', undefined)
  }

  closed(): Promise<TransportError | undefined> {
    return this.closedPromise
  }

  // ------------------------------------------------------------------ network side

  /** The peer read `bytes`: room in the window again. */
  credit(bytes: number): void {
    this.inFlightBytes -= bytes
    while (this.sendQueue.length > 0 && this.windowHasRoom() && this.state === 'open') {
      const w = this.sendQueue.shift() as Waiting
      this.sendQueueBytes -= w.frame.length
      this.counters.sendQueueBytes -= w.frame.length
      this.transmit(w.frame)
      w.resolve()
      this.streams.requestDrain()
    }
  }

  /** A frame (or the end, null) arrived from the peer. */
  receive(data: Uint8Array | null): void {
    if (this.state === 'closed') {
      if (data !== null) this.peer.credit(data.length)
      return
    }
    this.touch()
    if (data === null) {
      this.eof = true
      this.finish('peer', undefined)
      return
    }
    this.counters.framesReceived++
    this.counters.bytesReceived += data.length
    this.counters.receiveBufferBytes += data.length
    this.inbox.push(data)
    this.wakeReader()
  }

  /** The connection broke under this end (RST, timeout, a crash of the other side). */
  fail(reason: StreamCloseReason, err: TransportError): void {
    if (this.state === 'closed') return
    this.error = err
    for (const w of this.sendQueue) w.reject(err)
    this.counters.sendQueueBytes -= this.sendQueueBytes
    this.sendQueue = []
    this.sendQueueBytes = 0
    this.finish(reason, err)
  }

  /** The owner's life ended: this end vanishes without telling its own (dead) code anything. */
  vanish(): void {
    this.state = 'closed'
    this.pipe.length = 0
    this.streams.cancel(this.pumpEvent)
    this.streams.cancel(this.idleEvent)
  }

  private finish(reason: StreamCloseReason, err: TransportError | undefined): void {
    this.state = 'closed'
    this.counters.connectionsOpen--
    this.counters.closed[reason]++
    this.counters.receiveBufferBytes -= this.inbox.reduce((n, f) => n + f.length, 0)
    if (err === undefined) this.inbox.length = 0
    this.streams.cancel(this.idleEvent)
    this.streams.release(this)
    this.wakeReader()
    this.closedResolve(err)
    this.streams.requestDrain()
  }

  private wakeReader(): void {
    const reader = this.reader
    this.reader = null
    if (reader !== null) {
      reader()
      this.streams.requestDrain()
    }
  }

  private windowHasRoom(): boolean {
    return this.inFlightBytes === 0 || this.inFlightBytes < STREAM_RECEIVE_BUFFER_BYTES_MAX
  }

  private transmit(frame: Uint8Array): void {
    const net = this.streams.network
    if (this.kind < 0) {
      this.kind = frame[0] ?? 0
      this.peer.kind = this.kind
    } else if (
      net.filtering &&
      !net.passes(this.hostAddr, this.peerHostAddr, withKind(this.kind, frame))
    ) {
      net.dropped(this.hostAddr, this.peerHostAddr)
      return
    }
    const data = frame.slice()
    this.touch()
    this.inFlightBytes += data.length
    this.counters.framesSent++
    this.counters.bytesSent += data.length
    this.streams.network.traceEvent('stream', this.hostAddr, this.peerHostAddr, data)
    const link = this.streams.network.linkFor(this.hostAddr, this.peerHostAddr)
    if (link.reset > 0 && this.streams.network.draw() < link.reset) {
      this.streams.reset(this, 'stream reset by the network')
      return
    }
    let extra = 0
    if (link.loss > 0 && this.streams.network.draw() < link.loss) extra += SIM_STREAM_RETRANSMIT_MS
    if (link.reorder > 0 && this.streams.network.draw() < link.reorder) {
      extra += this.streams.network.draw() * link.reorderDelayMs
    }
    this.enqueue({ data, at: this.arrivalTime(extra) })
  }

  private arrivalTime(extraMs: number): number {
    const d = this.streams.network.oneWayDelay(this.hostAddr, this.peerHostAddr) + extraMs
    this.lastArrival = Math.max(this.lastArrival, this.streams.now() + d)
    return this.lastArrival
  }

  private enqueue(p: Pending): void {
    this.pipe.push(p)
    this.schedulePump()
  }

  private schedulePump(): void {
    const head = this.pipe[0]
    if (head === undefined) return
    const at = Math.max(head.at, this.streams.now())
    if (this.pumpAt !== null && this.pumpAt <= at) return
    this.streams.cancel(this.pumpEvent)
    this.pumpAt = at
    this.pumpEvent = this.streams.at(at, () => {
      this.pumpAt = null
      this.pump()
    })
  }

  /** Delivers the frames due now, in order; waits while the path is cut. */
  private pump(): void {
    const now = this.streams.now()
    for (;;) {
      const head = this.pipe[0]
      if (head === undefined || head.at > now) break
      if (this.streams.network.isBlocked(this.hostAddr, this.peerHostAddr)) {
        this.blockedSince ??= now
        if (now - this.blockedSince >= this.streams.network.streamTimeoutMs) {
          this.streams.reset(this, 'no answer across the network (timed out)')
          return
        }
        this.pipe[0] = { data: head.data, at: now + SIM_STREAM_RETRANSMIT_MS }
        break
      }
      this.blockedSince = null
      this.pipe.shift()
      const peer = this.peer
      const endpoint = peer.ownerEndpoint
      if (!endpoint.isAlive()) continue
      endpoint.dispatch(() => {
        peer.receive(head.data)
      })
    }
    this.schedulePump()
  }

  private touch(): void {
    this.lastActivity = this.streams.now()
  }

  private armIdle(): void {
    this.idleEvent = this.streams.at(this.lastActivity + STREAM_IDLE_TIMEOUT_MS, () => {
      if (this.state !== 'open') return
      if (this.streams.now() - this.lastActivity >= STREAM_IDLE_TIMEOUT_MS) {
        this.owner.dispatch(() => {
          this.fail('idle_timeout', new TransportError('IDLE_TIMEOUT', 'connection idle'))
        })
      } else {
        this.armIdle()
      }
    })
  }
}

interface ListenerEntry {
  readonly endpoint: StreamEndpoint
  readonly onConnection: (connection: FramedConnection) => void
  readonly accepted: Set<SimConnection>
}

/**
 * The stream layer of one SimNetwork: listeners by address, and every open connection (so a
 * crashed life's connections can be reset).
 */
export class SimStreams {
  readonly network: StreamNetwork
  private readonly listeners = new Map<string, ListenerEntry>()
  private readonly open = new Set<SimConnection>()
  private nextPort = 40_000

  constructor(network: StreamNetwork) {
    this.network = network
  }

  now(): number {
    return this.network.scheduler.now()
  }

  at(time: number, fn: () => void): number {
    return this.network.scheduler.at(time, fn)
  }

  cancel(id: number): void {
    if (id >= 0) this.network.scheduler.cancel(id)
  }

  requestDrain(): void {
    this.network.scheduler.requestDrain()
  }

  /** A transport for the life `endpoint` of the host at `host`. */
  transport(host: string, endpoint: StreamEndpoint): StreamTransport {
    const counters = new StreamCounters()
    return {
      connect: (to, signal) => this.connect(host, endpoint, to, counters, signal),
      listen: (addr, onConnection) => Promise.resolve(this.listen(addr, endpoint, onConnection)),
      stats: (): StreamStats => counters.snapshot(),
    }
  }

  private listen(
    addr: string,
    endpoint: StreamEndpoint,
    onConnection: (connection: FramedConnection) => void,
  ): StreamListener {
    const existing = this.listeners.get(addr)
    if (existing !== undefined && existing.endpoint.isAlive()) {
      throw new TransportError('BIND_FAILED', `${addr} is in use`)
    }
    const entry: ListenerEntry = { endpoint, onConnection, accepted: new Set() }
    this.listeners.set(addr, entry)
    return {
      localAddr: addr,
      close: () => {
        if (this.listeners.get(addr) === entry) this.listeners.delete(addr)
        for (const c of entry.accepted) c.close()
        return Promise.resolve()
      },
    }
  }

  private connect(
    from: string,
    caller: StreamEndpoint,
    to: string,
    counters: StreamCounters,
    signal?: AbortSignal,
  ): Promise<FramedConnection> {
    const net = this.network
    return new Promise<FramedConnection>((resolve, reject) => {
      let settled = false
      const settle = (conn: SimConnection | null, err: TransportError | null): void => {
        if (settled) {
          conn?.close()
          return
        }
        settled = true
        this.cancel(timeout)
        signal?.removeEventListener('abort', onAbort)
        this.requestDrain()
        if (conn !== null) {
          resolve(conn)
        } else {
          counters.connectsFailed[
            err?.code === 'CONNECT_TIMEOUT' ? 'connect_timeout' : 'connect_failed'
          ]++
          net.traceEvent(`connect-fail:${err?.code ?? ''}`, from, to, null)
          reject(err ?? new TransportError('CONNECT_FAILED', `connect to ${to} failed`))
        }
      }
      const toCaller = (conn: SimConnection | null, err: TransportError | null): void => {
        if (!caller.isAlive()) return
        caller.dispatch(() => {
          settle(conn, err)
        })
      }
      const onAbort = (): void => {
        if (settled) return
        settled = true
        this.cancel(timeout)
        counters.connectsFailed.aborted++
        this.requestDrain()
        reject(abortError(signal as AbortSignal, `connect to ${to}`))
      }
      const timeout = this.at(this.now() + STREAM_CONNECT_TIMEOUT_MS, () => {
        toCaller(null, new TransportError('CONNECT_TIMEOUT', `connect to ${to} timed out`))
      })
      if (signal?.aborted === true) {
        onAbort()
        return
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      net.traceEvent('connect', from, to, null)
      if (net.isBlocked(from, to) || net.isBlocked(to, from)) return // the SYN vanishes
      this.at(this.now() + net.oneWayDelay(from, to), () => {
        const entry = this.listeners.get(to)
        const back = net.oneWayDelay(to, from)
        if (entry === undefined || !entry.endpoint.isAlive()) {
          this.at(this.now() + back, () => {
            toCaller(null, new TransportError('CONNECT_FAILED', `nothing listens on ${to}`))
          })
          return
        }
        // The accepted side sees the dialler's ephemeral port, as over TCP.
        const ephemeral = `${hostOf(from)}:${String(this.nextPort++)}`
        const client = new SimConnection(
          this,
          caller,
          { self: from, peer: to, remoteAddr: to },
          counters,
        )
        const server = new SimConnection(
          this,
          entry.endpoint,
          { self: to, peer: from, remoteAddr: ephemeral },
          counters,
        )
        client.peer = server
        server.peer = client
        this.open.add(client)
        this.open.add(server)
        entry.accepted.add(server)
        entry.endpoint.dispatch(() => {
          if (server.isOpen) entry.onConnection(server)
        })
        this.at(this.now() + back, () => {
          toCaller(client, null)
        })
      })
    })
  }

  /** Resets the connection of `end` on both sides (each told after its one-way delay). */
  reset(end: SimConnection, why: string): void {
    const peer = end.peer
    this.network.traceEvent('reset', end.hostAddr, end.peerHostAddr, null)
    const err = (): TransportError =>
      new TransportError('SOCKET_ERROR', `${why} (${end.remoteAddr})`)
    end.ownerEndpoint.dispatch(() => {
      end.fail('socket_error', err())
    })
    this.at(this.now() + this.network.oneWayDelay(end.hostAddr, end.peerHostAddr), () => {
      if (peer.ownerEndpoint.isAlive()) {
        peer.ownerEndpoint.dispatch(() => {
          peer.fail('socket_error', err())
        })
      }
    })
  }

  /** Every open connection between hosts `a` and `b` (dialled either way) is reset. */
  resetBetween(a: string, b: string): void {
    for (const c of [...this.open]) {
      if (c.hostAddr === a && c.peerHostAddr === b && c.peer.isOpen)
        this.reset(c, 'connection reset')
    }
  }

  /** A life ended (crash): its listener goes, its connections vanish and peers get an RST. */
  endpointEnded(endpoint: StreamEndpoint): void {
    for (const [addr, entry] of this.listeners) {
      if (entry.endpoint === endpoint) this.listeners.delete(addr)
    }
    for (const c of [...this.open]) {
      if (c.ownerEndpoint !== endpoint) continue
      this.open.delete(c)
      c.vanish()
      const peer = c.peer
      if (!this.network.isBlocked(c.hostAddr, c.peerHostAddr)) {
        this.at(this.now() + this.network.oneWayDelay(c.hostAddr, c.peerHostAddr), () => {
          if (!peer.ownerEndpoint.isAlive()) return
          peer.ownerEndpoint.dispatch(() => {
            peer.fail(
              'socket_error',
              new TransportError('SOCKET_ERROR', 'connection reset by peer'),
            )
          })
        })
      }
    }
  }

  /** @internal A closed end is no longer tracked. */
  release(end: SimConnection): void {
    this.open.delete(end)
  }
}

function hostOf(addr: string): string {
  const i = addr.lastIndexOf(':')
  return i < 0 ? addr : addr.slice(0, i)
}
