/**
 * The harness of the HTTP benchmarks: one agent (or another server) as a child process of the
 * load generator, keep-alive HTTP to it, and the load-generator process itself (the runner is
 * synchronous: `runClientProcess` waits for it with spawnSync and `clientMain` is its entry).
 * Also the percentiles and progress lines the cluster benchmarks share.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseConfig } from '../../packages/agent/src/config/load-config.ts'
import type { Synchronous } from '../../packages/agent/src/store/open-db.ts'
import { pickPort } from './agents.ts'
import { TABLE_SQL } from './fixture.ts'

const AGENT_BIN = fileURLToPath(new URL('../../packages/agent/bin/patina.js', import.meta.url))
const AGENT_DIST = fileURLToPath(new URL('../../packages/agent/dist/cli/main.js', import.meta.url))
/** The argument that makes a module file run as the load-generator process. */
const CLIENT_FLAG = '--bench-client'
/** A load-generator process that runs longer than this is stopped (SIGTERM). */
const CLIENT_TIMEOUT_MS = 60 * 60_000
const SERVER_START_TIMEOUT_MS = 30_000
const SERVER_STOP_TIMEOUT_MS = 15_000
/** Set to a directory to write a V8 CPU profile of every agent process there. */
const PROFILE_DIR = process.env['BENCH_AGENT_PROF']

/** The schema file every benchmark agent loads. */
export const HTTP_SCHEMA_SQL = `${TABLE_SQL};\n`

/** A progress line from the load-generator process, in the runner's format. */
export function clientProgress(line: string): void {
  process.stderr.write(`  · ${line}\n`)
}

/** The 1, 5 and 15 minute load averages, for progress lines and the JSON. */
export function loadAverage(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')
}

/** The p-quantile (0..1, nearest rank) of ascending samples. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new Error('no samples')
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length)))
  return sorted[rank - 1] as number
}

/** A server running as a child process of the load generator. */
export interface ServerProcess {
  readonly url: URL
  readonly pid: number
  /** SIGTERM to this child only, then waits for it to exit (SIGKILL after a grace period). */
  stop(): Promise<void>
}

/** An agent running as a child process. */
export interface AgentProcess extends ServerProcess {
  readonly dbPath: string
}

/** Servers started by this process and not yet exited, stopped if the process is interrupted. */
const liveServers = new Set<{ kill(signal: NodeJS.Signals): boolean }>()

