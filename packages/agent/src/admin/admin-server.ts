/**
 * The admin socket (`[admin] path`): a Unix socket for operator commands that must not be on
 * the network. Protocol: one JSON request per line (`{"cmd": "reload"}`), one JSON reply per
 * line (`{"ok": true, ...}` or `{"ok": false, "error": "..."}`).
 *
 * One agent per socket: when the path is taken, the start is refused unless the file there is a
 * socket nobody listens on (left by an agent that died), which is replaced.
 */
import { lstatSync, rmSync } from 'node:fs'
import { createConnection, createServer, type Server } from 'node:net'
import { LineSplitter, WireFormatError } from '@patina/protocol'
import {
  ADMIN_PROBE_TIMEOUT_MS,
  ADMIN_REQUEST_BYTES_MAX,
  ADMIN_REQUEST_TIMEOUT_MS,
} from '../config/defaults.ts'
import { AdminError } from './errors.ts'

export type AdminHandler = (request: Record<string, unknown>) => Promise<Record<string, unknown>>

/**
 * Listens on `path`. When something is there already:
 * 1. not a socket: refused (`NOT_A_SOCKET`), the file is left alone;
 * 2. a socket that accepts a connection (another agent): refused (`IN_USE`);
 * 3. a socket whose connect fails with ECONNREFUSED or ENOENT (its agent died): removed and
 *    replaced;
 * 4. anything else (no permission, no answer in time): refused (`PROBE_FAILED`).
 */
export async function startAdminServer(path: string, handle: AdminHandler): Promise<Server> {
  const server = createServer((socket) => {
    const splitter = new LineSplitter(ADMIN_REQUEST_BYTES_MAX)
    let refused = false
    socket.on('data', (chunk: Buffer) => {
      if (refused) return
      let lines: string[]
      try {
        lines = splitter.push(chunk)
      } catch (err) {
        if (!(err instanceof WireFormatError)) throw err
        refused = true
        socket.end(`${JSON.stringify({ ok: false, error: 'request too large' })}\n`)
        return
      }
      for (const line of lines) {
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
  try {
    await listen(server, path)
  } catch (err) {
    if (!hasCode(err, 'EADDRINUSE')) throw err
    await removeStaleSocket(path)
    try {
      await listen(server, path)
    } catch (again) {
      // Another agent bound the path between the removal and this listen.
      if (hasCode(again, 'EADDRINUSE')) throw inUse(path, again)
      throw again
    }
  }
  return server
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => {
      server.off('error', reject)
      resolve()
    })
  })
}

function inUse(path: string, cause?: unknown): AdminError {
  return new AdminError('IN_USE', `another agent is running on admin socket ${path}`, { cause })
}

/** Removes the socket file at `path` if no process listens on it; throws an AdminError if not. */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean
  try {
    isSocket = lstatSync(path).isSocket()
  } catch (err) {
    // Gone since the listen failed (its agent stopped): nothing to remove.
    if (hasCode(err, 'ENOENT')) return
    throw new AdminError('PROBE_FAILED', `cannot check admin socket ${path}: ${messageOf(err)}`, {
      cause: err,
    })
  }
  if (!isSocket) {
    throw new AdminError(
      'NOT_A_SOCKET',
      `admin socket path ${path} exists and is not a socket: remove it or set [admin] path`,
    )
  }
  // A connect to a regular file also fails with ECONNREFUSED: the lstat above comes first.
  const err = await probe(path)
  if (err === null) throw inUse(path)
  if (hasCode(err, 'ECONNREFUSED') || hasCode(err, 'ENOENT')) {
    rmSync(path, { force: true })
    return
  }
  // EAGAIN: a listener whose backlog is full, so a live agent.
  if (hasCode(err, 'EAGAIN')) throw inUse(path, err)
  throw new AdminError('PROBE_FAILED', `cannot probe admin socket ${path}: ${messageOf(err)}`, {
    cause: err,
  })
}

/** Connects to `path` and hangs up; resolves null when something accepted, else the error. */
function probe(path: string): Promise<Error | null> {
  return new Promise((resolve) => {
    const socket = createConnection(path)
    const timer = setTimeout(() => {
      socket.destroy()
      resolve(new Error(`no answer within ${ADMIN_PROBE_TIMEOUT_MS} ms`))
    }, ADMIN_PROBE_TIMEOUT_MS)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.destroy()
      resolve(null)
    })
    socket.once('error', (err) => {
      clearTimeout(timer)
      resolve(err)
    })
  })
}

function hasCode(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** Sends one admin request and waits for its reply. */
export async function adminRequest(
  path: string,
  request: Record<string, unknown>,
  timeoutMs = ADMIN_REQUEST_TIMEOUT_MS,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path)
    const splitter = new LineSplitter()
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no answer from the admin socket ${path} within ${timeoutMs} ms`))
    }, timeoutMs)
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`))
    socket.on('data', (chunk: Buffer) => {
      try {
        const [line] = splitter.push(chunk)
        if (line === undefined) return
        clearTimeout(timer)
        socket.end()
        resolve(JSON.parse(line) as Record<string, unknown>)
      } catch (err) {
        clearTimeout(timer)
        socket.destroy()
        reject(err instanceof Error ? err : new Error(String(err)))
      }
    })
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(new Error(`cannot reach the agent's admin socket ${path}: ${err.message}`))
    })
  })
}
