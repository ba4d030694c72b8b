/**
 * Every parameter of the membership protocol, with its default and what it does. The defaults
 * are memberlist's LAN profile with Lifeguard (research/crdt-swim.md §4.3 and §6); `WAN_PROFILE`
 * has memberlist's WAN numbers. Units are in the names. Any field can be overridden per instance
 * through `SwimInit`.
 */
import { ACTOR_ID_BYTES } from '../runtime/actor-id.ts'

// ------------------------------------------------------------------------------------ probing

/** Time between two probes of this node (scaled by the local health multiplier, LHM + 1). */
export const PROBE_INTERVAL_MS = 1000
/**
 * How long a direct ping waits for its ack before indirect probes start (scaled by LHM + 1).
 * The indirect probes then have the rest of the probe interval.
 */
export const PROBE_TIMEOUT_MS = 500
/** Members asked to ping a target that did not answer a direct ping (ping-req). */
export const INDIRECT_CHECKS = 3

// ------------------------------------------------------------------------------------ Lifeguard

/**
 * Highest local health multiplier (LHM). The LHM is a saturating counter in [0, this]; probe
 * interval and probe timeout are multiplied by LHM + 1. (memberlist caps the multiplier itself
 * at 8, i.e. the counter at 7; the Lifeguard paper and this code cap the counter at 8.)
 */
export const LOCAL_HEALTH_MAX = 8
/** Indirect-probe helpers answer "nack" when the target does not answer them either. */
export const NACKS = true
/**
 * An indirect-probe helper whose ping got no ack answers "nack" after this fraction of the
 * requester's indirect window (probe interval - probe timeout), so that the nack arrives before
 * the requester's probe ends (the Lifeguard paper's 80%; memberlist waits a whole probe timeout,
 * which with its defaults lands the nack after the requester's deadline).
 */
export const NACK_TIMEOUT_RATIO = 0.8
/** A ping to a member we consider suspect carries that suspicion, so it can refute at once. */
export const BUDDY_SYSTEM = true

// ------------------------------------------------------------------------------------ suspicion

/**
 * Suspicion timeout base: min = SUSPICION_MULT * max(1, log10(n)) * probe interval; also the
 * number of independent confirmations expected is SUSPICION_MULT - 2.
 */
export const SUSPICION_MULT = 4
/** A suspicion starts at min * this and shrinks towards min as confirmations arrive. */
export const SUSPICION_MAX_TIMEOUT_MULT = 6

// ------------------------------------------------------------------------------------ gossip

/** Each state change is sent retransmitMult * ceil(log10(n + 1)) times by each member. */
export const RETRANSMIT_MULT = 4
/** Time between gossip rounds (rounds with nothing queued send nothing). */
export const GOSSIP_INTERVAL_MS = 200
/** Members each gossip round sends to. */
export const GOSSIP_NODES = 3
/** Members declared down or left still receive gossip this long, so that they can learn it. */
export const GOSSIP_TO_THE_DEAD_MS = 30_000
/** Largest datagram built, header and piggybacked updates included; larger ones are dropped. */
export const MAX_PACKET_BYTES = 1400
/** Smallest allowed `maxPacketBytes`: a header, the largest body and one update must fit. */
export const MIN_PACKET_BYTES = 600

// ------------------------------------------------------------------------------------ push-pull

/**
 * Time between full-state exchanges with a random alive member, scaled above 32 members by
 * ceil(log2(n) - log2(32)) + 1 (memberlist's pushPullScale). 0 turns periodic push-pull off
 * (joins still use it).
 */
export const PUSH_PULL_INTERVAL_MS = 30_000
/** A push-pull (or join) exchange that has not answered after this counts as failed. */
export const PUSH_PULL_TIMEOUT_MS = 10_000
/** Largest full-state message; a larger state is truncated (down and left members go first). */
export const PUSH_PULL_BYTES_MAX = 4 * 1024 * 1024

// ------------------------------------------------------------------------------------ join

/** First wait before retrying the bootstrap addresses when none answered. */
export const JOIN_RETRY_BASE_MS = 1000
/** The retry wait doubles up to this. */
export const JOIN_RETRY_MAX_MS = 60_000
/** Each retry wait is multiplied by a random factor in [1 - this, 1]. */
export const JOIN_RETRY_JITTER = 0.25

// ------------------------------------------------------------------------------------ down, left

/**
 * Time between push-pull attempts with one random member we consider down (Serf's reconnect):
 * how the two sides of a healed partition find each other once gossip to the dead has stopped.
 * 0 turns it off.
 */
export const RECONNECT_INTERVAL_MS = 30_000
/**
 * A member that we consider down but that still sends to us (or that others report alive) is
 * told so directly at most once per this interval, so that it renews its identity and rejoins.
 */
export const DOWN_NOTICE_INTERVAL_MS = 1000
/** Down and left members stay listed this long, then are forgotten. */
export const REMOVE_DOWN_AFTER_MS = 24 * 60 * 60 * 1000
/** After `leave()` the node keeps gossiping (and answering) this long before it stops. */
export const LEAVE_LINGER_MS = 1000

// ------------------------------------------------------------------------------------ limits

