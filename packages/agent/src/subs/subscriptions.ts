/**
 * The subscription manager: owns every subscription and update stream of an agent.
 *
 * - Changes come in through `replica.onCommit` (local writes and merges from peers alike):
 *   the listener only queues the changed keys (change-queue.ts) and arms a tick; it does no
 *   SQL, decodes nothing and never throws into the write path.
 * - On the tick (`[subscriptions] batch_ms` later) the keys go to the subscriptions that read
 *   their tables, and update streams get their notifications.
 * - Change events are encoded once per batch and written by every listener at the head into
 *   its connection (streams.ts); after a fan-out the next tick waits as long as the writing
 *   took (at most FANOUT_REST_MAX_MS), so under load more changes go out per write.
 * - A scheduler runs evaluations (matcher.ts), at most one per subscription and
 *   `reader_threads` at once, round-robin, so one busy subscription delays the others by at
 *   most its turn. A subscription whose query fails is failed alone: its listeners get an
 *   error event, it is dropped, and everything else keeps flowing.
 * - Caps: subscriptions, listeners, listener lag, history, queued keys (see defaults.ts); each
 *   has a metric (subs-metrics.ts).
 * - Subscriptions are stored (subs-store.ts) and restored at start, each then re-run in full
 *   against the current database so that nothing committed while the agent was down (or
 *   between a commit and its matching, at a crash) is missed.
 */
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import type { Config } from '../config/load-config.ts'
import {
  SUBS_CUT_GRACE_MS,
  SUBS_EVAL_KEYS_MAX,
  SUBS_RECENT_BYTES,
  SUBS_RECENT_CHANGES,
  SUBS_RETRY_MS,
  SUBS_STREAM_CHUNK_BYTES,
  SUBS_SUBSCRIPTION_PENDING_KEYS_MAX,
  SUBS_TOMBSTONES_MAX,
} from '../config/defaults.ts'
import type { CommitListener, Statement } from '../crdt/replica.ts'
import type { SubsGauges, SubsMetrics } from '../metrics/subs-metrics.ts'
import type { Synchronous } from '../store/open-db.ts'
import { ChangeQueue } from './change-queue.ts'
import { messageOf, SubsError } from './errors.ts'
import {
  evaluate,
  isTransientStoreError,
  TransientEvalError,
  type EvalRunner,
  type MatcherOptions,
} from './matcher.ts'
import { bindStatement } from './params.ts'
import { planSignature, Planner, type Plan, type TableCatalog } from './planner.ts'
import {
  encodeChanges,
  historyGone,
  sinkLines,
  SubscriptionWriter,
  UpdatesWriter,
  type Sink,
  type StreamStart,
} from './streams.ts'
import { SubsStore, type DiffResult } from './subs-store.ts'
import { Subscription, type SubListener } from './subscription.ts'
import { UpdatesHub, type UpdateListener } from './updates.ts'

/** What the manager needs of the replica. */
export interface CommitSource extends TableCatalog {
  onCommit(listener: CommitListener): () => void
}

export interface SubscriptionsOptions {
  readonly replica: CommitSource
  /** The main database file (read by the planner's read-only connection). */
  readonly dbPath: string
  readonly config: Config['subscriptions']
  /** Durability of the subscriptions database, as `[db] synchronous`. */
  readonly synchronous: Synchronous
  /** Reader processes that run evaluations (a ReaderPool of their own). */
  readonly runner: EvalRunner
  readonly metrics: SubsMetrics
  readonly logger: Logger
  /** Keys bound into one restricted evaluation; default SUBS_EVAL_KEYS_MAX (tests lower it). */
  readonly evalKeysMax?: number
}

export interface StreamRequest {
  /** `from=`: resume after this change id (0 or absent: from the rows). */
  readonly from?: number
  readonly skipRows?: boolean
}

/** What the HTTP layer gives a stream: its connection. */
export interface Connection {
  /** Aborted when the connection closes. */
  readonly signal: AbortSignal
  /** Aborted when the agent stops serving (the stream ends with an error event). */
  readonly closing: AbortSignal
  readonly destroy: () => void
  readonly bufferedBytes: () => number
}

export interface OpenedStream {
  /** The subscription id (`corro-query-id`). */
  readonly id: string
  /** Starts writing the stream into its connection's response (once). */
  readonly serve: (sink: Sink) => void
  /** Or: the stream read in process, as text chunks (serves it on first use). */
  readonly lines: AsyncGenerator<string>
  /** Releases the listener; safe to call more than once (the connection closed). */
  readonly close: () => void
}

