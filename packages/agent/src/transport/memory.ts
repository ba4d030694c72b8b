import { Duplex } from 'node:stream'
import { formatAddr, normalizeAddr, parseAddr, type HostPort } from './address.ts'
import {
  DatagramCore,
  type DatagramHandler,
  type DatagramOptions,
  type DatagramStats,
  type DatagramTransport,
} from './datagram.ts'
import { STREAM_CONNECT_TIMEOUT_MS, STREAM_INBOUND_CONNECTIONS_MAX } from './defaults.ts'
import { abortError, connectDeadline, TransportError } from './errors.ts'
import {
  acceptFramed,
  connectFailureOf,
  InboundConnections,
  resolveLimits,
  StreamCounters,
  type ConnectionLimits,
} from './framed-connection.ts'
import type {
  FramedConnection,
  StreamListener,
  StreamOptions,
  StreamStats,
  StreamTransport,
} from './stream.ts'

export interface MemoryNetworkInit {
  /**
   * Consulted for every datagram and every connect; true loses the datagram, or makes the
   * connect hang until its timeout (CONNECT_TIMEOUT), as a partition would. Connections already
   * open are not affected: fault injection beyond this belongs to the simulator (src/sim/).
   */
  readonly drop?: (from: string, to: string) => boolean
}

/** The first port handed out for port 0 (binds, listens, and the local end of connects). */
const EPHEMERAL_PORT_FIRST = 49_152
const PORT_MAX = 65_535
/** Period of the do-nothing timer that keeps the event loop alive while endpoints are open. */
const KEEP_ALIVE_INTERVAL_MS = 1 << 30

/**
 * In-process twins of DatagramTransport and StreamTransport, with the same limits, counters and
 * close semantics, so code written against the interfaces runs in tests without sockets.
 *
 * Datagrams are copied and delivered on a later turn of the event loop (setImmediate), in send
 * order. Streams are a pair of in-memory Duplex ends with real backpressure, framed by the
 * same code as TCP; the `wrap` hook applies too. There is no name resolution: an address
 * matches a bound one when it is spelled the same (host compared case-insensitively).
 * An open endpoint keeps the process alive, as its socket would.
 *
 * @example
 * const net = new MemoryNetwork()
 * const a = net.datagram('10.0.0.1:7946')
 * const b = net.datagram('10.0.0.2:7946')
 * b.onMessage((from, bytes) => console.log(from, bytes))
 * a.send(b.localAddr, new Uint8Array([1]))
 */
export class MemoryNetwork {
  private readonly drop: (from: string, to: string) => boolean
  private readonly datagrams = new Map<string, MemoryDatagramTransport>()
  private readonly listeners = new Map<string, MemoryListener>()
  private nextPort = EPHEMERAL_PORT_FIRST
  private handles = 0
  private keepAlive: NodeJS.Timeout | undefined

  constructor(init: MemoryNetworkInit = {}) {
    this.drop = init.drop ?? (() => false)
  }

  /** Binds a datagram endpoint; port 0 picks a free port. Throws BAD_ADDRESS or BIND_FAILED. */
  datagram(addr: string, options: DatagramOptions = {}): MemoryDatagramTransport {
    const { host, port, family } = parseAddr(addr, { portZero: true })
    const localAddr = this.bindAddr(host, port, this.datagrams, addr)
    const transport = new MemoryDatagramTransport(this, localAddr, family, options, this.hold())
    this.datagrams.set(localAddr, transport)
    return transport
  }

  /** A stream endpoint whose connections come from `host` (default 127.0.0.1). */
  stream(host = '127.0.0.1', options: StreamOptions = {}): MemoryStreamTransport {
    parseAddr(formatAddr(host, 1))
    return new MemoryStreamTransport(this, host, options)
  }

  /**
   * @internal An open endpoint, listener, connection or connect in flight keeps the process
   * alive, as its socket would: one ref'd timer while any is open.
   */
  hold(): () => void {
    this.handles += 1
    this.keepAlive ??= setInterval(() => undefined, KEEP_ALIVE_INTERVAL_MS)
    let released = false
    return () => {
      if (released) return
      released = true
      this.handles -= 1
      if (this.handles === 0) {
        clearInterval(this.keepAlive)
        this.keepAlive = undefined
      }
    }
  }

  /** @internal */
  isDropped(from: string, to: string): boolean {
    return this.drop(from, to)
  }

  /** @internal Delivers a datagram on a later turn, to whoever is bound to `to` then. */
  deliverDatagram(from: string, to: string, bytes: Uint8Array): void {
    setImmediate(() => {
      this.datagrams.get(to)?.receive(from, bytes)
    })
  }

  /** @internal */
  unbindDatagram(addr: string, transport: MemoryDatagramTransport): void {
    if (this.datagrams.get(addr) === transport) this.datagrams.delete(addr)
  }