/** Members tracked at most; updates about further unknown members are dropped and counted. */
export const MEMBERS_MAX = 65_536
/** Indirect probes this node runs for others at once; more ping-reqs are dropped, counted. */
export const RELAYS_MAX = 1024
/** Weight of a new round-trip sample in the smoothed RTT (exponential moving average). */
export const RTT_SMOOTHING = 0.125

/** Every tunable of a Swim instance. */
export interface SwimOptions {
  readonly probeIntervalMs: number
  readonly probeTimeoutMs: number
  readonly indirectChecks: number
  readonly localHealthMax: number
  readonly nacks: boolean
  readonly buddySystem: boolean
  readonly suspicionMult: number
  readonly suspicionMaxTimeoutMult: number
  readonly retransmitMult: number
  readonly gossipIntervalMs: number
  readonly gossipNodes: number
  readonly gossipToTheDeadMs: number
  readonly maxPacketBytes: number
  readonly pushPullIntervalMs: number
  readonly pushPullTimeoutMs: number
  readonly pushPullBytesMax: number
  readonly joinRetryBaseMs: number
  readonly joinRetryMaxMs: number
  readonly joinRetryJitter: number
  readonly reconnectIntervalMs: number
  readonly downNoticeIntervalMs: number
  readonly removeDownAfterMs: number
  readonly leaveLingerMs: number
  readonly membersMax: number
  readonly relaysMax: number
}

/** memberlist's LAN configuration with Lifeguard: the default. */
export const LAN_PROFILE: SwimOptions = Object.freeze({
  probeIntervalMs: PROBE_INTERVAL_MS,
  probeTimeoutMs: PROBE_TIMEOUT_MS,
  indirectChecks: INDIRECT_CHECKS,
  localHealthMax: LOCAL_HEALTH_MAX,
  nacks: NACKS,
  buddySystem: BUDDY_SYSTEM,
  suspicionMult: SUSPICION_MULT,
  suspicionMaxTimeoutMult: SUSPICION_MAX_TIMEOUT_MULT,
  retransmitMult: RETRANSMIT_MULT,
  gossipIntervalMs: GOSSIP_INTERVAL_MS,
  gossipNodes: GOSSIP_NODES,
  gossipToTheDeadMs: GOSSIP_TO_THE_DEAD_MS,
  maxPacketBytes: MAX_PACKET_BYTES,
  pushPullIntervalMs: PUSH_PULL_INTERVAL_MS,
  pushPullTimeoutMs: PUSH_PULL_TIMEOUT_MS,
  pushPullBytesMax: PUSH_PULL_BYTES_MAX,
  joinRetryBaseMs: JOIN_RETRY_BASE_MS,
  joinRetryMaxMs: JOIN_RETRY_MAX_MS,
  joinRetryJitter: JOIN_RETRY_JITTER,
  reconnectIntervalMs: RECONNECT_INTERVAL_MS,
  downNoticeIntervalMs: DOWN_NOTICE_INTERVAL_MS,
  removeDownAfterMs: REMOVE_DOWN_AFTER_MS,
  leaveLingerMs: LEAVE_LINGER_MS,
  membersMax: MEMBERS_MAX,
  relaysMax: RELAYS_MAX,
})

/**
 * Bytes of a push-pull message kept back from `pushPullBytesMax` for its header, flags and
 * counts and the sender's own record (actor id, and an address of up to 255 bytes); member
 * records fill the rest, live members first, and the rest are left out.
 */
export const PUSH_PULL_HEADER_RESERVE_BYTES = 64 + ACTOR_ID_BYTES + 255

/** Down members are reaped on a timer of removeDownAfterMs, kept within these bounds. */
export const REAP_INTERVAL_MIN_MS = 1_000
export const REAP_INTERVAL_MAX_MS = 60_000

/**
 * Picking k random members: with fewer than k * this many members, shuffle them all; otherwise
 * draw at random, at most this many times per member, and return fewer when that runs out.
 */
export const RANDOM_PICK_TRIES_PER_MEMBER = 3

/** memberlist's WAN numbers: slower probes, longer timeouts, for links across regions. */
export const WAN_PROFILE: SwimOptions = Object.freeze({
  ...LAN_PROFILE,
  probeIntervalMs: 5000,
  probeTimeoutMs: 3000,
  suspicionMult: 6,
  gossipIntervalMs: 500,
  gossipNodes: 4,
  gossipToTheDeadMs: 60_000,
  pushPullIntervalMs: 60_000,
  reconnectIntervalMs: 60_000,
  downNoticeIntervalMs: 5000,
  leaveLingerMs: 2000,
})

/** retransmitMult * ceil(log10(n + 1)): sends of one update by each member (memberlist). */
export function retransmitLimit(retransmitMult: number, members: number): number {
  return retransmitMult * Math.ceil(Math.log10(members + 1))
}

/** The push-pull interval scaled for large clusters (memberlist's pushPullScale). */
export function pushPullIntervalFor(intervalMs: number, members: number): number {
  const threshold = 32
  if (members <= threshold) return intervalMs
  return (Math.ceil(Math.log2(members) - Math.log2(threshold)) + 1) * intervalMs
}
