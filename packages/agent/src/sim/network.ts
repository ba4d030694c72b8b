/**
 * A seeded simulated network between addresses (`host:port`). It carries three kinds of traffic:
 * - datagrams (`send`): per-link latency (base + uniform jitter), loss, duplication and
 *   reordering (an occasional extra delay), dropped by partitions and filters;
 * - framed streams (`streams`, see streams.ts): the StreamTransport contract on virtual time,
 *   with latency, retransmitted loss, head-of-line reordering, resets and partitions;
 * - request/response exchanges (`request`), the shape of a short TCP stream: no loss (TCP
 *   retransmits), latency each way, refused when nothing listens, never answered across a
 *   partition (the caller times out after `streamTimeoutMs`, or aborts). The membership-only
 *   simulation (swim-cluster.ts) uses these; nodes built by createNode use `streams`.
 *
 * Every random choice comes from the network's own seeded generator, and every send, delivery
 * and drop is folded into a running SHA-256 (`traceHash()`), so two runs can be compared bit for
 * bit. Bytes are copied on send; senders may reuse their buffers.
 */
import { createHash, type Hash } from 'node:crypto'
import type { SeededRandom } from '../runtime/random.ts'
import type { Scheduler } from './scheduler.ts'
import { SimStreams } from './streams.ts'

export interface LinkProfile {
  /** Base one-way latency. */
  readonly latencyMs: number
  /** Uniform extra latency in [0, jitterMs). */
  readonly jitterMs: number
  /** Probability that a datagram is lost. */
  readonly loss: number
  /** Probability that a datagram is delivered twice (the copy with its own latency). */
  readonly duplicate: number
  /**
   * Probability that a datagram is held back by up to `reorderDelayMs` more (for a stream frame:
   * it and the frames behind it).
   */
  readonly reorder: number
  readonly reorderDelayMs: number
  /** Probability, per stream frame, that the connection is reset instead of carrying it. */
  readonly reset: number
}

export const DEFAULT_LINK: LinkProfile = Object.freeze({
  latencyMs: 1,
  jitterMs: 1,
  loss: 0,
  duplicate: 0,
  reorder: 0,
  reorderDelayMs: 20,
  reset: 0,
})

/** A stream exchange that has not been answered after this fails with a timeout. */
export const STREAM_TIMEOUT_MS = 10_000

/** What the network delivers to: one life of a host (a crashed life is no longer `alive`). */
export interface NetworkEndpoint {
  isAlive(): boolean
  /** Runs `task` on the endpoint's behalf: now, or when it resumes if it is paused. */
  dispatch(task: () => void): void
  onDatagram(from: string, bytes: Uint8Array): void
  /** Answers a request; null closes the exchange without an answer. */
  onRequest(from: string, bytes: Uint8Array): Uint8Array | null | Promise<Uint8Array | null>
}

export type DropReason = 'loss' | 'partition' | 'filter' | 'no-endpoint'

/**
 * Decides per datagram, and per stream frame, whether it may go (false drops it). For fault
 * injection in tests. A stream frame is shown as its connection's kind byte and the frame (the
 * first frame of a connection, which carries the kind, is never filtered).
 */
export type DatagramFilter = (from: string, to: string, bytes: Uint8Array) => boolean

export interface NetworkStats {
  datagramsSent: number
  datagramsDelivered: number
  datagramsDuplicated: number
  datagramBytesSent: number
  dropped: Record<DropReason, number>
  requests: number
  requestsFailed: number
  requestBytes: number
  responseBytes: number
}

export class StreamError extends Error {
  readonly code: 'ECONNREFUSED' | 'ETIMEDOUT' | 'ECLOSED' | 'EABORTED'
  constructor(code: StreamError['code'], message: string) {
    super(message)
    this.name = 'StreamError'
    this.code = code
  }
}

const encoder = new TextEncoder()

export class SimNetwork {
  readonly scheduler: Scheduler
  /** The stream layer: listeners and connections (streams.ts). */
  readonly streams: SimStreams
  private readonly random: SeededRandom
  private readonly endpoints = new Map<string, NetworkEndpoint>()
  private readonly links = new Map<string, LinkProfile>()
  private readonly blocked = new Set<string>()
  private readonly isolated = new Set<string>()
  private defaultLink: LinkProfile
  private filter: DatagramFilter | null = null
  private readonly hash: Hash = createHash('sha256')
  private readonly log: string[] | null
  private readonly logLimit: number
  private readonly tracing: boolean
  readonly streamTimeoutMs: number
  readonly stats: NetworkStats = {
    datagramsSent: 0,
    datagramsDelivered: 0,
    datagramsDuplicated: 0,
    datagramBytesSent: 0,
    dropped: { loss: 0, partition: 0, filter: 0, 'no-endpoint': 0 },
    requests: 0,
    requestsFailed: 0,
    requestBytes: 0,
    responseBytes: 0,
  }

