/**
 * A reader process of the ReaderPool (forked with an IPC channel; argv[2] is the database
 * path): one read-only connection that runs one query at a time and streams its rows to the
 * agent in batches.
 *
 * Backpressure is pull-based: the reader may send `credit` batches ahead of what the consumer
 * has taken; then it waits for a `credit` message before it reads more from SQLite. It cannot
 * block for a message, so it iterates the statement in chunks of `batchRows` rows and awaits
 * between chunks; while it waits, the statement (and its read transaction) stays open. A
 * `cancel` is seen between chunks; a query stuck inside one SQLite step cannot see it, and the
 * pool kills the process instead.
 */
import { performance } from 'node:perf_hooks'
import type Database from 'better-sqlite3'
import { CAPTURE_FUNCTIONS } from '../crdt/names.ts'
import { StatementGuard } from '../crdt/statement-guard.ts'
import type { SqlValue } from '../crdt/values.ts'
import { READER_CACHE_SIZE_KIB } from '../config/defaults.ts'
import { openDb } from '../store/open-db.ts'
import type { FromWorker, QueryParams, ToWorker } from './query-types.ts'
import { READER_RSS_GC_BYTES } from './reader-limits.ts'
import { rowBytesHint, rowOverLimit, rowTooLargeMessage } from './row-size.ts'

/** Page cache of each reader connection in KiB. */

/**
 * The SQL functions the capture triggers call (registered by Replica on the writer). A reader
 * must know them, or SQLite cannot compile a write to a replicated table (its triggers call
 * them) and the write would fail as "no such function" instead of being refused as a write.
 * They are never called here: the reader refuses every statement that is not read-only.
 */
type QueryMessage = Extract<ToWorker, { type: 'query' }>

type Last = Extract<FromWorker, { type: 'end' | 'error' | 'cancelled' }>
/** How a query ended, before the reader adds its resident set. */
type Outcome = Last extends infer M ? (M extends Last ? Omit<M, 'rss'> : never) : never

interface Running {
  readonly id: number
  credit: number
  cancelled: boolean
  /** Resolves the wait for credit or cancellation. */
  wake: (() => void) | null
}

const path = process.argv[2]
if (process.send === undefined || path === undefined) {
  throw new Error('reader-worker runs as a child process of the ReaderPool, given a database path')
}

let current: Running | null = null
let db: Database.Database
let guard: StatementGuard

function post(message: FromWorker): void {
  process.send?.(message)
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function sqlError(id: number, err: unknown): Outcome {
  const code = (err as { code?: unknown } | null)?.code
  return {
    type: 'error',
    id,
    code: 'SQL_ERROR',
    message: messageOf(err),
    sqliteCode: typeof code === 'string' && code.startsWith('SQLITE_') ? code : null,
  }
}

function isPositional(params: QueryParams): params is readonly SqlValue[] {
  return Array.isArray(params)
}

/** Parameters arrive as Uint8Array; better-sqlite3 binds Buffers as BLOBs. */
function toBindable(value: SqlValue): unknown {
  return value instanceof Uint8Array && !Buffer.isBuffer(value)
    ? Buffer.from(value.buffer, value.byteOffset, value.byteLength)
    : value
}

function bindArgs(params: QueryParams | undefined): unknown[] {
  if (params === undefined) return []
  if (isPositional(params)) return [params.map(toBindable)]
  const named: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(params)) named[key] = toBindable(value)
  return [named]
}

/**
 * better-sqlite3 reads a BLOB as a Buffer, which the IPC channel would deliver as a Buffer; a
 * plain Uint8Array view of the same bytes arrives as the Uint8Array that SqlValue promises.
 */
function toMessageRow(row: unknown[]): SqlValue[] {
  for (let i = 0; i < row.length; i++) {
    const value = row[i]
    if (Buffer.isBuffer(value))
      row[i] = new Uint8Array(value.buffer, value.byteOffset, value.length)
  }
  return row as SqlValue[]
}

function nextWake(state: Running): Promise<void> {
  return new Promise((resolve) => {
    state.wake = resolve
  })
}

/** Lets queued messages (credit, cancel) in: they are delivered before setImmediate runs. */
function yieldToMessages(): Promise<void> {
  return new Promise((resolve) => {
    setImmediate(resolve)
  })
}

/**
 * The reader's resident set in bytes. When a query left it large, garbage is collected first
 * (the reader runs with --expose-gc), so that a reader is replaced only for what it keeps.
 */
function residentBytes(): number {
  const rss = process.memoryUsage.rss()
  if (rss <= READER_RSS_GC_BYTES || typeof globalThis.gc !== 'function') return rss
  globalThis.gc()
  return process.memoryUsage.rss()
}

