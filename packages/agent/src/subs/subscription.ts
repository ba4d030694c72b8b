/**
 * One subscription's state: its plan, the change keys waiting to be matched, the change ids
 * it has logged, its listeners, and a small in-memory window of its latest change events so
 * that listeners at the head do not read them back from SQLite.
 */
import type { SubsError } from './errors.ts'
import type { Plan } from './planner.ts'
import type { EncodedChunk } from './streams.ts'

export type SubscriptionState =
  /** Waiting for its first result. */
  | 'loading'
  | 'live'
  /** Its query failed on the current data; listeners were told and it is gone. */
  | 'failed'
  /** Dropped (idle) or the agent is stopping. */
  | 'closed'

/** A change event as listeners get it. */
export interface LoggedChange {
  readonly id: number
  readonly line: string
}

/** One stream attached to a subscription (streams.ts `SubscriptionWriter`). */
export interface SubListener {
  /** The last change id written to the stream (the snapshot's change id before any). */
  cursor: number
  /** Why the agent cut this listener off (it writes this as an error event, then ends). */
  cut: SubsError | null
  /** Its cursor and lag when the previous change events were published (see the manager). */
  checkedCursor: number
  checkedLag: number
  /** At the head and draining: takes published change events through `deliver`. */
  readonly live: boolean
  /** Newly published change events, encoded once for every listener. */
  deliver(chunks: readonly EncodedChunk[]): void
  /** Ends the stream with an error event if it must end (cut, failed, closed, stopping). */
  check(): void
  /** Ends the connection at once (a cut listener that did not take its error event). */
  readonly destroy: () => void
  /** Bytes written to the connection and not yet sent. */
  readonly bufferedBytes: () => number
}

export class Subscription {
  readonly num: number
  readonly id: string
  readonly sqlText: string
  readonly plan: Plan
  readonly createdMs: number
  state: SubscriptionState
  lastChange: number
  /** Oldest change id still in the log (lastChange + 1 when none is). */
  firstChange: number
  rowCount = 0
  failure: string | null = null

  // ---- matching work (driven by the manager's scheduler)
  private pending = new Map<string, Map<string, Uint8Array>>()
  pendingCount = 0
  /** Re-run the whole query (restart reconciliation, overflow, full mode, a lost batch). */
  needsFull: boolean
  /** In the scheduler's run queue. */
  queued = false
  /** An evaluation is running. */
  running = false
  /** Do not evaluate before this (retry back-off, full-mode pacing). */
  notBeforeMs = 0
  lastFullMs = 0
  /** Aborts a running evaluation when the subscription goes away. */
  readonly abort = new AbortController()
  readonly ready: Promise<void>
  private settleReady: ((err: Error | null) => void) | null = null

  // ---- listeners
  readonly listeners = new Set<SubListener>()
  idleSinceMs: number | null
  private readonly recent: LoggedChange[] = []
  private readonly recentMax: number
  private readonly recentBytesMax: number
  /** Bytes of the change events kept in memory. */
  recentBytes = 0

  constructor(init: {
    readonly num: number
    readonly id: string
    readonly sqlText: string
    readonly plan: Plan
    readonly createdMs: number
    readonly lastChange: number
    readonly firstChange: number
    /** A new subscription needs its first result; a restored one is reconciled in full. */
    readonly restored: boolean
    readonly recentMax: number
    readonly recentBytesMax: number
    readonly nowMs: number
  }) {
    this.num = init.num
    this.id = init.id
    this.sqlText = init.sqlText
    this.plan = init.plan
    this.createdMs = init.createdMs
    this.lastChange = init.lastChange
    this.firstChange = init.firstChange
    this.recentMax = init.recentMax
    this.recentBytesMax = init.recentBytesMax
    this.state = init.restored ? 'live' : 'loading'
    this.needsFull = init.restored
    this.idleSinceMs = init.nowMs
    this.ready = new Promise<void>((resolve, reject) => {
      this.settleReady = (err) => {
        if (err === null) resolve()
        else reject(err)
      }
    })
    // A rejected `ready` nobody awaits must not become an unhandled rejection.
    this.ready.catch(() => undefined)
    if (init.restored) this.markReady(null)
  }

  markReady(err: Error | null): void {
    this.settleReady?.(err)
    this.settleReady = null
  }

  get active(): boolean {
    return this.state === 'loading' || this.state === 'live'
  }

  hasWork(): boolean {
    return this.active && (this.state === 'loading' || this.needsFull || this.pendingCount > 0)
  }

  /**
   * Queues changed keys of `table`. Full-mode subscriptions only note that a re-run is due;
   * an incremental one holding more than `max` keys gives them up for a full re-run.
   */
  addKeys(table: string, keys: ReadonlyMap<string, Uint8Array>, max: number): boolean {
    if (this.plan.mode === 'full' || this.needsFull) {
      this.needsFull = true
      return false
    }
    let mine = this.pending.get(table)
    if (mine === undefined) {
      mine = new Map()
      this.pending.set(table, mine)
    }
    for (const [id, pk] of keys) {
      if (mine.has(id)) continue
      mine.set(id, pk)
      this.pendingCount++
    }
    if (this.pendingCount > max) {
      this.clearKeys()
      this.needsFull = true
      return true
    }
    return false
  }

  /** Takes up to `max` queued keys, per table. */
  takeKeys(max: number): Map<string, Uint8Array[]> {
    const taken = new Map<string, Uint8Array[]>()
    let n = 0
    for (const [table, keys] of this.pending) {
      const list: Uint8Array[] = []
      for (const [id, pk] of keys) {
        if (n >= max) break
        list.push(pk)
        keys.delete(id)
        n++
      }
      if (list.length > 0) taken.set(table, list)
      if (keys.size === 0) this.pending.delete(table)
      if (n >= max) break
    }
    this.pendingCount -= n
    return taken
  }

  clearKeys(): void {
    this.pending.clear()
    this.pendingCount = 0
  }

  /** Records newly logged changes (the manager hands them to the listeners). */
  published(changes: readonly LoggedChange[], lastChange: number, firstChange: number): void {
    for (const c of changes) {
      this.recent.push(c)
      this.recentBytes += c.line.length
    }
    let drop = 0
    let bytes = this.recentBytes
    while (
      drop < this.recent.length &&
      (this.recent.length - drop > this.recentMax || bytes > this.recentBytesMax)
    ) {
      bytes -= (this.recent[drop] as LoggedChange).line.length
      drop++
    }
    if (drop > 0) {
      this.recent.splice(0, drop)
      this.recentBytes = bytes
    }
    this.lastChange = lastChange
    this.firstChange = Math.max(this.firstChange, firstChange)
  }

  /** Lets every listener see that it must end (failed, closed, stopping). */
  checkAll(): void {
    for (const l of this.listeners) l.check()
  }

  /** Changes after `after` from the in-memory window, or null when it does not reach back. */
  recentAfter(after: number, limit: number): LoggedChange[] | null {
    const first = this.recent[0]
    if (first === undefined || first.id > after + 1) return after >= this.lastChange ? [] : null
    const start = after + 1 - first.id
    return this.recent.slice(start, start + limit)
  }
}