  /** @internal */
  addListener(host: string, port: number, addr: string, listener: MemoryListener): string {
    const localAddr = this.bindAddr(host, port, this.listeners, addr)
    this.listeners.set(localAddr, listener)
    return localAddr
  }

  /** @internal */
  removeListener(addr: string, listener: MemoryListener): void {
    if (this.listeners.get(addr) === listener) this.listeners.delete(addr)
  }

  /** @internal */
  listener(addr: string): MemoryListener | undefined {
    return this.listeners.get(addr)
  }

  /** @internal A free "host:port" for the local end of a connection. */
  ephemeralAddr(host: string): string {
    return formatAddr(host, this.allocatePort(host, new Map()))
  }

  private bindAddr(host: string, port: number, taken: Map<string, unknown>, addr: string): string {
    const chosen = port === 0 ? this.allocatePort(host, taken) : port
    const localAddr = normalizeAddr(formatAddr(host, chosen))
    if (taken.has(localAddr)) {
      throw new TransportError('BIND_FAILED', `cannot bind ${addr}: address in use`)
    }
    return localAddr
  }

  private allocatePort(host: string, taken: Map<string, unknown>): number {
    for (let tries = 0; tries <= PORT_MAX - EPHEMERAL_PORT_FIRST; tries += 1) {
      const port = this.nextPort
      this.nextPort = port === PORT_MAX ? EPHEMERAL_PORT_FIRST : port + 1
      if (!taken.has(normalizeAddr(formatAddr(host, port)))) return port
    }
    throw new TransportError('BIND_FAILED', `no free port on ${host}`)
  }
}

/** The in-memory DatagramTransport; see MemoryNetwork. */
export class MemoryDatagramTransport implements DatagramTransport {
  readonly localAddr: string
  private readonly network: MemoryNetwork
  private readonly family: 0 | 4 | 6
  private readonly core: DatagramCore
  private readonly release: () => void
  private closed = false

  /** @internal Use MemoryNetwork.datagram(). */
  constructor(
    network: MemoryNetwork,
    localAddr: string,
    family: 0 | 4 | 6,
    options: DatagramOptions,
    release: () => void,
  ) {
    this.network = network
    this.release = release
    this.localAddr = localAddr
    this.family = family
    this.core = new DatagramCore(options)
  }

  send(to: string, bytes: Uint8Array): void {
    const size = bytes.length
    if (this.closed) {
      this.core.drop('closed', { addr: to, bytes: size })
      return
    }
    if (size > this.core.datagramBytesMax) {
      this.core.drop('oversized_out', { addr: to, bytes: size })
      return
    }
    let dest: HostPort
    let key: string
    try {
      dest = parseAddr(to)
      key = normalizeAddr(to)
    } catch (error) {
      this.core.drop('bad_address', { addr: to, bytes: size, error })
      return
    }
    if (dest.family !== 0 && this.family !== 0 && dest.family !== this.family) {
      this.core.drop('bad_address', { addr: to, bytes: size })
      return
    }
    this.core.sent(size)
    if (this.network.isDropped(this.localAddr, key)) return
    // Copied: the sender may reuse its buffer once send() returns, as with a real socket.
    this.network.deliverDatagram(this.localAddr, key, bytes.slice())
  }

  onMessage(handler: DatagramHandler): void {
    this.core.addHandler(handler)
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true
      this.network.unbindDatagram(this.localAddr, this)
      this.release()
    }
    return Promise.resolve()
  }

  stats(): DatagramStats {
    return this.core.stats()
  }

  /** @internal */
  receive(from: string, bytes: Uint8Array): void {
    if (!this.closed) this.core.receive(from, bytes)
  }
}

/** @internal One listening address of a MemoryStreamTransport. */
export interface MemoryListener {
  readonly inbound: InboundConnections
  readonly inboundConnectionsMax: number
  readonly counters: StreamCounters
}

/** The in-memory StreamTransport; see MemoryNetwork. */
export class MemoryStreamTransport implements StreamTransport {
  private readonly network: MemoryNetwork
  private readonly host: string
  private readonly options: StreamOptions
  private readonly limits: ConnectionLimits
  private readonly counters = new StreamCounters()
  private readonly connectTimeoutMs: number

  /** @internal Use MemoryNetwork.stream(). */
  constructor(network: MemoryNetwork, host: string, options: StreamOptions) {
    this.network = network
    this.host = host
    this.options = options
    this.limits = resolveLimits(options)
    this.connectTimeoutMs = options.connectTimeoutMs ?? STREAM_CONNECT_TIMEOUT_MS
  }

