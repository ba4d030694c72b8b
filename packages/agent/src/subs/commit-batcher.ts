/**
 * The commit path and the tick.
 *
 * - Changes come in through `replica.onCommit` (local writes and merges from peers alike): the
 *   listener only queues the changed keys (change-queue.ts) and arms a tick; it does no SQL,
 *   decodes nothing and never throws into the write path.
 * - On the tick (`[subscriptions] batch_ms` later, or later still while the manager rests after
 *   a fan-out) the keys go to the subscriptions that read their tables, which are scheduled,
 *   and update streams get their notifications.
 */
import type { Logger } from 'pino'
import type { CommitListener } from '../crdt/replica.ts'
import { SUBS_SUBSCRIPTION_PENDING_KEYS_MAX } from '../config/defaults.ts'
import type { SubsMetrics } from '../metrics/subs-metrics.ts'
import type { Clock, TimerId } from '../runtime/clock.ts'
import { ChangeQueue } from './change-queue.ts'
import type { SubsRegistry } from './subs-registry.ts'
import type { Subscription } from './subscription.ts'
import type { UpdatesHub } from './updates.ts'

export interface CommitBatcherOptions {
  readonly clock: Clock
  readonly registry: SubsRegistry
  readonly updates: UpdatesHub
  readonly metrics: SubsMetrics
  readonly log: Logger
  /** `[subscriptions] batch_ms` */
  readonly batchMs: number
  /** `[subscriptions] max_pending_keys` */
  readonly maxPendingKeys: number
  /** A subscription got keys (or must re-run in full): it is handed to the scheduler. */
  readonly schedule: (sub: Subscription) => void
  /** After each tick. */
  readonly onTick: () => void
}

export class CommitBatcher {
  private readonly o: CommitBatcherOptions
  private readonly queue: ChangeQueue
  private timer: TimerId | null = null
  /**
   * No tick before this (Clock ms): after writing change events to listeners, the manager
   * rests as long as the writing took, so that under load fan-out takes at most about half the
   * time and the changes that arrive meanwhile go out together, in fewer writes.
   */
  private restUntilMs = 0
  private stopped = false

  constructor(o: CommitBatcherOptions) {
    this.o = o
    this.queue = new ChangeQueue(o.maxPendingKeys)
  }

  /** No changed key is waiting for a tick. */
  get empty(): boolean {
    return this.queue.empty
  }

  /** Changed keys waiting for a tick. */
  get size(): number {
    return this.queue.size
  }

  /** Never throws and does no heavy work: it runs inside every commit. */
  readonly onCommit: CommitListener = (event) => {
    try {
      const { registry, updates } = this.o
      for (const row of event.rows) {
        const table = row.table.toLowerCase()
        if (registry.reads(table)) this.queue.add(table, row.pk)
        if (updates.listening(table)) updates.record(table, row.pk, row.deleted)
      }
      if (!this.queue.empty || !updates.empty) this.arm()
    } catch {
      // Counted, never rethrown: a subscription problem must not fail or slow a write.
      this.o.metrics.commitErrors.inc()
    }
  }

  /** No tick before `untilMs` (Clock ms): see `restUntilMs`. */
  rest(untilMs: number): void {
    this.restUntilMs = Math.max(this.restUntilMs, untilMs)
  }

  /** Runs the tick now (a pending one is cancelled). */
  flush(): void {
    if (this.timer !== null) {
      this.o.clock.clearTimer(this.timer)
      this.timer = null
    }
    this.tick()
  }

  stop(): void {
    this.stopped = true
    if (this.timer !== null) this.o.clock.clearTimer(this.timer)
    this.timer = null
  }

  private arm(): void {
    if (this.timer !== null || this.stopped) return
    const { clock, batchMs } = this.o
    this.timer = clock.setTimer(Math.max(batchMs, this.restUntilMs - clock.now()), () => {
      this.timer = null
      this.tick()
    })
  }

  /** Hands queued keys to subscriptions and notifications to update streams. */
  private tick(): void {
    const { registry, updates, metrics } = this.o
    try {
      if (this.queue.overflows > 0) {
        metrics.overflows.inc({ scope: 'queue' }, this.queue.overflows)
        this.queue.overflows = 0
      }
      const { keys, overflowed } = this.queue.drain()
      for (const [table, tableKeys] of keys) {
        for (const sub of registry.readersOf(table)) {
          if (sub.addKeys(table, tableKeys, SUBS_SUBSCRIPTION_PENDING_KEYS_MAX)) {
            metrics.overflows.inc({ scope: 'subscription' })
          }
          this.o.schedule(sub)
        }
      }
      for (const table of overflowed) {
        for (const sub of registry.readersOf(table)) {
          sub.requireFull()
          this.o.schedule(sub)
        }
      }
      const before = updates.notifications
      updates.flush()
      metrics.notifications.inc(updates.notifications - before)
    } catch (err) {
      metrics.commitErrors.inc()
      this.o.log.error({ err }, 'subscription tick failed')
    }
    this.o.onTick()
  }
}
