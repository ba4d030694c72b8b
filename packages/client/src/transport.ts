/**
 * One call to the agents: pick an agent, send, and fail over to the next when that is safe.
 *
 * Retry rules (docs/client.md, "Failover"):
 *   1. The request certainly did not reach the agent (connection refused, unknown host, no
 *      route, connect timeout): try the next agent. Safe for every call, transactions included.
 *   2. The agent answered 503 (or 429): it refused before running anything (the agent's
 *      contract: a cap was reached, or it is shutting down). Try the next agent; the one that
 *      refused is passed over for its Retry-After. Safe for every call.
 *   3. Anything else that leaves no answer (connection reset, timeout after sending, 5xx other
 *      than 503): retried for reads (queries, subscribe, updates), which change nothing. A
 *      transaction is not retried: it throws OutcomeUnknownError (or TransactionError when a 500
 *      says it failed and rolled back).
 *   4. Any other 4xx: the caller's mistake; thrown at once, never retried.
 * Each agent is tried once before any is tried twice; from the second round on, attempts wait a
 * backoff with full jitter (at least the Retry-After a 503 asked for, at most maxDelayMs).
 */
import { RETRY_ATTEMPTS } from './defaults.ts'
import type { Endpoint, EndpointPool } from './endpoints.ts'
import {
  AbortError,
  ClientClosedError,
  ConnectionError,
  OutcomeUnknownError,
  PatinaHttpError,
  TimeoutError,
  TransactionError,
  type EndpointFailure,
  type FailedStatementResult,
} from './errors.ts'
import { JSON_TYPE, RETRY_AFTER_HEADER } from '@patina/protocol'
import { backoffMs, link, sleep, unref } from './signals.ts'
import { parseJson } from './values.ts'

/** Something worth knowing that the client handled on its own (for logs and metrics). */
export type ClientEvent =
  | {
      readonly type: 'request-failed'
      readonly url: string
      readonly error: Error
      /** Whether the call goes on with another attempt. */
      readonly retrying: boolean
    }
  | {
      readonly type: 'subscription-retry'
      readonly id: string
      readonly agent: string
      readonly attempt: number
      readonly delayMs: number
      readonly error: Error
    }
  | {
      readonly type: 'subscription-resumed'
      readonly id: string
      readonly agent: string
      readonly from: number | null
    }

export interface RetryPolicy {
  /** Attempts per call; null: at least RETRY_ATTEMPTS and every agent once. */
  readonly attempts: number | null
  readonly baseDelayMs: number
  readonly maxDelayMs: number
}

/** What the client reads of an HTTP answer: a subset of fetch's Response. */
export interface HttpAnswer {
  readonly ok: boolean
  readonly status: number
  readonly statusText: string
  readonly headers: { get(name: string): string | null }
  /** The body as a stream; cancelling it releases (or closes) the connection. */
  readonly body: ReadableStream<Uint8Array> | null
  text(): Promise<string>
}

export interface HttpRequestInit {
  readonly method: 'GET' | 'POST'
  readonly headers: Record<string, string>
  readonly body?: string
  /** Aborts the request, and the body read once the answer is in. */
  readonly signal: AbortSignal
}

/**
 * How the client sends a request: fetch (browsers, or a `fetch` option), or a pooled keep-alive
 * dispatcher in Node (node/http.ts, the package's Node entry).
 */
export interface Http {
  request(url: string, init: HttpRequestInit): Promise<HttpAnswer>
  /** Whether a failed request (`err`) to `url` certainly was not sent, so any retry is safe. */
  notSent(err: unknown, url: string): boolean
  /** Releases what it holds (connections); called by `client.close()`. */
  close(): Promise<void>
}

/** Http over a fetch function: what a browser has, and what the `fetch` option gives. */
export function fetchHttp(f: typeof fetch): Http {
  return {
    request: async (url, init) => {
      const { method, headers, body, signal } = init
      // Called unbound, a browser's fetch throws "Illegal invocation".
      return f(
        url,
        body === undefined ? { method, headers, signal } : { method, headers, body, signal },
      )
    },
    notSent: (err, url) => certainlyNotSent(err) || isBadPort(url),
    close: () => Promise.resolve(),
  }
}

