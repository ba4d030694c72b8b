/** The client: `createClient()` and the calls of the agent's HTTP API. */
import { QUERY_ID_HEADER, type WireEvent } from '@patina/protocol'
import {
  ENDPOINT_DOWN_BASE_MS,
  ENDPOINT_DOWN_MAX_MS,
  MAX_LINE_CHARS,
  REQUEST_TIMEOUT_MS,
  RESUME_ATTEMPTS,
  RESUME_BASE_DELAY_MS,
  RESUME_MAX_DELAY_MS,
  RETRY_BASE_DELAY_MS,
  RETRY_MAX_DELAY_MS,
} from './defaults.ts'
import { EndpointPool, normaliseUrls } from './endpoints.ts'
import {
  ClientClosedError,
  ConnectionError,
  PatinaError,
  PatinaHttpError,
  ProtocolError,
  SubscriptionGoneError,
} from './errors.ts'
import { readLines, TruncatedStreamError } from './ndjson.ts'
import { decodeLine, makeRow, readColumns, streamError } from './rows.ts'
import { encodeStatement, encodeStatements, type Statement } from './statements.ts'
import { isGoneAnswer, Subscription, type SubscriptionContext } from './subscription.ts'
import { link } from './signals.ts'
import {
  abortError,
  fetchHttp,
  Transport,
  type Http,
  type CallOptions,
  type ClientEvent,
  type Sent,
} from './transport.ts'
import { UpdateStream } from './updates.ts'
import {
  parseJson,
  toCount,
  toNumber,
  type IntegerMode,
  type JsonValue,
  type Row,
  type SqlValue,
} from './values.ts'

export interface ClientOptions {
  /** Agent base URLs, e.g. `['http://10.0.0.1:8080', 'http://10.0.0.2:8080']`. */
  readonly urls?: readonly string[]
  /** One agent base URL (same as `urls: [url]`). */
  readonly url?: string
  /** Bearer token (`[api.authz] bearer-token` of the agents): sent as `Authorization`. */
  readonly token?: string
  /** Extra headers on every request. */
  readonly headers?: Readonly<Record<string, string>>
  /**
   * Send every request with this fetch. Default: in Node, a keep-alive connection pool of the
   * client's own (undici); elsewhere the global fetch.
   */
  readonly fetch?: typeof fetch
  /** Per attempt, until the response headers arrive; 0: none. Default 30 s. */
  readonly timeoutMs?: number
  /** INTEGER decoding: `auto` (number when safe, bigint beyond 2^53; default) or `bigint`. */
  readonly integers?: IntegerMode
  /** Failover and retry of calls (transactions only when safe: see docs/client.md). */
  readonly retry?: {
    /** Attempts per call; default: 3, or one per agent if more. */
    readonly attempts?: number
    readonly baseDelayMs?: number
    readonly maxDelayMs?: number
  }
  /** How subscriptions resume after a disconnect. */
  readonly resume?: {
    /** Failed resume attempts in a row before ResumeError; default 10. */
    readonly attempts?: number
    readonly baseDelayMs?: number
    readonly maxDelayMs?: number
  }
  /** Longest NDJSON line accepted (characters); default 64 Mi. */
  readonly maxLineChars?: number
  /** Told about failovers and resumes the client handled (for logs and metrics). */
  readonly onEvent?: (event: ClientEvent) => void
}

/** The result of one statement of a transaction. */
export interface StatementResult {
  readonly rowsAffected: number
  /** Seconds the statement took on the agent. */
  readonly time: number
}

export interface TransactionResult {
  readonly results: readonly StatementResult[]
  /** Seconds the transaction took on the agent. */
  readonly time: number
  /** The agent's version for this transaction; null when it changed nothing. */
  readonly version: number | null
  /** The actor (agent) that applied it, as hex. */
  readonly actorId: string
}

export interface SubscribeOptions extends CallOptions {
  /**
   * Resume from this change id instead of starting with the rows: only the changes after it
   * are delivered. Change ids belong to one agent's subscription, so with several agents give
   * `agent` too.
   */
  readonly from?: number
  /** Subscribe on this agent (e.g. `sub.agent` of an earlier subscription). */
  readonly agent?: string
  /**
   * With `from`: the result's column names (`sub.columns` of the earlier subscription). A
   * stream resumed with `from` does not repeat them; when they are not given, the client asks
   * the agent for them first (`POST /v1/subscriptions?skip_rows=true`, which sends only the
   * columns and the current change id) and yields no `columns` event.
   */
  readonly columns?: readonly string[]
}

