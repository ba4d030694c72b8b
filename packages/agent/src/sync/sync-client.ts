/**
 * The asking side of anti-entropy. Every `intervalMs` (jittered ±50%, doubling up to
 * `intervalMaxMs` while rounds find nothing to fetch, back to the base as soon as something is
 * missing) it opens a session with a random live peer, learns what the peer has, and fetches
 * exactly what this node lacks, newest first, in rounds of bounded size: before each request it
 * reserves room in the apply queue for the whole reply, so catching up never takes more memory
 * than the queue's cap. At most `sessionsMax` sessions run at once, and two sessions never ask
 * for the same version.
 *
 * A reply larger than this node reads (the peer's frames are bigger: another version, another
 * limit) closes the stream. Asking again would cost the peer that reply every round, for ever,
 * so an origin whose reply was too big is then asked for carefully, one chunk per exchange
 * (what came before the big one is kept), and the version whose chunk is too big is held back:
 * not asked for again before 1 min, doubling to 1 h per failed try (undeliverable.ts).
 */
import { actorIdHex } from '../runtime/actor-id.ts'
import { TransportError } from '../transport/errors.ts'
import {
  SYNC_CLAIM_RANGE_VERSIONS_MAX,
  SYNC_EMPTY_REPLY_WAIT_MS,
  SYNC_EMPTY_REPLY_WAITS_MAX,
  SYNC_SOON_DIVISOR,
  SYNC_VERSIONS_PER_NEED,
} from '../config/defaults.ts'
import { type Replica } from '../crdt/replica.ts'
import type { Clock, TimerId } from '../runtime/clock.ts'
import type { Random } from '../runtime/random.ts'
import type { Peer } from '../broadcast/broadcaster.ts'
import type { Chunk, Message, Need, OriginHave } from '../wire/messages.ts'
import { decodeMessage, encodeMessage } from '../wire/wire.ts'
import { computeNeeds } from './needs.ts'
import { DEFAULT_UNDELIVERABLE, retryDelayMs } from './undeliverable.ts'

/** A reply this node could not read whole: the peer's frame was over its cap. */
function frameTooLarge(err: unknown): boolean {
  return err instanceof TransportError && err.code === 'FRAME_TOO_LARGE'
}

/** One conversation with a peer: request/response exchanges in order. */
export interface SyncSession {
  request(bytes: Uint8Array, signal: AbortSignal): Promise<Uint8Array>
  close(): void
}

/**
 * What the client needs of the apply queue (replication/apply-queue.ts): room reserved for a
 * whole answer before asking for it, the chunks offered, and what is already queued.
 */
export interface SyncApplyQueue {
  reserve(bytes: number): Promise<{ readonly bytes: number; release(): void }>
  offer(chunk: Chunk, source: 'sync'): boolean
  /** Per origin (hex), the versions of full chunks waiting to be applied. */
  pendingVersions(): Map<string, Set<number>>
}

export interface SyncClientOptions {
  readonly intervalMs: number
  readonly intervalMaxMs: number
  readonly sessionsMax: number
  readonly roundsMax: number
  readonly needsPerRequest: number
  readonly replyBytes: number
  readonly timeoutMs: number
}

export interface SyncClientDeps {
  readonly replica: Replica
  readonly clock: Clock
  readonly random: Random
  readonly clusterId: number
  readonly queue: SyncApplyQueue
  peers(): readonly Peer[]
  openSession(addr: string): SyncSession
  /** True when this node knows it lacks versions: no backing off then. */
  behind(): boolean
  /** Told what a peer has (for lag: the newest version known per origin). */
  onHaves(haves: readonly OriginHave[]): void
  /** Sync failures are expected (peers go away); they are counted and logged at debug. */
  onError(peer: Peer, err: unknown): void
}

export interface SyncClientStats {
  /** Gauge. */
  readonly sessions: number
  readonly rounds: number
  readonly sessionsFailed: number
  readonly rejected: number
  readonly chunksReceived: number
  readonly versionsRequested: number
  /** Replies over this node's frame cap (the stream closed). */
  readonly framesTooLarge: number
  /** Gauge: versions not asked for now, their chunk being over this node's frame cap. */
  readonly heldBack: number
  /** Gauge: the current interval between rounds. */
  readonly intervalMs: number
}

export class SyncClient {
  private readonly deps: SyncClientDeps
  private readonly options: SyncClientOptions
  private timer: TimerId | null = null
  private interval: number
  private preferred: string | null = null
  private running = 0
  private readonly claimed = new Map<string, Set<number>>()
  /** Origin (hex) → until when its needs are asked one chunk per exchange. */
  private readonly careful = new Map<string, number>()
  /** `origin:version` → tries and until when it is not asked for (a chunk over the cap). */
  private readonly heldBack = new Map<
    string,
    { origin: string; version: number; tries: number; until: number }
  >()
  private readonly abort = new AbortController()
  private stopped = false
  private counters = {
    rounds: 0,
    sessionsFailed: 0,
    rejected: 0,
    chunksReceived: 0,
    versionsRequested: 0,
    framesTooLarge: 0,
  }

