/**
 * Goal: an agent's API with subscriptions, built as main.ts builds it, on a loopback port (the
 * streams never end, so tests read them over real sockets), plus helpers to read NDJSON
 * streams and to rebuild a subscription's result from its events.
 *
 * Method: a temporary directory with a file-backed Replica and the schema, the API's reader
 * pool, a second reader pool for subscriptions, the Subscriptions manager and buildApi() with
 * it, listening on 127.0.0.1:0. `close({ keep: true })` stops everything but keeps the
 * directory, so `openSubsApi({ dir })` restarts an agent on the same files.
 */
import assert from 'node:assert/strict'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LineSplitter } from '@patina/protocol'
import { pino } from 'pino'
import { encodeRow, parseJson, writeTyped, type JsonValue } from '../../src/api/json.ts'
import { buildApi, type Api } from '../../src/api/server.ts'
import { parseConfig, type Config } from '../../src/config/load-config.ts'
import { Replica } from '../../src/crdt/replica.ts'
import type { SqlValue } from '../../src/crdt/values.ts'
import { createAgentMetrics, type AgentMetrics } from '../../src/metrics/agent-metrics.ts'
import { createSubsMetrics } from '../../src/metrics/subs-metrics.ts'
import { systemClock, type Clock } from '../../src/runtime/clock.ts'
import { ReaderPool } from '../../src/query/reader-pool.ts'
import { Subscriptions } from '../../src/subs/subscriptions.ts'

export const SUBS_SCHEMA = [
  'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT, n INTEGER, b BLOB);',
  'CREATE TABLE u (k TEXT NOT NULL, j INTEGER NOT NULL, t_id INTEGER, w TEXT, PRIMARY KEY (k, j));',
  'CREATE TABLE g (id INTEGER NOT NULL PRIMARY KEY, name TEXT);',
].join('\n')

export interface SubsHarness {
  readonly dir: string
  readonly file: string
  readonly replica: Replica
  readonly subs: Subscriptions
  readonly config: Config
  readonly metrics: AgentMetrics
  readonly app: Api
  /** `http://127.0.0.1:PORT` */
  readonly base: string
  close(options?: { keep?: boolean }): Promise<void>
}

export interface HarnessOptions {
  /** Reuse this directory (a restart); default: a fresh temporary one. */
  readonly dir?: string
  readonly schema?: string
  /** `[subscriptions]` keys, over the test defaults (batch_ms = 1, full_eval_interval_ms = 0). */
  readonly subs?: Readonly<Record<string, number | boolean>>
  /** Keys per restricted evaluation (default SUBS_EVAL_KEYS_MAX): small values split work. */
  readonly evalKeysMax?: number
  /** Time budget of a slice of main-thread work (default SUBS_SLICE_MS; Infinity: one slice). */
  readonly sliceMs?: number
  /** The subscriptions' clock (default `systemClock()`; a `virtualClock` to drive time). */
  readonly clock?: Clock
}

