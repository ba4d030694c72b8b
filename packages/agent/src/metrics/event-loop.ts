/**
 * How long the main thread's event loop is kept waiting: the writer, membership, replication
 * and the HTTP API all share it, so a long synchronous job delays every one of them.
 *
 * Two instruments, one for each question:
 * 1. The distribution: `perf_hooks.monitorEventLoopDelay` (a libuv timer every
 *    `resolutionMs`, each delay recorded in an HDR histogram) over a rolling window. Every
 *    `windowMs` a fresh histogram takes over and the old one's quantiles are kept, so a scrape
 *    reads the last complete window whatever the scrape interval (and two scrapers do not
 *    reset each other's view, as prom-client's own `patina_nodejs_eventloop_lag_*` do).
 * 2. The moment: a probe timer every `probeIntervalMs` compares when it was due with when it
 *    ran. Late by more than `stallMs` is a stall: counted, and logged as `event loop stalled`
 *    with `stalled_ms` and, when a job said what it was doing (`activity.run`), its label.
 *
 * Both timers are `unref()`ed: the monitor never keeps the process alive. It runs until
 * `stop()`.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import type { Logger } from 'pino'
import { Counter, Gauge, type Registry } from 'prom-client'
import { systemClock, type Clock, type TimerId } from '../runtime/clock.ts'

// These limits live here rather than in config/defaults.ts for now (that file was being edited
// by someone else when this module was written); they have no config key yet.

/** Sampling interval of the delay histogram (Node's default; 1 ms would wake us 1000 times/s). */
export const EVENT_LOOP_RESOLUTION_MS = 10
/** Length of the window the delay quantiles are computed over. */
export const EVENT_LOOP_WINDOW_MS = 10_000
/** A probe later than this is a stall: counted and logged. */
export const EVENT_LOOP_STALL_MS = 200
/**
 * Interval of the stall probe. A stall is measured from when the probe was due, so
 * `stalled_ms` is a lower bound, short by at most this much.
 */
export const EVENT_LOOP_PROBE_INTERVAL_MS = 50
/** `activity.run` jobs at least this long are remembered, to name the cause of a stall. */
export const ACTIVITY_RECORD_MIN_MS = 20
/** How many such jobs are remembered (the oldest is forgotten first). */
export const ACTIVITY_RECENT_MAX = 8

/** The quantiles published, as label values; `max` is the window's longest delay. */
export const EVENT_LOOP_QUANTILES = ['0.5', '0.99', '0.999', 'max'] as const
export type EventLoopQuantile = (typeof EVENT_LOOP_QUANTILES)[number]

interface ActivityRun {
  readonly label: string
  readonly startMs: number
  readonly endMs: number
}

/**
 * What the main thread is busy with: a label that long synchronous jobs set around their work,
 * read when a stall is found after the fact.
 *
 * Usage, at a hot spot (an apply transaction, a schema change, a full re-evaluation):
 *
 * ```ts
 * import { activity } from '../metrics/event-loop.ts'
 * const applied = activity.run('apply batch', () => replica.applyBatch(changesets))
 * ```
 *
 * 1. `fn` must be synchronous: only its synchronous part is labelled (that is the part that
 *    blocks the loop); a promise it returns is returned as is.
 * 2. Runs nest; `current()` names the innermost.
 * 3. A run of at least `ACTIVITY_RECORD_MIN_MS` is remembered (the last `ACTIVITY_RECENT_MAX`);
 *    a stall is attributed to the longest remembered run that overlaps it.
 * 4. Cost: two clock reads and an array push/pop per run; keep labels constant strings.
 */
export class Activity {
  readonly #clock: Clock
  readonly #stack: string[] = []
  readonly #recent: ActivityRun[] = []

  constructor(clock: Clock) {
    this.#clock = clock
  }

  run<T>(label: string, fn: () => T): T {
    const startMs = this.#clock.now()
    this.#stack.push(label)
    try {
      return fn()
    } finally {
      this.#stack.pop()
      const endMs = this.#clock.now()
      if (endMs - startMs >= ACTIVITY_RECORD_MIN_MS) {
        if (this.#recent.length >= ACTIVITY_RECENT_MAX) this.#recent.shift()
        this.#recent.push({ label, startMs, endMs })
      }
    }
  }

  /** The innermost run in progress, or null. */
  current(): string | null {
    return this.#stack.at(-1) ?? null
  }

  /** The longest remembered run that overlaps [fromMs, toMs], or null. */
  longestBetween(fromMs: number, toMs: number): { label: string; ms: number } | null {
    let best: ActivityRun | null = null
    for (const r of this.#recent) {
      if (r.endMs < fromMs || r.startMs > toMs) continue
      if (best === null || r.endMs - r.startMs > best.endMs - best.startMs) best = r
    }
    return best === null ? null : { label: best.label, ms: best.endMs - best.startMs }
  }
}

/**
 * The process's activity label. The event loop is the process's (the main thread's), not an
 * agent's: several agents in one test process share it, and this one label.
 */
export const activity = new Activity(systemClock())

export interface EventLoopMonitorComponents {
  /** The agent's registry, where the metrics are registered (in the constructor). */
  readonly registry: Registry
  readonly logger: Logger
  readonly clock: Clock
  /** Defaults to the process-wide `activity`. */
  readonly activity?: Activity
}

export interface EventLoopMonitorInit {
  readonly stallMs?: number
  readonly windowMs?: number
  readonly resolutionMs?: number
  readonly probeIntervalMs?: number
}

export interface EventLoopStats {
  /** Delays of the last complete window (the current one until a window completes), in ms. */
  readonly delayMs: Readonly<Record<EventLoopQuantile, number>>
  readonly stalls: number
}

export class EventLoopMonitor {
  readonly #clock: Clock
  readonly #log: Logger
  readonly #activity: Activity
  readonly #stallMs: number
  readonly #windowMs: number
  readonly #resolutionMs: number
  readonly #probeIntervalMs: number
  readonly #stallsCounter: Counter
  /** The histogram of the window in progress. */
  #histogram: IntervalHistogram | null = null
  /** The previous window's, still recording until it is read (see `#probe`). */
  #closing: IntervalHistogram | null = null
  #closingSinceMs = 0
  #timer: TimerId | null = null
  /** When the probe last ran and when it is due next (clock ms). */
  #lastProbeMs = 0
  #dueMs = 0
  #windowStartMs = 0
  #window: Record<EventLoopQuantile, number> | null = null
  #stalls = 0

