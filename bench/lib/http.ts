/**
 * The harness of the HTTP benchmarks: the spec of their one agent (started, like every
 * benchmark's agent, by agents.ts as a child process of the load generator), keep-alive HTTP to
 * it, and the load-generator process itself (the runner is synchronous: `runClientProcess`
 * waits for it with spawnSync and `clientMain` is its entry). Also the percentiles and progress
 * lines the cluster benchmarks share.
 */
import { spawnSync } from 'node:child_process'
import http from 'node:http'
import os from 'node:os'
import { resolve } from 'node:path'
import type { Synchronous } from '../../packages/agent/src/store/open-db.ts'
import { pickPort, type AgentSpec } from './agents.ts'
import { clientOutput, clientResult } from './event-loop.ts'

/** The argument that makes a module file run as the load-generator process. */
const CLIENT_FLAG = '--bench-client'
/** A load-generator process that runs longer than this is stopped (SIGTERM). */
const CLIENT_TIMEOUT_MS = 60 * 60_000

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

/**
 * The agent of the HTTP benchmarks: alone in `dir` (no bootstrap), API and gossip on free
 * 127.0.0.1 ports, `synchronous` as given, the agent's default reader threads. Start it with
 * agents.ts' startAgent.
 */
export async function httpAgentSpec(dir: string, synchronous: Synchronous): Promise<AgentSpec> {
  return {
    name: 'the agent',
    dir,
    apiAddr: `127.0.0.1:${await pickPort()}`,
    gossipAddr: `127.0.0.1:${await pickPort()}`,
    bootstrap: [],
    readerThreads: null,
    settings: { db: { synchronous } },
  }
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
 * returns the result in the JSON it printed last (the event-loop samples of the agents it
 * started go to event-loop.ts). Its progress lines (stderr) go straight to the terminal.
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
  // The agents it started were sampled there; run.ts reports them with this benchmark.
  return clientResult(last)
}

/**
 * When this process is the load generator for `file` (runClientProcess), runs `measure` with
 * the job and prints its result as one JSON line. An interrupted run exits, and the exit kills
 * its servers (agents.ts).
 */
export function clientMain(file: string, measure: (job: unknown) => Promise<unknown>): void {
  const script = process.argv[1]
  if (process.argv[2] !== CLIENT_FLAG || script === undefined || resolve(script) !== file) return
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.exit(130)
    })
  }
  measure(JSON.parse(process.argv[3] ?? 'null')).then(
    (result) => {
      process.stdout.write(`${clientOutput(result)}\n`)
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
      process.exitCode = 1
    },
  )
}
