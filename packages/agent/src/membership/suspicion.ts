/**
 * Lifeguard's dynamic suspicion timeout (memberlist `suspicion.go`, formulas restated here).
 *
 * With n members, min = suspicionMult * max(1, log10(max(1, n))) * probeInterval and
 * max = suspicionMaxTimeoutMult * min. k = suspicionMult - 2 independent confirmations are
 * expected (k = 0 when n - 2 < k). A suspicion starts with timeout max (min when k = 0); after c
 * confirmations from distinct members the timeout, counted from the start, is
 * max - (log(c + 1) / log(k + 1)) * (max - min), never below min.
 */

export interface SuspicionBounds {
  readonly minMs: number
  readonly maxMs: number
  /** Confirmations that bring the timeout down to min. */
  readonly k: number
}

export function suspicionBounds(
  members: number,
  suspicionMult: number,
  suspicionMaxTimeoutMult: number,
  probeIntervalMs: number,
): SuspicionBounds {
  const nodeScale = Math.max(1, Math.log10(Math.max(1, members)))
  const minMs = Math.floor(suspicionMult * nodeScale * probeIntervalMs)
  const maxMs = suspicionMaxTimeoutMult * minMs
  let k = suspicionMult - 2
  if (members - 2 < k) k = 0
  return { minMs, maxMs, k: Math.max(0, k) }
}

/** The timeout (from the start of the suspicion) after `confirmations` confirmations. */
export function suspicionTimeoutMs(bounds: SuspicionBounds, confirmations: number): number {
  const { minMs, maxMs, k } = bounds
  if (k < 1) return minMs
  if (confirmations <= 0) return maxMs
  const fraction = Math.log(confirmations + 1) / Math.log(k + 1)
  const raw = Math.floor(maxMs - fraction * (maxMs - minMs))
  return Math.max(minMs, raw)
}
