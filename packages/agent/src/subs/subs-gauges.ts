/**
 * The subscription gauges (metrics/subs-metrics.ts), read from the manager's parts once per
 * scrape: O(subscriptions + listeners), nothing kept between scrapes.
 */
import type { SubsGauges } from '../metrics/subs-metrics.ts'
import type { Subscription } from './subscription.ts'
import type { UpdatesHub } from './updates.ts'

export function subsGauges(parts: {
  readonly subscriptions: Iterable<Subscription>
  readonly updates: UpdatesHub
  /** Changed keys in the agent-wide queue, waiting for a tick. */
  readonly queuedKeys: number
  /** Evaluations queued, running or deferred. */
  readonly evaluations: number
}): SubsGauges {
  let incremental = 0
  let full = 0
  let subListeners = 0
  let lagMax = 0
  let buffered = 0
  let held = 0
  let history = 0
  let recentBytes = 0
  for (const sub of parts.subscriptions) {
    if (sub.plan.mode === 'full') full++
    else incremental++
    held += sub.pendingCount
    recentBytes += sub.recentBytes
    history += Math.max(0, sub.lastChange - sub.firstChange + 1)
    for (const l of sub.listeners) {
      subListeners++
      lagMax = Math.max(lagMax, sub.lastChange - l.cursor)
      buffered += l.bufferedBytes()
    }
  }
  const updates = parts.updates
  for (const l of updates.all()) buffered += l.bufferedBytes() + l.queuedBytes
  return {
    subscriptions: { incremental, full },
    listeners: { subscription: subListeners, updates: updates.size },
    listenerLagMax: lagMax,
    listenerBufferedBytes: buffered,
    updatesBuffered: updates.queued(),
    pendingKeys: { queue: parts.queuedKeys, subscriptions: held },
    historyChanges: history,
    recentBytes,
    evaluationsQueued: parts.evaluations,
  }
}
