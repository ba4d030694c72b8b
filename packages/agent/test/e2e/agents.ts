/**
 * Real `patina agent` processes for the tests (e2e, admin, the client's): build the bin once,
 * start an agent from its config file, stop it by its PID (or its process group), run a one-shot
 * `patina` command, and poll a condition with a bound. The one agent launcher of the tests.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LineSplitter } from '@patina/protocol'

export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url))
export const BIN = join(REPO_ROOT, 'packages/agent/bin/patina.js')
const START_TIMEOUT_MS = 15_000
/** How long a stop waits for the exit, unless the caller says otherwise. */
const STOP_TIMEOUT_MS = 10_000
/** A one-shot `patina` command still running after this is SIGKILLed. */
const RUN_TIMEOUT_MS = 15_000

let built = false

/**
 * Builds dist/ (`npx tsc -b`) once per test process, so the bin runs the current sources. When
 * the build reports errors (another package mid-edit in a shared tree) but a built bin exists,
 * the tests go on with what was emitted and say so; with no build at all they fail.
 */
export function buildAgent(): void {
  if (built) return
  try {
    execFileSync('npx', ['tsc', '-b'], { cwd: REPO_ROOT, stdio: 'pipe' })
  } catch (err) {
    if (!existsSync(join(REPO_ROOT, 'packages/agent/dist/cli/main.js'))) throw err
    const stdout = (err as { stdout?: unknown }).stdout
    const out = Buffer.isBuffer(stdout) ? stdout.toString('utf8') : ''
    process.stdout.write(
      `# tsc -b failed; running the last built agent:\n# ${out.trim().split('\n').slice(0, 3).join('\n# ')}\n`,
    )
  }
  built = true
}

export interface AgentProcess {
  readonly name: string
  /** Config file; the agent runs in its directory. */
  readonly cfg: string
  /**
   * Base URL of the HTTP API, e.g. `http://127.0.0.1:8080`. Empty when the config says port 0:
   * `startAgent` sets it from the agent's `API at` line.
   */
  api: string
  readonly gossipPort: number
  /**
   * Run the agent in its own process group, and stop it by signalling the group: its reader
   * processes stop with it (after a SIGKILL they would otherwise outlive it for a while, holding
   * the test's end of the pipes open).
   */
  readonly processGroup?: boolean
  child: ChildProcess | null
  /** Everything the agent wrote on stdout and stderr, over all its starts. */
  output: string
}

/**
 * Writes the config of one test agent (`agentConfig`) to `<dir>/<file>` and returns the agent,
 * not started yet, with its API on 127.0.0.1:`apiPort`.
 */
export function writeAgent(
  dir: string,
  options: AgentConfigOptions,
  file = `${options.name}.toml`,
): AgentProcess {
  const cfg = join(dir, file)
  writeFileSync(cfg, agentConfig(options))
  const { name, apiPort, gossipPort } = options
  return { name, cfg, api: `http://127.0.0.1:${apiPort}`, gossipPort, child: null, output: '' }
}

/** The line an agent prints once its API listens; group 1 is the URL. */
const READY_LINE = /patina agent: API at (http:\/\/\S+)\n/

/**
 * Starts the agent; resolves once its stdout says the API is listening (at `n.api`, or sets
 * `n.api` when it was empty).
 */
export function startAgent(n: AgentProcess): Promise<void> {
  const child = spawn(process.execPath, [BIN, 'agent', '-c', n.cfg], {
    cwd: dirname(n.cfg),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: n.processGroup === true,
  })
  n.child = child
  let seen = ''
  let started = false
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`${n.name} did not start within ${START_TIMEOUT_MS} ms:\n${seen}`))
    }, START_TIMEOUT_MS)
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      seen += chunk
      n.output += chunk
      const url = started ? undefined : READY_LINE.exec(seen)?.[1]
      if (url === undefined) return
      started = true
      clearTimeout(timer)
      if (n.api === '') n.api = url
      if (url === n.api) resolve()
      else reject(new Error(`${n.name} listens at ${url}, not at ${n.api}:\n${seen}`))
    })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (n.output += chunk))
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`${n.name} exited (${code ?? signal ?? '?'}) before starting:\n${seen}`))
    })
  })
}