export interface SubscriptionInfo {
  readonly id: string
  readonly sql: string
  readonly mode: 'incremental' | 'full'
  readonly state: string
  readonly listeners: number
  readonly changeId: number
  readonly rows: number
  readonly createdMs: number
}

const LIMITS = { pageRows: 512, chunkBytes: SUBS_STREAM_CHUNK_BYTES }
/** The longest rest after writing change events to listeners (see `restUntilMs`). */
const FANOUT_REST_MAX_MS = 50
/** Rows of dropped subscriptions deleted per step of the background clean-up. */
const GC_ROWS_PER_STEP = 2000

export class Subscriptions {
  private readonly o: SubscriptionsOptions
  private readonly config: Config['subscriptions']
  private readonly store: SubsStore
  private readonly planner: Planner
  private readonly log: Logger
  private readonly metrics: SubsMetrics
  private readonly matcher: MatcherOptions
  private readonly byId = new Map<string, Subscription>()
  private readonly byKey = new Map<string, Subscription>()
  private readonly byTable = new Map<string, Set<Subscription>>()
  private readonly tombstones = new Map<string, SubsError>()
  private readonly queue: ChangeQueue
  private readonly updates: UpdatesHub
  private readonly runnable: Subscription[] = []
  private inFlight = 0
  private readonly running = new Set<Promise<void>>()
  private listenerCount = 0
  private tickTimer: NodeJS.Timeout | null = null
  /**
   * No tick before this (performance.now() ms): after writing change events to listeners, the
   * manager rests as long as the writing took, so that under load fan-out takes at most about
   * half the time and the changes that arrive meanwhile go out together, in fewer writes.
   */
  private restUntilMs = 0
  private readonly sweepTimer: NodeJS.Timeout
  private readonly deferred = new Map<Subscription, NodeJS.Timeout>()
  private gcRunning = false
  private idleWaiters: (() => void)[] = []
  private stopped = false
  private readonly unsubscribe: () => void

  private constructor(o: SubscriptionsOptions) {
    this.o = o
    this.config = o.config
    this.log = o.logger.child({ subsystem: 'subs' })
    this.metrics = o.metrics
    this.store = SubsStore.open(o.config.path, o.synchronous)
    this.planner = new Planner({
      path: o.dbPath,
      catalog: o.replica,
      fullReevaluation: o.config.fullReevaluation,
    })
    this.matcher = {
      runner: o.runner,
      store: this.store,
      evalKeysMax: o.evalKeysMax ?? SUBS_EVAL_KEYS_MAX,
      historyMax: o.config.maxHistory,
    }
    this.queue = new ChangeQueue(o.config.maxPendingKeys)
    this.updates = new UpdatesHub(o.config.maxListenerLag, LIMITS.chunkBytes, (l) => {
      // The hub has set `cut` and ended the stream; it still has to be closed if it is stuck.
      this.metrics.listenersCut.inc({ reason: 'slow' })
      setTimeout(l.destroy, SUBS_CUT_GRACE_MS).unref()
    })
    this.metrics.bind(() => this.gauges())
    this.unsubscribe = o.replica.onCommit(this.onCommit)
    // Runs for the life of the manager: drops idle subscriptions.
    const sweepMs = Math.max(10, Math.min(1000, Math.floor(o.config.idleTimeoutMs / 4)))
    this.sweepTimer = setInterval(() => {
      this.sweep()
    }, sweepMs).unref()
  }

  /** Opens the subscriptions database and restores the subscriptions it holds. */
  static open(o: SubscriptionsOptions): Subscriptions {
    const subs = new Subscriptions(o)
    try {
      subs.restore()
    } catch (err) {
      void subs.stop()
      throw err
    }
    return subs
  }

  // ---------------------------------------------------------------- the commit path

  /** Never throws and does no heavy work: it runs inside every commit. */
  private readonly onCommit: CommitListener = (event) => {
    try {
      for (const row of event.rows) {
        const table = row.table.toLowerCase()
        if (this.byTable.has(table)) this.queue.add(table, row.pk)
        if (this.updates.listening(table)) this.updates.record(table, row.pk, row.deleted)
      }
      if (!this.queue.empty || !this.updates.empty) this.armTick()
    } catch {
      // Counted, never rethrown: a subscription problem must not fail or slow a write.
      this.metrics.commitErrors.inc()
    }
  }

