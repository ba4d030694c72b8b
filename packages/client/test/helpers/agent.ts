/**
 * Real `patina agent` processes for the client's tests: each in its own temporary directory
 * with a small schema, API and gossip on 127.0.0.1 port 0 (the agent prints the API URL it got),
 * no bootstrap (each agent is its own cluster). Started from the built bin; `npx tsc -b` first.
 * Stopped by SIGKILL to its process group (the agent's PID).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url))
const BIN = join(REPO_ROOT, 'packages/agent/bin/patina.js')
const START_TIMEOUT_MS = 15_000
const STOP_TIMEOUT_MS = 5_000

export const SCHEMA = [
  'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT, x);',
  'CREATE TABLE kv (k TEXT NOT NULL PRIMARY KEY, n INTEGER, r REAL, s TEXT, b BLOB);',
  '',
].join('\n')

let built = false

/**
 * Builds dist/ once per test process, so the bin runs the current sources. When the build
 * fails (another package mid-edit in a shared tree) but a built bin exists, the tests go on
 * with the last build and say so; with no build at all they fail.
 */
export function build(): void {
  if (built) return
  try {
    execFileSync('npx', ['tsc', '-b'], { cwd: REPO_ROOT, stdio: 'pipe' })
  } catch (err) {
    if (!existsSync(join(REPO_ROOT, 'packages/agent/dist/cli/agent.js'))) throw err
    const stdout = (err as { stdout?: unknown }).stdout
    const out = Buffer.isBuffer(stdout) ? stdout.toString('utf8') : ''
    process.stdout.write(
      `# tsc -b failed; running the last built agent:\n# ${out.trim().split('\n').slice(0, 3).join('\n# ')}\n`,
    )
  }
  built = true
}

export interface Agent {
  readonly url: string
  readonly child: ChildProcess
  output(): string
  stop(): Promise<void>
}

/** Starts one agent and resolves once it serves its API. */
export async function startAgent(name: string): Promise<Agent> {
  build()
  const dir = mkdtempSync(join(tmpdir(), `patina-client-${name}-`))
  writeFileSync(join(dir, 'schema.sql'), SCHEMA)
  const cfg = join(dir, 'patina.toml')
  writeFileSync(
    cfg,
    [
      '[db]',
      'path = "data/state.db"',
      'schema_paths = ["schema.sql"]',
      'reader_threads = 1',
      '[api]',
      'addr = "127.0.0.1:0"',
      '[gossip]',
      'addr = "127.0.0.1:0"',
      '',
    ].join('\n'),
  )
  // Its own process group, so stopping it also stops its reader processes (which would
  // otherwise outlive a SIGKILL for a while, holding our end of the pipes open).
  const child = spawn(process.execPath, [BIN, 'agent', '-c', cfg], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  let output = ''
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      resolve()
    }),
  )
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`${name} did not start within ${START_TIMEOUT_MS} ms:\n${output}`))
    }, START_TIMEOUT_MS)
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk
      const m = /patina agent: API at (http:\/\/\S+)\n/.exec(output)
      if (m?.[1] !== undefined) {
        clearTimeout(timer)
        resolve(m[1])
      }
    })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`${name} exited (${code ?? signal ?? '?'}) before starting:\n${output}`))
    })
  })
  return {
    url,
    child,
    output: () => output,
    stop: async () => {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        process.kill(-child.pid, 'SIGKILL')
        let timer: ReturnType<typeof setTimeout> | undefined
        await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, STOP_TIMEOUT_MS)))])
        clearTimeout(timer)
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** A port on 127.0.0.1 that nothing listens on (it was free a moment ago). */
export function deadPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => {
        resolve(port)
      })
    })
  })
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