/**
 * A stream to open with `client.events()`: a query, a new subscription, an existing one by id,
 * or a table's update stream.
 */
export type EventsRequest =
  | { readonly route: 'query'; readonly statement: Statement }
  | {
      readonly route: 'subscribe'
      readonly statement: Statement
      readonly from?: number
      readonly skipRows?: boolean
    }
  | {
      readonly route: 'attach'
      readonly id: string
      readonly from?: number
      readonly skipRows?: boolean
    }
  | { readonly route: 'updates'; readonly table: string }

/** The events of one stream as the agent sent them (`client.events()`). */
export interface EventsStream extends AsyncIterable<WireEvent>, AsyncDisposable {
  /** The `corro-query-id` header (subscriptions, update streams); null when absent. */
  readonly id: string | null
  /** The agent that answered. */
  readonly agent: string
  close(): Promise<void>
}

function streamQuery(from: number | undefined, skipRows: boolean | undefined): string {
  const q = new URLSearchParams()
  if (from !== undefined) q.set('from', String(from))
  if (skipRows === true) q.set('skip_rows', 'true')
  return q.size > 0 ? `?${q.toString()}` : ''
}

function checkFrom(from: number | undefined): void {
  if (from !== undefined && (!Number.isSafeInteger(from) || from < 0)) {
    throw new TypeError(
      `subscribe: from must be a change id (an integer >= 0), got ${String(from)}`,
    )
  }
}

