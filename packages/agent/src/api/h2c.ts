/**
 * HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same API port. A plaintext server cannot
 * negotiate, so each connection is sniffed: an h2c client opens with the 24-byte preface
 * `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, anything else is HTTP/1.1.
 *
 * The API's own HTTP/1.1 server (fastify's `api.server`) keeps the port: it listens, closes and
 * times its connections as before. Its 'connection' listeners are moved behind the sniffer, which
 * reads at most the preface's length (or up to the first byte that differs), puts the bytes back
 * (`unshift`) and hands the socket to those listeners (HTTP/1.1) or to an `http2` server whose
 * requests go into the same fastify app (`api.routing`): one app, one set of hooks, limits and
 * metrics for both protocols. A connection that sends nothing is answered as HTTP/1.1 does:
 * 408 after `[api] headers_timeout_ms`, then closed.
 *
 * Bounds on HTTP/2 sessions, as on HTTP/1.1 connections:
 *   - a session that opens no stream within headers_timeout_ms, or has had none open for
 *     keep_alive_timeout_ms, is closed (GOAWAY); a request whose body has not all arrived within
 *     request_timeout_ms is answered 408 REQUEST_TIMEOUT and its stream closed;
 *   - at most `[api] max_concurrent_streams` streams open per session (SETTINGS), request headers
 *     at most Node's HTTP/1.1 header limit (`http.maxHeaderSize`, 16 KiB);
 *   - a stream's response is written with HTTP/2 flow control: `write()` returns false until
 *     the client grants window, so the query answers' backpressure (query-body.ts) holds.
 *   - `close()` sends GOAWAY to every session and waits for their streams; `destroy()` cuts them.
 *
 * Metrics (one set per registry):
 *   patina_api_connections_total{protocol="http1"|"h2c"}   connections accepted, by protocol
 *   patina_api_h2_sessions                                 HTTP/2 sessions open
 *   patina_api_h2_streams                                  HTTP/2 streams open
 *   patina_api_h2_max_concurrent_streams                   the cap per session
 */