  async connect(to: string, signal?: AbortSignal): Promise<FramedConnection> {
    const release = this.network.hold()
    try {
      return await this.dial(to, signal)
    } catch (error) {
      this.counters.connectsFailed[connectFailureOf(error)] += 1
      throw error
    } finally {
      release()
    }
  }

  async listen(
    addr: string,
    onConnection: (connection: FramedConnection) => void,
  ): Promise<StreamListener> {
    const { host, port } = parseAddr(addr, { portZero: true })
    const listener: MemoryListener = {
      inbound: new InboundConnections({
        wrap: this.options.wrap,
        connectTimeoutMs: this.connectTimeoutMs,
        limits: this.limits,
        counters: this.counters,
        onConnection,
      }),
      inboundConnectionsMax: this.options.inboundConnectionsMax ?? STREAM_INBOUND_CONNECTIONS_MAX,
      counters: this.counters,
    }
    const localAddr = this.network.addListener(host, port, addr, listener)
    const release = this.network.hold()
    await Promise.resolve()
    let closing: Promise<void> | undefined
    return {
      localAddr,
      close: () => {
        this.network.removeListener(localAddr, listener)
        release()
        closing ??= listener.inbound.closeAll()
        return closing
      },
    }
  }

  stats(): StreamStats {
    return this.counters.snapshot()
  }

  private async dial(to: string, signal: AbortSignal | undefined): Promise<FramedConnection> {
    parseAddr(to)
    const key = normalizeAddr(to)
    if (signal?.aborted === true) throw abortError(signal, `connect to ${to}`)
    const { combined, onDeadline } = connectDeadline(to, signal, this.connectTimeoutMs)
    const from = this.network.ephemeralAddr(this.host)
    // A connect happens on a later turn, as a real one would.
    await new Promise<void>((resolve) => setImmediate(resolve))
    if (this.network.isDropped(from, key)) {
      await new Promise<never>((_, reject) => {
        if (combined.aborted) reject(onDeadline())
        combined.addEventListener(
          'abort',
          () => {
            reject(onDeadline())
          },
          { once: true },
        )
      })
    }
    if (combined.aborted) throw onDeadline()
    const listener = this.network.listener(key)
    if (listener === undefined) {
      throw new TransportError('CONNECT_FAILED', `connect to ${to}: connection refused`)
    }
    const [local, remote] = pipePair(this.network)
    if (listener.inbound.size >= listener.inboundConnectionsMax) {
      // As a TCP listener at its cap: the connect succeeds, then the socket is closed at once.
      listener.counters.inboundDropped += 1
      remote.destroy()
    } else {
      listener.inbound.accept(remote, from)
    }
    return await acceptFramed(local, {
      direction: 'outbound',
      remoteAddr: to,
      signal: combined,
      onDeadline,
      wrap: this.options.wrap,
      limits: this.limits,
      counters: this.counters,
    })
  }
}

/** An ECONNRESET-like error for writes whose reader has gone. */
function resetError(): NodeJS.ErrnoException {
  return Object.assign(new Error('connection reset by peer'), { code: 'ECONNRESET' })
}

/**
 * One end of an in-memory byte pipe. Writes are copied into the peer's readable buffer; when
 * that buffer is full (`push()` returns false) the write's callback waits for the peer's next
 * `_read()`, which is how backpressure travels back to the writer, as TCP windows do.
 * Ending or destroying an end delivers end-of-stream to the peer; a writer blocked on a
 * destroyed end fails with ECONNRESET.
 */
class PipeEnd extends Duplex {
  peer: PipeEnd | undefined
  private blockedWrite: ((error?: Error | null) => void) | undefined
  private eofPushed = false

  constructor() {
    super({ allowHalfOpen: false })
  }

  override _write(
    chunk: Buffer,
    _encoding: BufferEncoding,
    callback: (error?: Error | null) => void,
  ): void {
    const peer = this.peer
    if (peer === undefined || peer.destroyed || peer.eofPushed) {
      callback(resetError())
      return
    }
    if (peer.push(Buffer.from(chunk))) callback()
    else peer.blockedWrite = callback
  }

  override _read(): void {
    const callback = this.blockedWrite
    if (callback !== undefined) {
      this.blockedWrite = undefined
      callback()
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.peer?.pushEof()
    callback()
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const blocked = this.blockedWrite
    this.blockedWrite = undefined
    blocked?.(resetError())
    this.peer?.pushEof()
    callback(error)
  }

  private pushEof(): void {
    if (this.eofPushed || this.destroyed) return
    this.eofPushed = true
    this.push(null)
  }
}

function pipePair(network: MemoryNetwork): [PipeEnd, PipeEnd] {
  const a = new PipeEnd()
  const b = new PipeEnd()
  a.once('close', network.hold())
  b.once('close', network.hold())
  a.peer = b
  b.peer = a
  return [a, b]
}
