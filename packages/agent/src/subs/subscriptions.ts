/**
 * The subscription manager: owns every subscription and update stream of an agent. This file
 * wires the parts and is the API the HTTP routes and main.ts use; each part is a module:
 *
 * - subs-registry.ts: the subscriptions by id, query key and table, and the tombstones.
 * - commit-batcher.ts: the commit listener queues changed keys; a tick (`[subscriptions]
 *   batch_ms` later) hands them to the subscriptions and notifications to update streams.
 * - eval-scheduler.ts: at most one evaluation per subscription, `reader_threads` at once,
 *   round-robin; evaluator.ts runs one (matcher.ts) and fails a broken subscription alone.
 * - fan-out.ts: change events encoded once per batch, written by every listener at the head;
 *   the next tick rests as long as the writing took; listeners too far behind are cut off.
 * - stream-opener.ts: listeners and update streams, bound to their connections.
 * - restore.ts, idle-sweep.ts, store-gc.ts: subscriptions restored at start (each re-run in
 *   full), idle ones dropped, and what dropped ones stored deleted in the background.
 *
 * Caps: subscriptions, listeners, listener lag, history, queued keys (config/defaults.ts);
 * each has a metric (subs-metrics.ts). Time comes from the Clock passed in `clock`.
 */
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { Config } from '../config/load-config.ts'
import {
  SUBS_EVAL_KEYS_MAX,
  SUBS_RECENT_BYTES,
  SUBS_RECENT_CHANGES,
  SUBS_STREAM_CHUNK_BYTES,
} from '../config/defaults.ts'
import type { CommitListener, Statement } from '../crdt/replica.ts'
import type { SubsMetrics } from '../metrics/subs-metrics.ts'
import { systemClock, type Clock } from '../runtime/clock.ts'
import type { Synchronous } from '../store/open-db.ts'
import { CommitBatcher } from './commit-batcher.ts'
import { messageOf, SubsError } from './errors.ts'
import { EvalScheduler } from './eval-scheduler.ts'
import { Evaluator } from './evaluator.ts'
import { FanOut } from './fan-out.ts'
import { IdleSweep } from './idle-sweep.ts'
import type { EvalRunner } from './matcher.ts'
import { bindStatement } from './params.ts'
import { planSignature, Planner, type Plan, type TableCatalog } from './planner.ts'
import { restoreSubscriptions } from './restore.ts'
import { StoreGc } from './store-gc.ts'
import {
  StreamOpener,
  type Connection,
  type OpenedStream,
  type StreamRequest,
} from './stream-opener.ts'
import { SUBS_PAGE_ROWS } from './subs-defaults.ts'
import { subsGauges } from './subs-gauges.ts'
import { SUBS_SLICE_MS } from './slicer.ts'
import { SubsRegistry } from './subs-registry.ts'
import { SubsStore } from './subs-store.ts'
import { Subscription } from './subscription.ts'
import { UpdatesHub } from './updates.ts'

export type { Connection, OpenedStream, StreamRequest } from './stream-opener.ts'

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
  /**
   * Every timer and timestamp of the subscriptions: main.ts passes `systemClock()`, tests may
   * pass a virtual one. Default `systemClock()` (for callers written before it, the benches).
   */
  readonly clock?: Clock
  /** Keys bound into one restricted evaluation; default SUBS_EVAL_KEYS_MAX (tests lower it). */
  readonly evalKeysMax?: number
  /**
   * Time budget of a slice of an evaluation's main-thread work; default SUBS_SLICE_MS (tests
   * pass Infinity for a reference run in one slice).
   */
  readonly sliceMs?: number
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

export class Subscriptions {
  private readonly o: SubscriptionsOptions
  private readonly clock: Clock
  private readonly log: Logger
  private readonly metrics: SubsMetrics
  private readonly store: SubsStore
  private readonly planner: Planner
  private readonly registry = new SubsRegistry()
  private readonly updates: UpdatesHub
  private readonly batcher: CommitBatcher
  private readonly scheduler: EvalScheduler
  private readonly streams: StreamOpener
  private readonly gc: StoreGc
  private readonly sweep: IdleSweep
  private idleWaiters: (() => void)[] = []
  private stopped = false
  private readonly unsubscribe: () => void

