/**
 * The HTTP API: Corrosion's v1 routes (transactions, queries, health, table_stats) and
 * Prometheus metrics, on fastify. Every error answers with a JSON body
 * `{"error": "...", "code": "..."}`: a message that names the problem and a stable code
 * (@patina/protocol's table, which also gives the status; errors.ts maps the agent's errors to
 * codes). A failed transaction also carries `results` and `version: null` so that Corrosion
 * clients find it where they look.
 */
import { actorIdHex } from '../runtime/actor-id.ts'
import { timingSafeEqual } from 'node:crypto'
import type { Socket } from 'node:net'
import {
  ALLOW_HEADER,
  columnsLine,
  encodeErrorBody,
  encodeTransactionError,
  eoqLine,
  errorLine,
  JSON_TYPE,
  NDJSON_TYPE,
  RETRY_AFTER_HEADER,
  rowLine,
  statusOf,
  WWW_AUTHENTICATE_HEADER,
  type ErrorCode,
} from '@patina/protocol'
import Fastify, { type FastifyReply } from 'fastify'
import type { Logger } from 'pino'
import type { Config } from '../config/load-config.ts'
import { API_RETRY_AFTER_S, API_TIMEOUT_CHECK_INTERVAL_MS } from '../config/defaults.ts'
import { q } from '../crdt/names.ts'
import { type Params, type Replica } from '../crdt/replica.ts'
import type { SqlValue } from '../crdt/values.ts'
import type { MemberInfo } from '../membership/member.ts'
import type { AgentMetrics } from '../metrics/agent-metrics.ts'
import { registerSubsRoutes } from './subs-routes.ts'
import type { Subscriptions } from '../subs/subscriptions.ts'
import { ApiError, codeOf, messageOf } from './errors.ts'
import { encodeRow, parseJson, stringify, type JsonValue } from './json.ts'
import { QueryBody, RESPONSE_CHUNK_BYTES, responseMetrics } from './query-body.ts'
import { toStatement, toStatements } from './statements.ts'

export type QueryEvent =
  | { readonly kind: 'columns'; readonly columns: readonly string[] }
  | { readonly kind: 'rows'; readonly rows: readonly (readonly SqlValue[])[] }
  | { readonly kind: 'end'; readonly timeS: number }

/** What the API needs of the reader pool (query/reader-pool.ts). */
export interface QueryRunner {
  query(
    sql: string,
    params?: Params,
    signal?: AbortSignal,
  ): AsyncIterable<QueryEvent> & AsyncIterator<QueryEvent>
}

export interface ApiDeps {
  readonly replica: Replica
  readonly readers: QueryRunner
  readonly config: Config
  readonly metrics: AgentMetrics
  readonly logger: Logger
  /** Health figures from the cluster (members, lag, queues); `gaps` defaults to the replica's. */
  readonly health?: () => {
    members: number
    p99LagS: number
    queueSize: number
    gaps?: number
    /** Set when the database's filesystem is full: the failed check `storage_full`, with why. */
    storageFull?: string
  }
  /** Every known member, self included (`GET /v1/members`); default: self alone, alive. */
  readonly members?: () => readonly MemberInfo[]
  /** Subscriptions and update streams; without it those routes do not exist. */
  readonly subs?: Subscriptions
}

/** Routes and their methods, to tell 404 (no such path) from 405 (wrong method). */
const ROUTES: Record<string, string[]> = {
  '/v1/transactions': ['POST'],
  '/v1/queries': ['POST'],
  '/v1/health': ['GET'],
  '/v1/table_stats': ['POST'],
  '/v1/members': ['GET'],
  '/v1/subscriptions': ['GET', 'POST'],
  '/metrics': ['GET'],
}

/** A 503 that asks the caller to come back later (not UNHEALTHY: health is polled anyway). */
function retryLater(code: ErrorCode): boolean {
  return code === 'OVERLOADED' || code === 'AGENT_CLOSING'
}

/** Answers with `code`'s status and `{"error": message, "code": code}`. */
async function sendError(
  reply: FastifyReply,
  code: ErrorCode,
  message: string,
): Promise<FastifyReply> {
  if (retryLater(code)) reply.header(RETRY_AFTER_HEADER, String(API_RETRY_AFTER_S))
  return reply.code(statusOf(code)).type(JSON_TYPE).send(encodeErrorBody(code, message))
}

function bearerMatches(header: string | undefined, token: string): boolean {
  if (header === undefined) return false
  const m = /^Bearer\s+(.+)$/i.exec(header)
  if (m === null) return false
  const given = Buffer.from(m[1] ?? '')
  const want = Buffer.from(token)
  return given.length === want.length && timingSafeEqual(given, want)
}