  constructor(deps: SyncClientDeps, options: SyncClientOptions) {
    this.deps = deps
    this.options = options
    this.interval = options.intervalMs
  }

  start(): void {
    // Soon after start: a restarted node is likely behind.
    this.scheduleIn(this.jitter(this.options.intervalMs) / SYNC_SOON_DIVISOR)
  }

  stop(): void {
    this.stopped = true
    this.abort.abort()
    if (this.timer !== null) this.deps.clock.clearTimer(this.timer)
    this.timer = null
  }

  /**
   * Something is known to be missing: sync soon, at the base interval; with `peer` first when
   * given (a peer that just became live, e.g. after a partition healed).
   */
  hurry(peer?: Peer): void {
    if (this.stopped) return
    if (peer !== undefined) this.preferred = peer.actorId
    this.interval = this.options.intervalMs
    if (this.timer === null) return
    this.deps.clock.clearTimer(this.timer)
    this.scheduleIn(this.jitter(this.options.intervalMs) / SYNC_SOON_DIVISOR)
  }

  stats(): SyncClientStats {
    return {
      sessions: this.running,
      intervalMs: this.interval,
      heldBack: [...this.heldBack.values()].filter((h) => h.until > this.deps.clock.now()).length,
      ...this.counters,
    }
  }

  private jitter(ms: number): number {
    return ms * (0.5 + this.deps.random.float())
  }

  private scheduleIn(ms: number): void {
    if (this.stopped) return
    this.timer = this.deps.clock.setTimer(ms, () => {
      this.timer = null
      void this.tick()
    })
  }

  /**
   * One round: a session with one random live peer. Rounds overlap only when a session outlasts
   * the interval, up to `sessionsMax`.
   */
  private async tick(): Promise<void> {
    const peers = this.deps.peers()
    let found = false
    if (peers.length > 0 && this.running < this.options.sessionsMax) {
      const preferred = peers.find((p) => p.actorId === this.preferred)
      this.preferred = null
      found = await this.syncWith(preferred ?? (peers[this.deps.random.int(peers.length)] as Peer))
    }
    this.interval =
      found || this.deps.behind()
        ? this.options.intervalMs
        : Math.min(this.options.intervalMaxMs, this.interval * 2)
    if (this.timer === null) this.scheduleIn(this.jitter(this.interval))
  }

  /** Runs one session now with `peer`. Resolves true when anything was missing. */
  async syncWith(peer: Peer): Promise<boolean> {
    if (this.stopped || this.running >= this.options.sessionsMax) return false
    this.running++
    this.counters.rounds++
    const session = this.deps.openSession(peer.addr)
    const mine: Map<string, Set<number>> = new Map()
    let asked: { needs: readonly Need[]; careful: boolean } = { needs: [], careful: false }
    try {
      const state = await this.exchange(session, {
        type: 'sync-start',
        clusterId: this.deps.clusterId,
        sender: this.deps.replica.actorId,
      })
      if (state.type !== 'sync-state') {
        this.counters.rejected++
        return false
      }
      this.deps.onHaves(state.haves)
      let needs = this.needsFrom(state.haves)
      const found = needs.length > 0
      let waits = 0
      for (let round = 0; round < this.options.roundsMax && needs.length > 0; round++) {
        if (this.abort.signal.aborted) break
        const c = needs.findIndex((n) => this.isCareful(n.origin))
        const ask = c >= 0 ? [needs[c] as Need] : needs.slice(0, this.options.needsPerRequest)
        const later =
          c >= 0 ? needs.filter((_, i) => i !== c) : needs.slice(this.options.needsPerRequest)
        asked = { needs: ask, careful: c >= 0 }
        this.claim(ask, mine)
        const reservation = await this.deps.queue.reserve(this.options.replyBytes)
        let reply: Message
        try {
          reply = await this.exchange(session, {
            type: 'sync-needs',
            clusterId: this.deps.clusterId,
            sender: this.deps.replica.actorId,
            session: state.session,
            // The queue may hold less than a full reply (its cap is below replyBytes). Careful:
            // the least budget, so one chunk comes back (the first always does).
            maxBytes: asked.careful ? 1 : reservation.bytes,
            needs: ask,
          })
          if (reply.type !== 'sync-chunks') {
            this.counters.rejected++
            break
          }
          for (const chunk of reply.chunks) this.deps.queue.offer(chunk, 'sync')
        } finally {
          reservation.release()
        }
        this.counters.chunksReceived += reply.chunks.length
        needs = [...reply.rest, ...later]
        if (reply.chunks.length === 0) {
          // The peer is at its byte-rate cap: wait a little and ask again in this session (a
          // new session only starts a sync interval later, which would pace catching up far
          // below the cap), a bounded number of times.
          if (reply.rest.length === 0 || ++waits > SYNC_EMPTY_REPLY_WAITS_MAX) break
          round--
          await this.sleep(SYNC_EMPTY_REPLY_WAIT_MS)
        }
      }
      // Goodbye: frees the peer's session slot at once (not awaited; a lost one expires).
      void this.exchange(session, {
        type: 'sync-needs',
        clusterId: this.deps.clusterId,
        sender: this.deps.replica.actorId,
        session: state.session,
        maxBytes: 0,
        needs: [],
      }).catch(() => undefined)
      return found
    } catch (err) {
      this.counters.sessionsFailed++
      if (frameTooLarge(err)) this.tooLarge(asked)
      this.deps.onError(peer, err)
      return false
    } finally {
      session.close()
      this.release(mine)
      this.running--
    }
  }