export interface TransportOptions {
  readonly http: Http
  readonly headers: Readonly<Record<string, string>>
  readonly timeoutMs: number
  readonly retry: RetryPolicy
  readonly pool: EndpointPool
  /** Aborts (with ClientClosedError) when the client closes. */
  readonly closed: AbortSignal
  readonly onEvent: ((event: ClientEvent) => void) | undefined
}

export interface RequestSpec {
  readonly method: 'GET' | 'POST'
  readonly path: string
  readonly body?: string
  /** `transaction`: not retried unless it certainly did not run (rules 1 and 2). */
  readonly kind: 'transaction' | 'read'
  /** Send to this agent only (a subscription lives on one agent). */
  readonly agent?: string
  /** Overrides the retry policy's attempts. */
  readonly attempts?: number
}

export interface CallOptions {
  /** Aborts the call (and the stream it returned): it rejects with AbortError. */
  readonly signal?: AbortSignal
  /** Per attempt, until the response headers; 0: none. Default: the client's `timeoutMs`. */
  readonly timeoutMs?: number
}

/** A 2xx answer. Call `finish()` once done with the body (releases the abort listeners). */
export interface Sent {
  readonly response: HttpAnswer
  readonly url: string
  /** Aborts when the call is aborted or the client closes; the body read then rejects. */
  readonly signal: AbortSignal
  finish(): void
}

/** Error codes that mean the connection was never made, so nothing was sent. */
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_NONAME',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
  'ERR_INVALID_URL',
])

interface ErrorLike {
  code?: unknown
  message?: unknown
  cause?: unknown
  errors?: unknown
}

/**
 * Ports fetch refuses to connect to (the Fetch standard's "bad port" list): a fetch to one of
 * them fails before anything is sent.
 */
const BAD_PORTS = new Set([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102,
  103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465,
  512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993,
  995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668,
  6669, 6679, 6697, 10080,
])

/** Whether fetch refuses `url` for its port, so a failed fetch to it sent nothing. */
export function isBadPort(url: string): boolean {
  try {
    const port = new URL(url).port
    return port !== '' && BAD_PORTS.has(Number(port))
  } catch {
    // Not a URL: fetch refuses it before sending anything too (ERR_INVALID_URL).
    return true
  }
}

/**
 * Whether a request failure certainly happened before the request was sent. Only Node (undici)
 * says why a request failed; a browser's bare "Failed to fetch" counts as "may have been sent".
 */
export function certainlyNotSent(err: unknown): boolean {
  let e = err as ErrorLike | null | undefined
  for (let depth = 0; depth < 4 && e !== undefined && e !== null; depth++) {
    if (typeof e.code === 'string' && NOT_SENT_CODES.has(e.code)) {
      if (!Array.isArray(e.errors)) return true
      // Several addresses tried (happy eyeballs): all must have failed to connect.
      return e.errors.every((x) => certainlyNotSent(x))
    }
    e = e.cause as ErrorLike | null | undefined
  }
  return false
}

/** A short reason for a failed attempt, e.g. "connection refused (ECONNREFUSED)". */
export function describeFailure(err: unknown): string {
  let e = err as ErrorLike | null | undefined
  for (let depth = 0; depth < 4 && e !== undefined && e !== null; depth++) {
    if (typeof e.code === 'string' && e.code !== '' && typeof e.message === 'string') {
      if (e.code === 'ECONNREFUSED') return `connection refused (${e.code})`
      return `${e.message} (${e.code})`
    }
    if (e.cause === undefined || e.cause === null) break
    e = e.cause
  }
  return err instanceof Error ? err.message : String(err)
}

/** The AbortError for a call whose signal fired with `reason`. */
export function abortError(reason: unknown): AbortError {
  if (reason instanceof ClientClosedError) {
    return new AbortError('the client was closed', { cause: reason })
  }
  const why = reason instanceof Error ? `: ${reason.message}` : ''
  return new AbortError(`the call was aborted${why}`, { cause: reason })
}

