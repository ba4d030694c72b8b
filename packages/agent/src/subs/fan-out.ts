/**
 * Fan-out: an evaluation's newly logged change events go to the subscription's listeners.
 *
 * - The events are encoded once per batch and every live listener (at the head, draining)
 *   writes the same bytes into its connection; the others read the log when they get there.
 * - The writing is timed: the manager's next tick rests as long as it took (at most
 *   SUBS_FANOUT_REST_MAX_MS), so under load more changes go out per write.
 * - A listener more than `[subscriptions] max_listener_lag` changes behind that has not moved
 *   since the previous batch, when it was behind already, is cut off: it gets an error event,
 *   and its connection is closed SUBS_CUT_GRACE_MS later if it did not take it. One that reads,
 *   even slowly, or that a single large change put far behind, goes on (it costs a cursor, not
 *   a queue; if it falls out of the kept history, its stream ends with that error instead).
 */
import { SUBS_CUT_GRACE_MS } from '../config/defaults.ts'
import type { SubsMetrics } from '../metrics/subs-metrics.ts'
import type { Clock } from '../runtime/clock.ts'
import { SubsError } from './errors.ts'
import { encodeChanges } from './streams.ts'
import { SUBS_FANOUT_REST_MAX_MS } from './subs-defaults.ts'
import type { DiffResult } from './subs-store.ts'
import type { EncodedChunk, SubListener, Subscription } from './subscription.ts'
import type { UpdateListener } from './updates.ts'

export interface FanOutOptions {
  readonly clock: Clock
  readonly metrics: SubsMetrics
  /** `[subscriptions] max_listener_lag` */
  readonly maxListenerLag: number
  /** Bytes of change events per encoded chunk. */
  readonly chunkBytes: number
  /** No tick before `untilMs` (Clock ms): the writing just done took that long. */
  readonly rest: (untilMs: number) => void
}

export class FanOut {
  private readonly o: FanOutOptions

  constructor(o: FanOutOptions) {
    this.o = o
  }

  /** Records an evaluation's result in `sub` and hands its change events to the listeners. */
  publish(sub: Subscription, diff: DiffResult): void {
    sub.recordDiff(diff)
    if (diff.changes.length === 0) return
    const { clock, metrics, maxListenerLag } = this.o
    metrics.changes.inc(diff.changes.length)
    let chunks: EncodedChunk[] | null = null
    const started = clock.now()
    for (const l of sub.listeners) {
      if (!l.live) continue
      chunks ??= encodeChanges(diff.changes, this.o.chunkBytes)
      l.deliver(chunks)
    }
    if (chunks === null) return
    // The writes reach the sockets after this turn (Node flushes corked writes on the next
    // tick): measured once they have.
    clock.defer(() => {
      const now = clock.now()
      this.o.rest(now + Math.min(now - started, SUBS_FANOUT_REST_MAX_MS))
    })
    for (const l of sub.listeners) {
      if (l.cut !== null) continue
      const lag = sub.lastChange - l.cursor
      if (lag > maxListenerLag && l.checkedLag > 0 && l.cursor === l.checkedCursor) {
        this.cut(
          l,
          new SubsError(
            'TOO_SLOW',
            `listener fell behind by more than ${maxListenerLag} changes ` +
              `([subscriptions] max_listener_lag); resume with from=<the last change id you received>`,
          ),
        )
      }
      l.checkedCursor = l.cursor
      l.checkedLag = lag
    }
  }

  /** An update stream the hub cut off for being slow (it has set `cut` and ended it). */
  updatesCut(l: UpdateListener): void {
    this.o.metrics.listenersCut.inc({ reason: 'slow' })
    this.closeLater(l)
  }

  /** Ends a listener with an error event; closes its connection if it does not take it. */
  private cut(l: SubListener, reason: SubsError): void {
    if (l.cut === null) {
      l.cut = reason
      this.o.metrics.listenersCut.inc({ reason: 'slow' })
    }
    l.check()
    this.closeLater(l)
  }

  private closeLater(l: { readonly destroy: () => void }): void {
    this.o.clock.setTimer(SUBS_CUT_GRACE_MS, l.destroy)
  }
}
