/**
 * The background clean-up of the subscriptions database: the rows of dropped subscriptions are
 * deleted SUBS_GC_ROWS_PER_STEP at a time, yielding to the event loop (Clock `defer`) between
 * steps so that a large result never blocks the agent. One run at a time; `collect()` starts
 * one if none is running, and it ends when nothing is left or the manager stops.
 */
import type { Logger } from 'pino'
import type { Clock } from '../runtime/clock.ts'
import { SUBS_GC_ROWS_PER_STEP } from './subs-defaults.ts'
import type { SubsStore } from './subs-store.ts'

export class StoreGc {
  private readonly o: { readonly clock: Clock; readonly store: SubsStore; readonly log: Logger }
  private running = false
  private stopped = false

  constructor(o: { readonly clock: Clock; readonly store: SubsStore; readonly log: Logger }) {
    this.o = o
  }

  /** Deletes what dropped subscriptions left, a step at a time, unless a run is on already. */
  collect(): void {
    if (this.running || this.stopped) return
    this.running = true
    this.o.clock.defer(this.step)
  }

  /** No further step runs (the database is about to close). */
  stop(): void {
    this.stopped = true
  }

  private readonly step = (): void => {
    let more = false
    try {
      more = !this.stopped && this.o.store.gcStep(SUBS_GC_ROWS_PER_STEP)
    } catch (err) {
      this.o.log.error({ err }, 'subscription clean-up failed')
    }
    if (more) this.o.clock.defer(this.step)
    else this.running = false
  }
}
