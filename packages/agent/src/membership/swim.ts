/**
 * SWIM membership with Lifeguard, as a state machine without I/O: time, randomness, datagrams
 * and stream exchanges come in through `SwimComponents`, packets come in through `receive()`
 * and `handlePushPull()`. See research/crdt-swim.md §4 for the protocol this follows.
 *
 * Behaviour, per instance:
 * 1. Probing: every probe interval (times LHM + 1) ping the next member of a shuffled
 *    round-robin list. Without an ack after the probe timeout (times LHM + 1), ask
 *    `indirectChecks` random alive members to ping it (ping-req); they relay its ack, or answer
 *    "nack" when it does not answer them either (after 80% of the requester's indirect window,
 *    so that the nack arrives in time). Without any ack by the end of the interval the target
 *    becomes suspect.
 * 2. Local health (LHM, 0..localHealthMax): -1 per probe that got an ack; on a failed probe
 *    +(expected nacks - nacks received), or +1 when no nacks were expected; +1 per suspicion of
 *    ourselves we had to refute.
 * 3. Suspicion: a timer that starts at max and shrinks with each independent confirmation
 *    towards min (`suspicion.ts`); when it fires the member is down. A member refutes a
 *    suspicion of itself with incarnation + 1, gossiped at once and carried by every packet it
 *    sends (every packet's header applies "sender alive at this incarnation"). Buddy system: a
 *    ping to a member we consider suspect carries that suspicion.
 * 4. Dissemination: every applied change is queued once per member and piggybacked on every
 *    datagram (pings, acks, gossip rounds to `gossipNodes` members every `gossipIntervalMs`)
 *    until sent retransmitMult * ceil(log10(n + 1)) times, least-sent first, never beyond
 *    `maxPacketBytes`.
 * 5. Push-pull: every scaled `pushPullIntervalMs` exchange the whole member table with a random
 *    alive member over a stream. A remote "down" or "suspect" becomes a local suspicion, never
 *    an instant down. Joining is a push-pull with every bootstrap address, retried with doubling,
 *    capped, jittered waits while none answers (and again whenever no other member is alive).
 *    A node that knows no live member and is contacted by one push-pulls with it at once (a
 *    restarted bootstrap node learns the cluster from the first member that probes it).
 * 6. Identity = (actor id, addr, epoch). A higher epoch replaces a member at once, whatever its
 *    state. A member told that it is down (or left) renews its identity (epoch + 1, incarnation
 *    0) and so rejoins: down members that still talk to us, or that others report alive, are
 *    told so (`downNoticeIntervalMs`), and every `reconnectIntervalMs` we push-pull with a random
 *    down member, which is how the two sides of a healed partition find each other.
 * 7. Down and left members are listed for `removeDownAfterMs`, then forgotten.
 *
 * Nothing here throws on bad input: malformed, oversized and foreign packets are counted in
 * `stats().packetsDropped` and dropped.
 */
import assert from 'node:assert/strict'
import { BroadcastQueue } from './broadcast-queue.ts'
import {
  decodePacket,
  encodePacket,
  encodeUpdate,
  isActorId,
  PacketBuilder,
  peekClusterId,
  updateBytes,
  type Body,
  type Sender,
} from './codec.ts'
import type { Clock, TimerId } from '../runtime/clock.ts'
import type { Random } from '../runtime/random.ts'
import {
  LAN_PROFILE,
  MIN_PACKET_BYTES,
  NACK_TIMEOUT_RATIO,
  PUSH_PULL_HEADER_RESERVE_BYTES,
  pushPullIntervalFor,
  RANDOM_PICK_TRIES_PER_MEMBER,
  REAP_INTERVAL_MAX_MS,
  REAP_INTERVAL_MIN_MS,
  retransmitLimit,
  RTT_SMOOTHING,
  type SwimOptions,
} from './defaults.ts'
import { supersedes, type MemberInfo, type MemberState, type MemberUpdate } from './member.ts'
import { shuffle } from '../runtime/random.ts'
import { suspicionBounds, suspicionTimeoutMs, type SuspicionBounds } from './suspicion.ts'

/** What a Swim instance needs from its owner. */
export interface SwimComponents {
  readonly clock: Clock
  readonly random: Random
  /** Sends one datagram to `host:port`. Must not throw; losing it is fine. */
  send(to: string, bytes: Uint8Array): void
  /**
   * Sends `state` to `to` over a stream and resolves with the peer's answer (the bytes its
   * `handlePushPull` returned); rejects if the peer cannot be reached or closes without one.
   * `signal` aborts when the exchange timed out or the instance stopped.
   */
  pushPull(to: string, state: Uint8Array, signal: AbortSignal): Promise<Uint8Array>
}

export interface SwimInit extends Partial<SwimOptions> {
  /** This node's actor id: 16 bytes as 32 lowercase hex digits. */
  readonly actorId: string
  /** This node's gossip address, `host:port`, as others reach it. */
  readonly addr: string
  /** Chosen at process start, larger than any earlier life's (e.g. start time in ms). */
  readonly epoch: number
  /** u16; packets of other clusters are dropped. */
  readonly clusterId: number
  /** `host:port` addresses to join through (own address ignored). */
  readonly bootstrap?: readonly string[]
  /** Defaults for every option not given: LAN_PROFILE unless said otherwise. */
  readonly profile?: SwimOptions
  /** Called after each change of a member (state, incarnation, epoch or address), self included. */
  readonly onChange?: (member: MemberInfo) => void
  /** Called when a down or left member is forgotten after `removeDownAfterMs`. */
  readonly onRemove?: (member: MemberInfo) => void
}

