/**
 * Push dissemination of encoded change messages.
 *
 * - Small cluster (at most `directMax` live peers): a local change goes at once to every peer,
 *   and receivers do not pass it on. One message per peer, one hop: the least bytes and the
 *   lowest latency there is.
 * - Larger cluster: a local change goes to `fanout` random live peers that have not had it,
 *   again after 1, 2, 3... × `retransmitIntervalMs`, until it has been sent `maxTransmissions`
 *   times or every peer has it; a receiver that finds it new passes it on once, to `fanout`
 *   peers. That spreads it in O(log n) hops for about `fanout` × n messages (relaying every
 *   change for as long as the origin does would cost n² messages).
 *
 * Bounded: the queue has a cap in items and bytes (over it the most-sent item is dropped, then
 * the oldest; what is dropped, anti-entropy repairs), and every send takes tokens from the
 * node's byte-rate bucket. When the bucket runs dry, fanout and transmissions halve until a
 * pass completes within the rate: overload becomes lag, not a flood.
 */
import { BROADCAST_RETRANSMIT_MULT, BROADCAST_TRANSMISSIONS_MIN } from '../config/defaults.ts'
import type { Clock, TimerId } from '../runtime/clock.ts'
import type { Random } from '../runtime/random.ts'
import type { TokenBucket } from '../runtime/token-bucket.ts'

export interface Peer {
  /** 32 hex digits. */
  readonly actorId: string
  readonly addr: string
}

export interface BroadcasterOptions {
  /** Up to this many live peers, a local change goes to all of them directly. */
  readonly directMax: number
  readonly fanout: number
  /** 0: derive from the number of peers. */
  readonly maxTransmissions: number
  readonly retransmitIntervalMs: number
  readonly queueMax: number
  readonly queueBytesMax: number
}

export interface BroadcasterDeps {
  readonly clock: Clock
  readonly random: Random
  readonly bucket: TokenBucket
  /** Live peers, self excluded. */
  peers(): readonly Peer[]
  send(addr: string, bytes: Uint8Array): void
}

export interface BroadcasterStats {
  /** Gauges. */
  readonly queued: number
  readonly queuedBytes: number
  /** Counters. */
  readonly sends: number
  readonly bytesSent: number
  readonly dropped: number
  readonly rateLimited: number
}

interface Item {
  readonly bytes: Uint8Array
  /** Received from a peer and passed on (once), rather than committed here. */
  readonly relay: boolean
  readonly sentTo: Set<string>
  sends: number
  dueAt: number
}

/** Transmissions of an item in a cluster of `n` peers: ⌊4·log10(n + 1)⌋, at least 2. */
export function transmissionsFor(n: number): number {
  return Math.max(
    BROADCAST_TRANSMISSIONS_MIN,
    Math.floor(BROADCAST_RETRANSMIT_MULT * Math.log10(n + 1)),
  )
}

export class Broadcaster {
  private readonly deps: BroadcasterDeps
  private readonly options: BroadcasterOptions
  private items: Item[] = []
  private bytes = 0
  private timer: TimerId | null = null
  private timerAt = Infinity
  private limited = false
  private stopped = false
  private counters = { sends: 0, bytesSent: 0, dropped: 0, rateLimited: 0 }

  constructor(deps: BroadcasterDeps, options: BroadcasterOptions) {
    this.deps = deps
    this.options = options
  }

  /**
   * Queues an encoded message and sends its first transmission now. `relay`: it came from a
   * peer (it is passed on only in a large cluster, once); `exclude` are actor ids that already
   * have it (the peer it came from).
   */
  enqueue(bytes: Uint8Array, relay = false, exclude: readonly string[] = []): void {
    if (this.stopped) return
    if (relay && this.deps.peers().length <= this.options.directMax) return
    const item: Item = {
      bytes,
      relay,
      sentTo: new Set(exclude),
      sends: 0,
      dueAt: this.deps.clock.now(),
    }
    this.items.push(item)
    this.bytes += bytes.length
    this.shed()
    this.run()
  }

  stats(): BroadcasterStats {
    return { queued: this.items.length, queuedBytes: this.bytes, ...this.counters }
  }

  stop(): void {
    this.stopped = true
    if (this.timer !== null) this.deps.clock.clearTimer(this.timer)
    this.timer = null
    this.items = []
    this.bytes = 0
  }

  /** Drops items while over a cap: the most-sent first (it has spread most), then the oldest. */
  private shed(): void {
    while (
      this.items.length > this.options.queueMax ||
      (this.bytes > this.options.queueBytesMax && this.items.length > 0)
    ) {
      let victim = 0
      for (let i = 1; i < this.items.length; i++) {
        if ((this.items[i] as Item).sends > (this.items[victim] as Item).sends) victim = i
      }
      const [gone] = this.items.splice(victim, 1)
      this.bytes -= (gone as Item).bytes.length
      this.counters.dropped++
    }
  }

  /** Sends every due item once, then schedules the next due one. */
  private run(): void {
    if (this.stopped) return
    const now = this.deps.clock.now()
    const peers = this.deps.peers()
    const maxTx =
      this.options.maxTransmissions > 0
        ? this.options.maxTransmissions
        : transmissionsFor(peers.length)
    const direct = peers.length <= this.options.directMax
    const baseFanout = direct ? peers.length : this.options.fanout
    const fanout = this.limited ? Math.max(1, baseFanout >> 1) : baseFanout
    const transmissions = this.limited ? Math.max(1, maxTx >> 1) : maxTx
    let limitedNow = false
    const keep: Item[] = []
    for (const item of this.items) {
      if (limitedNow || item.dueAt > now) {
        keep.push(item)
        continue
      }
      const candidates = peers.filter((p) => !item.sentTo.has(p.actorId))
      let sent = 0
      while (sent < fanout && candidates.length > 0) {
        if (!this.deps.bucket.take(item.bytes.length)) {
          limitedNow = true
          this.counters.rateLimited++
          break
        }
        const i = this.deps.random.int(candidates.length)
        const peer = candidates[i] as Peer
        candidates[i] = candidates[candidates.length - 1] as Peer
        candidates.pop()
        item.sentTo.add(peer.actorId)
        this.deps.send(peer.addr, item.bytes)
        this.counters.sends++
        this.counters.bytesSent += item.bytes.length
        sent++
      }
      if (sent > 0 || candidates.length === 0) item.sends++
      const done = item.sends >= (item.relay ? 1 : transmissions)
      if (done || (candidates.length === 0 && !limitedNow)) {
        this.bytes -= item.bytes.length
        continue
      }
      item.dueAt = now + this.options.retransmitIntervalMs * Math.max(1, item.sends)
      keep.push(item)
    }
    this.items = keep
    this.limited = limitedNow
    this.schedule(limitedNow ? now + this.deps.bucket.waitMs(1) : Infinity)
  }

  private schedule(notBefore: number): void {
    let next = Infinity
    for (const item of this.items) next = Math.min(next, item.dueAt)
    if (next === Infinity) return
    next = Math.max(next, notBefore === Infinity ? next : notBefore)
    if (this.timer !== null && this.timerAt <= next) return
    if (this.timer !== null) this.deps.clock.clearTimer(this.timer)
    this.timerAt = next
    this.timer = this.deps.clock.setTimer(next - this.deps.clock.now(), () => {
      this.timer = null
      this.timerAt = Infinity
      this.run()
    })
  }
}