import { maxHeaderSize, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { encodeErrorBody, JSON_TYPE, statusOf } from '@patina/protocol'
import {
  constants,
  createServer as createHttp2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
  type ServerHttp2Stream,
} from 'node:http2'
import type { Socket } from 'node:net'
import { Counter, Gauge, type Registry } from 'prom-client'
import { ApiError } from './errors.ts'
import { clientErrorResponse } from './server.ts'

/** The first bytes of every HTTP/2 prior-knowledge connection (RFC 9113 3.4). */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

export interface H2cOptions {
  readonly headersTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly keepAliveTimeoutMs: number
  readonly maxConcurrentStreams: number
  readonly registry: Registry
}

/** What the listen path needs of fastify: its HTTP/1.1 server and its request handler. */
export interface H2cApp {
  readonly server: Server
  routing(req: IncomingMessage, res: ServerResponse): void
}

export interface H2c {
  /** GOAWAY to every session; resolves once they have all closed. */
  close(): Promise<void>
  /** Cuts every session and every connection still being sniffed. */
  destroy(): void
}

interface H2cMetrics {
  readonly connections: Counter<'protocol'>
  readonly sessions: Gauge
  readonly streams: Gauge
  readonly maxStreams: Gauge
}

const byRegistry = new WeakMap<Registry, H2cMetrics>()

function h2cMetrics(registry: Registry): H2cMetrics {
  let m = byRegistry.get(registry)
  if (m === undefined) {
    m = {
      connections: new Counter({
        name: 'patina_api_connections_total',
        help: 'API connections accepted, by protocol (http1, or h2c: HTTP/2 with prior knowledge)',
        labelNames: ['protocol'] as const,
        registers: [registry],
      }),
      sessions: new Gauge({
        name: 'patina_api_h2_sessions',
        help: 'HTTP/2 sessions open on the API',
        registers: [registry],
      }),
      streams: new Gauge({
        name: 'patina_api_h2_streams',
        help: 'HTTP/2 streams open on the API, summed over sessions',
        registers: [registry],
      }),
      maxStreams: new Gauge({
        name: 'patina_api_h2_max_concurrent_streams',
        help: 'Cap on the streams one HTTP/2 session has open ([api] max_concurrent_streams)',
        registers: [registry],
      }),
    }
    byRegistry.set(registry, m)
  }
  return m
}

/** Sniffs every connection of `app.server` and serves h2c ones with `app.routing`. */
export function serveH2c(app: H2cApp, options: H2cOptions): H2c {
  const metrics = h2cMetrics(options.registry)
  metrics.maxStreams.set(options.maxConcurrentStreams)
  const server = app.server
  const http1 = server.listeners('connection') as ((socket: Socket) => void)[]
  server.removeAllListeners('connection')

  const h2 = createHttp2Server({
    settings: {
      maxConcurrentStreams: options.maxConcurrentStreams,
      maxHeaderListSize: maxHeaderSize,
    },
  })
  h2.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => {
    // As HTTP/1.1's requestTimeout: a request whose body has not all arrived in time gets 408.
    if (!req.stream.endAfterHeaders) {
      const timer = setTimeout(() => {
        const message = 'the request did not arrive in time ([api] request_timeout_ms)'
        // Once the answer is out (the stream's writable side; the response's own 'finish'
        // waits for the stream to close), the stream is closed: its body never came.
        req.stream.once('finish', () => {
          req.stream.close(constants.NGHTTP2_NO_ERROR)
        })
        if (req.listenerCount('error') > 0) {
          // fastify is reading the body: its error handler answers, with the code.
          req.emit('error', new ApiError('REQUEST_TIMEOUT', message))
        } else if (!res.headersSent) {
          res.writeHead(statusOf('REQUEST_TIMEOUT'), { 'content-type': JSON_TYPE })
          res.end(encodeErrorBody('REQUEST_TIMEOUT', message))
        } else {
          req.stream.close(constants.NGHTTP2_CANCEL)
        }
      }, options.requestTimeoutMs)
      timer.unref()
      const clear = (): void => {
        clearTimeout(timer)
      }
      req.once('end', clear)
      res.once('close', clear)
    }
    // fastify serves HTTP/2 requests by their httpVersionMajor; the types are HTTP/1.1's.
    app.routing(req as unknown as IncomingMessage, res as unknown as ServerResponse)
  })

  const sniffing = new Set<Socket>()
  const sessions = new Set<Http2Session>()
  let closing = false

  const watch = (session: Http2Session): void => {
    sessions.add(session)
    metrics.sessions.inc()
    let open = 0
    let timer: NodeJS.Timeout | null = null
    const idle = (ms: number): void => {
      timer = setTimeout(() => {
        session.close()
      }, ms)
      timer.unref()
    }
    idle(options.headersTimeoutMs)
    session.on('stream', (stream: ServerHttp2Stream) => {
      open++
      metrics.streams.inc()
      if (timer !== null) clearTimeout(timer)
      timer = null
      stream.once('close', () => {
        open--
        metrics.streams.dec()
        if (open === 0 && !session.closed) idle(options.keepAliveTimeoutMs)
      })
    })
    // A protocol error of one client has nowhere to go: its session is destroyed.
    session.on('error', () => undefined)
    session.once('close', () => {
      if (timer !== null) clearTimeout(timer)
      sessions.delete(session)
      metrics.sessions.dec()
    })
    if (closing) session.close()
  }
  h2.on('session', watch)

  const sniff = (socket: Socket): void => {
    sniffing.add(socket)
    let seen: Buffer = Buffer.alloc(0)
    const done = (protocol: 'http1' | 'h2c' | null): void => {
      clearTimeout(timer)
      sniffing.delete(socket)
      socket.removeListener('readable', onReadable)
      socket.removeListener('close', onClose)
      if (protocol === null) return
      if (seen.length > 0) socket.unshift(seen)
      metrics.connections.inc({ protocol })
      if (protocol === 'h2c') {
        // The HTTP/1.1 server accepts half-open sockets; a session ends with its client's FIN.
        socket.allowHalfOpen = false
        h2.emit('connection', socket)
      } else for (const listener of http1) listener.call(server, socket)
    }
    const onReadable = (): void => {
      for (;;) {
        const chunk = socket.read() as Buffer | null
        if (chunk === null) return
        seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk])
        const n = Math.min(seen.length, H2_PREFACE.length)
        if (!seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) {
          done('http1')
          return
        }
        if (n === H2_PREFACE.length) {
          done('h2c')
          return
        }
      }
    }
    const onClose = (): void => {
      done(null)
    }
    // As HTTP/1.1 answers a connection that sends no request head in time.
    const timer = setTimeout(() => {
      done(null)
      socket.on('error', () => undefined)
      socket.end(clientErrorResponse(null))
    }, options.headersTimeoutMs)
    timer.unref()
    socket.on('readable', onReadable)
    socket.once('close', onClose)
  }
  server.on('connection', sniff)

  return {
    async close() {
      closing = true
      for (const socket of sniffing) socket.destroy()
      const closed = [...sessions].map(
        (s) =>
          new Promise<void>((resolve) => {
            s.once('close', resolve)
            s.close()
          }),
      )
      await Promise.all(closed)
    },
    destroy() {
      for (const socket of sniffing) socket.destroy()
      for (const session of sessions) session.destroy()
    },
  }
}
