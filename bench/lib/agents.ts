/**
 * Real `patina agent` processes for the benchmarks (the cluster ones and the HTTP ones): config
 * files, start and stop by PID, membership polling, Prometheus scrapes, and read-only SQLite
 * connections to each agent's file. The one agent launcher of the benchmarks.
 *
 * Every agent is a child process of the built bin (`node packages/agent/bin/patina.js agent -c
 * <config>`), optionally inside a network namespace (`ip netns exec <ns> node ...`, which execs
 * node in place, so the child's PID is the agent's). A server process (an agent, or the HTTP
 * benchmarks' bare node:http floor) is ready when it prints its `API at http://...` line.
 * Servers started here and not yet exited are remembered, and SIGKILLed by PID if this process
 * exits without stopping them (an interrupted run).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import {
  chunkBytes as chunkAccountingBytes,
  chunkVersion,
} from '../../packages/agent/src/wire/chunks.ts'
import { chunkEncodedBytes, encodeMessage } from '../../packages/agent/src/wire/wire.ts'
import { DEFAULT_CLUSTER_ID } from '../../packages/agent/src/config/defaults.ts'
import { parseConfig } from '../../packages/agent/src/config/load-config.ts'
import { Replica } from '../../packages/agent/src/crdt/replica.ts'
import { DEFAULT_REPLICATION } from '../../packages/agent/src/replication/options.ts'
import type { Machine } from './common.ts'
import { stallScanner, watchAgent } from './event-loop.ts'
import { TABLE_SQL } from './fixture.ts'
import type { HttpClient } from './http.ts'

const AGENT_BIN = fileURLToPath(new URL('../../packages/agent/bin/patina.js', import.meta.url))
const AGENT_DIST = fileURLToPath(new URL('../../packages/agent/dist/cli/main.js', import.meta.url))
const START_TIMEOUT_MS = 30_000
/** A stop is SIGTERM, then SIGKILL after this long. */
const STOP_TIMEOUT_MS = 15_000
/** Set to a directory to write a V8 CPU profile of every agent process there. */
const PROFILE_DIR = process.env['BENCH_AGENT_PROF']
/** Characters of an agent's output kept for error messages. */
const OUTPUT_TAIL_CHARS = 4000

/** The schema every benchmark agent loads: the engine benchmarks' table `t`. */
export const AGENT_SCHEMA_SQL = `${TABLE_SQL};\n`
/** The line a server prints once it listens; group 1 is its URL. */
const READY_LINE = /API at (http:\/\/\S+)\r?\n/

/** A TOML value of the configs written here. */
export type TomlValue = string | number | boolean | readonly string[]
/** Sections of a config file: `{ gossip: { probe_interval_ms: 200 } }`. */
export type TomlSections = Readonly<Record<string, Readonly<Record<string, TomlValue>>>>

function tomlValue(v: TomlValue): string {
  if (typeof v === 'string') return JSON.stringify(v)
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  return `[${v.map((s) => JSON.stringify(s)).join(', ')}]`
}

/** Sections merged key by key (later wins), rendered as TOML. */
export function renderToml(...parts: readonly TomlSections[]): string {
  const merged = new Map<string, Map<string, TomlValue>>()
  for (const part of parts) {
    for (const [section, keys] of Object.entries(part)) {
      const m = merged.get(section) ?? new Map<string, TomlValue>()
      for (const [k, v] of Object.entries(keys)) m.set(k, v)
      merged.set(section, m)
    }
  }
  const lines: string[] = []
  for (const [section, keys] of merged) {
    lines.push(`[${section}]`)
    for (const [k, v] of keys) lines.push(`${k} = ${tomlValue(v)}`)
    lines.push('')
  }
  return lines.join('\n')
}

/** The override sections as `section.key = value` strings, for the benchmark's notes. */
export function describeSettings(sections: TomlSections): string {
  const out: string[] = []
  for (const [section, keys] of Object.entries(sections)) {
    for (const [k, v] of Object.entries(keys)) out.push(`${section}.${k} = ${tomlValue(v)}`)
  }
  return out.length === 0 ? 'defaults' : out.join(', ')
}

