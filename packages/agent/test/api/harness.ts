/**
 * Goal: one in-process API built exactly as main.ts builds it, for tests that drive it with
 * fastify's inject() (no sockets) or, where a test needs requests really in flight, on a
 * loopback port.
 *
 * Method: a temporary directory with a file-backed Replica and the test schema, a ReaderPool on
 * the same file, fresh metrics, a silent pino logger and a config parsed from TOML text (extra
 * TOML appended by the test), then buildApi(). close() undoes all of it in reverse order.
 * Also: request helpers, an NDJSON splitter, and `state()`, a snapshot of everything a refused
 * request must leave unchanged (rows of t, internal bookkeeping, the writer's PRAGMAs).
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { pino } from 'pino'
import { buildApi, type Api } from '../../src/api/server.ts'
import { parseConfig, type Config } from '../../src/config/load-config.ts'
import { Replica } from '../../src/crdt/replica.ts'
import { createAgentMetrics, type AgentMetrics } from '../../src/metrics/agent-metrics.ts'
import { ReaderPool } from '../../src/query/reader-pool.ts'

/** The test table: typed columns of each kind and one untyped column `x`. */
export const SCHEMA = 'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT, r REAL, b BLOB, x);'

export interface ApiHarness {
  readonly dir: string
  readonly file: string
  readonly replica: Replica
  readonly readers: ReaderPool
  readonly config: Config
  readonly metrics: AgentMetrics
  readonly app: Api
  close(): Promise<void>
}

/** Builds the API on a fresh database. `extraToml` is appended to the config (e.g. `[api]`). */
export async function openApi(extraToml = ''): Promise<ApiHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'patina-api-'))
  const file = join(dir, 'state.db')
  const opened: (() => Promise<void> | void)[] = [
    () => {
      rmSync(dir, { recursive: true, force: true })
    },
  ]
  const close = async (): Promise<void> => {
    for (const undo of opened.reverse()) await undo()
    opened.length = 0
  }
  try {
    const replica = Replica.open(file)
    opened.push(() => {
      if (replica.db.open) replica.close()
    })
    replica.applySchema([{ path: 'schema.sql', sql: SCHEMA }])
    const readers = await ReaderPool.open({ path: file })
    opened.push(() => readers.close())
    const { config } = parseConfig(`[db]\npath = "state.db"\n${extraToml}\n`, dir, 'test config')
    const metrics = createAgentMetrics()
    const logger = pino({ level: 'silent' })
    const app = buildApi({ replica, readers, config, metrics, logger })
    opened.push(() => app.close())
    await app.ready()
    return { dir, file, replica, readers, config, metrics, app, close }
  } catch (err) {
    await close()
    throw err
  }
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

/** The lines of an NDJSON body; the body must end with a newline. */
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
    head: h.replica.headOf(h.replica.siteId),
    heads: all('SELECT * FROM __patina_heads ORDER BY site'),
    sites: all('SELECT * FROM __patina_sites ORDER BY ordinal'),
    clocks: all('SELECT count(*) FROM "t__patina_clock"'),
    schema: all('SELECT type, name, sql FROM sqlite_schema ORDER BY name'),
    pragmas: Object.fromEntries(
      WATCHED_PRAGMAS.map((p) => [p, canon(db.pragma(p, { simple: true }))]),
    ),
  }
}
