/**
 * A small real HTTP server (node:http on 127.0.0.1, port 0) whose answers a test scripts: it
 * speaks the agent's wire protocol (JSON, NDJSON, status codes, headers) so the client's
 * resume, backoff and failover logic can be driven through real sockets, including cut
 * connections and refused ones. It records every request.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

export interface Recorded {
  readonly method: string
  readonly path: string
  readonly query: URLSearchParams
  readonly body: string
  readonly at: number
}

export type Handler = (req: Recorded, res: ServerResponse, raw: IncomingMessage) => void

export interface TestServer {
  readonly url: string
  readonly requests: Recorded[]
  handler: Handler
  /** Stops listening and cuts every open connection (later connects are refused). */
  close(): Promise<void>
  /** Cuts every open connection, keeps listening. */
  cut(): void
}

export async function testServer(handler: Handler): Promise<TestServer> {
  const sockets = new Set<Socket>()
  const requests: Recorded[] = []
  const state: { handler: Handler } = { handler }
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (body += chunk))
    req.on('end', () => {
      const u = new URL(req.url ?? '/', 'http://x')
      const rec = {
        method: req.method ?? '',
        path: u.pathname,
        query: u.searchParams,
        body,
        at: performance.now(),
      }
      requests.push(rec)
      state.handler(rec, res, req)
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  let closed = false
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    get handler() {
      return state.handler
    },
    set handler(h: Handler) {
      state.handler = h
    },
    cut() {
      for (const s of sockets) s.destroy()
    },
    close() {
      if (closed) return Promise.resolve()
      closed = true
      return new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => {
          resolve()
        })
      })
    },
  }
}

/** Starts an NDJSON answer (200) with an optional subscription id header. */
export function ndjson(res: ServerResponse, id?: string): void {
  const headers: Record<string, string> = { 'content-type': 'application/x-ndjson' }
  if (id !== undefined) headers['corro-query-id'] = id
  res.writeHead(200, headers)
  res.flushHeaders()
}

/** Writes NDJSON lines (given as JSON text, so exact integers can be written). */
export function lines(res: ServerResponse, ...texts: string[]): void {
  res.write(texts.map((t) => `${t}\n`).join(''))
}

export function json(res: ServerResponse, status: number, body: string, headers = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(body)
}

/** Reads an async iterable to its end; returns how many items it gave. */
export async function drain(iterable: AsyncIterable<unknown>): Promise<number> {
  let n = 0
  for await (const item of iterable) if (item !== Symbol.for('never')) n++
  return n
}

/** Resolves when `check()` holds; fails after `ms`. */
export async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const started = performance.now()
  while (!check()) {
    if (performance.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
