/**
 * The small interfaces a membership state machine is built from: time, randomness. The Swim
 * class never reads a real clock or `Math.random`; the owner passes these in (real ones from
 * here, simulated ones from `sim/`), which is what lets N agents run in one process on a
 * virtual clock.
 */
import { randomBytes } from 'node:crypto'
import { SeededRandom } from './random.ts'

/** Handle of a pending timer: whatever the clock implementation returns. */
export type TimerId = number | NodeJS.Timeout

export interface Clock {
  /** Milliseconds on a monotonic clock (the origin is the clock's own, not the Unix epoch). */
  now(): number
  /** Runs `fn` once, `ms` milliseconds from now (0 or less: as soon as possible). */
  setTimer(ms: number, fn: () => void): TimerId
  /** Cancels a timer; cancelling one that already ran or was cancelled does nothing. */
  clearTimer(id: TimerId): void
}

export interface Random {
  /** A float in [0, 1). */
  float(): number
  /** An integer in [0, n) for an integer n >= 1. */
  int(n: number): number
}

/**
 * The process's real clock: `performance.now()` and `setTimeout` timers that are `unref()`ed,
 * so that a membership instance never keeps the process alive on its own.
 */
export function systemClock(): Clock {
  return {
    now: () => performance.now(),
    setTimer(ms: number, fn: () => void): TimerId {
      const timer = setTimeout(fn, Math.max(0, ms))
      timer.unref()
      return timer
    },
    clearTimer(id: TimerId): void {
      clearTimeout(id)
    },
  }
}

/** A PRNG seeded from the operating system's entropy: for real agents (not reproducible). */
export function systemRandom(): SeededRandom {
  const seed = randomBytes(16)
  return SeededRandom.fromWords(
    seed.readUInt32LE(0),
    seed.readUInt32LE(4),
    seed.readUInt32LE(8),
    seed.readUInt32LE(12),
  )
}