export interface AgentSpec {
  readonly name: string
  /** Data directory of this agent (config, schema, state.db). */
  readonly dir: string
  /** host:port of the API. */
  readonly apiAddr: string
  /** host:port of gossip (membership and replication). */
  readonly gossipAddr: string
  readonly bootstrap: readonly string[]
  /**
   * `[db] reader_threads`: 1 unless given (the cluster benchmarks run several agents on one
   * machine); null leaves the key out, so the agent's default applies (the HTTP benchmarks).
   */
  readonly readerThreads?: number | null
  /** Extra config sections (merged over the base config). */
  readonly settings?: TomlSections
  /** Run inside this network namespace (`ip netns exec`). */
  readonly netns?: string
}

/** A server (an agent, or another one for comparison) running as a child process. */
export interface ServerProcess {
  readonly name: string
  /** Where it listens, from its `API at http://...` line. */
  readonly url: URL
  readonly pid: number
  running(): boolean
  /** SIGTERM to this PID, SIGKILL after a grace period; resolves once it has exited. */
  stop(): Promise<void>
  /** SIGKILL to this PID; resolves once it has exited. */
  kill(): Promise<void>
}

export interface Agent extends ServerProcess {
  readonly spec: AgentSpec
  /** `http://host:port` */
  readonly api: string
  readonly gossip: string
  readonly dbPath: string
}

const live = new Map<number, ChildProcess>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once('exit', () => {
    for (const [pid, child] of live) {
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL')
    }
  })
}

/** PIDs of agents started by this process that are still running. */
export function liveAgentPids(): number[] {
  return [...live.keys()]
}

/**
 * Starts `node <args>` in `cwd` (inside `netns` if given) and waits for its `API at http://...`
 * line on stdout. A server that exits later without being stopped through its handle is
 * reported on stderr (the next request fails; this says why).
 */
export async function startServerProcess(
  name: string,
  args: readonly string[],
  options: { readonly cwd: string; readonly netns?: string },
): Promise<ServerProcess> {
  const [command, argv] =
    options.netns === undefined
      ? [process.execPath, args]
      : ['ip', ['netns', 'exec', options.netns, process.execPath, ...args]]
  const child = spawn(command, argv, { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  const pid = child.pid
  if (pid !== undefined) {
    installExitHook()
    live.set(pid, child)
  }
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      if (pid !== undefined) live.delete(pid)
      resolve()
    })
  })
  // The last of its output, for error messages; stdout is read to the end so it never blocks.
  let tail = ''
  const remember = (chunk: string): void => {
    tail = (tail + chunk).slice(-OUTPUT_TAIL_CHARS)
  }
  child.stderr.setEncoding('utf8').on('data', remember)
  child.stdout.setEncoding('utf8')
  let ready = false
  let stopping = false
  const running = (): boolean => child.exitCode === null && child.signalCode === null
  const stopWith = async (signal: NodeJS.Signals): Promise<void> => {
    stopping = true
    if (pid === undefined || !running()) return
    process.kill(pid, signal)
    const timer = setTimeout(() => {
      if (running()) process.kill(pid, 'SIGKILL')
    }, STOP_TIMEOUT_MS)
    await exited
    clearTimeout(timer)
  }
  try {
    const url = await new Promise<URL>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`${name} did not start within ${START_TIMEOUT_MS} ms:\n${tail}`))
      }, START_TIMEOUT_MS)
      let out = ''
      const stalls = stallScanner(name)
      child.stdout.on('data', (chunk: string) => {
        remember(chunk)
        stalls(chunk)
        if (ready) return
        out = (out + chunk).slice(-OUTPUT_TAIL_CHARS)
        const match = READY_LINE.exec(out)
        if (match?.[1] === undefined) return
        ready = true
        clearTimeout(timer)
        resolve(new URL(match[1]))
      })
      child.once('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        if (!ready) {
          reject(new Error(`${name} exited (${String(code ?? signal)}) at start:\n${tail || '-'}`))
        } else if (!stopping) {
          process.stderr.write(`  · ${name} ${String(pid)} exited (${String(code ?? signal)})\n`)
        }
      })
    })
    if (pid === undefined) throw new Error(`${name} has no pid`)
    return {
      name,
      url,
      pid,
      running,
      stop: () => stopWith('SIGTERM'),
      kill: () => stopWith('SIGKILL'),
    }
  } catch (err) {
    await stopWith('SIGKILL')
    throw err
  }
}

