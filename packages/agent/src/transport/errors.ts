/**
 * Operating errors of the transports: a peer that is down, slow or speaking garbage is expected
 * and handled. Each error has a stable `code`; the original error (a system error from node:net,
 * the signal's reason) is kept as `cause`.
 */
export type TransportErrorCode =
  /** A frame is larger than the receiver's (or the sender's own) frame limit. */
  | 'FRAME_TOO_LARGE'
  /** A frame header carries a version this build does not speak. */
  | 'BAD_VERSION'
  /** The peer closed its side in the middle of a frame. */
  | 'TRUNCATED_FRAME'
  /** The connection's outgoing queue is at its byte cap: the caller must wait or drop. */
  | 'QUEUE_FULL'
  /** Connecting (TCP handshake plus the `wrap` hook, e.g. TLS) took longer than allowed. */
  | 'CONNECT_TIMEOUT'
  /** The peer refused or could not be reached (ECONNREFUSED, EHOSTUNREACH, a failed `wrap`). */
  | 'CONNECT_FAILED'
  /** Nothing was sent or received on the connection for longer than its idle timeout. */
  | 'IDLE_TIMEOUT'
  /** The socket failed after it was connected (ECONNRESET, EPIPE, ...). */
  | 'SOCKET_ERROR'
  /** The connection or transport is closed. */
  | 'CLOSED'
  /** An address that is not "host:port" (IPv6 as "[::1]:port") or does not resolve. */
  | 'BAD_ADDRESS'
  /** Binding or listening on an address failed (in use, not local, no permission). */
  | 'BIND_FAILED'
  /** The caller's AbortSignal fired. */
  | 'ABORTED'

export class TransportError extends Error {
  override readonly name = 'TransportError'
  readonly code: TransportErrorCode

  constructor(code: TransportErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

/** The error for an aborted wait, keeping the signal's reason as its cause. */
export function abortError(signal: AbortSignal, what: string): TransportError {
  return new TransportError('ABORTED', `${what} aborted`, { cause: signal.reason })
}

/**
 * The signal a connect waits on (the caller's, if any, combined with the connect timeout) and
 * the error to raise when it fires: ABORTED for the caller's signal, CONNECT_TIMEOUT otherwise.
 */
export function connectDeadline(
  to: string,
  signal: AbortSignal | undefined,
  timeoutMs: number,
): { readonly combined: AbortSignal; readonly onDeadline: () => TransportError } {
  const deadline = AbortSignal.timeout(timeoutMs)
  const combined = signal === undefined ? deadline : AbortSignal.any([signal, deadline])
  const onDeadline = (): TransportError =>
    signal?.aborted === true
      ? abortError(signal, `connect to ${to}`)
      : new TransportError('CONNECT_TIMEOUT', `connect to ${to}: no answer within ${timeoutMs} ms`)
  return { combined, onDeadline }
}

/** True for a TransportError with one of the given codes (handy in tests and `catch` blocks). */
export function isTransportError(
  error: unknown,
  ...codes: readonly TransportErrorCode[]
): error is TransportError {
  return error instanceof TransportError && (codes.length === 0 || codes.includes(error.code))
}
