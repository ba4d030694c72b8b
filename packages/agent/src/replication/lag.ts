/**
 * How far behind this node is. Per origin: the newest version known to exist (from broadcasts
 * and from peers' sync states) against what this node holds, and the origin's commit time of
 * the newest change applied. Over all: recent samples of (apply time − origin commit time), of
 * which `p99()` reports the 99th percentile over the last `windowMs` (0 with no samples, so an
 * idle cluster is healthy).
 */

/** p99_lag covers the samples of this last window; older samples no longer count. */
export const LAG_WINDOW_MS = 60_000
export interface OriginLag {
  readonly origin: string
  /** Versions known to exist that this node does not hold (beyond its head, plus its gaps). */
  readonly behind: number
  readonly knownHead: number
  /** Origin wall-clock time (ms) of the newest change applied from it; 0 when none. */
  readonly lastAppliedTs: number
}

export class LagTracker {
  private readonly known = new Map<string, number>()
  private readonly lastTs = new Map<string, number>()
  private readonly samples: { at: number; lagMs: number }[] = []
  private next = 0
  private readonly max: number
  private readonly windowMs: number

  constructor(maxSamples: number, windowMs = LAG_WINDOW_MS) {
    this.max = maxSamples
    this.windowMs = windowMs
  }

  /** A version of `origin` exists (seen in a broadcast or a peer's heads). */
  observeHead(origin: string, version: number): void {
    if (version > (this.known.get(origin) ?? 0)) this.known.set(origin, version)
  }

  /** A change committed at `ts` (origin wall clock) was applied at `now` (local wall clock). */
  observeApplied(origin: string, ts: number, now: number): void {
    if (ts <= 0) return
    if (ts > (this.lastTs.get(origin) ?? 0)) this.lastTs.set(origin, ts)
    const sample = { at: now, lagMs: Math.max(0, now - ts) }
    if (this.samples.length < this.max) this.samples.push(sample)
    else this.samples[this.next] = sample
    this.next = (this.next + 1) % this.max
  }

  /** 99th percentile of recent lag samples, in seconds. */
  p99(now: number): number {
    const recent = this.samples.filter((s) => now - s.at <= this.windowMs).map((s) => s.lagMs)
    if (recent.length === 0) return 0
    recent.sort((a, b) => a - b)
    return (recent[Math.min(recent.length - 1, Math.floor(recent.length * 0.99))] as number) / 1000
  }

  /** Per origin, given what this node holds (`held(origin)` = its head and missing count). */
  origins(held: (origin: string) => { head: number; missing: number }): OriginLag[] {
    const out: OriginLag[] = []
    for (const [origin, knownHead] of this.known) {
      const { head, missing } = held(origin)
      out.push({
        origin,
        knownHead: Math.max(knownHead, head),
        behind: Math.max(0, knownHead - head) + missing,
        lastAppliedTs: this.lastTs.get(origin) ?? 0,
      })
    }
    return out
  }
}
