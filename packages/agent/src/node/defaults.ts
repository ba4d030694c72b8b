/**
 * Limits of the node assembly (createNode): the stream-kind registrar and the broadcast links.
 * Each says what happens when it is hit; units are in the names.
 */

/**
 * An accepted gossip-port connection must send its first frame (the stream kind) within this;
 * otherwise it is closed unanswered, so idle or slow-loris connections cannot hold sockets.
 */
export const STREAM_FIRST_FRAME_TIMEOUT_MS = 5_000

/** Frames waiting per broadcast link while it connects; more are dropped (sync repairs). */
export const LINK_PENDING_MAX = 1024

/** Bytes of frames waiting per broadcast link while it connects; more are dropped. */
export const LINK_PENDING_BYTES_MAX = 4 * 1024 * 1024

/** A broadcast link nothing was sent on for this long (a peer that left) is closed. */
export const LINK_IDLE_MS = 60_000

/**
 * With `[gossip] addr` on port 0, UDP binds a free port and TCP must get the same one; when
 * another process took it in between, the agent tries again with a new port, this many times,
 * then fails to start.
 */
export const PORT_ZERO_ATTEMPTS = 8
