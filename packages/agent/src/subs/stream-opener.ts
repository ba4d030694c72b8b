/**
 * Opening streams: a listener on a subscription (where it starts: rows, no rows, or after a
 * change id) or an update stream on a table, bound to its connection. It counts open streams
 * against `[subscriptions] max_listeners` (a stream beyond it is refused as OVERLOADED),
 * releases a stream's slot when it ends, ends a stream when its connection closes, and with an
 * error event when the agent stops serving.
 */
import { randomUUID } from 'node:crypto'
import type { SubsMetrics } from '../metrics/subs-metrics.ts'
import type { Clock } from '../runtime/clock.ts'
import { SubsError } from './errors.ts'
import {
  historyGone,
  sinkLines,
  SubscriptionWriter,
  UpdatesWriter,
  type Sink,
  type StreamLimits,
  type StreamStart,
} from './streams.ts'
import type { SubsRegistry } from './subs-registry.ts'
import type { SubsStore } from './subs-store.ts'
import type { Subscription } from './subscription.ts'
import type { UpdatesHub } from './updates.ts'

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

export interface StreamOpenerOptions {
  readonly clock: Clock
  readonly store: SubsStore
  readonly registry: SubsRegistry
  readonly updates: UpdatesHub
  readonly metrics: SubsMetrics
  readonly limits: StreamLimits
  /** `[subscriptions] max_listeners` */
  readonly maxListeners: number
  /** True once the manager is stopping. */
  readonly stopping: () => boolean
}

export class StreamOpener {
  private readonly o: StreamOpenerOptions
  /** Open streams, and streams being opened (their slot is taken first). */
  private count = 0

  constructor(o: StreamOpenerOptions) {
    this.o = o
  }

  /** Takes a stream's slot, or refuses with OVERLOADED beyond `max_listeners`. */
  reserve(): void {
    if (this.count >= this.o.maxListeners) {
      this.o.metrics.rejected.inc({ reason: 'listeners' })
      throw new SubsError(
        'OVERLOADED',
        `too many open streams (${this.count}, [subscriptions] max_listeners); retry later`,
      )
    }
    this.count++
  }

  /** Gives back a slot `reserve` took for a stream that did not open. */
  release(): void {
    this.count--
  }

  /**
   * A listener on `sub`, once its first result is there (a slot reserved). Rejects when the
   * connection closes first, when the subscription is gone, or when `from` cannot be served.
   */
  async listen(sub: Subscription, req: StreamRequest, conn: Connection): Promise<OpenedStream> {
    const { clock } = this.o
    // A new listener keeps the subscription from being dropped while it waits for the rows.
    sub.holdForListener()
    try {
      await abortable(sub.ready, conn.signal)
    } finally {
      sub.releaseHold(clock.now())
    }
    if (!sub.active) throw this.o.registry.missing(sub.id)
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
      store: this.o.store,
      start,
      limits: this.o.limits,
      clock,
      stop: () =>
        conn.closing.aborted || this.o.stopping()
          ? new SubsError(
              'CLOSED',
              `the agent is shutting down; resume with from=${listener.cursor}`,
            )
          : null,
      onEnd: () => {
        if (ended) return
        ended = true
        sub.removeListener(listener, clock.now())
        this.count--
        unwatch()
      },
      destroy: conn.destroy,
      bufferedBytes: conn.bufferedBytes,
    })
    sub.addListener(listener)
    const unwatch = watch(conn, listener)
    return opened(sub.id, listener)
  }

  /** `POST /v1/updates/:table`: a stream of that table's changed keys. */
  updates(table: string, conn: Connection): OpenedStream {
    this.reserve()
    let ended = false
    const listener: UpdatesWriter = new UpdatesWriter({
      table,
      stop: () =>
        conn.closing.aborted || this.o.stopping()
          ? new SubsError('CLOSED', 'the agent is shutting down; start over')
          : null,
      onEnd: () => {
        if (ended) return
        ended = true
        this.o.updates.remove(listener)
        this.count--
        unwatch()
      },
      destroy: conn.destroy,
      bufferedBytes: conn.bufferedBytes,
    })
    this.o.updates.add(listener)
    const unwatch = watch(conn, listener)
    return opened(randomUUID(), listener)
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