  private armTick(): void {
    if (this.tickTimer !== null || this.stopped) return
    const delayMs = Math.max(this.config.batchMs, this.restUntilMs - performance.now())
    this.tickTimer = setTimeout(() => {
      this.tickTimer = null
      this.tick()
    }, delayMs).unref()
  }

  /** Hands queued keys to subscriptions and notifications to update streams. */
  private tick(): void {
    try {
      if (this.queue.overflows > 0) {
        this.metrics.overflows.inc({ scope: 'queue' }, this.queue.overflows)
        this.queue.overflows = 0
      }
      const { keys, overflowed } = this.queue.drain()
      for (const [table, tableKeys] of keys) {
        for (const sub of this.byTable.get(table) ?? []) {
          if (sub.addKeys(table, tableKeys, SUBS_SUBSCRIPTION_PENDING_KEYS_MAX)) {
            this.metrics.overflows.inc({ scope: 'subscription' })
          }
          this.schedule(sub)
        }
      }
      for (const table of overflowed) {
        for (const sub of this.byTable.get(table) ?? []) {
          sub.clearKeys()
          sub.needsFull = true
          this.schedule(sub)
        }
      }
      const before = this.updates.notifications
      this.updates.flush()
      this.metrics.notifications.inc(this.updates.notifications - before)
    } catch (err) {
      this.metrics.commitErrors.inc()
      this.log.error({ err }, 'subscription tick failed')
    }
    this.checkIdle()
  }

  // ---------------------------------------------------------------- scheduling evaluations

  private schedule(sub: Subscription): void {
    if (this.stopped || sub.queued || sub.running || !sub.hasWork()) return
    if (this.deferred.has(sub)) return
    const now = Date.now()
    let notBefore = sub.notBeforeMs
    if (sub.plan.mode === 'full' && sub.state === 'live') {
      notBefore = Math.max(notBefore, sub.lastFullMs + this.config.fullEvalIntervalMs)
    }
    if (notBefore > now) {
      this.deferred.set(
        sub,
        setTimeout(() => {
          this.deferred.delete(sub)
          this.schedule(sub)
        }, notBefore - now).unref(),
      )
      return
    }
    sub.queued = true
    this.runnable.push(sub)
    this.pump()
  }

  private pump(): void {
    while (!this.stopped && this.inFlight < this.config.readerThreads) {
      const sub = this.runnable.shift()
      if (sub === undefined) break
      sub.queued = false
      if (!sub.hasWork() || sub.running) continue
      this.inFlight++
      sub.running = true
      const done = this.evaluateOne(sub).finally(() => {
        this.running.delete(done)
        sub.running = false
        this.inFlight--
        this.schedule(sub)
        this.pump()
        this.checkIdle()
      })
      this.running.add(done)
    }
  }

  private async evaluateOne(sub: Subscription): Promise<void> {
    const started = performance.now()
    let kind = sub.state === 'loading' ? 'first' : sub.needsFull ? 'full' : 'keys'
    try {
      const outcome = await evaluate(sub, this.matcher)
      kind = outcome.kind
      if (!sub.active) return
      for (const diff of outcome.diffs) this.publish(sub, diff)
      if (outcome.kind !== 'keys') sub.lastFullMs = Date.now()
      if (outcome.kind === 'first') {
        sub.state = 'live'
        sub.markReady(null)
      }
      this.metrics.evaluations.inc({ kind, outcome: 'ok' })
      this.metrics.evaluationSeconds.observe({ kind }, (performance.now() - started) / 1000)
    } catch (err) {
      if (!sub.active || this.stopped) return
      if (err instanceof TransientEvalError || isTransientStoreError(err)) {
        if (!(err instanceof TransientEvalError)) {
          this.log.error({ err, sub: sub.id }, 'subscriptions database error; retrying')
        }
        // The keys it took are lost: a full re-run later redoes their work exactly.
        if (sub.state === 'live') sub.needsFull = true
        sub.notBeforeMs = Date.now() + SUBS_RETRY_MS
        this.metrics.evaluations.inc({ kind, outcome: 'retry' })
        return
      }
      this.metrics.evaluations.inc({ kind, outcome: 'failed' })
      this.fail(sub, err)
    }
  }

