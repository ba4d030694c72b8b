/**
 * One subscription's state: its plan, the change keys waiting to be matched, the change ids
 * it has logged, its listeners, and a small in-memory window of its latest change events so
 * that listeners at the head do not read them back from SQLite.
 *
 * Its state changes only through its methods: the manager's parts (scheduler, fan-out, streams,
 * sweep) say what happened and the subscription keeps itself consistent. Times are in the
 * manager's Clock's monotonic milliseconds (`Clock.now()`), passed in: it reads no clock.
 */
import type { SubsError } from './errors.ts'
import type { Plan } from './planner.ts'
import type { DiffResult } from './subs-store.ts'

export type SubscriptionState =
  /** Waiting for its first result. */
  | 'loading'
  | 'live'
  /** Its query failed on the current data; listeners were told and it is gone. */
  | 'failed'
  /** Dropped (idle) or the agent is stopping. */
  | 'closed'

/** Change events encoded once for every listener: whole lines, `firstId`..`lastId`. */
export interface EncodedChunk {
  readonly firstId: number
  readonly lastId: number
  readonly bytes: Buffer
}

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
  /** Wall-clock creation time (Unix ms). */
  readonly createdMs: number
  /** Settles with the first result (rejects if the subscription failed or closed first). */
  readonly ready: Promise<void>
  private current: SubscriptionState
  private last: number
  private first: number
  private rows: number
  private failureMessage: string | null = null
  private failureError: Error | null = null
  private settleReady: ((err: Error | null) => void) | null = null
  /** Aborts a running evaluation when the subscription goes away. */
  private readonly abort = new AbortController()

  // ---- matching work (driven by the manager's scheduler)
  private readonly pending = new Map<string, Map<string, Uint8Array>>()
  private pendingKeys = 0
  /** Re-run the whole query (restart reconciliation, overflow, full mode, a lost batch). */
  private fullDue: boolean
  /** No evaluation before this (retry back-off). */
  private notBeforeMs = 0
  /** When the last first or full evaluation ended (full-mode pacing). */
  private lastFullMs = Number.NEGATIVE_INFINITY

  // ---- listeners
  private readonly attached = new Set<SubListener>()
  /** Since when nobody listens or waits (null: someone does). */
  private idleSinceMs: number | null
  private readonly recent: LoggedChange[] = []
  private readonly recentMax: number
  private readonly recentBytesMax: number
  private recentBytesHeld = 0

  constructor(init: {
    readonly num: number
    readonly id: string
    readonly sqlText: string
    readonly plan: Plan
    readonly createdMs: number
    readonly lastChange: number
    readonly firstChange: number
    /** Rows of its stored result (0 for a new one). */
    readonly rowCount: number
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
    this.last = init.lastChange
    this.first = init.firstChange
    this.rows = init.rowCount
    this.recentMax = init.recentMax
    this.recentBytesMax = init.recentBytesMax
    this.current = init.restored ? 'live' : 'loading'
    this.fullDue = init.restored
    this.idleSinceMs = init.nowMs
    this.ready = new Promise<void>((resolve, reject) => {
      this.settleReady = (err) => {
        if (err === null) resolve()
        else reject(err)
      }
    })
    // A rejected `ready` nobody awaits must not become an unhandled rejection.
    this.ready.catch(() => undefined)
    if (init.restored) this.settle(null)
  }

  get state(): SubscriptionState {
    return this.current
  }

  get active(): boolean {
    return this.current === 'loading' || this.current === 'live'
  }

  /** The last change id logged. */
  get lastChange(): number {
    return this.last
  }

  /** Oldest change id still in the log (lastChange + 1 when none is). */
  get firstChange(): number {
    return this.first
  }

  /** Rows of the stored result. */
  get rowCount(): number {
    return this.rows
  }

  /** Why it failed (state 'failed'). */
  get failure(): string | null {
    return this.failureMessage
  }

  /** The error it failed with (state 'failed'): its code tells listeners what happened. */
  get failureCause(): Error | null {
    return this.failureError
  }

  /** Aborted when the subscription goes away: evaluations pass it to their reader. */
  get signal(): AbortSignal {
    return this.abort.signal
  }

  get needsFull(): boolean {
    return this.fullDue
  }

  /** Changed keys waiting to be matched. */
  get pendingCount(): number {
    return this.pendingKeys
  }

  /** Bytes of the change events kept in memory. */
  get recentBytes(): number {
    return this.recentBytesHeld
  }

  get listeners(): ReadonlySet<SubListener> {
    return this.attached
  }

  // ---------------------------------------------------------------- lifecycle

  /** Its first result is stored: listeners can be served. */
  wentLive(): void {
    if (this.current !== 'loading') return
    this.current = 'live'
    this.settle(null)
  }

  /** Its query failed on the current data (`error` rejects `ready`); listeners are told next. */
  fail(message: string, error: Error): void {
    this.failureMessage = message
    this.failureError = error
    this.end('failed', error)
  }

  /** Dropped (idle) or the agent is stopping; `reason` rejects `ready` if it was pending. */
  close(reason: Error): void {
    this.end('closed', reason)
  }

  private end(state: 'failed' | 'closed', reason: Error): void {
    this.current = state
    this.abort.abort()
    this.clearKeys()
    this.settle(reason)
  }

  private settle(err: Error | null): void {
    this.settleReady?.(err)
    this.settleReady = null
  }

  // ---------------------------------------------------------------- matching work

  hasWork(): boolean {
    return this.active && (this.current === 'loading' || this.fullDue || this.pendingKeys > 0)
  }

  /**
   * When it may be evaluated next (monotonic ms): after a retry back-off, and for full-mode
   * subscriptions `fullEvalIntervalMs` after the previous full run.
   */
  dueAtMs(fullEvalIntervalMs: number): number {
    if (this.plan.mode === 'full' && this.current === 'live') {
      return Math.max(this.notBeforeMs, this.lastFullMs + fullEvalIntervalMs)
    }
    return this.notBeforeMs
  }

  /** An evaluation could not run (reader busy, SQLite busy): try again at `atMs`, in full. */
  retryAt(atMs: number): void {
    this.notBeforeMs = atMs
    // The keys it took are lost: a full re-run redoes their work exactly.
    if (this.current === 'live') this.requireFull()
  }

  /** A first or full evaluation ended at `nowMs`. */
  ranFull(nowMs: number): void {
    this.lastFullMs = nowMs
  }

  /** Its keys are given up for one full re-evaluation (a queue overflowed, a lost batch). */
  requireFull(): void {
    this.clearKeys()
    this.fullDue = true
  }

  /**
   * A full evaluation starts: keys queued from here on are changes after its snapshot began
   * (or harmless), so the ones held until now are dropped.
   */
  startFullRun(): void {
    this.fullDue = false
    this.clearKeys()
  }

  /**
   * Queues changed keys of `table`. Full-mode subscriptions only note that a re-run is due;
   * an incremental one holding more than `max` keys gives them up for a full re-run (true).
   */
  addKeys(table: string, keys: ReadonlyMap<string, Uint8Array>, max: number): boolean {
    if (this.plan.mode === 'full' || this.fullDue) {
      this.fullDue = true
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
      this.pendingKeys++
    }
    if (this.pendingKeys > max) {
      this.requireFull()
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
    this.pendingKeys -= n
    return taken
  }

  private clearKeys(): void {
    this.pending.clear()
    this.pendingKeys = 0
  }

  /** Records an evaluation's result: its row count and newly logged changes (fan-out follows). */
  recordDiff(diff: DiffResult): void {
    this.rows += diff.rowsDelta
    for (const c of diff.changes) {
      this.recent.push(c)
      this.recentBytesHeld += c.line.length
    }
    let drop = 0
    let bytes = this.recentBytesHeld
    while (
      drop < this.recent.length &&
      (this.recent.length - drop > this.recentMax || bytes > this.recentBytesMax)
    ) {
      bytes -= (this.recent[drop] as LoggedChange).line.length
      drop++
    }
    if (drop > 0) {
      this.recent.splice(0, drop)
      this.recentBytesHeld = bytes
    }
    this.last = diff.lastChange
    this.first = Math.max(this.first, diff.firstChange)
  }

  /** Changes after `after` from the in-memory window, or null when it does not reach back. */
  recentAfter(after: number, limit: number): LoggedChange[] | null {
    const first = this.recent[0]
    if (first === undefined || first.id > after + 1) return after >= this.last ? [] : null
    const start = after + 1 - first.id
    return this.recent.slice(start, start + limit)
  }

  // ---------------------------------------------------------------- listeners

  /** A stream waits for the first result: the subscription is not idle meanwhile. */
  holdForListener(): void {
    this.idleSinceMs = null
  }

  /** The wait is over (served or given up); with no listener, idle from `nowMs`. */
  releaseHold(nowMs: number): void {
    if (this.attached.size === 0) this.idleSinceMs = nowMs
  }

  addListener(l: SubListener): void {
    this.attached.add(l)
    this.idleSinceMs = null
  }

  /** A stream ended; the last one leaves the subscription idle from `nowMs`. */
  removeListener(l: SubListener, nowMs: number): void {
    this.attached.delete(l)
    if (this.attached.size === 0) this.idleSinceMs = nowMs
  }

  /** Live, with nobody listening or waiting for at least `timeoutMs` at `nowMs`. */
  idleFor(nowMs: number, timeoutMs: number): boolean {
    return (
      this.current === 'live' &&
      this.attached.size === 0 &&
      this.idleSinceMs !== null &&
      nowMs - this.idleSinceMs >= timeoutMs
    )
  }

  /** Lets every listener see that it must end (failed, closed, stopping). */
  checkAll(): void {
    for (const l of this.attached) l.check()
  }
}
