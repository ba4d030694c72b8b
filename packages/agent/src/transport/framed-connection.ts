import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import {
  FRAME_BYTES_MAX,
  STREAM_CLOSE_GRACE_MS,
  STREAM_IDLE_TIMEOUT_MS,
  STREAM_RECEIVE_BUFFER_BYTES_MAX,
  STREAM_SEND_QUEUE_BYTES_MAX,
} from './defaults.ts'
import { abortError, TransportError, type TransportErrorCode } from './errors.ts'
import { Fifo } from './fifo.ts'
import {
  encodeFrameHeader,
  FRAME_HEADER_BYTES,
  FRAME_LENGTH_FIELD_MAX,
  FrameDecoder,
} from './frame-codec.ts'
import type {
  ConnectFailure,
  FramedConnection,
  SendRejection,
  StreamCloseReason,
  StreamOptions,
  StreamStats,
  WrapSocket,
} from './stream-contract.ts'

/** The per-connection limits, resolved from StreamOptions and the defaults. */
export interface ConnectionLimits {
  readonly frameBytesMax: number
  readonly sendQueueBytesMax: number
  readonly receiveBufferBytesMax: number
  readonly idleTimeoutMs: number
  readonly closeGraceMs: number
}

export function resolveLimits(options: StreamOptions): ConnectionLimits {
  const limits: ConnectionLimits = {
    frameBytesMax: options.frameBytesMax ?? FRAME_BYTES_MAX,
    sendQueueBytesMax: options.sendQueueBytesMax ?? STREAM_SEND_QUEUE_BYTES_MAX,
    receiveBufferBytesMax: options.receiveBufferBytesMax ?? STREAM_RECEIVE_BUFFER_BYTES_MAX,
    idleTimeoutMs: options.idleTimeoutMs ?? STREAM_IDLE_TIMEOUT_MS,
    closeGraceMs: options.closeGraceMs ?? STREAM_CLOSE_GRACE_MS,
  }
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`${name} must be a non-negative integer, got ${value}`)
    }
  }
  if (limits.frameBytesMax > FRAME_LENGTH_FIELD_MAX) {
    throw new RangeError(`frameBytesMax must fit the u32 length field`)
  }
  return limits
}

const CLOSE_REASONS: readonly StreamCloseReason[] = [
  'local',
  'peer',
  'frame_too_large',
  'bad_version',
  'truncated_frame',
  'idle_timeout',
  'socket_error',
  'handler_error',
]
const CONNECT_FAILURES: readonly ConnectFailure[] = [
  'bad_address',
  'connect_timeout',
  'connect_failed',
  'aborted',
]
const SEND_REJECTIONS: readonly SendRejection[] = [
  'frame_too_large',
  'queue_full',
  'closed',
  'aborted',
]

function zeroes<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((key) => [key, 0])) as Record<K, number>
}

/**
 * Why a frame cannot be sent on an open connection, checked in this order (the same for every
 * stream transport): larger than `frameBytesMax` (the connection stays up), the caller's
 * signal already fired, or the send queue would go over `sendQueueBytesMax` (an empty queue
 * always takes one frame). Null: it may go.
 */
export function refuseSend(
  frame: Uint8Array,
  signal: AbortSignal | undefined,
  queuedBytes: number,
  limits: Pick<ConnectionLimits, 'frameBytesMax' | 'sendQueueBytesMax'>,
  remoteAddr: string,
): { readonly reason: SendRejection; readonly error: TransportError } | null {
  if (frame.length > limits.frameBytesMax) {
    const message = `frame of ${frame.length} bytes, limit ${limits.frameBytesMax}`
    return { reason: 'frame_too_large', error: new TransportError('FRAME_TOO_LARGE', message) }
  }
  if (signal?.aborted === true) return { reason: 'aborted', error: abortError(signal, 'send') }
  const size = FRAME_HEADER_BYTES + frame.length
  if (queuedBytes > 0 && queuedBytes + size > limits.sendQueueBytesMax) {
    const message = `send queue to ${remoteAddr} holds ${queuedBytes} bytes, cap ${limits.sendQueueBytesMax}`
    return { reason: 'queue_full', error: new TransportError('QUEUE_FULL', message) }
  }
  return null
}