/** Starts `node <args>` and waits for its `API at http://...` line on stdout. */
export async function startServerProcess(
  name: string,
  args: readonly string[],
  cwd: string,
): Promise<ServerProcess> {
  const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  liveServers.add(child)
  const pid = child.pid
  const exited = new Promise<void>((resolveExit) => {
    child.once('exit', () => {
      liveServers.delete(child)
      resolveExit()
    })
  })
  // The last lines of output, for error messages; stdout is read to the end so it never blocks.
  const tail: string[] = []
  const remember = (text: string): void => {
    tail.push(...text.split('\n').filter((l) => l !== ''))
    tail.splice(0, Math.max(0, tail.length - 20))
  }
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', remember)
  let ready = false
  let stopping = false
  const stop = async (): Promise<void> => {
    stopping = true
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), SERVER_STOP_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
    }
  }
  try {
    const url = await new Promise<URL>((resolveUrl, reject) => {
      let pending = ''
      const timer = setTimeout(() => {
        reject(new Error(`${name} did not start within ${SERVER_START_TIMEOUT_MS} ms`))
      }, SERVER_START_TIMEOUT_MS)
      child.once('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        if (!ready) {
          reject(new Error(`${name} exited (${String(code ?? signal)}): ${tail.join('\n') || '-'}`))
        } else if (!stopping) {
          // Exiting while the benchmark runs makes the next request fail; this says why.
          clientProgress(`${name} ${String(pid)} exited (${String(code ?? signal)})`)
        }
      })
      child.stdout.on('data', (chunk: string) => {
        remember(chunk)
        if (ready) return
        pending += chunk
        const match = /API at (http:\/\/\S+)/.exec(pending)
        if (match?.[1] !== undefined) {
          ready = true
          clearTimeout(timer)
          pending = ''
          resolveUrl(new URL(match[1]))
        }
      })
    })
    if (pid === undefined) throw new Error(`${name} has no pid`)
    return { url, pid, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

/**
 * Writes a config (temp data dir `dir`, a free 127.0.0.1 port, JSON logs) and the schema file,
 * starts `patina agent -c <config>` and waits for its `API at http://...` line.
 */
export async function startAgentProcess(
  dir: string,
  synchronous: Synchronous,
): Promise<AgentProcess> {
  if (!existsSync(AGENT_DIST)) {
    throw new Error(`${AGENT_DIST} is missing: build the agent first (npm run bench runs tsc -b)`)
  }
  mkdirSync(dir, { recursive: true })
  const dbPath = join(dir, 'state.db')
  const schemaPath = join(dir, 'schema.sql')
  const configPath = join(dir, 'config.toml')
  writeFileSync(schemaPath, HTTP_SCHEMA_SQL)
  const [apiPort, gossipPort] = [await pickPort(), await pickPort()]
  const toml = [
    '[db]',
    `path = ${JSON.stringify(dbPath)}`,
    `schema_paths = [${JSON.stringify(schemaPath)}]`,
    `synchronous = "${synchronous}"`,
    '',
    '[api]',
    `addr = "127.0.0.1:${apiPort}"`,
    '',
    '[gossip]',
    `addr = "127.0.0.1:${gossipPort}"`,
    '',
    '[log]',
    'format = "json"',
    '',
  ].join('\n')
  // The same parser as the agent: a bad config fails here, with the key named.
  const { config } = parseConfig(toml, dir, configPath)
  if (config.db.synchronous !== synchronous) throw new Error('config parsed to another mode')
  writeFileSync(configPath, toml)
  const profile = PROFILE_DIR === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', PROFILE_DIR]
  const server = await startServerProcess(
    'the agent',
    [...profile, AGENT_BIN, 'agent', '-c', configPath],
    dir,
  )
  return { ...server, dbPath }
}

/** HTTP over keep-alive connections to one agent: `sockets` at most. */
export class HttpClient {
  private readonly agent: http.Agent
  private readonly url: URL

  constructor(url: URL, sockets: number) {
    this.url = url
    this.agent = new http.Agent({ keepAlive: true, maxSockets: sockets })
  }

  /** Posts a JSON body and hands every chunk of the answer to `onData`; resolves its status. */
  stream(path: string, body: string, onData: (chunk: Buffer) => void): Promise<number> {
    return new Promise((resolveStatus, reject) => {
      const req = http.request(
        {
          host: this.url.hostname,
          port: this.url.port,
          path,
          method: 'POST',
          agent: this.agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          res.on('data', onData)
          res.once('error', reject)
          res.once('end', () => {
            resolveStatus(res.statusCode ?? 0)
          })
        },
      )
      req.once('error', reject)
      req.end(body)
    })
  }

  /** Posts a JSON body; resolves the status and the whole answer as text. */
  async post(path: string, body: string): Promise<{ status: number; text: string }> {
    const chunks: Buffer[] = []
    const status = await this.stream(path, body, (chunk) => chunks.push(chunk))
    return { status, text: Buffer.concat(chunks).toString('utf8') }
  }

  /** Sockets open now (in use or idle). */
  sockets(): number {
    const count = (m: NodeJS.ReadOnlyDict<unknown[]>): number =>
      Object.values(m).reduce((n, list) => n + (list?.length ?? 0), 0)
    return count(this.agent.sockets) + count(this.agent.freeSockets)
  }

  close(): void {
    this.agent.destroy()
  }
}

/**
 * Runs `file` as a load-generator process (its clientMain) with `job`, waits for it, and
 * returns the JSON it printed last. Its progress lines (stderr) go straight to the terminal.
 */
export function runClientProcess(file: string, job: unknown): unknown {
  const child = spawnSync(
    process.execPath,
    [...process.execArgv, file, CLIENT_FLAG, JSON.stringify(job)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      encoding: 'utf8',
      maxBuffer: 64 * 2 ** 20,
      timeout: CLIENT_TIMEOUT_MS,
      killSignal: 'SIGTERM',
    },
  )
  if (child.error !== undefined) throw child.error
  if (child.status !== 0) {
    throw new Error(`load generator ${file} failed (${String(child.status ?? child.signal)})`)
  }
  const last = child.stdout.trimEnd().split('\n').at(-1) ?? ''
  return JSON.parse(last) as unknown
}

/**
 * When this process is the load generator for `file` (runClientProcess), runs `measure` with
 * the job and prints its result as one JSON line. An interrupted run stops its agents.
 */
export function clientMain(file: string, measure: (job: unknown) => Promise<unknown>): void {
  const script = process.argv[1]
  if (process.argv[2] !== CLIENT_FLAG || script === undefined || resolve(script) !== file) return
  const stopAgents = (): void => {
    for (const child of liveServers) child.kill('SIGTERM')
    liveServers.clear()
  }
  process.once('exit', stopAgents)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      stopAgents()
      process.exit(130)
    })
  }
  measure(JSON.parse(process.argv[3] ?? 'null')).then(
    (result) => {
      process.stdout.write(`${JSON.stringify(result)}\n`)
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
      process.exitCode = 1
    },
  )
}
