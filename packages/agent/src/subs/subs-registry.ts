/**
 * The live subscriptions of an agent, by id, by query key (a second subscriber to the same
 * query joins the first) and by table read (where a commit's changed keys go), and the
 * tombstones of the ones that are gone, which explain a later `GET /v1/subscriptions/:id`.
 */
import { SUBS_TOMBSTONES_MAX } from '../config/defaults.ts'
import { SubsError } from './errors.ts'
import type { Subscription } from './subscription.ts'

const NO_SUBSCRIPTIONS: ReadonlySet<Subscription> = new Set()

export class SubsRegistry {
  private readonly byId = new Map<string, Subscription>()
  private readonly byKey = new Map<string, Subscription>()
  private readonly byTable = new Map<string, Set<Subscription>>()
  /** Why each recently dropped or failed subscription is gone, oldest first. */
  private readonly tombstones = new Map<string, SubsError>()

  get size(): number {
    return this.byId.size
  }

  all(): IterableIterator<Subscription> {
    return this.byId.values()
  }

  get(id: string): Subscription | undefined {
    return this.byId.get(id)
  }

  /** The subscription to the query with this key (`Plan.key`). */
  forKey(key: string): Subscription | undefined {
    return this.byKey.get(key)
  }

  /** True when some subscription reads `table` (lower case): only then are its keys queued. */
  reads(table: string): boolean {
    return this.byTable.has(table)
  }

  /** The subscriptions that read `table` (lower case). */
  readersOf(table: string): ReadonlySet<Subscription> {
    return this.byTable.get(table) ?? NO_SUBSCRIPTIONS
  }

  add(sub: Subscription): void {
    this.byId.set(sub.id, sub)
    this.byKey.set(sub.plan.key, sub)
    for (const table of sub.plan.tables) {
      let set = this.byTable.get(table)
      if (set === undefined) {
        set = new Set()
        this.byTable.set(table, set)
      }
      set.add(sub)
    }
  }

  delete(sub: Subscription): void {
    this.byId.delete(sub.id)
    if (this.byKey.get(sub.plan.key) === sub) this.byKey.delete(sub.plan.key)
    for (const table of sub.plan.tables) {
      const set = this.byTable.get(table)
      set?.delete(sub)
      if (set?.size === 0) this.byTable.delete(table)
    }
  }

  /** Keeps why `id` is gone; beyond SUBS_TOMBSTONES_MAX the oldest reason is forgotten. */
  remember(id: string, err: SubsError): void {
    this.tombstones.set(id, err)
    if (this.tombstones.size > SUBS_TOMBSTONES_MAX) {
      const oldest = this.tombstones.keys().next().value
      if (oldest !== undefined) this.tombstones.delete(oldest)
    }
  }

  /** The error for a subscription that is not here: why it is gone, or NOT_FOUND. */
  missing(id: string): SubsError {
    return this.tombstones.get(id) ?? new SubsError('NOT_FOUND', `no subscription with id ${id}`)
  }
}