export interface PacketDrops {
  /** Not decodable: short, trailing bytes, bad state or type, bad UTF-8, epoch out of range. */
  readonly malformed: number
  /** Larger than `maxPacketBytes` (datagrams) or `pushPullBytesMax` (streams). */
  readonly oversized: number
  /** Another cluster id. */
  readonly wrongCluster: number
  /** Another codec version. */
  readonly version: number
  /** A ping meant for another actor (an address now used by someone else). */
  readonly notForUs: number
  /** Claims to come from our own actor id. */
  readonly self: number
  /** A ping-req beyond `relaysMax` indirect probes in flight. */
  readonly overload: number
}

export interface SwimStats {
  readonly members: Readonly<Record<MemberState, number>>
  readonly localHealth: number
  readonly epoch: number
  readonly incarnation: number
  readonly probesSent: number
  readonly probesFailed: number
  /** Ping-reqs sent (one per helper asked). */
  readonly indirectProbesSent: number
  readonly nacksSent: number
  readonly nacksReceived: number
  /** Members we made suspect because our own probe of them failed. */
  readonly suspicionsRaised: number
  /** Suspect members we then saw refute (alive at a higher incarnation or epoch). */
  readonly suspicionsRefuted: number
  /** Suspicions of ourselves that we refuted (each one a false positive somewhere). */
  readonly falseSuspicionRefutations: number
  /** Members our own suspicion timer declared down. */
  readonly membersDeclaredDown: number
  /** Times we renewed our identity (epoch + 1) because we were declared down. */
  readonly epochRenewals: number
  /** Sum of the LHM increases. */
  readonly localHealthRaises: number
  readonly downNoticesSent: number
  readonly pushPulls: number
  readonly pushPullsFailed: number
  readonly pushPullsServed: number
  readonly joinAttempts: number
  readonly packetsSent: number
  readonly bytesSent: number
  readonly packetsReceived: number
  readonly bytesReceived: number
  readonly packetsDropped: PacketDrops
  /** Updates about unknown members dropped because `membersMax` members are tracked. */
  readonly updatesDroppedMembersMax: number
  /** Updates about another process using our actor id with a higher epoch. */
  readonly identityConflicts: number
  readonly broadcastQueue: number
}

interface Suspicion {
  readonly bounds: SuspicionBounds
  readonly startedAtMs: number
  /** The accuser that started it, then each confirming one. */
  readonly accusers: Set<string>
  timer: TimerId
}

interface Member {
  readonly actorId: string
  addr: string
  epoch: number
  incarnation: number
  state: MemberState
  stateChangedAtMs: number
  rttMs: number | null
  suspicion: Suspicion | null
  downNoticeAtMs: number
}

interface Probe {
  readonly seq: number
  readonly target: Member
  readonly targetEpoch: number
  readonly sentAtMs: number
  acked: boolean
  expectedNacks: number
  nacks: number
  indirectTimer: TimerId | null
}

interface Relay {
  readonly requester: string
  readonly requesterSeq: number
  readonly nack: boolean
  readonly timer: TimerId
}

interface Exchange {
  readonly controller: AbortController
  readonly timer: TimerId
  done: boolean
}

const U32_MAX = 0xffff_ffff

type MutableCounters = { -readonly [K in keyof SwimStats]: SwimStats[K] }
type MutableDrops = { -readonly [K in keyof PacketDrops]: number }

export class Swim {
  private readonly clock: Clock
  private readonly random: Random
  private readonly components: SwimComponents
  private readonly opts: SwimOptions
  private readonly clusterId: number
  private readonly bootstrap: readonly string[]
  private readonly onChange: ((member: MemberInfo) => void) | undefined
  private readonly onRemove: ((member: MemberInfo) => void) | undefined

  private readonly self: Member
  private readonly table = new Map<string, Member>()
  /** Every member but self, for random choices. */
  private readonly others: Member[] = []
  private readonly counts: Record<MemberState, number> = { alive: 0, suspect: 0, down: 0, left: 0 }
  private readonly queue = new BroadcastQueue()

  private probeOrder: string[] = []
  private probeIndex = 0
  private probe: Probe | null = null
  private readonly relays = new Map<number, Relay>()
  private readonly exchanges = new Set<Exchange>()
  private seq = 0
  private lhm = 0

  private started = false
  private stopped = false
  private joining = false
  /** A join-like exchange with the first member that contacted us while we knew nobody. */
  private contactExchange = false
  private joinAttempt = 0

  private probeTimer: TimerId | null = null
  private gossipTimer: TimerId | null = null
  private pushPullTimer: TimerId | null = null
  private reconnectTimer: TimerId | null = null
  private reapTimer: TimerId | null = null
  private joinTimer: TimerId | null = null
  private leaveTimer: TimerId | null = null

  private readonly counters: MutableCounters
  private readonly drops: MutableDrops = {
    malformed: 0,
    oversized: 0,
    wrongCluster: 0,
    version: 0,
    notForUs: 0,
    self: 0,
    overload: 0,
  }