/** The mutable counters behind StreamStats, shared by a transport and its connections. */
export class StreamCounters {
  connectionsOpen = 0
  connectionsOpened = 0
  inboundDropped = 0
  framesSent = 0
  bytesSent = 0
  framesReceived = 0
  bytesReceived = 0
  sendQueueBytes = 0
  receiveBufferBytes = 0
  readonly connectsFailed = zeroes(CONNECT_FAILURES)
  readonly closed = zeroes(CLOSE_REASONS)
  readonly sendsRejected = zeroes(SEND_REJECTIONS)

  snapshot(): StreamStats {
    return {
      connectionsOpen: this.connectionsOpen,
      connectionsOpened: this.connectionsOpened,
      connectsFailed: { ...this.connectsFailed },
      inboundDropped: this.inboundDropped,
      closed: { ...this.closed },
      framesSent: this.framesSent,
      bytesSent: this.bytesSent,
      framesReceived: this.framesReceived,
      bytesReceived: this.bytesReceived,
      sendsRejected: { ...this.sendsRejected },
      sendQueueBytes: this.sendQueueBytes,
      receiveBufferBytes: this.receiveBufferBytes,
    }
  }
}

export interface AcceptFramedInit {
  readonly direction: 'inbound' | 'outbound'
  readonly remoteAddr: string
  /** Fires at the handshake deadline or the caller's abort. */
  readonly signal: AbortSignal
  /** The error to reject with when `signal` fires. */
  readonly onDeadline: () => TransportError
  readonly wrap: WrapSocket | undefined
  readonly limits: ConnectionLimits
  readonly counters: StreamCounters
}

/**
 * Runs the `wrap` hook (if any) on a connected socket, under the handshake deadline, and frames
 * the result. Shared by the TCP transport and the in-memory twin.
 */
export async function acceptFramed(
  raw: Duplex,
  init: AcceptFramedInit,
): Promise<DuplexFramedConnection> {
  const socket = init.wrap === undefined ? raw : await runWrap(raw, init.wrap, init)
  return new DuplexFramedConnection(socket, init.remoteAddr, init.limits, init.counters)
}

function runWrap(raw: Duplex, wrap: WrapSocket, init: AcceptFramedInit): Promise<Duplex> {
  const { signal, direction, remoteAddr } = init
  return new Promise<Duplex>((resolve, reject) => {
    let settled = false
    // Until the connection owns the socket, an error on it must not crash the process; the
    // hook sees the same failure through its own reads and writes.
    const onRawError = (): void => undefined
    raw.on('error', onRawError)
    const settle = (error: TransportError | undefined, socket?: Duplex): void => {
      if (settled) return
      settled = true
      signal.removeEventListener('abort', onAbort)
      raw.off('error', onRawError)
      if (error === undefined && socket !== undefined) {
        resolve(socket)
      } else {
        raw.destroy()
        reject(error ?? new TransportError('CONNECT_FAILED', `wrap of ${remoteAddr} gave nothing`))
      }
    }
    const onAbort = (): void => {
      settle(init.onDeadline())
    }
    if (signal.aborted) {
      onAbort()
      return
    }
    signal.addEventListener('abort', onAbort, { once: true })
    new Promise<Duplex>((resolveWrap) => {
      resolveWrap(wrap(raw, { direction, remoteAddr, signal }))
    }).then(
      (socket) => {
        if (settled) {
          socket.destroy()
          return
        }
        settle(undefined, socket)
      },
      (error: unknown) => {
        settle(
          new TransportError('CONNECT_FAILED', `handshake with ${remoteAddr} failed`, {
            cause: error,
          }),
        )
      },
    )
  })
}

interface PendingSend {
  readonly payload: Uint8Array
  /** Header plus payload. */
  readonly size: number
  readonly resolve: () => void
  readonly reject: (error: TransportError) => void
  readonly signal: AbortSignal | undefined
  onAbort: (() => void) | undefined
  settled: boolean
}

interface FrameWaiter {
  readonly resolve: (frame: Uint8Array | undefined) => void
  readonly reject: (error: TransportError) => void
}

/** The close reason each connection-breaking error counts under; others are socket errors. */
const CLOSE_REASON_OF: Partial<Record<TransportErrorCode, StreamCloseReason>> = {
  FRAME_TOO_LARGE: 'frame_too_large',
  BAD_VERSION: 'bad_version',
  TRUNCATED_FRAME: 'truncated_frame',
  IDLE_TIMEOUT: 'idle_timeout',
}