function threshold(query: Record<string, unknown>, key: string): number | undefined {
  const raw = query[key]
  if (raw === undefined) return undefined
  const n = Number(raw)
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(n) || n < 0) {
    throw new ApiError(
      'INVALID_PARAMETER',
      `query parameter "${key}" must be a non-negative number`,
    )
  }
  return n
}

/**
 * The HTTP/1.1 answer to what the parser refuses, then the connection closes: 408 REQUEST_TIMEOUT
 * when the request did not arrive in time (`malformed` null), else 400 BAD_REQUEST.
 */
export function clientErrorResponse(malformed: string | null): string {
  const timedOut = malformed === null
  const code: ErrorCode = timedOut ? 'REQUEST_TIMEOUT' : 'BAD_REQUEST'
  const message = timedOut
    ? 'the request did not arrive in time ([api] headers_timeout_ms / request_timeout_ms)'
    : `malformed HTTP request: ${malformed}`
  const body = encodeErrorBody(code, message)
  const status = statusOf(code)
  return (
    `HTTP/1.1 ${String(status)} ${timedOut ? 'Request Timeout' : 'Bad Request'}\r\n` +
    `content-type: ${JSON_TYPE}\r\ncontent-length: ${String(Buffer.byteLength(body))}\r\n` +
    `connection: close\r\n\r\n${body}`
  )
}

