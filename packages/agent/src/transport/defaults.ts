/**
 * Every limit and default of the transports, in one place. Each says what happens when it is hit.
 * Units are in the names. The options bags of UdpTransport, TcpStreamTransport, the simulator's
 * transports (sim/sim.ts `HostOptions`, sim/streams.ts) and ReconnectingConnection override them
 * per instance.
 */

/**
 * Largest datagram sent or accepted, in bytes (payload only). Fits a 1500-byte Ethernet MTU
 * after IPv6 and UDP headers, so SWIM packets are never fragmented. Larger sends are refused
 * and counted (`oversized_out`); larger received packets are dropped and counted
 * (`oversized_in`).
 */
export const DATAGRAM_BYTES_MAX = 1400

/**
 * Bytes that may wait in the UDP socket's send queue (libuv queues datagrams the kernel cannot
 * take yet). Beyond it a send is dropped and counted (`send_queue_full`): gossip is best-effort,
 * and an unbounded queue is how an agent runs out of memory.
 */
export const DATAGRAM_SEND_QUEUE_BYTES_MAX = 1024 * 1024

/**
 * Largest frame payload on a stream, in bytes. A sender refuses a larger frame (FRAME_TOO_LARGE,
 * the connection stays up); a receiver that sees a larger length closes the connection before
 * allocating anything (reason `frame_too_large`).
 */
export const FRAME_BYTES_MAX = 8 * 1024 * 1024

/**
 * Bytes of frames that `send()` has accepted and not yet resolved on one connection (waiting
 * for the socket to drain). A send that would go beyond it rejects with QUEUE_FULL at once,
 * except that an empty queue always takes one frame, so a frame up to FRAME_BYTES_MAX can
 * always be sent. Policy when full: reject (the caller decides to wait, drop or disconnect).
 */
export const STREAM_SEND_QUEUE_BYTES_MAX = 1024 * 1024

/**
 * Bytes of received frames not yet taken by the reader of `frames()` on one connection. Above
 * it the socket is paused, so a slow reader pushes back on the sender through TCP instead of
 * growing memory. Policy when full: wait.
 */
export const STREAM_RECEIVE_BUFFER_BYTES_MAX = 1024 * 1024

/** Connecting, including the `wrap` hook's handshake (TLS later), fails after this. */
export const STREAM_CONNECT_TIMEOUT_MS = 5_000

/**
 * A connection that sends and receives nothing for this long is closed (reason
 * `idle_timeout`). Waiting on flow control (a full receive buffer, a socket waiting for
 * 'drain') is not idleness. Long-lived users send heartbeats. 0 disables it.
 */
export const STREAM_IDLE_TIMEOUT_MS = 60_000

/**
 * After `close()`, frames already accepted still go out; a connection that has not finished
 * closing (the peer does not read, or does not close its side) is destroyed after this.
 */
export const STREAM_CLOSE_GRACE_MS = 2_000

/** Open connections one listener accepts; the kernel-accepted ones beyond it are dropped. */
export const STREAM_INBOUND_CONNECTIONS_MAX = 1024

/** First reconnect delay cap: the n-th retry waits random() * min(MAX, BASE * 2^n). */
export const RECONNECT_BASE_MS = 100

/** Largest reconnect delay: a peer that stays down is tried about this often. */
export const RECONNECT_MAX_MS = 30_000

/**
 * A connection must stay up this long before the backoff starts again from BASE, so a peer that
 * accepts and drops at once is retried at a growing interval, not in a tight loop.
 */
export const RECONNECT_STABLE_MS = 10_000