  constructor(
    scheduler: Scheduler,
    random: SeededRandom,
    options: {
      link?: Partial<LinkProfile>
      streamTimeoutMs?: number
      /** Keep the last this many trace lines in memory (`traceLog()`); 0 keeps none. */
      logLimit?: number
      /** Fold every event into `traceHash()` (default true; off saves time in big benchmarks). */
      trace?: boolean
    } = {},
  ) {
    this.scheduler = scheduler
    this.random = random
    this.defaultLink = { ...DEFAULT_LINK, ...options.link }
    this.streamTimeoutMs = options.streamTimeoutMs ?? STREAM_TIMEOUT_MS
    this.logLimit = options.logLimit ?? 0
    this.log = this.logLimit > 0 ? [] : null
    this.tracing = options.trace ?? true
    this.streams = new SimStreams(this)
  }

  /** A draw from the network's seeded generator, in [0, 1). */
  draw(): number {
    return this.random.float()
  }

  /** One-way latency of a stream frame on from -> to: base plus jitter (no reordering). */
  oneWayDelay(from: string, to: string): number {
    return this.delay(this.linkFor(from, to), false)
  }

  get filtering(): boolean {
    return this.filter !== null
  }

  /** The fault filter's verdict on a stream frame (true when there is no filter). */
  passes(from: string, to: string, bytes: Uint8Array): boolean {
    return this.filter === null || this.filter(from, to, bytes)
  }

  dropped(from: string, to: string): void {
    this.drop('filter', from, to)
  }

  /** Folds an event into the trace (for the stream layer). */
  traceEvent(kind: string, from: string, to: string, data: Uint8Array | null): void {
    this.trace(kind, from, to, data)
  }

  /** A life ended: its stream listener and connections go with it. */
  endpointEnded(endpoint: NetworkEndpoint): void {
    this.streams.endpointEnded(endpoint)
  }

  // ---------------------------------------------------------------------------- endpoints

  attach(addr: string, endpoint: NetworkEndpoint): void {
    this.endpoints.set(addr, endpoint)
  }

  detach(addr: string): void {
    this.endpoints.delete(addr)
  }

  // ---------------------------------------------------------------------------- faults

  /** The profile of every link without its own. */
  setDefaultLink(link: Partial<LinkProfile>): void {
    this.defaultLink = { ...this.defaultLink, ...link }
  }

  /** The profile of the one-way link from -> to (over the default). */
  setLink(from: string, to: string, link: Partial<LinkProfile>): void {
    this.links.set(key(from, to), { ...this.linkFor(from, to), ...link })
  }

  clearLinks(): void {
    this.links.clear()
  }

  linkFor(from: string, to: string): LinkProfile {
    return this.links.get(key(from, to)) ?? this.defaultLink
  }

  /** Drops everything between the two groups, both ways. */
  partition(a: readonly string[], b: readonly string[]): void {
    for (const x of a) {
      for (const y of b) {
        this.blocked.add(key(x, y))
        this.blocked.add(key(y, x))
      }
    }
  }

  /** Drops everything from each of `from` to each of `to` (the other way still works). */
  blockOneWay(from: readonly string[], to: readonly string[]): void {
    for (const x of from) for (const y of to) this.blocked.add(key(x, y))
  }

  /** Cuts `addr` off from everyone, both ways. */
  isolate(addr: string): void {
    this.isolated.add(addr)
  }

  /** Removes every partition, one-way block and isolation (link profiles stay). */
  heal(): void {
    this.blocked.clear()
    this.isolated.clear()
  }

  isBlocked(from: string, to: string): boolean {
    return this.isolated.has(from) || this.isolated.has(to) || this.blocked.has(key(from, to))
  }

  setFilter(filter: DatagramFilter | null): void {
    this.filter = filter
  }

  // ---------------------------------------------------------------------------- datagrams

  send(from: string, to: string, bytes: Uint8Array): void {
    const data = bytes.slice()
    this.stats.datagramsSent++
    this.stats.datagramBytesSent += data.length
    this.trace('send', from, to, data)
    if (this.filter !== null && !this.filter(from, to, data)) {
      this.drop('filter', from, to)
      return
    }
    if (this.isBlocked(from, to)) {
      this.drop('partition', from, to)
      return
    }
    const link = this.linkFor(from, to)
    if (link.loss > 0 && this.random.float() < link.loss) {
      this.drop('loss', from, to)
      return
    }
    const copies = link.duplicate > 0 && this.random.float() < link.duplicate ? 2 : 1
    if (copies === 2) this.stats.datagramsDuplicated++
    for (let i = 0; i < copies; i++) {
      this.scheduler.after(this.delay(link, true), () => {
        this.arrive(from, to, data)
      })
    }
  }

  private arrive(from: string, to: string, data: Uint8Array): void {
    const ep = this.endpoints.get(to)
    if (ep === undefined || !ep.isAlive()) {
      this.drop('no-endpoint', from, to)
      return
    }
    this.stats.datagramsDelivered++
    this.trace('recv', from, to, data)
    ep.dispatch(() => {
      ep.onDatagram(from, data)
    })
  }