  constructor(components: SwimComponents, init: SwimInit) {
    assert.ok(isActorId(init.actorId), `actorId must be 32 lowercase hex digits: ${init.actorId}`)
    assert.ok(Number.isSafeInteger(init.epoch) && init.epoch >= 0, `bad epoch ${init.epoch}`)
    assert.ok(
      Number.isInteger(init.clusterId) && init.clusterId >= 0 && init.clusterId <= 0xffff,
      `clusterId must be a u16: ${init.clusterId}`,
    )
    const {
      actorId,
      addr,
      epoch,
      clusterId,
      bootstrap,
      profile,
      onChange,
      onRemove,
      ...overrides
    } = init
    this.opts = Object.freeze({ ...(profile ?? LAN_PROFILE), ...overrides })
    assert.ok(this.opts.maxPacketBytes >= MIN_PACKET_BYTES, `maxPacketBytes < ${MIN_PACKET_BYTES}`)
    assert.ok(this.opts.probeIntervalMs > 0 && this.opts.probeTimeoutMs > 0, 'bad probe timing')
    assert.ok(this.opts.probeTimeoutMs < this.opts.probeIntervalMs, 'probe timeout >= interval')
    assert.ok(this.opts.localHealthMax >= 0, 'bad localHealthMax')
    this.components = components
    this.clock = components.clock
    this.random = components.random
    this.clusterId = clusterId
    this.bootstrap = (bootstrap ?? []).filter((a) => a !== addr)
    this.onChange = onChange
    this.onRemove = onRemove
    this.self = {
      actorId,
      addr,
      epoch,
      incarnation: 0,
      state: 'alive',
      stateChangedAtMs: this.clock.now(),
      rttMs: null,
      suspicion: null,
      downNoticeAtMs: -Infinity,
    }
    this.table.set(actorId, this.self)
    this.counts.alive = 1
    this.counters = {
      members: this.counts,
      localHealth: 0,
      epoch,
      incarnation: 0,
      probesSent: 0,
      probesFailed: 0,
      indirectProbesSent: 0,
      nacksSent: 0,
      nacksReceived: 0,
      suspicionsRaised: 0,
      suspicionsRefuted: 0,
      falseSuspicionRefutations: 0,
      membersDeclaredDown: 0,
      epochRenewals: 0,
      localHealthRaises: 0,
      downNoticesSent: 0,
      pushPulls: 0,
      pushPullsFailed: 0,
      pushPullsServed: 0,
      joinAttempts: 0,
      packetsSent: 0,
      bytesSent: 0,
      packetsReceived: 0,
      bytesReceived: 0,
      packetsDropped: this.drops,
      updatesDroppedMembersMax: 0,
      identityConflicts: 0,
      broadcastQueue: 0,
    }
  }

  // ---------------------------------------------------------------------------- lifecycle

  /** Starts probing, gossip and push-pull, and joins through the bootstrap addresses. */
  start(): void {
    assert.ok(!this.started, 'start() called twice')
    this.started = true
    const o = this.opts
    // Random initial offsets, so that nodes started together do not tick together.
    this.probeTimer = this.clock.setTimer(this.random.float() * o.probeIntervalMs, () => {
      this.probeTick()
    })
    if (o.gossipIntervalMs > 0) {
      this.gossipTimer = this.clock.setTimer(this.random.float() * o.gossipIntervalMs, () => {
        this.gossipTick()
      })
    }
    if (o.pushPullIntervalMs > 0) {
      this.pushPullTimer = this.clock.setTimer(this.random.float() * o.pushPullIntervalMs, () => {
        this.pushPullTick()
      })
    }
    if (o.reconnectIntervalMs > 0) {
      this.reconnectTimer = this.clock.setTimer(this.random.float() * o.reconnectIntervalMs, () => {
        this.reconnectTick()
      })
    }
    this.reapTimer = this.clock.setTimer(this.reapIntervalMs(), () => {
      this.reapTick()
    })
    this.startJoin()
  }

  /** Stops every timer and exchange at once (no goodbye; see `leave()`). Idempotent. */
  stop(): void {
    if (this.stopped) return
    this.stopped = true
    for (const id of [
      this.probeTimer,
      this.gossipTimer,
      this.pushPullTimer,
      this.reconnectTimer,
      this.reapTimer,
      this.joinTimer,
      this.leaveTimer,
    ]) {
      if (id !== null) this.clock.clearTimer(id)
    }
    this.dropProbe()
    for (const relay of this.relays.values()) this.clock.clearTimer(relay.timer)
    this.relays.clear()
    for (const m of this.table.values()) this.clearSuspicion(m)
    for (const ex of this.exchanges) {
      ex.done = true
      this.clock.clearTimer(ex.timer)
      ex.controller.abort()
    }
    this.exchanges.clear()
  }

  /**
   * Graceful leave: marks self `left` (incarnation + 1), gossips it at once and keeps gossiping
   * and answering for `leaveLingerMs`, then stops. Resolves when stopped. From here on every
   * datagram carries "I left" first (see `sendPacket`), not only the first few: its header
   * says "sender alive at the left incarnation", and a member that missed the leave gossip
   * would otherwise take a late ack for a sign of life.
   */
  leave(): Promise<void> {
    if (this.stopped) return Promise.resolve()
    if (this.self.state !== 'left') {
      if (this.self.incarnation < U32_MAX) this.self.incarnation++
      this.setState(this.self, 'left')
      this.queue.remove(this.self.actorId) // an older fact about us; sendPacket adds the new one
      this.emitChange(this.self)
      if (this.probeTimer !== null) this.clock.clearTimer(this.probeTimer)
      this.probeTimer = null
      this.dropProbe()
      this.gossipRound()
    }
    return new Promise((resolve) => {
      if (this.leaveTimer !== null) this.clock.clearTimer(this.leaveTimer)
      this.leaveTimer = this.clock.setTimer(this.opts.leaveLingerMs, () => {
        this.leaveTimer = null
        this.stop()
        resolve()
      })
    })
  }

  // ---------------------------------------------------------------------------- observation

  /** Every known member, self included, sorted by actor id. */
  members(): MemberInfo[] {
    return [...this.table.values()]
      .map((m) => this.info(m))
      .sort((a, b) => (a.actorId < b.actorId ? -1 : a.actorId > b.actorId ? 1 : 0))
  }

  /** One member by actor id, or null. */
  member(actorId: string): MemberInfo | null {
    const m = this.table.get(actorId)
    return m === undefined ? null : this.info(m)
  }

  /** This node's identity and state. */
  identity(): MemberInfo {
    return this.info(this.self)
  }

  /** Members by state, self included (cheap: no copy of the table). */
  memberCounts(): Readonly<Record<MemberState, number>> {
    return { ...this.counts }
  }