  private constructor(o: SubscriptionsOptions) {
    this.o = o
    const { config, metrics } = o
    const clock = o.clock ?? systemClock()
    this.clock = clock
    this.log = o.logger.child({ subsystem: 'subs' })
    this.metrics = metrics
    const log = this.log
    this.store = SubsStore.open(config.path, o.synchronous)
    this.planner = new Planner({
      path: o.dbPath,
      catalog: o.replica,
      fullReevaluation: config.fullReevaluation,
    })
    const stopping = (): boolean => this.stopped
    const chunkBytes = SUBS_STREAM_CHUNK_BYTES
    const fanOut = new FanOut({
      clock,
      metrics,
      maxListenerLag: config.maxListenerLag,
      chunkBytes,
      rest: (untilMs) => {
        this.batcher.rest(untilMs)
      },
    })
    this.updates = new UpdatesHub(config.maxListenerLag, chunkBytes, (l) => {
      fanOut.updatesCut(l)
    })
    const evaluator = new Evaluator({
      clock,
      matcher: {
        runner: o.runner,
        store: this.store,
        evalKeysMax: o.evalKeysMax ?? SUBS_EVAL_KEYS_MAX,
        historyMax: config.maxHistory,
        clock,
        sliceMs: o.sliceMs ?? SUBS_SLICE_MS,
      },
      fanOut,
      metrics,
      log,
      stopping,
      onFailed: (sub, err) => {
        this.fail(sub, err)
      },
    })
    this.scheduler = new EvalScheduler({
      clock,
      concurrency: config.readerThreads,
      fullEvalIntervalMs: config.fullEvalIntervalMs,
      run: evaluator.run,
      onSettled: () => {
        this.checkIdle()
      },
    })
    this.batcher = new CommitBatcher({
      clock,
      registry: this.registry,
      updates: this.updates,
      metrics,
      log,
      batchMs: config.batchMs,
      maxPendingKeys: config.maxPendingKeys,
      schedule: (sub) => {
        this.scheduler.schedule(sub)
      },
      onTick: () => {
        this.checkIdle()
      },
    })
    this.streams = new StreamOpener({
      clock,
      store: this.store,
      registry: this.registry,
      updates: this.updates,
      metrics,
      limits: { pageRows: SUBS_PAGE_ROWS, chunkBytes },
      maxListeners: config.maxListeners,
      stopping,
    })
    this.gc = new StoreGc({ clock, store: this.store, log })
    this.metrics.bind(() =>
      subsGauges({
        subscriptions: this.registry.all(),
        updates: this.updates,
        queuedKeys: this.batcher.size,
        evaluations: this.scheduler.size,
      }),
    )
    this.unsubscribe = o.replica.onCommit(this.batcher.onCommit)
    this.sweep = new IdleSweep({
      clock,
      idleTimeoutMs: config.idleTimeoutMs,
      subscriptions: () => this.registry.all(),
      onIdle: (sub) => {
        this.dropIdle(sub)
      },
    })
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

  private restore(): void {
    const { restored, refused } = restoreSubscriptions({
      store: this.store,
      planner: this.planner,
      clock: this.clock,
      log: this.log,
    })
    for (const { id, error } of refused) {
      this.metrics.dropped.inc({ reason: 'restore' })
      this.registry.remember(id, error)
    }
    for (const sub of restored) {
      this.registry.add(sub)
      this.scheduler.schedule(sub)
    }
    this.gc.collect()
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
    let sub = this.registry.forKey(plan.key)
    const from = req.from ?? 0
    if (sub === undefined && from > 0) {
      throw new SubsError(
        'RESUME_GONE',
        `no subscription to this query exists any more to resume from change id ${from}: ` +
          'subscribe again without from to start over',
      )
    }
    this.streams.reserve()
    try {
      if (sub === undefined) {
        const count = this.registry.size
        if (count >= this.o.config.maxSubscriptions) {
          this.metrics.rejected.inc({ reason: 'subscriptions' })
          throw new SubsError(
            'OVERLOADED',
            `too many subscriptions (${count}, [subscriptions] max_subscriptions); retry later`,
          )
        }
        sub = this.create(statement.sql, plan)
      }
      return await this.streams.listen(sub, req, conn)
    } catch (err) {
      this.streams.release()
      throw err
    }
  }

  /** `GET /v1/subscriptions/:id`. */
  async attach(id: string, req: StreamRequest, conn: Connection): Promise<OpenedStream> {
    this.checkOpen()
    const sub = this.registry.get(id)
    if (sub === undefined) throw this.registry.missing(id)
    this.streams.reserve()
    try {
      return await this.streams.listen(sub, req, conn)
    } catch (err) {
      this.streams.release()
      throw err
    }
  }

  /** `POST /v1/updates/:table`. */
  openUpdates(table: string, conn: Connection): OpenedStream {
    this.checkOpen()
    const crr = this.o.replica.table(table)
    if (crr === undefined) {
      throw new SubsError('NOT_FOUND', `no replicated table named "${table}"`)
    }
    return this.streams.updates(crr.name.toLowerCase(), conn)
  }

  private create(sqlText: string, plan: Plan): Subscription {
    const id = randomUUID()
    const createdMs = this.clock.wallNow()
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
      rowCount: 0,
      restored: false,
      recentMax: SUBS_RECENT_CHANGES,
      recentBytesMax: SUBS_RECENT_BYTES,
      nowMs: this.clock.now(),
    })
    this.log.info({ sub: id, mode: plan.mode, sql: sqlText }, 'subscription created')
    // Registered before its first run starts: no commit after that run's snapshot is missed.
    this.registry.add(sub)
    this.scheduler.schedule(sub)
    return sub
  }

  private checkOpen(): void {
    if (this.stopped) throw new SubsError('CLOSED', 'the agent is shutting down')
  }

  // ---------------------------------------------------------------- dropping

  /** Its query failed: listeners get an error event, it is dropped, the others go on. */
  private fail(sub: Subscription, err: unknown): void {
    const message = messageOf(err)
    const code = err instanceof SubsError ? err.code : 'SQL_ERROR'
    const error = new SubsError(code === 'FAILED' ? 'SQL_ERROR' : code, message, { cause: err })
    this.log.warn({ sub: sub.id, err: message }, 'subscription failed')
    sub.fail(message, error)
    this.forget(sub, 'failed')
    this.registry.remember(
      sub.id,
      new SubsError('FAILED', `subscription ${sub.id} failed: ${message}`),
    )
    if (sub.listeners.size > 0) {
      this.metrics.listenersCut.inc({ reason: 'failed' }, sub.listeners.size)
    }
    sub.checkAll()
  }

  private dropIdle(sub: Subscription): void {
    const { idleTimeoutMs } = this.o.config
    const gone = new SubsError(
      'NOT_FOUND',
      `subscription ${sub.id} was dropped after ${idleTimeoutMs} ms without a listener ([subscriptions] idle_timeout_ms)`,
    )
    this.log.info({ sub: sub.id }, 'subscription dropped: no listener')
    sub.close(gone)
    this.forget(sub, 'idle')
    this.registry.remember(sub.id, gone)
  }

  /** Forgets a failed or closed subscription and deletes what it stored. */
  private forget(sub: Subscription, reason: 'failed' | 'idle'): void {
    this.registry.delete(sub)
    this.scheduler.forget(sub)
    this.metrics.dropped.inc({ reason })
    try {
      this.store.drop(sub.num)
    } catch (err) {
      this.log.error({ err, sub: sub.id }, 'could not drop a subscription from its database')
    }
    this.gc.collect()
  }

  // ---------------------------------------------------------------- introspection

  list(): SubscriptionInfo[] {
    return [...this.registry.all()].map((sub) => ({
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
    this.batcher.flush()
    while (!this.idle()) {
      await new Promise<void>((resolve) => {
        this.idleWaiters.push(resolve)
      })
    }
  }

  private idle(): boolean {
    if (this.stopped) return true
    if (!this.batcher.empty || !this.scheduler.quiet) return false
    for (const sub of this.registry.all()) if (sub.hasWork()) return false
    return true
  }

  private checkIdle(): void {
    if (this.idleWaiters.length === 0 || !this.idle()) return
    for (const resolve of this.idleWaiters.splice(0)) resolve()
  }

  /** Stops matching, ends every stream with an error event, closes the database. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.unsubscribe()
    this.batcher.stop()
    this.sweep.stop()
    this.gc.stop()
    const evaluations = this.scheduler.stop()
    for (const sub of this.registry.all()) {
      sub.close(new SubsError('CLOSED', 'the agent is shutting down'))
      sub.checkAll()
    }
    for (const l of this.updates.all()) l.check()
    for (const resolve of this.idleWaiters.splice(0)) resolve()
    await evaluations
    this.planner.close()
    this.store.close()
  }
}
