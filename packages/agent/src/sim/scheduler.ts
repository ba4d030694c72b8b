/**
 * The simulation kernel: a virtual clock and a priority queue of events ordered by
 * (time, insertion order). Running pops one event at a time and runs it to completion; ties in
 * time run in the order they were scheduled, so a run depends only on what was scheduled.
 *
 * Promises: code under simulation may await promises that the simulation settles (a stream
 * exchange's answer). Their continuations are microtasks, which must run before the next event,
 * at the virtual time of the event that settled them. Whoever settles such a promise, or hands
 * one to user code, calls `requestDrain()` / `beginAsync()`; after such an event the run loop
 * yields to the Node event loop once (`setImmediate`), which runs every queued microtask.
 */

import type { Clock, TimerId } from '../runtime/clock.ts'

/** Wall-clock time (Unix ms) at virtual time 0: simulated hosts stamp epochs and commits with it. */
export const SIM_EPOCH_BASE = 1_700_000_000_000

interface Entry {
  readonly time: number
  readonly seq: number
  fn: (() => void) | null
}

function before(a: Entry, b: Entry): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq)
}

function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

export class Scheduler {
  private readonly heap: Entry[] = []
  private readonly byId = new Map<number, Entry>()
  private nowMs = 0
  private seq = 0
  private drainRequested = false
  private asyncPending = 0
  private eventsRun = 0

  /** Virtual milliseconds since the start of the simulation. */
  now(): number {
    return this.nowMs
  }

  /** Events run so far. */
  get events(): number {
    return this.eventsRun
  }

  /** Events waiting (cancelled ones included until their time comes). */
  get pending(): number {
    return this.byId.size
  }

  /** Runs `fn` at virtual time `timeMs` (not before now). Returns an id for `cancel`. */
  at(timeMs: number, fn: () => void): number {
    const entry: Entry = { time: Math.max(timeMs, this.nowMs), seq: ++this.seq, fn }
    this.byId.set(entry.seq, entry)
    this.push(entry)
    return entry.seq
  }

  /** Runs `fn` after `ms` virtual milliseconds (0 or less: after the events already due now). */
  after(ms: number, fn: () => void): number {
    return this.at(this.nowMs + Math.max(0, ms), fn)
  }

  cancel(id: number): void {
    const entry = this.byId.get(id)
    if (entry === undefined) return
    entry.fn = null
    this.byId.delete(id)
  }

  /** Time of the next event, or null. */
  nextTime(): number | null {
    this.skipCancelled()
    return this.heap[0]?.time ?? null
  }

  /** Asks the run loop to let microtasks run after the current event. */
  requestDrain(): void {
    this.drainRequested = true
  }

  /** A promise handed to simulated code is pending: drain after every event until it ends. */
  beginAsync(): void {
    this.asyncPending++
  }

  endAsync(): void {
    this.asyncPending--
    this.drainRequested = true
  }

  /** Runs the next event synchronously (no microtask drain). False if there is none. */
  step(): boolean {
    this.skipCancelled()
    const entry = this.pop()
    if (entry === undefined) return false
    this.nowMs = entry.time
    this.byId.delete(entry.seq)
    const fn = entry.fn
    entry.fn = null
    this.eventsRun++
    fn?.()
    return true
  }

  /**
   * Runs every event up to and including virtual time `timeMs`, draining microtasks where
   * needed, then sets the clock to `timeMs`.
   */
  async runUntil(timeMs: number): Promise<void> {
    // Whatever the caller started before running (a node's start()) continues first.
    await drainMicrotasks()
    for (;;) {
      const next = this.nextTime()
      if (next === null || next > timeMs) break
      this.step()
      if (this.drainRequested || this.asyncPending > 0) {
        this.drainRequested = false
        await drainMicrotasks()
      }
    }
    if (timeMs > this.nowMs) this.nowMs = timeMs
    await drainMicrotasks()
  }

  async runFor(ms: number): Promise<void> {
    await this.runUntil(this.nowMs + ms)
  }

  private skipCancelled(): void {
    while (this.heap.length > 0 && (this.heap[0] as Entry).fn === null) this.pop()
  }

  private push(entry: Entry): void {
    const heap = this.heap
    heap.push(entry)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = heap[parent] as Entry
      if (!before(entry, p)) break
      heap[i] = p
      i = parent
    }
    heap[i] = entry
  }

  private pop(): Entry | undefined {
    const heap = this.heap
    const top = heap[0]
    const last = heap.pop()
    if (top === undefined || last === undefined || heap.length === 0) return top
    let i = 0
    const n = heap.length
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      const child = r < n && before(heap[r] as Entry, heap[l] as Entry) ? r : l
      const c = heap[child] as Entry
      if (!before(c, last)) break
      heap[i] = c
      i = child
    }
    heap[i] = last
    return top
  }
}

/**
 * A Clock on the scheduler's virtual time, for tests that drive one component without hosts.
 * `defer` is a 0 ms timer; `wallNow` is SIM_EPOCH_BASE + now.
 */
export function virtualClock(scheduler: Scheduler): Clock {
  const cancel = (id: TimerId): void => {
    if (typeof id === 'number') scheduler.cancel(id)
  }
  return {
    now: () => scheduler.now(),
    wallNow: () => SIM_EPOCH_BASE + scheduler.now(),
    setTimer: (ms, fn) => scheduler.after(ms, fn),
    clearTimer: cancel,
    defer: (fn) => {
      scheduler.after(0, fn)
    },
  }
}
