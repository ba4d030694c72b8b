/**
 * The HTTP routes of subscriptions and update streams (registered by api/server.ts):
 *
 *   POST /v1/subscriptions[?from=N][&skip_rows=true]   body: one statement
 *   GET  /v1/subscriptions/:id[?from=N][&skip_rows=true]
 *   GET  /v1/subscriptions                             (Patina: the live subscriptions)
 *   POST /v1/updates/:table                            (empty body, any content type)
 *
 * Errors before the stream starts answer with a status and `{"error": "...", "code": "..."}`;
 * afterwards the stream ends with an `{"error": "...", "code": "..."}` line. docs/api.md has
 * the details and the codes.
 */
import type {
  FastifyInstance,
  FastifyReply,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify'
import {
  encodeErrorBody,
  JSON_TYPE,
  NDJSON_TYPE,
  QUERY_ID_HEADER,
  RETRY_AFTER_HEADER,
  statusOf,
} from '@patina/protocol'
import type { Logger } from 'pino'
import { API_RETRY_AFTER_S } from '../config/defaults.ts'
import { stringify, type JsonValue } from './json.ts'
import { toStatement } from './statements.ts'
import { SubsError, wireCode } from '../subs/errors.ts'
import type {
  Connection,
  OpenedStream,
  StreamRequest,
  Subscriptions,
} from '../subs/subscriptions.ts'

function streamRequest(query: unknown): StreamRequest {
  const q = (query ?? {}) as Record<string, unknown>
  const out: { from?: number; skipRows?: boolean } = {}
  if (q.from !== undefined) {
    const text = typeof q.from === 'string' ? q.from : JSON.stringify(q.from)
    if (!/^\d{1,15}$/.test(text)) {
      throw new SubsError(
        'BAD_PARAMETER',
        `query parameter "from" must be a change id (a whole number ≥ 0), not "${text}"`,
      )
    }
    out.from = Number(text)
  }
  if (q.skip_rows !== undefined) {
    const text = typeof q.skip_rows === 'string' ? q.skip_rows : JSON.stringify(q.skip_rows)
    if (!['true', 'false', '1', '0'].includes(text)) {
      throw new SubsError(
        'BAD_PARAMETER',
        `query parameter "skip_rows" must be true or false, not "${text}"`,
      )
    }
    out.skipRows = text === 'true' || text === '1'
  }
  return out
}

/** A SubsError as the answer; any other error goes to the API's error handler. */
async function sendError(
  reply: FastifyReply,
  err: unknown,
  notFound: 'SUBSCRIPTION_NOT_FOUND' | 'TABLE_NOT_FOUND' = 'SUBSCRIPTION_NOT_FOUND',
): Promise<FastifyReply> {
  if (!(err instanceof SubsError)) throw err
  const code = wireCode(err, notFound)
  const status = statusOf(code)
  if (status === 503) reply.header(RETRY_AFTER_HEADER, String(API_RETRY_AFTER_S))
  return reply.code(status).type(JSON_TYPE).send(encodeErrorBody(code, err.message))
}

/** The API's fastify instance (pino logger). */
type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  Logger
>

export function registerSubsRoutes(app: App, subs: Subscriptions): void {
  // Streams never end on their own: when the server closes, they end with an error event so
  // that the close does not wait for its grace period.
  const closing = new AbortController()
  app.addHook('preClose', async () => {
    closing.abort()
    return Promise.resolve()
  })

  const connection = (reply: FastifyReply): Connection => {
    const closed = new AbortController()
    reply.raw.once('close', () => {
      closed.abort()
    })
    return {
      signal: closed.signal,
      closing: closing.signal,
      destroy: () => {
        reply.raw.destroy()
      },
      bufferedBytes: () => reply.raw.writableLength,
    }
  }

  const stream = (reply: FastifyReply, conn: Connection, opened: OpenedStream): FastifyReply => {
    const res = reply.raw
    res.once('close', opened.close)
    // The client may have gone while the stream was being opened: its 'close' has passed.
    if (conn.signal.aborted) opened.close()
    // Once the response is over (or its client gone), the connection is closed from this side
    // (the kernel still delivers what it holds): a client that keeps a half-closed socket
    // open must not hold up the server's close.
    const socket = res.socket
    res.once('close', () => {
      socket?.destroy()
    })
    // A failed write shows as 'close'; the error itself has nowhere to go.
    res.on('error', () => undefined)
    // The stream writes into the response itself (one write per chunk, the same bytes for every
    // listener of a change): no stream layers in between.
    reply.hijack()
    res.writeHead(200, {
      'content-type': NDJSON_TYPE,
      [QUERY_ID_HEADER]: opened.id,
      // A stream ends when the agent closes it: its connection goes too, rather than idling
      // (kept alive) until the server's keep-alive timeout holds up a shutdown. HTTP/2 has no
      // connection header: only the stream ends.
      ...(reply.request.raw.httpVersionMajor === 2 ? {} : { connection: 'close' }),
    })
    // Headers go out at once, not with the first event: an update stream may be quiet for
    // long, and its client waits for the status and `corro-query-id`.
    res.flushHeaders()
    opened.serve({
      write: (chunk) => res.write(chunk),
      onDrain: (fn) => {
        res.once('drain', fn)
      },
      end: () => {
        res.end()
      },
    })
    return reply
  }

  app.post('/v1/subscriptions', async (req, reply) => {
    try {
      const statement = toStatement(req.body as JsonValue, 'statement')
      const conn = connection(reply)
      const opened = await subs.subscribe(statement, streamRequest(req.query), conn)
      return await stream(reply, conn, opened)
    } catch (err) {
      return sendError(reply, err)
    }
  })

  app.get('/v1/subscriptions', async (_req, reply) =>
    reply.type('application/json').send(
      stringify(
        subs.list().map((s) => ({
          id: s.id,
          sql: s.sql,
          mode: s.mode,
          state: s.state,
          listeners: s.listeners,
          change_id: s.changeId,
          rows: s.rows,
          created: new Date(s.createdMs).toISOString(),
        })),
      ),
    ),
  )

  app.get('/v1/subscriptions/:id', async (req, reply) => {
    try {
      const { id } = req.params as { id: string }
      const conn = connection(reply)
      const opened = await subs.attach(id, streamRequest(req.query), conn)
      return await stream(reply, conn, opened)
    } catch (err) {
      return sendError(reply, err)
    }
  })

  // The body of an update request is empty, sent with or without a JSON content type: this
  // route ignores it (a context of its own, so other routes keep their strict JSON parsing).
  app.register(async (child) => {
    child.removeAllContentTypeParsers()
    child.addContentTypeParser('*', { parseAs: 'string' }, (_req, _body, done) => {
      done(null, undefined)
    })
    child.post('/v1/updates/:table', async (req, reply) => {
      try {
        const { table } = req.params as { table: string }
        const conn = connection(reply)
        return await stream(reply, conn, subs.openUpdates(table, conn))
      } catch (err) {
        return sendError(reply, err, 'TABLE_NOT_FOUND')
      }
    })
    return Promise.resolve()
  })
}