  /** The local health multiplier (0 = healthy). */
  localHealth(): number {
    return this.lhm
  }

  /** The options in effect. */
  options(): SwimOptions {
    return this.opts
  }

  /** Counters and gauges; a fresh copy on each call. */
  stats(): SwimStats {
    return {
      ...this.counters,
      members: { ...this.counts },
      localHealth: this.lhm,
      epoch: this.self.epoch,
      incarnation: this.self.incarnation,
      packetsDropped: { ...this.drops },
      broadcastQueue: this.queue.size,
    }
  }

  // ---------------------------------------------------------------------------- inbound

  /** One datagram from `from` (`host:port`). Never throws on bad input. */
  receive(from: string, bytes: Uint8Array): void {
    if (this.stopped || !this.started) return
    this.counters.packetsReceived++
    this.counters.bytesReceived += bytes.length
    if (bytes.length > this.opts.maxPacketBytes) {
      this.drops.oversized++
      return
    }
    const cluster = peekClusterId(bytes)
    if (cluster !== null && cluster !== this.clusterId) {
      this.drops.wrongCluster++
      return
    }
    const decoded = decodePacket(bytes)
    if (!decoded.ok) {
      this.drops[decoded.reason]++
      return
    }
    const { sender, body, updates } = decoded.packet
    if (body.type === 'push-pull' || body.type === 'push-pull-reply') {
      this.drops.malformed++ // stream messages have no business in a datagram
      return
    }
    if (sender.actorId === this.self.actorId) {
      this.drops.self++
      this.noteSelfClaim(sender.epoch)
      return
    }
    const alone = this.liveOthers() === 0
    // Updates first, so that a refutation they cause is in the header of our answer.
    this.applyHeader(sender, updates)
    for (const u of updates) this.applyUpdate(u, sender.actorId)
    this.handleBody(from, sender, body)
    if (alone && this.liveOthers() > 0 && !this.contactExchange) {
      // We knew nobody alive (a restarted node with no bootstrap, or whose bootstrap is gone)
      // and someone contacted us: take the whole table from it instead of learning it one
      // probe at a time.
      this.contactExchange = true
      this.exchange(sender.addr, true, () => {
        this.contactExchange = false
      })
    }
  }

  /**
   * A push-pull request that arrived over a stream from `from`: merges the peer's table and
   * returns ours for the owner to send back, or null to close the stream without an answer
   * (malformed, oversized, foreign or stopped).
   */
  handlePushPull(from: string, bytes: Uint8Array): Uint8Array | null {
    if (this.stopped || !this.started) return null
    if (bytes.length > this.opts.pushPullBytesMax) {
      this.drops.oversized++
      return null
    }
    const cluster = peekClusterId(bytes)
    if (cluster !== null && cluster !== this.clusterId) {
      this.drops.wrongCluster++
      return null
    }
    const decoded = decodePacket(bytes)
    if (!decoded.ok) {
      this.drops[decoded.reason]++
      return null
    }
    const { sender, body } = decoded.packet
    if (body.type !== 'push-pull') {
      this.drops.malformed++
      return null
    }
    if (sender.actorId === this.self.actorId) {
      this.drops.self++
      this.noteSelfClaim(sender.epoch)
      return null
    }
    this.counters.pushPullsServed++
    this.mergeRemoteState(sender, body.members)
    return this.encodeState('push-pull-reply', false)
  }

  // ---------------------------------------------------------------------------- applying facts

  /**
   * Every message says "sender alive at its incarnation", except one whose records say the
   * sender left at that incarnation or later (a leaver's packets and push-pull table): applying
   * the header first would make it alive at its left incarnation, then left (the flapping
   * `patina dev` logged when its agents stopped together). The left record is applied with the
   * others, and for an unknown sender adds nothing.
   */
  private applyHeader(sender: Sender, records: readonly MemberUpdate[]): void {
    const leaving = records.some(
      (r) =>
        r.actorId === sender.actorId &&
        r.epoch === sender.epoch &&
        r.state === 'left' &&
        r.incarnation >= sender.incarnation,
    )
    if (leaving) return
    this.applyUpdate(
      {
        actorId: sender.actorId,
        addr: sender.addr,
        epoch: sender.epoch,
        incarnation: sender.incarnation,
        state: 'alive',
        accuser: null,
      },
      sender.actorId,
    )
  }

  /** Applies one fact from gossip (or a header) by the precedence rules. */
  private applyUpdate(u: MemberUpdate, via: string): void {
    if (u.actorId === this.self.actorId) {
      this.applySelfUpdate(u)
      return
    }
    const m = this.table.get(u.actorId)
    if (m === undefined) {
      // Only a live member is worth learning about; memberlist ignores news of unknown deaths.
      if (u.state === 'alive' || u.state === 'suspect') this.addMember(u)
      return
    }
    if (u.epoch === m.epoch && u.addr !== m.addr) return // two addresses for one life: ignore
    if (!supersedes(m, u)) {
      if (u.epoch === m.epoch) {
        if (m.state === 'down' && (u.state === 'alive' || u.state === 'suspect')) {
          // It (or someone on its behalf) still thinks it is alive: tell it, so it renews.
          this.noticeDown(m)
        } else if (
          m.state === 'suspect' &&
          u.state === 'suspect' &&
          u.incarnation === m.incarnation &&
          u.accuser !== null
        ) {
          this.confirmSuspicion(m, u)
        }
      }
      return
    }
    const wasSuspect = m.state === 'suspect'
    const newLife = u.epoch !== m.epoch
    m.addr = u.addr
    m.epoch = u.epoch
    m.incarnation = u.incarnation
    if (newLife) {
      m.rttMs = null
      m.downNoticeAtMs = -Infinity
    }
    if (wasSuspect && (u.state === 'alive' || newLife)) this.counters.suspicionsRefuted++
    this.clearSuspicion(m)
    this.setState(m, u.state)
    if (u.state === 'suspect') this.startSuspicion(m, u.accuser ?? via)
    this.enqueue(m, u.state === 'suspect' ? (u.accuser ?? via) : null)
    this.emitChange(m)
  }

