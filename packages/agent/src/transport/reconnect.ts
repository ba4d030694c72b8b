import type { Clock, TimerId } from '../runtime/clock.ts'
import type { Random } from '../runtime/random.ts'
import { RECONNECT_BASE_MS, RECONNECT_MAX_MS, RECONNECT_STABLE_MS } from './defaults.ts'
import { abortError, TransportError } from './errors.ts'
import type { FramedConnection, StreamTransport } from './stream.ts'

export interface ReconnectComponents {
  readonly transport: StreamTransport
  /** Retry and stability timers (systemClock's are unref'd: a pending retry keeps no process alive). */
  readonly clock: Clock
  /** Jitter of the backoff; seeded in tests and simulation. */
  readonly random: Random
}

export interface ReconnectInit {
  readonly addr: string
  /** Stops everything when it fires: the pending retry, the connect in flight, the connection. */
  readonly signal: AbortSignal
  /** Default RECONNECT_BASE_MS. */
  readonly baseMs?: number
  /** Default RECONNECT_MAX_MS. */
  readonly maxMs?: number
  /** Default RECONNECT_STABLE_MS. */
  readonly stableMs?: number
  /**
   * Called with each new connection before anyone waiting in `connection()` gets it, e.g. to
   * send a hello frame. A throw is a programmer error and is not caught.
   */
  readonly onConnect?: (connection: FramedConnection) => void
  /** Told about every connect, disconnect and scheduled retry (for logs). Must not throw. */
  readonly onEvent?: (event: ReconnectEvent) => void
}

export type ReconnectEvent =
  | { readonly type: 'connected'; readonly addr: string }
  | {
      readonly type: 'disconnected'
      readonly addr: string
      readonly error: TransportError | undefined
    }
  | {
      readonly type: 'retrying'
      readonly addr: string
      /** Consecutive failed or short-lived connections before this retry, from 0. */
      readonly retry: number
      readonly delayMs: number
      readonly error: unknown
    }

export type ReconnectState = 'idle' | 'connecting' | 'connected' | 'waiting' | 'stopped'

export interface ReconnectStats {
  readonly state: ReconnectState
  /** Connects started. */
  readonly attempts: number
  readonly connects: number
  readonly failures: number
  readonly disconnects: number
}

interface Waiter {
  readonly resolve: (connection: FramedConnection) => void
  readonly reject: (error: TransportError) => void
}

/**
 * Keeps one connection to one address up, for as long as its signal has not fired.
 *
 * 1. The first connect starts at `start()`, at once.
 * 2. After a failed connect, or when the connection closes, the next connect waits
 *    `random() * min(maxMs, baseMs * 2^n)` ("full jitter"), where n counts the failures and
 *    short-lived connections since the last connection that stayed up `stableMs`.
 * 3. `connection()` gives the live connection, or waits for the next one.
 * 4. When the signal fires: no more connects, the live connection is closed, and waiting
 *    `connection()` calls reject with ABORTED.
 *
 * All scheduling goes through the injected `clock` and `random`, so it runs on a virtual clock.
 */
export class ReconnectingConnection {
  private readonly components: ReconnectComponents
  private readonly addr: string
  private readonly signal: AbortSignal
  private readonly baseMs: number
  private readonly maxMs: number
  private readonly stableMs: number
  private readonly onConnect: ((connection: FramedConnection) => void) | undefined
  private readonly onEvent: (event: ReconnectEvent) => void
  private state: ReconnectState = 'idle'
  private live: FramedConnection | undefined
  private retry = 0
  private retryTimer: TimerId | undefined
  private stableTimer: TimerId | undefined
  private waiters: Waiter[] = []
  private attempts = 0
  private connects = 0
  private failures = 0
  private disconnects = 0

  constructor(components: ReconnectComponents, init: ReconnectInit) {
    this.components = components
    this.addr = init.addr
    this.signal = init.signal
    this.baseMs = init.baseMs ?? RECONNECT_BASE_MS
    this.maxMs = init.maxMs ?? RECONNECT_MAX_MS
    this.stableMs = init.stableMs ?? RECONNECT_STABLE_MS
    this.onConnect = init.onConnect
    this.onEvent = init.onEvent ?? (() => undefined)
  }

