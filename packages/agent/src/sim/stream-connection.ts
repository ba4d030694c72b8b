/**
 * One end of a framed stream on the simulated network (streams.ts makes them, in pairs).
 *
 * One connection end, as a Node.js socket over TCP:
 * - `send()` writes the frame into the end's socket buffer and resolves at once while that holds
 *   less than SIM_STREAM_SOCKET_BUFFER_BYTES (Node's writable high-water mark); otherwise it
 *   resolves when the buffer has drained onto the network, and later frames wait in the send
 *   queue, capped at `sendQueueBytesMax` (QUEUE_FULL beyond it, as over TCP);
 * - the socket buffer drains onto the network at the next event of the same virtual time, as
 *   far as the window lets it: frames on the wire or unread by the peer are capped at the
 *   peer's `receiveBufferBytesMax` (a frame always goes when nothing is in flight), so a slow
 *   reader pushes back on the sender;
 * - `close()` stops reading at once, still sends what `send()` accepted, then an end of stream;
 *   the peer answers with its own end of stream (TCP without half-open), and `closed()`
 *   resolves on each side when both ends are done. A peer that does not answer within
 *   `closeGraceMs` is cut off;
 * - a frame above the receiver's `frameBytesMax`, an idle timeout, or a connection handler that
 *   throws breaks the connection on that side (its reason counted) and sends an RST to the
 *   other (SOCKET_ERROR there); data that reaches an end that is gone is answered with an RST.
 */
import { abortError, TransportError } from '../transport/errors.ts'
import { Fifo } from '../transport/fifo.ts'
import { FRAME_HEADER_BYTES } from '../transport/frame-codec.ts'
import {
  refuseSend,
  StreamCounters,
  type ConnectionLimits,
} from '../transport/framed-connection.ts'
import type { FramedConnection, SendRejection, StreamCloseReason } from '../transport/stream.ts'
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

/**
 * Bytes a connection's socket buffer holds before `send()` waits for it to drain: Node's default
 * writable high-water mark, so a frame above it waits for the next event, as over TCP.
 */
export const SIM_STREAM_SOCKET_BUFFER_BYTES = 16 * 1024

/** A frame (or the end of stream, null) on the wire. */
interface Pending {
  readonly data: Uint8Array | null
  readonly at: number
}

/** A frame accepted by `send()` and not yet resolved. */
interface PendingSend {
  readonly payload: Uint8Array
  /** Header plus payload, as TCP counts it. */
  readonly size: number
  readonly resolve: () => void
  readonly reject: (err: TransportError) => void
  readonly signal: AbortSignal | undefined
  onAbort: (() => void) | undefined
  settled: boolean
}

/** A frame in the socket buffer: written, not yet on the wire. */
interface Written {
  readonly data: Uint8Array
  readonly size: number
}

interface Waiter {
  readonly resolve: (frame: Uint8Array | undefined) => void
  readonly reject: (err: TransportError) => void
}

/** What a connection end needs of the stream layer that made it (streams.ts). */
export interface ConnectionLayer {
  readonly network: StreamNetwork
  now(): number
  at(time: number, fn: () => void): number
  cancel(id: number): void
  requestDrain(): void
  /** Resets the connection of `end` on both sides. */
  reset(end: SimConnection, why: string): void
  /** Sends an RST to `end` (the other side is gone). */
  sendRst(end: SimConnection): void
  /** A closed end is no longer tracked. */
  release(end: SimConnection): void
}

/** One end of a simulated connection. */
export class SimConnection implements FramedConnection {
  readonly remoteAddr: string
  /** The host addresses of this side and the other (what partitions and link profiles name). */
  readonly hostAddr: string
  readonly peerHostAddr: string
  readonly limits: ConnectionLimits
  peer!: SimConnection
  /** The stream kind: the first byte of the first frame on the connection (-1 until then). */
  kind = -1
  /** Told once when this end is gone (its listener forgets it). */
  onGone: (() => void) | undefined
  private readonly streams: ConnectionLayer
  private readonly owner: StreamEndpoint
  private readonly counters: StreamCounters
  private state: 'open' | 'closing' | 'closed' = 'open'
  /** Both ends of stream exchanged, or broken: nothing more happens on this end. */
  private gone = false
  /** Handed to user code (the connect resolved, or `onConnection` ran): counted as open. */
  private counted = false
  private failure: TransportError | undefined
  private resolveClosed: (err: TransportError | undefined) => void = () => undefined
  private readonly closedPromise: Promise<TransportError | undefined>

