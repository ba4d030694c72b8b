import { createSocket, type Socket } from 'node:dgram'
import { formatAddr, parseAddr, type HostPort } from './address.ts'
import { DATAGRAM_BYTES_MAX, DATAGRAM_SEND_QUEUE_BYTES_MAX } from './defaults.ts'
import { TransportError } from './errors.ts'

/**
 * Why a datagram was not sent or not delivered. Every drop is counted, none throws: SWIM is
 * built to lose packets, so a lost packet is a number on a dashboard, not an exception.
 */
export type DatagramDropReason =
  /** Received a packet above `datagramBytesMax`. */
  | 'oversized_in'
  /** Asked to send a packet above `datagramBytesMax`. */
  | 'oversized_out'
  /** The destination is not "host:port", is of the other IP family, or does not resolve. */
  | 'bad_address'
  /** The kernel refused the send (unreachable network, no buffer space, ...). */
  | 'send_error'
  /** The socket's send queue was at `sendQueueBytesMax`. */
  | 'send_queue_full'
  /** The socket reported a receive error. */
  | 'receive_error'
  /** A message handler threw; the packet counts as received. */
  | 'handler_error'
  /** `send()` after `close()`. */
  | 'closed'

export const DATAGRAM_DROP_REASONS: readonly DatagramDropReason[] = [
  'oversized_in',
  'oversized_out',
  'bad_address',
  'send_error',
  'send_queue_full',
  'receive_error',
  'handler_error',
  'closed',
]

export interface DatagramStats {
  /** Packets (and their payload bytes) handed to the network. */
  readonly packetsSent: number
  readonly bytesSent: number
  /** Packets (and their payload bytes) given to the handlers, including those a handler threw on. */
  readonly packetsReceived: number
  readonly bytesReceived: number
  readonly dropped: Readonly<Record<DatagramDropReason, number>>
}

/** Called for each received packet. `from` is "host:port" ("[::1]:port" for IPv6). */
export type DatagramHandler = (from: string, bytes: Uint8Array) => void

/**
 * Unreliable, unordered, bounded-size messages between "host:port" addresses: what SWIM needs.
 *
 * 1. `send()` never throws and never waits: a packet that cannot go is dropped and counted.
 * 2. Packets above the size limit are dropped on both sides and counted.
 * 3. A handler that throws does not stop delivery to the next packet (counted as
 *    `handler_error`).
 * 4. The bytes passed to `send()` must not be changed afterwards (they may still be queued).
 */
export interface DatagramTransport {
  /** The bound address, with the real port when bound to port 0. */
  readonly localAddr: string
  send(to: string, bytes: Uint8Array): void
  /** Adds a handler; every received packet goes to every handler, in the order added. */
  onMessage(handler: DatagramHandler): void
  /** Stops receiving and sending; later sends are counted as `closed`. Idempotent. */
  close(): Promise<void>
  stats(): DatagramStats
}

export interface DatagramOptions {
  /** Largest payload sent or accepted; default DATAGRAM_BYTES_MAX. */
  readonly datagramBytesMax?: number
  /** Told about each drop, e.g. to log a handler's exception. Must not throw. */
  readonly onDrop?: (reason: DatagramDropReason, detail: DatagramDropDetail) => void
}

export interface DatagramDropDetail {
  /** The peer's address, when the drop concerns one. */
  readonly addr?: string
  readonly bytes: number
  readonly error?: unknown
}

export interface UdpTransportOptions extends DatagramOptions {
  /** Bytes allowed in the socket's send queue; default DATAGRAM_SEND_QUEUE_BYTES_MAX. */
  readonly sendQueueBytesMax?: number
}

/**
 * @internal The counters and handler list behind a DatagramTransport, shared by UdpTransport and the
 * in-memory twin so both count the same way.
 */
export class DatagramCore {
  readonly datagramBytesMax: number
  private readonly onDrop: DatagramOptions['onDrop']
  private readonly handlers: DatagramHandler[] = []
  private packetsSent = 0
  private bytesSent = 0
  private packetsReceived = 0
  private bytesReceived = 0
  private readonly dropped: Record<DatagramDropReason, number> = Object.fromEntries(
    DATAGRAM_DROP_REASONS.map((reason) => [reason, 0]),
  ) as Record<DatagramDropReason, number>

  constructor(options: DatagramOptions) {
    this.datagramBytesMax = options.datagramBytesMax ?? DATAGRAM_BYTES_MAX
    if (!Number.isSafeInteger(this.datagramBytesMax) || this.datagramBytesMax < 0) {
      throw new RangeError(`datagramBytesMax must be a non-negative integer`)
    }
    this.onDrop = options.onDrop
  }

  addHandler(handler: DatagramHandler): void {
    this.handlers.push(handler)
  }

  drop(reason: DatagramDropReason, detail: DatagramDropDetail): void {
    this.dropped[reason] += 1
    this.onDrop?.(reason, detail)
  }

  sent(bytes: number): void {
    this.packetsSent += 1
    this.bytesSent += bytes
  }

