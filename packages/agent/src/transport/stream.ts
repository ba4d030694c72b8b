import { connect as netConnect, createServer, type Server, type Socket } from 'node:net'
import { formatAddr, parseAddr, type HostPort } from './address.ts'
import {
  acceptFramed,
  connectFailureOf,
  InboundConnections,
  resolveLimits,
  StreamCounters,
  type ConnectionLimits,
} from './framed-connection.ts'
import { abortError, connectDeadline, TransportError } from './errors.ts'
import { STREAM_CONNECT_TIMEOUT_MS, STREAM_INBOUND_CONNECTIONS_MAX } from './defaults.ts'
import type {
  FramedConnection,
  StreamListener,
  StreamOptions,
  StreamStats,
  StreamTransport,
} from './stream-contract.ts'

export type {
  FramedConnection,
  StreamListener,
  StreamTransport,
  StreamCloseReason,
  ConnectFailure,
  SendRejection,
  StreamStats,
  WrapContext,
  WrapSocket,
  StreamOptions,
} from './stream-contract.ts'

/** DNS answers meaning "no such name": BAD_ADDRESS rather than CONNECT_FAILED. */
const UNRESOLVED_CODES = new Set(['ENOTFOUND', 'EAI_NONAME', 'EAI_NODATA', 'EAI_FAIL'])

/**
 * StreamTransport on node:net, plaintext unless `wrap` says otherwise.
 *
 * @example
 * const tcp = new TcpStreamTransport()
 * const listener = await tcp.listen('127.0.0.1:0', (c) => void echo(c))
 * const c = await tcp.connect(listener.localAddr, AbortSignal.timeout(1_000))
 * await c.send(new TextEncoder().encode('hello'))
 */
export class TcpStreamTransport implements StreamTransport {
  private readonly options: StreamOptions
  private readonly limits: ConnectionLimits
  private readonly counters = new StreamCounters()
  private readonly connectTimeoutMs: number
  private readonly inboundConnectionsMax: number

  constructor(options: StreamOptions = {}) {
    this.options = options
    this.limits = resolveLimits(options)
    this.connectTimeoutMs = options.connectTimeoutMs ?? STREAM_CONNECT_TIMEOUT_MS
    this.inboundConnectionsMax = options.inboundConnectionsMax ?? STREAM_INBOUND_CONNECTIONS_MAX
  }

  async connect(to: string, signal?: AbortSignal): Promise<FramedConnection> {
    try {
      return await this.dial(to, signal)
    } catch (error) {
      this.counters.connectsFailed[connectFailureOf(error)] += 1
      throw error
    }
  }

  async listen(
    addr: string,
    onConnection: (connection: FramedConnection) => void,
  ): Promise<StreamListener> {
    const { host, port } = parseAddr(addr, { portZero: true })
    const server = createServer({ noDelay: true })
    server.maxConnections = this.inboundConnectionsMax
    const inbound = new InboundConnections({
      wrap: this.options.wrap,
      connectTimeoutMs: this.connectTimeoutMs,
      limits: this.limits,
      counters: this.counters,
      onConnection,
    })
    server.on('drop', () => {
      this.counters.inboundDropped += 1
    })
    server.on('connection', (socket) => {
      inbound.accept(socket, formatAddr(socket.remoteAddress ?? '?', socket.remotePort ?? 0))
    })
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => {
        reject(new TransportError('BIND_FAILED', `cannot listen on ${addr}`, { cause: error }))
      }
      server.once('error', onError)
      server.listen(port, host, () => {
        server.off('error', onError)
        resolve()
      })
    })
    // After listening, 'error' reports failed accepts (EMFILE and the like): that peer's connect
    // fails and it retries; the listener itself keeps going.
    server.on('error', () => {
      this.counters.connectsFailed.connect_failed += 1
    })
    const bound = server.address()
    const localAddr =
      bound !== null && typeof bound === 'object' ? formatAddr(bound.address, bound.port) : addr
    let closing: Promise<void> | undefined
    return {
      localAddr,
      close: () => (closing ??= closeServer(server, inbound)),
    }
  }

  stats(): StreamStats {
    return this.counters.snapshot()
  }

  private async dial(to: string, signal: AbortSignal | undefined): Promise<FramedConnection> {
    const dest = parseAddr(to)
    if (signal?.aborted === true) throw abortError(signal, `connect to ${to}`)
    const { combined, onDeadline } = connectDeadline(to, signal, this.connectTimeoutMs)
    const socket = await dialTcp(dest, to, combined, onDeadline)
    return await acceptFramed(socket, {
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

function dialTcp(
  dest: HostPort,
  to: string,
  signal: AbortSignal,
  onDeadline: () => TransportError,
): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket = netConnect({ host: dest.host, port: dest.port, noDelay: true })
    const cleanup = (): void => {
      signal.removeEventListener('abort', onAbort)
      socket.off('connect', onConnect)
      socket.off('error', onError)
    }
    const onAbort = (): void => {
      cleanup()
      socket.destroy()
      reject(onDeadline())
    }
    const onConnect = (): void => {
      cleanup()
      resolve(socket)
    }
    const onError = (error: NodeJS.ErrnoException): void => {
      cleanup()
      socket.destroy()
      const unresolved = error.code !== undefined && UNRESOLVED_CODES.has(error.code)
      reject(
        new TransportError(
          unresolved ? 'BAD_ADDRESS' : 'CONNECT_FAILED',
          `connect to ${to}: ${error.code ?? error.message}`,
          { cause: error },
        ),
      )
    }
    signal.addEventListener('abort', onAbort, { once: true })
    socket.once('connect', onConnect)
    socket.once('error', onError)
  })
}

async function closeServer(server: Server, inbound: InboundConnections): Promise<void> {
  const stopped = new Promise<void>((resolve) => {
    server.close(() => {
      resolve()
    })
  })
  await Promise.all([stopped, inbound.closeAll()])
}