export async function openSubsApi(options: HarnessOptions = {}): Promise<SubsHarness> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'patina-subs-'))
  const file = join(dir, 'state.db')
  const undo: (() => Promise<void> | void)[] = []
  let keep = options.dir !== undefined
  undo.push(() => {
    if (!keep) rmSync(dir, { recursive: true, force: true })
  })
  const close = async (o: { keep?: boolean } = {}): Promise<void> => {
    if (o.keep === true) keep = true
    for (const step of undo.reverse()) await step()
    undo.length = 0
  }
  try {
    const replica = Replica.open(file)
    undo.push(() => {
      if (replica.db.open) replica.close()
    })
    replica.applySchema([{ path: 'schema.sql', sql: options.schema ?? SUBS_SCHEMA }])
    const keys = { batch_ms: 1, full_eval_interval_ms: 0, ...options.subs }
    const section = Object.entries(keys)
      .map(([k, v]) => `${k} = ${String(v)}`)
      .join('\n')
    const { config } = parseConfig(
      `[db]\npath = "state.db"\n[subscriptions]\n${section}\n`,
      dir,
      'test config',
    )
    const readers = await ReaderPool.open({ path: file, processes: 1 })
    undo.push(() => readers.close())
    const subsReaders = await ReaderPool.open({
      path: file,
      processes: config.subscriptions.readerThreads,
      timeoutMs: config.subscriptions.evalTimeoutMs,
    })
    undo.push(() => subsReaders.close())
    const metrics = createAgentMetrics()
    const logger = pino({ level: 'silent' })
    const subs = Subscriptions.open({
      replica,
      dbPath: file,
      config: config.subscriptions,
      synchronous: config.db.synchronous,
      runner: subsReaders,
      metrics: createSubsMetrics(metrics.registry, config.subscriptions),
      logger,
      clock: options.clock ?? systemClock(),
      ...(options.evalKeysMax === undefined ? {} : { evalKeysMax: options.evalKeysMax }),
      ...(options.sliceMs === undefined ? {} : { sliceMs: options.sliceMs }),
    })
    undo.push(() => subs.stop())
    const app = buildApi({ replica, readers, config, metrics, logger, subs })
    undo.push(() => app.close())
    await app.listen({ host: '127.0.0.1', port: 0 })
    const address = app.server.address()
    assert.ok(address !== null && typeof address === 'object')
    return {
      dir,
      file,
      replica,
      subs,
      config,
      metrics,
      app,
      base: `http://127.0.0.1:${address.port}`,
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}

/** Runs statements as one local transaction. */
export function write(h: { replica: Replica }, ...sql: (string | [string, SqlValue[]])[]): void {
  h.replica.transaction(
    sql.map((s) => (typeof s === 'string' ? { sql: s } : { sql: s[0], params: s[1] })),
  )
}

/** An open NDJSON stream: its status, headers, and its events one at a time. */
export interface EventStream {
  readonly status: number
  readonly headers: IncomingMessage['headers']
  /** The response, to pause it (a slow reader) or look at it. */
  readonly res: IncomingMessage
  /** The next event; rejects after `timeoutMs` without one, or when the stream ended. */
  next(timeoutMs?: number): Promise<JsonValue>
  /** Every event that arrives until the stream ends. */
  rest(timeoutMs?: number): Promise<JsonValue[]>
  /** Events received and not yet taken. */
  readonly pending: JsonValue[]
  /** Every line received, as text. */
  readonly raw: string[]
  readonly ended: Promise<void>
  close(): void
}

/** Sends a request and returns its NDJSON stream (or, for an error status, its JSON body). */
export function openStream(
  base: string,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<EventStream> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const req = httpRequest(
      `${base}${path}`,
      {
        method,
        headers: {
          ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
      },
      (res) => {
        const pending: JsonValue[] = []
        const raw: string[] = []
        let waiter: (() => void) | null = null
        const splitter = new LineSplitter()
        let done = false
        let endedResolve: () => void = () => undefined
        const ended = new Promise<void>((r) => (endedResolve = r))
        res.on('data', (chunk: Buffer) => {
          for (const line of splitter.push(chunk)) {
            raw.push(line)
            pending.push(parseJson(line))
          }
          waiter?.()
        })
        const finish = (): void => {
          // A line cut short by a closed connection is not an event.
          const rest = splitter.end()
          if (rest !== '' && res.complete) {
            raw.push(rest)
            pending.push(parseJson(rest))
          }
          done = true
          endedResolve()
          waiter?.()
        }
        res.on('end', finish)
        res.on('close', finish)
        res.on('error', finish)
        const next = async (timeoutMs = 5000): Promise<JsonValue> => {
          const deadline = Date.now() + timeoutMs
          for (;;) {
            const event = pending.shift()
            if (event !== undefined) return event
            if (done) throw new Error('the stream ended')
            const left = deadline - Date.now()
            if (left <= 0) throw new Error(`no event within ${timeoutMs} ms`)
            await new Promise<void>((r) => {
              const timer = setTimeout(r, left)
              waiter = () => {
                clearTimeout(timer)
                waiter = null
                r()
              }
            })
          }
        }
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          res,
          next,
          pending,
          raw,
          ended,
          async rest(timeoutMs = 5000) {
            await Promise.race([
              ended,
              new Promise((_, rej) =>
                setTimeout(() => {
                  rej(new Error(`the stream did not end within ${timeoutMs} ms`))
                }, timeoutMs).unref(),
              ),
            ])
            return pending.splice(0)
          },
          close() {
            req.destroy()
            res.destroy()
          },
        })
      },
    )
    req.on('error', reject)
    if (payload !== undefined) req.write(payload)
    req.end()
  })
}

type Obj = Record<string, JsonValue>

export function isObj(v: JsonValue): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** A subscription's result as its events describe it: rowid -> values (as JSON text). */
export class StreamState {
  readonly rows = new Map<string, string>()
  columns: string[] = []
  changeId = 0
  eoq = false

  apply(event: JsonValue): void {
    assert.ok(isObj(event), `an event is an object: ${writeTyped(event)}`)
    if (Array.isArray(event.columns)) {
      this.columns = event.columns.map(String)
    } else if (Array.isArray(event.row)) {
      const [rowid, values] = event.row as [JsonValue, JsonValue]
      this.rows.set(writeTyped(rowid), writeTyped(values))
    } else if (isObj(event.eoq ?? null)) {
      this.eoq = true
      this.changeId = Number((event.eoq as Obj).change_id)
    } else if (Array.isArray(event.change)) {
      const [kind, rowid, values, id] = event.change as [string, JsonValue, JsonValue, JsonValue]
      assert.equal(Number(id), this.changeId + 1, `change ids are contiguous: ${writeTyped(event)}`)
      this.changeId = Number(id)
      const key = writeTyped(rowid)
      if (kind === 'insert') {
        assert.ok(!this.rows.has(key), `insert of an existing rowid ${key}`)
        this.rows.set(key, writeTyped(values))
      } else if (kind === 'update') {
        assert.ok(this.rows.has(key), `update of a missing rowid ${key}`)
        this.rows.set(key, writeTyped(values))
      } else {
        assert.equal(kind, 'delete')
        assert.ok(this.rows.has(key), `delete of a missing rowid ${key}`)
        this.rows.delete(key)
      }
    } else {
      assert.fail(`unexpected event ${writeTyped(event)}`)
    }
  }

  /** The rows as sorted JSON texts (a multiset). */
  sorted(): string[] {
    return [...this.rows.values()].sort()
  }
}

/** The query's result, run directly on the replica, as sorted JSON texts. */
export function expected(h: { replica: Replica }, sql: string, params?: SqlValue[]): string[] {
  const stmt = h.replica.db.prepare(sql).raw()
  const rows = (params === undefined ? stmt.all() : stmt.all(...params)) as SqlValue[][]
  return rows.map((r) => encodeRow(r)).sort()
}

/** Reads events into `state` until it is at change id `changeId` (or past eoq when 0). */
export async function readUntil(
  stream: EventStream,
  state: StreamState,
  changeId: number,
  timeoutMs = 5000,
): Promise<void> {
  while (!state.eoq || state.changeId < changeId) state.apply(await stream.next(timeoutMs))
}

/** The value of one sample of a metric in Prometheus text, or undefined. */
export async function metric(
  h: SubsHarness,
  name: string,
  labels = '',
): Promise<number | undefined> {
  const text = await h.metrics.registry.metrics()
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`${name}${labels === '' ? ' ' : `{${labels}} `}`))
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1))
}