  /** Checks the size and hands a received packet to every handler. */
  receive(from: string, bytes: Uint8Array): void {
    if (bytes.length > this.datagramBytesMax) {
      this.drop('oversized_in', { addr: from, bytes: bytes.length })
      return
    }
    this.packetsReceived += 1
    this.bytesReceived += bytes.length
    for (const handler of this.handlers) {
      try {
        handler(from, bytes)
      } catch (error) {
        this.drop('handler_error', { addr: from, bytes: bytes.length, error })
      }
    }
  }

  /**
   * Where a packet of `size` bytes to `to` goes, or null when it cannot go (counted): the
   * transport is closed, the packet is too large, or the address is not "host:port" of this
   * transport's IP family (`family` 0: any).
   */
  destination(to: string, size: number, closed: boolean, family: 0 | 4 | 6): HostPort | null {
    if (closed) {
      this.drop('closed', { addr: to, bytes: size })
      return null
    }
    if (size > this.datagramBytesMax) {
      this.drop('oversized_out', { addr: to, bytes: size })
      return null
    }
    let dest: HostPort
    try {
      dest = parseAddr(to)
    } catch (error) {
      this.drop('bad_address', { addr: to, bytes: size, error })
      return null
    }
    if (dest.family !== 0 && family !== 0 && dest.family !== family) {
      this.drop('bad_address', { addr: to, bytes: size })
      return null
    }
    return dest
  }

  stats(): DatagramStats {
    return {
      packetsSent: this.packetsSent,
      bytesSent: this.bytesSent,
      packetsReceived: this.packetsReceived,
      bytesReceived: this.bytesReceived,
      dropped: { ...this.dropped },
    }
  }
}

/** DNS answers meaning "no such name": counted as `bad_address`, not as a send error. */
const UNRESOLVED_CODES = new Set(['ENOTFOUND', 'EAI_NONAME', 'EAI_NODATA', 'EAI_AGAIN', 'EAI_FAIL'])

/**
 * DatagramTransport on node:dgram. The socket is udp6 for an IPv6 bind address ("[::]:7946"),
 * udp4 otherwise; it can only send to its own family.
 *
 * @example
 * const udp = await UdpTransport.bind('127.0.0.1:0')
 * udp.onMessage((from, bytes) => console.log(from, bytes.length))
 * udp.send('127.0.0.1:7946', new Uint8Array([1, 2, 3]))
 * await udp.close()
 */
export class UdpTransport implements DatagramTransport {
  readonly localAddr: string
  private readonly socket: Socket
  private readonly family: 4 | 6
  private readonly core: DatagramCore
  private readonly sendQueueBytesMax: number
  private closing: Promise<void> | undefined

  /** Binds a socket; rejects with BAD_ADDRESS or BIND_FAILED. Port 0 picks a free port. */
  static async bind(addr: string, options: UdpTransportOptions = {}): Promise<UdpTransport> {
    const core = new DatagramCore(options)
    const { host, port, family } = parseAddr(addr, { portZero: true })
    const socketFamily = family === 6 ? 6 : 4
    const socket = createSocket({ type: socketFamily === 6 ? 'udp6' : 'udp4' })
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => {
        socket.close()
        reject(new TransportError('BIND_FAILED', `cannot bind udp ${addr}`, { cause: error }))
      }
      socket.once('error', onError)
      socket.bind(port, host, () => {
        socket.off('error', onError)
        resolve()
      })
    })
    return new UdpTransport(socket, socketFamily, core, options)
  }

  private constructor(
    socket: Socket,
    family: 4 | 6,
    core: DatagramCore,
    options: UdpTransportOptions,
  ) {
    this.socket = socket
    this.family = family
    this.core = core
    this.sendQueueBytesMax = options.sendQueueBytesMax ?? DATAGRAM_SEND_QUEUE_BYTES_MAX
    const bound = socket.address()
    this.localAddr = formatAddr(bound.address, bound.port)
    socket.on('message', (message, remote) => {
      core.receive(formatAddr(remote.address, remote.port), message)
    })
    // With a callback on every send, 'error' only reports receive failures.
    socket.on('error', (error) => {
      core.drop('receive_error', { bytes: 0, error })
    })
  }

  send(to: string, bytes: Uint8Array): void {
    const size = bytes.length
    const dest = this.core.destination(to, size, this.closing !== undefined, this.family)
    if (dest === null) return
    if (this.socket.getSendQueueSize() + size > this.sendQueueBytesMax) {
      this.core.drop('send_queue_full', { addr: to, bytes: size })
      return
    }
    try {
      this.socket.send(bytes, dest.port, dest.host, (error) => {
        if (error === null) {
          this.core.sent(size)
        } else {
          const code = (error as NodeJS.ErrnoException).code ?? ''
          const reason = UNRESOLVED_CODES.has(code) ? 'bad_address' : 'send_error'
          this.core.drop(reason, { addr: to, bytes: size, error })
        }
      })
    } catch (error) {
      // Synchronous throws (socket closed under us, bad port) are operating errors here too.
      this.core.drop('send_error', { addr: to, bytes: size, error })
    }
  }

  onMessage(handler: DatagramHandler): void {
    this.core.addHandler(handler)
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.socket.close(() => {
        resolve()
      })
    })
    return this.closing
  }

  stats(): DatagramStats {
    return this.core.stats()
  }
}