  private publish(sub: Subscription, diff: DiffResult): void {
    sub.rowCount += diff.rowsDelta
    sub.published(diff.changes, diff.lastChange, diff.firstChange)
    if (diff.changes.length === 0) return
    this.metrics.changes.inc(diff.changes.length)
    // Encoded once, written by every live listener (the others read the log when they can).
    let chunks: ReturnType<typeof encodeChanges> | null = null
    const started = performance.now()
    for (const l of sub.listeners) {
      if (!l.live) continue
      chunks ??= encodeChanges(diff.changes, LIMITS.chunkBytes)
      l.deliver(chunks)
    }
    if (chunks === null) return
    // The writes reach the sockets after this turn (Node flushes corked writes on the next
    // tick): measured once they have.
    setImmediate(() => {
      const now = performance.now()
      const restMs = Math.min(now - started, FANOUT_REST_MAX_MS)
      this.restUntilMs = Math.max(this.restUntilMs, now + restMs)
    })
    // A listener is cut off when it is more than max_listener_lag changes behind and has not
    // moved since the previous publish while already behind then: one that reads, even slowly,
    // or that a single large change put far behind, goes on (it costs a cursor, not a queue;
    // if it falls out of the kept history, its stream ends with that error instead).
    for (const l of sub.listeners) {
      if (l.cut !== null) continue
      const lag = sub.lastChange - l.cursor
      if (lag > this.config.maxListenerLag && l.checkedLag > 0 && l.cursor === l.checkedCursor) {
        this.cutListener(
          l,
          new SubsError(
            'TOO_SLOW',
            `listener fell behind by more than ${this.config.maxListenerLag} changes ` +
              `([subscriptions] max_listener_lag); resume with from=<the last change id you received>`,
          ),
          'slow',
        )
      }
      l.checkedCursor = l.cursor
      l.checkedLag = lag
    }
  }

  /** Ends a listener with an error event; closes its connection if it does not take it. */
  private cutListener(l: SubListener | UpdateListener, reason: SubsError, label: string): void {
    if (l.cut === null) {
      l.cut = reason
      this.metrics.listenersCut.inc({ reason: label })
    }
    l.check()
    setTimeout(l.destroy, SUBS_CUT_GRACE_MS).unref()
  }

  private fail(sub: Subscription, err: unknown): void {
    const message = messageOf(err)
    sub.failure = message
    const code = err instanceof SubsError ? err.code : 'SQL_ERROR'
    const error = new SubsError(code === 'FAILED' ? 'SQL_ERROR' : code, message, { cause: err })
    this.log.warn({ sub: sub.id, err: message }, 'subscription failed')
    sub.markReady(error)
    this.remove(sub, 'failed')
    this.remember(sub.id, new SubsError('FAILED', `subscription ${sub.id} failed: ${message}`))
    if (sub.listeners.size > 0) {
      this.metrics.listenersCut.inc({ reason: 'failed' }, sub.listeners.size)
    }
    sub.checkAll()
  }

  private remember(id: string, err: SubsError): void {
    this.tombstones.set(id, err)
    if (this.tombstones.size > SUBS_TOMBSTONES_MAX) {
      const oldest = this.tombstones.keys().next().value
      if (oldest !== undefined) this.tombstones.delete(oldest)
    }
  }

  /** Forgets a subscription (failed, idle or not restorable) and deletes what it stored. */
  private remove(sub: Subscription, reason: 'failed' | 'idle' | 'restore'): void {
    sub.state = reason === 'failed' ? 'failed' : 'closed'
    sub.abort.abort()
    sub.clearKeys()
    this.byId.delete(sub.id)
    if (this.byKey.get(sub.plan.key) === sub) this.byKey.delete(sub.plan.key)
    for (const table of sub.plan.tables) {
      const set = this.byTable.get(table)
      set?.delete(sub)
      if (set?.size === 0) this.byTable.delete(table)
    }
    const timer = this.deferred.get(sub)
    if (timer !== undefined) clearTimeout(timer)
    this.deferred.delete(sub)
    this.metrics.dropped.inc({ reason })
    try {
      this.store.drop(sub.num)
    } catch (err) {
      this.log.error({ err, sub: sub.id }, 'could not drop a subscription from its database')
    }
    this.collectGarbage()
  }

