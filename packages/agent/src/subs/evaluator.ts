/**
 * One evaluation of one subscription, as the scheduler runs it: the matcher (matcher.ts) turns
 * its work into diffs, fan-out publishes them, and the outcome is counted. A transient failure
 * (the reader pool busy or restarting, SQLite busy) retries SUBS_RETRY_MS later, in full; any
 * other failure fails the subscription alone (`onFailed`), and everything else keeps flowing.
 */
import type { Logger } from 'pino'
import { SUBS_RETRY_MS } from '../config/defaults.ts'
import type { SubsMetrics } from '../metrics/subs-metrics.ts'
import type { Clock } from '../runtime/clock.ts'
import type { FanOut } from './fan-out.ts'
import {
  evaluate,
  isTransientStoreError,
  TransientEvalError,
  type EvalKind,
  type MatcherOptions,
} from './matcher.ts'
import type { DiffResult } from './subs-store.ts'
import type { Subscription } from './subscription.ts'

export interface EvaluatorOptions {
  readonly clock: Clock
  readonly matcher: MatcherOptions
  readonly fanOut: FanOut
  readonly metrics: SubsMetrics
  readonly log: Logger
  /** True once the manager is stopping: failures then are its own doing. */
  readonly stopping: () => boolean
  /** The subscription's query failed on the current data. */
  readonly onFailed: (sub: Subscription, err: unknown) => void
}

export class Evaluator {
  private readonly o: EvaluatorOptions

  constructor(o: EvaluatorOptions) {
    this.o = o
  }

  /** Runs the next unit of work of `sub`; never rejects. */
  readonly run = async (sub: Subscription): Promise<void> => {
    const { clock, metrics } = this.o
    const started = clock.now()
    let kind: EvalKind = sub.state === 'loading' ? 'first' : sub.needsFull ? 'full' : 'keys'
    // Each committed slice of a diff goes out as it is committed (matcher.ts).
    const publish = (diff: DiffResult): void => {
      if (sub.active) this.o.fanOut.publish(sub, diff)
    }
    try {
      kind = await evaluate(sub, this.o.matcher, publish)
      if (!sub.active) return
      if (kind !== 'keys') sub.ranFull(clock.now())
      if (kind === 'first') sub.wentLive()
      metrics.evaluations.inc({ kind, outcome: 'ok' })
      metrics.evaluationSeconds.observe({ kind }, (clock.now() - started) / 1000)
    } catch (err) {
      if (!sub.active || this.o.stopping()) return
      if (err instanceof TransientEvalError || isTransientStoreError(err)) {
        if (!(err instanceof TransientEvalError)) {
          this.o.log.error({ err, sub: sub.id }, 'subscriptions database error; retrying')
        }
        sub.retryAt(clock.now() + SUBS_RETRY_MS)
        metrics.evaluations.inc({ kind, outcome: 'retry' })
        return
      }
      metrics.evaluations.inc({ kind, outcome: 'failed' })
      this.o.onFailed(sub, err)
    }
  }
}
