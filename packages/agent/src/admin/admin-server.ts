/**
 * The admin socket (`[admin] path`): a Unix socket for operator commands that must not be on
 * the network. Protocol: one JSON request per line (`{"cmd": "reload"}`), one JSON reply per
 * line (`{"ok": true, ...}` or `{"ok": false, "error": "..."}`).
 */
import { rmSync } from 'node:fs'
import { createConnection, createServer, type Server } from 'node:net'

/** Bytes of one admin request; a longer line closes the connection. */
export const ADMIN_REQUEST_BYTES_MAX = 64 * 1024

export type AdminHandler = (request: Record<string, unknown>) => Promise<Record<string, unknown>>

export async function startAdminServer(path: string, handle: AdminHandler): Promise<Server> {
  // A socket file left by a process that died is stale; a live agent would still answer on it.
  rmSync(path, { force: true })
  const server = createServer((socket) => {
    let buffer = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      buffer += chunk
      if (buffer.length > ADMIN_REQUEST_BYTES_MAX) {
        socket.end(`${JSON.stringify({ ok: false, error: 'request too large' })}\n`)
        return
      }
      let nl: number
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        void answer(line).then((reply) => socket.write(`${JSON.stringify(reply)}\n`))
      }
    })
    socket.on('error', () => {
      // A client that goes away mid-reply is not the agent's problem.
    })
  })
  async function answer(line: string): Promise<Record<string, unknown>> {
    try {
      const request = JSON.parse(line) as unknown
      if (typeof request !== 'object' || request === null || Array.isArray(request)) {
        return { ok: false, error: 'expected a JSON object like {"cmd": "reload"}' }
      }
      return await handle(request as Record<string, unknown>)
    } catch (err) {
      return { ok: false, error: err instanceof Error ? err.message : String(err) }
    }
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return server
}

/** Sends one admin request and waits for its reply. */
export async function adminRequest(
  path: string,
  request: Record<string, unknown>,
  timeoutMs = 30_000,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path)
    let buffer = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no answer from the admin socket ${path} within ${timeoutMs} ms`))
    }, timeoutMs)
    socket.setEncoding('utf8')
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`))
    socket.on('data', (chunk: string) => {
      buffer += chunk
      const nl = buffer.indexOf('\n')
      if (nl >= 0) {
        clearTimeout(timer)
        socket.end()
        try {
          resolve(JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>)
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)))
        }
      }
    })
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(new Error(`cannot reach the agent's admin socket ${path}: ${err.message}`))
    })
  })
}
