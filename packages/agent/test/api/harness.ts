/**
 * Goal: one in-process agent built by main.ts's own startAgent(), for tests that drive its API
 * with fastify's inject() (no sockets) or, where a test needs requests really in flight, on
 * its loopback port.
 *
 * Method: a temporary directory with the test schema file and a config parsed from TOML text
 * (the test's extra TOML merged in), then startAgent() with a silent logger. close() stops the
 * agent and removes the directory.
 * Also: request helpers, an NDJSON splitter, and `state()`, a snapshot of everything a refused
 * request must leave unchanged (rows of t, internal bookkeeping, the writer's PRAGMAs).
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { pino } from 'pino'
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml'
import type { Api } from '../../src/api/server.ts'
import { parseConfig, type Config } from '../../src/config/load-config.ts'
import type { Replica } from '../../src/crdt/replica.ts'
import { startAgent, type Agent } from '../../src/main.ts'
import type { AgentMetrics } from '../../src/metrics/agent-metrics.ts'

/** The test table: typed columns of each kind and one untyped column `x`. */
export const SCHEMA = 'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT, r REAL, b BLOB, x);'

export interface ApiHarness {
  readonly dir: string
  readonly file: string
  /** The agent's bound gossip address (as it lists itself in /v1/members). */
  readonly gossipAddr: string
  readonly replica: Replica
  readonly config: Config
  readonly metrics: AgentMetrics
  readonly app: Api
  close(): Promise<void>
}

/**
 * Starts an agent on a fresh database, exactly as `patina agent` does (startAgent: the API on a
 * loopback port, the node on another, the admin socket in the directory). `extraToml` is merged
 * into the config (e.g. `[api]` keys).
 */
export async function openApi(extraToml = ''): Promise<ApiHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'patina-api-'))
  const file = join(dir, 'state.db')
  writeFileSync(join(dir, 'schema.sql'), SCHEMA)
  let agent: Agent | null = null
  const close = async (): Promise<void> => {
    await agent?.stop()
    agent = null
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const base = {
      db: { path: 'state.db', schema_paths: ['schema.sql'] },
      api: { addr: '127.0.0.1:0' },
      gossip: { addr: '127.0.0.1:0' },
      admin: { path: 'admin.sock' },
    }
    const toml = stringifyToml(merge(base, parseToml(extraToml)))
    const { config } = parseConfig(toml, dir, 'test config')
    agent = await startAgent(config, pino({ level: 'silent' }))
    const app = agent.apis[0]
    assert.ok(app !== undefined)
    await app.ready()
    return {
      dir,
      file,
      gossipAddr: agent.node.addr,
      replica: agent.replica,
      config,
      metrics: agent.metrics,
      app,
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}

/** `extra`'s keys over `base`'s, tables merged key by key. */
function merge(
  base: Record<string, unknown>,
  extra: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(extra)) {
    const b = out[k]
    const isTable = (x: unknown): x is Record<string, unknown> =>
      typeof x === 'object' && x !== null && !Array.isArray(x)
    out[k] = isTable(b) && isTable(v) ? merge(b, v) : v
  }
  return out
}

/** POST with a JSON body given as text (so that tests control every byte of it). */
export function postText(
  h: ApiHarness,
  url: string,
  payload: string,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return h.app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/json', ...headers },
    payload,
  })
}

/** POST a value as JSON (numbers as JavaScript writes them). */
export function postJson(
  h: ApiHarness,
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return postText(h, url, JSON.stringify(body), headers)
}

export function inject(h: ApiHarness, options: InjectOptions): Promise<LightMyRequestResponse> {
  return h.app.inject(options)
}

export interface TxOk {
  results: { rows_affected: number; time: number }[]
  time: number
  version: number | null
  actor_id: string
}

/** Runs a transaction that must succeed and returns its parsed body. */
export async function tx(h: ApiHarness, body: unknown): Promise<TxOk> {
  const res = await postJson(h, '/v1/transactions', body)
  assert.equal(res.statusCode, 200, `transaction failed: ${res.body}`)
  return res.json<TxOk>()
}

/**
 * The lines of a whole NDJSON body, exactly as sent (blank and padded lines kept, so a test sees
 * them); the body must end with a newline. A check of the framing, not a stream reader: streams
 * are split by @patina/protocol's LineSplitter.
 */
export function ndjsonLines(text: string): string[] {
  assert.ok(text.endsWith('\n'), `NDJSON ends with a newline: ${JSON.stringify(text)}`)
  return text.slice(0, -1).split('\n')
}

/** Runs a query that must succeed; returns the raw NDJSON text. */
export async function queryText(h: ApiHarness, body: unknown): Promise<string> {
  const res = await postJson(h, '/v1/queries', body)
  assert.equal(res.statusCode, 200, `query failed: ${res.body}`)
  return res.body
}

function canon(v: unknown): unknown {
  if (v instanceof Uint8Array) return `blob:${Buffer.from(v).toString('hex')}`
  if (typeof v === 'bigint') return `int:${v}`
  if (typeof v === 'number') return `real:${Object.is(v, -0) ? '-0' : String(v)}`
  return v
}

const WATCHED_PRAGMAS = [
  'journal_mode',
  'user_version',
  'application_id',
  'recursive_triggers',
  'foreign_keys',
  'busy_timeout',
  'cache_size',
  'wal_autocheckpoint',
  'synchronous',
  'query_only',
]

/**
 * Everything a refused request must leave as it was: the rows of t (typed), this replica's
 * version head, Patina's bookkeeping tables, the schema, and the writer connection's PRAGMAs.
 */
export function state(h: ApiHarness): unknown {
  const db = h.replica.db
  const all = (sql: string): unknown[] =>
    (db.prepare(sql).raw().all() as unknown[][]).map((row) => row.map(canon))
  return {
    rows: all('SELECT * FROM t ORDER BY id'),
    head: h.replica.headOf(h.replica.actorId),
    heads: all('SELECT * FROM __patina_heads ORDER BY site'),
    sites: all('SELECT * FROM __patina_sites ORDER BY ordinal'),
    clocks: all('SELECT count(*) FROM "t__patina_clock"'),
    schema: all('SELECT type, name, sql FROM sqlite_schema ORDER BY name'),
    pragmas: Object.fromEntries(
      WATCHED_PRAGMAS.map((p) => [p, canon(db.pragma(p, { simple: true }))]),
    ),
  }
}