  private delay(link: LinkProfile, datagram: boolean): number {
    let d = link.latencyMs
    if (link.jitterMs > 0) d += this.random.float() * link.jitterMs
    if (datagram && link.reorder > 0 && this.random.float() < link.reorder) {
      d += this.random.float() * link.reorderDelayMs
    }
    return d
  }

  // ---------------------------------------------------------------------------- streams

  /**
   * Sends `bytes` to `to` as one request and resolves with its answer. Rejects with a
   * StreamError: ECONNREFUSED (nothing listens there), ECLOSED (it answered null), ETIMEDOUT (no
   * answer within `streamTimeoutMs`, e.g. across a partition), EABORTED (`signal`).
   */
  request(from: string, to: string, bytes: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
    const caller = this.endpoints.get(from)
    const data = bytes.slice()
    this.stats.requests++
    this.stats.requestBytes += data.length
    this.trace('req', from, to, data)
    return new Promise<Uint8Array>((resolve, reject) => {
      let settled = false
      const settle = (reply: Uint8Array | null, error: StreamError | null): void => {
        if (settled) return
        settled = true
        this.scheduler.cancel(timeout)
        signal?.removeEventListener('abort', onAbort)
        this.scheduler.requestDrain()
        if (reply !== null) {
          this.trace('resp', to, from, reply)
          resolve(reply)
        } else {
          this.stats.requestsFailed++
          this.trace(`fail:${error?.code ?? 'unknown'}`, to, from, null)
          reject(error ?? new StreamError('ECLOSED', 'closed'))
        }
      }
      // Answers and failures reach the caller through its own endpoint, so that a paused caller
      // sees them only when it resumes and a crashed one never does.
      const toCaller = (reply: Uint8Array | null, error: StreamError | null): void => {
        if (caller === undefined) {
          settle(reply, error)
          return
        }
        if (!caller.isAlive()) return
        caller.dispatch(() => {
          settle(reply, error)
        })
      }
      const timeout = this.scheduler.after(this.streamTimeoutMs, () => {
        toCaller(null, new StreamError('ETIMEDOUT', `no answer from ${to}`))
      })
      const onAbort = (): void => {
        settle(null, new StreamError('EABORTED', 'aborted'))
      }
      if (signal?.aborted === true) {
        onAbort()
        return
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      if (this.isBlocked(from, to) || this.isBlocked(to, from)) return // SYNs vanish: time out
      const link = this.linkFor(from, to)
      this.scheduler.after(this.delay(link, false), () => {
        const ep = this.endpoints.get(to)
        if (ep === undefined || !ep.isAlive()) {
          this.scheduler.after(this.delay(this.linkFor(to, from), false), () => {
            toCaller(null, new StreamError('ECONNREFUSED', `nothing listens on ${to}`))
          })
          return
        }
        ep.dispatch(() => {
          this.answer(ep, from, to, data, toCaller)
        })
      })
    })
  }

  private answer(
    ep: NetworkEndpoint,
    from: string,
    to: string,
    data: Uint8Array,
    toCaller: (reply: Uint8Array | null, error: StreamError | null) => void,
  ): void {
    const respond = (reply: Uint8Array | null): void => {
      if (this.isBlocked(to, from)) return // the answer is lost with the connection: time out
      const copy = reply === null ? null : reply.slice()
      if (copy !== null) this.stats.responseBytes += copy.length
      this.scheduler.after(this.delay(this.linkFor(to, from), false), () => {
        toCaller(copy, copy === null ? new StreamError('ECLOSED', `${to} closed`) : null)
      })
    }
    const result = ep.onRequest(from, data)
    if (result instanceof Promise) {
      this.scheduler.beginAsync()
      result.then(
        (reply) => {
          this.scheduler.endAsync()
          if (ep.isAlive()) respond(reply)
        },
        () => {
          this.scheduler.endAsync()
          if (ep.isAlive()) respond(null)
        },
      )
    } else {
      respond(result)
    }
  }

  // ---------------------------------------------------------------------------- tracing

  /** SHA-256 (hex) over every event so far: equal for two runs that did exactly the same. */
  traceHash(): string {
    return this.hash.copy().digest('hex')
  }

  /** The last `logLimit` trace lines (empty unless `logLimit` was set). */
  traceLog(): readonly string[] {
    return this.log ?? []
  }

  private drop(reason: DropReason, from: string, to: string): void {
    this.stats.dropped[reason]++
    this.trace(`drop:${reason}`, from, to, null)
  }

  private trace(kind: string, from: string, to: string, data: Uint8Array | null): void {
    if (!this.tracing && this.log === null) return
    const line = `${this.scheduler.now()} ${kind} ${from} ${to} ${data?.length ?? -1}`
    this.hash.update(encoder.encode(line))
    if (data !== null) this.hash.update(data)
    if (this.log !== null) {
      this.log.push(line)
      if (this.log.length > this.logLimit) this.log.splice(0, this.log.length - this.logLimit)
    }
  }
}

function key(from: string, to: string): string {
  return `${from}\u0000${to}`
}
