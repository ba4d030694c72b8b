/**
 * Member states, what the outside sees of a member, and the precedence rules that decide
 * whether an update about a member replaces what we know (research/crdt-swim.md §4.1).
 *
 * Rules, for two facts about the same actor id:
 * 1. A higher epoch wins, whatever the state or incarnation (a restarted process, or one that
 *    renewed its identity after being declared down). A lower epoch loses.
 * 2. Same epoch:
 *    - alive(i) replaces alive(j) and suspect(j) iff i > j;
 *    - suspect(i) replaces alive(j) iff i >= j, and suspect(j) iff i > j;
 *    - down(i) replaces alive(j) and suspect(j) iff i >= j (memberlist's rule: a "down" about an
 *      incarnation the member already refuted is stale and ignored; foca lets any down win);
 *    - left replaces alive, suspect and down (only the member itself says it left);
 *    - nothing replaces down except left; nothing replaces left.
 */

export type MemberState = 'alive' | 'suspect' | 'down' | 'left'

export const MEMBER_STATES: readonly MemberState[] = ['alive', 'suspect', 'down', 'left']

/** What a member looks like from the outside (`Swim.members()`). */
export interface MemberInfo {
  /** 16 bytes as 32 lowercase hex digits. */
  readonly actorId: string
  /** `host:port` of its gossip socket. */
  readonly addr: string
  readonly state: MemberState
  readonly incarnation: number
  /** Chosen at process start (e.g. start time in ms); a higher epoch is a newer life. */
  readonly epoch: number
  /** Smoothed round-trip time of our direct pings to it; null before the first ack (and self). */
  readonly rttMs: number | null
}

/** One fact about a member as gossip carries it. */
export interface MemberUpdate {
  readonly actorId: string
  readonly addr: string
  readonly epoch: number
  readonly incarnation: number
  readonly state: MemberState
  /** For `suspect`: the member whose probe failed (counts independent confirmations). */
  readonly accuser: string | null
}

/** Whether `update` replaces `current` (same actor id), by the rules above. */
export function supersedes(
  current: { readonly epoch: number; readonly incarnation: number; readonly state: MemberState },
  update: { readonly epoch: number; readonly incarnation: number; readonly state: MemberState },
): boolean {
  if (update.epoch !== current.epoch) return update.epoch > current.epoch
  const i = update.incarnation
  const j = current.incarnation
  if (current.state === 'left') return false
  if (current.state === 'down') return update.state === 'left'
  // current is alive or suspect
  switch (update.state) {
    case 'alive':
      return i > j
    case 'suspect':
      return current.state === 'alive' ? i >= j : i > j
    case 'down':
      return i >= j
    case 'left':
      return true
  }
}