/** The ConnectFailure each connect error counts under; others are plain failures. */
const CONNECT_FAILURE_OF: Partial<Record<TransportErrorCode, ConnectFailure>> = {
  BAD_ADDRESS: 'bad_address',
  CONNECT_TIMEOUT: 'connect_timeout',
  ABORTED: 'aborted',
}

/**
 * FramedConnection over any connected Duplex: a net.Socket, a TLS socket from the `wrap` hook,
 * or one end of the in-memory pipe. Semantics are documented on FramedConnection.
 *
 * States: 'open' -> 'closing' (local close: flush what was accepted, then end) -> 'closed'
 * (no more sends; frames already received may still be read).
 */
export class DuplexFramedConnection implements FramedConnection {
  readonly remoteAddr: string
  private readonly socket: Duplex
  private readonly limits: ConnectionLimits
  private readonly counters: StreamCounters
  private readonly decoder: FrameDecoder
  private state: 'open' | 'closing' | 'closed' = 'open'
  private socketGone = false
  private failure: TransportError | undefined
  private readonly closedPromise: Promise<TransportError | undefined>
  private resolveClosed: (error: TransportError | undefined) => void = () => undefined

  // Sending: frames not yet written, and written frames waiting for 'drain'.
  private readonly unwritten = new Fifo<PendingSend>()
  private awaitingDrain: PendingSend[] = []
  private queuedBytes = 0
  private needDrain = false

  // Receiving: frames not yet read, readers waiting for a frame.
  private readonly inbox = new Fifo<Uint8Array>()
  private inboxBytes = 0
  private paused = false
  private readEnded = false
  private readError: TransportError | undefined
  private readonly waiters = new Fifo<FrameWaiter>()

  private lastActivityMs = performance.now()
  private idleTimer: NodeJS.Timeout | undefined
  private graceTimer: NodeJS.Timeout | undefined

  constructor(
    socket: Duplex,
    remoteAddr: string,
    limits: ConnectionLimits,
    counters: StreamCounters,
  ) {
    this.socket = socket
    this.remoteAddr = remoteAddr
    this.limits = limits
    this.counters = counters
    this.decoder = new FrameDecoder(limits.frameBytesMax)
    this.closedPromise = new Promise((resolve) => {
      this.resolveClosed = resolve
    })
    counters.connectionsOpen += 1
    counters.connectionsOpened += 1
    socket.on('data', (chunk: Buffer) => {
      this.onData(chunk)
    })
    socket.on('end', () => {
      this.onEnd()
    })
    socket.on('drain', () => {
      this.onDrain()
    })
    socket.on('finish', () => {
      // Everything written has been flushed; no 'drain' comes after end().
      this.onDrain()
    })
    socket.on('error', (error: Error) => {
      this.destroy('socket_error', error)
    })
    socket.on('close', () => {
      this.onClose()
    })
    if (limits.idleTimeoutMs > 0) this.armIdle(limits.idleTimeoutMs)
    if (socket.destroyed)
      queueMicrotask(() => {
        this.onClose()
      })
  }