/** Writes the agent's config and schema (checked by the agent's own parser) and starts it. */
export async function startAgent(spec: AgentSpec): Promise<Agent> {
  if (!existsSync(AGENT_DIST)) {
    throw new Error(`${AGENT_DIST} is missing: build the agent first (npm run bench runs tsc -b)`)
  }
  mkdirSync(spec.dir, { recursive: true })
  const dbPath = join(spec.dir, 'state.db')
  const schemaPath = join(spec.dir, 'schema.sql')
  const configPath = join(spec.dir, 'config.toml')
  writeFileSync(schemaPath, AGENT_SCHEMA_SQL)
  const readerThreads = spec.readerThreads === undefined ? 1 : spec.readerThreads
  const base: TomlSections = {
    db: {
      path: dbPath,
      schema_paths: [schemaPath],
      ...(readerThreads === null ? {} : { reader_threads: readerThreads }),
    },
    api: { addr: spec.apiAddr },
    gossip: { addr: spec.gossipAddr, bootstrap: spec.bootstrap },
    log: { format: 'json' },
  }
  const toml = renderToml(base, spec.settings ?? {})
  // The same parser as the agent: a bad config fails here, with the key named.
  parseConfig(toml, spec.dir, configPath)
  writeFileSync(configPath, toml)
  const profile = PROFILE_DIR === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', PROFILE_DIR]
  const server = await startServerProcess(
    spec.name,
    [...profile, AGENT_BIN, 'agent', '-c', configPath],
    { cwd: spec.dir, ...(spec.netns === undefined ? {} : { netns: spec.netns }) },
  )
  const api = `http://${spec.apiAddr}`
  if (server.url.origin !== new URL(api).origin) {
    await server.kill()
    throw new Error(`${spec.name} listens at ${server.url.href}, not at ${api}`)
  }
  // Its event-loop delay is sampled while it runs, for run.ts's report (event-loop.ts).
  return watchAgent({ ...server, spec, api, gossip: spec.gossipAddr, dbPath })
}

export interface ClusterOptions {
  /** Parent directory; agent i lives in `<dir>/agent-<i+1>`. */
  readonly dir: string
  readonly count: number
  readonly settings?: TomlSections
  /** Per agent: the host to bind and the network namespace; loopback and none by default. */
  readonly place?: (i: number) => {
    readonly host: string
    readonly netns?: string
    readonly apiHost?: string
  }
}

/** Ports handed out by `pickPort` in this process (never handed out twice). */
const pickedPorts = new Set<number>()
/** Listening ports are picked below the ephemeral range (32768+ on Linux), where outgoing
 * connections of the running agents take their local ports, so that those never collide. */
const PICK_PORT_MIN = 20_000
const PICK_PORT_MAX = 32_000

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => {
      resolve(false)
    })
    server.listen(port, '127.0.0.1', () => {
      server.close(() => {
        resolve(true)
      })
    })
  })
}

/** A free 127.0.0.1 port below the ephemeral range, not handed out before by this process. */
export async function pickPort(): Promise<number> {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const port = PICK_PORT_MIN + Math.floor(Math.random() * (PICK_PORT_MAX - PICK_PORT_MIN))
    if (pickedPorts.has(port)) continue
    pickedPorts.add(port)
    if (await portFree(port)) return port
  }
  throw new Error('no free port found')
}

const withPort = (addr: string, port: number): string =>
  `${addr.slice(0, addr.lastIndexOf(':'))}:${port}`

/** Specs for `count` agents on free ports, the 2nd..Nth bootstrapping from the first. */
export async function clusterSpecs(o: ClusterOptions): Promise<AgentSpec[]> {
  const specs: AgentSpec[] = []
  let bootstrap = ''
  for (let i = 0; i < o.count; i++) {
    const place = o.place?.(i) ?? { host: '127.0.0.1' }
    const gossipAddr = `${place.host}:${await pickPort()}`
    if (i === 0) bootstrap = gossipAddr
    specs.push({
      name: `agent-${i + 1}`,
      dir: join(o.dir, `agent-${i + 1}`),
      apiAddr: `${place.apiHost ?? place.host}:${await pickPort()}`,
      gossipAddr,
      bootstrap: i === 0 ? [] : [bootstrap],
      ...(o.settings === undefined ? {} : { settings: o.settings }),
      ...(place.netns === undefined ? {} : { netns: place.netns }),
    })
  }
  return specs
}

/**
 * Starts an agent; when its port was taken meanwhile (EADDRINUSE: something else bound it
 * between the check and the agent's bind), tries again on fresh ports, 3 times at most.
 */