function isObject(v: JsonValue): v is { [key: string]: JsonValue } {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * A client of one or more Patina (or Corrosion) agents. Make one with `createClient()`.
 *
 * Every call takes `{ signal }` (AbortSignal) and rejects with AbortError when it fires; every
 * error is a PatinaError with a stable `code` (docs/client.md lists them). Calls spread over
 * the agents round robin and fail over when an agent is down; transactions only when that is
 * certainly safe (see `transaction()`).
 */
export class PatinaClient implements AsyncDisposable {
  /** The agents, normalised (no trailing slash). */
  readonly urls: readonly string[]
  readonly #transport: Transport
  readonly #closer = new AbortController()
  readonly #integers: IntegerMode
  readonly #maxLineChars: number
  readonly #subCtx: SubscriptionContext
  readonly #open = new Set<{ close(): Promise<void> }>()

  readonly #http: Http

  /**
   * @internal Use `createClient()`. `http`: how requests are sent, given the signal that aborts
   * when the client closes and `options.fetch` (the Node entry passes its connection pool);
   * default: `options.fetch` or the global fetch.
   */
  constructor(
    options: ClientOptions,
    http?: (closed: AbortSignal, f: typeof fetch | undefined) => Http,
  ) {
    const urls = normaliseUrls([
      ...(options.urls ?? []),
      ...(options.url === undefined ? [] : [options.url]),
    ])
    this.urls = urls
    if (http !== undefined) {
      this.#http = http(this.#closer.signal, options.fetch)
    } else {
      const f = options.fetch ?? globalThis.fetch
      if (typeof f !== 'function') {
        throw new TypeError('createClient: no fetch here; pass options.fetch')
      }
      this.#http = fetchHttp(f)
    }
    const headers: Record<string, string> = { ...options.headers }
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
    this.#integers = options.integers ?? 'auto'
    this.#maxLineChars = options.maxLineChars ?? MAX_LINE_CHARS
    this.#transport = new Transport({
      http: this.#http,
      headers,
      timeoutMs: options.timeoutMs ?? REQUEST_TIMEOUT_MS,
      retry: {
        attempts: options.retry?.attempts ?? null,
        baseDelayMs: options.retry?.baseDelayMs ?? RETRY_BASE_DELAY_MS,
        maxDelayMs: options.retry?.maxDelayMs ?? RETRY_MAX_DELAY_MS,
      },
      pool: new EndpointPool(urls, { baseMs: ENDPOINT_DOWN_BASE_MS, maxMs: ENDPOINT_DOWN_MAX_MS }),
      closed: this.#closer.signal,
      onEvent: options.onEvent,
    })
    this.#subCtx = {
      transport: this.#transport,
      integers: this.#integers,
      maxLineChars: this.#maxLineChars,
      resume: {
        attempts: options.resume?.attempts ?? RESUME_ATTEMPTS,
        baseDelayMs: options.resume?.baseDelayMs ?? RESUME_BASE_DELAY_MS,
        maxDelayMs: options.resume?.maxDelayMs ?? RESUME_MAX_DELAY_MS,
      },
      onEvent: options.onEvent,
    }
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closer.signal.aborted
  }

  #checkOpen(): void {
    if (this.closed) throw new ClientClosedError('the client is closed')
  }

  /**
   * Runs statements in one transaction on one agent (`POST /v1/transactions`).
   *
   * 1. Every statement and parameter is checked first; one the client cannot send exactly
   *    throws InvalidStatementError and nothing is sent.
   * 2. All statements run in one transaction: all are applied, or none.
   * 3. Resolves with each statement's rows affected, and `version`: the agent's version for the
   *    transaction, or `null` when it changed nothing.
   * 4. A statement that fails (SQL error, constraint) rolls everything back: TransactionError
   *    with the agent's message (SQLite's own for SQL errors) and `results`.
   * 5. Failover: tried on the next agent only when it certainly did not run, i.e. the
   *    connection was refused (or the host unknown or unreachable), or the agent answered 503.
   *    When it was sent and no answer came back (reset, timeout, 502/504) it may have been
   *    applied: OutcomeUnknownError, never retried by the client.
   *
   * ### Examples
   * ```ts
   * const { version } = await client.transaction([
   *   ['INSERT INTO machines (id, cpus) VALUES (?, ?)', ['m1', 4]],
   *   ["UPDATE hosts SET machines = machines + 1 WHERE id = 'h1'"],
   * ])
   * ```
   */
  async transaction(
    statements: readonly Statement[],
    options: CallOptions = {},
  ): Promise<TransactionResult> {
    this.#checkOpen()
    const body = encodeStatements(statements)
    const sent = await this.#transport.send(
      { method: 'POST', path: '/v1/transactions', body, kind: 'transaction' },
      options,
    )
    let text: string
    try {
      text = await sent.response.text()
    } catch (err) {
      if (sent.signal.aborted) throw abortError(sent.signal.reason)
      throw new ConnectionError(
        `the answer to a transaction from ${sent.url} broke off: it was applied (the agent ` +
          'answered 200) but its version is unknown',
        [{ url: sent.url, error: err instanceof Error ? err : new Error(String(err)) }],
        { cause: err },
      )
    } finally {
      sent.finish()
    }
    let v: JsonValue
    try {
      v = parseJson(text)
    } catch (err) {
      throw new ProtocolError(`${sent.url} answered a transaction with bad JSON`, { cause: err })
    }
    if (!isObject(v) || !Array.isArray(v.results)) {
      throw new ProtocolError(`${sent.url} answered a transaction without "results"`)
    }
    return {
      results: v.results.map((r, i) => {
        if (!isObject(r)) throw new ProtocolError(`${sent.url}: result ${i + 1} is not an object`)
        return {
          rowsAffected: toCount(r.rows_affected, 'rows_affected'),
          time: toNumber(r.time ?? 0, 'time'),
        }
      }),
      time: toNumber(v.time ?? 0, 'time'),
      version: v.version === null || v.version === undefined ? null : toCount(v.version, 'version'),
      actorId: typeof v.actor_id === 'string' ? v.actor_id : '',
    }
  }

  /**
   * Runs one read-only statement (`POST /v1/queries`) and yields its rows as they stream in.
   *
   * 1. The statement is checked first (InvalidStatementError, nothing sent).
   * 2. Rows are objects keyed by column name; `R` types them (it is not checked at run time).
   *    Values decode losslessly: INTEGER -> number, or bigint beyond 2^53 (or always bigint
   *    with `integers: 'bigint'`); REAL -> number; TEXT -> string; BLOB -> Uint8Array; NULL.
   * 3. The request starts at the first iteration; leaving the loop early cancels it.
   * 4. Until an agent answers, a failing one is replaced by the next (queries change nothing,
   *    so any failure may be retried). Once rows stream, a broken stream throws
   *    ConnectionError, and an error the agent reports mid-stream throws QueryError.
   * 5. A statement that writes, or bad SQL: PatinaHttpError 400 with SQLite's message.
   *
   * ### Examples
   * ```ts
   * for await (const m of client.query<{ id: string; cpus: number }>(
   *   ['SELECT id, cpus FROM machines WHERE cpus >= ?', [4]],
   * )) {
   *   console.log(m.id, m.cpus)
   * }
   * ```
   */
  query<R extends object = Row>(
    statement: Statement,
    options: CallOptions = {},
  ): AsyncGenerator<R, void, undefined> {
    this.#checkOpen()
    const body = encodeStatement(statement)
    return this.#rows<R>(body, options)
  }

  async *#rows<R>(body: string, options: CallOptions): AsyncGenerator<R, void, undefined> {
    this.#checkOpen()
    const sent = await this.#transport.send(
      { method: 'POST', path: '/v1/queries', body, kind: 'read' },
      options,
    )
    const { url } = sent
    try {
      const stream = sent.response.body
      if (stream === null) throw new ProtocolError(`${url} answered a query without a body`)
      let columns: string[] | null = null
      for await (const line of readLines(stream, this.#maxLineChars, sent.signal)) {
        const e = decodeLine(line, this.#integers, url)
        if (e.type === 'row') {
          yield makeRow(columns, e.cells, url) as R
        } else if (e.type === 'columns') {
          columns = readColumns(e.columns)
        } else if (e.type === 'eoq') {
          return
        } else if (e.type === 'error') {
          throw streamError(e, url)
        } else {
          throw new ProtocolError(`${url} sent a "${e.type}" event in a query`)
        }
      }
      throw new TruncatedStreamError('the stream ended before its end-of-query event')
    } catch (err) {
      if (sent.signal.aborted) throw abortError(sent.signal.reason)
      if (err instanceof PatinaError) throw err
      const error = err instanceof Error ? err : new Error(String(err))
      throw new ConnectionError(
        `the query's rows from ${url} broke off (${error.message}); rows may be missing`,
        [{ url, error }],
        { cause: error },
      )
    } finally {
      sent.finish()
    }
  }

  /**
   * Subscribes to a query (`POST /v1/subscriptions`): yields its columns, its rows, `eoq`
   * (with the change id they stand at), then a `change` event for every row that enters,
   * changes in or leaves the result. Resolves once the agent accepted it.
   *
   * 1. Subscribing fails over like a query; the subscription then lives on the agent that
   *    accepted it (`sub.agent`, `sub.id`).
   * 2. After a disconnect it resumes by itself on that agent from the last change id seen,
   *    waiting a jittered backoff between attempts; nothing is repeated or skipped. It gives
   *    up after `resume.attempts` failures in a row with ResumeError, which says how to pick
   *    up later; when the agent no longer has the changes: SubscriptionGoneError.
   * 3. `from` starts after a change id instead of with the rows (give `agent` with it when
   *    the client has several agents).
   * 4. `close()`, `await using`, `client.close()` or leaving the loop end it; `signal` aborts
   *    it with AbortError.
   *
   * ### Examples
   * ```ts
   * await using sub = await client.subscribe<{ id: string; state: string }>(
   *   'SELECT id, state FROM machines',
   * )
   * for await (const event of sub) {
   *   switch (event.type) {
   *     case 'row': routes.set(event.rowId, event.row); break
   *     case 'change':
   *       if (event.changeType === 'delete') routes.delete(event.rowId)
   *       else routes.set(event.rowId, event.row)
   *       break
   *     case 'columns': case 'eoq': break
   *   }
   * }
   * ```
   */
  async subscribe<R extends object = Row>(
    statement: Statement,
    options: SubscribeOptions = {},
  ): Promise<Subscription<R>> {
    this.#checkOpen()
    checkFrom(options.from)
    const body = encodeStatement(statement)
    const from = options.from ?? null
    if (from !== null && options.agent === undefined && this.urls.length > 1) {
      throw new TypeError(
        "subscribe: `from` is a change id of one agent's subscription; with several agents " +
          'also give `agent` (the `agent` of the subscription it came from)',
      )
    }
    const agent =
      options.agent === undefined ? undefined : (normaliseUrls([options.agent])[0] ?? '')
    const life = link(options.signal, this.#closer.signal)
    const path = `/v1/subscriptions${from === null ? '' : `?from=${from}`}`
    const call: CallOptions =
      options.timeoutMs === undefined
        ? { signal: life.signal }
        : { signal: life.signal, timeoutMs: options.timeoutMs }
    let columns = options.columns === undefined ? null : [...options.columns]
    let sent
    try {
      if (from !== null && columns === null) columns = await this.#columnsOf(body, agent, call)
      sent = await this.#transport.send(
        agent === undefined
          ? { method: 'POST', path, body, kind: 'read' }
          : { method: 'POST', path, body, kind: 'read', agent },
        call,
      )
    } catch (err) {
      life.unlink()
      if (from !== null && err instanceof PatinaHttpError && isGoneAnswer(err)) {
        throw new SubscriptionGoneError(
          `${err.url} cannot resume this subscription from change ${from} (${err.message}); ` +
            'subscribe again without `from` and rebuild from the fresh rows',
          null,
          from,
          { cause: err, agentCode: err.agentCode },
        )
      }
      throw err
    }
    const id = sent.response.headers.get(QUERY_ID_HEADER)
    if (id === null || id === '') {
      sent.finish()
      life.unlink()
      await sent.response.body?.cancel().catch(() => undefined)
      throw new ProtocolError(
        `${sent.url} did not send a corro-query-id header, so the subscription could not resume ` +
          '(in a browser, the agent must expose it: Access-Control-Expose-Headers: corro-query-id)',
      )
    }
    const sub: Subscription<R> = new Subscription<R>(
      this.#subCtx,
      sent,
      id,
      from,
      columns,
      life,
      () => this.#open.delete(sub),
    )
    this.#open.add(sub)
    return sub
  }

  /** The column names of a subscription's result: the first line of a `skip_rows` stream. */
  async #columnsOf(body: string, agent: string | undefined, call: CallOptions): Promise<string[]> {
    const path = '/v1/subscriptions?skip_rows=true'
    const sent = await this.#transport.send(
      agent === undefined
        ? { method: 'POST', path, body, kind: 'read' }
        : { method: 'POST', path, body, kind: 'read', agent },
      call,
    )
    try {
      const stream = sent.response.body
      if (stream === null) throw new ProtocolError(`${sent.url} answered without a body`)
      for await (const line of readLines(stream, this.#maxLineChars, sent.signal)) {
        const e = decodeLine(line, this.#integers, sent.url)
        if (e.type === 'columns') return readColumns(e.columns)
        if (e.type === 'error') throw streamError(e, sent.url)
        break
      }
      throw new ProtocolError(`${sent.url} did not start a subscription with its columns`)
    } catch (err) {
      if (sent.signal.aborted) throw abortError(sent.signal.reason)
      throw err
    } finally {
      sent.finish()
    }
  }

  /**
   * Streams the primary keys of the rows of `table` that change (`POST /v1/updates/:table`):
   * `{ type: 'update', pk }` for an insert or update, `{ type: 'delete', pk }` for a delete.
   * Resolves once the agent accepted it; fails over like a query until then.
   *
   * The stream has no change ids, so it does not resume: a broken connection throws
   * ConnectionError (re-read the table, then call `updates()` again).
   *
   * ### Examples
   * ```ts
   * await using updates = await client.updates<[string]>('machines')
   * for await (const { type, pk: [id] } of updates) cache.delete(id)
   * ```
   */
  async updates<K extends readonly SqlValue[] = SqlValue[]>(
    table: string,
    options: CallOptions & { readonly agent?: string } = {},
  ): Promise<UpdateStream<K>> {
    this.#checkOpen()
    if (typeof table !== 'string' || table === '') {
      throw new TypeError('updates: give a table name')
    }
    const life = link(options.signal, this.#closer.signal)
    const path = `/v1/updates/${encodeURIComponent(table)}`
    const call: CallOptions =
      options.timeoutMs === undefined
        ? { signal: life.signal }
        : { signal: life.signal, timeoutMs: options.timeoutMs }
    let sent
    try {
      sent = await this.#transport.send(
        options.agent === undefined
          ? { method: 'POST', path, kind: 'read' }
          : { method: 'POST', path, kind: 'read', agent: normaliseUrls([options.agent])[0] ?? '' },
        call,
      )
    } catch (err) {
      life.unlink()
      throw err
    }
    const stream: UpdateStream<K> = new UpdateStream<K>(
      table,
      sent,
      life,
      this.#integers,
      this.#maxLineChars,
      () => this.#open.delete(stream),
    )
    this.#open.add(stream)
    return stream
  }

  /**
   * The events of a stream exactly as the agent sends them, decoded (@patina/protocol's
   * `WireEvent`: cells as values, not row objects) and not interpreted: no resume, no
   * change-id checks, and an error event is yielded, not thrown (the agent ends the stream
   * after it). For tools that show what the agent says (the `patina` CLI); applications want
   * `query()`, `subscribe()` or `updates()`.
   *
   * 1. Opening it fails over like a query; an error answer throws as for `query()`.
   * 2. The iteration ends when the agent ends the stream; a stream cut in the middle of a line
   *    throws ConnectionError.
   */
  async events(request: EventsRequest, options: CallOptions = {}): Promise<EventsStream> {
    this.#checkOpen()
    let spec: { method: 'GET' | 'POST'; path: string; body?: string }
    switch (request.route) {
      case 'query':
        spec = { method: 'POST', path: '/v1/queries', body: encodeStatement(request.statement) }
        break
      case 'subscribe':
        checkFrom(request.from)
        spec = {
          method: 'POST',
          path: `/v1/subscriptions${streamQuery(request.from, request.skipRows)}`,
          body: encodeStatement(request.statement),
        }
        break
      case 'attach':
        checkFrom(request.from)
        spec = {
          method: 'GET',
          path: `/v1/subscriptions/${encodeURIComponent(request.id)}${streamQuery(request.from, request.skipRows)}`,
        }
        break
      case 'updates':
        spec = { method: 'POST', path: `/v1/updates/${encodeURIComponent(request.table)}` }
        break
    }
    const life = link(options.signal, this.#closer.signal)
    let sent: Sent
    try {
      sent = await this.#transport.send(
        { ...spec, kind: 'read' },
        options.timeoutMs === undefined
          ? { signal: life.signal }
          : { signal: life.signal, timeoutMs: options.timeoutMs },
      )
    } catch (err) {
      life.unlink()
      throw err
    }
    const { url, response } = sent
    const integers = this.#integers
    const maxLineChars = this.#maxLineChars
    async function* read(): AsyncGenerator<WireEvent, void, undefined> {
      try {
        if (response.body === null) throw new ProtocolError(`${url} answered without a body`)
        for await (const line of readLines(response.body, maxLineChars, sent.signal)) {
          yield decodeLine(line, integers, url)
        }
      } catch (err) {
        if (sent.signal.aborted) throw abortError(sent.signal.reason)
        if (err instanceof PatinaError) throw err
        const error = err instanceof Error ? err : new Error(String(err))
        throw new ConnectionError(
          `the stream from ${url} broke off (${error.message})`,
          [{ url, error }],
          { cause: error },
        )
      } finally {
        sent.finish()
        life.unlink()
      }
    }
    const iterator = read()
    const close = async (): Promise<void> => {
      await iterator.return(undefined)
      await response.body?.cancel().catch(() => undefined)
      sent.finish()
      life.unlink()
    }
    return {
      id: response.headers.get(QUERY_ID_HEADER),
      agent: url,
      [Symbol.asyncIterator]: () => iterator,
      close,
      [Symbol.asyncDispose]: close,
    }
  }

  /**
   * GETs a JSON answer of the API (e.g. `/v1/members`, `/v1/subscriptions`), integers per the
   * client's `integers` option (exact either way). Errors as for the other calls.
   */
  async getJson(path: string, options: CallOptions = {}): Promise<JsonValue> {
    this.#checkOpen()
    const sent = await this.#transport.send({ method: 'GET', path, kind: 'read' }, options)
    let text: string
    try {
      text = await sent.response.text()
    } catch (err) {
      if (sent.signal.aborted) throw abortError(sent.signal.reason)
      const error = err instanceof Error ? err : new Error(String(err))
      throw new ConnectionError(
        `the answer from ${sent.url} broke off`,
        [{ url: sent.url, error }],
        {
          cause: error,
        },
      )
    } finally {
      sent.finish()
    }
    try {
      return parseJson(text, this.#integers)
    } catch (err) {
      throw new ProtocolError(`${sent.url} answered ${path} with bad JSON`, { cause: err })
    }
  }

  /**
   * Closes the client: aborts calls in flight (AbortError), ends open subscriptions and
   * update streams (their loops finish quietly), and makes later calls throw
   * ClientClosedError. Nothing of the client keeps a Node process alive afterwards.
   */
  async close(): Promise<void> {
    if (!this.closed) this.#closer.abort(new ClientClosedError('the client was closed'))
    await Promise.all([...this.#open].map((s) => s.close()))
    await this.#http.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}