  constructor(components: EventLoopMonitorComponents, init: EventLoopMonitorInit = {}) {
    this.#clock = components.clock
    this.#log = components.logger.child({ subsystem: 'event-loop' })
    this.#activity = components.activity ?? activity
    this.#stallMs = init.stallMs ?? EVENT_LOOP_STALL_MS
    this.#windowMs = init.windowMs ?? EVENT_LOOP_WINDOW_MS
    this.#resolutionMs = init.resolutionMs ?? EVENT_LOOP_RESOLUTION_MS
    this.#probeIntervalMs = init.probeIntervalMs ?? EVENT_LOOP_PROBE_INTERVAL_MS
    const stats = (): EventLoopStats => this.stats()
    new Gauge({
      name: 'patina_event_loop_delay_seconds',
      help: `Event loop delay over the last ${this.#windowMs / 1000} s window, by quantile (max: the longest)`,
      labelNames: ['quantile'] as const,
      registers: [components.registry],
      collect() {
        const { delayMs } = stats()
        for (const quantile of EVENT_LOOP_QUANTILES)
          this.set({ quantile }, delayMs[quantile] / 1000)
      },
    })
    this.#stallsCounter = new Counter({
      name: 'patina_event_loop_stalls_total',
      help: `Times the event loop was blocked for more than ${this.#stallMs} ms`,
      registers: [components.registry],
    })
  }

  start(): void {
    if (this.#histogram !== null) return
    this.#histogram = this.#newHistogram()
    const now = this.#clock.now()
    this.#windowStartMs = now
    this.#lastProbeMs = now
    this.#arm(now)
  }

  stop(): void {
    this.#histogram?.disable()
    this.#histogram = null
    this.#closing?.disable()
    this.#closing = null
    if (this.#timer !== null) this.#clock.clearTimer(this.#timer)
    this.#timer = null
  }

  stats(): EventLoopStats {
    return { delayMs: this.#window ?? this.#read(this.#histogram), stalls: this.#stalls }
  }

  #arm(now: number): void {
    this.#dueMs = now + this.#probeIntervalMs
    this.#timer = this.#clock.setTimer(this.#probeIntervalMs, () => {
      this.#probe()
    })
  }

  #probe(): void {
    const now = this.#clock.now()
    const lateMs = now - this.#dueMs
    const sinceLastMs = now - this.#lastProbeMs
    if (lateMs > this.#stallMs) this.#stall(now, lateMs)
    // A histogram records a block's delay from its own timer, which may run after us, and one
    // just enabled (or reset) drops the sample in progress. So windows overlap: at the end of a
    // window a fresh histogram starts, and the old one keeps recording until a calm probe
    // interval (no block longer than probe + 2 resolutions since the last probe, or this probe
    // would be that late), then it is read and dropped. Under sustained blocking it is read
    // after half a window anyway: the block it may miss is in the fresh one, which by then has
    // been recording long enough. No block is lost; one may count in two windows.
    const calm = sinceLastMs <= this.#probeIntervalMs + 2 * this.#resolutionMs
    if (this.#closing !== null && (calm || now - this.#closingSinceMs >= this.#windowMs / 2)) {
      this.#window = this.#read(this.#closing)
      this.#closing.disable()
      this.#closing = null
    } else if (this.#closing === null && now - this.#windowStartMs >= this.#windowMs) {
      this.#closing = this.#histogram
      this.#closingSinceMs = now
      this.#histogram = this.#newHistogram()
      this.#windowStartMs = now
    }
    this.#lastProbeMs = now
    this.#arm(now)
  }

  #stall(now: number, lateMs: number): void {
    this.#stalls++
    this.#stallsCounter.inc()
    const cause = this.#activity.longestBetween(this.#lastProbeMs, now)
    this.#log.warn(
      {
        stalled_ms: Math.round(lateMs),
        ...(cause === null ? {} : { activity: cause.label, activity_ms: Math.round(cause.ms) }),
      },
      'event loop stalled',
    )
  }

  #newHistogram(): IntervalHistogram {
    const h = monitorEventLoopDelay({ resolution: this.#resolutionMs })
    h.enable()
    return h
  }

  /**
   * The histogram's quantiles in ms. Each sample is the time between two runs of its timer, so
   * the resolution is taken off: an idle loop reads 0, not `resolutionMs`.
   */
  #read(h: IntervalHistogram | null): Record<EventLoopQuantile, number> {
    const delay = (ns: number): number =>
      h === null || h.count === 0 ? 0 : Math.max(0, ns / 1e6 - this.#resolutionMs)
    return {
      '0.5': delay(h?.percentile(50) ?? 0),
      '0.99': delay(h?.percentile(99) ?? 0),
      '0.999': delay(h?.percentile(99.9) ?? 0),
      max: delay(h?.max ?? 0),
    }
  }
}