/**
 * Sends `signal` to the agent's PID (its process group with `processGroup`) unless it has
 * exited already, and waits for the exit (rejects after `ms`).
 */
export async function stopAgent(
  n: AgentProcess,
  signal: NodeJS.Signals,
  ms = STOP_TIMEOUT_MS,
): Promise<void> {
  const child = n.child
  if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  process.kill(n.processGroup === true ? -child.pid : child.pid, signal)
  await waitExit(child, ms)
}

/** Waits for `child` to exit (rejects after `ms`). */
export function waitExit(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`pid ${child.pid ?? '?'} did not exit within ${ms} ms`))
    }, ms)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
  })
}

export interface PatinaResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs `patina ARGS` in `cwd` to its end and collects its output; SIGKILLed by its PID after
 * `timeoutMs`.
 */
export function runPatina(
  cwd: string,
  args: readonly string[],
  timeoutMs = RUN_TIMEOUT_MS,
): Promise<PatinaResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
    }, timeoutMs)
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    // 'close', not 'exit': stdout and stderr are read to their end.
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/** Polls `check` until it returns true; fails with `describe()` after `ms`. */
export async function waitFor(
  what: string,
  ms: number,
  check: () => Promise<boolean>,
  describe: () => Promise<string>,
): Promise<number> {
  const started = performance.now()
  for (;;) {
    try {
      if (await check()) return performance.now() - started
    } catch {
      // not answering yet: keep polling
    }
    if (performance.now() - started > ms) {
      assert.fail(`${what} not within ${ms} ms:\n${await describe().catch(String)}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** POST /v1/queries on `n`: each row as the JSON text of its values, in result order. */
export async function queryRows(
  n: AgentProcess,
  sql: string,
  timeoutMs = 10_000,
): Promise<string[]> {
  const res = await fetch(`${n.api}/v1/queries`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(sql),
    signal: AbortSignal.timeout(timeoutMs),
  })
  const body = new Uint8Array(await res.arrayBuffer())
  assert.equal(res.status, 200, `${n.name}: ${new TextDecoder().decode(body)}`)
  const splitter = new LineSplitter()
  const out: string[] = []
  // What follows the last newline (a body cut short) is parsed too, so that it fails here.
  for (const line of [...splitter.push(body), splitter.end()]) {
    if (line === '') continue
    const event = JSON.parse(line) as { row?: [number, unknown[]]; error?: string }
    assert.equal(event.error, undefined, `${n.name}: ${line}`)
    if (event.row !== undefined) out.push(JSON.stringify(event.row[1]))
  }
  return out
}

export interface AgentConfigOptions {
  readonly name: string
  readonly apiPort: number
  readonly gossipPort: number
  readonly bootstrap: readonly number[]
  readonly schema?: boolean
  readonly extra?: readonly string[]
}

/**
 * The config file of one test agent: its data under `<name>/`, API and gossip on 127.0.0.1,
 * joining through `bootstrap` (gossip ports), then any `extra` lines (sections of their own).
 */
export function agentConfig(options: AgentConfigOptions): string {
  return [
    '[db]',
    `path = "${options.name}/state.db"`,
    ...(options.schema === true ? ['schema_paths = ["schema.sql"]'] : []),
    'reader_threads = 1',
    '[api]',
    `addr = "127.0.0.1:${options.apiPort}"`,
    '[gossip]',
    `addr = "127.0.0.1:${options.gossipPort}"`,
    `bootstrap = [${options.bootstrap.map((p) => `"127.0.0.1:${p}"`).join(', ')}]`,
    ...(options.extra ?? []),
    '',
  ].join('\n')
}