  private isCareful(origin: Uint8Array): boolean {
    if (this.careful.size === 0) return false
    const hex = actorIdHex(origin)
    const until = this.careful.get(hex)
    if (until === undefined) return false
    if (this.deps.clock.now() < until) return true
    this.careful.delete(hex)
    return false
  }

  /**
   * The reply to `asked` was over this node's frame cap. Asked carefully, the one chunk that
   * came back is the newest version of the need: that one is held back. Otherwise its origins
   * are asked carefully from now on, which finds the version.
   */
  private tooLarge(asked: { needs: readonly Need[]; careful: boolean }): void {
    this.counters.framesTooLarge++
    const now = this.deps.clock.now()
    const [first] = asked.needs
    if (asked.careful && first !== undefined) {
      const origin = actorIdHex(first.origin)
      const key = `${origin}:${first.end}`
      const held = this.heldBack.get(key) ?? { origin, version: first.end, tries: 0, until: 0 }
      held.tries++
      held.until = now + retryDelayMs(DEFAULT_UNDELIVERABLE, held.tries)
      this.heldBack.delete(key) // re-inserted last: the oldest is forgotten first
      this.heldBack.set(key, held)
      while (this.heldBack.size > DEFAULT_UNDELIVERABLE.heldMax) {
        this.heldBack.delete(this.heldBack.keys().next().value as string)
      }
      return
    }
    for (const n of asked.needs) {
      this.careful.set(actorIdHex(n.origin), now + DEFAULT_UNDELIVERABLE.retryMaxMs)
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.deps.clock.setTimer(ms, resolve)
    })
  }

  private async exchange(session: SyncSession, message: Message): Promise<Message> {
    const timeout = new AbortController()
    const timer = this.deps.clock.setTimer(this.options.timeoutMs, () => {
      timeout.abort(new Error(`sync exchange timed out after ${this.options.timeoutMs} ms`))
    })
    try {
      const signal = AbortSignal.any([this.abort.signal, timeout.signal])
      const bytes = await session.request(encodeMessage(message), signal)
      const decoded = decodeMessage(bytes)
      if (!decoded.ok) throw new Error(`malformed sync reply: ${decoded.error}`)
      return decoded.message
    } finally {
      this.deps.clock.clearTimer(timer)
    }
  }

  private needsFrom(haves: readonly OriginHave[]): Need[] {
    const { replica, queue } = this.deps
    const buffered = new Map<string, Set<number>>()
    for (const b of replica.bufferedVersions()) {
      if (!b.parked) continue // a partial version is asked for again: its chunks may be lost
      const hex = actorIdHex(b.actorId)
      let set = buffered.get(hex)
      if (set === undefined) buffered.set(hex, (set = new Set()))
      set.add(b.version)
    }
    const states = new Map(replica.originStates().map((o) => [actorIdHex(o.actorId), o]))
    const pending = queue.pendingVersions()
    const now = this.deps.clock.now()
    const needs = computeNeeds(
      haves,
      {
        self: replica.actorId,
        versions: (origin) => {
          const o = states.get(actorIdHex(origin))
          return o === undefined ? { head: 0, gaps: [] } : o
        },
        skip: (origin) => {
          const hex = actorIdHex(origin)
          const out = new Set<number>(pending.get(hex))
          for (const v of buffered.get(hex) ?? []) out.add(v)
          for (const v of this.claimed.get(hex) ?? []) out.add(v)
          for (const h of this.heldBack.values()) {
            if (h.origin === hex && now < h.until) out.add(h.version)
          }
          return out
        },
      },
      this.options.needsPerRequest * this.options.roundsMax * SYNC_VERSIONS_PER_NEED,
    )
    for (const n of needs) this.counters.versionsRequested += n.end - n.start + 1
    return needs
  }

  /** Marks versions as being fetched by this session (small ranges only: they are sets). */
  private claim(needs: readonly Need[], mine: Map<string, Set<number>>): void {
    for (const n of needs) {
      if (n.end - n.start > SYNC_CLAIM_RANGE_VERSIONS_MAX) continue
      const hex = actorIdHex(n.origin)
      let all = this.claimed.get(hex)
      if (all === undefined) this.claimed.set(hex, (all = new Set()))
      let own = mine.get(hex)
      if (own === undefined) mine.set(hex, (own = new Set()))
      for (let v = n.start; v <= n.end; v++) {
        all.add(v)
        own.add(v)
      }
    }
  }

  private release(mine: Map<string, Set<number>>): void {
    for (const [hex, versions] of mine) {
      const all = this.claimed.get(hex)
      if (all === undefined) continue
      for (const v of versions) all.delete(v)
      if (all.size === 0) this.claimed.delete(hex)
    }
  }
}