  /** A fact about ourselves: refute suspicions, renew the identity if declared down or left. */
  private applySelfUpdate(u: MemberUpdate): void {
    const me = this.self
    if (me.state === 'left' || u.epoch < me.epoch) return
    if (u.epoch > me.epoch) {
      this.noteSelfClaim(u.epoch)
      return
    }
    switch (u.state) {
      case 'alive':
        if (u.incarnation > me.incarnation) this.refute(u.incarnation)
        return
      case 'suspect':
        if (u.incarnation >= me.incarnation) {
          this.counters.falseSuspicionRefutations++
          this.adjustHealth(1)
          this.refute(u.incarnation)
        }
        return
      case 'down':
      case 'left':
        this.renewIdentity()
        return
    }
  }

  private noteSelfClaim(epoch: number): void {
    // Another process with our actor id and a newer life: an operator error (two agents with
    // one identity). Counted; fighting it with ever higher epochs would only flap.
    if (epoch > this.self.epoch) this.counters.identityConflicts++
  }

  private refute(incarnation: number): void {
    if (incarnation >= U32_MAX) {
      this.renewIdentity()
      return
    }
    this.self.incarnation = incarnation + 1
    this.enqueue(this.self, null)
    this.emitChange(this.self)
  }

  /** A new life: epoch + 1, incarnation 0. Everyone replaces our old entry at once. */
  private renewIdentity(): void {
    this.self.epoch++
    this.self.incarnation = 0
    this.counters.epochRenewals++
    this.enqueue(this.self, null)
    this.emitChange(this.self)
  }

  private addMember(u: MemberUpdate): void {
    if (this.table.size >= this.opts.membersMax) {
      this.counters.updatesDroppedMembersMax++
      return
    }
    const m: Member = {
      actorId: u.actorId,
      addr: u.addr,
      epoch: u.epoch,
      incarnation: u.incarnation,
      state: u.state,
      stateChangedAtMs: this.clock.now(),
      rttMs: null,
      suspicion: null,
      downNoticeAtMs: -Infinity,
    }
    this.table.set(m.actorId, m)
    this.others.push(m)
    this.counts[m.state]++
    // Insert at a random place in the probe order (memberlist does the same).
    this.probeOrder.push(m.actorId)
    const j = this.random.int(this.probeOrder.length)
    const last = this.probeOrder.length - 1
    ;[this.probeOrder[j], this.probeOrder[last]] = [
      this.probeOrder[last] as string,
      this.probeOrder[j] as string,
    ]
    if (m.state === 'suspect') this.startSuspicion(m, u.accuser ?? u.actorId)
    this.enqueue(m, u.accuser)
    this.emitChange(m)
  }

  private forget(m: Member): void {
    this.clearSuspicion(m)
    this.table.delete(m.actorId)
    const i = this.others.indexOf(m)
    if (i >= 0) {
      this.others[i] = this.others[this.others.length - 1] as Member
      this.others.pop()
    }
    this.counts[m.state]--
    this.queue.remove(m.actorId)
    this.onRemove?.(this.info(m))
  }

  private setState(m: Member, state: MemberState): void {
    if (m.state === state) return
    this.counts[m.state]--
    this.counts[state]++
    m.state = state
    m.stateChangedAtMs = this.clock.now()
  }

  private mergeRemoteState(sender: Sender, records: readonly MemberUpdate[]): void {
    this.applyHeader(sender, records)
    for (const r of records) {
      if (r.actorId === this.self.actorId || r.state === 'alive' || r.state === 'left') {
        this.applyUpdate(r, sender.actorId)
      } else {
        // A remote view's down or suspect is only a suspicion here, accused by the peer
        // (memberlist's mergeState): we check for ourselves before declaring anyone down.
        this.applyUpdate({ ...r, state: 'suspect', accuser: sender.actorId }, sender.actorId)
      }
    }
  }

  // ---------------------------------------------------------------------------- suspicion

  private startSuspicion(m: Member, accuser: string): void {
    const o = this.opts
    const bounds = suspicionBounds(
      this.table.size,
      o.suspicionMult,
      o.suspicionMaxTimeoutMult,
      o.probeIntervalMs,
    )
    const s: Suspicion = {
      bounds,
      startedAtMs: this.clock.now(),
      accusers: new Set([accuser]),
      timer: this.clock.setTimer(suspicionTimeoutMs(bounds, 0), () => {
        this.suspicionExpired(m, s)
      }),
    }
    m.suspicion = s
  }

  private confirmSuspicion(m: Member, u: MemberUpdate): void {
    const s = m.suspicion
    if (s === null || u.accuser === null) return
    const confirmations = s.accusers.size - 1
    if (confirmations >= s.bounds.k || s.accusers.has(u.accuser)) return
    s.accusers.add(u.accuser)
    this.clock.clearTimer(s.timer)
    const remaining =
      suspicionTimeoutMs(s.bounds, confirmations + 1) - (this.clock.now() - s.startedAtMs)
    s.timer = this.clock.setTimer(Math.max(0, remaining), () => {
      this.suspicionExpired(m, s)
    })
    // Pass the independent confirmation on, so that others' timers shrink too.
    this.enqueue(m, u.accuser)
  }

  private suspicionExpired(m: Member, s: Suspicion): void {
    if (m.suspicion !== s || m.state !== 'suspect' || this.stopped) return
    m.suspicion = null
    this.counters.membersDeclaredDown++
    this.setState(m, 'down')
    this.enqueue(m, null)
    this.emitChange(m)
  }

