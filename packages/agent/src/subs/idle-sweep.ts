/**
 * Drops subscriptions nobody listens to: every quarter of `[subscriptions] idle_timeout_ms`
 * (within SUBS_SWEEP_INTERVAL_MIN_MS..SUBS_SWEEP_INTERVAL_MAX_MS), a live subscription that has
 * had no listener, and no stream waiting for its rows, for the whole timeout is handed to
 * `onIdle`. Runs on the Clock's timers for the life of the manager, until `stop()`.
 */
import type { Clock, TimerId } from '../runtime/clock.ts'
import { SUBS_SWEEP_INTERVAL_MAX_MS, SUBS_SWEEP_INTERVAL_MIN_MS } from './subs-defaults.ts'
import type { Subscription } from './subscription.ts'

export interface IdleSweepOptions {
  readonly clock: Clock
  /** `[subscriptions] idle_timeout_ms` */
  readonly idleTimeoutMs: number
  readonly subscriptions: () => Iterable<Subscription>
  /** `sub` has been idle for the whole timeout: the manager drops it. */
  readonly onIdle: (sub: Subscription) => void
}

export class IdleSweep {
  private readonly o: IdleSweepOptions
  private readonly intervalMs: number
  private timer: TimerId | null = null

  constructor(o: IdleSweepOptions) {
    this.o = o
    this.intervalMs = Math.max(
      SUBS_SWEEP_INTERVAL_MIN_MS,
      Math.min(SUBS_SWEEP_INTERVAL_MAX_MS, Math.floor(o.idleTimeoutMs / 4)),
    )
    this.arm()
  }

  stop(): void {
    if (this.timer !== null) this.o.clock.clearTimer(this.timer)
    this.timer = null
  }

  private arm(): void {
    this.timer = this.o.clock.setTimer(this.intervalMs, () => {
      this.sweep()
      if (this.timer !== null) this.arm()
    })
  }

  private sweep(): void {
    const now = this.o.clock.now()
    // A copy: `onIdle` removes from what it iterates.
    for (const sub of [...this.o.subscriptions()]) {
      if (sub.idleFor(now, this.o.idleTimeoutMs)) this.o.onIdle(sub)
    }
  }
}
