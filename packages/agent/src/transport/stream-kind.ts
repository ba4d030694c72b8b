/**
 * Stream kinds: the first byte of a stream's first frame (and, in simulation, of a datagram or
 * request) says what it is for, so one gossip port serves membership and replication.
 */
export const STREAM_PUSH_PULL = 1
export const STREAM_BROADCAST = 2
export const STREAM_SYNC = 3

/** `bytes` with `kind` in front. */
export function withKind(kind: number, bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length + 1)
  out[0] = kind
  out.set(bytes, 1)
  return out
}