export function buildApi(deps: ApiDeps) {
  const { replica, readers, config, metrics } = deps
  const app = Fastify({
    // Per-request lines would drown the log; metrics count requests. Errors are still logged.
    loggerInstance: deps.logger.child({ subsystem: 'api' }, { level: 'warn' }),
    bodyLimit: config.api.maxBodyBytes,
    // While closing, requests still get the API's own 503 (AGENT_CLOSING, with its code), below.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Bounds on what a client sends, never on how long a response lasts. Node 20 times a
    // connection's head from the moment it opens, so a connection that sends nothing, or only
    // part of a request, gets 408 and is closed after headers_timeout_ms; a request's body after
    // request_timeout_ms; an idle kept-alive connection is closed after keep_alive_timeout_ms.
    // Not fastify's `connectionTimeout`: a socket idle timeout would also cut a subscription or
    // update stream that is quiet for that long, and a slow query's answer.
    requestTimeout: config.api.requestTimeoutMs,
    keepAliveTimeout: config.api.keepAliveTimeoutMs,
    // What the HTTP parser refuses (a head or body that did not arrive in time, bytes that are
    // not HTTP) still gets a coded body, then the connection is closed.
    clientErrorHandler: (err, socket) => {
      if ((err as NodeJS.ErrnoException).code === 'ECONNRESET' || !socket.writable) {
        socket.destroy()
        return
      }
      const timedOut = (err as NodeJS.ErrnoException).code === 'ERR_HTTP_REQUEST_TIMEOUT'
      socket.end(clientErrorResponse(timedOut ? null : err.message))
    },
    http: {
      headersTimeout: config.api.headersTimeoutMs,
      requestTimeout: config.api.requestTimeoutMs,
      connectionsCheckingInterval: Math.max(
        1,
        Math.min(API_TIMEOUT_CHECK_INTERVAL_MS, Math.floor(config.api.headersTimeoutMs / 4)),
      ),
    },
  })
  // Node 20's `server.close()` closes kept-alive connections between requests, but not those
  // that have sent nothing yet (nodejs/node#63452): an HTTP client's spare connection (Node's
  // fetch opens one after a stream that answered `connection: close`) would hold the close, and
  // the process, until `headersTimeout`. Closing the API closes those too, and any accepted
  // while it closes.
  const connections = new Set<Socket>()
  let closing = false
  app.server.on('connection', (socket: Socket) => {
    if (closing) {
      socket.destroy()
      return
    }
    connections.add(socket)
    socket.once('close', () => {
      connections.delete(socket)
    })
  })
  app.addHook('preClose', async () => {
    closing = true
    for (const socket of connections) if (socket.bytesRead === 0) socket.destroy()
    return Promise.resolve()
  })
  metrics.inflightTransactionsMax.set(config.api.maxInflightTransactions)
  const answers = responseMetrics(metrics.registry, config.api.maxResponseBufferBytes)
  let inflight = 0

  app.removeAllContentTypeParsers()
  app.addContentTypeParser(JSON_TYPE, { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, parseJson(body as string))
    } catch (err) {
      done(err as Error, undefined)
    }
  })

  app.addHook('onRequest', async (req, reply) => {
    if (closing) {
      // HTTP/2 has no connection header: its session ends with GOAWAY (api/h2c.ts).
      if (req.raw.httpVersionMajor !== 2) reply.header('connection', 'close')
      await sendError(reply, 'AGENT_CLOSING', 'the agent is shutting down; retry on another agent')
      return reply
    }
    const token = config.api.bearerToken
    if (token !== null && !bearerMatches(req.headers.authorization, token)) {
      metrics.rejected.inc({ reason: 'unauthorized' })
      reply.header(WWW_AUTHENTICATE_HEADER, 'Bearer')
      await sendError(
        reply,
        'UNAUTHORIZED',
        'missing or wrong bearer token (Authorization: Bearer <token>)',
      )
      return reply
    }
    if (req.method === 'POST' && req.url.split('?')[0] === '/v1/transactions') {
      if (inflight >= config.api.maxInflightTransactions) {
        metrics.rejected.inc({ reason: 'inflight_transactions' })
        await sendError(
          reply,
          'OVERLOADED',
          `too many transactions in flight (${inflight}, [api] max_inflight_transactions); retry later`,
        )
        return reply
      }
      inflight++
      metrics.inflightTransactions.set(inflight)
      reply.raw.once('close', () => {
        inflight--
        metrics.inflightTransactions.set(inflight)
      })
    }
    return undefined
  })

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unknown'
    metrics.httpRequests.inc({ route, method: req.method, status: String(reply.statusCode) })
    metrics.httpDuration.observe({ route, method: req.method }, reply.elapsedTime / 1000)
  })

  app.setErrorHandler(async (err: unknown, req, reply) => {
    const fastifyCode = (err as { code?: unknown }).code
    const code = codeOf(err)
    let message = messageOf(err)
    if (fastifyCode === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      message = `unsupported content type "${req.headers['content-type'] ?? '(none)'}": send a JSON body with content-type application/json`
    } else if (fastifyCode === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      message = `request body too large: the limit is ${config.api.maxBodyBytes} bytes ([api] max_body_bytes)`
    } else if (fastifyCode === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
      message = 'the request body is empty: expected JSON'
    }
    if (code === 'AGENT_ERROR') req.log.error({ err }, 'request failed')
    await sendError(reply, code, message)
  })

  app.setNotFoundHandler(async (req, reply) => {
    const path = req.url.split('?')[0] ?? ''
    const methods = ROUTES[path]
    if (methods !== undefined) {
      reply.header(ALLOW_HEADER, methods.join(', '))
      await sendError(
        reply,
        'METHOD_NOT_ALLOWED',
        `method ${req.method} not allowed on ${path}; use ${methods.join(', ')}`,
      )
      return
    }
    await sendError(reply, 'ROUTE_NOT_FOUND', `no such route: ${req.method} ${path}`)
  })

  /** A failed transaction, in Corrosion's shape plus `code`. */
  const failTransaction = async (reply: FastifyReply, code: ErrorCode, message: string) => {
    if (retryLater(code)) reply.header(RETRY_AFTER_HEADER, String(API_RETRY_AFTER_S))
    return reply.code(statusOf(code)).type(JSON_TYPE).send(encodeTransactionError(code, message))
  }

  app.post('/v1/transactions', async (req, reply) => {
    const started = performance.now()
    let statements
    try {
      statements = toStatements(req.body as JsonValue, config.api.maxStatements)
    } catch (err) {
      metrics.transactions.inc({ outcome: 'failed' })
      return failTransaction(reply, codeOf(err), messageOf(err))
    }
    let result
    try {
      result = replica.transaction(statements)
    } catch (err) {
      metrics.transactions.inc({ outcome: 'failed' })
      // Only the statements can raise an error of no known class here (better-sqlite3's
      // RangeError and TypeError for bad parameters): the caller's.
      const code = codeOf(err, 'SQL_ERROR')
      if (code === 'AGENT_ERROR') req.log.error({ err }, 'transaction failed')
      return failTransaction(reply, code, messageOf(err))
    }
    metrics.transactions.inc({ outcome: result.version === null ? 'noop' : 'committed' })
    return reply.type(JSON_TYPE).send(
      stringify({
        results: result.results.map((r) => ({ rows_affected: r.rowsAffected, time: r.timeS })),
        time: (performance.now() - started) / 1000,
        version: result.version,
        actor_id: actorIdHex(replica.actorId),
      }),
    )
  })

  app.post('/v1/queries', async (req, reply) => {
    const statement = toStatement(req.body as JsonValue, 'statement')
    const abort = new AbortController()
    let events: AsyncIterator<QueryEvent>
    let first: IteratorResult<QueryEvent>
    try {
      events = readers.query(statement.sql, statement.params, abort.signal)
      first = await events.next()
    } catch (err) {
      const code = codeOf(err, 'SQL_ERROR')
      if (code === 'OVERLOADED' || code === 'AGENT_CLOSING') {
        metrics.rejected.inc({ reason: 'queries' })
      }
      if (code === 'AGENT_ERROR') req.log.error({ err }, 'query failed')
      return sendError(reply, code, messageOf(err))
    }
    reply.raw.once('close', () => {
      abort.abort()
    })
    async function* lines(): AsyncGenerator<string> {
      let rowid = 0n
      let event: IteratorResult<QueryEvent> = first
      try {
        while (event.done !== true) {
          const e = event.value
          if (e.kind === 'columns') {
            yield columnsLine(e.columns)
          } else if (e.kind === 'rows') {
            let chunk = ''
            for (const row of e.rows) {
              rowid++
              chunk += rowLine(rowid, encodeRow(row))
              if (chunk.length >= RESPONSE_CHUNK_BYTES) {
                yield chunk
                chunk = ''
              }
            }
            if (chunk !== '') yield chunk
          } else {
            yield eoqLine(e.timeS, null)
          }
          event = await events.next()
        }
      } catch (err) {
        const code = codeOf(err, 'SQL_ERROR')
        // A row over [api] max_row_bytes was refused in the reader: the rows before it went out.
        if (code === 'ROW_TOO_LARGE') answers.rowsTooLarge.inc()
        yield errorLine(messageOf(err), code)
      } finally {
        await events.return?.()
      }
    }
    // Bounded in bytes: a client that does not read stops the rows at max_response_buffer_bytes.
    const body = new QueryBody(lines(), config.api.maxResponseBufferBytes, () => {
      answers.pauses.inc()
    })
    answers.track(body, reply.raw)
    return reply.type(NDJSON_TYPE).send(body)
  })

  app.get('/v1/health', async (req, reply) => {
    const query = req.query as Record<string, unknown>
    const limits = {
      gaps: threshold(query, 'gaps'),
      p99Lag: threshold(query, 'p99_lag'),
      maxQueue: threshold(query, 'max_queue') ?? threshold(query, 'queue_size'),
    }
    const h = deps.health?.() ?? { members: 1, p99LagS: 0, queueSize: 0 }
    const gaps =
      h.gaps ??
      replica.originStates().reduce((n, o) => n + o.gaps.reduce((m, [s, e]) => m + e - s + 1, 0), 0)
    const response = { gaps, members: h.members, p99_lag: h.p99LagS, queue_size: h.queueSize }
    const failed: string[] = []
    if (limits.gaps !== undefined && gaps > limits.gaps)
      failed.push(`gaps ${gaps} > ${limits.gaps}`)
    if (limits.p99Lag !== undefined && h.p99LagS > limits.p99Lag) {
      failed.push(`p99_lag ${h.p99LagS} > ${limits.p99Lag}`)
    }
    if (limits.maxQueue !== undefined && h.queueSize > limits.maxQueue) {
      failed.push(`queue_size ${h.queueSize} > ${limits.maxQueue}`)
    }
    // Not a threshold: a full disk fails health whatever the query asks.
    if (h.storageFull !== undefined) failed.push(`storage_full: ${h.storageFull}`)
    if (failed.length > 0) {
      return reply
        .code(statusOf('UNHEALTHY'))
        .type(JSON_TYPE)
        .send(stringify({ error: `unhealthy: ${failed.join(', ')}`, code: 'UNHEALTHY', response }))
    }
    return reply.send({ response })
  })

  app.get('/v1/members', async (_req, reply) => {
    const members: readonly MemberInfo[] = deps.members?.() ?? [
      {
        actorId: actorIdHex(replica.actorId),
        addr: config.gossip.addr,
        state: 'alive',
        incarnation: 0,
        epoch: 0,
        rttMs: null,
      },
    ]
    return reply.send(
      members.map((m) => ({
        actor_id: m.actorId,
        addr: m.addr,
        state: m.state,
        incarnation: m.incarnation,
        rtt_ms: m.rttMs,
      })),
    )
  })

  app.post('/v1/table_stats', async (req, reply) => {
    const body = req.body as JsonValue
    const tables =
      typeof body === 'object' && body !== null && !Array.isArray(body) ? body.tables : undefined
    if (!Array.isArray(tables) || !tables.every((t) => typeof t === 'string')) {
      throw new ApiError('INVALID_BODY', 'expected {"tables": ["name", ...]}')
    }
    let total = 0n
    const invalid: string[] = []
    for (const name of tables) {
      const table = replica.table(name)
      if (table === undefined) {
        invalid.push(name)
        continue
      }
      // A refusal of the reader pool (OVERLOADED, AGENT_CLOSING) is answered by the error handler.
      for await (const e of readers.query(`SELECT count(*) FROM ${q(table.name)}`)) {
        if (e.kind === 'rows') total += e.rows[0]?.[0] as bigint
      }
    }
    return reply
      .type(JSON_TYPE)
      .send(stringify({ total_row_count: total, invalid_tables: invalid }))
  })

  if (deps.subs !== undefined) registerSubsRoutes(app, deps.subs)

  app.get('/metrics', async (_req, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  )

  return app
}

export type Api = ReturnType<typeof buildApi>