  private clearSuspicion(m: Member): void {
    if (m.suspicion === null) return
    this.clock.clearTimer(m.suspicion.timer)
    m.suspicion = null
  }

  // ---------------------------------------------------------------------------- probing

  private probeTick(): void {
    this.probeTimer = null
    if (this.stopped || this.self.state === 'left') return
    if (this.probe !== null) this.finishProbe(this.probe)
    if (!this.joining && this.bootstrap.length > 0 && this.liveOthers() === 0) this.startJoin()
    const scale = this.lhm + 1
    const target = this.nextProbeTarget()
    if (target !== null) this.startProbe(target, scale)
    this.probeTimer = this.clock.setTimer(this.opts.probeIntervalMs * scale, () => {
      this.probeTick()
    })
  }

  private nextProbeTarget(): Member | null {
    for (let tries = 0; tries <= this.probeOrder.length; tries++) {
      if (this.probeIndex >= this.probeOrder.length) {
        // Drop forgotten members, then reshuffle for the next round.
        this.probeOrder = shuffle(
          this.probeOrder.filter((id) => this.table.has(id)),
          this.random,
        )
        this.probeIndex = 0
        if (this.probeOrder.length === 0) return null
      }
      const m = this.table.get(this.probeOrder[this.probeIndex++] as string)
      if (m !== undefined && (m.state === 'alive' || m.state === 'suspect')) return m
    }
    return null
  }

  private startProbe(target: Member, scale: number): void {
    const seq = this.nextSeq()
    const probe: Probe = {
      seq,
      target,
      targetEpoch: target.epoch,
      sentAtMs: this.clock.now(),
      acked: false,
      expectedNacks: 0,
      nacks: 0,
      indirectTimer: null,
    }
    this.probe = probe
    this.counters.probesSent++
    this.sendPacket(target.addr, { type: 'ping', seq, target: target.actorId }, this.buddy(target))
    probe.indirectTimer = this.clock.setTimer(this.opts.probeTimeoutMs * scale, () => {
      probe.indirectTimer = null
      this.indirectProbe(probe)
    })
  }

  /** The suspicion to tack on a ping to `target` (buddy system), or null. */
  private buddy(target: Member): MemberUpdate | null {
    if (!this.opts.buddySystem || target.state !== 'suspect') return null
    return this.record(target, this.self.actorId)
  }

  private indirectProbe(probe: Probe): void {
    if (probe.acked || this.probe !== probe || this.stopped) return
    const target = probe.target
    const helpers = this.randomMembers(
      this.opts.indirectChecks,
      (m) => m.state === 'alive' && m !== target,
    )
    probe.expectedNacks = this.opts.nacks ? helpers.length : 0
    for (const helper of helpers) {
      this.counters.indirectProbesSent++
      this.sendPacket(helper.addr, {
        type: 'ping-req',
        seq: probe.seq,
        target: target.actorId,
        targetAddr: target.addr,
        nack: this.opts.nacks,
      })
    }
  }

  private dropProbe(): void {
    const probe = this.probe
    if (probe === null) return
    if (probe.indirectTimer !== null) this.clock.clearTimer(probe.indirectTimer)
    this.probe = null
  }

  private finishProbe(probe: Probe): void {
    this.probe = null
    if (probe.indirectTimer !== null) this.clock.clearTimer(probe.indirectTimer)
    if (probe.acked) return
    this.counters.probesFailed++
    // Lifeguard: nacks we expected and did not get say that we are the slow one.
    this.adjustHealth(probe.expectedNacks > 0 ? probe.expectedNacks - probe.nacks : 1)
    const m = probe.target
    if (this.table.get(m.actorId) !== m || m.epoch !== probe.targetEpoch) return
    if (m.state !== 'alive' && m.state !== 'suspect') return
    if (m.state === 'alive') this.counters.suspicionsRaised++
    this.applyUpdate(this.record(m, this.self.actorId, 'suspect'), this.self.actorId)
  }

  private handleBody(from: string, sender: Sender, body: Body): void {
    switch (body.type) {
      case 'ping':
        if (body.target !== this.self.actorId) {
          this.drops.notForUs++
          return
        }
        this.sendPacket(from, { type: 'ack', seq: body.seq })
        return
      case 'ack':
        this.handleAck(sender, body.seq)
        return
      case 'nack': {
        const probe = this.probe
        if (probe?.seq === body.seq && probe.nacks < probe.expectedNacks) {
          probe.nacks++
          this.counters.nacksReceived++
        }
        return
      }
      case 'ping-req':
        this.handlePingReq(from, body.seq, body.target, body.targetAddr, body.nack)
        return
      case 'gossip':
      case 'push-pull':
      case 'push-pull-reply':
        return
    }
  }

  private handleAck(sender: Sender, seq: number): void {
    const probe = this.probe
    if (probe?.seq === seq) {
      if (probe.acked) return
      probe.acked = true
      if (probe.indirectTimer !== null) this.clock.clearTimer(probe.indirectTimer)
      probe.indirectTimer = null
      if (sender.actorId === probe.target.actorId) {
        const sample = this.clock.now() - probe.sentAtMs
        const t = probe.target
        t.rttMs = t.rttMs === null ? sample : t.rttMs + RTT_SMOOTHING * (sample - t.rttMs)
      }
      this.adjustHealth(-1)
      return
    }
    const relay = this.relays.get(seq)
    if (relay !== undefined) {
      this.relays.delete(seq)
      this.clock.clearTimer(relay.timer)
      this.sendPacket(relay.requester, { type: 'ack', seq: relay.requesterSeq })
    }
  }

