/**
 * The outgoing byte-rate cap: a token bucket on an injected clock. `take(n)` succeeds when the
 * bucket is not in debt; a large message may drive it into debt (so a single message bigger
 * than the burst still goes), and nothing else goes until the debt is repaid. Over any window
 * of t seconds the bytes sent stay under `rate·t + burst + one message`.
 */
export class TokenBucket {
  private tokens: number
  private last: number
  private readonly rate: number
  private readonly burst: number
  private readonly now: () => number
  /** Bytes granted, and refusals, since creation (for metrics). */
  granted = 0
  refused = 0

  constructor(rateBytesPerSec: number, burstBytes: number, now: () => number) {
    this.rate = rateBytesPerSec / 1000
    this.burst = burstBytes
    this.now = now
    this.tokens = burstBytes
    this.last = now()
  }

  private refill(): void {
    const t = this.now()
    this.tokens = Math.min(this.burst, this.tokens + (t - this.last) * this.rate)
    this.last = t
  }

  /** Takes `bytes` if the bucket is not in debt; false (nothing taken) otherwise. */
  take(bytes: number): boolean {
    this.refill()
    if (this.tokens <= 0) {
      this.refused++
      return false
    }
    this.tokens -= bytes
    this.granted += bytes
    return true
  }

  /** Tokens available now (negative while in debt). */
  available(): number {
    this.refill()
    return this.tokens
  }

  /** Milliseconds until the bucket holds `bytes` tokens (0 when it does now). */
  waitMs(bytes = 1): number {
    const missing = Math.min(bytes, this.burst) - this.available()
    return missing <= 0 ? 0 : Math.ceil(missing / this.rate)
  }
}