async function execute(q: QueryMessage, state: Running, started: number): Promise<Outcome> {
  // The guard runs first: it judges PRAGMAs before anything is compiled, since SQLite applies
  // many of them at compile time.
  const args = bindArgs(q.params)
  let stmt: Database.Statement
  try {
    const verdict = guard.check(q.sql, args)
    if (!verdict.ok) {
      return {
        type: 'error',
        id: q.id,
        code: 'NOT_ALLOWED',
        message: verdict.reason,
        sqliteCode: null,
      }
    }
    stmt = db.prepare(q.sql)
  } catch (err) {
    return sqlError(q.id, err)
  }
  if (!stmt.readonly) {
    return {
      type: 'error',
      id: q.id,
      code: 'NOT_READ_ONLY',
      message: 'statement is not read-only: /v1/queries only reads; write with /v1/transactions',
      sqliteCode: null,
    }
  }
  if (!stmt.reader) {
    // Read-only and returns nothing (the guard refuses most such statements).
    stmt.run(...args)
    post({ type: 'columns', id: q.id, columns: [] })
    return { type: 'end', id: q.id, timeS: (performance.now() - started) / 1000 }
  }
  stmt.raw(true)
  const columns = stmt.columns().map((c) => c.name)
  const rows = stmt.iterate(...args) as IterableIterator<unknown[]>
  /** Rows read so far (1-based position of the last one). */
  let rowNumber = 0
  try {
    post({ type: 'columns', id: q.id, columns })
    for (;;) {
      while (state.credit <= 0 && !state.cancelled) await nextWake(state)
      if (state.cancelled) return { type: 'cancelled', id: q.id }
      const batch: SqlValue[][] = []
      let bytes = 0
      let done = false
      let refused: string | null = null
      while (batch.length < q.batchRows && bytes < q.batchBytes) {
        const next = rows.next()
        if (next.done === true) {
          done = true
          break
        }
        const row = toMessageRow(next.value)
        rowNumber++
        // Checked here, so that a refused row never crosses to the agent.
        const over = q.maxRowBytes > 0 ? rowOverLimit(row, q.maxRowBytes) : null
        if (over !== null) {
          refused = rowTooLargeMessage(rowNumber, over, q.maxRowBytes)
          break
        }
        bytes += rowBytesHint(row)
        batch.push(row)
      }
      if (batch.length > 0) {
        state.credit--
        post({ type: 'rows', id: q.id, rows: batch })
      }
      if (refused !== null) {
        return {
          type: 'error',
          id: q.id,
          code: 'ROW_TOO_LARGE',
          message: refused,
          sqliteCode: null,
        }
      }
      if (done) break
      // A cancel sent meanwhile is seen at the top of the loop.
      await yieldToMessages()
    }
  } finally {
    // Resets the statement: finalises the step and ends the read transaction.
    rows.return?.()
  }
  return { type: 'end', id: q.id, timeS: (performance.now() - started) / 1000 }
}

async function runQuery(q: QueryMessage): Promise<void> {
  if (current !== null) {
    post({
      ...sqlError(q.id, new Error(`reader busy with query ${current.id}`)),
      rss: process.memoryUsage.rss(),
    })
    return
  }
  const started = performance.now()
  const state: Running = { id: q.id, credit: q.credit, cancelled: false, wake: null }
  current = state
  let outcome: Outcome
  try {
    outcome = await execute(q, state, started)
  } catch (err) {
    outcome = sqlError(q.id, err)
  }
  current = null
  post({ ...outcome, rss: residentBytes() })
}

function onMessage(message: ToWorker): void {
  switch (message.type) {
    case 'query':
      void runQuery(message)
      return
    case 'credit':
    case 'cancel': {
      const state = current
      if (state?.id !== message.id) return
      if (message.type === 'credit') state.credit += message.n
      else state.cancelled = true
      const wake = state.wake
      state.wake = null
      wake?.()
      return
    }
  }
}

// The pool closed the channel, or the agent is gone: nothing more to do.
process.on('disconnect', () => {
  process.exit(0)
})
try {
  db = openDb(path, { readonly: true, cacheSizeKib: READER_CACHE_SIZE_KIB })
  for (const name of CAPTURE_FUNCTIONS) {
    db.function(name, { varargs: true, deterministic: false }, () => {
      throw new Error(`${name}() is only available on the writer`)
    })
  }
  guard = new StatementGuard(db)
  process.on('message', onMessage)
  post({ type: 'ready' })
} catch (err) {
  // The pool kills this process when it reads the message; until then the channel stays open.
  process.on('message', () => undefined)
  post({ type: 'open-failed', message: messageOf(err) })
}
