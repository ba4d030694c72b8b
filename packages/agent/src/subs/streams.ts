/**
 * The NDJSON a listener reads, written straight into its connection (a `Sink`: the HTTP
 * response), with no stream layer in between.
 *
 * A subscription listener keeps no queue of its own: it holds a cursor (the last change id it
 * wrote) and is in one of two states.
 *
 * - Live: at the subscription's head, its connection draining. The manager encodes each batch
 *   of change events once (`encodeChanges`) and every live listener writes the same bytes
 *   (`deliver`): one `write` per listener per batch.
 * - Catching up: sending the rows, or behind the head (its connection did not drain, or it
 *   resumed with `from`). It reads the subscription's log after its cursor, from the in-memory
 *   window of recent changes or from the subscriptions database, a chunk at a time, and waits
 *   for `drain` whenever a write says the connection is full. Reaching the head makes it live.
 *
 * What the agent buffers for a listener is thus at most one chunk beyond what its socket
 * holds. A listener too far behind is cut off by the manager (its `cut` is set): it writes one
 * error event, ends, and is released at once.
 */
import type { Clock } from '../runtime/clock.ts'
import { SubsError } from './errors.ts'
import { columnsLine, eoqLine, errorLine } from './events.ts'
import { SUBS_CHUNKS_PER_TURN } from './subs-defaults.ts'
import type { Snapshot, SubsStore } from './subs-store.ts'
import type { EncodedChunk, LoggedChange, SubListener, Subscription } from './subscription.ts'

export type StreamStart =
  /** `columns`, every stored row, `eoq`, then changes. */
  | { readonly kind: 'rows' }
  /** `columns` and `eoq` (no rows), then changes (`skip_rows=true`). */
  | { readonly kind: 'skip-rows' }
  /** Changes after `changeId` only (`from=N`, as Corrosion). */
  | { readonly kind: 'from'; readonly changeId: number }

export interface StreamLimits {
  /** Rows or changes read per step. */
  readonly pageRows: number
  /** Bytes per chunk handed to the connection. */
  readonly chunkBytes: number
}

/** Why a stream must end now (an error event), or null to go on. */
export type StopCheck = () => SubsError | null

/** Where a stream's bytes go: the subset of `http.ServerResponse` it uses. */
export interface Sink {
  /** Queues `chunk`; false when the connection's buffer is full (`onDrain` follows). */
  write(chunk: string | Uint8Array): boolean
  /** Calls `fn` once, when the connection's buffer has emptied after a full write. */
  onDrain(fn: () => void): void
  /** Ends the response (the connection closes once what was written is sent). */
  end(): void
}

/** Encodes `changes` (contiguous ids) as chunks of about `chunkBytes`. */
export function encodeChanges(
  changes: readonly LoggedChange[],
  chunkBytes: number,
): EncodedChunk[] {
  const out: EncodedChunk[] = []
  let text = ''
  let firstId = 0
  for (const change of changes) {
    if (text === '') firstId = change.id
    text += change.line
    if (text.length >= chunkBytes) {
      out.push({ firstId, lastId: change.id, bytes: Buffer.from(text) })
      text = ''
    }
  }
  const last = changes.at(-1)
  if (text !== '' && last !== undefined) {
    out.push({ firstId, lastId: last.id, bytes: Buffer.from(text) })
  }
  return out
}

export function historyGone(after: number, firstKept: number): string {
  return (
    `the changes after change id ${after} are no longer kept (oldest kept: ${firstKept}, ` +
    '[subscriptions] max_history): subscribe again without from to start over'
  )
}

/** Writes that arrive before the sink does, or after the stream ended, go nowhere. */
abstract class Writer {
  protected sink: Sink | null = null
  protected ended = false
  /** Waiting for the connection to drain. */
  protected blocked = false
  /** An error event to write once the sink comes (the stream ended before it did). */
  private lastWords: SubsError | null = null
  private readonly onEnd: () => void

  constructor(onEnd: () => void) {
    this.onEnd = onEnd
  }

  /** Starts writing into `sink` (once). */
  serve(sink: Sink): void {
    this.sink = sink
    if (this.ended) {
      if (this.lastWords !== null) sink.write(errorLine(this.lastWords))
      sink.end()
      return
    }
    this.started()
  }

  protected abstract started(): void

  /** Releases the stream without writing anything (its connection closed). */
  close(): void {
    if (this.ended) return
    this.ended = true
    this.released()
    this.onEnd()
  }

  protected released(): void {
    // Nothing to release by default.
  }

  /** Ends the stream with an error event, written even into a full connection (one line). */
  protected finish(reason: SubsError): void {
    if (this.ended) return
    if (this.sink === null) {
      this.lastWords = reason
    } else {
      this.sink.write(errorLine(reason))
      this.sink.end()
    }
    this.close()
  }