  /** Starts connecting; idempotent. Runs until the signal fires. */
  start(): void {
    if (this.state !== 'idle') return
    if (this.signal.aborted) {
      this.stop()
      return
    }
    this.signal.addEventListener(
      'abort',
      () => {
        this.stop()
      },
      { once: true },
    )
    this.attempt()
  }

  /** The live connection, if there is one now. */
  current(): FramedConnection | undefined {
    return this.live
  }

  /** The live connection, or the next one. Rejects with ABORTED when either signal fires. */
  connection(signal?: AbortSignal): Promise<FramedConnection> {
    if (this.live !== undefined) return Promise.resolve(this.live)
    if (this.state === 'stopped') return Promise.reject(abortError(this.signal, 'reconnect'))
    if (signal?.aborted === true) return Promise.reject(abortError(signal, 'wait for connection'))
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters = this.waiters.filter((w) => w !== waiter)
        reject(abortError(signal as AbortSignal, 'wait for connection'))
      }
      const waiter: Waiter = {
        resolve: (connection) => {
          signal?.removeEventListener('abort', onAbort)
          resolve(connection)
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort)
          reject(error)
        },
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiters.push(waiter)
    })
  }

  stats(): ReconnectStats {
    return {
      state: this.state,
      attempts: this.attempts,
      connects: this.connects,
      failures: this.failures,
      disconnects: this.disconnects,
    }
  }

  private attempt(): void {
    this.retryTimer = undefined
    this.state = 'connecting'
    this.attempts += 1
    this.components.transport.connect(this.addr, this.signal).then(
      (connection) => {
        this.connected(connection)
      },
      (error: unknown) => {
        if (this.state === 'stopped') return
        this.failures += 1
        this.scheduleRetry(error)
      },
    )
  }

  private connected(connection: FramedConnection): void {
    if (this.state === 'stopped') {
      connection.close()
      return
    }
    this.state = 'connected'
    this.live = connection
    this.connects += 1
    this.stableTimer = this.components.clock.setTimer(this.stableMs, () => {
      this.stableTimer = undefined
      this.retry = 0
    })
    this.onEvent({ type: 'connected', addr: this.addr })
    this.onConnect?.(connection)
    const waiters = this.waiters
    this.waiters = []
    for (const waiter of waiters) waiter.resolve(connection)
    void connection.closed().then((error) => {
      this.disconnected(connection, error)
    })
  }

  private disconnected(connection: FramedConnection, error: TransportError | undefined): void {
    if (this.live !== connection || this.state === 'stopped') return
    this.live = undefined
    this.disconnects += 1
    this.clearStableTimer()
    this.onEvent({ type: 'disconnected', addr: this.addr, error })
    this.scheduleRetry(error)
  }

  private scheduleRetry(error: unknown): void {
    // 2^52 * base is far past any maxMs: stop growing the exponent there.
    const ceilingMs = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.retry, 52))
    const delayMs = Math.floor(this.components.random.float() * ceilingMs)
    this.onEvent({ type: 'retrying', addr: this.addr, retry: this.retry, delayMs, error })
    this.retry += 1
    this.state = 'waiting'
    this.retryTimer = this.components.clock.setTimer(delayMs, () => {
      this.attempt()
    })
  }

  private stop(): void {
    if (this.state === 'stopped') return
    this.state = 'stopped'
    if (this.retryTimer !== undefined) this.components.clock.clearTimer(this.retryTimer)
    this.retryTimer = undefined
    this.clearStableTimer()
    this.live?.close()
    this.live = undefined
    const waiters = this.waiters
    this.waiters = []
    for (const waiter of waiters) waiter.reject(abortError(this.signal, 'reconnect'))
  }

  private clearStableTimer(): void {
    if (this.stableTimer !== undefined) this.components.clock.clearTimer(this.stableTimer)
    this.stableTimer = undefined
  }
}
