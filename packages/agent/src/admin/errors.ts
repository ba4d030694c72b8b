/**
 * Operating errors of the admin socket: the path is taken by a live agent, or by something that
 * is not a socket, or the file there cannot be checked. Each has a stable `code`; the system
 * error behind it (from node:fs or node:net) is kept as `cause`.
 */
export type AdminErrorCode =
  /** Another process answers on the socket: a second agent would take over its admin socket. */
  | 'IN_USE'
  /** The path exists and is not a socket (a file or directory the operator put there). */
  | 'NOT_A_SOCKET'
  /** The existing socket could not be probed (no permission, no answer in time). */
  | 'PROBE_FAILED'

export class AdminError extends Error {
  override readonly name = 'AdminError'
  readonly code: AdminErrorCode

  constructor(code: AdminErrorCode, message: string, options?: { readonly cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}
