/**
 * Time, as every component takes it. Nothing in Patina reads `Date.now()`, `performance.now()`
 * or calls `setTimeout`/`setImmediate` except `systemClock()` below; the owner passes a Clock
 * in (this real one in the agent, a virtual one from `sim/`), which is what lets N agents run
 * in one process on a seeded, simulated network.
 */

/** Handle of a pending timer: whatever the clock implementation returns. */
export type TimerId = number | NodeJS.Timeout

export interface Clock {
  /** Milliseconds on a monotonic clock (the origin is the clock's own, not the Unix epoch). */
  now(): number
  /** Milliseconds since the Unix epoch (commit times, lag across hosts). */
  wallNow(): number
  /** Runs `fn` once, `ms` milliseconds from now (0 or less: as soon as possible). */
  setTimer(ms: number, fn: () => void): TimerId
  /** Cancels a timer; cancelling one that already ran or was cancelled does nothing. */
  clearTimer(id: TimerId): void
  /**
   * Runs `fn` as soon as the event loop is free, after pending I/O (Node's `setImmediate`: a
   * 0 ms timer costs about 1 ms here).
   */
  defer(fn: () => void): void
}

/**
 * The process's real clock: `performance.now()`, `Date.now()`, and `setTimeout` timers that
 * are `unref()`ed, so that no component keeps the process alive through its timers alone.
 */
export function systemClock(): Clock {
  return {
    now: () => performance.now(),
    wallNow: () => Date.now(),
    setTimer(ms: number, fn: () => void): TimerId {
      const timer = setTimeout(fn, Math.max(0, ms))
      timer.unref()
      return timer
    },
    clearTimer(id: TimerId): void {
      clearTimeout(id)
    },
    defer(fn: () => void): void {
      setImmediate(fn)
    },
  }
}
