/**
 * Prometheus metrics of subscriptions and update streams. Counters are counted where things
 * happen; gauges (sizes of every queue and buffer, next to the cap that bounds it) are read
 * from the subscription manager at scrape time.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { SUBS_RECENT_BYTES } from '../config/defaults.ts'

/** Sizes the manager reports at scrape time. */
export interface SubsGauges {
  readonly subscriptions: { readonly incremental: number; readonly full: number }
  readonly listeners: { readonly subscription: number; readonly updates: number }
  /** Largest number of changes any listener is behind its subscription. */
  readonly listenerLagMax: number
  /** Bytes written to listeners' connections and not yet sent, summed. */
  readonly listenerBufferedBytes: number
  /** Notifications queued in update streams, summed. */
  readonly updatesBuffered: number
  /** Changed keys waiting: in the agent-wide queue and held by subscriptions. */
  readonly pendingKeys: { readonly queue: number; readonly subscriptions: number }
  /** Change events kept for resumes, over all subscriptions. */
  readonly historyChanges: number
  /** Bytes of recent change events kept in memory, over all subscriptions. */
  readonly recentBytes: number
  /** Evaluations running or waiting for their turn. */
  readonly evaluationsQueued: number
}

export interface SubsCaps {
  readonly maxSubscriptions: number
  readonly maxListeners: number
  readonly maxListenerLag: number
  readonly maxHistory: number
  readonly maxPendingKeys: number
}

export interface SubsMetrics {
  readonly rejected: Counter<'reason'>
  readonly listenersCut: Counter<'reason'>
  readonly dropped: Counter<'reason'>
  readonly evaluations: Counter<'kind' | 'outcome'>
  readonly evaluationSeconds: Histogram<'kind'>
  readonly changes: Counter
  readonly notifications: Counter
  readonly overflows: Counter<'scope'>
  readonly commitErrors: Counter
  /** Sets where the gauges are read from (the manager, once it exists). */
  bind(source: () => SubsGauges): void
}

export function createSubsMetrics(registry: Registry, caps: SubsCaps): SubsMetrics {
  let source: (() => SubsGauges) | null = null
  const gauge = (
    name: string,
    help: string,
    read: (g: SubsGauges, set: (labels: Record<string, string>, v: number) => void) => void,
    labelNames: readonly string[] = [],
  ): void => {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        const g = source?.()
        if (g !== undefined) {
          read(g, (labels, v) => {
            this.set(labels, v)
          })
        }
      },
    })
  }
  const cap = (name: string, help: string, value: number): void => {
    new Gauge({ name, help, registers: [registry] }).set(value)
  }

  gauge(
    'patina_subs_subscriptions',
    'Live subscriptions, by how they are maintained (incremental or full re-evaluation)',
    (g, set) => {
      set({ mode: 'incremental' }, g.subscriptions.incremental)
      set({ mode: 'full' }, g.subscriptions.full)
    },
    ['mode'],
  )
  cap(
    'patina_subs_subscriptions_max',
    'Cap on live subscriptions ([subscriptions] max_subscriptions)',
    caps.maxSubscriptions,
  )
  gauge(
    'patina_subs_listeners',
    'Open streams: subscription listeners and update streams',
    (g, set) => {
      set({ kind: 'subscription' }, g.listeners.subscription)
      set({ kind: 'updates' }, g.listeners.updates)
    },
    ['kind'],
  )
  cap(
    'patina_subs_listeners_max',
    'Cap on open streams ([subscriptions] max_listeners)',
    caps.maxListeners,
  )
  gauge(
    'patina_subs_listener_lag_changes',
    'Changes the furthest-behind listener has not been handed yet',
    (g, set) => {
      set({}, g.listenerLagMax)
    },
  )
  gauge(
    'patina_subs_updates_buffered_notifications',
    'Notifications queued in update streams, summed',
    (g, set) => {
      set({}, g.updatesBuffered)
    },
  )
  cap(
    'patina_subs_listener_lag_changes_max',
    'A listener further behind (or an update stream with more queued) is cut off ([subscriptions] max_listener_lag)',
    caps.maxListenerLag,
  )
  gauge(
    'patina_subs_listener_buffered_bytes',
    "Bytes written to listeners' connections and not yet sent, summed",
    (g, set) => {
      set({}, g.listenerBufferedBytes)
    },
  )
  gauge(
    'patina_subs_pending_keys',
    'Changed primary keys waiting to be matched: in the queue, and held by subscriptions',
    (g, set) => {
      set({ where: 'queue' }, g.pendingKeys.queue)
      set({ where: 'subscriptions' }, g.pendingKeys.subscriptions)
    },
    ['where'],
  )
  cap(
    'patina_subs_pending_keys_max',
    'Cap on the queue of changed keys; beyond it subscriptions re-run in full ([subscriptions] max_pending_keys)',
    caps.maxPendingKeys,
  )
  gauge(
    'patina_subs_history_changes',
    'Change events kept for resumes, over all subscriptions',
    (g, set) => {
      set({}, g.historyChanges)
    },
  )
  cap(
    'patina_subs_history_changes_max',
    'Change events kept per subscription ([subscriptions] max_history)',
    caps.maxHistory,
  )
  gauge(
    'patina_subs_recent_changes_bytes',
    `Bytes of recent change events kept in memory for listeners near the head (at most ${SUBS_RECENT_BYTES / 1024} KiB per subscription)`,
    (g, set) => {
      set({}, g.recentBytes)
    },
  )
  gauge(
    'patina_subs_evaluations_queued',
    'Subscriptions with an evaluation running or waiting for its turn',
    (g, set) => {
      set({}, g.evaluationsQueued)
    },
  )

  return {
    rejected: new Counter({
      name: 'patina_subs_rejected_total',
      help: 'Subscription and update requests refused because a cap was reached, by cap',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    listenersCut: new Counter({
      name: 'patina_subs_listeners_cut_total',
      help: 'Streams the agent ended with an error event: slow (too far behind), history (its changes were gone), failed (the subscription failed), shutdown',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    dropped: new Counter({
      name: 'patina_subs_dropped_total',
      help: 'Subscriptions dropped: idle (no listener for idle_timeout_ms), failed (query error), restore (could not be restored)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    evaluations: new Counter({
      name: 'patina_subs_evaluations_total',
      help: 'Evaluations by kind (first, full, keys) and outcome (ok, retry, failed)',
      labelNames: ['kind', 'outcome'] as const,
      registers: [registry],
    }),
    evaluationSeconds: new Histogram({
      name: 'patina_subs_evaluation_duration_seconds',
      help: 'Time from the start of an evaluation to its change events, by kind',
      labelNames: ['kind'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30],
      registers: [registry],
    }),
    changes: new Counter({
      name: 'patina_subs_changes_total',
      help: 'Change events logged, over all subscriptions',
      registers: [registry],
    }),
    notifications: new Counter({
      name: 'patina_subs_notifications_total',
      help: 'Notifications queued to update streams',
      registers: [registry],
    }),
    overflows: new Counter({
      name: 'patina_subs_pending_overflows_total',
      help: 'Times changed keys overflowed a cap (queue: agent-wide, subscription: one subscription) and a full re-evaluation replaced them',
      labelNames: ['scope'] as const,
      registers: [registry],
    }),
    commitErrors: new Counter({
      name: 'patina_subs_commit_listener_errors_total',
      help: 'Errors caught in the commit listener (it never throws into the write path)',
      registers: [registry],
    }),
    bind(s) {
      source = s
    },
  }
}