  /** Writes `chunk`; on a full connection, calls `resume` once it drains. */
  protected put(chunk: string | Uint8Array, resume: () => void): boolean {
    const sink = this.sink as Sink
    if (sink.write(chunk)) return true
    this.blocked = true
    sink.onDrain(() => {
      this.blocked = false
      if (!this.ended) resume()
    })
    return false
  }
}

type Phase = 'columns' | 'rows' | 'eoq' | 'log'

/** One listener of a subscription (see the file comment). */
export class SubscriptionWriter extends Writer implements SubListener {
  cursor: number
  cut: SubsError | null = null
  checkedCursor: number
  checkedLag = 0
  live = false
  readonly destroy: () => void
  readonly bufferedBytes: () => number
  private phase: Phase
  private snapshot: Snapshot | null = null
  private startedMs = 0
  /** A turn of `pump` is scheduled. */
  private scheduled = false
  /**
   * Chunks written since the last deferred turn: counted across drain resumes, because against
   * a fast socket `drain` fires on the next tick, and a count that restarted at every resume
   * would write a whole snapshot without ever letting timers (probes, health) run.
   */
  private turnChunks = 0
  private readonly o: {
    readonly sub: Subscription
    readonly store: SubsStore
    readonly start: StreamStart
    readonly limits: StreamLimits
    /** Agent-level reasons to end (shutting down); the listener's own cut is checked too. */
    readonly stop: StopCheck
    /** Times the rows (`eoq`'s `time`) and schedules the turns of a long catch-up. */
    readonly clock: Clock
  }

  constructor(o: {
    readonly sub: Subscription
    readonly store: SubsStore
    readonly start: StreamStart
    readonly limits: StreamLimits
    readonly stop: StopCheck
    readonly clock: Clock
    readonly onEnd: () => void
    readonly destroy: () => void
    readonly bufferedBytes: () => number
  }) {
    super(o.onEnd)
    this.o = o
    this.destroy = o.destroy
    this.bufferedBytes = o.bufferedBytes
    this.cursor = o.start.kind === 'from' ? o.start.changeId : o.sub.lastChange
    this.checkedCursor = this.cursor
    this.phase = o.start.kind === 'from' ? 'log' : 'columns'
  }

  private reason(): SubsError | null {
    const sub = this.o.sub
    if (this.cut !== null) return this.cut
    if (sub.state === 'failed') {
      const message = `subscription failed: ${sub.failure ?? 'unknown error'}`
      // A row over [api] max_row_bytes keeps its code: the client can tell it from a SQL error.
      const cause = sub.failureCause
      return cause instanceof SubsError && cause.code === 'ROW_TOO_LARGE'
        ? new SubsError('ROW_TOO_LARGE', message)
        : new SubsError('FAILED', message)
    }
    if (sub.state === 'closed') {
      return this.o.stop() ?? new SubsError('NOT_FOUND', 'the subscription was closed')
    }
    return this.o.stop()
  }

  /** Ends the stream if it must end (cut, failed, closed, shutting down). */
  check(): void {
    if (this.ended) return
    const stop = this.reason()
    if (stop !== null) this.finish(stop)
  }

  protected started(): void {
    this.startedMs = this.o.clock.now()
    this.pump()
  }

  protected override released(): void {
    this.live = false
    this.snapshot?.close()
    this.snapshot = null
  }

  /**
   * Newly published change events, encoded once for every listener. A live listener writes
   * them; one that is catching up reads them from the log when it gets there.
   */
  deliver(chunks: readonly EncodedChunk[]): void {
    if (!this.live) return
    for (const chunk of chunks) {
      if (chunk.lastId <= this.cursor) continue
      if (chunk.firstId !== this.cursor + 1) {
        // Not contiguous (never expected): the log says what is missing.
        this.live = false
        this.pump()
        return
      }
      this.cursor = chunk.lastId
      if (!this.put(chunk.bytes, this.resume)) {
        this.live = false
        return
      }
    }
  }

  private readonly resume = (): void => {
    this.pump()
  }

  /** Writes what the listener has not got yet, until its connection is full or it is live. */
  private pump(): void {
    if (this.ended || this.blocked || this.sink === null) return
    for (;;) {
      const stop = this.reason()
      if (stop !== null) {
        this.finish(stop)
        return
      }
      if (this.turnChunks >= SUBS_CHUNKS_PER_TURN) {
        // A long catch-up (many rows, a long backlog) yields to everything else in between.
        if (!this.scheduled) {
          this.scheduled = true
          this.o.clock.defer(() => {
            this.scheduled = false
            this.turnChunks = 0
            this.pump()
          })
        }
        return
      }
      const chunk = this.next()
      if (chunk === null) {
        this.turnChunks = 0 // caught up: the next backlog starts a turn of its own
        return
      }
      this.turnChunks++
      if (!this.put(chunk, this.resume)) return
    }
  }