  private register(sub: Subscription): void {
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

  /** Deletes dropped subscriptions' rows a batch at a time, yielding in between. */
  private collectGarbage(): void {
    if (this.gcRunning || this.stopped) return
    this.gcRunning = true
    const step = (): void => {
      let more = false
      try {
        more = !this.stopped && this.store.gcStep(GC_ROWS_PER_STEP)
      } catch (err) {
        this.log.error({ err }, 'subscription clean-up failed')
      }
      if (more) setTimeout(step, 0).unref()
      else this.gcRunning = false
    }
    setTimeout(step, 0).unref()
  }

  private sweep(): void {
    const now = Date.now()
    for (const sub of [...this.byId.values()]) {
      if (
        sub.listeners.size === 0 &&
        sub.idleSinceMs !== null &&
        now - sub.idleSinceMs >= this.config.idleTimeoutMs &&
        sub.state === 'live'
      ) {
        this.log.info({ sub: sub.id }, 'subscription dropped: no listener')
        this.remove(sub, 'idle')
        this.remember(
          sub.id,
          new SubsError(
            'NOT_FOUND',
            `subscription ${sub.id} was dropped after ${this.config.idleTimeoutMs} ms without a listener ([subscriptions] idle_timeout_ms)`,
          ),
        )
      }
    }
  }

  // ---------------------------------------------------------------- restore

  private restore(): void {
    for (const stored of this.store.loadAll()) {
      let plan: Plan
      try {
        plan = this.planner.plan({ sql: stored.boundSql, params: stored.params })
        if (planSignature(plan) !== stored.signature) {
          throw new Error('the tables it reads changed how their rows are keyed')
        }
        if (plan.columns.join('\u0000') !== stored.columns.join('\u0000')) {
          throw new Error('its result columns changed (a schema change)')
        }
      } catch (err) {
        this.log.warn({ sub: stored.id, err: messageOf(err) }, 'subscription not restored')
        this.store.drop(stored.num)
        this.metrics.dropped.inc({ reason: 'restore' })
        this.remember(
          stored.id,
          new SubsError(
            'FAILED',
            `subscription ${stored.id} could not be restored: ${messageOf(err)}`,
          ),
        )
        continue
      }
      const sub = new Subscription({
        num: stored.num,
        id: stored.id,
        sqlText: stored.sqlText,
        plan,
        createdMs: stored.createdMs,
        lastChange: stored.lastChange,
        firstChange: stored.firstChange,
        restored: true,
        recentMax: SUBS_RECENT_CHANGES,
        recentBytesMax: SUBS_RECENT_BYTES,
        nowMs: Date.now(),
      })
      sub.rowCount = this.store.rowCount(stored.num)
      this.register(sub)
      this.schedule(sub)
    }
    this.collectGarbage()
  }

  // ---------------------------------------------------------------- streams

  /** `POST /v1/subscriptions`: creates the subscription or joins the one with the same query. */
  async subscribe(
    statement: Statement,
    req: StreamRequest,
    conn: Connection,
  ): Promise<OpenedStream> {
    this.checkOpen()
    const plan = this.planner.plan(bindStatement(statement.sql, statement.params))
    let sub = this.byKey.get(plan.key)
    const from = req.from ?? 0
    if (sub === undefined && from > 0) {
      throw new SubsError(
        'RESUME_GONE',
        `no subscription to this query exists any more to resume from change id ${from}: ` +
          'subscribe again without from to start over',
      )
    }
    this.reserveListener()
    try {
      if (sub === undefined) {
        if (this.byId.size >= this.config.maxSubscriptions) {
          this.metrics.rejected.inc({ reason: 'subscriptions' })
          throw new SubsError(
            'OVERLOADED',
            `too many subscriptions (${this.byId.size}, [subscriptions] max_subscriptions); retry later`,
          )
        }
        sub = this.create(statement.sql, plan)
      }
      return await this.open(sub, req, conn)
    } catch (err) {
      this.listenerCount--
      throw err
    }
  }

  /** `GET /v1/subscriptions/:id`. */
  async attach(id: string, req: StreamRequest, conn: Connection): Promise<OpenedStream> {
    this.checkOpen()
    const sub = this.byId.get(id)
    if (sub === undefined) {
      throw this.tombstones.get(id) ?? new SubsError('NOT_FOUND', `no subscription with id ${id}`)
    }
    this.reserveListener()
    try {
      return await this.open(sub, req, conn)
    } catch (err) {
      this.listenerCount--
      throw err
    }
  }

  private create(sqlText: string, plan: Plan): Subscription {
    const id = randomUUID()
    const createdMs = Date.now()
    const num = this.store.create({
      id,
      sqlText,
      boundSql: plan.sql,
      params: { ...plan.params },
      signature: planSignature(plan),
      columns: plan.columns,
      createdMs,
    })
    const sub = new Subscription({
      num,
      id,
      sqlText,
      plan,
      createdMs,
      lastChange: 0,
      firstChange: 1,
      restored: false,
      recentMax: SUBS_RECENT_CHANGES,
      recentBytesMax: SUBS_RECENT_BYTES,
      nowMs: createdMs,
    })
    this.log.info({ sub: id, mode: plan.mode, sql: sqlText }, 'subscription created')
    // Registered before its first run starts: no commit after that run's snapshot is missed.
    this.register(sub)
    this.schedule(sub)
    return sub
  }

  private async open(
    sub: Subscription,
    req: StreamRequest,
    conn: Connection,
  ): Promise<OpenedStream> {
    // A new listener keeps the subscription from being dropped while it waits for the rows.
    sub.idleSinceMs = null
    try {
      await abortable(sub.ready, conn.signal)
    } finally {
      if (sub.listeners.size === 0) sub.idleSinceMs = Date.now()
    }
    if (!sub.active) {
      throw (
        this.tombstones.get(sub.id) ??
        new SubsError('NOT_FOUND', `no subscription with id ${sub.id}`)
      )
    }
    const from = req.from ?? 0
    let start: StreamStart
    if (from > 0) {
      if (from > sub.lastChange) {
        throw new SubsError(
          'RESUME_GONE',
          `change id ${from} is beyond this subscription's last change id ${sub.lastChange}: ` +
            'subscribe again without from to start over',
        )
      }
      if (from < sub.lastChange && from + 1 < sub.firstChange) {
        throw new SubsError('RESUME_GONE', historyGone(from, sub.firstChange))
      }
      start = { kind: 'from', changeId: from }
    } else {
      start = { kind: req.skipRows === true ? 'skip-rows' : 'rows' }
    }
    let ended = false
    const listener: SubscriptionWriter = new SubscriptionWriter({
      sub,
      store: this.store,
      start,
      limits: LIMITS,
      stop: () =>
        conn.closing.aborted || this.stopped ? this.shutdownMessage(listener.cursor) : null,
      onEnd: () => {
        if (ended) return
        ended = true
        sub.listeners.delete(listener)
        this.listenerCount--
        if (sub.listeners.size === 0) sub.idleSinceMs = Date.now()
        unwatch()
      },
      destroy: conn.destroy,
      bufferedBytes: conn.bufferedBytes,
    })
    sub.listeners.add(listener)
    sub.idleSinceMs = null
    const unwatch = watch(conn, listener)
    return opened(sub.id, listener)
  }

  private shutdownMessage(cursor: number): SubsError {
    return new SubsError('CLOSED', `the agent is shutting down; resume with from=${cursor}`)
  }

  /** `POST /v1/updates/:table`. */
  openUpdates(table: string, conn: Connection): OpenedStream {
    this.checkOpen()
    const crr = this.o.replica.table(table)
    if (crr === undefined) {
      throw new SubsError('NOT_FOUND', `no replicated table named "${table}"`)
    }
    this.reserveListener()
    let ended = false
    const listener: UpdatesWriter = new UpdatesWriter({
      table: crr.name.toLowerCase(),
      stop: () =>
        conn.closing.aborted || this.stopped
          ? new SubsError('CLOSED', 'the agent is shutting down; start over')
          : null,
      onEnd: () => {
        if (ended) return
        ended = true
        this.updates.remove(listener)
        this.listenerCount--
        unwatch()
      },
      destroy: conn.destroy,
      bufferedBytes: conn.bufferedBytes,
    })
    this.updates.add(listener)
    const unwatch = watch(conn, listener)
    return opened(randomUUID(), listener)
  }

  private reserveListener(): void {
    if (this.listenerCount >= this.config.maxListeners) {
      this.metrics.rejected.inc({ reason: 'listeners' })
      throw new SubsError(
        'OVERLOADED',
        `too many open streams (${this.listenerCount}, [subscriptions] max_listeners); retry later`,
      )
    }
    this.listenerCount++
  }

  private checkOpen(): void {
    if (this.stopped) throw new SubsError('CLOSED', 'the agent is shutting down')
  }

  // ---------------------------------------------------------------- introspection

  list(): SubscriptionInfo[] {
    return [...this.byId.values()].map((sub) => ({
      id: sub.id,
      sql: sub.sqlText,
      mode: sub.plan.mode,
      state: sub.state,
      listeners: sub.listeners.size,
      changeId: sub.lastChange,
      rows: sub.rowCount,
      createdMs: sub.createdMs,
    }))
  }

  /** Resolves once every change committed before the call has been matched (tests, tools). */
  async flush(): Promise<void> {
    if (this.tickTimer !== null) {
      clearTimeout(this.tickTimer)
      this.tickTimer = null
    }
    this.tick()
    while (!this.idle()) {
      await new Promise<void>((resolve) => {
        this.idleWaiters.push(resolve)
      })
    }
  }

  private idle(): boolean {
    if (this.stopped) return true
    if (!this.queue.empty || this.inFlight > 0 || this.runnable.length > 0) return false
    for (const sub of this.byId.values()) if (sub.hasWork()) return false
    return true
  }

  private checkIdle(): void {
    if (this.idleWaiters.length === 0 || !this.idle()) return
    for (const resolve of this.idleWaiters.splice(0)) resolve()
  }

  private gauges(): SubsGauges {
    let incremental = 0
    let full = 0
    let subListeners = 0
    let lagMax = 0
    let buffered = 0
    let held = 0
    let history = 0
    let recentBytes = 0
    for (const sub of this.byId.values()) {
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
    for (const l of this.updates.all()) buffered += l.bufferedBytes() + l.queuedBytes
    return {
      subscriptions: { incremental, full },
      listeners: { subscription: subListeners, updates: this.updates.size },
      listenerLagMax: lagMax,
      listenerBufferedBytes: buffered,
      updatesBuffered: this.updates.queued(),
      pendingKeys: { queue: this.queue.size, subscriptions: held },
      historyChanges: history,
      recentBytes,
      evaluationsQueued: this.runnable.length + this.inFlight + this.deferred.size,
    }
  }

  /** Stops matching, ends every stream with an error event, closes the database. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.unsubscribe()
    clearInterval(this.sweepTimer)
    if (this.tickTimer !== null) clearTimeout(this.tickTimer)
    for (const timer of this.deferred.values()) clearTimeout(timer)
    this.deferred.clear()
    for (const sub of this.byId.values()) {
      sub.state = 'closed'
      sub.abort.abort()
      sub.markReady(new SubsError('CLOSED', 'the agent is shutting down'))
      sub.checkAll()
    }
    for (const l of this.updates.all()) l.check()
    for (const resolve of this.idleWaiters.splice(0)) resolve()
    await Promise.allSettled([...this.running])
    this.planner.close()
    this.store.close()
  }
}

/**
 * Ends a stream when its connection closes, and with an error event when the agent stops
 * serving; returns what undoes that (once per stream, not per write).
 */
function watch(
  conn: Connection,
  writer: { readonly check: () => void; readonly close: () => void },
): () => void {
  const close = (): void => {
    writer.close()
  }
  const check = (): void => {
    writer.check()
  }
  conn.signal.addEventListener('abort', close, { once: true })
  conn.closing.addEventListener('abort', check, { once: true })
  return () => {
    conn.signal.removeEventListener('abort', close)
    conn.closing.removeEventListener('abort', check)
  }
}

/** What the HTTP layer (or an in-process reader) gets of a stream. */
function opened(
  id: string,
  writer: { readonly serve: (sink: Sink) => void; readonly close: () => void },
): OpenedStream {
  let lines: AsyncGenerator<string> | null = null
  const close = (): void => {
    writer.close()
  }
  return {
    id,
    serve: (sink) => {
      writer.serve(sink)
    },
    get lines() {
      lines ??= sinkLines((sink) => {
        writer.serve(sink)
      }, close)
      return lines
    },
    close,
  }
}

/** Waits for `promise`, or rejects when `signal` aborts first. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new SubsError('CLOSED', 'the client went away'))
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(new SubsError('CLOSED', 'the client went away'))
    }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err instanceof Error ? err : new Error(String(err)))
      },
    )
  })
}