  // Sending: frames not yet written, written frames waiting for the socket buffer to drain.
  private readonly unwritten = new Fifo<PendingSend>()
  private awaitingDrain: PendingSend[] = []
  private queuedBytes = 0
  private needDrain = false
  private readonly socket = new Fifo<Written>()
  private socketBytes = 0
  private flushEvent = -1
  private eofQueued = false
  private eofSent = false
  private eofReceived = false
  /** Payload bytes on the wire or unread by the peer: what the peer's window holds. */
  private inFlightBytes = 0

  // The wire towards the peer, in order.
  private wireCut = false
  private readonly pipe: Pending[] = []
  private pumpAt: number | null = null
  private pumpEvent = -1
  private blockedSince: number | null = null
  /** Arrival time of the last thing sent: nothing overtakes it. */
  lastArrival = 0

  // Receiving: frames not yet read, readers waiting for a frame.
  private readonly inbox = new Fifo<Uint8Array>()
  private inboxBytes = 0
  private readEnded = false
  private readError: TransportError | undefined
  private readonly waiters = new Fifo<Waiter>()

  private lastActivity = 0
  private idleEvent = -1
  private graceEvent = -1

  constructor(
    streams: ConnectionLayer,
    owner: StreamEndpoint,
    hosts: { readonly self: string; readonly peer: string; readonly remoteAddr: string },
    side: { readonly counters: StreamCounters; readonly limits: ConnectionLimits },
  ) {
    this.streams = streams
    this.owner = owner
    this.hostAddr = hosts.self
    this.peerHostAddr = hosts.peer
    this.remoteAddr = hosts.remoteAddr
    this.counters = side.counters
    this.limits = side.limits
    this.closedPromise = new Promise((resolve) => {
      this.resolveClosed = resolve
    })
  }

  get ownerEndpoint(): StreamEndpoint {
    return this.owner
  }

  /** Nothing more happens on this end (closed both ways, broken, or its life ended). */
  get isGone(): boolean {
    return this.gone
  }

  /** Frames written by this end wait for the peer's window. */
  get waitingForWindow(): boolean {
    return this.socket.length > 0
  }

  /** The end is handed to user code: it counts as open and its idle timer starts. */
  opened(): void {
    this.counted = true
    this.counters.connectionsOpen++
    this.counters.connectionsOpened++
    this.touch()
    if (this.limits.idleTimeoutMs > 0) this.armIdle(this.limits.idleTimeoutMs)
  }

  send(frame: Uint8Array, signal?: AbortSignal): Promise<void> {
    if (this.state !== 'open') {
      return this.rejectSend('closed', this.closedError())
    }
    const refused = refuseSend(frame, signal, this.queuedBytes, this.limits, this.remoteAddr)
    if (refused !== null) return this.rejectSend(refused.reason, refused.error)
    const size = FRAME_HEADER_BYTES + frame.length
    return new Promise<void>((resolve, reject) => {
      const pending: PendingSend = {
        payload: frame,
        size,
        resolve,
        reject,
        signal,
        onAbort: undefined,
        settled: false,
      }
      this.queuedBytes += size
      this.counters.sendQueueBytes += size
      if (signal !== undefined) {
        pending.onAbort = () => {
          // A frame already written may still arrive, as over TCP.
          this.unwritten.remove(pending)
          this.counters.sendsRejected.aborted++
          this.settle(pending, abortError(signal, 'send'))
        }
        signal.addEventListener('abort', pending.onAbort, { once: true })
      }
      if (!this.needDrain && this.unwritten.length === 0) this.write(pending)
      else this.unwritten.push(pending)
    })
  }

  frames(): AsyncIterable<Uint8Array> {
    return { [Symbol.asyncIterator]: () => this.iterate() }
  }