  /** The next chunk to write, or null when live or ended. */
  private next(): string | null {
    const { sub, store, limits } = this.o
    switch (this.phase) {
      case 'columns':
        if (this.o.start.kind === 'rows') {
          this.snapshot = store.snapshot(sub.num)
          if (this.snapshot === null) {
            this.finish(new SubsError('NOT_FOUND', 'the subscription was dropped'))
            return null
          }
          this.cursor = this.snapshot.changeId
          this.phase = 'rows'
        } else {
          this.cursor = sub.lastChange
          this.phase = 'eoq'
        }
        return columnsLine(sub.plan.columns)
      case 'rows': {
        const lines = (this.snapshot as Snapshot).next(limits.pageRows, limits.chunkBytes)
        if (lines.length > 0) return lines.join('')
        ;(this.snapshot as Snapshot).close()
        this.snapshot = null
        this.phase = 'eoq'
        return this.next()
      }
      case 'eoq':
        this.phase = 'log'
        return eoqLine((this.o.clock.now() - this.startedMs) / 1000, this.cursor)
      case 'log':
        return this.fromLog()
    }
  }

  private fromLog(): string | null {
    const { sub, store, limits } = this.o
    const after = this.cursor
    let batch: readonly LoggedChange[] = sub.recentAfter(after, limits.pageRows) ?? []
    if (batch.length === 0 && after < sub.lastChange) {
      batch = store.changesAfter(sub.num, after, limits.pageRows)
    }
    if (batch.length === 0) {
      if (after < sub.lastChange) {
        this.finish(new SubsError('RESUME_GONE', historyGone(after, sub.firstChange)))
        return null
      }
      // At the head: published changes come through `deliver` from now on.
      this.live = true
      return null
    }
    if ((batch[0] as LoggedChange).id !== after + 1) {
      this.finish(new SubsError('RESUME_GONE', historyGone(after, sub.firstChange)))
      return null
    }
    let chunk = ''
    for (const change of batch) {
      chunk += change.line
      this.cursor = change.id
      if (chunk.length >= limits.chunkBytes) break
    }
    return chunk
  }
}

/** Notification lines encoded once for every update stream of a table. */
export interface EncodedLines {
  readonly lines: number
  readonly bytes: Buffer
}

/**
 * One update stream. Notifications its connection cannot take yet wait in its queue (bounded
 * by the hub, which cuts the listener off beyond it).
 */
export class UpdatesWriter extends Writer {
  readonly table: string
  cut: SubsError | null = null
  private queue: EncodedLines[] = []
  /** Notifications and bytes waiting in the queue. */
  queuedLines = 0
  queuedBytes = 0
  readonly destroy: () => void
  readonly bufferedBytes: () => number
  private readonly stop: StopCheck

  constructor(o: {
    readonly table: string
    readonly stop: StopCheck
    readonly onEnd: () => void
    readonly destroy: () => void
    readonly bufferedBytes: () => number
  }) {
    super(o.onEnd)
    this.table = o.table
    this.stop = o.stop
    this.destroy = o.destroy
    this.bufferedBytes = o.bufferedBytes
  }

  check(): void {
    if (this.ended) return
    const stop = this.cut ?? this.stop()
    if (stop !== null) this.finish(stop)
  }

  protected started(): void {
    this.flush()
  }

  protected override released(): void {
    this.queue = []
    this.queuedLines = 0
    this.queuedBytes = 0
  }

  /** New notifications: written now if the connection takes them, queued otherwise. */
  push(chunk: EncodedLines): void {
    if (this.ended) return
    this.queue.push(chunk)
    this.queuedLines += chunk.lines
    this.queuedBytes += chunk.bytes.length
    this.flush()
  }

  private readonly flush = (): void => {
    if (this.ended || this.blocked || this.sink === null) return
    for (;;) {
      const chunk = this.queue.shift()
      if (chunk === undefined) return
      this.queuedLines -= chunk.lines
      this.queuedBytes -= chunk.bytes.length
      if (!this.put(chunk.bytes, this.flush)) return
    }
  }
}

/**
 * A stream as an async generator of text chunks, for reading it in process (tests, tools):
 * each chunk is taken before the next is written, so the writer waits for `drain` each time.
 */
export async function* sinkLines(
  serve: (sink: Sink) => void,
  close: () => void,
): AsyncGenerator<string> {
  const chunks: string[] = []
  // Set by the writer's calls (closures), read by the loop.
  const st: { ended: boolean; notify: (() => void) | null; drain: (() => void) | null } = {
    ended: false,
    notify: null,
    drain: null,
  }
  serve({
    write: (chunk) => {
      chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString())
      st.notify?.()
      return false
    },
    onDrain: (fn) => {
      st.drain = fn
    },
    end: () => {
      st.ended = true
      st.notify?.()
    },
  })
  try {
    for (;;) {
      const chunk = chunks.shift()
      if (chunk !== undefined) {
        yield chunk
        continue
      }
      if (st.ended) return
      const resume = st.drain
      st.drain = null
      if (resume !== null) {
        resume()
        continue
      }
      await new Promise<void>((resolve) => {
        st.notify = resolve
      })
      st.notify = null
    }
  } finally {
    close()
  }
}
