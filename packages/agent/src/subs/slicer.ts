/**
 * Long jobs of the subscriptions on the main thread (staging a large result, applying its
 * diff) run in slices of about SUBS_SLICE_MS and yield to the event loop in between (the
 * Clock's `defer`), so that the writer, membership, replication and the API wait at most about
 * one slice for them, whatever the size of a result.
 *
 * A slice is measured on the Clock: under a virtual clock (the simulator, some tests) time does
 * not pass during synchronous work, so a job runs in one slice and never waits on `defer`.
 */
import type { Clock } from '../runtime/clock.ts'

/** The time budget of one slice of a long job on the main thread. */
export const SUBS_SLICE_MS = 10
/**
 * Rows a diff walks at a time (subs-store.ts `applyDiffSlice`); the slice budget is checked
 * after each window, so a slice overruns its budget by at most about one window (about 1 ms).
 */
export const SUBS_DIFF_WINDOW_ROWS = 256

export class Slicer {
  private readonly clock: Clock
  private readonly sliceMs: number
  private startedMs: number

  constructor(clock: Clock, sliceMs: number) {
    this.clock = clock
    this.sliceMs = sliceMs
    this.startedMs = clock.now()
  }

  /** True while the current slice has time left. */
  readonly more = (): boolean => this.clock.now() - this.startedMs < this.sliceMs

  /** When the slice's time is up: yields to the event loop, then starts the next slice. */
  async pause(): Promise<void> {
    if (this.more()) return
    await new Promise<void>((resolve) => {
      this.clock.defer(resolve)
    })
    this.startedMs = this.clock.now()
  }
}
