/**
 * Real `patina agent` processes for the client's tests, started by the agent's test launcher
 * (packages/agent/test/e2e/agents.ts): each in its own temporary directory with a small schema,
 * API and gossip on 127.0.0.1 port 0 (the agent prints the API URL it got), no bootstrap (each
 * agent is its own cluster). Stopped by SIGKILL to its process group.
 */
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  agentConfig,
  buildAgent,
  startAgent as start,
  stopAgent,
  type AgentProcess,
} from '../../../agent/test/e2e/agents.ts'

const STOP_TIMEOUT_MS = 5_000

export const SCHEMA = [
  'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT, x);',
  'CREATE TABLE kv (k TEXT NOT NULL PRIMARY KEY, n INTEGER, r REAL, s TEXT, b BLOB);',
  '',
].join('\n')

export interface Agent {
  readonly url: string
  readonly child: ChildProcess
  output(): string
  stop(): Promise<void>
}

/** Starts one agent (on `schema`, SQL text) and resolves once it serves its API. */
export async function startAgent(name: string, schema = SCHEMA): Promise<Agent> {
  buildAgent()
  const dir = mkdtempSync(join(tmpdir(), `patina-client-${name}-`))
  writeFileSync(join(dir, 'schema.sql'), schema)
  const cfg = join(dir, 'patina.toml')
  writeFileSync(
    cfg,
    agentConfig({ name: 'data', apiPort: 0, gossipPort: 0, bootstrap: [], schema: true }),
  )
  const n: AgentProcess = {
    name,
    cfg,
    api: '',
    gossipPort: 0,
    processGroup: true,
    child: null,
    output: '',
  }
  await start(n)
  const child = n.child
  if (child === null) throw new Error(`${name} has no process`)
  return {
    url: n.api,
    child,
    output: () => n.output,
    stop: async () => {
      // As before the shared launcher: an agent still there 5 s after its SIGKILL does not fail
      // the test (its directory is removed anyway).
      await stopAgent(n, 'SIGKILL', STOP_TIMEOUT_MS).catch(() => undefined)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** A TCP server that accepts connections and never answers (a hung host). */
export async function blackhole(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => undefined)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => {
          resolve()
        })
      }),
  }
}
