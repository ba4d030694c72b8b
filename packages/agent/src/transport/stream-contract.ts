/**
 * The stream contract: what every framed stream transport promises (TCP in stream.ts, the
 * simulator's in sim/streams.ts). Types only, so every implementation and every user depends on
 * this file and not on each other.
 */
import type { Duplex } from 'node:stream'
import type { TransportError } from './errors.ts'

/**
 * One framed, ordered, reliable connection (see frame-codec.ts for the wire format).
 *
 * 1. `send()` resolves once the frame is written to the socket with room to spare. When the
 *    socket's buffer is full (`write()` returned false) the promise waits for 'drain', and later
 *    frames wait in a per-connection queue capped in bytes; beyond the cap `send()` rejects at
 *    once with QUEUE_FULL. It also rejects with FRAME_TOO_LARGE (the connection stays up),
 *    CLOSED, or ABORTED (an aborted frame that was already written may still arrive).
 * 2. `frames()` yields received frames in order. It ends when the peer closes cleanly or this
 *    side calls `close()`, and throws TransportError (FRAME_TOO_LARGE, BAD_VERSION,
 *    TRUNCATED_FRAME, IDLE_TIMEOUT, SOCKET_ERROR) after the last good frame when the
 *    connection broke. Frames nobody reads are capped: the socket pauses, and the peer's
 *    `send()` waits. It may be iterated again after a `break` (the connection stays open); it
 *    may not be iterated by two loops at once.
 * 3. `close()` stops reading at once, still writes the frames `send()` already accepted, then
 *    closes this side; a peer that does not finish closing is cut off after a grace period.
 * 4. `closed()` resolves when the socket is gone: undefined for a clean close, the error that
 *    broke the connection otherwise. It never rejects.
 * 5. The bytes passed to `send()` must not be changed afterwards.
 */
export interface FramedConnection {
  /** The peer: the address dialled (outbound) or the socket's remote "host:port" (inbound). */
  readonly remoteAddr: string
  send(frame: Uint8Array, signal?: AbortSignal): Promise<void>
  frames(): AsyncIterable<Uint8Array>
  close(): void
  closed(): Promise<TransportError | undefined>
}

export interface StreamListener {
  /** The bound address, with the real port when bound to port 0. */
  readonly localAddr: string
  /** Stops accepting, closes the connections this listener accepted, resolves when done. */
  close(): Promise<void>
}

/**
 * Dials and accepts FramedConnections. `connect` rejects with BAD_ADDRESS, CONNECT_TIMEOUT,
 * CONNECT_FAILED or ABORTED; `listen` with BAD_ADDRESS or BIND_FAILED.
 */
export interface StreamTransport {
  connect(to: string, signal?: AbortSignal): Promise<FramedConnection>
  listen(
    addr: string,
    onConnection: (connection: FramedConnection) => void,
  ): Promise<StreamListener>
  stats(): StreamStats
}

/** Why a connection ended; each connection counts exactly one. */
export type StreamCloseReason =
  /** This side called `close()` (or its listener closed). */
  | 'local'
  /** The peer closed cleanly at a frame boundary. */
  | 'peer'
  | 'frame_too_large'
  | 'bad_version'
  | 'truncated_frame'
  | 'idle_timeout'
  | 'socket_error'
  /** The listener's `onConnection` threw. */
  | 'handler_error'

export type ConnectFailure = 'bad_address' | 'connect_timeout' | 'connect_failed' | 'aborted'

export type SendRejection = 'frame_too_large' | 'queue_full' | 'closed' | 'aborted'

export interface StreamStats {
  /** Gauge: connections open now (inbound and outbound). */
  readonly connectionsOpen: number
  /** Connections that completed connect (and the `wrap` hook). */
  readonly connectionsOpened: number
  /** Outbound connects, and inbound handshakes, that failed. */
  readonly connectsFailed: Readonly<Record<ConnectFailure, number>>
  /** Inbound connections refused at once because a listener was at its connection cap. */
  readonly inboundDropped: number
  readonly closed: Readonly<Record<StreamCloseReason, number>>
  /** Frames and payload bytes written to sockets / taken off them. */
  readonly framesSent: number
  readonly bytesSent: number
  readonly framesReceived: number
  readonly bytesReceived: number
  readonly sendsRejected: Readonly<Record<SendRejection, number>>
  /** Gauge: bytes of frames accepted by `send()` and not yet resolved, over open connections. */
  readonly sendQueueBytes: number
  /** Gauge: bytes of received frames not yet read from `frames()`, over open connections. */
  readonly receiveBufferBytes: number
}

/** Where a `wrap` hook is called: the direction, the peer, and the deadline of the handshake. */
export interface WrapContext {
  readonly direction: 'inbound' | 'outbound'
  readonly remoteAddr: string
  /** Fires at the connect timeout (or the caller's abort); the hook should give up then. */
  readonly signal: AbortSignal
}

/**
 * The secure-channel seam: turns a connected plaintext socket into the socket frames travel on.
 * TLS/mTLS will be `(socket, ctx) => tls.connect({ socket, ... })` after 'secureConnect' (and a
 * `TLSSocket` with `isServer` inbound). A hook that throws or rejects fails the connection with
 * CONNECT_FAILED; one that takes too long, with CONNECT_TIMEOUT.
 */
export type WrapSocket = (socket: Duplex, context: WrapContext) => Duplex | Promise<Duplex>

export interface StreamOptions {
  /** Largest frame payload sent or accepted; default FRAME_BYTES_MAX. */
  readonly frameBytesMax?: number
  /** Per-connection cap on unresolved `send()` bytes; default STREAM_SEND_QUEUE_BYTES_MAX. */
  readonly sendQueueBytesMax?: number
  /** Per-connection cap on unread frames; default STREAM_RECEIVE_BUFFER_BYTES_MAX. */
  readonly receiveBufferBytesMax?: number
  /** Default STREAM_CONNECT_TIMEOUT_MS; also bounds the inbound `wrap` handshake. */
  readonly connectTimeoutMs?: number
  /** Default STREAM_IDLE_TIMEOUT_MS; 0 disables. */
  readonly idleTimeoutMs?: number
  /** Default STREAM_CLOSE_GRACE_MS. */
  readonly closeGraceMs?: number
  /** Per listener; default STREAM_INBOUND_CONNECTIONS_MAX. */
  readonly inboundConnectionsMax?: number
  /** The secure-channel hook, applied to every outbound and inbound socket. None: plaintext. */
  readonly wrap?: WrapSocket
}