async function startRetrying(spec: AgentSpec): Promise<Agent> {
  let s = spec
  for (let attempt = 1; ; attempt++) {
    try {
      return await startAgent(s)
    } catch (err) {
      const taken = err instanceof Error && err.message.includes('EADDRINUSE')
      if (!taken || attempt >= 3 || s.netns !== undefined) throw err
      s = {
        ...s,
        apiAddr: withPort(s.apiAddr, await pickPort()),
        gossipAddr: withPort(s.gossipAddr, await pickPort()),
      }
    }
  }
}

/** Starts the first agent, then the others at once; stops every started one on failure. */
export async function startCluster(specs: readonly AgentSpec[]): Promise<Agent[]> {
  const agents: Agent[] = []
  const [first, ...rest] = specs
  if (first === undefined) return agents
  try {
    const a1 = await startRetrying(first)
    agents.push(a1)
    const started = await Promise.allSettled(
      rest.map((s) => startRetrying({ ...s, bootstrap: [a1.gossip] })),
    )
    for (const r of started) if (r.status === 'fulfilled') agents.push(r.value)
    const failed = started.find((r) => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
    return agents
  } catch (err) {
    await stopAll(agents)
    throw err
  }
}

export async function stopAll(agents: readonly Agent[]): Promise<void> {
  await Promise.all(agents.map((a) => a.stop()))
}

export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    setTimeout(resolve, ms)
  })

export interface Member {
  readonly actor_id: string
  readonly addr: string
  readonly state: string
}

export async function members(a: Agent): Promise<Member[]> {
  const res = await fetch(`${a.api}/v1/members`, { signal: AbortSignal.timeout(2000) })
  if (res.status !== 200) throw new Error(`${a.name}: /v1/members answered ${res.status}`)
  return (await res.json()) as Member[]
}

/** True when every agent lists every agent of `agents` (by gossip address) alive. */
export async function allAlive(agents: readonly Agent[]): Promise<boolean> {
  const want = new Set(agents.map((a) => a.gossip))
  const views = await Promise.all(agents.map((a) => members(a).catch(() => [])))
  return views.every((ms) => {
    const alive = new Set(ms.filter((m) => m.state === 'alive').map((m) => m.addr))
    return [...want].every((addr) => alive.has(addr))
  })
}

/** Polls until every agent lists every other alive; resolves the ms it took. */
export async function waitAllAlive(agents: readonly Agent[], timeoutMs: number): Promise<number> {
  const start = performance.now()
  while (!(await allAlive(agents))) {
    if (performance.now() - start > timeoutMs) {
      throw new Error(`the ${agents.length} agents did not all list each other alive in time`)
    }
    await sleep(50)
  }
  return performance.now() - start
}

// ------------------------------------------------------------------------------ metrics

/** One scrape: `name{labels}` (labels as printed) to value. */
export type Metrics = ReadonlyMap<string, number>

export async function scrape(a: Agent): Promise<Metrics> {
  const res = await fetch(`${a.api}/metrics`, { signal: AbortSignal.timeout(5000) })
  if (res.status !== 200) throw new Error(`${a.name}: /metrics answered ${res.status}`)
  const out = new Map<string, number>()
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const cut = line.lastIndexOf(' ')
    out.set(line.slice(0, cut), Number(line.slice(cut + 1)))
  }
  return out
}

/** A sample's value, 0 when absent: `metric(m, 'patina_x_total', { kind: 'sync' })`. */
export function metric(m: Metrics, name: string, labels: Record<string, string> = {}): number {
  const entries = Object.entries(labels)
  if (entries.length === 0) return m.get(name) ?? 0
  const key = `${name}{${entries.map(([k, v]) => `${k}="${v}"`).join(',')}}`
  return m.get(key) ?? 0
}

/** Sum over agents of `metric(after) - metric(before)`. */
export function metricDelta(
  before: readonly Metrics[],
  after: readonly Metrics[],
  name: string,
  labels: Record<string, string> = {},
): number {
  let sum = 0
  after.forEach((m, i) => {
    const b = before[i]
    sum += metric(m, name, labels) - (b === undefined ? 0 : metric(b, name, labels))
  })
  return sum
}

// ------------------------------------------------------------------------------ reading files

/**
 * A read-only connection to an agent's database file, as Patina's users read it. Never writes
 * (the agent owns the only writer); WAL lets it read while the agent commits.
 */
export function openReader(path: string): Database.Database {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  db.pragma('busy_timeout = 1000')
  return db
}

