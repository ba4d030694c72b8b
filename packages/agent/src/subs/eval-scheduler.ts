/**
 * When evaluations run: at most one per subscription, at most `concurrency` (`[subscriptions]
 * reader_threads`) at once, in round-robin order, so a busy subscription delays the others by
 * at most its turn. A subscription that is not due yet (a retry back-off, full-mode pacing)
 * waits on a Clock timer and is queued when it fires.
 *
 * The scheduler knows nothing of what an evaluation does: `run` does it, and never rejects.
 */
import type { Clock, TimerId } from '../runtime/clock.ts'
import type { Subscription } from './subscription.ts'

export interface EvalSchedulerOptions {
  readonly clock: Clock
  /** Evaluations running at once (`[subscriptions] reader_threads`). */
  readonly concurrency: number
  /** `[subscriptions] full_eval_interval_ms`: the pacing of full-mode subscriptions. */
  readonly fullEvalIntervalMs: number
  /** Runs one evaluation of `sub`; never rejects. */
  readonly run: (sub: Subscription) => Promise<void>
  /** After each evaluation, once the subscription was scheduled again if it has more work. */
  readonly onSettled: () => void
}

export class EvalScheduler {
  private readonly o: EvalSchedulerOptions
  private readonly runnable: Subscription[] = []
  private readonly queued = new Set<Subscription>()
  private readonly running = new Set<Subscription>()
  private readonly evaluations = new Set<Promise<void>>()
  /** Subscriptions with work that is not due yet, and the timer that queues them. */
  private readonly deferred = new Map<Subscription, TimerId>()
  private stopped = false

  constructor(o: EvalSchedulerOptions) {
    this.o = o
  }

  /** Nothing runs or waits to run (deferred subscriptions aside). */
  get quiet(): boolean {
    return this.runnable.length === 0 && this.running.size === 0
  }

  /** Evaluations queued, running or deferred. */
  get size(): number {
    return this.runnable.length + this.running.size + this.deferred.size
  }

  /** Queues `sub` if it has work and is not queued, running or deferred already. */
  schedule(sub: Subscription): void {
    if (this.stopped || this.queued.has(sub) || this.running.has(sub) || !sub.hasWork()) return
    if (this.deferred.has(sub)) return
    const waitMs = sub.dueAtMs(this.o.fullEvalIntervalMs) - this.o.clock.now()
    if (waitMs > 0) {
      const timer = this.o.clock.setTimer(waitMs, () => {
        this.deferred.delete(sub)
        this.schedule(sub)
      })
      this.deferred.set(sub, timer)
      return
    }
    this.queued.add(sub)
    this.runnable.push(sub)
    this.pump()
  }

  /** Forgets `sub` (dropped): a deferred run is cancelled; a queued one is skipped. */
  forget(sub: Subscription): void {
    const timer = this.deferred.get(sub)
    if (timer !== undefined) this.o.clock.clearTimer(timer)
    this.deferred.delete(sub)
  }

  /** Starts nothing more; resolves once the running evaluations have ended. */
  async stop(): Promise<void> {
    this.stopped = true
    for (const timer of this.deferred.values()) this.o.clock.clearTimer(timer)
    this.deferred.clear()
    await Promise.allSettled([...this.evaluations])
  }

  private pump(): void {
    while (!this.stopped && this.running.size < this.o.concurrency) {
      const sub = this.runnable.shift()
      if (sub === undefined) break
      this.queued.delete(sub)
      if (!sub.hasWork() || this.running.has(sub)) continue
      this.running.add(sub)
      const done = this.o.run(sub).finally(() => {
        this.evaluations.delete(done)
        this.running.delete(sub)
        this.schedule(sub)
        this.pump()
        this.o.onSettled()
      })
      this.evaluations.add(done)
    }
  }
}