  close(): void {
    if (this.state !== 'open') return
    this.state = 'closing'
    this.counters.closed.local++
    this.endReading(undefined)
    // Whatever arrives from now on is read and discarded, so the peer's end of stream gets here.
    this.dropInbox()
    this.graceEvent = this.streams.at(this.streams.now() + this.limits.closeGraceMs, () => {
      this.graceEvent = -1
      this.owner.dispatch(() => {
        this.destroy('local', undefined)
      })
    })
    this.pumpWrites()
  }

  closed(): Promise<TransportError | undefined> {
    return this.closedPromise
  }

  // ------------------------------------------------------------------ breaking

  /**
   * Breaks the connection from this side: counts `reason` (if it was open), lets `frames()`
   * throw `err` after the frames already received, and sends the peer an RST.
   */
  destroy(reason: StreamCloseReason, err: TransportError | undefined): void {
    if (this.gone) return
    this.break(reason, err)
    this.streams.sendRst(this.peer)
    this.finish()
  }

  /** The connection broke under this end (an RST arrived, the network reset it). */
  fail(reason: StreamCloseReason, err: TransportError): void {
    if (this.gone) return
    this.break(reason, err)
    this.finish()
  }

  /** A connection that no caller will ever see (the connect gave up first): reset it. */
  discard(): void {
    if (this.gone) return
    this.cutWire()
    this.streams.sendRst(this.peer)
    this.finish()
  }

  /** The owner's life ended: this end vanishes without telling its own (dead) code anything. */
  vanish(): void {
    this.gone = true
    this.state = 'closed'
    this.cutWire()
    this.streams.cancel(this.idleEvent)
    this.streams.cancel(this.graceEvent)
  }

  /** The wire is dead (an RST, a reset, a crash): nothing more goes out or arrives. */
  cutWire(): void {
    this.wireCut = true
    this.pipe.length = 0
    this.streams.cancel(this.pumpEvent)
    this.pumpAt = null
    this.streams.cancel(this.flushEvent)
    this.flushEvent = -1
    this.socket.drain()
    this.socketBytes = 0
  }

  private break(reason: StreamCloseReason, err: TransportError | undefined): void {
    if (this.state === 'open') {
      if (this.counted) this.counters.closed[reason]++
      this.failure = err
      this.endReading(err)
    }
    this.cutWire()
  }

  /** This end is done: pending sends fail, the gauges let go of it, `closed()` resolves. */
  private finish(): void {
    if (this.gone) return
    this.gone = true
    this.state = 'closed'
    this.streams.cancel(this.idleEvent)
    this.streams.cancel(this.graceEvent)
    this.rejectQueued()
    this.endReading(undefined)
    if (this.counted) this.counters.connectionsOpen--
    // Frames still unread may be read; they no longer count against an open connection.
    this.counters.receiveBufferBytes -= this.inboxBytes
    this.streams.release(this)
    this.onGone?.()
    this.resolveClosed(this.failure)
    this.streams.requestDrain()
  }

  // ------------------------------------------------------------------ sending

  /** Into the socket buffer; resolves at once unless the buffer is above its high-water mark. */
  private write(pending: PendingSend): void {
    const data = pending.payload.slice()
    this.socket.push({ data, size: pending.size })
    this.socketBytes += pending.size
    this.touch()
    this.counters.framesSent++
    this.counters.bytesSent += data.length
    this.scheduleFlush()
    if (this.socketBytes < SIM_STREAM_SOCKET_BUFFER_BYTES) {
      this.settle(pending, undefined)
    } else {
      this.needDrain = true
      this.awaitingDrain.push(pending)
    }
  }

  /** Writes queued frames while the socket buffer has room; queues the end once closing. */
  private pumpWrites(): void {
    while (!this.needDrain) {
      const pending = this.unwritten.shift()
      if (pending === undefined) break
      this.write(pending)
    }
    if (this.state === 'closing' && this.unwritten.length === 0) this.eofQueued = true
    if (this.eofQueued) this.scheduleFlush()
  }

  private scheduleFlush(): void {
    if (this.flushEvent >= 0 || this.wireCut) return
    this.flushEvent = this.streams.at(this.streams.now(), () => {
      this.flushEvent = -1
      this.flush()
    })
  }