  private handlePingReq(
    from: string,
    requesterSeq: number,
    target: string,
    targetAddr: string,
    nack: boolean,
  ): void {
    if (this.relays.size >= this.opts.relaysMax) {
      this.drops.overload++
      return
    }
    const seq = this.nextSeq()
    const relay: Relay = {
      requester: from,
      requesterSeq,
      nack,
      timer: this.clock.setTimer(this.nackTimeoutMs(), () => {
        if (this.relays.get(seq) !== relay) return
        this.relays.delete(seq)
        if (relay.nack && !this.stopped) {
          this.counters.nacksSent++
          this.sendPacket(relay.requester, { type: 'nack', seq: relay.requesterSeq })
        }
      }),
    }
    this.relays.set(seq, relay)
    const known = this.table.get(target)
    this.sendPacket(
      targetAddr,
      { type: 'ping', seq, target },
      known === undefined ? null : this.buddy(known),
    )
  }

  // ---------------------------------------------------------------------------- gossip

  private gossipTick(): void {
    this.gossipTimer = null
    if (this.stopped) return
    this.gossipRound()
    this.gossipTimer = this.clock.setTimer(this.opts.gossipIntervalMs, () => {
      this.gossipTick()
    })
  }

  private gossipRound(): void {
    // A leaver gossips through its linger time: each of its packets says it left.
    const leaving = this.self.state === 'left'
    if (this.queue.size === 0 && !leaving) return
    const now = this.clock.now()
    const targets = this.randomMembers(this.opts.gossipNodes, (m) => {
      if (m.state === 'alive' || m.state === 'suspect') return true
      return now - m.stateChangedAtMs <= this.opts.gossipToTheDeadMs
    })
    for (const t of targets) {
      if (this.queue.size === 0 && !leaving) return
      this.sendPacket(t.addr, { type: 'gossip' }, null, true)
    }
  }

  private noticeDown(m: Member): void {
    const now = this.clock.now()
    if (now - m.downNoticeAtMs < this.opts.downNoticeIntervalMs) return
    m.downNoticeAtMs = now
    this.counters.downNoticesSent++
    this.sendPacket(m.addr, { type: 'gossip' }, this.record(m, null))
  }

  // ---------------------------------------------------------------------------- push-pull, join

  private pushPullTick(): void {
    this.pushPullTimer = null
    if (this.stopped) return
    const [peer] = this.randomMembers(1, (m) => m.state === 'alive')
    if (peer !== undefined && this.self.state !== 'left') this.exchange(peer.addr, false, null)
    const interval = pushPullIntervalFor(this.opts.pushPullIntervalMs, this.table.size)
    this.pushPullTimer = this.clock.setTimer(interval, () => {
      this.pushPullTick()
    })
  }

  private reconnectTick(): void {
    this.reconnectTimer = null
    if (this.stopped) return
    const [peer] = this.randomMembers(1, (m) => m.state === 'down')
    if (peer !== undefined && this.self.state !== 'left') this.exchange(peer.addr, false, null)
    this.reconnectTimer = this.clock.setTimer(this.opts.reconnectIntervalMs, () => {
      this.reconnectTick()
    })
  }

  private startJoin(): void {
    if (this.joining || this.bootstrap.length === 0 || this.stopped) return
    this.joining = true
    this.joinAttempt = 0
    this.joinRound()
  }

  private joinRound(): void {
    this.joinTimer = null
    if (this.stopped) return
    if (this.joinAttempt > 0 && this.liveOthers() > 0) {
      // Someone found us while we waited: we are in.
      this.joining = false
      return
    }
    this.counters.joinAttempts++
    let pending = this.bootstrap.length
    let joined = false
    for (const addr of this.bootstrap) {
      this.exchange(addr, true, (ok) => {
        joined ||= ok
        if (--pending > 0 || this.stopped) return
        if (joined) {
          this.joining = false
          return
        }
        const o = this.opts
        const capped = Math.min(o.joinRetryMaxMs, o.joinRetryBaseMs * 2 ** this.joinAttempt)
        const wait = capped * (1 - o.joinRetryJitter * this.random.float())
        this.joinAttempt++
        this.joinTimer = this.clock.setTimer(wait, () => {
          this.joinRound()
        })
      })
    }
  }

  /**
   * One full-state exchange with `addr`; `done(ok)` runs exactly once (unless stopped first):
   * on the merged answer, on failure, or on timeout.
   */
  private exchange(addr: string, join: boolean, done: ((ok: boolean) => void) | null): void {
    this.counters.pushPulls++
    const state = this.encodeState('push-pull', join)
    const controller = new AbortController()
    const ex: Exchange = {
      controller,
      done: false,
      timer: this.clock.setTimer(this.opts.pushPullTimeoutMs, () => {
        finish(null)
        controller.abort()
      }),
    }
    this.exchanges.add(ex)
    const finish = (reply: Uint8Array | null): void => {
      if (ex.done) return
      ex.done = true
      this.exchanges.delete(ex)
      this.clock.clearTimer(ex.timer)
      const ok = reply !== null && this.mergeReply(reply)
      if (!ok) this.counters.pushPullsFailed++
      done?.(ok)
    }
    let pending: Promise<Uint8Array>
    try {
      pending = this.components.pushPull(addr, state, controller.signal)
    } catch {
      // The owner's pushPull threw instead of rejecting: the same as a failed exchange.
      finish(null)
      return
    }
    pending.then(
      (reply) => {
        finish(reply)
      },
      () => {
        finish(null)
      },
    )
  }

  private mergeReply(bytes: Uint8Array): boolean {
    if (this.stopped) return false
    if (bytes.length > this.opts.pushPullBytesMax) {
      this.drops.oversized++
      return false
    }
    const cluster = peekClusterId(bytes)
    if (cluster !== null && cluster !== this.clusterId) {
      this.drops.wrongCluster++
      return false
    }
    const decoded = decodePacket(bytes)
    if (!decoded.ok) {
      this.drops[decoded.reason]++
      return false
    }
    const { sender, body } = decoded.packet
    if (body.type !== 'push-pull-reply') {
      this.drops.malformed++
      return false
    }
    if (sender.actorId === this.self.actorId) {
      this.drops.self++
      return false
    }
    this.mergeRemoteState(sender, body.members)
    return true
  }