/** Number of rows of `t` and a digest of every row: equal digests, identical rows. */
export function tableDigest(db: Database.Database): { rows: number; digest: string } {
  const row = db
    .prepare(
      "SELECT count(*) AS n, coalesce(group_concat(id || '|' || coalesce(a, '') || '|' || " +
        "coalesce(b, '') || '|' || coalesce(c, '') || '|' || coalesce(d, ''), ';'), '') AS s " +
        'FROM (SELECT * FROM t ORDER BY id)',
    )
    .get() as { n: number; s: string }
  return { rows: row.n, digest: createHash('sha256').update(row.s).digest('hex').slice(0, 16) }
}

// ------------------------------------------------------------------------------ writes

/** The `/v1/transactions` body of one statement with its parameters. */
export function statementBody(sql: string, params: readonly (string | number)[]): string {
  return JSON.stringify([[sql, params]])
}

/** Sends one transaction through `client`; throws unless the agent answered 200 with a version. */
export async function transact(client: HttpClient, body: string): Promise<void> {
  const { status, text } = await client.post('/v1/transactions', body)
  if (status !== 200 || !text.includes('"version"')) {
    throw new Error(`transaction answered ${status}: ${text.slice(0, 300)}`)
  }
}

/** One line naming the machine and its load, for every cluster benchmark's notes. */
export function machineLine(m: Machine): string {
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')
  return (
    `machine: ${m.cpu}, ${m.cores} cores, ${(m.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB, ` +
    `${m.os}, Node ${m.node}; load average now ${load} (other work on this machine skews figures)`
  )
}

// ------------------------------------------------------------------------------ change sizes

/** What versions of one origin amount to, measured with the wire codec. */
export interface EncodedSize {
  readonly versions: number
  /** Cells (changes) in those versions. */
  readonly changes: number
  /** Chunks the versions are cut into (DEFAULT_REPLICATION.chunkBytes). */
  readonly chunks: number
  /** Sum of `chunkEncodedBytes`: the chunks as they travel inside `sync-chunks` (ts = 0). */
  readonly chunkBytes: number
  /** Sum of `encodeMessage` of one `change` message per chunk, as broadcast (ts = `ts`). */
  readonly messageBytes: number
  /** Sum of `chunkBytes()`: the queue-accounting estimate that the sync byte counter adds up. */
  readonly accountingBytes: number
}

/**
 * Encoded size of versions `from..to` of the origin that owns the database at `dbPath` (its own
 * writes). The agent must be stopped: the files are copied to `scratchDir` and opened there.
 */
export function encodedSize(
  dbPath: string,
  scratchDir: string,
  from: number,
  to: number,
  ts: number,
): EncodedSize {
  mkdirSync(scratchDir, { recursive: true })
  const copy = join(scratchDir, 'copy.db')
  for (const suffix of ['', '-wal']) {
    if (existsSync(`${dbPath}${suffix}`)) copyFileSync(`${dbPath}${suffix}`, `${copy}${suffix}`)
  }
  const replica = Replica.open(copy)
  try {
    let changes = 0
    let chunks = 0
    let chunkBytes = 0
    let messageBytes = 0
    let accountingBytes = 0
    for (let v = from; v <= to; v++) {
      const cs = replica.changesFor(replica.actorId, v)
      if (cs === null) throw new Error(`version ${v} is not in ${dbPath}`)
      changes += cs.changes.length
      for (const chunk of chunkVersion(cs, 0, DEFAULT_REPLICATION.chunkBytes)) {
        chunks++
        chunkBytes += chunkEncodedBytes(chunk)
        accountingBytes += chunkAccountingBytes(chunk)
        messageBytes += encodeMessage({
          type: 'change',
          clusterId: DEFAULT_CLUSTER_ID,
          sender: replica.actorId,
          chunk: { ...chunk, ts },
        }).length
      }
    }
    return { versions: to - from + 1, changes, chunks, chunkBytes, messageBytes, accountingBytes }
  } finally {
    replica.close()
  }
}

/** The newest version the database at `path` wrote itself (read-only). */
export function ownHead(path: string): number {
  const db = openReader(path)
  try {
    const head = db
      .prepare('SELECT head FROM __patina_heads WHERE site = 0')
      .pluck()
      .safeIntegers(false)
      .get() as number | undefined
    return head ?? 0
  } finally {
    db.close()
  }
}
