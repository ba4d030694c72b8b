/**
 * The NDJSON a listener reads, as async generators of text chunks (the API pipes them into the
 * response, which pulls a chunk only when the previous one was taken: backpressure).
 *
 * A subscription listener keeps no queue of its own: it holds a cursor (the last change id it
 * was handed) and reads the subscription's log after it, from the in-memory window of recent
 * changes or from the subscriptions database. What the agent buffers for it is one chunk plus
 * what its socket holds. A listener too far behind is cut off by the manager (its `cut` is
 * set): the stream then yields one error event and ends.
 */
import { performance } from 'node:perf_hooks'
import { columnsLine, eoqLine, errorLine } from './events.ts'
import type { Snapshot, SubsStore } from './subs-store.ts'
import type { LoggedChange, SubListener, Subscription } from './subscription.ts'
import type { UpdateListener } from './updates.ts'

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
export type StopCheck = () => string | null

function waitFor(
  setWake: (wake: () => void) => void,
  clearWake: () => void,
  signal: AbortSignal,
): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      signal.removeEventListener('abort', done)
      clearWake()
      resolve()
    }
    if (signal.aborted) {
      resolve()
      return
    }
    signal.addEventListener('abort', done, { once: true })
    setWake(done)
  })
}

export async function* subscriptionStream(o: {
  readonly sub: Subscription
  readonly listener: SubListener
  readonly store: SubsStore
  readonly start: StreamStart
  readonly limits: StreamLimits
  /** Aborted when the connection closes or the agent stops. */
  readonly signal: AbortSignal
  /** Agent-level reasons to end (shutting down); the listener's own cut is checked too. */
  readonly stop: StopCheck
  readonly onEnd: () => void
}): AsyncGenerator<string> {
  const { sub, listener, store, limits } = o
  let snapshot: Snapshot | null = null
  const reason = (): string | null => {
    if (listener.cut !== null) return listener.cut
    if (sub.state === 'failed') return `subscription failed: ${sub.failure ?? 'unknown error'}`
    if (sub.state === 'closed') return o.stop() ?? 'the subscription was closed'
    return o.stop()
  }
  try {
    if (o.start.kind !== 'from') {
      const started = performance.now()
      yield columnsLine(sub.plan.columns)
      if (o.start.kind === 'rows') {
        snapshot = store.snapshot(sub.num)
        if (snapshot === null) {
          yield errorLine('the subscription was dropped')
          return
        }
        listener.cursor = snapshot.changeId
        for (;;) {
          const stop = reason()
          if (stop !== null) {
            yield errorLine(stop)
            return
          }
          if (o.signal.aborted) return
          const lines = snapshot.next(limits.pageRows, limits.chunkBytes)
          if (lines.length === 0) break
          yield lines.join('')
        }
        snapshot.close()
        snapshot = null
      } else {
        listener.cursor = sub.lastChange
      }
      yield eoqLine((performance.now() - started) / 1000, listener.cursor)
    }
    for (;;) {
      const stop = reason()
      if (stop !== null) {
        yield errorLine(stop)
        return
      }
      if (o.signal.aborted) return
      const after = listener.cursor
      let batch: readonly LoggedChange[] = sub.recentAfter(after, limits.pageRows) ?? []
      if (batch.length === 0 && after < sub.lastChange) {
        batch = store.changesAfter(sub.num, after, limits.pageRows)
      }
      if (batch.length === 0) {
        if (after < sub.lastChange) {
          yield errorLine(historyGone(after, sub.firstChange))
          return
        }
        await waitFor(
          (wake) => {
            listener.wake = wake
          },
          () => {
            listener.wake = null
          },
          o.signal,
        )
        continue
      }
      if ((batch[0] as LoggedChange).id !== after + 1) {
        yield errorLine(historyGone(after, sub.firstChange))
        return
      }
      let chunk = ''
      for (const change of batch) {
        chunk += change.line
        listener.cursor = change.id
        if (chunk.length >= limits.chunkBytes) break
      }
      yield chunk
    }
  } finally {
    snapshot?.close()
    o.onEnd()
  }
}

export function historyGone(after: number, firstKept: number): string {
  return (
    `the changes after change id ${after} are no longer kept (oldest kept: ${firstKept}, ` +
    '[subscriptions] max_history): subscribe again without from to start over'
  )
}

export async function* updatesStream(o: {
  readonly listener: UpdateListener
  readonly limits: StreamLimits
  readonly signal: AbortSignal
  readonly stop: StopCheck
  readonly onEnd: () => void
}): AsyncGenerator<string> {
  const { listener } = o
  try {
    for (;;) {
      const stop = listener.cut ?? o.stop()
      if (stop !== null) {
        yield errorLine(stop)
        return
      }
      if (o.signal.aborted) return
      if (listener.queue.length === 0) {
        await waitFor(
          (wake) => {
            listener.wake = wake
          },
          () => {
            listener.wake = null
          },
          o.signal,
        )
        continue
      }
      let chunk = ''
      let taken = 0
      for (const line of listener.queue) {
        chunk += line
        taken++
        if (chunk.length >= o.limits.chunkBytes) break
      }
      listener.queue.splice(0, taken)
      listener.queuedBytes -= chunk.length
      yield chunk
    }
  } finally {
    o.onEnd()
  }
}