  /** Our member table as a push-pull message, within `pushPullBytesMax` (live members first). */
  private encodeState(type: 'push-pull' | 'push-pull-reply', join: boolean): Uint8Array {
    const order: MemberState[] = ['alive', 'suspect', 'down', 'left']
    // Header, body flags and counts; generous for the sender's address.
    let budget = this.opts.pushPullBytesMax - PUSH_PULL_HEADER_RESERVE_BYTES
    const records: MemberUpdate[] = []
    for (const state of order) {
      for (const m of this.table.values()) {
        if (m.state !== state) continue
        const r = this.record(m, m.suspicion ? firstOf(m.suspicion.accusers) : null)
        const size = updateBytes(r)
        if (size > budget) continue
        budget -= size
        records.push(r)
      }
    }
    return encodePacket({
      clusterId: this.clusterId,
      sender: this.sender(),
      body: type === 'push-pull' ? { type, join, members: records } : { type, members: records },
      updates: [],
    })
  }

  // ---------------------------------------------------------------------------- reaping

  private reapIntervalMs(): number {
    return Math.max(
      REAP_INTERVAL_MIN_MS,
      Math.min(this.opts.removeDownAfterMs, REAP_INTERVAL_MAX_MS),
    )
  }

  private reapTick(): void {
    this.reapTimer = null
    if (this.stopped) return
    const now = this.clock.now()
    for (const m of [...this.others]) {
      if (m.state !== 'down' && m.state !== 'left') continue
      if (now - m.stateChangedAtMs >= this.opts.removeDownAfterMs) this.forget(m)
    }
    this.reapTimer = this.clock.setTimer(this.reapIntervalMs(), () => {
      this.reapTick()
    })
  }

  // ---------------------------------------------------------------------------- sending

  private sender(): Sender {
    const s = this.self
    return { actorId: s.actorId, addr: s.addr, epoch: s.epoch, incarnation: s.incarnation }
  }

  /**
   * Sends one datagram with `body`, `forced` first among the piggybacked updates (after our own
   * left record once we left: see `leave()`), then the least-sent queued updates that fit. With
   * `onlyWithUpdates`, sends nothing if none fit.
   */
  private sendPacket(
    to: string,
    body: Body,
    forced: MemberUpdate | null = null,
    onlyWithUpdates = false,
  ): void {
    const builder = new PacketBuilder(this.opts.maxPacketBytes, this.clusterId, this.sender(), body)
    if (this.self.state === 'left') builder.tryAdd(encodeUpdate(this.record(this.self, null)))
    if (forced !== null) builder.tryAdd(encodeUpdate(forced))
    this.queue.fill(builder, this.retransmitLimit(), forced?.actorId ?? null)
    const bytes = builder.finish()
    if (onlyWithUpdates && builder.updates() === 0) return
    this.counters.packetsSent++
    this.counters.bytesSent += bytes.length
    this.components.send(to, bytes)
  }

  /** How long a helper waits for the target's ack before it nacks (and stops relaying). */
  private nackTimeoutMs(): number {
    const o = this.opts
    return NACK_TIMEOUT_RATIO * (o.probeIntervalMs - o.probeTimeoutMs)
  }

  private retransmitLimit(): number {
    return retransmitLimit(this.opts.retransmitMult, this.table.size)
  }

  /** Queues the current fact about `m` for piggybacking. */
  private enqueue(m: Member, accuser: string | null): void {
    if (this.opts.retransmitMult <= 0) return
    this.queue.enqueue(m.actorId, encodeUpdate(this.record(m, accuser)))
  }

  private record(m: Member, accuser: string | null, state: MemberState = m.state): MemberUpdate {
    return {
      actorId: m.actorId,
      addr: m.addr,
      epoch: m.epoch,
      incarnation: m.incarnation,
      state,
      accuser: state === 'suspect' ? (accuser ?? this.self.actorId) : null,
    }
  }

  // ---------------------------------------------------------------------------- helpers

  private info(m: Member): MemberInfo {
    return {
      actorId: m.actorId,
      addr: m.addr,
      state: m.state,
      incarnation: m.incarnation,
      epoch: m.epoch,
      rttMs: m.rttMs,
    }
  }

  private emitChange(m: Member): void {
    this.onChange?.(this.info(m))
  }

  private adjustHealth(delta: number): void {
    const next = Math.min(this.opts.localHealthMax, Math.max(0, this.lhm + delta))
    if (next > this.lhm) this.counters.localHealthRaises += next - this.lhm
    this.lhm = next
  }

  private liveOthers(): number {
    const selfLive = this.self.state === 'alive' ? 1 : 0
    return this.counts.alive + this.counts.suspect - selfLive
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0
    return this.seq
  }

  /** Up to k distinct random members (never self) that pass `eligible` (memberlist's way). */
  private randomMembers(k: number, eligible: (m: Member) => boolean): Member[] {
    const n = this.others.length
    const out: Member[] = []
    if (k <= 0 || n === 0) return out
    if (n < k * RANDOM_PICK_TRIES_PER_MEMBER) {
      for (const m of shuffle([...this.others], this.random)) {
        if (out.length >= k) break
        if (eligible(m)) out.push(m)
      }
      return out
    }
    for (let i = 0; i < RANDOM_PICK_TRIES_PER_MEMBER * n && out.length < k; i++) {
      const m = this.others[this.random.int(n)] as Member
      if (eligible(m) && !out.includes(m)) out.push(m)
    }
    return out
  }
}

function firstOf(set: ReadonlySet<string>): string | null {
  for (const v of set) return v
  return null
}