/** Milliseconds from a Retry-After header (seconds or an HTTP date); null if absent or bad. */
export function parseRetryAfter(value: string | null): number | null {
  if (value === null) return null
  const s = value.trim()
  if (/^\d+$/.test(s)) return Number(s) * 1000
  const date = Date.parse(s)
  return Number.isNaN(date) ? null : Math.max(0, date - Date.now())
}

/** Longest error body kept in a message: a proxy's HTML page would drown it. */
const ERROR_TEXT_MAX_CHARS = 2000

/**
 * The error for a non-2xx answer: the agent's `{"error": ..., "code": ...}` message and code,
 * or the status line.
 */
async function httpError(res: HttpAnswer, url: string, kind: RequestSpec['kind']) {
  const retryAfterMs = parseRetryAfter(res.headers.get(RETRY_AFTER_HEADER))
  let text = ''
  try {
    text = await res.text()
  } catch {
    // The body broke off: the status alone still says what happened.
  }
  let message = `HTTP ${res.status} ${res.statusText}`.trim()
  let results: FailedStatementResult[] | null = null
  let agentCode: string | null = null
  try {
    const body = parseJson(text)
    if (typeof body === 'object' && body !== null && !Array.isArray(body)) {
      if (typeof body.error === 'string') message = body.error
      if (typeof body.code === 'string') agentCode = body.code
      if (Array.isArray(body.results)) {
        results = body.results.map((r) => ({
          error:
            typeof r === 'object' && r !== null && !Array.isArray(r) && typeof r.error === 'string'
              ? r.error
              : message,
        }))
      }
    }
  } catch {
    // Not JSON (a proxy's page): keep the status line and the start of the text.
    if (text.trim() !== '') message += `: ${text.trim().slice(0, ERROR_TEXT_MAX_CHARS)}`
  }
  if (kind === 'transaction' && results !== null && (res.status === 400 || res.status === 500)) {
    return new TransactionError(res.status, message, url, results, { agentCode })
  }
  return new PatinaHttpError(res.status, message, url, retryAfterMs, { agentCode })
}

export class Transport {
  readonly #o: TransportOptions

  constructor(options: TransportOptions) {
    this.#o = options
  }

  get pool(): EndpointPool {
    return this.#o.pool
  }

