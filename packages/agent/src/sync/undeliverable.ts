/**
 * Versions no peer can take: one of their changes is encoded larger than a stream frame carries
 * (`frameBytesMax`), and a change is sent whole. Such a version can exist although local writes
 * refuse cells over `[perf] max_cell_bytes`: written before that limit, by a peer with a larger
 * one, or replicated from one.
 *
 * Sending one is pointless (the transport refuses the frame, or the peer closes the connection)
 * and used to be repeated on every sync round, for ever. So the replicator and the sync server
 * measure a version before they send it; one that cannot be framed is held here instead: not
 * sent, not read again while held, reported once (`hold` answers true the first time), and
 * measured again only when its retry is due, at 1 min, 2, 4, ... up to `retryMaxMs` (its big
 * cell may have been overwritten since, leaving a version that fits). A version that fits when
 * measured again is released.
 *
 * Bounded: at most `heldMax` versions; over it the one held longest is forgotten (it is measured
 * again if asked for, and reported again).
 */
import {
  UNDELIVERABLE_HELD_MAX,
  UNDELIVERABLE_RETRY_MAX_MS,
  UNDELIVERABLE_RETRY_MIN_MS,
} from '../config/defaults.ts'

export interface UndeliverableOptions {
  readonly retryMinMs: number
  readonly retryMaxMs: number
  readonly heldMax: number
}

export const DEFAULT_UNDELIVERABLE: UndeliverableOptions = Object.freeze({
  retryMinMs: UNDELIVERABLE_RETRY_MIN_MS,
  retryMaxMs: UNDELIVERABLE_RETRY_MAX_MS,
  heldMax: UNDELIVERABLE_HELD_MAX,
})

export interface UndeliverableStats {
  /** Gauge: versions held now. */
  readonly held: number
  /** Counters. */
  readonly reported: number
  readonly retries: number
  readonly released: number
  readonly forgotten: number
}

interface Entry {
  readonly bytes: number
  tries: number
  retryAt: number
}

/** Delay before the `tries`-th measurement again: min × 2^(tries-1), capped. */
export function retryDelayMs(options: UndeliverableOptions, tries: number): number {
  return Math.min(options.retryMaxMs, options.retryMinMs * 2 ** Math.max(0, tries - 1))
}

export class Undeliverable {
  private readonly now: () => number
  private readonly options: UndeliverableOptions
  private readonly entries = new Map<string, Entry>()
  private counters = { reported: 0, retries: 0, released: 0, forgotten: 0 }

  constructor(now: () => number, options: UndeliverableOptions = DEFAULT_UNDELIVERABLE) {
    this.now = now
    this.options = options
  }

  /** True while `version` of `origin` (hex) is held and not due to be measured again. */
  skips(origin: string, version: number): boolean {
    if (this.entries.size === 0) return false
    const e = this.entries.get(`${origin}:${version}`)
    return e !== undefined && this.now() < e.retryAt
  }

  /**
   * `version` of `origin` was measured and cannot be framed (its largest chunk is `bytes`):
   * held, its next measurement backed off. True when it was not held before (report it).
   */
  hold(origin: string, version: number, bytes: number): boolean {
    const key = `${origin}:${version}`
    const e = this.entries.get(key)
    if (e !== undefined) {
      e.tries++
      e.retryAt = this.now() + retryDelayMs(this.options, e.tries)
      this.counters.retries++
      return false
    }
    this.entries.set(key, { bytes, tries: 1, retryAt: this.now() + this.options.retryMinMs })
    this.counters.reported++
    while (this.entries.size > this.options.heldMax) {
      const oldest = this.entries.keys().next().value as string
      this.entries.delete(oldest)
      this.counters.forgotten++
    }
    return true
  }

  /** `version` of `origin` was measured and fits now: no longer held. */
  release(origin: string, version: number): void {
    if (this.entries.size === 0) return
    if (this.entries.delete(`${origin}:${version}`)) this.counters.released++
  }

  stats(): UndeliverableStats {
    return { held: this.entries.size, ...this.counters }
  }
}