  /** The kernel's side: moves written frames onto the wire as far as the window allows. */
  private flush(): void {
    if (this.wireCut) return
    const windowBytes = this.peer.limits.receiveBufferBytesMax
    for (;;) {
      const head = this.socket.peek()
      if (head === undefined) break
      if (this.inFlightBytes > 0 && this.inFlightBytes >= windowBytes) return // credit() resumes
      this.socket.shift()
      this.socketBytes -= head.size
      if (!this.transmit(head.data)) return // the network reset the connection
    }
    if (this.needDrain) {
      this.owner.dispatch(() => {
        this.onDrain()
      })
    } else if (this.eofQueued && !this.eofSent) {
      this.eofSent = true
      this.enqueue({ data: null, at: this.arrivalTime(0) })
      this.maybeFinished()
    }
  }

  private onDrain(): void {
    if (!this.needDrain || this.socket.length > 0 || this.gone) return
    this.needDrain = false
    const drained = this.awaitingDrain
    this.awaitingDrain = []
    for (const pending of drained) this.settle(pending, undefined)
    this.pumpWrites()
  }

  /** The peer read (or discarded) `bytes`: room in the window again. */
  credit(bytes: number): void {
    this.inFlightBytes -= bytes
    if (this.socket.length > 0) this.scheduleFlush()
  }

  private settle(pending: PendingSend, err: TransportError | undefined): void {
    if (pending.settled) return
    pending.settled = true
    if (pending.onAbort !== undefined) pending.signal?.removeEventListener('abort', pending.onAbort)
    this.queuedBytes -= pending.size
    this.counters.sendQueueBytes -= pending.size
    if (err === undefined) pending.resolve()
    else pending.reject(err)
    this.streams.requestDrain()
  }

  private rejectQueued(): void {
    const err = this.closedError()
    for (const pending of this.unwritten.drain()) this.settle(pending, err)
    const drained = this.awaitingDrain
    this.awaitingDrain = []
    for (const pending of drained) this.settle(pending, err)
  }

  private closedError(): TransportError {
    return new TransportError('CLOSED', `connection to ${this.remoteAddr} closed`, {
      cause: this.failure,
    })
  }

  private rejectSend(reason: SendRejection, err: TransportError): Promise<void> {
    this.counters.sendsRejected[reason]++
    return Promise.reject(err)
  }

  // ------------------------------------------------------------------ the wire