  #emit(event: ClientEvent): void {
    this.#o.onEvent?.(event)
  }

  /** Sends `spec`, failing over per the rules above; resolves with the first 2xx answer. */
  async send(spec: RequestSpec, options: CallOptions = {}): Promise<Sent> {
    const call = link(options.signal, this.#o.closed)
    if (call.signal.aborted) throw abortError(call.signal.reason)
    const pool = this.#o.pool
    let order: Endpoint[]
    if (spec.agent === undefined) {
      order = pool.order()
    } else {
      order = [pool.find(spec.agent) ?? { url: spec.agent, failures: 0, downUntil: 0 }]
    }
    const attempts =
      spec.attempts ?? this.#o.retry.attempts ?? Math.max(RETRY_ATTEMPTS, order.length)
    const timeoutMs = options.timeoutMs ?? this.#o.timeoutMs
    const failures: EndpointFailure[] = []
    let retryAfterMs = 0
    try {
      for (let k = 0; k < attempts; k++) {
        if (k >= order.length) {
          const wait = Math.max(
            backoffMs(k - order.length + 1, this.#o.retry.baseDelayMs, this.#o.retry.maxDelayMs),
            Math.min(retryAfterMs, this.#o.retry.maxDelayMs),
          )
          await sleep(wait, call.signal).catch(() => {
            throw abortError(call.signal.reason)
          })
        }
        const endpoint = order[k % order.length]
        if (endpoint === undefined) break
        const outcome = await this.#attempt(spec, endpoint, call.signal, timeoutMs)
        if ('sent' in outcome) {
          const sent = outcome.sent
          return {
            ...sent,
            finish: () => {
              sent.finish()
              call.unlink()
            },
          }
        }
        const { error, retry } = outcome
        if (error instanceof PatinaHttpError && error.retryAfterMs !== null) {
          retryAfterMs = error.retryAfterMs
        }
        failures.push({ url: endpoint.url, error })
        const retrying = retry && k + 1 < attempts
        this.#emit({ type: 'request-failed', url: endpoint.url, error, retrying })
        if (!retry) throw error
      }
      throw exhausted(failures)
    } catch (err) {
      call.unlink()
      throw err
    }

    function exhausted(list: readonly EndpointFailure[]): Error {
      const last = list[list.length - 1]?.error
      if (last !== undefined && list.every((f) => f.error instanceof PatinaHttpError)) return last
      const reasons = list.map((f) => `${f.url}: ${describeFailure(f.error)}`).join('; ')
      return new ConnectionError(
        `no agent answered after ${list.length} attempt${list.length === 1 ? '' : 's'} (${reasons})`,
        list,
        { cause: last },
      )
    }
  }

  /** One attempt on one agent: the answer, or the error and whether another attempt is safe. */
  async #attempt(
    spec: RequestSpec,
    endpoint: Endpoint,
    callSignal: AbortSignal,
    timeoutMs: number,
  ): Promise<{ sent: Sent } | { error: Error; retry: boolean }> {
    const pool = this.#o.pool
    const attempt = link(callSignal)
    let timer: ReturnType<typeof setTimeout> | undefined
    if (timeoutMs > 0) {
      timer = setTimeout(() => {
        attempt.abort(new TimeoutError(`no answer from ${endpoint.url} within ${timeoutMs} ms`))
      }, timeoutMs)
      unref(timer)
    }
    const headers: Record<string, string> = { ...this.#o.headers }
    if (spec.body !== undefined) headers['content-type'] = JSON_TYPE
    let res: HttpAnswer
    try {
      const { method, body } = spec
      const signal = attempt.signal
      res = await this.#o.http.request(
        `${endpoint.url}${spec.path}`,
        body === undefined ? { method, headers, signal } : { method, headers, body, signal },
      )
    } catch (err) {
      clearTimeout(timer)
      attempt.unlink()
      if (callSignal.aborted) throw abortError(callSignal.reason)
      const reason: unknown = attempt.signal.reason
      const error = reason instanceof TimeoutError ? reason : toError(err)
      pool.markDown(endpoint, null)
      if (reason instanceof TimeoutError || !this.#o.http.notSent(err, endpoint.url)) {
        if (spec.kind === 'transaction') {
          throw new OutcomeUnknownError(
            `the transaction was sent to ${endpoint.url} but no answer came back ` +
              `(${describeFailure(error)}): it may or may not have been applied. ` +
              'It is not retried; read back to check before sending it again.',
            endpoint.url,
            { cause: error },
          )
        }
      }
      return { error, retry: true }
    }
    if (res.ok) {
      clearTimeout(timer)
      pool.markUp(endpoint)
      return {
        sent: {
          response: res,
          url: endpoint.url,
          signal: attempt.signal,
          finish: () => {
            attempt.unlink()
          },
        },
      }
    }
    let error: PatinaHttpError
    try {
      error = await httpError(res, endpoint.url, spec.kind)
    } finally {
      clearTimeout(timer)
      attempt.unlink()
    }
    if (callSignal.aborted) throw abortError(callSignal.reason)
    if (res.status === 503 || res.status === 429) {
      pool.markDown(endpoint, error.retryAfterMs)
      return { error, retry: true }
    }
    if (res.status >= 500) {
      pool.markDown(endpoint, null)
      if (spec.kind === 'transaction') {
        if (error instanceof TransactionError) throw error
        throw new OutcomeUnknownError(
          `the transaction was sent to ${endpoint.url}, which answered ${res.status} ` +
            `(${error.message}): it may or may not have been applied. ` +
            'It is not retried; read back to check before sending it again.',
          endpoint.url,
          { cause: error },
        )
      }
      return { error, retry: true }
    }
    pool.markUp(endpoint)
    return { error, retry: false }
  }
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}