  send(frame: Uint8Array, signal?: AbortSignal): Promise<void> {
    if (this.state !== 'open' || this.socket.destroyed) {
      return this.rejectSend(
        'closed',
        new TransportError('CLOSED', `connection to ${this.remoteAddr} is closed`, {
          cause: this.failure,
        }),
      )
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
          this.unwritten.remove(pending)
          this.counters.sendsRejected.aborted += 1
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
    this.counters.closed.local += 1
    this.endReading(undefined)
    this.dropInbox()
    // Keep reading (and discarding) so the peer's end of stream arrives.
    if (this.paused) {
      this.paused = false
      this.socket.resume()
    }
    this.graceTimer = setTimeout(() => {
      this.socket.destroy()
    }, this.limits.closeGraceMs)
    this.graceTimer.unref()
    this.pump()
  }

  closed(): Promise<TransportError | undefined> {
    return this.closedPromise
  }

  /**
   * Breaks the connection at once: counts `reason` (if it was open), fails pending sends with
   * CLOSED, and lets `frames()` throw `error` after the frames already received.
   */
  destroy(reason: StreamCloseReason, error: unknown): void {
    if (this.state === 'open') {
      const failure =
        error instanceof TransportError
          ? error
          : new TransportError('SOCKET_ERROR', `connection to ${this.remoteAddr} failed`, {
              cause: error,
            })
      this.counters.closed[reason] += 1
      this.failure = failure
      this.endReading(failure)
    }
    this.state = 'closed'
    this.rejectQueued()
    this.socket.destroy()
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
      if (!this.socketGone) this.counters.receiveBufferBytes -= frame.length
      if (this.paused && this.inboxBytes <= this.limits.receiveBufferBytesMax / 2) {
        this.paused = false
        this.socket.resume()
      }
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

  private onData(chunk: Buffer): void {
    this.lastActivityMs = performance.now()
    if (this.readEnded) return // closing: discard
    try {
      this.decoder.push(chunk, (frame) => {
        this.onFrame(frame)
      })
    } catch (error) {
      if (!(error instanceof TransportError)) throw error
      this.destroy(CLOSE_REASON_OF[error.code] ?? 'socket_error', error)
    }
  }

  private onFrame(frame: Uint8Array): void {
    this.counters.framesReceived += 1
    this.counters.bytesReceived += frame.length
    const waiter = this.waiters.shift()
    if (waiter !== undefined) {
      waiter.resolve(frame)
      return
    }
    this.inbox.push(frame)
    this.inboxBytes += frame.length
    this.counters.receiveBufferBytes += frame.length
    if (!this.paused && this.inboxBytes > this.limits.receiveBufferBytesMax) {
      this.paused = true
      this.socket.pause()
    }
  }

  private onEnd(): void {
    if (this.decoder.midFrame && !this.readEnded) {
      this.destroy(
        'truncated_frame',
        new TransportError('TRUNCATED_FRAME', `${this.remoteAddr} closed in the middle of a frame`),
      )
      return
    }
    if (this.state === 'open') {
      this.counters.closed.peer += 1
      this.state = 'closed'
      this.endReading(undefined)
    }
    // The peer is done: frames not yet written will not be read. Written ones still flush.
    for (const pending of this.unwritten.drain()) this.settle(pending, this.closedError())
    if (!this.socket.writableEnded) this.socket.end()
  }

  private onDrain(): void {
    this.needDrain = false
    const drained = this.awaitingDrain
    this.awaitingDrain = []
    for (const pending of drained) this.settle(pending, undefined)
    this.pump()
  }

  private onClose(): void {
    if (this.socketGone) return
    this.socketGone = true
    if (this.state === 'open') {
      // Gone without an end of stream or an error we saw: count it as the peer's doing.
      this.counters.closed.peer += 1
      this.endReading(undefined)
    }
    this.state = 'closed'
    clearTimeout(this.idleTimer)
    clearTimeout(this.graceTimer)
    this.rejectQueued()
    this.endReading(undefined)
    this.counters.connectionsOpen -= 1
    this.counters.receiveBufferBytes -= this.inboxBytes
    this.resolveClosed(this.failure)
  }

  private write(pending: PendingSend): void {
    const header = encodeFrameHeader(pending.payload.length)
    let ok: boolean
    if (pending.payload.length === 0) {
      ok = this.socket.write(header)
    } else {
      this.socket.cork()
      this.socket.write(header)
      ok = this.socket.write(pending.payload)
      this.socket.uncork()
    }
    this.lastActivityMs = performance.now()
    this.counters.framesSent += 1
    this.counters.bytesSent += pending.payload.length
    if (ok) {
      this.settle(pending, undefined)
    } else {
      this.needDrain = true
      this.awaitingDrain.push(pending)
    }
  }

  /** Writes queued frames while the socket has room; ends the socket once a close is flushed. */
  private pump(): void {
    if (this.socketGone || this.socket.destroyed) return
    while (!this.needDrain) {
      const pending = this.unwritten.shift()
      if (pending === undefined) break
      this.write(pending)
    }
    if (this.state === 'closing' && this.unwritten.length === 0 && !this.socket.writableEnded) {
      this.socket.end()
    }
  }

  private settle(pending: PendingSend, error: TransportError | undefined): void {
    if (pending.settled) return
    pending.settled = true
    if (pending.onAbort !== undefined) pending.signal?.removeEventListener('abort', pending.onAbort)
    this.queuedBytes -= pending.size
    this.counters.sendQueueBytes -= pending.size
    if (error === undefined) pending.resolve()
    else pending.reject(error)
  }

  private rejectQueued(): void {
    const error = this.closedError()
    for (const pending of this.unwritten.drain()) this.settle(pending, error)
    const drained = this.awaitingDrain
    this.awaitingDrain = []
    for (const pending of drained) this.settle(pending, error)
  }

  private closedError(): TransportError {
    return new TransportError('CLOSED', `connection to ${this.remoteAddr} closed`, {
      cause: this.failure,
    })
  }

  private rejectSend(reason: SendRejection, error: TransportError): Promise<void> {
    this.counters.sendsRejected[reason] += 1
    return Promise.reject(error)
  }

  /** No frame will be added any more: wake the waiting readers. */
  private endReading(error: TransportError | undefined): void {
    if (this.readEnded) return
    this.readEnded = true
    this.readError = error
    for (const waiter of this.waiters.drain()) {
      if (error === undefined) waiter.resolve(undefined)
      else waiter.reject(error)
    }
  }

  private dropInbox(): void {
    this.inbox.drain()
    this.counters.receiveBufferBytes -= this.inboxBytes
    this.inboxBytes = 0
  }

  /** Checks for idleness when the timer fires instead of re-arming a timer per chunk. */
  private armIdle(delayMs: number): void {
    this.idleTimer = setTimeout(() => {
      if (this.socketGone) return
      const idleMs = performance.now() - this.lastActivityMs
      if (this.paused || this.needDrain) {
        // Waiting on flow control (our reader is behind, or the peer's is) is not silence.
        this.lastActivityMs = performance.now()
        this.armIdle(this.limits.idleTimeoutMs)
      } else if (idleMs >= this.limits.idleTimeoutMs) {
        this.destroy(
          'idle_timeout',
          new TransportError(
            'IDLE_TIMEOUT',
            `nothing from or to ${this.remoteAddr} for ${Math.round(idleMs)} ms`,
          ),
        )
      } else {
        this.armIdle(this.limits.idleTimeoutMs - idleMs)
      }
    }, delayMs)
    this.idleTimer.unref()
  }
}

export interface InboundInit {
  readonly wrap: WrapSocket | undefined
  readonly connectTimeoutMs: number
  readonly limits: ConnectionLimits
  readonly counters: StreamCounters
  readonly onConnection: (connection: FramedConnection) => void
}

/**
 * The accepted side of one listener: runs the handshake of each new socket, hands the framed
 * connection to `onConnection`, and closes everything it accepted when the listener closes.
 * Shared by the TCP transport and the in-memory twin.
 */
export class InboundConnections {
  private readonly init: InboundInit
  private readonly accepted = new Set<DuplexFramedConnection>()
  private readonly handshaking = new Set<Duplex>()
  private closing = false

  constructor(init: InboundInit) {
    this.init = init
  }

  /** Connections accepted or in their handshake. */
  get size(): number {
    return this.accepted.size + this.handshaking.size
  }

  accept(raw: Duplex, remoteAddr: string): void {
    const { counters } = this.init
    if (this.closing) {
      raw.destroy()
      return
    }
    this.handshaking.add(raw)
    acceptFramed(raw, {
      direction: 'inbound',
      remoteAddr,
      signal: AbortSignal.timeout(this.init.connectTimeoutMs),
      onDeadline: () =>
        new TransportError('CONNECT_TIMEOUT', `handshake with ${remoteAddr} timed out`),
      wrap: this.init.wrap,
      limits: this.init.limits,
      counters,
    }).then(
      (connection) => {
        this.handshaking.delete(raw)
        if (this.closing) {
          connection.close()
          return
        }
        this.accepted.add(connection)
        void connection.closed().then(() => this.accepted.delete(connection))
        try {
          this.init.onConnection(connection)
        } catch (error) {
          connection.destroy(
            'handler_error',
            new TransportError('CLOSED', `connection handler threw for ${remoteAddr}`, {
              cause: error,
            }),
          )
        }
      },
      (error: unknown) => {
        this.handshaking.delete(raw)
        counters.connectsFailed[connectFailureOf(error)] += 1
      },
    )
  }

  /** Closes every accepted connection (gracefully) and cuts off those mid-handshake. */
  async closeAll(): Promise<void> {
    this.closing = true
    for (const raw of this.handshaking) raw.destroy()
    const open = [...this.accepted]
    for (const connection of open) connection.close()
    await Promise.all(open.map((connection) => connection.closed()))
  }
}

/** The ConnectFailure counter a failed connect or handshake counts under. */
export function connectFailureOf(error: unknown): ConnectFailure {
  const failure = error instanceof TransportError ? CONNECT_FAILURE_OF[error.code] : undefined
  return failure ?? 'connect_failed'
}
