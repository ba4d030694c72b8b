/** Abort plumbing and timers that never keep a Node process alive. */

/** `unref()` a timer where the platform has it (Node), so it never holds the process open. */
export function unref(timer: unknown): void {
  const t = timer as { unref?: () => void }
  if (typeof t === 'object' && typeof t.unref === 'function') t.unref()
}

/**
 * A signal that aborts when any source does, with that source's reason. `unlink()` removes the
 * listeners (AbortSignal.any would keep them until the sources are collected; a client's
 * long-lived close signal would gather one per request).
 */
export interface Linked {
  readonly signal: AbortSignal
  abort(reason: unknown): void
  unlink(): void
}

export function link(...sources: (AbortSignal | undefined)[]): Linked {
  const controller = new AbortController()
  const listeners: [AbortSignal, () => void][] = []
  const unlink = (): void => {
    for (const [s, l] of listeners) s.removeEventListener('abort', l)
    listeners.length = 0
  }
  for (const s of sources) {
    if (s === undefined) continue
    if (s.aborted) {
      controller.abort(s.reason)
      break
    }
    const l = (): void => {
      controller.abort(s.reason)
      unlink()
    }
    s.addEventListener('abort', l, { once: true })
    listeners.push([s, l])
  }
  if (controller.signal.aborted) unlink()
  return {
    signal: controller.signal,
    abort: (reason) => {
      controller.abort(reason)
      unlink()
    },
    unlink,
  }
}

/** Waits `ms` (an unref'd timer); rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error)
      return
    }
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(signal.reason as Error)
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    unref(timer)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** Exponential backoff with full jitter: a random wait in [0, min(max, base * 2^(attempt-1))]. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1))
  return Math.round(Math.random() * ceiling)
}