  /** Puts a frame on the wire; false if the network reset the connection instead. */
  private transmit(data: Uint8Array): boolean {
    const net = this.streams.network
    if (this.kind < 0) {
      this.kind = data[0] ?? 0
      this.peer.kind = this.kind
    } else if (
      net.filtering &&
      !net.passes(this.hostAddr, this.peerHostAddr, withKind(this.kind, data))
    ) {
      net.dropped(this.hostAddr, this.peerHostAddr)
      return true
    }
    this.inFlightBytes += data.length
    net.traceEvent('stream', this.hostAddr, this.peerHostAddr, data)
    const link = net.linkFor(this.hostAddr, this.peerHostAddr)
    if (link.reset > 0 && net.draw() < link.reset) {
      this.streams.reset(this, 'stream reset by the network')
      return false
    }
    let extra = 0
    if (link.loss > 0 && net.draw() < link.loss) extra += SIM_STREAM_RETRANSMIT_MS
    if (link.reorder > 0 && net.draw() < link.reorder) extra += net.draw() * link.reorderDelayMs
    this.enqueue({ data, at: this.arrivalTime(extra) })
    return true
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
    if (head === undefined || this.wireCut) return
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
    if (this.wireCut) return
    const net = this.streams.network
    const now = this.streams.now()
    for (;;) {
      const head = this.pipe[0]
      if (head === undefined || head.at > now) break
      if (net.isBlocked(this.hostAddr, this.peerHostAddr)) {
        this.blockedSince ??= now
        if (now - this.blockedSince >= net.streamTimeoutMs) {
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
      if (peer.isGone || !endpoint.isAlive()) {
        // Nobody holds that end any more: the other kernel answers data with an RST.
        if (head.data !== null) {
          this.pipe.length = 0
          this.streams.sendRst(this)
          return
        }
        continue
      }
      endpoint.dispatch(() => {
        peer.receive(head.data)
      })
    }
    this.schedulePump()
  }

  // ------------------------------------------------------------------ receiving

  /** A frame (or the end, null) arrived from the peer. */
  private receive(data: Uint8Array | null): void {
    if (this.gone) return
    this.touch()
    if (data === null) {
      this.onEof()
      return
    }
    if (this.readEnded) {
      this.peer.credit(data.length) // closing: read and discarded
      return
    }
    if (data.length > this.limits.frameBytesMax) {
      this.destroy(
        'frame_too_large',
        new TransportError(
          'FRAME_TOO_LARGE',
          `frame of ${data.length} bytes from ${this.remoteAddr}, limit ${this.limits.frameBytesMax}`,
        ),
      )
      return
    }
    this.counters.framesReceived++
    this.counters.bytesReceived += data.length
    const waiter = this.waiters.shift()
    if (waiter !== undefined) {
      this.peer.credit(data.length)
      waiter.resolve(data)
      this.streams.requestDrain()
      return
    }
    this.inbox.push(data)
    this.inboxBytes += data.length
    this.counters.receiveBufferBytes += data.length
  }

  private onEof(): void {
    this.eofReceived = true
    if (this.state === 'open') {
      this.counters.closed.peer++
      this.state = 'closed'
      this.endReading(undefined)
    }
    // The peer is done: frames not yet written will not be read. Written ones still go.
    for (const pending of this.unwritten.drain()) this.settle(pending, this.closedError())
    this.eofQueued = true
    this.scheduleFlush()
    this.maybeFinished()
  }

  private maybeFinished(): void {
    if (this.eofSent && this.eofReceived) this.finish()
  }

  private async *iterate(): AsyncGenerator<Uint8Array, void, undefined> {
    for (;;) {
      const frame = await this.nextFrame()
      if (frame === undefined) return
      yield frame
    }
  }

  private nextFrame(): Promise<Uint8Array | undefined> {
    const frame = this.inbox.shift()
    if (frame !== undefined) {
      this.inboxBytes -= frame.length
      if (!this.gone) this.counters.receiveBufferBytes -= frame.length
      this.peer.credit(frame.length)
      return Promise.resolve(frame)
    }
    if (this.readEnded) {
      return this.readError === undefined
        ? Promise.resolve(undefined)
        : Promise.reject(this.readError)
    }
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject })
    })
  }

  /** No frame will be added any more: wake the waiting readers. */
  private endReading(err: TransportError | undefined): void {
    if (this.readEnded) return
    this.readEnded = true
    this.readError = err
    for (const waiter of this.waiters.drain()) {
      if (err === undefined) waiter.resolve(undefined)
      else waiter.reject(err)
      this.streams.requestDrain()
    }
  }

  private dropInbox(): void {
    const bytes = this.inboxBytes
    this.inbox.drain()
    this.inboxBytes = 0
    this.counters.receiveBufferBytes -= bytes
    this.peer.credit(bytes)
  }

  // ------------------------------------------------------------------ idleness

  private touch(): void {
    this.lastActivity = this.streams.now()
  }

  private armIdle(delayMs: number): void {
    this.idleEvent = this.streams.at(this.streams.now() + delayMs, () => {
      this.idleEvent = -1
      if (this.state !== 'open') return // closing is bounded by the grace period
      const idleMs = this.streams.now() - this.lastActivity
      if (this.waitingForWindow || this.peer.waitingForWindow) {
        // Waiting on flow control (the peer's reader is behind, or ours) is not silence.
        this.touch()
        this.armIdle(this.limits.idleTimeoutMs)
      } else if (idleMs >= this.limits.idleTimeoutMs) {
        this.owner.dispatch(() => {
          if (this.state !== 'open') return
          this.destroy(
            'idle_timeout',
            new TransportError(
              'IDLE_TIMEOUT',
              `nothing from or to ${this.remoteAddr} for ${Math.round(idleMs)} ms`,
            ),
          )
        })
      } else {
        this.armIdle(this.limits.idleTimeoutMs - idleMs)
      }
    })
  }
}
