/**
 * Restore at start: the subscriptions stored in the subscriptions database, planned again
 * against the current schema. Each one restored is re-run in full against the current database
 * (it starts with `needsFull`), so that nothing committed while the agent was down (or between
 * a commit and its matching, at a crash) is missed. One whose tables are now keyed differently,
 * or whose result columns changed, is dropped from the database and refused, with the reason.
 */
import type { Logger } from 'pino'
import { SUBS_RECENT_BYTES, SUBS_RECENT_CHANGES } from '../config/defaults.ts'
import type { Clock } from '../runtime/clock.ts'
import { messageOf, SubsError } from './errors.ts'
import { planSignature, type Plan, type Planner } from './planner.ts'
import type { SubsStore } from './subs-store.ts'
import { Subscription } from './subscription.ts'

export interface Restored {
  readonly restored: readonly Subscription[]
  /** Stored subscriptions that could not be restored (and were dropped), with why. */
  readonly refused: readonly { readonly id: string; readonly error: SubsError }[]
}

export function restoreSubscriptions(o: {
  readonly store: SubsStore
  readonly planner: Planner
  readonly clock: Clock
  readonly log: Logger
}): Restored {
  const restored: Subscription[] = []
  const refused: { id: string; error: SubsError }[] = []
  for (const stored of o.store.loadAll()) {
    let plan: Plan
    try {
      plan = o.planner.plan({ sql: stored.boundSql, params: stored.params })
      if (planSignature(plan) !== stored.signature) {
        throw new Error('the tables it reads changed how their rows are keyed')
      }
      if (plan.columns.join('\u0000') !== stored.columns.join('\u0000')) {
        throw new Error('its result columns changed (a schema change)')
      }
    } catch (err) {
      o.log.warn({ sub: stored.id, err: messageOf(err) }, 'subscription not restored')
      o.store.drop(stored.num)
      refused.push({
        id: stored.id,
        error: new SubsError(
          'FAILED',
          `subscription ${stored.id} could not be restored: ${messageOf(err)}`,
        ),
      })
      continue
    }
    restored.push(
      new Subscription({
        num: stored.num,
        id: stored.id,
        sqlText: stored.sqlText,
        plan,
        createdMs: stored.createdMs,
        lastChange: stored.lastChange,
        firstChange: stored.firstChange,
        rowCount: o.store.rowCount(stored.num),
        restored: true,
        recentMax: SUBS_RECENT_CHANGES,
        recentBytesMax: SUBS_RECENT_BYTES,
        nowMs: o.clock.now(),
      }),
    )
  }
  return { restored, refused }
}
